// Package actors holds every actor of the gateway: devices, sidecar connections, rules, sinks and the processing
// stage between devices and rules, plus the few pieces they all share (how an actor declares the subjects it
// listens on, how it publishes, how it owns goroutines).
//
// Actors never import the runtime (package system): they receive bus messages only through the subjects they
// declare with Listener, which the runtime's subject mailbox delivers into their mailbox, and they publish
// through the narrow Publisher interface. They never subscribe to NATS themselves.
package actors

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Inbox is one subject an actor listens on, with an optional queue group (several gateways on one NATS cluster
// then share the messages of that subject).
type Inbox struct {
	Subject string
	Queue   string
	// Durable, when set, makes the inbox durable: the messages of Subject come from the JetStream stream that
	// holds it, through a durable consumer of that name that survives restarts of the actor and of the gateway,
	// each delivered into the mailbox as a *Delivery that the actor acknowledges once its target has accepted it.
	// Without JetStream, the runtime keeps a bounded memory buffer per durable inbox instead, and counts what it
	// drops. It is the same subject mailbox, not a second way to receive.
	Durable *Durable
}

// Durable names a durable inbox and bounds it. Inboxes of one actor with the same Name share one consumer (its
// subjects are all of theirs, and must be in one stream). Zero values take the runtime's defaults.
type Durable struct {
	// Name is the consumer's durable name (a sink uses its own name), unique per gateway and a valid subject token.
	Name string
	// MaxAckPending bounds the deliveries handed to the actor and not yet settled (its window); default 1000.
	// It is also the duplicate window after a crash: at most this many accepted messages come again.
	MaxAckPending int
	// MaxDeliver is how many deliveries of a message may end without a settlement (the actor crashed on it, or did
	// not settle it within AckWait) before it goes to the dead-letter stream; Naks do not count. Default 10;
	// -1: no limit.
	MaxDeliver int
	// AckWait is how long a delivery may stay unsettled before it is delivered again; default 30 s.
	AckWait time.Duration
}

// Delivery is one message of a durable inbox with its acknowledgement handle. Exactly one of Ack, Nak or Term
// should be called once the actor knows the outcome; each may be called from a worker goroutine (after an fsync,
// say). A second settlement returns an error and changes nothing. The implementation is the runtime's (JetStream,
// or the memory buffer without it).
//
// What the runtime guarantees an actor: deliveries come in stream order (Seq increasing), also after a Nak (the
// messages after a Nak'ed one are held back until it has come again) and after a restart of the actor (what it
// held unsettled comes again, first); a message is delivered again until it is Ack'ed or Term'ed; at most
// MaxAckPending are unsettled at once. A delivery the actor neither settles nor naks comes again after AckWait and
// may then follow newer ones.
type Delivery struct {
	Msg *nats.Msg
	// Seq is the message's sequence in its stream (or in the memory buffer), increasing in delivery order.
	Seq uint64
	// NumDelivered is 1 on the first delivery and counts redeliveries after it (Naks included).
	NumDelivered uint64
	Acker        Acker
}

// Acker settles deliveries; implemented by the runtime.
type Acker interface {
	// Ack: the target accepted the message; it is not delivered again (the acknowledgement is not waited for: lost
	// in a crash right after, the message comes again).
	Ack(d *Delivery) error
	// Nak: the target could not take it now (down, full); it is delivered again after delay, before anything after
	// it. It does not count towards MaxDeliver, so an outage of the target never dead-letters data.
	Nak(d *Delivery, delay time.Duration) error
	// Term: the target refused it for good (reason says why); it goes to the dead-letter stream with the reason in
	// its headers, stored before the message is settled. When it cannot be stored the message is Nak'ed instead and
	// the error returned: nothing is lost.
	Term(d *Delivery, reason string) error
}

// Ack acknowledges d (see Acker).
func (d *Delivery) Ack() error { return d.Acker.Ack(d) }

// Nak asks for d to be delivered again after delay (see Acker).
func (d *Delivery) Nak(delay time.Duration) error { return d.Acker.Nak(d, delay) }

// Term sends d to the dead-letter stream with reason (see Acker).
func (d *Delivery) Term(reason string) error { return d.Acker.Term(d, reason) }

// Listener is implemented by an actor that receives bus messages. The runtime subscribes to every Inbox when the
// actor starts for the first time, delivers each message into the actor's mailbox as a *nats.Msg, keeps the
// subscription across restarts (messages wait in the mailbox while the actor restarts) and drains it when the
// actor stops.
type Listener interface {
	Inboxes() []Inbox
}

// Publisher is what an actor needs to emit messages on the bus. *nats.Conn satisfies it.
type Publisher interface {
	Publish(subject string, data []byte) error
	PublishMsg(m *nats.Msg) error
}

var _ Publisher = (*nats.Conn)(nil)

// StreamPublisher publishes into a JetStream stream and says, through the future, whether the stream stored the
// message: the acknowledged publishes of the processing stage. jetstream.JetStream's PublishMsgAsync, behind the
// runtime's check that JetStream is there.
type StreamPublisher interface {
	// PublishMsgAsync returns ErrStreamNotReady while JetStream is configured but not there yet (the server was
	// not there at start): publish on Bus meanwhile.
	PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
	// Window bounds the publishes awaiting their acknowledgement; DuplicateWindow is how long the stream drops a
	// retry with the same message id (Nats-Msg-Id), so a retry is safe only within it.
	Window() int
	DuplicateWindow() time.Duration
}

// ErrStreamNotReady: JetStream is configured, not there yet.
var ErrStreamNotReady = errors.New("jetstream not ready yet")

// Env is what the runtime hands to every actor constructor.
type Env struct {
	Bus Publisher
	// Stream is the acknowledged publisher into JetStream; nil when JetStream is off.
	Stream StreamPublisher
	// JetStream returns the gateway's JetStream context once it is there (at once, unless the server was not
	// there at start), or ctx's error; nil when JetStream is off. For a kind that manages streams (the jetstream
	// sink), never for consuming: that is the durable inbox's.
	JetStream func(ctx context.Context) (jetstream.JetStream, error)
	Log       zerolog.Logger
	GatewayID string
	// PointSubjects makes the processing stage publish every point on iot.processed.{device}.{key} beside the
	// batch on iot.processed.batch.{device}.
	PointSubjects bool
	// Stdout is where a sink that prints (console) writes; logs go elsewhere.
	Stdout io.Writer
	// LogFormat is the gateway's log format ("console" or "json"); the console sink follows it by default.
	LogFormat string
	// Metrics are the gateway's Prometheus collectors; nil-safe, so an actor built without them still works.
	Metrics *Metrics
	// LinkState receives the actor's connection state (see Env.Link); set by the runtime, nil in tests.
	LinkState func(state, detail string)
	// Endpoint is the actor of the shared endpoint a device's driver declared (config.EndpointSettings), started
	// before the device; nil for other actors.
	Endpoint *actor.PID
	// DataDir is the gateway's data_dir, where an actor keeps what it makes once and reuses (the OPC UA driver's
	// generated client certificate) and where the file sink writes by default ({data_dir}); "" when the actor is
	// built without a runtime (then it must not need one, or, the file sink, takes the working directory).
	DataDir string
	// Schedule runs fn on one of the runtime's long-lived goroutines (the mailbox dispatcher's workers: their grown
	// stacks stay, and a busy one never delays fn), for an actor's blocking work that comes and goes, like a
	// Modbus transport's runs of its queue: a goroutine parked per actor between them was a stack per endpoint.
	// nil outside a runtime: then a goroutine of its own (RunScheduled).
	Schedule func(fn func())
	// InStream says whether the gateway's stream (IOT_DATA) keeps what is published on subject, so an actor
	// publishes it with an acknowledgement (StreamWriter); nil: nothing is kept (JetStream off, or outside a
	// runtime).
	InStream func(subject string) bool
}

// Stored says whether subject is kept by the gateway's stream (Env.InStream).
func (e *Env) Stored(subject string) bool { return e.InStream != nil && e.InStream(subject) }

// MatchSubject says whether the subject (no wildcards) matches pattern ("*" one token, ">" one or more at the end),
// without allocating.
func MatchSubject(pattern, subject string) bool {
	for {
		pt, prest, pmore := strings.Cut(pattern, ".")
		st, srest, smore := strings.Cut(subject, ".")
		switch {
		case pt == ">":
			return st != ""
		case st == "" || (pt != "*" && pt != st):
			return false
		}
		if !pmore || !smore {
			return pmore == smore
		}
		pattern, subject = prest, srest
	}
}

// RunScheduled runs fn through e.Schedule, or on a goroutine of its own when there is none.
func (e *Env) RunScheduled(fn func()) {
	if e.Schedule != nil {
		e.Schedule(fn)
		return
	}
	go fn()
}

// Headers that travel with bus messages (DESIGN.md: trace id, source and schema version are NATS headers, so a
// data message body stays a bare point or a bare batch).
const (
	HeaderSource  = "Iot-Source"
	HeaderSchema  = "Iot-Schema"
	HeaderTraceID = "Iot-Trace-Id"
	// SchemaVersion is the version of the point and batch JSON this gateway writes.
	SchemaVersion = "1"
)
