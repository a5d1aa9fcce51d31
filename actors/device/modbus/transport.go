package modbus

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/goburrow/modbus"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	mb "github.com/iotgw/iotgw/modbus"
)

// Errors of the transport itself. A failed transaction is otherwise one of the Modbus client's (mb.ErrTimeout,
// mb.ErrDisconnected, …, or a *modbus.ModbusError for an exception reply), classified with errors.Is/As.
var (
	ErrBusy    = errors.New("modbus: transport queue full")
	ErrExpired = fmt.Errorf("%w: the caller gave up before it was sent", mb.ErrTimeout) // past its Deadline
)

// ModbusTx is one transaction for a transport actor: a read (functions 1-4) or a write (5, 6, 15, 16).
type ModbusTx struct {
	Slave    uint8
	Function uint8
	Address  uint16
	Quantity uint16
	Value    []byte // writes: the encoded value (2 bytes for 5 and 6, packed bits for 15, registers for 16)
	Timeout  time.Duration
	Retries  int
	Pause    time.Duration // quiet time after the transaction, for devices that need it
	Tag      any           // the caller's correlation, returned in the result
	// Buf is where the reply's data goes (the result's Data is Buf[:n]); nil: a slice of its own. A device gives
	// each request of its plan one buffer, so a poll allocates none for its replies: it reads a result's Data
	// before it sends that request again, and the wire writes into it only for a request it was sent.
	Buf []byte
	// Deadline is when the caller gives up waiting for the result (zero: never). A transaction still queued, or
	// still held by a latency fault, at its deadline is answered ErrExpired and never reaches the wire: the queue
	// behind a slow or faulted endpoint does not replay answers nobody waits for.
	Deadline time.Time

	drop     bool            // fault injection: close the connection first
	delay    time.Duration   // fault injection: wait first
	delayEnd <-chan struct{} // closed when the latency fault is cleared: stop waiting
}

// expired says whether the caller has given up on tx.
func (tx *ModbusTx) expired(now time.Time) bool {
	return !tx.Deadline.IsZero() && !now.Before(tx.Deadline)
}

// ModbusTxResult answers a ModbusTx, sent to the actor that asked.
type ModbusTxResult struct {
	Tag  any
	Data []byte // reads: the response's data bytes
	Err  error
	Took time.Duration
}

// transport is the actor of one Modbus endpoint. Its worker goroutine owns the connection and runs the
// transactions one at a time in arrival order, so devices sharing a serial line or a TCP endpoint never
// interleave on the wire; each transaction carries its own device's timeout, so a dead slave costs only its own
// timeout (× its retries) and the others keep their timing.
//
// The wire is the Modbus client shared with the reference sidecar (mb.Client): after a failed connect
// (mb.ErrDisconnected) the endpoint is down for a backoff that doubles from 100 ms to 5 s, and transactions in that
// time fail at once with mb.ErrDown instead of each waiting a connect timeout; a timeout or a mismatched reply
// closes the connection, so a late answer can never be taken for the next request's. The link
// state (Env.Link) follows: disconnected when a connect fails, connected when a transaction reaches the device.
// A transaction whose caller has given up (ModbusTx.Deadline) is dropped, not sent.
type transport struct {
	dev     config.ModbusEndpoint // mode, address, serial settings: what the devices on it agree on
	env     actors.Env
	workers actors.Workers
	line    *line // shared by the transport's incarnations
}

// line is what a transport's incarnations share, and what its devices reach it by without a hop through the
// transport's mailbox (issue 13: one actor hand-off less per request). A device asks its transport for the line
// once (lineRequest) and from then on submits its transactions to the line's queue itself; until the answer comes,
// and after the transport stopped, it sends them to the transport actor, which submits them the same way. Either
// way the faults are decided at submission under the line's lock and travel with the transaction, and one wire
// worker per incarnation runs the queue in order, so what the transport promises (one transaction at a time,
// per-device timeouts, faults, reconnect with backoff, supervision) holds on both paths.
//
// The queue outlives a restart of the transport, as its mailbox does: what was submitted meanwhile runs when the
// new incarnation's worker starts, unless its caller gave up (Deadline).
type line struct {
	queue *txQueue
	mu    sync.Mutex
	// The faults its devices passed on (drop, latency) are listed under the devices, which do not restart with
	// the transport, so they outlive its restarts.
	faults  actors.Faults
	cuts    map[string]chan struct{} // per latency fault: closed when it is cleared
	longest time.Duration            // the longest per-attempt timeout of the transactions submitted
	stopped bool                     // the transport stopped (not restarting): submit refuses, the device falls back
}

// errLineStopped: the transport of the line stopped; the device sends to the actor and asks for a line again.
var errLineStopped = errors.New("modbus: transport stopped")

// submit decides tx's faults and queues it for the wire; ErrBusy when the queue is full.
func (l *line) submit(tx *ModbusTx, from *actor.PID) error {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return errLineStopped
	}
	l.longest = max(l.longest, tx.Timeout)
	if f := l.faults.Hit(actors.FaultDrop); f != nil {
		tx.drop = true
	}
	if f := l.faults.Hit(actors.FaultLatency); f != nil {
		tx.delay, tx.delayEnd = f.Latency, l.cuts[f.ID]
	}
	l.mu.Unlock()
	if !l.queue.push(queued{tx: tx, from: from}) {
		return ErrBusy
	}
	return nil
}

// lineRequest asks a transport for its line; the answer is a *lineReply.
type lineRequest struct{}

type lineReply struct{ line *line }

// A stop is prompt: the wire worker takes nothing more from its queue once it is told to stop, the client makes
// no further attempt of the transaction in hand, and a TCP connection is closed under a blocked read
// (Workers.OnStop → Client.Interrupt), so a silent peer does not hold the stop for timeout × (retries+1).

// linkChange is sent by the wire worker when the endpoint becomes reachable or unreachable.
type linkChange struct{ state, detail string }

var _ actors.FaultTarget = (*transport)(nil)

// InjectFault: drop closes the connection before the next transaction(s); latency delays each transaction.
func (t *transport) InjectFault(_ actor.Context, f *actors.Fault) error {
	if f.Kind != actors.FaultDrop && f.Kind != actors.FaultLatency {
		return actors.ErrFaultUnsupported
	}
	l := t.line
	l.mu.Lock()
	defer l.mu.Unlock()
	l.faults.Add(f)
	if f.Kind == actors.FaultLatency {
		if _, ok := l.cuts[f.ID]; !ok {
			l.cuts[f.ID] = make(chan struct{})
		}
	}
	return nil
}

// ClearFault ends a fault. A latency fault's delays end at once, also for the transactions it already holds.
func (t *transport) ClearFault(_ actor.Context, id string) {
	l := t.line
	l.mu.Lock()
	defer l.mu.Unlock()
	l.faults.Remove(id)
	if c, ok := l.cuts[id]; ok {
		close(c)
		delete(l.cuts, id)
	}
}

type queued struct {
	tx   *ModbusTx
	from *actor.PID
}

// queueSize bounds the transactions waiting for the wire: a device has at most one poll's requests of each group
// in flight (a tick that finds its poll still on the wire is skipped), so 512 holds a full serial line of 247
// units with two requests each.
const queueSize = 512

// txQueue is the bounded FIFO between the transport actor and its wire worker. It was a channel of queueSize
// (4096 before that): a channel's buffer is allocated whole, 8 KiB per endpoint at 512, 8 MiB of the heap of
// 1,000 TCP devices (one endpoint each) that mostly hold one transaction at a time. The slice grows to the
// longest backlog its endpoint has had, and no further than queueSize.
type txQueue struct {
	mu    sync.Mutex
	items []queued
	head  int           // items[head:] are waiting
	ready chan struct{} // one token: something was pushed since the worker last looked
}

func newTxQueue() *txQueue { return &txQueue{ready: make(chan struct{}, 1)} }

// push queues it, or says false when queueSize are waiting.
func (q *txQueue) push(it queued) bool {
	q.mu.Lock()
	if len(q.items)-q.head >= queueSize {
		q.mu.Unlock()
		return false
	}
	if q.head > 0 && len(q.items) == cap(q.items) { // reuse the room of the ones taken instead of growing
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, it)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// pop takes the oldest waiting transaction.
func (q *txQueue) pop() (queued, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.items) {
		return queued{}, false
	}
	it := q.items[q.head]
	q.items[q.head] = queued{}
	if q.head++; q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	return it, true
}

// NewEndpoint returns the producer of the transport actor of a Modbus endpoint (config.ModbusDevice.Endpoint).
func NewEndpoint(ep config.Endpoint, env actors.Env) actor.Producer {
	return NewTransport(ep.Settings.(config.ModbusEndpoint), env)
}

// NewTransport returns the producer of the transport actor of endpoint e.
func NewTransport(e config.ModbusEndpoint, env actors.Env) actor.Producer {
	l := &line{queue: newTxQueue(), cuts: map[string]chan struct{}{}}
	return func() actor.Actor { return &transport{dev: e, env: env, line: l} }
}

func (t *transport) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		t.line.mu.Lock()
		t.line.stopped = false // started again by hand after a stop: the same line
		t.line.mu.Unlock()
		q := t.line.queue
		w, err := mb.NewClient(endpoint(&t.dev))
		if err != nil {
			panic(err) // config validation admits only the client's modes
		}
		// A stop is prompt: the hook closes a TCP connection under a blocked read, and a serial attempt (which
		// goburrow cannot cut short) is waited for at most its timeout.
		t.workers.OnStop(w.Interrupt)
		t.workers.Go(ctx, "wire", func(done <-chan struct{}, send func(any)) error {
			return t.run(ctx.ActorSystem().Root, q, w, done, send)
		})
	case *actor.Stopping, *actor.Restarting:
		t.line.mu.Lock()
		if _, restarting := m.(*actor.Restarting); !restarting {
			t.line.stopped = true
		}
		longest := t.line.longest
		t.line.mu.Unlock()
		t.workers.StopWait = max(actors.DefaultStopWait, longest) // a serial attempt in hand runs out its timeout
		t.workers.Stop()
	case *linkChange:
		t.env.Link(m.state, m.detail)
	case *lineRequest:
		ctx.Respond(&lineReply{line: t.line})
	case *ModbusTx:
		if err := t.line.submit(m, ctx.Sender()); err != nil && ctx.Sender() != nil {
			ctx.Respond(&ModbusTxResult{Tag: m.Tag, Err: ErrBusy})
		}
	}
}

func (t *transport) run(root *actor.RootContext, q *txQueue, w *mb.Client, done <-chan struct{}, send func(any)) error {
	defer w.Close()
	link := "" // unknown until the first transaction
	for {
		// Stopping comes first: a select with both ready picks at random, and would run queued transactions.
		if stopped(done) {
			return nil
		}
		item, ok := q.pop()
		if !ok {
			select {
			case <-done:
				return nil
			case <-q.ready:
			}
			continue
		}
		start := time.Now()
		if item.tx.expired(start) {
			t.expire(root, item, start)
			continue
		}
		if item.tx.drop {
			w.Close()
		}
		if item.tx.delay > 0 {
			timer := time.NewTimer(item.tx.delay)
			select {
			case <-done:
				timer.Stop()
				return nil
			case <-timer.C:
			case <-item.tx.delayEnd: // the fault was cleared: go on at once
				timer.Stop()
			}
			if item.tx.expired(time.Now()) {
				t.expire(root, item, start)
				continue
			}
		}
		tx := item.tx
		data, err := w.DoAppend(tx.Buf[:0], mb.Call{Slave: tx.Slave, Function: tx.Function, Address: tx.Address, Quantity: tx.Quantity,
			Value: tx.Value, Timeout: tx.Timeout, Retries: tx.Retries})
		if state, detail := linkState(err); state != "" && state != link {
			link = state
			send(&linkChange{state: state, detail: detail})
		}
		if item.from != nil {
			root.Send(item.from, &ModbusTxResult{Tag: item.tx.Tag, Data: data, Err: err, Took: time.Since(start)})
		}
		if item.tx.Pause > 0 {
			select {
			case <-done:
				return nil
			case <-time.After(item.tx.Pause):
			}
		}
	}
}

// expire answers a transaction whose caller has given up without sending it.
func (t *transport) expire(root *actor.RootContext, item queued, start time.Time) {
	if item.from != nil {
		root.Send(item.from, &ModbusTxResult{Tag: item.tx.Tag, Err: ErrExpired, Took: time.Since(start)})
	}
}

// linkState is what a transaction's outcome says about the link: connected when the device answered (an
// exception reply too), disconnected when the endpoint could not be reached; "" when it says nothing (a timeout
// on an open connection, the backoff, a garbled reply).
func linkState(err error) (state, detail string) {
	if err == nil {
		return actors.LinkConnected, "" // before exc: it escapes, and would cost an allocation per transaction
	}
	var exc *modbus.ModbusError
	switch {
	case errors.As(err, &exc):
		return actors.LinkConnected, ""
	case errors.Is(err, mb.ErrDisconnected):
		return actors.LinkDisconnected, err.Error()
	default:
		return "", ""
	}
}

// endpoint is the Modbus client's view of d's connection settings.
func endpoint(d *config.ModbusEndpoint) mb.Endpoint {
	e := mb.Endpoint{Mode: d.Mode, Address: d.Address}
	if s := d.Serial; s != nil {
		e.Serial = mb.Serial{BaudRate: s.BaudRate, DataBits: s.DataBits, Parity: s.Parity, StopBits: s.StopBits}
	}
	return e
}

// stopped says whether done is closed, without waiting.
func stopped(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}
