package system

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/internal/backoff"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// A durable inbox (actors.Inbox.Durable) is part of the subject mailbox: the same slots, the same delivery into the
// actor's protoactor mailbox, the same lifetime (opened at the first start, kept across restarts, closed at stop).
// What differs is where the messages come from and that each one is settled:
//
//   - with JetStream, from a durable pull consumer of the stream that holds the inbox's subjects, named after the
//     inbox (Durable.Name), ack-explicit, bounded by MaxAckPending (nats.go jetstream: Consumer.Messages, the
//     iterator, rather than Consume: a full mailbox then blocks our goroutine, not the library's, which keeps
//     handling heartbeats);
//   - without JetStream, from a core subscription into a bounded memory buffer with the same Ack, Nak and Term
//     (memorySource): what overflows it is dropped oldest first and counted, and what it holds is lost when the
//     gateway stops.
//
// The delivery contract, the same for both (and what the README's durability section promises):
//
//   - ordered: the actor receives an inbox's messages in stream order, and a Nak holds every later message back
//     until the Nak'ed one has come again: the runtime parks the later ones (they stay unacknowledged in the
//     source, so MaxAckPending stops the consumer from pulling more) and hands them to the actor, in order, right
//     after the Nak'ed one (release). JetStream alone does not give this with MaxAckPending > 1: a Nak'ed message
//     comes back behind the ones delivered meanwhile. Parking rather than Nak'ing the later ones is what keeps a
//     sink whose target is down quiet (one redelivery per retry, of the first message, instead of MaxAckPending)
//     and what makes the catch-up immediate once the first message is written (the parked ones follow at once,
//     instead of each after its own Nak delay); their AckWait is restarted while they wait. After a restart of the
//     actor its unsettled deliveries are Nak'ed in order, and at the open of a durable consumer that has
//     unacknowledged messages it is recreated at its ack floor, so they come again at once and in order instead
//     of after AckWait behind newer ones.
//   - at-least-once: a message is delivered again until it is Ack'ed or Term'ed; after a crash, up to MaxAckPending
//     messages that were accepted but not yet acknowledged are delivered a second time (the duplicate window).
//   - bounded: at most MaxAckPending deliveries are unsettled; the mailbox slots bound what waits for the actor.
//   - dead letters: Term, or MaxDeliver deliveries that ended without a settlement (the actor crashed or did not
//     answer within AckWait), send the message to the dead-letter stream with the reason in headers, before it is
//     settled in the source; a Nak ("not now": the target is down or full) does not count as an attempt, so an
//     outage of the target never sends data to the dead letters. This departs from JetStream's own MaxDeliver,
//     which counts every delivery, Naks included, and signals the end with an advisory
//     ($JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES) after which the message would have to be fetched by sequence
//     (and may be gone by then): the consumer runs with MaxDeliver -1 and the runtime decides.

// Dead letters.
const (
	// DeadLetterStream keeps the messages a durable inbox gave up on, each with the reason in its headers.
	DeadLetterStream = "IOT_DEADLETTER"
	// SubjectDeadLetterPrefix starts the subject of a dead letter: iot.deadletter.{inbox}.
	SubjectDeadLetterPrefix = "iot.deadletter."
	// Headers of a dead letter, beside the original message's own.
	HeaderDeadReason     = "Iot-Dead-Reason"
	HeaderDeadSubject    = "Iot-Dead-Subject"
	HeaderDeadStream     = "Iot-Dead-Stream"
	HeaderDeadSeq        = "Iot-Dead-Seq"
	HeaderDeadDeliveries = "Iot-Dead-Deliveries"
	HeaderDeadInbox      = "Iot-Dead-Inbox"
	// SubjectErrorDeadLetter and SubjectErrorDropped report, as JSON, a dead letter and what the memory buffer of a
	// durable inbox dropped.
	SubjectErrorDeadLetter = "iot.errors.sinks.dead_letter"
	SubjectErrorDropped    = "iot.errors.sinks.dropped"
)

// Defaults of a durable inbox whose actor left a bound at zero.
const (
	DefaultMaxAckPending = 1000
	DefaultMaxDeliver    = 10
	DefaultAckWait       = 30 * time.Second
	// DefaultDurableBuffer bounds the memory buffer of a durable inbox without JetStream, in messages.
	DefaultDurableBuffer = 10000
)

// Errors of a settlement.
var (
	// ErrSettled: the delivery was already settled (or superseded by a redelivery the runtime settled).
	ErrSettled = errors.New("delivery already settled")
	// ErrNoStream: no JetStream stream holds a durable inbox's subject.
	ErrNoStream = errors.New("no JetStream stream holds the subject")
)

// DurableStats are one durable inbox's figures (iot.control.sinks.*, /metrics).
type DurableStats struct {
	Name     string   `json:"name"`
	Backend  string   `json:"backend"`          // jetstream | memory
	Stream   string   `json:"stream,omitempty"` // with JetStream
	Subjects []string `json:"subjects"`
	// State: waiting (for JetStream, not there yet), consuming, holding (a Nak holds later messages back), closed.
	State string `json:"state"`
	// Pending is the lag: messages in the stream (or buffer) that the actor does not hold and has not settled:
	// never delivered, Nak'ed and waiting to come again, or parked behind one that was (Held).
	Pending uint64 `json:"pending"`
	// Held are the messages of Pending that the inbox holds back: Nak'ed, or parked behind a Nak'ed one.
	Held int `json:"held"`
	// AckPending are in the actor's hands and not yet settled.
	AckPending    int    `json:"ack_pending"`
	Delivered     uint64 `json:"delivered"`
	Acked         uint64 `json:"acked"`
	Naked         uint64 `json:"naked"`
	Redelivered   uint64 `json:"redelivered"`
	DeadLetters   uint64 `json:"dead_letters"`
	Dropped       uint64 `json:"dropped"` // memory buffer overflow, or lost at stop (without JetStream)
	LastDelivered string `json:"last_delivered,omitempty"`
	LastError     string `json:"last_error,omitempty"`
	LastErrorAt   string `json:"last_error_at,omitempty"` // RFC 3339: an error stays shown, with its time
	// LagError says why Pending could not be read this time (the consumer's info did not come in time, under load
	// or while the server is away): Pending is then only what the inbox holds, a lower bound, not a lag of 0.
	LagError string `json:"lag_error,omitempty"`
}

// durableSource is where a durable inbox's messages come from: a JetStream consumer or the memory buffer.
type durableSource interface {
	// next blocks until a message is due; the Delivery has Msg, Seq and NumDelivered set.
	next(ctx context.Context) (*actors.Delivery, any, error)
	ack(h any) error
	nak(h any, delay time.Duration) error
	term(h any, reason string) error
	// progress restarts the AckWait of a delivery that is not settled yet (a parked one).
	progress(h any) error
	// lag is the number of messages never delivered (the inbox adds those it holds); JetStream asks the server.
	lag(ctx context.Context) (uint64, error)
	dropped() uint64
	close()
}

// durableEnv is what a durable inbox needs of the runtime.
type durableEnv struct {
	bus    *Bus
	buffer int // memory buffer bound without JetStream
	log    zerolog.Logger
}

// track is one message of the inbox that is not settled yet.
type track struct {
	d      *actors.Delivery // the delivery the actor holds; nil while the message waits for its redelivery
	handle any              // the source's handle of its latest delivery
	// base is NumDelivered-1 at first sight in this process and skipped counts its deliveries that were Naks: what
	// remains of NumDelivered are the attempts that ended without a settlement.
	base, skipped uint64
	heldAt        time.Time
	heldFor       time.Duration // the delay of the Nak that holds it
	// parked: d came after a held message and waits in the inbox (not Nak'ed) for its release.
	parked bool
	given  *actors.Delivery // the delivery the actor was handed last (a parked one may also be in its mailbox)
}

// durableInbox is one durable consumer of an actor: its source, the ordering hold and the settlement of deliveries.
// It is the actors.Acker of its deliveries.
type durableInbox struct {
	name     string
	cfg      actors.Durable
	subjects []string
	env      durableEnv
	log      zerolog.Logger

	mu        sync.Mutex
	src       durableSource
	stream    string
	backend   string
	state     string
	tracks    map[uint64]*track
	held      []uint64  // sorted: Nak'ed and not delivered again; nothing after held[0] reaches the actor
	parked    []uint64  // sorted: delivered after held[0], waiting in the inbox for their release
	refreshed time.Time // the last AckWait restart of the parked ones
	cancel    context.CancelFunc
	done      chan struct{}
	counts    struct{ delivered, acked, naked, redelivered, dead uint64 }
	lastDeliv time.Time
	lastErr   string
	lastErrAt time.Time
	lastDrop  time.Time
}

var _ actors.Acker = (*durableInbox)(nil)

func newDurableInbox(d actors.Durable, subjects []string, env durableEnv) *durableInbox {
	if d.MaxAckPending <= 0 {
		d.MaxAckPending = DefaultMaxAckPending
	}
	if d.MaxDeliver == 0 {
		d.MaxDeliver = DefaultMaxDeliver
	}
	if d.AckWait <= 0 {
		d.AckWait = DefaultAckWait
	}
	return &durableInbox{
		name: d.Name, cfg: d, subjects: subjects, env: env,
		log:    env.log.With().Str("durable", d.Name).Logger(),
		tracks: map[uint64]*track{}, state: "waiting",
	}
}

// open starts the inbox's delivery goroutine, which hands each due message to deliver (the mailbox's bounded
// push; false when the mailbox closed). With JetStream ready, the consumer is set up here and a failure is returned
// (the actor fails to start: a subject no stream holds is a configuration error); with JetStream configured and
// not there yet, the goroutine waits for it and retries.
func (in *durableInbox) open(deliver func(*actors.Delivery) bool) error {
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel, in.done = cancel, make(chan struct{})
	bus := in.env.bus
	var src durableSource
	switch {
	case !bus.jetStream:
		ms, err := newMemorySource(bus.Conn, in, in.env.buffer)
		if err != nil {
			cancel()
			in.cancel = nil // nothing runs: close has nothing to wait for
			return err
		}
		src = ms
		in.setSource(ms, "memory", "")
	case bus.jetStreamNow() != nil:
		js, stream, err := openConsumer(ctx, bus.jetStreamNow(), in.cfg, in.subjects)
		if err != nil {
			cancel()
			in.cancel = nil
			return fmt.Errorf("durable inbox %q: %w", in.name, err)
		}
		src = js
		in.setSource(js, "jetstream", stream)
	default:
		in.mu.Lock()
		in.backend = "jetstream"
		in.mu.Unlock()
	}
	go in.run(ctx, src, deliver)
	return nil
}

func (in *durableInbox) setSource(src durableSource, backend, stream string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.src, in.backend, in.stream, in.state = src, backend, stream, "consuming"
}

// run delivers until ctx ends; src is nil when JetStream is late, and set up here once it is there.
func (in *durableInbox) run(ctx context.Context, src durableSource, deliver func(*actors.Delivery) bool) {
	defer close(in.done)
	wait := backoff.Backoff{Policy: backoff.Policy{Initial: 200 * time.Millisecond, Max: 10 * time.Second}}
	for src == nil {
		select {
		case <-ctx.Done():
			return
		case <-in.env.bus.JetStreamReady():
		}
		js, stream, err := openConsumer(ctx, in.env.bus.JS, in.cfg, in.subjects)
		if err == nil {
			src = js
			in.setSource(js, "jetstream", stream)
			break
		}
		in.fail(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait.Next()):
		}
	}
	wait.Reset()
	for {
		d, h, err := src.next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, errMailboxClosed) {
				return
			}
			in.fail(err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait.Next()):
			}
			continue
		}
		wait.Reset()
		if !in.admit(d, h) {
			continue
		}
		if !deliver(d) {
			return
		}
	}
}

func (in *durableInbox) fail(err error) {
	in.mu.Lock()
	in.lastErr, in.lastErrAt = err.Error(), time.Now()
	in.mu.Unlock()
	in.log.Warn().Err(err).Msg("durable inbox")
}

// admit records a message that came from the source and says whether it goes to the actor: not when it has used
// up its attempts (it goes to the dead letters instead).
func (in *durableInbox) admit(d *actors.Delivery, h any) bool {
	d.Acker = in
	in.mu.Lock()
	t := in.tracks[d.Seq]
	if t == nil {
		t = &track{base: d.NumDelivered - 1}
		in.tracks[d.Seq] = t
	}
	t.handle = h
	if d.NumDelivered > 1 {
		in.counts.redelivered++
	}
	if t.parked && t.d != nil {
		// A parked message delivered again (its AckWait passed while it waited): the runtime's doing, not an
		// attempt. It goes to the actor's mailbox, where take parks it again, or release hands it over.
		t.skipped++
	}
	attempts := d.NumDelivered - 1 - t.base - t.skipped
	if in.cfg.MaxDeliver > 0 && attempts >= uint64(in.cfg.MaxDeliver) {
		delete(in.tracks, d.Seq)
		in.unhold(d.Seq)
		in.parked = removeSeq(in.parked, d.Seq)
		in.mu.Unlock()
		reason := fmt.Sprintf("delivered %d times without being acknowledged (max_deliver %d)", attempts, in.cfg.MaxDeliver)
		if err := in.deadLetter(d, h, reason); err != nil {
			in.fail(err)
		}
		return false
	}
	t.d = d
	in.counts.delivered++
	in.mu.Unlock()
	return true
}

// take is called on the actor's goroutine for a delivery it is about to receive: false when it must not (it was
// settled or superseded meanwhile, or it comes after a message that was Nak'ed and has not come again, or after
// one that is parked: it is parked, to be released in order).
func (in *durableInbox) take(d *actors.Delivery) bool {
	ok, refresh, src := in.takeLocked(d)
	for _, h := range refresh {
		if err := src.progress(h); err != nil {
			in.fail(err)
			break
		}
	}
	return ok
}

// takeLocked is take's decision; refresh are the parked deliveries whose AckWait is to be restarted: a parked
// message waits as long as the outage lasts, and one whose AckWait ran out just as it was released would come
// again while the actor holds it (a duplicate). The Nak'ed message that comes again once per retry is what calls
// it, every third of AckWait at most.
func (in *durableInbox) takeLocked(d *actors.Delivery) (bool, []any, durableSource) {
	in.mu.Lock()
	defer in.mu.Unlock()
	var refresh []any
	if len(in.parked) > 0 && time.Since(in.refreshed) > in.cfg.AckWait/3 {
		in.refreshed = time.Now()
		for _, seq := range in.parked {
			if t := in.tracks[seq]; t != nil && t.parked {
				refresh = append(refresh, t.handle)
			}
		}
	}
	ok := in.admitToActor(d)
	return ok, refresh, in.src
}

// admitToActor says whether d goes to the actor now, parking it otherwise. The caller holds in.mu.
func (in *durableInbox) admitToActor(d *actors.Delivery) bool {
	t := in.tracks[d.Seq]
	if t == nil || t.d != d || t.given == d {
		return false
	}
	in.expireHeld()
	if (len(in.held) > 0 && d.Seq > in.held[0]) || (len(in.parked) > 0 && d.Seq > in.parked[0]) {
		// Parked, it is no longer held: it came again (held are the Nak'ed that have not), so it does not stop
		// the release of the parked ones before it.
		t.parked = true
		in.unhold(d.Seq)
		in.parked = insertSeq(in.parked, d.Seq)
		return false
	}
	in.unhold(d.Seq)
	if t.parked {
		t.parked = false
		in.parked = removeSeq(in.parked, d.Seq)
	}
	t.given = d
	return true
}

// release returns the next parked delivery that is due for the actor (nothing held before it), unparked; nil
// when there is none. The runtime calls it on the actor's goroutine after each delivery it handled, until nil.
func (in *durableInbox) release() *actors.Delivery {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.parked) == 0 {
		return nil
	}
	in.expireHeld()
	for len(in.parked) > 0 {
		seq := in.parked[0]
		if len(in.held) > 0 && in.held[0] < seq {
			return nil
		}
		in.parked = in.parked[1:]
		if t := in.tracks[seq]; t != nil && t.parked && t.d != nil {
			t.parked, t.given = false, t.d
			return t.d
		}
	}
	return nil
}

// expireHeld lets go of held messages that do not come back (the stream's limits discarded them): they must not
// hold the inbox for ever. The caller holds in.mu.
func (in *durableInbox) expireHeld() {
	for len(in.held) > 0 {
		head := in.tracks[in.held[0]]
		if head != nil && time.Since(head.heldAt) <= head.heldFor+2*in.cfg.AckWait+5*time.Second {
			return
		}
		delete(in.tracks, in.held[0])
		in.held = in.held[1:]
	}
}

// restarted Naks, in order, what the actor held when it failed: it comes again, first.
func (in *durableInbox) restarted() {
	in.mu.Lock()
	var hs []any
	seqs := make([]uint64, 0, len(in.tracks))
	for seq, t := range in.tracks {
		if t.d != nil {
			seqs = append(seqs, seq)
		}
	}
	in.parked = in.parked[:0] // parked ones are Nak'ed with the rest: all come again, in order
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, seq := range seqs {
		t := in.tracks[seq]
		t.d, t.heldAt, t.heldFor, t.parked = nil, time.Now(), 0, false
		t.skipped++
		in.held = insertSeq(in.held, seq)
		hs = append(hs, t.handle)
	}
	src := in.src
	in.mu.Unlock()
	for _, h := range hs {
		if err := src.nak(h, 0); err != nil {
			in.fail(err)
		}
	}
}

// insertSeq adds seq to the sorted list l (once).
func insertSeq(l []uint64, seq uint64) []uint64 {
	i := sort.Search(len(l), func(i int) bool { return l[i] >= seq })
	if i < len(l) && l[i] == seq {
		return l
	}
	l = append(l, 0)
	copy(l[i+1:], l[i:])
	l[i] = seq
	return l
}

// removeSeq takes seq out of the sorted list l.
func removeSeq(l []uint64, seq uint64) []uint64 {
	i := sort.Search(len(l), func(i int) bool { return l[i] >= seq })
	if i < len(l) && l[i] == seq {
		l = append(l[:i], l[i+1:]...)
	}
	return l
}

func (in *durableInbox) unhold(seq uint64) { in.held = removeSeq(in.held, seq) }

// settle takes d's message out of the inbox; nil when it is not there (settled already).
func (in *durableInbox) settle(d *actors.Delivery) (*track, durableSource) {
	in.mu.Lock()
	defer in.mu.Unlock()
	t := in.tracks[d.Seq]
	if t == nil {
		return nil, nil
	}
	delete(in.tracks, d.Seq)
	in.unhold(d.Seq)
	if t.parked {
		in.parked = removeSeq(in.parked, d.Seq)
	}
	return t, in.src
}

// Ack implements actors.Acker: the message is done. It may be called from any goroutine. With JetStream the
// acknowledgement is sent without waiting for the server's confirmation: one lost with a crash right after
// makes the message come again (the duplicate window).
func (in *durableInbox) Ack(d *actors.Delivery) error {
	t, src := in.settle(d)
	if t == nil {
		return ErrSettled
	}
	in.mu.Lock()
	in.counts.acked++
	in.lastDeliv = time.Now()
	in.mu.Unlock()
	return src.ack(t.handle)
}

// Nak implements actors.Acker: the message comes again after delay, before anything after it; it does not count
// towards MaxDeliver.
func (in *durableInbox) Nak(d *actors.Delivery, delay time.Duration) error {
	in.mu.Lock()
	t := in.tracks[d.Seq]
	if t == nil || t.d == nil || t.parked {
		in.mu.Unlock()
		return ErrSettled
	}
	t.d, t.heldAt, t.heldFor = nil, time.Now(), max(delay, 0)
	t.skipped++
	in.held = insertSeq(in.held, d.Seq)
	in.counts.naked++
	src, h := in.src, t.handle
	in.mu.Unlock()
	return src.nak(h, delay)
}

// Term implements actors.Acker: the message goes to the dead-letter stream with reason, then is settled. When the
// dead letter cannot be stored the message is Nak'ed instead (nothing is lost) and the error returned.
func (in *durableInbox) Term(d *actors.Delivery, reason string) error {
	t, _ := in.settle(d)
	if t == nil {
		return ErrSettled
	}
	return in.deadLetter(d, t.handle, reason)
}

// deadLetter stores d's message among the dead letters with reason, then terminates it in the source.
func (in *durableInbox) deadLetter(d *actors.Delivery, h any, reason string) error {
	in.mu.Lock()
	src, stream := in.src, in.stream
	in.mu.Unlock()
	m := &nats.Msg{Subject: SubjectDeadLetterPrefix + in.name, Data: d.Msg.Data, Header: nats.Header{}}
	for k, vs := range d.Msg.Header {
		m.Header[k] = append([]string(nil), vs...)
	}
	m.Header.Set(HeaderDeadReason, reason)
	m.Header.Set(HeaderDeadSubject, d.Msg.Subject)
	m.Header.Set(HeaderDeadInbox, in.name)
	m.Header.Set(HeaderDeadSeq, strconv.FormatUint(d.Seq, 10))
	m.Header.Set(HeaderDeadDeliveries, strconv.FormatUint(d.NumDelivered, 10))
	bus := in.env.bus
	var err error
	if js := bus.jetStreamNow(); stream != "" && js != nil {
		m.Header.Set(HeaderDeadStream, stream)
		m.Header.Set(jetstream.MsgIDHeader, in.name+"."+stream+"."+strconv.FormatUint(d.Seq, 10))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = js.PublishMsg(ctx, m)
		cancel()
	} else {
		err = bus.Conn.PublishMsg(m) // without JetStream a dead letter is published, not kept
	}
	if err != nil {
		if nerr := src.nak(h, time.Second); nerr != nil {
			in.fail(nerr)
		}
		return fmt.Errorf("durable inbox %q: dead letter of message %d: %w", in.name, d.Seq, err)
	}
	in.mu.Lock()
	in.counts.dead++
	in.mu.Unlock()
	in.log.Warn().Uint64("seq", d.Seq).Str("subject", d.Msg.Subject).Str("reason", reason).Msg("message sent to the dead letters")
	in.report(SubjectErrorDeadLetter, map[string]any{
		"inbox": in.name, "subject": d.Msg.Subject, "seq": d.Seq, "deliveries": d.NumDelivered,
		"reason": reason, "timestamp": time.Now().UnixNano(),
	})
	return src.term(h, reason)
}

// report publishes an event on iot.errors.*; a failure is logged only (the count stays in the stats).
func (in *durableInbox) report(subject string, v any) {
	data, err := marshalJSON(v)
	if err == nil {
		err = in.env.bus.Conn.Publish(subject, data)
	}
	if err != nil {
		in.log.Debug().Err(err).Str("subject", subject).Msg("cannot publish event")
	}
}

// reportDrop reports what the memory buffer dropped (JetStream off): logged and published on
// iot.errors.sinks.dropped at most once a second, with the total, so an overflow does not flood the bus.
func (in *durableInbox) reportDrop(subject, why string, total uint64) {
	in.mu.Lock()
	now := time.Now()
	if now.Sub(in.lastDrop) < time.Second {
		in.mu.Unlock()
		return
	}
	in.lastDrop = now
	in.mu.Unlock()
	in.log.Warn().Str("subject", subject).Uint64("dropped_total", total).Msg(why)
	in.report(SubjectErrorDropped, map[string]any{"inbox": in.name, "subject": subject, "reason": why,
		"dropped_total": total, "timestamp": now.UnixNano()})
}

// stopIntake stops taking new messages (a drain before the actor stops): a JetStream consumer stops pulling,
// what it did not deliver stays in the stream; a memory buffer unsubscribes and still delivers what it holds.
func (in *durableInbox) stopIntake() {
	in.mu.Lock()
	src := in.src
	in.mu.Unlock()
	switch s := src.(type) {
	case *jsSource:
		s.close()
	case *memorySource:
		s.stopIntake()
	}
}

// close stops the delivery goroutine (bounded wait) and the source.
func (in *durableInbox) close(wait time.Duration) {
	if in.cancel == nil {
		return
	}
	in.cancel()
	in.mu.Lock()
	src := in.src
	in.state = "closed"
	in.mu.Unlock()
	if src != nil {
		src.close()
	}
	select {
	case <-in.done:
	case <-time.After(wait):
		in.log.Warn().Msg("durable inbox did not stop in time")
	}
}

// stats; live asks the server for the lag (a request to JetStream).
func (in *durableInbox) stats(live bool) DurableStats {
	in.mu.Lock()
	st := DurableStats{
		Name: in.name, Backend: in.backend, Stream: in.stream, Subjects: in.subjects, State: in.state,
		Delivered: in.counts.delivered, Acked: in.counts.acked, Naked: in.counts.naked,
		Redelivered: in.counts.redelivered, DeadLetters: in.counts.dead, LastError: in.lastErr,
	}
	for _, t := range in.tracks {
		if t.d != nil && !t.parked {
			st.AckPending++
		} else {
			st.Held++
		}
	}
	if !in.lastErrAt.IsZero() {
		st.LastErrorAt = in.lastErrAt.UTC().Format(time.RFC3339Nano)
	}
	if st.Held > 0 && st.State == "consuming" {
		st.State = "holding"
	}
	if !in.lastDeliv.IsZero() {
		st.LastDelivered = in.lastDeliv.UTC().Format(time.RFC3339Nano)
	}
	src := in.src
	in.mu.Unlock()
	if src != nil {
		st.Dropped = src.dropped()
		if live {
			st.Pending = uint64(st.Held)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if n, err := src.lag(ctx); err == nil {
				st.Pending += n
			} else {
				st.LagError = err.Error()
			}
			cancel()
		}
	}
	return st
}
