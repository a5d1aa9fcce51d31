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
// It never queues a run behind another: Schedule hands the run to a worker waiting for work when there is one
// (an unbuffered send that succeeds only if a worker is receiving) and starts a new worker otherwise, so an actor
// that blocks in its Receive holds one goroutine, as with the default dispatcher, and stalls no other actor; and the
// order in which mailboxes run is the Go scheduler's, as before. No lock is taken (a first version kept the idle
// workers in a slice under a mutex; with 1,000 devices it contended). At most maxIdle workers wait for work; one
// that would be one too many when its run ends exits. Throughput (how many messages a run takes before it yields)
// is protoactor's default, 300. Supervision is unchanged: a panic in a Receive is recovered inside the mailbox run
// (protoactor's defaultMailbox.run) and escalated as before, so it never reaches the worker.
//
// Close ends the waiting workers, and each busy one when its run ends; a run scheduled after Close runs on a
// goroutine that ends with it.
type Dispatcher struct {
	maxIdle int64
	work    chan func() // unbuffered: a send succeeds only into a waiting worker
	quit    chan struct{}
	once    sync.Once
	idle    atomic.Int64 // workers waiting for work (or about to)
	live    atomic.Int64 // workers alive, idle or running
}

var _ actor.Dispatcher = (*Dispatcher)(nil)

// NewDispatcher returns a dispatcher that keeps at most maxIdle workers waiting for work.
func NewDispatcher(maxIdle int) *Dispatcher {
	return &Dispatcher{maxIdle: int64(max(maxIdle, 1)), work: make(chan func()), quit: make(chan struct{})}
}

// Throughput is protoactor's default number of messages per mailbox run.
func (d *Dispatcher) Throughput() int { return 300 }

// Schedule runs fn on a waiting worker, or on a new one.
func (d *Dispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn:
	default:
		d.live.Add(1)
		go d.worker(fn)
	}
}

func (d *Dispatcher) worker(fn func()) {
	defer d.live.Add(-1)
	for {
		fn()
		if d.idle.Add(1) > d.maxIdle {
			d.idle.Add(-1)
			return
		}
		select {
		case fn = <-d.work:
			d.idle.Add(-1)
		case <-d.quit:
			d.idle.Add(-1)
			return
		}
	}
}

// Live is how many workers are alive, idle or running.
func (d *Dispatcher) Live() int { return int(d.live.Load()) }

// Idle is how many workers wait for work.
func (d *Dispatcher) Idle() int { return int(d.idle.Load()) }

// Close ends the waiting workers; a worker busy with a run ends when the run does. It does not wait.
func (d *Dispatcher) Close() {
	d.once.Do(func() { close(d.quit) })
}
