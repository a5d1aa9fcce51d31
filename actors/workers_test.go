package actors

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// probe is an actor that starts workers on demand and reports what reaches it.
type probe struct {
	workers Workers
	start   func(ctx actor.Context, w *Workers)
	got     chan any
}

func (p *probe) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.start(ctx, &p.workers)
	case *actor.Stopping:
		p.workers.Stop()
	case *WorkerFailed, *Tick:
		p.got <- m
		if t, ok := m.(*Tick); ok {
			t.Ack()
		}
	}
}

func spawnProbe(t *testing.T, start func(ctx actor.Context, w *Workers)) (*actor.ActorSystem, *actor.PID, chan any) {
	t.Helper()
	sys := actor.NewActorSystem()
	got := make(chan any, 100)
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &probe{start: start, got: got} }))
	t.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })
	return sys, pid, got
}

func next(t *testing.T, ch chan any) any {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("nothing reached the actor")
		return nil
	}
}

func TestWorkerPanicReachesActor(t *testing.T) {
	_, _, got := spawnProbe(t, func(ctx actor.Context, w *Workers) {
		w.Go(ctx, "reader", func(<-chan struct{}, func(any)) error { panic("boom") })
	})
	wf, ok := next(t, got).(*WorkerFailed)
	if !ok || wf.Worker != "reader" || wf.Panic != "boom" || len(wf.Stack) == 0 {
		t.Fatalf("got %+v, want the reader's panic with its stack", wf)
	}
	if !strings.Contains(wf.Error(), "worker reader panicked: boom") {
		t.Errorf("error %q", wf.Error())
	}
}

func TestWorkerErrorAndEarlyExitReachActor(t *testing.T) {
	errRead := errors.New("read: connection reset")
	_, _, got := spawnProbe(t, func(ctx actor.Context, w *Workers) {
		w.Go(ctx, "a", func(<-chan struct{}, func(any)) error { return errRead })
		w.Go(ctx, "b", func(<-chan struct{}, func(any)) error { return nil })
	})
	seen := map[string]error{}
	for i := 0; i < 2; i++ {
		wf := next(t, got).(*WorkerFailed)
		seen[wf.Worker] = wf.Err
	}
	if !errors.Is(seen["a"], errRead) {
		t.Errorf("worker a: %v, want its error", seen["a"])
	}
	if !errors.Is(seen["b"], ErrWorkerExited) {
		t.Errorf("worker b: %v, want ErrWorkerExited", seen["b"])
	}
}

// TestStopWaitsForWorkers: Stop returns only when every worker has returned, so none outlives its actor, and a
// worker ending because of Stop is not reported as a failure.
func TestStopWaitsForWorkers(t *testing.T) {
	var running atomic.Int32
	w := &Workers{}
	sys := actor.NewActorSystem()
	ready := make(chan struct{})
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *actor.Started:
			for i := 0; i < 3; i++ {
				w.Go(ctx, "loop", func(done <-chan struct{}, _ func(any)) error {
					running.Add(1)
					defer running.Add(-1)
					<-done
					time.Sleep(20 * time.Millisecond) // a worker that takes a moment to clean up
					return nil
				})
			}
			close(ready)
		case *actor.Stopping:
			w.Stop()
		case *WorkerFailed:
			t.Errorf("a worker stopped by Stop was reported as failed")
		}
	}))
	<-ready
	for running.Load() != 3 {
		time.Sleep(time.Millisecond)
	}
	if err := sys.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
	if n := running.Load(); n != 0 {
		t.Errorf("%d workers still running after the actor stopped", n)
	}
}

// TestTickCoalesces: a tick is not sent again until the actor acknowledged it; periods that pass meanwhile are
// counted, not queued.
func TestTickCoalesces(t *testing.T) {
	var tick *Tick
	block := make(chan struct{})
	sys := actor.NewActorSystem()
	started := make(chan struct{})
	var received atomic.Int32
	w := &Workers{}
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *actor.Started:
			tick = w.Tick(ctx, "poll", time.Millisecond)
			close(started)
		case *actor.Stopping:
			w.Stop()
		case *Tick:
			received.Add(1)
			<-block // a slow poll
			m.Ack()
		}
	}))
	<-started
	deadline := time.Now().Add(5 * time.Second)
	for tick.Skipped() < 20 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if tick.Skipped() < 20 {
		t.Fatalf("skipped %d ticks while the actor was busy, want them counted", tick.Skipped())
	}
	if n := received.Load(); n != 1 {
		t.Errorf("actor received %d ticks while busy with the first, want 1", n)
	}
	close(block)
	_ = sys.Root.StopFuture(pid).Wait()
}
