package modbus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/sidecar/modbussim"
	"github.com/rs/zerolog"
)

type linkLog struct {
	mu     sync.Mutex
	states []string
}

func (l *linkLog) record(state, _ string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.states = append(l.states, state)
}

func (l *linkLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.states...)
}

// startTransport runs a transport actor for dev; tx sends it one transaction and waits for the result.
func startTransport(t *testing.T, dev config.ModbusEndpoint, links *linkLog) func(tx *ModbusTx) *ModbusTxResult {
	t.Helper()
	sys := actor.NewActorSystem()
	env := actors.Env{Log: zerolog.Nop(), LinkState: links.record}
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
	var links linkLog
	do := startTransport(t, config.ModbusEndpoint{Mode: "tcp", Address: addr}, &links)

	res := do(read())
	if !errors.Is(res.Err, ErrDisconnected) || errorKind(res.Err) != "disconnected" {
		t.Fatalf("refused: %v (kind %s), want disconnected", res.Err, errorKind(res.Err))
	}
	if res := do(read()); errorKind(res.Err) != "down" {
		t.Errorf("during the backoff: %v (kind %s), want down", res.Err, errorKind(res.Err))
	}
	waitFor(t, 5*time.Second, func() error {
		if s := links.get(); len(s) != 1 || s[0] != actors.LinkDisconnected {
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
		if s := links.get(); len(s) != 2 || s[1] != actors.LinkConnected {
			return fmt.Errorf("link states %v", s)
		}
		return nil
	})
}

// TestTransportDropsExpired: a transaction whose caller has given up is answered ErrExpired (a timeout) and never
// sent; one with time left is.
func TestTransportDropsExpired(t *testing.T) {
	sim, err := modbussim.New(modbussim.Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()
	do := startTransport(t, config.ModbusEndpoint{Mode: "tcp", Address: sim.Addr().String()}, &linkLog{})

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
	var links linkLog
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
		if s := links.get(); len(s) != 1 || s[0] != actors.LinkDisconnected {
			return fmt.Errorf("link states %v", s)
		}
		return nil
	})
}
