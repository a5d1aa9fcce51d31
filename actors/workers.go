package actors

import (
	"errors"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// ErrWorkerExited is the error reported when a worker returns nil while its actor is still running: a goroutine
// that was meant to run for the actor's life has stopped, which is a failure too.
var ErrWorkerExited = errors.New("worker exited")

// Workers are the goroutines an actor owns for blocking I/O and timers. protoactor recovers panics inside Receive
// only: a panic in a goroutine the actor started would kill the whole process. Every worker started here recovers,
// and reports its panic or error to the actor as a *WorkerFailed message, where the supervisor sees it.
//
// Stop closes the done channel and waits for every worker to return, so an actor calls it on Stopping and
// Restarting and no goroutine outlives its actor. The zero value is ready to use; a Workers is used from the
// actor's Receive only (not from several goroutines).
type Workers struct {
	wg   sync.WaitGroup
	done chan struct{}
}

// Go starts fn in a goroutine owned by the actor of ctx. fn must return when done is closed; returning nil before
// that, returning an error or panicking is reported to the actor as a *WorkerFailed. fn talks to its actor through
// Send (the system's root context, which is safe from any goroutine), never through the actor's own context.
func (w *Workers) Go(ctx actor.Context, name string, fn func(done <-chan struct{}, send func(msg any)) error) {
	w.start(ctx, name, false, fn)
}

func (w *Workers) start(ctx actor.Context, name string, oneShot bool, fn func(done <-chan struct{}, send func(msg any)) error) {
	root, self := ctx.ActorSystem().Root, ctx.Self()
	send := func(msg any) { root.Send(self, msg) }
	if w.done == nil {
		w.done = make(chan struct{})
	}
	done := w.done
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
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
}

// Stop signals every worker to return and waits until they have.
func (w *Workers) Stop() {
	if w.done == nil {
		return
	}
	close(w.done)
	w.wg.Wait()
	w.done = nil
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

// Tick starts a worker that sends the returned *Tick to the actor every period, the first one right away.
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

// Task runs a one-off job in a goroutine owned by the actor (a request that must not block its mailbox). Unlike
// Go, returning nil is normal; an error or a panic is reported as a *WorkerFailed. fn must return when done is
// closed.
func (w *Workers) Task(ctx actor.Context, name string, fn func(done <-chan struct{}) error) {
	w.start(ctx, name, true, func(done <-chan struct{}, _ func(any)) error { return fn(done) })
}
