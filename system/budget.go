package system

import (
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// The floor of one subscription's share, whatever the budget and however many subscriptions share it: a share
// below one message of the largest size would drop every message of that size (NATS counts a slow consumer),
// so the total may pass the budget by what the floors add when the subscriptions are very many.
const (
	minPendingMsgs  = 64
	minPendingBytes = 1 << 20 // nats-server's default max_payload
)

// pendingBudget is the gateway-wide bound on bus messages buffered in the NATS client for the subject
// mailboxes (nats { pending_messages, pending_bytes }). nats.go bounds each subscription by itself (65,536
// messages or 64 MiB by default), which with many subscriptions bounds nothing; here the subscriptions share one
// budget in parts of budget/slots, slots ≥ the subscriptions, so the limits never add up past the budget.
//
// Re-dividing sets every subscription's limits, O(n); doing it on every add and remove made starting or stopping
// n rules O(n²) (13–21% of the CPU of 1,000 rules starting and stopping). So slots keep a slack of a quarter: a
// subscription that comes while a slot is free takes the current share, O(1); only when the slots run out are
// they re-divided for n+n/4, and when fewer than two thirds of them are used (n < slots/1.5) for n+n/4 again.
// Between two re-divisions come at least n/6 adds or removes, so each costs O(1) amortised, and every share is
// between budget/(1.5n) and budget/n. Reading the budget (iot.control.tree, already O(n)) re-divides exactly,
// slots = n, so what an operator sees is the equal share.
type pendingBudget struct {
	msgs  int
	bytes int64
	log   zerolog.Logger

	mu    sync.Mutex
	subs  map[*nats.Subscription]struct{}
	slots int // the budget is divided in this many shares, ≥ len(subs)
}

// PendingBudget is the budget as iot.control.tree shows it on the root, with what is buffered against it now.
type PendingBudget struct {
	Messages      int   `json:"messages"` // the configured budget
	Bytes         int64 `json:"bytes"`
	Subscriptions int   `json:"subscriptions"` // subject mailbox subscriptions sharing it
	// ShareMessages and ShareBytes are each subscription's pending limits.
	ShareMessages int   `json:"share_messages"`
	ShareBytes    int64 `json:"share_bytes"`
	Pending       int   `json:"pending"` // messages buffered now, all subscriptions
	PendingBytes  int64 `json:"pending_bytes"`
	Dropped       int64 `json:"dropped"` // messages NATS dropped past a share (slow consumer), since start
}

func newPendingBudget(msgs int, bytes int64, log zerolog.Logger) *pendingBudget {
	return &pendingBudget{msgs: msgs, bytes: bytes, log: log, subs: map[*nats.Subscription]struct{}{}}
}

// share is one subscription's part of the budget among n. b.mu is held.
func (b *pendingBudget) share(n int) (int, int64) {
	if n < 1 {
		n = 1
	}
	return max(b.msgs/n, minPendingMsgs), max(b.bytes/int64(n), minPendingBytes)
}

// add makes subs share the budget, and sets every subscription's limits to the new share.
func (b *pendingBudget) add(subs ...*nats.Subscription) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var fresh []*nats.Subscription
	for _, s := range subs {
		if _, ok := b.subs[s]; !ok {
			b.subs[s] = struct{}{}
			fresh = append(fresh, s)
		}
	}
	if len(b.subs) > b.slots {
		return b.rebalance(len(b.subs) + len(b.subs)/4)
	}
	return b.set(fresh) // a free slot each: the current share
}

// remove takes subs out of the budget; the others' shares grow.
func (b *pendingBudget) remove(subs ...*nats.Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range subs {
		delete(b.subs, s)
	}
	n := len(b.subs)
	if 2*b.slots <= 3*n { // the others keep their shares: the sum only shrinks
		return
	}
	if err := b.rebalance(n + n/4); err != nil {
		b.log.Warn().Err(err).Msg("pending budget: cannot set a subscription's new share")
	}
}

// rebalance divides the budget in slots shares (at least one a subscription) and sets every subscription's
// pending limits to the new share; it returns the first failure. A subscription closed by other means (the
// connection closed) leaves the budget here. b.mu is held.
func (b *pendingBudget) rebalance(slots int) error {
	for s := range b.subs {
		if !s.IsValid() {
			delete(b.subs, s)
		}
	}
	b.slots = max(slots, len(b.subs))
	var first error
	for s := range b.subs {
		if err := b.set1(s); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// set sets subs' pending limits to the current share; it returns the first failure. b.mu is held.
func (b *pendingBudget) set(subs []*nats.Subscription) error {
	var first error
	for _, s := range subs {
		if err := b.set1(s); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (b *pendingBudget) set1(s *nats.Subscription) error {
	msgs, bytes := b.share(b.slots)
	if err := s.SetPendingLimits(msgs, int(bytes)); err != nil {
		return fmt.Errorf("subject %q: set pending limits: %w", s.Subject, err)
	}
	return nil
}

// limits returns the pending limits of subs, summed.
func (b *pendingBudget) limits(subs []*nats.Subscription) (msgs int, bytes int64) {
	for _, s := range subs {
		if m, n, err := s.PendingLimits(); err == nil {
			msgs += m
			bytes += int64(n)
		}
	}
	return msgs, bytes
}

func (b *pendingBudget) snapshot() *PendingBudget {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.slots != len(b.subs) { // the exact equal share, O(n) as the rest of the snapshot
		if err := b.rebalance(len(b.subs)); err != nil {
			b.log.Warn().Err(err).Msg("pending budget: cannot set a subscription's new share")
		}
	}
	out := &PendingBudget{Messages: b.msgs, Bytes: b.bytes, Subscriptions: len(b.subs)}
	out.ShareMessages, out.ShareBytes = b.share(b.slots)
	for s := range b.subs {
		if m, n, err := s.Pending(); err == nil {
			out.Pending += m
			out.PendingBytes += int64(n)
		}
		if d, err := s.Dropped(); err == nil {
			out.Dropped += int64(d)
		}
	}
	return out
}
