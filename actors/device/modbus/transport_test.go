package modbus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/internal/testenv"
	mb "github.com/iotgw/iotgw/modbus"
	"github.com/iotgw/iotgw/sidecar/modbussim"
	"github.com/rs/zerolog"
)

func startTransport(t *testing.T, dev config.ModbusEndpoint, links *testenv.LinkLog) func(tx *ModbusTx) *ModbusTxResult {
	t.Helper()
	sys := actor.NewActorSystem()
	env := actors.Env{Log: zerolog.Nop(), LinkState: links.Record}
	pid := sys.Root.Spawn(actor.PropsFromProducer(NewTransport(dev, env)))
	t.Cleanup(func() {
		_ = sys.Root.PoisonFuture(pid).Wait()
		sys.Shutdown()
	})
	return func(tx *ModbusTx) *ModbusTxResult {
		t.Helper()
		res, err := sys.Root.RequestFuture(pid, tx, 10*time.Second).Result()
		if err != nil {
			t.Fatalf("transaction: %v", err)
		}
		return res.(*ModbusTxResult)
	}
}

func read() *ModbusTx {
	return &ModbusTx{Slave: 1, Function: 3, Address: 0, Quantity: 1, Timeout: 500 * time.Millisecond}
}

func waitFor(t *testing.T, total time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("condition not met after %s: %v", total, err)
}

// TestTransportLinkState: a refused connection is "disconnected" (then "down" during the backoff) and reported
// as the link's state; when the endpoint comes, the link is reported connected.
func TestTransportLinkState(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var links testenv.LinkLog
	do := startTransport(t, config.ModbusEndpoint{Mode: "tcp", Address: addr}, &links)

	res := do(read())
	if !errors.Is(res.Err, mb.ErrDisconnected) || errorKind(res.Err) != "disconnected" {
		t.Fatalf("refused: %v (kind %s), want disconnected", res.Err, errorKind(res.Err))
	}
	if res := do(read()); errorKind(res.Err) != "down" {
		t.Errorf("during the backoff: %v (kind %s), want down", res.Err, errorKind(res.Err))
	}
	waitFor(t, 5*time.Second, func() error {
		if s := links.States(); len(s) != 1 || s[0] != actors.LinkDisconnected {
			return fmt.Errorf("link states %v", s)
		}
		return nil
	})

	sim, err := modbussim.New(modbussim.Config{Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()
	waitFor(t, 15*time.Second, func() error {
		if res := do(read()); res.Err != nil {
			return res.Err
		}
		return nil
	})
	waitFor(t, 5*time.Second, func() error {
		if s := links.States(); len(s) != 2 || s[1] != actors.LinkConnected {
			return fmt.Errorf("link states %v", s)
		}
		return nil
	})
}

// TestTransportDropsExpired: a transaction whose caller has given up is answered ErrExpired (a timeout) and never
// sent; one with time left is.
func TestTransportDropsExpired(t *testing.T) {
	sim := startSim(t)
	do := startTransport(t, config.ModbusEndpoint{Mode: "tcp", Address: sim.Addr().String()}, &testenv.LinkLog{})

	late := read()
	late.Deadline = time.Now().Add(-time.Millisecond)
	if res := do(late); !errors.Is(res.Err, ErrExpired) || errorKind(res.Err) != "timeout" {
		t.Errorf("expired transaction: %v (kind %s), want ErrExpired, a timeout", res.Err, errorKind(res.Err))
	}
	if n := sim.Stats().TotalRequests(); n != 0 {
		t.Errorf("%d requests reached the device, want none", n)
	}
	ok := read()
	ok.Deadline = time.Now().Add(5 * time.Second)
	if res := do(ok); res.Err != nil {
		t.Errorf("transaction in time: %v", res.Err)
	}
}

// TestSerialOpenFailureIsDisconnected: a serial port that cannot be opened is the endpoint being unreachable, like
// a refused TCP connection (goburrow returns the bare errno of open(2), which was classified invalid_reply).
func TestSerialOpenFailureIsDisconnected(t *testing.T) {
	var links testenv.LinkLog
	do := startTransport(t, config.ModbusEndpoint{Mode: "rtu", Address: "/nonexistent/ttyIOTGW0",
		Serial: &config.ModbusSerial{BaudRate: 9600, DataBits: 8, Parity: "N", StopBits: 1}}, &links)
	res := do(read())
	if kind := errorKind(res.Err); kind != "disconnected" {
		t.Errorf("open failure: %v classified %s, want disconnected", res.Err, kind)
	}
	if kind := errorKind(do(read()).Err); kind != "down" {
		t.Errorf("right after: classified %s, want down (the reconnect backoff)", kind)
	}
	waitFor(t, 5*time.Second, func() error {
		if s := links.States(); len(s) != 1 || s[0] != actors.LinkDisconnected {
			return fmt.Errorf("link states %v", s)
		}
		return nil
	})
}

// silentPeer is a TCP endpoint that accepts and reads, and never answers; it counts the bytes it received.
type silentPeer struct {
	l     net.Listener
	mu    sync.Mutex
	bytes int
	open  int // connections the transport has not closed
}

func newSilentPeer(t *testing.T) *silentPeer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silentPeer{l: l}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.open++
			p.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				defer func() {
					p.mu.Lock()
					p.open--
					p.mu.Unlock()
				}()
				buf := make([]byte, 512)
				for {
					n, err := c.Read(buf)
					p.mu.Lock()
					p.bytes += n
					p.mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return p
}

func (p *silentPeer) received() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytes
}

func (p *silentPeer) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}

// spawnTransport runs a transport actor for dev and returns its system and PID; the test stops it.
// startSim runs an empty Modbus simulator on a free loopback port for the test.
func startSim(t *testing.T) *modbussim.Server {
	t.Helper()
	sim, err := modbussim.New(modbussim.Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Stop() })
	return sim
}

func spawnTransport(t *testing.T, dev config.ModbusEndpoint) (*actor.ActorSystem, *actor.PID) {
	t.Helper()
	sys := actor.NewActorSystem()
	t.Cleanup(sys.Shutdown)
	return sys, sys.Root.Spawn(actor.PropsFromProducer(NewTransport(dev, actors.Env{Log: zerolog.Nop()})))
}

// TestTransportStopIsBounded: a transport stopped while a transaction waits on a peer that never answers stops
// within one device timeout — its connection is closed under the blocked read and no retry follows — not after
// timeout × (retries+1).
func TestTransportStopIsBounded(t *testing.T) {
	const timeout, retries = 2 * time.Second, 3
	for _, mode := range []string{"tcp", "rtu-over-tcp"} {
		t.Run(mode, func(t *testing.T) {
			peer := newSilentPeer(t)
			sys, pid := spawnTransport(t, config.ModbusEndpoint{Mode: mode, Address: peer.l.Addr().String()})
			tx := read()
			tx.Timeout, tx.Retries = timeout, retries
			sys.Root.Send(pid, tx)
			waitFor(t, 5*time.Second, func() error {
				if peer.received() == 0 {
					return errors.New("the request has not reached the peer")
				}
				return nil
			})
			start := time.Now()
			if err := sys.Root.PoisonFuture(pid).Wait(); err != nil {
				t.Fatal(err)
			}
			stopped := time.Since(start)
			// The wire is done when its connection is: the drain closes it on its way out.
			for peer.connections() > 0 && time.Since(start) < timeout*(retries+1)+time.Second {
				time.Sleep(5 * time.Millisecond)
			}
			closed := time.Since(start)
			t.Logf("stop returned after %s, the connection was closed after %s (timeout %s, retries %d)",
				stopped.Round(time.Millisecond), closed.Round(time.Millisecond), timeout, retries)
			if stopped >= timeout || closed >= timeout {
				t.Errorf("stop took %s and closed the connection after %s, want both within one device timeout (%s)", stopped, closed, timeout)
			}
		})
	}
}

// TestTransportRunsNothingAfterStop: transactions still queued when the transport stops never reach the wire.
func TestTransportRunsNothingAfterStop(t *testing.T) {
	peer := newSilentPeer(t)
	sys, pid := spawnTransport(t, config.ModbusEndpoint{Mode: "tcp", Address: peer.l.Addr().String()})
	const queued = 20
	for i := 0; i < queued; i++ {
		tx := read()
		tx.Timeout = 300 * time.Millisecond
		sys.Root.Send(pid, tx)
	}
	waitFor(t, 5*time.Second, func() error {
		if peer.received() == 0 {
			return errors.New("the first request has not reached the peer")
		}
		return nil
	})
	before := peer.received()
	if err := sys.Root.PoisonFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
	// Three timeouts: time for a transaction taken after the stop to show up at the peer.
	deadline := time.Now().Add(900 * time.Millisecond)
	for time.Now().Before(deadline) {
		if got := peer.received(); got != before {
			t.Fatalf("the peer received %d bytes after the stop began (%d before): queued transactions ran", got-before, before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLineSubmit: a device that has its transport's line submits to it directly, and the transport's faults apply
// there as on the actor path; once the transport stopped, the line refuses (errLineStopped) so the device falls
// back to the actor path and asks again.
func TestLineSubmit(t *testing.T) {
	sim := startSim(t)
	sys, pid := spawnTransport(t, config.ModbusEndpoint{Mode: "tcp", Address: sim.Addr().String()})
	res, err := sys.Root.RequestFuture(pid, &lineRequest{}, 5*time.Second).Result()
	if err != nil {
		t.Fatal(err)
	}
	l := res.(*lineReply).line
	do := func() (*ModbusTxResult, error) {
		f := actor.NewFuture(sys, 10*time.Second)
		if err := l.submit(read(), f.PID()); err != nil {
			return nil, err
		}
		r, err := f.Result()
		if err != nil {
			t.Fatalf("result: %v", err)
		}
		return r.(*ModbusTxResult), nil
	}
	if r, err := do(); err != nil || r.Err != nil || len(r.Data) != 2 {
		t.Fatalf("got %+v, %v; want the register's 2 bytes", r, err)
	}
	// A drop fault of the transport (its InjectFault records it in the line; the runtime delivers it, not this
	// test) closes the connection before a transaction submitted to the line.
	before := sim.Stats().Connections
	if err := (&transport{line: l}).InjectFault(nil, &actors.Fault{ID: "f1", Kind: actors.FaultDrop}); err != nil {
		t.Fatal(err)
	}
	if r, err := do(); err != nil || r.Err != nil {
		t.Fatalf("after the drop: %+v, %v; want an answer on a new connection", r, err)
	}
	if got := sim.Stats().Connections; got <= before {
		t.Errorf("connections %d, want more than %d: the drop fault did not apply to the line", got, before)
	}
	if err := sys.Root.PoisonFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := do(); !errors.Is(err, errLineStopped) {
		t.Errorf("after the stop: got %v, want errLineStopped", err)
	}
}

// TestWireDrainsOnDemand: the wire holds no goroutine between transactions. Eight submitters push 50
// transactions each at once: every one is answered, each submitter's in the order it pushed, never two drains
// at a time; when the queue is empty the drain has ended, and the next push starts another; after the stop the
// connection is closed and a transaction still queued never starts a drain.
func TestWireDrainsOnDemand(t *testing.T) {
	sim := startSim(t)
	var drains, running, most atomic.Int64
	env := actors.Env{Log: zerolog.Nop(), Schedule: func(fn func()) {
		drains.Add(1)
		go func() {
			n := running.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			defer running.Add(-1)
			fn()
		}()
	}}
	sys := actor.NewActorSystem()
	t.Cleanup(sys.Shutdown)
	pid := sys.Root.Spawn(actor.PropsFromProducer(NewTransport(config.ModbusEndpoint{Mode: "tcp", Address: sim.Addr().String()}, env)))
	res, err := sys.Root.RequestFuture(pid, &lineRequest{}, 5*time.Second).Result()
	if err != nil {
		t.Fatal(err)
	}
	l := res.(*lineReply).line
	const submitters, each = 8, 50
	results := make(chan *ModbusTxResult, submitters*each)
	collector := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if r, ok := ctx.Message().(*ModbusTxResult); ok {
			results <- r
		}
	}))
	var wg sync.WaitGroup
	for s := range submitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				tx := read()
				tx.Tag = [2]int{s, i}
				if err := l.submit(tx, collector); err != nil {
					t.Errorf("submit: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	last := make([]int, submitters)
	for i := range last {
		last[i] = -1
	}
	for range submitters * each {
		select {
		case r := <-results:
			tag := r.Tag.([2]int)
			if r.Err != nil {
				t.Fatalf("transaction %v: %v", tag, r.Err)
			}
			if tag[1] != last[tag[0]]+1 {
				t.Fatalf("submitter %d: result %d after %d", tag[0], tag[1], last[tag[0]])
			}
			last[tag[0]] = tag[1]
		case <-time.After(10 * time.Second):
			t.Fatal("not every transaction was answered in 10s")
		}
	}
	if m := most.Load(); m != 1 {
		t.Errorf("%d drains ran at once, want 1", m)
	}
	q := l.queue
	idle := func() error {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.wire == nil || q.wire.active || running.Load() != 0 {
			return errors.New("a drain still runs with the queue empty")
		}
		return nil
	}
	waitFor(t, 5*time.Second, idle)
	before := drains.Load()
	if r, err := sys.Root.RequestFuture(pid, read(), 5*time.Second).Result(); err != nil || r.(*ModbusTxResult).Err != nil {
		t.Fatalf("after the idle time: %v, %v", r, err)
	}
	if drains.Load() != before+1 {
		t.Errorf("drains %d after one more transaction, want %d", drains.Load(), before+1)
	}
	waitFor(t, 5*time.Second, idle)
	w := q.wire
	if err := sys.Root.PoisonFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error {
		if n := sim.Stats().Active; n != 0 {
			return fmt.Errorf("%d connections open after the stop", n)
		}
		return nil
	})
	q.mu.Lock()
	q.items = append(q.items, queued{tx: read()})
	started := q.activate()
	q.mu.Unlock()
	if started != nil || q.wire != nil || !w.closed {
		t.Errorf("after the stop: a drain could start (%v), the queue has a wire (%v), closed %v", started != nil, q.wire != nil, w.closed)
	}
}

// TestTxQueue: first in, first out, at most queueSize waiting, and the room of taken entries is reused.
func TestTxQueue(t *testing.T) {
	q := newTxQueue() // no wire: pushes start nothing
	pop := func() (queued, bool) {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.take()
	}
	for i := 0; i < queueSize; i++ {
		if !q.push(queued{tx: &ModbusTx{Address: uint16(i)}}) {
			t.Fatalf("push %d refused, want room for %d", i, queueSize)
		}
	}
	if q.push(queued{tx: &ModbusTx{}}) {
		t.Fatalf("push %d accepted, want at most %d waiting", queueSize+1, queueSize)
	}
	capacity := cap(q.items)
	for round := 0; round < 3; round++ { // take half, refill: the slice does not grow
		for i := 0; i < queueSize/2; i++ {
			if _, ok := pop(); !ok {
				t.Fatal("pop: empty")
			}
		}
		for i := 0; i < queueSize/2; i++ {
			if !q.push(queued{tx: &ModbusTx{Address: uint16(queueSize + round*queueSize/2 + i)}}) {
				t.Fatalf("round %d: push %d refused", round, i)
			}
		}
	}
	if cap(q.items) != capacity {
		t.Errorf("capacity %d after refills, want %d", cap(q.items), capacity)
	}
	want := uint16(3 * queueSize / 2)
	for i := 0; i < queueSize; i++ {
		it, ok := pop()
		if !ok || it.tx.Address != want {
			t.Fatalf("pop %d: got %v, %v; want address %d", i, it.tx, ok, want)
		}
		want++
	}
	if _, ok := pop(); ok {
		t.Error("pop after all taken: got one, want none")
	}
}
