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

// sender returns the function by which the workers of ctx's actor send to it: stamped with its incarnation when
// the actor numbers them.
func sender(ctx actor.Context) func(msg any) {
	root, self := ctx.ActorSystem().Root, ctx.Self()
	inc, ok := ctx.Actor().(Incarnated)
	if !ok {
		return func(msg any) { root.Send(self, msg) }
	}
	header := map[string]string{headerIncarnation: strconv.FormatUint(inc.Incarnation(), 10)} // read-only from here
	return func(msg any) { root.Send(self, &actor.MessageEnvelope{Header: header, Message: msg}) }
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

// Tick starts a worker that sends the returned *Tick to the actor every period, the first one right away (after
// Stop, none: the *Tick is never sent).
func (w *Workers) Tick(ctx actor.Context, name string, every time.Duration) *Tick {
	t := &Tick{Name: name}
	w.Go(ctx, "ticker "+name, func(done <-chan struct{}, send func(any)) error {
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			if t.pending.CompareAndSwap(false, true) {
				send(t)
			} else {
				t.skipped.Add(1)
			}
			select {
			case <-done:
				return nil
			case <-tk.C:
			}
		}
	})
	return t
}

// Task runs a one-off job in a goroutine owned by the actor (a request that must not block its mailbox) and says
// whether it started (not after Stop). Unlike Go, returning nil is normal; an error or a panic is reported as a
// *WorkerFailed. fn must return when done is closed.
func (w *Workers) Task(ctx actor.Context, name string, fn func(done <-chan struct{}) error) bool {
	return w.start(ctx, name, true, func(done <-chan struct{}, _ func(any)) error { return fn(done) })
}
