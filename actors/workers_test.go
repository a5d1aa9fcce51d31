package actors

import (
	"errors"
	"net"
	"reflect"
	"strconv"
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

// numbered is an actor that numbers its incarnations like the runtime's wrapper does; the test moves the number
// on to stand for a restart.
type numbered struct {
	n       *atomic.Uint64
	workers Workers
	start   func(ctx actor.Context, w *Workers)
	got     chan bool // Stale of every string message
}

func (a *numbered) Incarnation() uint64 { return a.n.Load() }

func (a *numbered) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		a.start(ctx, &a.workers)
	case *actor.Stopping:
		a.workers.Stop()
	case string:
		a.got <- Stale(ctx)
	}
}

// TestWorkerMessagesCarryTheirIncarnation: what a worker sends is stamped with the incarnation that started it,
// so once the actor is another incarnation it is stale; a message from a worker of the current one is not.
func TestWorkerMessagesCarryTheirIncarnation(t *testing.T) {
	var n atomic.Uint64
	n.Store(1)
	release := make(chan struct{})
	sys := actor.NewActorSystem()
	got := make(chan bool, 10)
	var self *actor.PID
	self = sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &numbered{n: &n, got: got, start: func(ctx actor.Context, w *Workers) {
			w.Go(ctx, "old", func(done <-chan struct{}, send func(any)) error {
				select {
				case <-release:
					send("from incarnation 1")
				case <-done:
				}
				<-done
				return nil
			})
		}}
	}))
	t.Cleanup(func() { _ = sys.Root.StopFuture(self).Wait() })
	sys.Root.Send(self, "plain") // not from a worker: never stale
	if stale := <-got; stale {
		t.Errorf("a message not sent by a worker is stale")
	}
	n.Store(2) // the actor is now another incarnation
	close(release)
	select {
	case stale := <-got:
		if !stale {
			t.Errorf("the message of a worker of incarnation 1 is not stale in incarnation 2")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the worker's message never arrived")
	}
}

// TestWorkersRefuseToStartAfterStop: after Stop, Go, Task and Tick start nothing (nats-server's startGoRoutine
// after shutdown), so a message handled while the actor stops cannot leave a goroutine behind it.
func TestWorkersRefuseToStartAfterStop(t *testing.T) {
	var ran atomic.Int32
	result := make(chan bool, 1)
	sys := actor.NewActorSystem()
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(string); !ok {
			return
		}
		var w Workers
		w.Go(ctx, "before", func(done <-chan struct{}, _ func(any)) error { <-done; return nil })
		w.Stop()
		started := w.Go(ctx, "after", func(done <-chan struct{}, _ func(any)) error { ran.Add(1); <-done; return nil })
		started = w.Task(ctx, "task", func(<-chan struct{}) error { ran.Add(1); return nil }) || started
		w.Tick(ctx, "tick", time.Millisecond)
		result <- started
	}))
	t.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })
	sys.Root.Send(pid, "go")
	if started := <-result; started {
		t.Errorf("Go or Task after Stop said it started")
	}
	time.Sleep(50 * time.Millisecond) // a goroutine that was started anyway would have run by now
	if n := ran.Load(); n != 0 {
		t.Errorf("%d workers ran after Stop, want none", n)
	}
}

// TestStopIsBounded: Stop closes what a worker is blocked on (OnStop), and does not wait for ever for a worker
// that ignores done: it returns after StopWait and the worker is left to finish.
func TestStopIsBounded(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { // a peer that accepts and never answers
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	stuck := make(chan struct{})
	defer close(stuck)
	reading, readerDone := make(chan struct{}), make(chan struct{})
	var w Workers
	stopped := make(chan time.Duration, 1)
	sys := actor.NewActorSystem()
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *actor.Started:
			w.StopWait = 100 * time.Millisecond
			w.Go(ctx, "reader", func(<-chan struct{}, func(any)) error {
				close(reading)
				defer close(readerDone)
				_, err := conn.Read(make([]byte, 1)) // blocked until the connection is closed
				return err
			})
			w.OnStop(func() { _ = conn.Close() })
			w.Go(ctx, "deaf", func(<-chan struct{}, func(any)) error { <-stuck; return nil }) // ignores done
		case string:
			start := time.Now()
			w.Stop()
			stopped <- time.Since(start)
		}
	}))
	t.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })
	<-reading
	sys.Root.Send(pid, "stop")
	select {
	case took := <-stopped:
		t.Logf("Stop returned after %s (StopWait 100ms)", took.Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return: its wait is unbounded")
	}
	select {
	case <-readerDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the reader is still blocked: OnStop did not close its connection")
	}
}

// TestTickSchedule: the one goroutine fires tickers of different periods, each in its own cadence; a removed
// ticker is never sent again once remove returned; the goroutine ends with the last ticker; the heap stays a heap
// through adds and removes in any order.
func TestTickSchedule(t *testing.T) {
	type rec struct {
		k    *ticker
		sent atomic.Int64
	}
	var recs []*rec
	for _, every := range []time.Duration{time.Millisecond, 3 * time.Millisecond, 7 * time.Millisecond, time.Hour} {
		r := &rec{}
		r.k = &ticker{tick: &Tick{Name: every.String()}, every: every, next: time.Now(), index: -1}
		r.k.send = func(m any) {
			if tk, ok := m.(*Tick); ok {
				r.sent.Add(1)
				tk.Ack() // taken at once: every period sends
			}
		}
		recs = append(recs, r)
		ticks.add(r.k)
	}
	deadline := time.Now().Add(10 * time.Second)
	for recs[2].sent.Load() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("the 7ms ticker fired %d times in 10s", recs[2].sent.Load())
		}
		time.Sleep(time.Millisecond)
	}
	if n := recs[3].sent.Load(); n != 1 {
		t.Errorf("the hourly ticker fired %d times, want the first one only", n)
	}
	if a, c := recs[0].sent.Load(), recs[2].sent.Load(); a < c {
		t.Errorf("the 1ms ticker fired %d times, fewer than the 7ms one's %d", a, c)
	}
	checkHeap := func() {
		ticks.mu.Lock()
		defer ticks.mu.Unlock()
		for i, k := range ticks.heap {
			if k.index != i {
				t.Fatalf("heap[%d] has index %d", i, k.index)
			}
			if i > 0 && ticks.heap[(i-1)/2].next.After(k.next) {
				t.Fatalf("heap[%d] is earlier than its parent", i)
			}
		}
	}
	checkHeap()
	ticks.remove(recs[1].k)
	ticks.remove(recs[1].k) // twice: nothing
	checkHeap()
	for _, i := range []int{0, 3, 2} {
		ticks.remove(recs[i].k)
		frozen := recs[i].sent.Load()
		time.Sleep(10 * time.Millisecond)
		if got := recs[i].sent.Load(); got != frozen {
			t.Errorf("ticker %s sent %d after its removal", recs[i].k.tick.Name, got-frozen)
		}
		checkHeap()
	}
	for {
		ticks.mu.Lock()
		running, left := ticks.running, len(ticks.heap)
		ticks.mu.Unlock()
		if !running && left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the schedule's goroutine still runs with %d tickers", left)
		}
		time.Sleep(time.Millisecond)
	}
}

// A panic in a tick's send is the actor's failure, not the schedule's: the ticker is taken off, the others go on.
func TestTickSchedulePanic(t *testing.T) {
	failed := make(chan *WorkerFailed, 1)
	bad := &ticker{tick: &Tick{Name: "bad"}, every: time.Millisecond, next: time.Now(), index: -1}
	bad.send = func(m any) {
		if f, ok := m.(*WorkerFailed); ok {
			failed <- f
			return
		}
		panic("boom")
	}
	var good atomic.Int64
	ok := &ticker{tick: &Tick{Name: "good"}, every: time.Millisecond, next: time.Now(), index: -1}
	ok.send = func(m any) { good.Add(1); m.(*Tick).Ack() }
	ticks.add(bad)
	ticks.add(ok)
	defer ticks.remove(ok)
	select {
	case f := <-failed:
		if f.Worker != "ticker bad" || f.Panic != "boom" {
			t.Errorf("failure %+v", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no failure reported in 10s")
	}
	for n0 := good.Load(); good.Load() < n0+3; {
		time.Sleep(time.Millisecond)
	}
	if bad.index != -1 {
		t.Errorf("the panicking ticker is still scheduled at %d", bad.index)
	}
}

func TestMatchSubject(t *testing.T) {
	for _, tc := range []struct {
		pattern, subject string
		want             bool
	}{
		{"iot.rules.>", "iot.rules.fw.d1", true}, {"iot.rules.>", "iot.rules", false}, {"iot.rules.>", "iot.rules.x", true},
		{"iot.processed.batch.>", "iot.processed.d1.k", false}, {"iot.*.batch.>", "iot.processed.batch.d1", true},
		{"a.b", "a.b", true}, {"a.b", "a.b.c", false}, {"a.b.c", "a.b", false}, {"*", "a", true}, {"*", "a.b", false},
		{">", "a.b", true}, {">", "", false}, {"a.*", "a.", false}, {"a.b", "a..b", false},
	} {
		if got := MatchSubject(tc.pattern, tc.subject); got != tc.want {
			t.Errorf("MatchSubject(%q, %q) = %v, want %v", tc.pattern, tc.subject, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { MatchSubject("iot.rules.>", "iot.rules.fw.d1") }); n != 0 {
		t.Errorf("%v allocations per match", n)
	}
}

// TestIncarnationHeaderShared: senders of the same incarnation share one header map (read-only), each says its
// incarnation, and a number past the shared range still gets its own.
func TestIncarnationHeaderShared(t *testing.T) {
	a, b := incarnationHeader(3), incarnationHeader(3)
	if reflect.ValueOf(a).Pointer() != reflect.ValueOf(b).Pointer() {
		t.Error("two senders of incarnation 3 have two header maps")
	}
	for _, n := range []uint64{1, 3, incarnationShared - 1, incarnationShared, 1 << 40} {
		if got := incarnationHeader(n)[headerIncarnation]; got != strconv.FormatUint(n, 10) {
			t.Errorf("incarnation %d: header says %q", n, got)
		}
	}
	if reflect.ValueOf(incarnationHeader(1)).Pointer() == reflect.ValueOf(incarnationHeader(2)).Pointer() {
		t.Error("incarnations 1 and 2 share a header map")
	}
}
