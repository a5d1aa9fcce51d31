package modbus

import (
	"errors"
	"fmt"
	"runtime/debug"
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

// transport is the actor of one Modbus endpoint. Its wire runs the transactions one at a time in arrival order, so
// devices sharing a serial line or a TCP endpoint never interleave on the wire; each transaction carries its own
// device's timeout, so a dead slave costs only its own timeout (× its retries) and the others keep their timing.
//
// The wire is not a goroutine parked for the endpoint's life: a run of the queue (a drain) starts when a
// transaction is queued and none is running, on one of the runtime's long-lived goroutines (Env.Schedule), and ends
// when the queue is empty. A goroutine per endpoint was a parked stack per device for 1,000 TCP devices with a port
// each (issue 13's memory aim), idle 99% of the time at one poll a second. One drain at a time per incarnation keeps
// the order and the one-transaction-at-a-time rule; the connection stays open between drains.
//
// The wire's client is the Modbus client shared with the reference sidecar (mb.Client): after a failed connect
// (mb.ErrDisconnected) the endpoint is down for a backoff that doubles from 100 ms to 5 s, and transactions in that
// time fail at once with mb.ErrDown instead of each waiting a connect timeout; a timeout or a mismatched reply
// closes the connection, so a late answer can never be taken for the next request's. The link
// state (Env.Link) follows: disconnected when a connect fails, connected when a transaction reaches the device.
// A transaction whose caller has given up (ModbusTx.Deadline) is dropped, not sent.
type transport struct {
	dev  config.ModbusEndpoint // mode, address, serial settings: what the devices on it agree on
	env  actors.Env
	line *line // shared by the transport's incarnations
	wire *wire // this incarnation's
}

// wire is one incarnation's connection and the state of its drains. Its fields after done are guarded by the
// queue's lock.
type wire struct {
	t      *transport
	root   *actor.RootContext
	client *mb.Client
	send   func(any) // to the transport, stamped with the incarnation
	done   chan struct{}
	wg     sync.WaitGroup // the drain running, if one is
	link   string         // the link state last reported; only the drain running touches it
	active bool           // a drain is running or scheduled
	closed bool           // the stop has begun: no drain starts, the last one closes the client
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

// A stop is prompt: the wire's drain takes nothing more from its queue once it is told to stop, the client makes
// no further attempt of the transaction in hand, and a TCP connection is closed under a blocked read
// (stopWire → Client.Interrupt), so a silent peer does not hold the stop for timeout × (retries+1).

// linkChange is sent by the wire when the endpoint becomes reachable or unreachable.
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

// txQueue is the bounded FIFO between the devices (and the transport actor) and the wire. It was a channel of
// queueSize (4096 before that): a channel's buffer is allocated whole, 8 KiB per endpoint at 512, 8 MiB of the heap
// of 1,000 TCP devices (one endpoint each) that mostly hold one transaction at a time. The slice grows to the
// longest backlog its endpoint has had, and no further than queueSize.
type txQueue struct {
	mu    sync.Mutex
	items []queued
	head  int   // items[head:] are waiting
	wire  *wire // the running incarnation's, nil between incarnations: a push starts its drain
}

func newTxQueue() *txQueue { return &txQueue{} }

// push queues it, or says false when queueSize are waiting; it starts a drain of the wire when none is running.
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
	w := q.activate()
	q.mu.Unlock()
	if w != nil {
		w.t.env.RunScheduled(w.drain)
	}
	return true
}

// activate marks the wire's drain as started when there is work and none runs, and returns the wire to run it on
// (nil: nothing to start); q.mu is held.
func (q *txQueue) activate() *wire {
	w := q.wire
	if w == nil || w.active || w.closed || q.head == len(q.items) {
		return nil
	}
	w.active = true
	w.wg.Add(1)
	return w
}

// next takes the oldest waiting transaction for w's drain, or ends the drain (false) when the queue is empty or
// the stop has begun; the drain that ends after the stop began closes the client.
func (q *txQueue) next(w *wire) (queued, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.closed || stopped(w.done) || q.head == len(q.items) {
		w.active = false
		if w.closed {
			w.client.Close()
		}
		return queued{}, false
	}
	return q.take()
}

// take takes the oldest waiting transaction; q.mu is held.
func (q *txQueue) take() (queued, bool) {
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
		c, err := mb.NewClient(endpoint(&t.dev))
		if err != nil {
			panic(err) // config validation admits only the client's modes
		}
		w := &wire{t: t, root: ctx.ActorSystem().Root, client: c, send: actors.Sender(ctx), done: make(chan struct{})}
		t.wire = w
		q := t.line.queue
		q.mu.Lock()
		q.wire = w
		start := q.activate() // what was queued while no incarnation ran
		q.mu.Unlock()
		if start != nil {
			t.env.RunScheduled(start.drain)
		}
	case *actor.Stopping, *actor.Restarting:
		t.line.mu.Lock()
		if _, restarting := m.(*actor.Restarting); !restarting {
			t.line.stopped = true
		}
		longest := t.line.longest
		t.line.mu.Unlock()
		t.stopWire(ctx, max(actors.DefaultStopWait, longest)) // a serial attempt in hand runs out its timeout
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

// stopWire ends this incarnation's wire: no drain starts again, the one running takes nothing more from the
// queue, and a TCP connection is closed under a blocked read (Client.Interrupt); it waits for that drain at most
// wait, and says so in the log when it had to leave it to finish on its own.
func (t *transport) stopWire(ctx actor.Context, wait time.Duration) {
	w := t.wire
	if w == nil {
		return
	}
	t.wire = nil
	q := t.line.queue
	q.mu.Lock()
	if q.wire == w {
		q.wire = nil
	}
	w.closed = true
	close(w.done)
	idle := !w.active
	if idle {
		w.client.Close()
	}
	q.mu.Unlock()
	if idle {
		return
	}
	w.client.Interrupt()
	returned := make(chan struct{})
	go func() { w.wg.Wait(); close(returned) }() // returns with the drain: it outlives nothing
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-returned:
	case <-timer.C:
		t.env.Log.Error().Str("actor", ctx.Self().Id).Dur("waited", wait).Msg("modbus: the wire's transaction did not end in time; left to finish on its own")
	}
}

// drain runs the queue's transactions until it is empty or the stop has begun. A panic is the transport's failure,
// reported to it like a worker's (the supervisor restarts it with a new wire).
func (w *wire) drain() {
	defer w.wg.Done()
	q := w.t.line.queue
	defer func() {
		if r := recover(); r != nil {
			q.mu.Lock()
			w.active = false // the stop the failure brings closes the client
			q.mu.Unlock()
			w.send(&actors.WorkerFailed{Worker: "wire", Panic: r, Stack: debug.Stack()})
		}
	}()
	for {
		item, ok := q.next(w)
		if !ok {
			return
		}
		if !w.do(item) {
			q.next(w) // the stop began during a wait: end the drain (and close the client)
			return
		}
	}
}

// do runs one transaction and answers it; false when the stop began while it waited (a latency fault, a pause).
func (w *wire) do(item queued) bool {
	t, root, done := w.t, w.root, w.done
	start := time.Now()
	if item.tx.expired(start) {
		t.expire(root, item, start)
		return true
	}
	if item.tx.drop {
		w.client.Close()
	}
	if item.tx.delay > 0 {
		timer := time.NewTimer(item.tx.delay)
		select {
		case <-done:
			timer.Stop()
			return false
		case <-timer.C:
		case <-item.tx.delayEnd: // the fault was cleared: go on at once
			timer.Stop()
		}
		if item.tx.expired(time.Now()) {
			t.expire(root, item, start)
			return true
		}
	}
	tx := item.tx
	data, err := w.client.DoAppend(tx.Buf[:0], mb.Call{Slave: tx.Slave, Function: tx.Function, Address: tx.Address, Quantity: tx.Quantity,
		Value: tx.Value, Timeout: tx.Timeout, Retries: tx.Retries})
	if state, detail := linkState(err); state != "" && state != w.link {
		w.link = state
		w.send(&linkChange{state: state, detail: detail})
	}
	if item.from != nil {
		root.Send(item.from, &ModbusTxResult{Tag: item.tx.Tag, Data: data, Err: err, Took: time.Since(start)})
	}
	if item.tx.Pause > 0 {
		timer := time.NewTimer(item.tx.Pause)
		defer timer.Stop()
		select {
		case <-done:
			return false
		case <-timer.C:
		}
	}
	return true
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
