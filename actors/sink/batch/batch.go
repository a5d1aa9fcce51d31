// Package batch is the durable, batching core of the sinks that write to a network target (redis, influxdb): it
// takes the deliveries of a sink's durable inboxes, decodes their points, gathers them into a batch the target
// encodes, writes the batch from one worker goroutine owned by the actor, and settles each delivery by the
// outcome: Ack once the target accepted it, Nak (the data waits in the stream) while the target cannot take it,
// Term for what the target refused for good or what can never be encoded.
//
// It must never acknowledge a delivery before the write that holds it succeeded, never let a later delivery
// overtake an earlier one that was handed back, and never block the actor's mailbox on the network.
//
// It lives under actors/sink/ because two sinks share it (STYLE: a helper shared by two packages goes to the lower
// one). Where it follows others: Telegraf's outputs batch by metric_batch_size and flush_interval and retry a
// failed batch, but keep the batch in memory (metric_buffer_limit) and overwrite the oldest when it is full; here
// the stream is the buffer, so a target that is down costs memory for one batch only, and nothing is overwritten.
//
// It also holds the splitting of a batch message into its elements without decoding them (split.go), which the
// console and file sinks share, and the reading of a data subject (subjects.go: batch or point, and its device),
// which every sink shares.
package batch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/internal/backoff"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
)

// Batch is what a target builds from points and writes in one go (a Redis pipeline, a body of line protocol).
type Batch interface {
	// Add encodes the points of one message (its subject says where they came from) and returns how many
	// entries it added (a point the target skips by configuration adds none). An error refuses the message for
	// good (it can never be encoded) and must leave the batch as it was.
	Add(subject string, points []isp.Point) (int, error)
	// Reset empties the batch for reuse.
	Reset()
}

// Target is one network target.
type Target interface {
	// NewBatch returns an empty batch.
	NewBatch() Batch
	// Write sends b. nil: all of it accepted. A *Refused: the target accepted all but the entries it names, and
	// refuses those for good. Any other error: the target did not take the batch now (down, timeout, rejected
	// credentials) and it is tried again. Write runs on the sink's worker goroutine, one at a time.
	Write(ctx context.Context, b Batch) error
	// Close releases the target's connections.
	Close() error
}

// Refused lists the entries of a batch (numbered from 0 in the order Add added them) the target refused for
// good, each with the target's reason; the others were accepted.
type Refused struct {
	Entries map[int]string
	// All: the target refused the whole batch and named no entry (the deliveries are all terminated with Reason).
	All    bool
	Reason string
}

func (r *Refused) Error() string {
	if r.All {
		return "refused: " + r.Reason
	}
	return fmt.Sprintf("refused %d entries", len(r.Entries))
}

// Options are the batching settings every such sink has.
type Options struct {
	Subjects      []string
	BatchSize     int           // entries per write, at most
	FlushInterval time.Duration // a batch that is not full is written after this long
	MaxAckPending int           // deliveries handed to the sink and not yet settled
	Retry         time.Duration // first delay of a delivery handed back while the target is down
	MaxRetry      time.Duration // the cap of the doubling delay
	Timeout       time.Duration // bound of one write
}

// ackWait is how long a delivery may stay unsettled before the runtime delivers it again: far longer than a
// write's timeout and a flush interval, so a slow target does not cause redeliveries.
const ackWait = 2 * time.Minute

// Inboxes are the durable inboxes of a sink named name: one per subject, the consumer named after the sink (and
// the subject's position when there are several), like the file sink's.
func Inboxes(name string, o Options) []actors.Inbox {
	in := make([]actors.Inbox, len(o.Subjects))
	for i, s := range o.Subjects {
		n := name
		if i > 0 {
			n = fmt.Sprintf("%s_%d", name, i)
		}
		in[i] = actors.Inbox{Subject: s, Durable: &actors.Durable{Name: n, MaxAckPending: o.MaxAckPending, AckWait: ackWait}}
	}
	return in
}

// flushed is the worker's answer to one write.
type flushed struct {
	job *job
	err error
}

// job is one batch with the deliveries it holds; counts[i] is the number of entries delivery i added.
type job struct {
	b      Batch
	ds     []*actors.Delivery
	counts []int
	points int
}

func (j *job) reset() {
	j.b.Reset()
	clear(j.ds)
	j.ds, j.counts, j.points = j.ds[:0], j.counts[:0], 0
}

// Sink is the actor's core; the sink's actor forwards its messages to Receive.
type Sink struct {
	name   string
	kind   string // "redis", "influxdb": the logs' prefix
	path   string // sinks/{name}, the metrics label
	o      Options
	env    actors.Env
	target func() (Target, error)
	now    func() time.Time

	t       Target
	workers actors.Workers
	jobs    chan *job
	cancel  context.CancelFunc
	tick    *actors.Tick

	cur      *job // being filled
	spare    *job // written and reset, for reuse
	inflight *job // being written
	dec      isp.Decoder
	points   []isp.Point
	lastAdd  time.Time

	// While the target is down, what was handed back (Nak) comes again first: the durable inbox holds every later
	// delivery back until it has (system/durable.go), so the target sees the stream's order without the sink
	// keeping track of it.
	down    bool
	downErr string
	linked  bool // the first accepted write has been reported (Env.Link), so a later one after an outage counts as a reconnect
	retry   backoff.Backoff
	delay   time.Duration // of the Naks of the current failure
}

// New returns the core of sink name of kind; target builds the sink's client at every start of the actor.
func New(name, kind string, o Options, env actors.Env, target func() (Target, error)) *Sink {
	return &Sink{name: name, kind: kind, path: "sinks/" + name, o: o, env: env, target: target, now: time.Now,
		retry: backoff.Backoff{Policy: backoff.Policy{Initial: o.Retry, Max: o.MaxRetry}}}
}

// Inboxes implements actors.Listener for the sink's actor.
func (k *Sink) Inboxes() []actors.Inbox { return Inboxes(k.name, k.o) }

// Receive handles the actor's messages.
func (k *Sink) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		k.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		k.stop()
	case *actors.Delivery:
		k.deliver(msg)
	case *nats.Msg:
		k.plain(msg)
	case *flushed:
		k.done(msg)
	case *actors.Tick:
		msg.Ack()
		if msg == k.tick {
			k.onTick()
		}
	}
}

func (k *Sink) start(ctx actor.Context) {
	t, err := k.target()
	if err != nil {
		panic(fmt.Errorf("%s sink %q: %w", k.kind, k.name, err)) // a config the validation let through: a crash
	}
	k.t = t
	k.cur = &job{b: t.NewBatch()}
	k.jobs = make(chan *job, 1)
	wctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	k.workers.OnStop(cancel) // a write in progress returns at once
	k.workers.Go(ctx, "write", func(done <-chan struct{}, send func(any)) error {
		for {
			select {
			case <-done:
				return nil
			case j := <-k.jobs:
				c, stop := context.WithTimeout(wctx, k.o.Timeout)
				err := k.t.Write(c, j.b)
				stop()
				send(&flushed{job: j, err: err})
			}
		}
	})
	every := k.o.FlushInterval
	if every > time.Second {
		every = time.Second // the check for a delivery that did not come back
	}
	k.tick = k.workers.Tick(ctx, "flush", every)
}

// stop hands back what was not written (it comes again, first, to the next incarnation) and closes the client.
func (k *Sink) stop() {
	k.workers.Stop()
	for _, j := range []*job{k.inflight, k.cur} {
		if j == nil {
			continue
		}
		for _, d := range j.ds {
			if d != nil {
				_ = d.Nak(0)
			}
		}
		j.ds = j.ds[:0]
	}
	k.inflight = nil
	if k.cancel != nil {
		k.cancel()
	}
	if k.t != nil {
		if err := k.t.Close(); err != nil {
			k.env.Log.Warn().Err(err).Str("sink", k.name).Msgf("%s sink: close", k.kind)
		}
	}
}

// ErrNotPoints is the error of a message that is neither a point nor a batch of points.
var ErrNotPoints = errors.New("not a point or a batch")

func (k *Sink) decode(msg *nats.Msg) ([]isp.Point, error) {
	var err error
	if IsBatch(msg.Subject, msg.Data) {
		k.points, err = k.dec.DecodeBatch(msg.Data, k.points[:0])
	} else {
		if cap(k.points) == 0 {
			k.points = append(k.points, isp.Point{})
		}
		k.points = k.points[:1]
		err = k.dec.DecodePoint(msg.Data, &k.points[0])
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotPoints, err)
	}
	dev := SubjectDevice(msg.Subject)
	for i := range k.points {
		if k.points[i].DeviceID == "" {
			k.points[i].DeviceID = dev
		}
	}
	return k.points, nil
}

func (k *Sink) deliver(d *actors.Delivery) {
	points, err := k.decode(d.Msg)
	n := 0
	if err == nil {
		k.env.Metrics.PointsIn(k.path, len(points))
		n, err = k.cur.b.Add(d.Msg.Subject, points)
	}
	if err != nil {
		k.env.Metrics.Error(k.path, "refused")
		k.env.Log.Warn().Err(err).Str("sink", k.name).Str("subject", d.Msg.Subject).Msgf("%s sink: message refused", k.kind)
		if terr := d.Term(err.Error()); terr != nil {
			k.env.Log.Warn().Err(terr).Str("sink", k.name).Msgf("%s sink: term", k.kind)
		}
		return
	}
	if len(k.cur.ds) == 0 {
		k.lastAdd = k.now()
	}
	k.cur.ds = append(k.cur.ds, d)
	k.cur.counts = append(k.cur.counts, n)
	k.cur.points += n
	if k.full() {
		k.flush()
	}
}

// full: the batch has its size, or holds half the window (the consumer would stall waiting for the interval).
func (k *Sink) full() bool {
	return k.cur.points >= k.o.BatchSize || len(k.cur.ds) >= max(1, k.o.MaxAckPending/2)
}

// plain takes a message of an inbox that is not durable: the runtime gives this sink durable inboxes, so this is
// a fallback, and a message it cannot write is counted and logged.
func (k *Sink) plain(msg *nats.Msg) {
	points, err := k.decode(msg)
	n := 0
	if err == nil {
		n, err = k.cur.b.Add(msg.Subject, points)
	}
	if err != nil {
		k.env.Metrics.Error(k.path, "dropped")
		k.env.Log.Warn().Err(err).Str("sink", k.name).Msgf("%s sink: message not written (not durable: dropped)", k.kind)
		return
	}
	if len(k.cur.ds) == 0 {
		k.lastAdd = k.now()
	}
	k.cur.ds = append(k.cur.ds, nil) // nobody to settle, but its entries keep their place in the batch
	k.cur.counts = append(k.cur.counts, n)
	k.cur.points += n
	if k.full() {
		k.flush()
	}
}

func (k *Sink) onTick() {
	if k.inflight == nil && len(k.cur.ds) > 0 && (k.now().Sub(k.lastAdd) >= k.o.FlushInterval || k.full()) {
		k.flush()
	}
}

// flush hands the current batch to the worker, unless a write is in progress (the batch then grows until it
// returns: one write at a time keeps the order).
func (k *Sink) flush() {
	if k.inflight != nil || len(k.cur.ds) == 0 {
		return
	}
	j := k.cur
	k.inflight = j
	if k.spare != nil {
		k.cur, k.spare = k.spare, nil
	} else {
		k.cur = &job{b: k.t.NewBatch()}
	}
	k.jobs <- j // capacity 1 and one job at a time: never blocks
}

func (k *Sink) done(f *flushed) {
	j := f.job
	if j != k.inflight {
		return // an earlier incarnation's
	}
	k.inflight = nil
	var refused *Refused
	switch {
	case f.err == nil:
		for _, d := range j.ds {
			k.ack(d)
		}
		k.env.Metrics.PointsOut(k.path, j.points)
		k.recovered()
	case errors.As(f.err, &refused):
		k.settleRefused(j, refused)
		k.recovered()
	default:
		k.failed(f.err, j)
	}
	j.reset()
	k.spare = j
	if k.full() || (len(k.cur.ds) > 0 && k.now().Sub(k.lastAdd) >= k.o.FlushInterval) {
		k.flush()
	}
}

// settleRefused terminates the deliveries that hold an entry the target refused (the reason names the entry and
// the target's words) and acknowledges the others.
func (k *Sink) settleRefused(j *job, r *Refused) {
	first, written := 0, 0
	for i, d := range j.ds {
		var reasons []string
		if r.All {
			reasons = append(reasons, r.Reason)
		} else {
			for e := first; e < first+j.counts[i]; e++ {
				if why, bad := r.Entries[e]; bad {
					reasons = append(reasons, fmt.Sprintf("entry %d: %s", e-first, why))
				}
			}
		}
		first += j.counts[i]
		if len(reasons) == 0 {
			k.ack(d)
			written += j.counts[i]
			continue
		}
		if d == nil {
			k.env.Metrics.Error(k.path, "dropped")
			continue
		}
		reason := strings.Join(reasons, "; ")
		if len(reason) > 1024 {
			reason = reason[:1024] + "…"
		}
		k.env.Metrics.Error(k.path, "refused")
		k.env.Log.Warn().Str("sink", k.name).Uint64("seq", d.Seq).Str("reason", reason).
			Msgf("%s sink: the target refused part of a message: the message goes to the dead letters", k.kind)
		if err := d.Term(reason); err != nil {
			k.env.Log.Warn().Err(err).Str("sink", k.name).Msgf("%s sink: term", k.kind)
		}
	}
	k.env.Metrics.PointsOut(k.path, written)
}

func (k *Sink) ack(d *actors.Delivery) {
	if d == nil {
		return // a message of an inbox that is not durable
	}
	if err := d.Ack(); err != nil {
		k.env.Log.Warn().Err(err).Str("sink", k.name).Uint64("seq", d.Seq).Msgf("%s sink: ack (it will come again)", k.kind)
	}
}

func (k *Sink) nak(d *actors.Delivery) {
	if d == nil {
		k.env.Metrics.Error(k.path, "dropped") // not durable: nothing to hand it back to
		return
	}
	if err := d.Nak(k.delay); err != nil {
		k.env.Log.Warn().Err(err).Str("sink", k.name).Uint64("seq", d.Seq).Msgf("%s sink: nak", k.kind)
	}
}

// failed marks the target down: the batch that failed and the one gathered since go back to the stream, the
// tree shows the sink disconnected with the error (a peer's state, not a crash: the actor keeps running).
func (k *Sink) failed(err error, j *job) {
	k.delay = k.retry.Next() // the capped, doubling delay (internal/backoff): one more per failed write
	k.env.Metrics.Error(k.path, "write")
	for _, d := range j.ds {
		k.nak(d)
	}
	for _, d := range k.cur.ds {
		k.nak(d)
	}
	k.cur.reset()
	if !k.down || k.downErr != err.Error() {
		k.env.Log.Warn().Err(err).Str("sink", k.name).Msgf("%s sink: cannot write; deliveries wait in the stream", k.kind)
		k.env.Link(actors.LinkDisconnected, err.Error())
		if !k.down {
			k.env.Metrics.Error(k.path, "disconnect") // the reconnects figure: one per outage
		}
	}
	k.down, k.downErr = true, err.Error()
}

func (k *Sink) recovered() {
	k.retry.Reset()
	if !k.linked && !k.down {
		k.linked = true
		k.env.Link(actors.LinkConnected, "") // the first connection: the tree counts reconnects after it
		return
	}
	if !k.down {
		return
	}
	k.linked = true
	k.down, k.downErr = false, ""
	k.env.Log.Info().Str("sink", k.name).Msgf("%s sink: writing again", k.kind)
	k.env.Link(actors.LinkConnected, "")
}
