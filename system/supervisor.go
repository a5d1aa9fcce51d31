package system

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/actors/device"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/internal/backoff"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// ChildSpec is one actor a supervisor starts, restarts and stops.
type ChildSpec struct {
	Name     string // unique among its siblings; the last segment of its path
	Kind     string // "device/mock", "sink/console", "supervisor", …
	Producer actor.Producer
	// Mailbox is the capacity of its subject mailbox (0: DefaultMailboxCapacity).
	Mailbox int
}

// supervisor is the gateway's supervisor actor. protoactor's strategies do not fit (its exponential backoff grows
// linearly, has no cap and never gives up; one-for-one restarts at once), so the supervisor is its own
// actor.SupervisorStrategy, which protoactor consults for failures of the actor's children:
//
//   - a failing child waits out a capped exponential backoff with jitter (initial × 2^(n-1), at most max) before it
//     restarts, its mailbox suspended meanwhile; siblings are untouched (one_for_one) or restarted with it
//     (all_for_one);
//   - more than max_restarts failures within the window stop it for good: it is marked failed in the tree and an
//     event goes to iot.errors.supervisor.{name}; the gateway keeps running;
//   - failures older than the window are forgotten, so a child that has been stable for a window starts again
//     from the initial delay;
//   - a peer failure (actors.IsPeerFailure: a refused connection, a lost heartbeat, an exited sidecar) is not the
//     child's fault: it is retried at the same capped backoff for as long as the child is configured, never
//     counted against max_restarts, and the child shows "disconnected". A child that implements
//     actors.Reconnector is restarted at once and told the delay (ReconnectAfter), so its mailbox stays
//     responsive while it waits; the others wait it out suspended, as after a crash. Only the child itself
//     restarts, also under all_for_one: its siblings did nothing wrong.
//
// The children's specs live in a childList the runtime keeps, not in the supervisor: a supervisor that is itself
// restarted starts the children it had (devices added at run time included), not the ones it started with.
//
// Children start in spec order and stop in reverse, one at a time, each drained first: producers (devices) stop
// before the consumers (sinks) that their last messages are still travelling to.
type supervisor struct {
	path   string
	list   *childList
	policy config.Supervisor
	rt     *Runtime
	log    zerolog.Logger

	children []*child // start order
	byID     map[string]*child
	stopping bool
}

type child struct {
	spec         ChildSpec
	path         string
	pid          *actor.PID
	mb           *subjectMailbox
	failures     []time.Time // crashes within the window
	peerFailures []time.Time // peer failures within the window: they set the backoff, never a limit
	restarts     int
	failed       bool
	timer        *time.Timer
	reconnector  bool         // its actor implements actors.Reconnector
	reconnect    atomic.Int64 // the delay (ns) for the next incarnation's ReconnectAfter; read by its producer
	reconnectBy  time.Time    // when the delay handed to the current incarnation is over
}

// childList is a supervisor's children in start order. The runtime keeps it, and the supervisor keeps it current
// as children are added and removed, so that a restarted supervisor starts what it had.
type childList struct {
	mu    sync.Mutex
	specs []ChildSpec
}

func newChildList(specs []ChildSpec) *childList { return &childList{specs: specs} }

func (l *childList) snapshot() []ChildSpec {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]ChildSpec(nil), l.specs...)
}

// put adds spec at the end, or replaces the spec of that name where it stands.
func (l *childList) put(spec ChildSpec) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, s := range l.specs {
		if s.Name == spec.Name {
			l.specs[i] = spec
			return
		}
	}
	l.specs = append(l.specs, spec)
}

func (l *childList) remove(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, s := range l.specs {
		if s.Name == name {
			l.specs = append(l.specs[:i:i], l.specs[i+1:]...)
			return
		}
	}
}

// restartDue is sent to the supervisor itself when a child's backoff has passed; alone restarts only the child,
// whatever the strategy (after a peer failure).
type restartDue struct {
	c     *child
	alone bool
}

// restartChild asks a supervisor to stop a child (failed, stopped or running) and start it afresh from its spec,
// its failure count forgotten; the reply is a childReply.
type restartChild struct{ name string }

// addChild asks a supervisor to start one more child (a device added at run time); the reply is an error or nil.
type addChild struct{ spec ChildSpec }

// removeChild asks a supervisor to stop a child (drained first) and forget it; the reply is an error or nil.
type removeChild struct{ name string }

// childReply answers addChild and removeChild.
type childReply struct{ err error }

// ErrChildExists and ErrNoChild are the replies to addChild and removeChild that could not be done.
var (
	ErrChildExists = errors.New("an actor with this name exists")
	ErrNoChild     = errors.New("no such actor")
)

var _ actor.SupervisorStrategy = (*supervisor)(nil)

func newSupervisor(rt *Runtime, path string, policy config.Supervisor, list *childList) actor.Producer {
	return func() actor.Actor {
		return &supervisor{
			path: path, list: list, policy: policy, rt: rt,
			log:  rt.log.With().Str("supervisor", path).Logger(),
			byID: map[string]*child{},
		}
	}
}

func (s *supervisor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		for _, spec := range s.list.snapshot() {
			_ = s.spawn(ctx, spec) // logged and marked failed in the tree; the siblings start anyway
		}
	case *actor.Restarting:
		// protoactor stops the children; no backoff of theirs may fire into the next incarnation.
		for _, c := range s.children {
			if c.timer != nil {
				c.timer.Stop()
				c.timer = nil
			}
		}
	case *actor.Stopping:
		s.stopping = true
		s.stopChildren(ctx)
	case *actor.Terminated:
		s.terminated(m.Who)
	case *addChild:
		if s.find(m.spec.Name) != nil {
			ctx.Respond(&childReply{fmt.Errorf("%s: %w", s.childPath(m.spec.Name), ErrChildExists)})
			return
		}
		err := s.spawn(ctx, m.spec)
		if s.find(m.spec.Name) != nil { // spawned, even if it failed to start: it is supervised now
			s.list.put(m.spec)
		}
		ctx.Respond(&childReply{err})
	case *removeChild:
		c := s.find(m.name)
		if c == nil {
			ctx.Respond(&childReply{fmt.Errorf("%s: %w", s.childPath(m.name), ErrNoChild)})
			return
		}
		s.stopChild(ctx, c)
		s.forget(c)
		s.list.remove(m.name)
		ctx.Respond(&childReply{})
	case *restartChild:
		c := s.find(m.name)
		if c == nil {
			ctx.Respond(&childReply{fmt.Errorf("%s: %w", s.childPath(m.name), ErrNoChild)})
			return
		}
		ctx.Respond(&childReply{s.restartByHand(ctx, c)})
	case *restartDue:
		c := m.c
		c.timer = nil
		if s.stopping || c.failed || c.pid == nil {
			return
		}
		targets := []*actor.PID{c.pid}
		if s.policy.Strategy == "all_for_one" && !m.alone {
			targets = s.livePIDs()
		}
		ctx.(actor.Supervisor).RestartChildren(targets...)
	}
}

// restartByHand stops c (drained, or at once when it waits out a backoff) and starts it afresh from its spec:
// an operator's restart (iot.control.actors.restart) or a reload's, of an actor that failed for good or was
// stopped. Its failures are forgotten, its restarts counted.
func (s *supervisor) restartByHand(ctx actor.Context, c *child) error {
	s.stopChild(ctx, c)
	c.failed, c.failures, c.peerFailures = false, nil, nil
	c.reconnect.Store(0)
	c.reconnectBy = time.Time{}
	restarts := c.restarts + 1
	err := s.start(ctx, c)
	c.restarts = restarts
	s.rt.tree.update(c.path, func(e *treeEntry) { e.restarts = restarts })
	s.log.Info().Str("actor", c.path).Int("restarts", restarts).Msg("restarted by hand")
	return err
}

func (s *supervisor) childPath(name string) string {
	if s.path == rootPath {
		return name
	}
	return s.path + "/" + name
}

func (s *supervisor) find(name string) *child {
	for _, c := range s.children {
		if c.spec.Name == name {
			return c
		}
	}
	return nil
}

func (s *supervisor) forget(c *child) {
	for i, o := range s.children {
		if o == c {
			s.children = append(s.children[:i], s.children[i+1:]...)
			break
		}
	}
	s.rt.tree.remove(c.path)
}

// spawn starts a new child from spec and appends it to the children.
func (s *supervisor) spawn(ctx actor.Context, spec ChildSpec) error {
	c := &child{spec: spec, path: s.childPath(spec.Name)}
	err := s.start(ctx, c)
	if c.pid != nil {
		s.children = append(s.children, c)
	}
	return err
}

// start spawns c's actor (a new child, or one restarted by hand) and waits until it has started.
func (s *supervisor) start(ctx actor.Context, c *child) error {
	spec := c.spec
	c.pid = nil
	first := spec.Producer()
	_, c.reconnector = first.(actors.Reconnector)
	_, writer := first.(device.Writer)
	_, browser := first.(device.Browser)
	c.mb = nil
	if l, ok := first.(actors.Listener); ok {
		if in := l.Inboxes(); len(in) > 0 {
			c.mb = newSubjectMailbox(s.rt.bus.Conn, in, spec.Mailbox, s.rt.budget).withDurable(s.rt.durableEnv())
		}
	}
	s.rt.tree.add(c.path, spec.Kind, c.mb)
	if writer {
		s.rt.tree.update(c.path, func(e *treeEntry) { e.takesWrites = true })
	}
	if browser {
		s.rt.tree.update(c.path, func(e *treeEntry) { e.takesBrowse = true })
	}
	started := make(chan error, 1)
	var once sync.Once
	signal := func(err error) { once.Do(func() { started <- err }) }
	mb := c.mb
	var faults func() []*actors.Fault
	if fm, path := s.rt.faults, c.path; fm != nil {
		faults = func() []*actors.Fault { return fm.of(path) }
	}
	// The producer builds every incarnation: the first here, the others on the child's own goroutine when it
	// restarts. After a peer failure it hands a Reconnector its backoff before the incarnation's Started.
	producer := func() actor.Actor {
		a := first
		if a != nil {
			first = nil
		} else {
			a = spec.Producer()
		}
		w := &mailboxActor{inner: a, mb: mb, path: c.path, tree: s.rt.tree, started: signal,
			incarnation: s.rt.incarnations.Add(1), log: s.log, faults: faults}
		if d := time.Duration(c.reconnect.Swap(0)); d > 0 {
			if r, ok := a.(actors.Reconnector); ok {
				r.ReconnectAfter(d)
				w.reconnecting = true
			}
		}
		return w
	}
	pid, err := ctx.SpawnNamed(s.rt.props(producer), spec.Name)
	if err != nil {
		s.log.Error().Err(err).Str("actor", c.path).Msg("cannot spawn actor")
		s.rt.tree.update(c.path, func(e *treeEntry) { e.state, e.lastError = StateFailed, err.Error() })
		return fmt.Errorf("%s: %w", c.path, err)
	}
	c.pid = pid
	s.byID[pid.Id] = c
	if writer {
		s.rt.tree.update(c.path, func(e *treeEntry) { e.writer = pid })
	}
	if browser {
		s.rt.tree.update(c.path, func(e *treeEntry) { e.browser = pid })
	}
	// Wait until it listens: its subscriptions go out on the shared connection before anything a later sibling
	// publishes, so a sink or the processor never misses a device's first poll.
	// The wait holds this supervisor's mailbox: it is bounded by a stop's budget, and a shutdown ends it at once.
	wait := time.NewTimer(s.rt.stopBudget())
	defer wait.Stop()
	select {
	case err := <-started:
		if err != nil {
			return fmt.Errorf("%s: %w", c.path, err)
		}
	case <-wait.C:
		s.log.Warn().Str("actor", c.path).Msg("slow to start; starting its siblings anyway")
	case <-s.rt.quit:
		s.log.Warn().Str("actor", c.path).Msg("gateway stopping before the actor started")
	}
	s.log.Debug().Str("actor", c.path).Str("kind", spec.Kind).Msg("started")
	return nil
}

// stopChildren stops the children in reverse start order, each drained and then poisoned, so it processes what
// is already in its mailbox; a child that does not stop in time is stopped outright.
func (s *supervisor) stopChildren(ctx actor.Context) {
	for i := len(s.children) - 1; i >= 0; i-- {
		s.stopChild(ctx, s.children[i])
	}
}

func (s *supervisor) stopChild(ctx actor.Context, c *child) {
	inBackoff := c.timer != nil
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if c.pid == nil {
		return
	}
	var f *actor.Future
	if inBackoff {
		// Its mailbox is suspended until the restart that will not come: a poison pill would wait behind it.
		f = ctx.StopFuture(c.pid)
	} else {
		if c.mb != nil {
			c.mb.drain(s.rt.stopBudget() / 4)
		}
		f = ctx.PoisonFuture(c.pid)
	}
	done := make(chan struct{})
	go func() { _ = f.Wait(); close(done) }()
	// A child that has just failed waits, suspended, for this supervisor to handle the failure, which it cannot
	// while it waits here: do not wait long for the poison pill to come through.
	wait := min(s.rt.stopBudget(), time.Second)
	if inBackoff {
		wait = s.rt.stopBudget()
	}
	select {
	case <-done:
	case <-time.After(wait):
		s.log.Warn().Str("actor", c.path).Msg("did not stop in time; stopping it outright")
		ctx.Stop(c.pid)
		// Stopped outright it still runs its Stopping (its workers' bounded Stop): wait for that, not for ever.
		select {
		case <-done:
		case <-time.After(s.rt.stopBudget()):
			s.log.Error().Str("actor", c.path).Msg("did not stop even outright; left behind")
		}
	}
	if c.mb != nil {
		c.mb.close()
	}
}

func (s *supervisor) terminated(pid *actor.PID) {
	c, ok := s.byID[pid.Id]
	if !ok || c.pid != pid {
		// An earlier incarnation of a child restarted by hand: the name (and so the id) is the same, the PID is
		// not (protoactor's Terminated carries the very *PID the spawn returned).
		return
	}
	delete(s.byID, pid.Id)
	c.pid = nil
	if c.failed {
		return // already marked failed
	}
	s.rt.tree.setState(c.path, StateStopped)
}

func (s *supervisor) livePIDs() []*actor.PID {
	var out []*actor.PID
	for _, c := range s.children {
		if c.pid != nil && !c.failed {
			out = append(out, c.pid)
		}
	}
	return out
}

// HandleFailure is protoactor's hook for a child that panicked. It runs on the supervisor's mailbox, like Receive.
func (s *supervisor) HandleFailure(sys *actor.ActorSystem, sup actor.Supervisor, pid *actor.PID, _ *actor.RestartStatistics, reason any, _ any) {
	c, ok := s.byID[pid.Id]
	if !ok || c.pid != pid {
		sup.StopChildren(pid)
		return
	}
	now := time.Now()
	errText := describe(reason)
	s.rt.tree.update(c.path, func(e *treeEntry) { e.lastError, e.errorAt = errText, now })

	if s.stopping {
		sup.StopChildren(pid)
		return
	}
	if isPeerFailure(reason) {
		s.peerFailure(sys, sup, c, errText, now)
		return
	}
	c.failures = append(recent(c.failures, now, s.policy.Within), now)
	if len(c.failures) > s.policy.MaxRestarts {
		c.failed = true
		s.rt.tree.setState(c.path, StateFailed)
		s.log.Error().Str("actor", c.path).Str("error", errText).Int("restarts", c.restarts).
			Msgf("failed %d times within %s: stopped for good", len(c.failures), s.policy.Within)
		s.publishEvent(c, "failed", errText, 0, len(c.failures))
		sup.StopChildren(pid)
		return
	}

	delay := s.backoff(len(c.failures))
	c.restarts++
	s.rt.tree.update(c.path, func(e *treeEntry) { e.state, e.restarts = StateRestarting, c.restarts })
	if s.policy.Strategy == "all_for_one" {
		for _, o := range s.children {
			if o != c && o.pid != nil && !o.failed {
				o.restarts++
				s.rt.tree.update(o.path, func(e *treeEntry) { e.state, e.restarts = StateRestarting, o.restarts })
			}
		}
	}
	s.log.Warn().Str("actor", c.path).Str("error", errText).Int("restart", c.restarts).Int64("backoff_ms", delay.Milliseconds()).
		Msg("actor failed; restarting after backoff")
	s.publishEvent(c, "restarting", errText, delay, len(c.failures))
	s.restartAfter(sys, sup, c, delay, false)
}

// peerFailure handles a failure that is the peer's: retried for ever at the capped backoff, shown disconnected.
// The event is "disconnected" when the actor was connected (or had no peer failure within the window) before,
// "retrying" while the peer stays away.
func (s *supervisor) peerFailure(sys *actor.ActorSystem, sup actor.Supervisor, c *child, errText string, now time.Time) {
	// The peer failures are remembered at least two capped delays, so that a window shorter than the cap cannot
	// bring a long outage back to the initial delay after every attempt.
	kept := recent(c.peerFailures, now, max(s.policy.Within, 2*s.policy.Backoff.Max))
	away := len(kept) > 0
	c.peerFailures = append(kept, now)
	delay := s.backoff(len(c.peerFailures))
	c.restarts++
	var link string
	s.rt.tree.update(c.path, func(e *treeEntry) {
		link = e.link
		e.state, e.link, e.restarts = StateDisconnected, actors.LinkDisconnected, c.restarts
	})
	event := "disconnected"
	if away && link != actors.LinkConnected {
		event = "retrying"
	}
	s.log.Warn().Str("actor", c.path).Str("error", errText).Int("restart", c.restarts).Int64("backoff_ms", delay.Milliseconds()).
		Str("event", event).Msg("peer unreachable; retrying after backoff")
	s.publishEvent(c, event, errText, delay, len(c.peerFailures))
	// Restarted now, a Reconnector waits the backoff itself and answers its mailbox meanwhile. One that failed
	// again before its previous delay was over did not keep to it: it waits suspended instead, so that a broken
	// Reconnector cannot spin.
	if c.reconnector && !now.Before(c.reconnectBy) {
		c.reconnect.Store(int64(delay))
		c.reconnectBy = now.Add(delay)
		sup.RestartChildren(c.pid)
		return
	}
	if c.reconnector {
		s.log.Warn().Str("actor", c.path).Msg("failed again before its reconnect delay was over; waiting the backoff suspended")
		c.reconnectBy = now.Add(delay)
	}
	s.restartAfter(sys, sup, c, delay, true)
}

// isPeerFailure is actors.IsPeerFailure, and also sees a worker that panicked with a peer failure.
func isPeerFailure(reason any) bool {
	if wf, ok := reason.(*actors.WorkerFailed); ok && wf.Panic != nil {
		return actors.IsPeerFailure(wf.Panic)
	}
	return actors.IsPeerFailure(reason)
}

// recent is ts without the times older than window.
func recent(ts []time.Time, now time.Time, window time.Duration) []time.Time {
	kept := ts[:0]
	for _, t := range ts {
		if now.Sub(t) < window {
			kept = append(kept, t)
		}
	}
	return kept
}

// restartAfter restarts c (and, under all_for_one unless alone, its siblings) once delay has passed; its mailbox
// stays suspended meanwhile.
func (s *supervisor) restartAfter(sys *actor.ActorSystem, sup actor.Supervisor, c *child, delay time.Duration, alone bool) {
	root, self := sys.Root, sup.(actor.Context).Self()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.timer = time.AfterFunc(delay, func() { root.Send(self, &restartDue{c: c, alone: alone}) })
}

// backoff is the delay before restart number n (1-based): the policy's capped exponential backoff, jittered at
// the cap too (package backoff), so actors that fail together do not restart in lockstep.
func (s *supervisor) backoff(n int) time.Duration {
	b := s.policy.Backoff
	return backoff.Policy{Initial: b.Initial, Max: b.Max, Jitter: b.Jitter}.Delay(n)
}

// SupervisorEvent is published on iot.errors.supervisor.{name} when an actor fails.
type SupervisorEvent struct {
	Actor     string `json:"actor"` // path, e.g. "devices/plc-1"
	Kind      string `json:"kind"`
	Event     string `json:"event"` // "restarting" or "failed" (crashes); "disconnected" or "retrying" (peer failures)
	Error     string `json:"error"`
	Restarts  int    `json:"restarts"`
	Failures  int    `json:"failures"` // within the window: crashes, or peer failures for a peer event
	BackoffMS int64  `json:"backoff_ms,omitempty"`
	Timestamp int64  `json:"timestamp"` // Unix ns
	Gateway   string `json:"gateway"`
}

func (s *supervisor) publishEvent(c *child, event, errText string, delay time.Duration, failures int) {
	ev := SupervisorEvent{
		Actor: c.path, Kind: c.spec.Kind, Event: event, Error: errText, Restarts: c.restarts,
		Failures: failures, BackoffMS: delay.Milliseconds(), Timestamp: time.Now().UnixNano(),
		Gateway: s.rt.cfg.Gateway.ID,
	}
	data, _ := json.Marshal(ev)
	msg := &nats.Msg{Subject: "iot.errors.supervisor." + c.spec.Name, Data: data, Header: nats.Header{}}
	msg.Header.Set(actors.HeaderSource, "supervisor")
	if err := s.rt.bus.Publisher().PublishMsg(msg); err != nil { // queued until the first connection to an external server
		s.log.Error().Err(err).Str("subject", msg.Subject).Msg("cannot publish supervisor event")
	}
}

// describe turns a panic value into one line for logs, the tree and events.
func describe(reason any) string {
	switch r := reason.(type) {
	case error:
		return r.Error()
	case string:
		return r
	default:
		return fmt.Sprint(r)
	}
}
