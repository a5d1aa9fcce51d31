// Package mqtt is the MQTT sink: it publishes the points of its subjects to an MQTT broker (3.1.1 or 5), on topics
// made from a template, as the JSON point, the batch or the bare value. It consumes a durable inbox and
// acknowledges a delivery only once the broker acknowledged every message made from it (PUBACK for QoS 1, PUBCOMP
// for QoS 2; for QoS 0, once written to the connection).
//
// It must never acknowledge what the broker has not taken, never build a topic from a value that MQTT would read
// as levels or wildcards, and never reconnect on its own: a broker that is away is a peer failure, retried by the
// supervisor at its capped backoff with a new client.
package mqtt

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/actors/sink/batch"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
)

func init() {
	actors.RegisterSink("mqtt", actors.SinkKind{Settings: NewSettings, New: New})
}

// ackWait: how long a delivery may stay unacknowledged before the stream delivers it again; beyond the publish
// timeout of every message of a full window.
const ackWait = 60 * time.Second

// sink is the mqtt sink's actor. Two workers own the connection: "publish" dials, then sends the messages of each
// delivery in order without waiting for the broker; "confirm" waits for the broker's acknowledgements in the same
// order and acks each delivery once every message of it was acknowledged. Between them is the window: a queue of
// max_inflight messages on the wire, so the publishes of many deliveries are in flight together and the broker's
// acknowledgements stream back while the next are written (the way mosquitto_pub -l works with its -M window),
// instead of a round trip per message. Either worker failing (connection lost, no acknowledgement in time) fails
// the actor as a peer failure: the deliveries it held are delivered again, first and in order, to the next
// incarnation.
type sink struct {
	name     string
	cfg      *Settings
	env      actors.Env
	path     string // sinks/{name}, the metrics label
	clientID string

	workers  actors.Workers
	ctx      context.Context // cancelled at stop
	jobs     chan *job
	inflight chan sent // the window: one entry per message on the wire, in publish order

	dec    isp.Decoder
	points []isp.Point
	enc    encoder
}

// job is one delivery's messages, to publish in order.
type job struct {
	d      *actors.Delivery // nil for a message of an inbox that is not durable
	msgs   []outMsg
	points int
}

// sent is one message on the wire, waiting for the broker; last marks the job's last message, after which its
// delivery is settled (a job without messages is one sent with no waiter).
type sent struct {
	job  *job
	wait waiter
	last bool
}

var (
	_ actors.Listener = (*sink)(nil)
	_ actor.Actor     = (*sink)(nil)
)

// New returns the producer of an mqtt sink's actor.
func New(s config.Sink, env actors.Env) actor.Producer {
	cfg := s.Settings.(*Settings)
	return func() actor.Actor { return newSink(s.Name, cfg, env) }
}

func newSink(name string, cfg *Settings, env actors.Env) *sink {
	k := &sink{name: name, cfg: cfg, env: env, path: "sinks/" + name, clientID: cfg.clientID(env.GatewayID, name)}
	k.enc = encoder{tmpl: cfg.tmpl, payload: cfg.Payload, vals: topicValues{gateway: env.GatewayID, sink: name}}
	return k
}

// Inboxes: one durable inbox per subject, named like the file sink's (the sink's name, then name_1, …).
func (k *sink) Inboxes() []actors.Inbox {
	in := make([]actors.Inbox, len(k.cfg.Subjects))
	for i, s := range k.cfg.Subjects {
		name := k.name
		if i > 0 {
			name = fmt.Sprintf("%s_%d", k.name, i)
		}
		in[i] = actors.Inbox{Subject: s, Durable: &actors.Durable{Name: name, MaxAckPending: k.cfg.MaxAckPending, AckWait: ackWait}}
	}
	return in
}

// connected is the publish worker's report that the broker took the connection.
type connected struct{}

func (k *sink) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		// jobs holds the runtime's window of deliveries, so handing one on never blocks the actor; inflight is
		// the window of messages on the wire, which the publish worker waits on when it is full.
		k.jobs = make(chan *job, k.cfg.MaxAckPending*len(k.cfg.Subjects)+1)
		k.inflight = make(chan sent, k.cfg.MaxInflight)
		k.workers.StopWait = 2 * time.Second
		var cancel context.CancelFunc
		k.ctx, cancel = context.WithCancel(context.Background())
		k.workers.OnStop(cancel) // ends a dial or an MQTT 5 publish in progress
		k.workers.Go(ctx, "publish", k.publishLoop)
		k.workers.Go(ctx, "confirm", k.confirmLoop)
	case *actor.Stopping, *actor.Restarting:
		k.workers.Stop()
	case *actors.Delivery:
		k.deliver(msg)
	case *nats.Msg:
		k.plain(msg)
	case *connected:
		k.env.Link(actors.LinkConnected, "")
		k.env.Log.Info().Str("sink", k.name).Str("broker", k.cfg.Broker).Str("protocol", k.cfg.Protocol).
			Str("client_id", k.clientID).Msg("mqtt sink: connected")
	}
}

func (k *sink) deliver(d *actors.Delivery) {
	j, err := k.encode(d.Msg)
	if err != nil {
		k.env.Metrics.Error(k.path, "refused")
		k.env.Log.Warn().Err(err).Str("sink", k.name).Str("subject", d.Msg.Subject).Msg("mqtt sink: message refused")
		if terr := d.Term(err.Error()); terr != nil {
			k.env.Log.Warn().Err(terr).Str("sink", k.name).Msg("mqtt sink: term")
		}
		return
	}
	j.d = d
	select {
	case k.jobs <- j:
	default: // more than the window: cannot happen with the runtime's bound, but never block the actor
		_ = d.Nak(time.Second)
	}
}

// plain publishes a message of an inbox that is not durable: nobody to acknowledge it to, so a failure loses it
// (counted). The runtime gives this sink durable inboxes; this is only a fallback.
func (k *sink) plain(m *nats.Msg) {
	j, err := k.encode(m)
	if err != nil {
		k.env.Metrics.Error(k.path, "refused")
		k.env.Log.Warn().Err(err).Str("sink", k.name).Str("subject", m.Subject).Msg("mqtt sink: message refused (not durable: dropped)")
		return
	}
	select {
	case k.jobs <- j:
	default:
		k.env.Metrics.Error(k.path, "dropped")
	}
}

// errNotPoints is the error of a message that is neither a point nor a batch: it can never be published.
var errNotPoints = errors.New("not a point or a batch")

// encode decodes m and makes its messages; nothing is published when any point cannot be.
func (k *sink) encode(m *nats.Msg) (*job, error) {
	var err error
	if batch.IsBatch(m.Subject, m.Data) {
		k.points, err = k.dec.DecodeBatch(m.Data, k.points[:0])
	} else {
		if cap(k.points) == 0 {
			k.points = append(k.points, isp.Point{})
		}
		k.points = k.points[:1]
		err = k.dec.DecodePoint(m.Data, &k.points[0])
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotPoints, err)
	}
	k.env.Metrics.PointsIn(k.path, len(k.points))
	msgs, err := k.enc.encode(k.points, batch.SubjectDevice(m.Subject))
	if err != nil {
		return nil, err
	}
	return &job{msgs: msgs, points: len(k.points)}, nil
}

// publishLoop connects, then publishes the jobs in order; it returns a peer failure when the broker is away.
func (k *sink) publishLoop(done <-chan struct{}, send func(any)) error {
	ctx := k.ctx
	c, err := dial(ctx, k.cfg.Protocol, dialOptions{
		address: k.cfg.address, tls: k.cfg.tlsConfig, clientID: k.clientID,
		username: k.cfg.Username, password: k.cfg.Password, persistent: k.cfg.Persistent, expiry: k.cfg.SessionExpiry,
		keepAlive: k.cfg.KeepAlive, timeout: k.cfg.Timeout, inflight: k.cfg.MaxInflight,
	})
	if err != nil {
		select {
		case <-done:
			return nil
		default:
		}
		k.env.Metrics.Error(k.path, "connect")
		return actors.PeerFailure(fmt.Errorf("mqtt sink %q: broker %s: %w", k.name, k.cfg.Broker, err))
	}
	defer c.close()
	send(&connected{})
	qos := byte(k.cfg.QoS)
	for {
		select {
		case <-done:
			return nil
		case <-c.lost():
			k.env.Metrics.Error(k.path, "publish")
			return actors.PeerFailure(fmt.Errorf("mqtt sink %q: broker %s: %w", k.name, k.cfg.Broker, c.err()))
		case j := <-k.jobs:
			c.hold()
			if len(j.msgs) == 0 && !k.enqueue(done, c, sent{job: j, last: true}) {
				return k.publishEnded(done, c)
			}
			for i := range j.msgs {
				w, err := c.publish(ctx, j.msgs[i].topic, j.msgs[i].payload, qos, k.cfg.Retain)
				if err != nil {
					select {
					case <-done:
						return nil
					default:
					}
					k.env.Metrics.Error(k.path, "publish")
					return actors.PeerFailure(fmt.Errorf("mqtt sink %q: publish to %q: %w", k.name, j.msgs[i].topic, err))
				}
				if !k.enqueue(done, c, sent{job: j, wait: w, last: i == len(j.msgs)-1}) {
					return k.publishEnded(done, c)
				}
			}
			if len(k.jobs) == 0 { // nothing more at hand: let the packets go
				c.release()
			}
		}
	}
}

// enqueue puts a message into the window, waiting while it is full; false when the sink stops or the connection
// is lost meanwhile.
func (k *sink) enqueue(done <-chan struct{}, c client, s sent) bool {
	select {
	case k.inflight <- s:
		return true
	default:
	}
	c.release() // the window is full: what is held must reach the broker for its acknowledgements to come
	select {
	case k.inflight <- s:
		return true
	case <-done:
	case <-c.lost():
	}
	return false
}

// publishEnded is publishLoop's end after enqueue failed: nil when stopping, else the lost connection.
func (k *sink) publishEnded(done <-chan struct{}, c client) error {
	select {
	case <-done:
		return nil
	default:
	}
	k.env.Metrics.Error(k.path, "publish")
	return actors.PeerFailure(fmt.Errorf("mqtt sink %q: broker %s: %w", k.name, k.cfg.Broker, c.err()))
}

// confirmLoop waits for each message's acknowledgement, in publish order, and settles a delivery after its last.
func (k *sink) confirmLoop(done <-chan struct{}, _ func(any)) error {
	var refused error // the first refusal among the current job's messages
	for {
		var s sent
		select {
		case <-done:
			return nil
		case s = <-k.inflight:
		}
		if s.wait != nil {
			err := s.wait(done, k.cfg.Timeout)
			switch {
			case err == nil:
			case errors.Is(err, errStopped):
				return nil
			case errors.Is(err, errRefused):
				// The broker took the connection and refused this message for good (MQTT 5: not authorised
				// for the topic, quota, payload format): retrying would refuse it again, so it goes to the
				// dead letters and the sink goes on. Messages of the same delivery it accepted stay published.
				if refused == nil {
					refused = err
				}
			default:
				k.env.Metrics.Error(k.path, "publish")
				return actors.PeerFailure(fmt.Errorf("mqtt sink %q: broker %s: %w", k.name, k.cfg.Broker, err))
			}
		}
		if !s.last {
			continue
		}
		if refused != nil {
			k.env.Metrics.Error(k.path, "refused")
			k.env.Log.Warn().Err(refused).Str("sink", k.name).Msg("mqtt sink: message refused by the broker")
			if s.job.d != nil {
				if err := s.job.d.Term(refused.Error()); err != nil {
					k.env.Log.Warn().Err(err).Str("sink", k.name).Msg("mqtt sink: term")
				}
			}
			refused = nil
			continue
		}
		if s.job.d != nil {
			if err := s.job.d.Ack(); err != nil {
				k.env.Log.Warn().Err(err).Str("sink", k.name).Uint64("seq", s.job.d.Seq).Msg("mqtt sink: ack (it will come again)")
			}
		}
		k.env.Metrics.PointsOut(k.path, s.job.points)
	}
}
