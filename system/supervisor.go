package system

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
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
//     from the initial delay.
//
// Children start in spec order and stop in reverse, one at a time, each drained first: producers (devices) stop
// before the consumers (sinks) that their last messages are still travelling to.
type supervisor struct {
	path   string
	specs  []ChildSpec
	policy config.Supervisor
	rt     *Runtime
	log    zerolog.Logger

	children []*child // start order
	byID     map[string]*child
	stopping bool
}

type child struct {
	spec     ChildSpec
	path     string
	pid      *actor.PID
	mb       *subjectMailbox
	failures []time.Time
	restarts int
	failed   bool
	timer    *time.Timer
}

// restartDue is sent to the supervisor itself when a child's backoff has passed.
type restartDue struct{ c *child }

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

func newSupervisor(rt *Runtime, path string, policy config.Supervisor, specs []ChildSpec) actor.Producer {
	return func() actor.Actor {
		return &supervisor{
			path: path, specs: specs, policy: policy, rt: rt,
			log:  rt.log.With().Str("supervisor", path).Logger(),
			byID: map[string]*child{},
		}
	}
}

func (s *supervisor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		for _, spec := range s.specs {
			_ = s.spawn(ctx, spec) // logged and marked failed in the tree; the siblings start anyway
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
		ctx.Respond(&childReply{s.spawn(ctx, m.spec)})
	case *removeChild:
		c := s.find(m.name)
		if c == nil {
			ctx.Respond(&childReply{fmt.Errorf("%s: %w", s.childPath(m.name), ErrNoChild)})
			return
		}
		s.stopChild(ctx, c)
		s.forget(c)
		ctx.Respond(&childReply{})
	case *restartDue:
		c := m.c
		c.timer = nil
		if s.stopping || c.failed || c.pid == nil {
			return
		}
		targets := []*actor.PID{c.pid}
		if s.policy.Strategy == "all_for_one" {
			targets = s.livePIDs()
		}
		ctx.(actor.Supervisor).RestartChildren(targets...)
	}
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

func (s *supervisor) spawn(ctx actor.Context, spec ChildSpec) error {
	c := &child{spec: spec, path: s.childPath(spec.Name)}
	first := spec.Producer()
	if l, ok := first.(actors.Listener); ok {
		if in := l.Inboxes(); len(in) > 0 {
			c.mb = newSubjectMailbox(s.rt.bus.Conn, in, spec.Mailbox)
		}
	}
	s.rt.tree.add(c.path, spec.Kind, c.mb)
	started := make(chan error, 1)
	var once sync.Once
	signal := func(err error) { once.Do(func() { started <- err }) }
	wrap := func(a actor.Actor) actor.Actor {
		return &mailboxActor{inner: a, mb: c.mb, path: c.path, tree: s.rt.tree, started: signal}
	}
	producer := func() actor.Actor {
		if first != nil {
			a := first
			first = nil
			return wrap(a)
		}
		return wrap(spec.Producer())
	}
	pid, err := ctx.SpawnNamed(actor.PropsFromProducer(producer), spec.Name)
	if err != nil {
		s.log.Error().Err(err).Str("actor", c.path).Msg("cannot spawn actor")
		s.rt.tree.update(c.path, func(e *treeEntry) { e.state, e.lastError = StateFailed, err.Error() })
		return fmt.Errorf("%s: %w", c.path, err)
	}
	c.pid = pid
	s.children = append(s.children, c)
	s.byID[pid.Id] = c
	// Wait until it listens: its subscriptions go out on the shared connection before anything a later sibling
	// publishes, so a sink or the processor never misses a device's first poll.
	select {
	case err := <-started:
		if err != nil {
			return fmt.Errorf("%s: %w", c.path, err)
		}
	case <-time.After(s.rt.stopTimeout):
		s.log.Warn().Str("actor", c.path).Msg("slow to start; starting its siblings anyway")
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
		<-done
	}
	if c.mb != nil {
		c.mb.close()
	}
}

func (s *supervisor) terminated(pid *actor.PID) {
	c, ok := s.byID[pid.Id]
	if !ok {
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
	if !ok {
		sup.StopChildren(pid)
		return
	}
	now := time.Now()
	kept := c.failures[:0]
	for _, t := range c.failures {
		if now.Sub(t) < s.policy.Within {
			kept = append(kept, t)
		}
	}
	c.failures = append(kept, now)
	errText := describe(reason)
	s.rt.tree.update(c.path, func(e *treeEntry) { e.lastError, e.errorAt = errText, now })

	if s.stopping {
		sup.StopChildren(pid)
		return
	}
	if len(c.failures) > s.policy.MaxRestarts {
		c.failed = true
		s.rt.tree.setState(c.path, StateFailed)
		s.log.Error().Str("actor", c.path).Str("error", errText).Int("restarts", c.restarts).
			Msgf("failed %d times within %s: stopped for good", len(c.failures), s.policy.Within)
		s.publishEvent(c, "failed", errText, 0)
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
	s.log.Warn().Str("actor", c.path).Str("error", errText).Int("restart", c.restarts).Dur("backoff", delay).
		Msg("actor failed; restarting after backoff")
	s.publishEvent(c, "restarting", errText, delay)
	root, self := sys.Root, sup.(actor.Context).Self()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.timer = time.AfterFunc(delay, func() { root.Send(self, &restartDue{c: c}) })
}

// backoff is the delay before restart number n (1-based): initial × 2^(n-1), jittered by ±jitter, capped at max.
func (s *supervisor) backoff(n int) time.Duration {
	b := s.policy.Backoff
	d := float64(b.Initial) * math.Pow(2, float64(n-1))
	if b.Jitter > 0 {
		d *= 1 + b.Jitter*(2*rand.Float64()-1)
	}
	if d > float64(b.Max) {
		d = float64(b.Max)
	}
	return time.Duration(d)
}

// SupervisorEvent is published on iot.errors.supervisor.{name} when an actor fails.
type SupervisorEvent struct {
	Actor     string `json:"actor"` // path, e.g. "devices/plc-1"
	Kind      string `json:"kind"`
	Event     string `json:"event"` // "restarting" or "failed"
	Error     string `json:"error"`
	Restarts  int    `json:"restarts"`
	Failures  int    `json:"failures"` // within the window
	BackoffMS int64  `json:"backoff_ms,omitempty"`
	Timestamp int64  `json:"timestamp"` // Unix ns
	Gateway   string `json:"gateway"`
}

func (s *supervisor) publishEvent(c *child, event, errText string, delay time.Duration) {
	ev := SupervisorEvent{
		Actor: c.path, Kind: c.spec.Kind, Event: event, Error: errText, Restarts: c.restarts,
		Failures: len(c.failures), BackoffMS: delay.Milliseconds(), Timestamp: time.Now().UnixNano(),
		Gateway: s.rt.cfg.Gateway.ID,
	}
	data, _ := json.Marshal(ev)
	msg := &nats.Msg{Subject: "iot.errors.supervisor." + c.spec.Name, Data: data, Header: nats.Header{}}
	msg.Header.Set(actors.HeaderSource, "supervisor")
	if err := s.rt.bus.Conn.PublishMsg(msg); err != nil {
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
