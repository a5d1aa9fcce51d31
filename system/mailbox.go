package system

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/actors/device"
	"github.com/iotgw/iotgw/config"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// Mailbox bounds, per actor.
const (
	// DefaultMailboxCapacity is how many bus messages may wait in an actor's mailbox. Past it, the subscription's
	// delivery waits (backpressure), so messages queue in the NATS client's pending buffer below, whose limits are
	// each subscription's share of the gateway-wide budget (budget.go). Past them NATS drops and counts (a slow
	// consumer): the only place the gateway loses bus messages, and it is counted and reported.
	DefaultMailboxCapacity = 10000
)

// MailboxStats are one actor's subject mailbox figures, shown in iot.control.tree.
type MailboxStats struct {
	Capacity  int    `json:"capacity"`
	Depth     int    `json:"depth"`     // messages in the actor's mailbox now
	Pending   int    `json:"pending"`   // messages waiting in the NATS client buffers
	Delivered uint64 `json:"delivered"` // messages delivered into the mailbox
	Blocked   uint64 `json:"blocked"`   // deliveries that had to wait for room (the mailbox was full)
	Dropped   uint64 `json:"dropped"`   // messages NATS dropped because the buffers overflowed (slow consumer)
	// PendingLimit and PendingLimitBytes bound Pending: the shares of the gateway's pending budget its
	// subscriptions hold, summed.
	PendingLimit      int   `json:"pending_limit"`
	PendingLimitBytes int64 `json:"pending_limit_bytes"`
	// Durable are the figures of the actor's durable inboxes (see durable.go), without the live lag.
	Durable []DurableStats `json:"durable,omitempty"`
}

// subjectMailbox is the one mechanism by which bus messages reach an actor (DESIGN.md: actors use NATS subjects as
// mailboxes). The actor declares its subjects (actors.Listener); the mailbox subscribes when the actor first
// starts, delivers each *nats.Msg into the actor's protoactor mailbox, keeps the subscriptions across restarts so
// nothing is lost while the actor restarts, and drains them when the actor stops.
//
// Like nats.go's own ChanSubscribe, delivery is bounded; unlike it, a full mailbox blocks the subscription's
// delivery goroutine instead of dropping, so a burst waits in the NATS client buffer (bounded again, and counted
// by NATS as dropped when that overflows) rather than being lost at the first full queue.
type subjectMailbox struct {
	nc       *nats.Conn
	inboxes  []actors.Inbox
	capacity int
	budget   *pendingBudget

	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	delivered atomic.Uint64
	blocked   atomic.Uint64

	mu     sync.Mutex
	subs   []*nats.Subscription
	opened bool
	// durables are the durable inboxes, one per Durable.Name (inboxes that share a name share the consumer);
	// denv is what they need of the runtime (set by the supervisor; nil when the actor has none).
	durables []*durableInbox
	denv     *durableEnv
}

func newSubjectMailbox(nc *nats.Conn, inboxes []actors.Inbox, capacity int, budget *pendingBudget) *subjectMailbox {
	if capacity <= 0 {
		capacity = DefaultMailboxCapacity
	}
	return &subjectMailbox{
		nc: nc, inboxes: inboxes, capacity: capacity, budget: budget,
		slots: make(chan struct{}, capacity),
		done:  make(chan struct{}),
	}
}

// withDurable gives the mailbox what its durable inboxes need and groups them by name.
func (m *subjectMailbox) withDurable(env durableEnv) *subjectMailbox {
	m.denv = &env
	byName := map[string]*durableInbox{}
	for _, in := range m.inboxes {
		if in.Durable == nil {
			continue
		}
		d := byName[in.Durable.Name]
		if d == nil {
			d = newDurableInbox(*in.Durable, nil, env)
			byName[in.Durable.Name] = d
			m.durables = append(m.durables, d)
		}
		d.subjects = append(d.subjects, in.Subject)
	}
	return m
}

// errDurableName: a durable inbox without a valid name.
var errDurableName = errors.New("a durable inbox needs a name that is a valid subject token")

// validateInboxes checks what an actor declared before anything subscribes.
func validateInboxes(inboxes []actors.Inbox) error {
	for _, in := range inboxes {
		if in.Durable == nil {
			continue
		}
		if err := config.ValidToken(in.Durable.Name); err != nil {
			return fmt.Errorf("inbox %q: %w: %v", in.Subject, errDurableName, err)
		}
		if in.Queue != "" {
			return fmt.Errorf("inbox %q: a durable inbox has no queue group (its consumer is shared by name)", in.Subject)
		}
	}
	return nil
}

func (m *subjectMailbox) subjects() []string {
	out := make([]string, len(m.inboxes))
	for i, in := range m.inboxes {
		out[i] = in.Subject
		if in.Queue != "" {
			out[i] += " (queue " + in.Queue + ")"
		}
		if in.Durable != nil {
			out[i] += " (durable " + in.Durable.Name + ")"
		}
	}
	return out
}

// open subscribes to every inbox, delivering to pid. A second call (after a restart) does nothing: the
// subscriptions outlive restarts.
func (m *subjectMailbox) open(root *actor.RootContext, pid *actor.PID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.opened {
		return nil
	}
	select {
	case <-m.done:
		return errMailboxClosed
	default:
	}
	if err := validateInboxes(m.inboxes); err != nil {
		return err
	}
	push := func(msg any) bool {
		select {
		case m.slots <- struct{}{}:
		default:
			m.blocked.Add(1)
			select {
			case m.slots <- struct{}{}:
			case <-m.done:
				return false
			}
		}
		m.delivered.Add(1)
		root.Send(pid, msg)
		return true
	}
	deliver := func(msg *nats.Msg) { push(msg) }
	for i, d := range m.durables {
		if err := d.open(func(dl *actors.Delivery) bool { return push(dl) }); err != nil {
			for _, o := range m.durables[:i] {
				o.close(time.Second)
			}
			return err
		}
	}
	subs := make([]*nats.Subscription, 0, len(m.inboxes))
	for _, in := range m.inboxes {
		if in.Durable != nil {
			continue
		}
		var sub *nats.Subscription
		var err error
		if in.Queue != "" {
			sub, err = m.nc.QueueSubscribe(in.Subject, in.Queue, deliver)
		} else {
			sub, err = m.nc.Subscribe(in.Subject, deliver)
		}
		if err != nil {
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			m.closeDurables()
			return fmt.Errorf("subscribe %q: %w", in.Subject, err)
		}
		subs = append(subs, sub)
	}
	if err := m.budget.add(subs...); err != nil {
		m.budget.remove(subs...)
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
		m.closeDurables()
		return err
	}
	m.subs, m.opened = subs, true
	// A round trip, so the server has the subscriptions when the actor counts as started: a producer started
	// next, or a client told the actor runs, cannot publish before it listens. Disconnected, the client resends
	// them when it reconnects, so a failed flush is not an error, and none is tried (it would wait out its timeout).
	if m.nc.IsConnected() {
		_ = m.nc.FlushTimeout(2 * time.Second)
	}
	return nil
}

var errMailboxClosed = errors.New("subject mailbox closed")

// isOpen says whether open has succeeded once: a Started after it is a restart.
func (m *subjectMailbox) isOpen() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.opened
}

// restarted gives the durable inboxes a restart of their actor: what it held unsettled comes again, in order.
func (m *subjectMailbox) restarted() {
	for _, d := range m.durables {
		d.restarted()
	}
}

func (m *subjectMailbox) closeDurables() {
	for _, d := range m.durables {
		d.close(time.Second)
	}
}

// received frees the slot of one message the actor has taken from its mailbox.
func (m *subjectMailbox) received() {
	select {
	case <-m.slots:
	default:
	}
}

// drain stops new messages and waits (up to timeout) until everything already in the NATS client buffers has been
// delivered into the actor's mailbox. The actor keeps running meanwhile; stopping it with a poison pill afterwards
// lets it process all of them.
func (m *subjectMailbox) drain(timeout time.Duration) {
	m.mu.Lock()
	subs := m.subs
	m.mu.Unlock()
	// A durable inbox stops taking new messages: what it has not delivered stays in the stream for the next start
	// (without JetStream, its buffer is still delivered until the actor stops).
	for _, d := range m.durables {
		d.stopIntake()
	}
	deadline := time.After(timeout)
	for _, s := range subs {
		closed := s.StatusChanged(nats.SubscriptionClosed)
		if err := s.Drain(); err != nil {
			continue
		}
		select {
		case <-closed:
		case <-deadline:
			return
		}
	}
}

// close unsubscribes at once and releases any delivery blocked on a full mailbox. Idempotent.
func (m *subjectMailbox) close() {
	m.closeOnce.Do(func() { close(m.done) })
	m.closeDurables()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.subs {
		if s.IsValid() {
			_ = s.Unsubscribe()
		}
	}
	m.budget.remove(m.subs...)
}

func (m *subjectMailbox) stats() MailboxStats {
	st := MailboxStats{
		Capacity:  m.capacity,
		Depth:     len(m.slots),
		Delivered: m.delivered.Load(),
		Blocked:   m.blocked.Load(),
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st.PendingLimit, st.PendingLimitBytes = m.budget.limits(m.subs)
	for _, s := range m.subs {
		if n, _, err := s.Pending(); err == nil {
			st.Pending += n
		}
		if n, err := s.Dropped(); err == nil {
			st.Dropped += uint64(n)
		}
	}
	for _, d := range m.durables {
		st.Durable = append(st.Durable, d.stats(false))
	}
	return st
}

// mailboxActor wraps every actor the runtime spawns: it opens the subject mailbox once the actor has started,
// frees a mailbox slot for every bus message the actor takes, closes the subscriptions when the actor stops, keeps
// the tree's state current, and turns a failed worker goroutine into a failure of the actor.
type mailboxActor struct {
	inner actor.Actor
	mb    *subjectMailbox // nil when the actor listens on nothing
	path  string
	tree  *Tree
	// started is called once the actor has handled Started and subscribed, or with the reason it failed: the
	// supervisor waits for it before starting the next sibling, so consumers listen before producers publish.
	started func(err error)
	// reconnecting: a Reconnector restarted after a peer failure, shown disconnected until it reports the link up.
	reconnecting bool
	// incarnation numbers this incarnation (unique in the runtime): what the actor's workers send is stamped with
	// it, and what is stamped with another is dropped (actors.Stale).
	incarnation uint64
	log         zerolog.Logger
	// faults returns the lasting faults injected into the actor's path, applied again to every incarnation as it
	// starts (nil: none).
	faults func() []*actors.Fault
}

var _ actors.Incarnated = (*mailboxActor)(nil)

// deliveryContext is the actor's context with a parked delivery as its message: the runtime hands the actor the
// deliveries it parked (durable.go) on the goroutine of the delivery that released them, without a second trip
// through the mailbox, whose slots they already used.
type deliveryContext struct {
	actor.Context
	d *actors.Delivery
}

func (c deliveryContext) Message() any { return c.d }

func (a *mailboxActor) Incarnation() uint64 { return a.incarnation }

func (a *mailboxActor) Receive(ctx actor.Context) {
	if actors.Stale(ctx) {
		// A worker of an incarnation that has been restarted or stopped sent it (while the actor waited out its
		// backoff, or before its Stop returned): its failure was handled, its results belong to a state that is gone.
		if wf, ok := ctx.Message().(*actors.WorkerFailed); ok {
			a.log.Info().Str("actor", a.path).Str("error", wf.Error()).Msg("dropped the failure of a worker of a previous incarnation")
		} else {
			a.log.Debug().Str("actor", a.path).Str("message", fmt.Sprintf("%T", ctx.Message())).Msg("dropped a message of a previous incarnation")
		}
		return
	}
	switch m := ctx.Message().(type) {
	case *nats.Msg:
		if a.mb != nil {
			a.mb.received()
		}
	case *actors.Delivery:
		if a.mb != nil {
			a.mb.received()
		}
		// Settled or superseded meanwhile, or held back behind an earlier Nak'ed message: not the actor's now.
		// After it, the deliveries parked behind it are due, in order (durable.go: release).
		if in, ok := m.Acker.(*durableInbox); ok {
			if in.take(m) {
				a.inner.Receive(ctx)
			}
			for d := in.release(); d != nil; d = in.release() {
				a.inner.Receive(deliveryContext{Context: ctx, d: d})
			}
			return
		}
	case *actor.Started:
		if a.started != nil {
			defer func() {
				if r := recover(); r != nil {
					a.started(fmt.Errorf("failed to start: %v", r)) // the supervisor must not wait for ever
					panic(r)                                        // and the failure is still the supervisor's to handle
				}
				a.started(nil)
			}()
		}
		restart := a.mb != nil && a.mb.isOpen()
		a.inner.Receive(ctx)
		if restart {
			a.mb.restarted()
		}
		if a.mb != nil {
			if err := a.mb.open(ctx.ActorSystem().Root, ctx.Self()); err != nil {
				panic(fmt.Errorf("%s: %w", a.path, err))
			}
		}
		a.reapplyFaults(ctx)
		a.tree.started(a.path, a.reconnecting)
		return
	case *actor.Stopping:
		// The actor first, then its mailbox: a sink settles at its stop what it delivered (the file sink syncs and
		// acks what the sync covered), and a memory buffer closed before that counted those messages as lost.
		a.inner.Receive(ctx)
		if a.mb != nil {
			a.mb.close()
		}
		return
	case *device.Write:
		a.tree.writeTaken(a.path)
	case *device.Browse:
		a.tree.browseTaken(a.path)
	case *actors.WorkerFailed:
		panic(m)
	case *actors.Fault:
		a.fault(ctx, m)
		return
	case *actors.FaultClear:
		if t, ok := a.inner.(actors.FaultTarget); ok {
			t.ClearFault(ctx, m.ID)
		}
		return
	}
	a.inner.Receive(ctx)
}

// reapplyFaults gives a new incarnation the lasting faults listed for its path: a fault outlives the incarnation it
// was injected into, so the list and what is in force agree after a restart.
func (a *mailboxActor) reapplyFaults(ctx actor.Context) {
	if a.faults == nil {
		return
	}
	t, ok := a.inner.(actors.FaultTarget)
	if !ok {
		return
	}
	for _, f := range a.faults() {
		if err := t.InjectFault(ctx, f); err != nil {
			a.log.Warn().Err(err).Str("actor", a.path).Str("fault", f.ID).Str("kind", f.Kind).Msg("fault not applied again after a restart")
		}
	}
}

// fault injects f: crash and stop for every actor, the others through the actor's own FaultTarget.
func (a *mailboxActor) fault(ctx actor.Context, f *actors.Fault) {
	switch f.Kind {
	case actors.FaultCrash:
		ctx.Respond(&actors.FaultReply{})
		panic(fmt.Sprintf("fault %s injected: crash", f.ID))
	case actors.FaultStop:
		ctx.Respond(&actors.FaultReply{})
		ctx.Stop(ctx.Self())
	default:
		t, ok := a.inner.(actors.FaultTarget)
		if !ok {
			ctx.Respond(&actors.FaultReply{Err: actors.ErrFaultUnsupported})
			return
		}
		ctx.Respond(&actors.FaultReply{Err: t.InjectFault(ctx, f)})
	}
}

// HandleFailure passes the failures of the wrapped actor's children to it when it supervises them (the
// supervisors are wrapped too); protoactor asks the actor itself before the props' strategy.
func (a *mailboxActor) HandleFailure(sys *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, msg any) {
	if s, ok := a.inner.(actor.SupervisorStrategy); ok {
		s.HandleFailure(sys, sup, child, rs, reason, msg)
		return
	}
	actor.DefaultSupervisorStrategy().HandleFailure(sys, sup, child, rs, reason, msg)
}

var _ actor.SupervisorStrategy = (*mailboxActor)(nil)
