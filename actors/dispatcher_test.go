package actors

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// waitFor waits for cond with a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A run that blocks holds its own worker: the runs scheduled meanwhile go to other workers, and the idle ones are
// reused, not multiplied.
func TestDispatcherBlockedRunStallsNoOther(t *testing.T) {
	d := NewDispatcher(4)
	release := make(chan struct{})
	blocked := make(chan struct{})
	d.Schedule(func() { close(blocked); <-release })
	<-blocked
	var ran atomic.Int64
	for i := 0; i < 100; i++ {
		done := make(chan struct{})
		d.Schedule(func() { ran.Add(1); close(done) })
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("run %d did not run while another run blocked", i)
		}
		// The run is over when its worker is back on the idle list: the next run must find it there.
		waitFor(t, "the worker to be idle", func() bool { return d.Idle() >= 1 })
	}
	if got := ran.Load(); got != 100 {
		t.Fatalf("%d runs, want 100", got)
	}
	// One run at a time besides the blocked one: the runs reuse the worker the previous one left (a worker counted
	// idle may not be receiving yet, so a run can still start one: not every time).
	if live := d.Live(); live > 50 {
		t.Fatalf("%d workers alive for 100 runs one at a time, want the idle ones reused", live)
	}
	close(release)
	waitFor(t, "the released worker to be idle", func() bool { return d.Idle() >= 2 })
	d.Close()
	waitFor(t, "every worker to end at Close", func() bool { return d.Live() == 0 })
	// After Close a run still runs, on a goroutine of its own.
	done := make(chan struct{})
	d.Schedule(func() { close(done) })
	<-done
	waitFor(t, "the goroutine of a run after Close to end", func() bool { return d.Live() == 0 })
}

// At most maxIdle workers wait for work; the others end when their run does.
func TestDispatcherBoundsIdleWorkers(t *testing.T) {
	d := NewDispatcher(3)
	defer d.Close()
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(10)
	for i := 0; i < 10; i++ {
		d.Schedule(func() { started.Done(); <-release })
	}
	started.Wait()
	if live := d.Live(); live != 10 {
		t.Fatalf("%d workers for 10 blocked runs, want 10", live)
	}
	close(release)
	waitFor(t, "the workers beyond maxIdle to end", func() bool { return d.Live() == 3 && d.Idle() == 3 })
	d.Close()
	waitFor(t, "the idle workers to end at Close", func() bool { return d.Live() == 0 })
}

type dispatchProbe struct {
	got   chan any
	panic bool
}

func (p *dispatchProbe) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case string:
		if m == "panic" && p.panic {
			panic("probe")
		}
		p.got <- m
	case *actor.Restarting:
		p.got <- "restarting"
	}
}

// Actors spawned on the dispatcher get their messages in order, and a panic is escalated to the supervisor and
// restarts the actor as with protoactor's default dispatcher.
func TestDispatcherActorsAndSupervision(t *testing.T) {
	d := NewDispatcher(8)
	defer d.Close()
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	got := make(chan any, 1000)
	props := actor.PropsFromProducer(func() actor.Actor { return &dispatchProbe{got: got, panic: true} },
		actor.WithDispatcher(d))
	pid := sys.Root.Spawn(props)
	for i := 0; i < 500; i++ {
		sys.Root.Send(pid, string(rune('a'+i%26)))
	}
	for i := 0; i < 500; i++ {
		select {
		case m := <-got:
			if want := string(rune('a' + i%26)); m != want {
				t.Fatalf("message %d is %v, want %s", i, m, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d not received", i)
		}
	}
	sys.Root.Send(pid, "panic")
	sys.Root.Send(pid, "after")
	for _, want := range []string{"restarting", "after"} {
		select {
		case m := <-got:
			if m != want {
				t.Fatalf("got %v, want %s", m, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s not received", want)
		}
	}
}
