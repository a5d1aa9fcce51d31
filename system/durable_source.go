package system

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/iotgw/iotgw/actors"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func marshalJSON(v any) ([]byte, error) { return json.Marshal(v) }

// jsSource is a durable inbox's JetStream pull consumer.
type jsSource struct {
	cons jetstream.Consumer
	it   jetstream.MessagesContext
}

var _ durableSource = (*jsSource)(nil)

// openConsumer creates or updates the durable consumer of the stream that holds subjects.
//
// A consumer that still has unacknowledged messages (the gateway stopped or crashed with deliveries in flight) is
// recreated at its ack floor: JetStream would deliver those again only after AckWait, behind the newer messages,
// and the inbox promises order. What was acknowledged past the floor comes again too: the duplicate window.
func openConsumer(ctx context.Context, js jetstream.JetStream, d actors.Durable, subjects []string) (*jsSource, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream := ""
	for _, s := range subjects {
		name, err := js.StreamNameBySubject(ctx, s)
		if err != nil {
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return nil, "", fmt.Errorf("subject %q: %w (add it to a jetstream sink's stream, or to the stream's subjects)", s, ErrNoStream)
			}
			return nil, "", fmt.Errorf("subject %q: find its stream: %w", s, err)
		}
		if stream != "" && name != stream {
			return nil, "", fmt.Errorf("subjects %q are in two streams, %s and %s: one durable inbox reads one stream", subjects, stream, name)
		}
		stream = name
	}
	cfg := jetstream.ConsumerConfig{
		Durable:        d.Name,
		Description:    "iotgw durable inbox " + d.Name,
		FilterSubjects: subjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        d.AckWait,
		MaxDeliver:     -1, // the runtime counts attempts itself (durable.go)
		MaxAckPending:  d.MaxAckPending,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
	if old, err := js.Consumer(ctx, stream, d.Name); err == nil {
		info := old.CachedInfo()
		cfg.DeliverPolicy, cfg.OptStartSeq = info.Config.DeliverPolicy, info.Config.OptStartSeq
		if info.NumAckPending > 0 {
			if err := js.DeleteConsumer(ctx, stream, d.Name); err != nil {
				return nil, "", fmt.Errorf("consumer %s: recreate at its ack floor: %w", d.Name, err)
			}
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, info.AckFloor.Stream+1
		}
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, "", fmt.Errorf("consumer %s: %w", d.Name, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, "", fmt.Errorf("consumer %s on stream %s: %w", d.Name, stream, err)
	}
	// A short pull expiry: a pull request the server lost (a reconnect, a stalled server) is replaced within seconds.
	it, err := cons.Messages(jetstream.PullMaxMessages(min(d.MaxAckPending, 1000)), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return nil, "", fmt.Errorf("consumer %s: %w", d.Name, err)
	}
	return &jsSource{cons: cons, it: it}, stream, nil
}

func (s *jsSource) next(ctx context.Context) (*actors.Delivery, any, error) {
	m, err := s.it.Next()
	if err != nil {
		return nil, nil, err
	}
	meta, err := m.Metadata()
	if err != nil {
		return nil, nil, fmt.Errorf("message without JetStream metadata: %w", err)
	}
	return &actors.Delivery{
		Msg:          &nats.Msg{Subject: m.Subject(), Data: m.Data(), Header: m.Headers()},
		Seq:          meta.Sequence.Stream,
		NumDelivered: meta.NumDelivered,
	}, m, nil
}

func (s *jsSource) ack(h any) error { return h.(jetstream.Msg).Ack() }

func (s *jsSource) nak(h any, delay time.Duration) error {
	if delay <= 0 {
		return h.(jetstream.Msg).Nak()
	}
	return h.(jetstream.Msg).NakWithDelay(delay)
}

func (s *jsSource) progress(h any) error { return h.(jetstream.Msg).InProgress() }

func (s *jsSource) term(h any, reason string) error {
	return h.(jetstream.Msg).TermWithReason(reason)
}

func (s *jsSource) lag(ctx context.Context) (uint64, error) {
	info, err := s.cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending, nil
}

func (s *jsSource) dropped() uint64 { return 0 }

func (s *jsSource) close() { s.it.Stop() }

// memorySource is a durable inbox without JetStream: a core subscription into a bounded buffer that keeps every
// message until it is settled, delivers in order with at most window unsettled, and delivers again what is Nak'ed
// (after its delay) or not settled within ackWait. A full buffer drops its oldest message that is not in flight
// (like a stream's discard old), or the new one when all are in flight, and counts it. Nothing of it survives the
// gateway; it does survive restarts of the actor.
type memorySource struct {
	in       *durableInbox
	capacity int
	window   int
	ackWait  time.Duration
	subs     []*nats.Subscription

	mu       sync.Mutex
	entries  []*memEntry // in sequence order
	seq      uint64
	inflight int
	// minDue is at most the due time of every message in flight (zero: none in flight yet): next looks at their
	// due times only once it has passed, instead of at every call (a scan of up to window entries per delivery
	// was 13% of the file sink's CPU without JetStream).
	minDue time.Time
	drops  uint64
	wake   chan struct{}
	done   chan struct{}
	once   sync.Once
}

type memEntry struct {
	seq       uint64
	msg       *nats.Msg
	delivered uint64
	inflight  bool
	naked     bool
	due       time.Time
}

var _ durableSource = (*memorySource)(nil)

func newMemorySource(nc *nats.Conn, in *durableInbox, capacity int) (*memorySource, error) {
	if capacity <= 0 {
		capacity = DefaultDurableBuffer
	}
	s := &memorySource{in: in, capacity: capacity, window: in.cfg.MaxAckPending, ackWait: in.cfg.AckWait,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	subs := make([]*nats.Subscription, 0, len(in.subjects))
	for _, subj := range in.subjects {
		sub, err := nc.Subscribe(subj, s.push)
		if err != nil {
			for _, o := range subs {
				_ = o.Unsubscribe()
			}
			return nil, fmt.Errorf("durable inbox %q: subscribe %q: %w", in.name, subj, err)
		}
		subs = append(subs, sub)
	}
	s.subs = subs
	if nc.IsConnected() {
		_ = nc.FlushTimeout(2 * time.Second)
	}
	return s, nil
}

func (s *memorySource) push(m *nats.Msg) {
	s.mu.Lock()
	var dropped *memEntry
	if len(s.entries) >= s.capacity {
		i := 0
		for i < len(s.entries) && s.entries[i].inflight {
			i++
		}
		s.drops++
		if i == len(s.entries) {
			total := s.drops
			s.mu.Unlock()
			s.in.reportDrop(m.Subject, "durable inbox buffer full of unsettled deliveries: new message dropped", total)
			return
		}
		dropped = s.entries[i]
		s.entries = append(s.entries[:i], s.entries[i+1:]...)
	}
	s.seq++
	s.entries = append(s.entries, &memEntry{seq: s.seq, msg: m})
	total := s.drops
	s.mu.Unlock()
	s.signal()
	if dropped != nil {
		s.in.reportDrop(dropped.msg.Subject, "durable inbox buffer full: oldest message dropped", total)
	}
}

func (s *memorySource) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// next returns the first message in order that is due: a new one while fewer than window are in flight, one whose
// Nak delay or ack wait has passed. A Nak'ed message that is not due yet holds every later one back (order).
func (s *memorySource) next(ctx context.Context) (*actors.Delivery, any, error) {
	for {
		s.mu.Lock()
		now := time.Now()
		var wake time.Time
		var pick *memEntry
		checkDue := s.inflight > 0 && !now.Before(s.minDue)
		if checkDue {
			s.minDue = time.Time{}
			for _, e := range s.entries {
				if e.inflight {
					s.minDue = earliest(s.minDue, e.due)
				}
			}
		}
		if s.inflight > 0 && !checkDue {
			wake = s.minDue // in the future: a wake-up that finds nothing due only rescans
		}
	scan:
		for _, e := range s.entries {
			switch {
			case e.inflight:
				if checkDue { // as if minDue were not there
					if !now.Before(e.due) {
						pick = e
						break scan
					}
					wake = earliest(wake, e.due)
				}
			case e.naked:
				if now.Before(e.due) {
					wake = earliest(wake, e.due)
					break scan
				}
				if s.inflight < s.window {
					pick = e
				}
				break scan
			default:
				if s.inflight < s.window {
					pick = e
				}
				break scan
			}
		}
		if pick != nil {
			if !pick.inflight {
				s.inflight++
			}
			pick.inflight, pick.naked = true, false
			pick.delivered++
			pick.due = now.Add(s.ackWait)
			s.minDue = earliest(s.minDue, pick.due)
			d := &actors.Delivery{Msg: pick.msg, Seq: pick.seq, NumDelivered: pick.delivered}
			s.mu.Unlock()
			return d, pick, nil
		}
		s.mu.Unlock()
		var timer <-chan time.Time
		if !wake.IsZero() {
			t := time.NewTimer(time.Until(wake))
			timer = t.C
			defer t.Stop()
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-s.done:
			return nil, nil, errMailboxClosed
		case <-s.wake:
		case <-timer:
		}
	}
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

func (s *memorySource) remove(e *memEntry) {
	s.mu.Lock()
	i := sort.Search(len(s.entries), func(i int) bool { return s.entries[i].seq >= e.seq })
	if i < len(s.entries) && s.entries[i] == e {
		if e.inflight {
			s.inflight--
		}
		s.entries = append(s.entries[:i], s.entries[i+1:]...)
	}
	s.mu.Unlock()
	s.signal()
}

func (s *memorySource) ack(h any) error { s.remove(h.(*memEntry)); return nil }

func (s *memorySource) term(h any, _ string) error { s.remove(h.(*memEntry)); return nil }

func (s *memorySource) progress(h any) error {
	e := h.(*memEntry)
	s.mu.Lock()
	if e.inflight {
		e.due = time.Now().Add(s.ackWait)
	}
	s.mu.Unlock()
	return nil
}

func (s *memorySource) nak(h any, delay time.Duration) error {
	e := h.(*memEntry)
	s.mu.Lock()
	if e.inflight {
		s.inflight--
	}
	e.inflight, e.naked, e.due = false, true, time.Now().Add(delay)
	s.mu.Unlock()
	s.signal()
	return nil
}

// lag counts the messages never delivered (what was delivered and is not settled the inbox counts itself).
func (s *memorySource) lag(context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for i := len(s.entries) - 1; i >= 0 && s.entries[i].delivered == 0; i-- {
		n++ // delivered in order: the ones never delivered are at the end
	}
	return uint64(n), nil
}

// dropped counts what the buffer dropped, and what NATS dropped before it (a slow consumer: the subscription's
// callback only appends, so this stays 0 unless the process is starved).
func (s *memorySource) dropped() uint64 {
	s.mu.Lock()
	n := s.drops
	s.mu.Unlock()
	for _, sub := range s.subs {
		if d, err := sub.Dropped(); err == nil {
			n += uint64(d)
		}
	}
	return n
}

// stopIntake unsubscribes: nothing new comes in; what the buffer holds is still delivered (a drain).
func (s *memorySource) stopIntake() {
	for _, sub := range s.subs {
		if sub.IsValid() {
			_ = sub.Unsubscribe()
		}
	}
}

// close unsubscribes and counts what the buffer still held as dropped: it does not outlive the gateway.
func (s *memorySource) close() {
	s.once.Do(func() {
		s.stopIntake()
		close(s.done)
		s.mu.Lock()
		lost := len(s.entries)
		s.drops += uint64(lost)
		s.entries = nil
		s.mu.Unlock()
		if lost > 0 {
			s.in.log.Warn().Int("lost", lost).Msg("durable inbox without JetStream stopped with unsettled messages in its memory buffer")
		}
	})
}
