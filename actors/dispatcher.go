package actors

import (
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// Dispatcher runs the actors' mailbox runs on long-lived goroutines instead of protoactor's default, which starts
// a goroutine for every run (actor.NewDefaultDispatcher: go fn()). A fresh goroutine starts on a small stack and
// grows it again (runtime.newstack) on every run that calls deep, such as a device sealing its batch: 6–8% of the
// CPU of 100 Modbus devices polled every 100 ms. A worker here keeps its grown stack between runs.
//
// It never queues a run behind another: Schedule hands the run to an idle worker when there is one (the one idle
// the shortest, whose stack and caches are the warmest) and starts a new worker otherwise, so an actor that blocks
// in its Receive holds one goroutine, as with the default dispatcher, and stalls no other actor; and the order in
// which mailboxes run is the Go scheduler's, as before. At most maxIdle workers wait for work; one that finds the
// idle list full when its run ends exits. Throughput (how many messages a run takes before it yields) is
// protoactor's default, 300. Supervision is unchanged: a panic in a Receive is recovered inside the mailbox run
// (protoactor's defaultMailbox.run) and escalated as before, so it never reaches the worker.
//
// Close ends the idle workers; a run scheduled after Close gets a goroutine of its own, as with the default.
type Dispatcher struct {
	maxIdle int

	mu     sync.Mutex
	idle   []chan func() // LIFO
	closed bool
	live   atomic.Int64 // workers alive
}

var _ actor.Dispatcher = (*Dispatcher)(nil)

// NewDispatcher returns a dispatcher that keeps at most maxIdle workers waiting for work.
func NewDispatcher(maxIdle int) *Dispatcher {
	return &Dispatcher{maxIdle: max(maxIdle, 1)}
}

// Throughput is protoactor's default number of messages per mailbox run.
func (d *Dispatcher) Throughput() int { return 300 }

// Schedule runs fn on an idle worker, or on a new one.
func (d *Dispatcher) Schedule(fn func()) {
	d.mu.Lock()
	if n := len(d.idle); n > 0 {
		ch := d.idle[n-1]
		d.idle[n-1] = nil
		d.idle = d.idle[:n-1]
		d.mu.Unlock()
		ch <- fn // buffered: never blocks
		return
	}
	if d.closed {
		d.mu.Unlock()
		go fn()
		return
	}
	d.live.Add(1)
	d.mu.Unlock()
	go d.work(make(chan func(), 1), fn)
}

func (d *Dispatcher) work(ch chan func(), fn func()) {
	defer d.live.Add(-1)
	for {
		fn()
		d.mu.Lock()
		if d.closed || len(d.idle) >= d.maxIdle {
			d.mu.Unlock()
			return
		}
		d.idle = append(d.idle, ch)
		d.mu.Unlock()
		var ok bool
		if fn, ok = <-ch; !ok {
			return
		}
	}
}

// Live is how many workers are alive, idle or running.
func (d *Dispatcher) Live() int { return int(d.live.Load()) }

// Idle is how many workers wait for work.
func (d *Dispatcher) Idle() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.idle)
}

// Close ends the idle workers; a worker busy with a run ends when the run does. It does not wait.
func (d *Dispatcher) Close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	idle := d.idle
	d.idle = nil
	d.mu.Unlock()
	for _, ch := range idle {
		close(ch)
	}
}
