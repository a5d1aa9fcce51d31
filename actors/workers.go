package actors

import (
	"errors"
	"log/slog"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// ErrWorkerExited is the error reported when a worker returns nil while its actor is still running: a goroutine
// that was meant to run for the actor's life has stopped, which is a failure too.
var ErrWorkerExited = errors.New("worker exited")

// DefaultStopWait bounds how long Workers.Stop waits for the workers to return (Workers.StopWait).
const DefaultStopWait = time.Second

// Workers are the goroutines an actor owns for blocking I/O and timers. protoactor recovers panics inside Receive
// only: a panic in a goroutine the actor started would kill the whole process. Every worker started here recovers,
// and reports its panic or error to the actor as a *WorkerFailed message, where the supervisor sees it.
//
// Stop closes the done channel, runs the OnStop hooks (which close what a worker may be blocked on) and waits for
// every worker to return, so an actor calls it on Stopping and Restarting and no goroutine outlives its actor. The
// wait is bounded (StopWait): a worker still running then is logged by name and left to finish on its own. After
// Stop, Workers start nothing more (like nats-server's startGoRoutine once it is shutting down).
//
// What workers send is stamped with the incarnation of the actor that started them (see Incarnated): the runtime
// drops a message of an earlier incarnation (Stale) instead of delivering it to the next one, so a failure or a
// result of a worker that belonged to an incarnation that is gone can never restart, or be taken by, its
// successor.
//
// The zero value is ready to use; a Workers is used from the actor's Receive only (not from several goroutines).
type Workers struct {
	// StopWait bounds Stop's wait for the workers (0: DefaultStopWait).
	StopWait time.Duration

	wg      sync.WaitGroup
	done    chan struct{}
	stopped bool
	hooks   []func()
	log     *slog.Logger
	self    string

	mu      sync.Mutex
	running map[int]string // worker names by start number, for the log of a Stop that timed out
	seq     int
}

// Incarnated is implemented by an actor that numbers its incarnations: the runtime's wrapper of every actor it
// spawns, which gives each incarnation a number of its own and drops the messages that Stale says belong to
// another. An actor spawned without it gets what its workers send unstamped, as before.
type Incarnated interface {
	Incarnation() uint64
}

// headerIncarnation is the protoactor message header that carries the incarnation a worker's message comes from.
const headerIncarnation = "iot-incarnation"

// Stale says whether the message ctx is handling was sent by a worker of another incarnation of the actor than the
// one handling it (one that has been restarted or stopped since): such a message must be dropped. A message that
// carries no incarnation (a bus message, a request, a reply) is never stale.
func Stale(ctx actor.Context) bool {
	h := ctx.MessageHeader()
	if h == nil {
		return false
	}
	v := h.Get(headerIncarnation)
	if v == "" {
		return false
	}
	inc, ok := ctx.Actor().(Incarnated)
	if !ok {
		return false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	return err != nil || n != inc.Incarnation()
}

// Go starts fn in a goroutine owned by the actor of ctx and says whether it did: after Stop it starts nothing.
// fn must return when done is closed; returning nil before that, returning an error or panicking is reported to the
// actor as a *WorkerFailed. fn talks to its actor through send (the system's root context, safe from any goroutine,
// stamped with the actor's incarnation), never through the actor's own context.
func (w *Workers) Go(ctx actor.Context, name string, fn func(done <-chan struct{}, send func(msg any)) error) bool {
	return w.start(ctx, name, false, fn)
}

// OnStop registers fn to run at Stop, after done is closed and before the wait: closing a connection there makes
// a worker blocked in a read or write on it return at once. fn runs on the actor's goroutine.
func (w *Workers) OnStop(fn func()) {
	if w.stopped {
		fn()
		return
	}
	w.hooks = append(w.hooks, fn)
}

// Sender is the function by which a goroutine the actor of ctx manages itself (not through Workers) sends to it:
// safe from any goroutine, stamped with the actor's incarnation like a worker's.
func Sender(ctx actor.Context) func(msg any) { return sender(ctx) }

// sender returns the function by which the workers of ctx's actor send to it: stamped with its incarnation when
// the actor numbers them.
func sender(ctx actor.Context) func(msg any) {
	root, self := ctx.ActorSystem().Root, ctx.Self()
	inc, ok := ctx.Actor().(Incarnated)
	if !ok {
		return func(msg any) { root.Send(self, msg) }
	}
	header := incarnationHeader(inc.Incarnation())
	return func(msg any) { root.Send(self, &actor.MessageEnvelope{Header: header, Message: msg}) }
}

// incarnationHeaders holds one read-only header map per incarnation number below incarnationShared, shared by every
// actor's senders: a map per sender was 0.7 KB of a 1,000-device gateway's heap per device, and nearly all of
// them say the same (an actor's first incarnations). Nothing writes to a header once it is made.
var incarnationHeaders sync.Map // uint64 → map[string]string

const incarnationShared = 256

func incarnationHeader(n uint64) map[string]string {
	if n >= incarnationShared {
		return map[string]string{headerIncarnation: strconv.FormatUint(n, 10)}
	}
	if h, ok := incarnationHeaders.Load(n); ok {
		return h.(map[string]string)
	}
	h, _ := incarnationHeaders.LoadOrStore(n, map[string]string{headerIncarnation: strconv.FormatUint(n, 10)})
	return h.(map[string]string)
}

func (w *Workers) start(ctx actor.Context, name string, oneShot bool, fn func(done <-chan struct{}, send func(msg any)) error) bool {
	if w.stopped {
		ctx.Logger().Warn("worker not started: the actor's workers are stopped", slog.String("actor", ctx.Self().Id), slog.String("worker", name))
		return false
	}
	send := sender(ctx)
	if w.done == nil {
		w.done = make(chan struct{})
		w.log, w.self = ctx.Logger(), ctx.Self().Id
	}
	done := w.done
	w.mu.Lock()
	if w.running == nil {
		w.running = map[int]string{}
	}
	w.seq++
	id := w.seq
	w.running[id] = name
	w.mu.Unlock()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer func() {
			w.mu.Lock()
			delete(w.running, id)
			w.mu.Unlock()
		}()
		var failure *WorkerFailed
		defer func() {
			if r := recover(); r != nil {
				failure = &WorkerFailed{Worker: name, Panic: r, Stack: debug.Stack()}
			}
			if failure == nil {
				return
			}
			select {
			case <-done: // the actor is going away: nobody to tell
			default:
				send(failure)
			}
		}()
		err := fn(done, send)
		select {
		case <-done:
			return
		default:
		}
		if err == nil {
			if oneShot {
				return
			}
			err = ErrWorkerExited
		}
		failure = &WorkerFailed{Worker: name, Err: err}
	}()
	return true
}

// Stop signals every worker to return, runs the OnStop hooks and waits until the workers have returned, at most
// StopWait; the ones still running then are logged. Nothing starts after Stop.
func (w *Workers) Stop() {
	if w.stopped {
		return
	}
	w.stopped = true
	hooks := w.hooks
	w.hooks = nil
	if w.done == nil {
		for _, fn := range hooks {
			fn()
		}
		return
	}
	close(w.done)
	for _, fn := range hooks {
		fn()
	}
	wait := w.StopWait
	if wait <= 0 {
		wait = DefaultStopWait
	}
	returned := make(chan struct{})
	go func() { w.wg.Wait(); close(returned) }() // returns with the last worker: it outlives nothing
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-returned:
	case <-t.C:
		w.mu.Lock()
		names := make([]string, 0, len(w.running))
		for _, n := range w.running {
			names = append(names, n)
		}
		w.mu.Unlock()
		sort.Strings(names)
		w.log.Error("workers did not stop in time; left to finish on their own", slog.String("actor", w.self),
			slog.Any("workers", names), slog.Duration("waited", wait))
	}
}

// Tick is the message a ticker worker sends (see Workers.Tick). The same *Tick is sent every period; it is not sent
// again until the actor has called Ack, so a slow or restarting actor receives one pending tick, not a backlog,
// and the ticks it could not take are counted in Skipped.
type Tick struct {
	Name    string
	pending atomic.Bool
	skipped atomic.Uint64
}

// Ack marks the tick as taken; call it first when handling a *Tick.
func (t *Tick) Ack() { t.pending.Store(false) }

// Skipped is the number of periods that passed while the previous tick was still waiting in the mailbox.
func (t *Tick) Skipped() uint64 { return t.skipped.Load() }

// Tick sends the returned *Tick to the actor every period, the first one right away (after Stop, none: the
// *Tick is never sent). Every Tick of the process is driven by one goroutine (ticks, below), not one each: a
// goroutine per ticker was a parked stack per device (about 4 KiB, counted again in the collector's heap goal),
// which 1,000 Modbus devices paid for (issue 13's memory aim). A runtime timer per Tick (time.AfterFunc) saved the
// same memory but starts a goroutine at each firing, which cost a third more context switches at 1,000 ticks a
// second; one goroutine that sleeps until the earliest tick costs what a ticker goroutine did per firing. The
// periods stay on the grid of the first tick like a time.Ticker's: a late firing is not made up for. After the
// OnStop hook has run (at Stop), the Tick is never sent again.
func (w *Workers) Tick(ctx actor.Context, name string, every time.Duration) *Tick {
	t := &Tick{Name: name}
	if w.stopped {
		ctx.Logger().Warn("ticker not started: the actor's workers are stopped", slog.String("actor", ctx.Self().Id), slog.String("ticker", name))
		return t
	}
	if every <= 0 {
		panic("actors: Tick with a period of " + every.String())
	}
	k := &ticker{tick: t, every: every, send: sender(ctx), next: time.Now(), index: -1}
	ticks.add(k)
	w.OnStop(func() { ticks.remove(k) })
	return t
}

// ticker is one Tick on the schedule.
type ticker struct {
	tick  *Tick
	every time.Duration
	next  time.Time // its next firing, on the grid of the first
	send  func(any)
	index int // in the heap; -1 when not scheduled
}

// tickSchedule is the process's tickers in a heap by next firing, and the goroutine that fires them: it runs while
// there is a ticker and ends with the last one, so it outlives no actor.
type tickSchedule struct {
	mu      sync.Mutex
	heap    []*ticker
	running bool
	wake    chan struct{} // an earlier ticker than the one slept for was added
}

var ticks = tickSchedule{wake: make(chan struct{}, 1)}

func (s *tickSchedule) add(k *ticker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.push(k)
	if !s.running {
		s.running = true
		go s.run()
		return
	}
	if k.index == 0 {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// remove takes k off the schedule; when it returns, k is not being fired and never will be again.
func (s *tickSchedule) remove(k *ticker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k.index >= 0 {
		s.removeAt(k.index)
	}
}

func (s *tickSchedule) run() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		if len(s.heap) == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		now := time.Now()
		for len(s.heap) > 0 && !s.heap[0].next.After(now) {
			s.fire(s.heap[0], now)
		}
		var wait time.Duration
		if len(s.heap) > 0 {
			wait = s.heap[0].next.Sub(now)
		}
		s.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-s.wake:
		}
	}
}

// fire sends k's tick (or counts it skipped) and moves k to its next period; s.mu is held.
func (s *tickSchedule) fire(k *ticker, now time.Time) {
	defer func() { // this goroutine serves every actor's ticks: a panic must not end it or the process
		if r := recover(); r != nil {
			if k.index >= 0 {
				s.removeAt(k.index)
			}
			k.send(&WorkerFailed{Worker: "ticker " + k.tick.Name, Panic: r, Stack: debug.Stack()})
		}
	}()
	if k.tick.pending.CompareAndSwap(false, true) {
		k.send(k.tick)
	} else {
		k.tick.skipped.Add(1)
	}
	k.next = k.next.Add(k.every)
	if k.next.Before(now) {
		k.next = k.next.Add((now.Sub(k.next)/k.every + 1) * k.every)
	}
	s.down(k.index)
}

// The heap (container/heap's algorithm, on the concrete type: no interface calls per firing).

func (s *tickSchedule) less(i, j int) bool { return s.heap[i].next.Before(s.heap[j].next) }

func (s *tickSchedule) swap(i, j int) {
	s.heap[i], s.heap[j] = s.heap[j], s.heap[i]
	s.heap[i].index, s.heap[j].index = i, j
}

func (s *tickSchedule) push(k *ticker) {
	k.index = len(s.heap)
	s.heap = append(s.heap, k)
	s.up(k.index)
}

func (s *tickSchedule) removeAt(i int) {
	last := len(s.heap) - 1
	k := s.heap[i]
	if i != last {
		s.swap(i, last)
	}
	s.heap[last] = nil
	s.heap = s.heap[:last]
	k.index = -1
	if i != last {
		s.down(i)
		s.up(i)
	}
}

func (s *tickSchedule) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !s.less(j, i) {
			break
		}
		s.swap(i, j)
		j = i
	}
}

func (s *tickSchedule) down(i int) {
	n := len(s.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		j := l
		if r := l + 1; r < n && s.less(r, l) {
			j = r
		}
		if !s.less(j, i) {
			return
		}
		s.swap(i, j)
		i = j
	}
}

// Task runs a one-off job in a goroutine owned by the actor (a request that must not block its mailbox) and says
// whether it started (not after Stop). Unlike Go, returning nil is normal; an error or a panic is reported as a
// *WorkerFailed. fn must return when done is closed.
func (w *Workers) Task(ctx actor.Context, name string, fn func(done <-chan struct{}) error) bool {
	return w.start(ctx, name, true, func(done <-chan struct{}, _ func(any)) error { return fn(done) })
}
