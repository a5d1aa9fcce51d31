package modbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/goburrow/modbus"
	"github.com/iotgw/iotgw/sidecar/modbussim"
)

func startSim(t testing.TB) *modbussim.Server {
	t.Helper()
	srv, err := modbussim.New(modbussim.Config{Listen: "127.0.0.1:0", Units: []modbussim.Unit{{ID: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	return srv
}

func newClient(t *testing.T, e Endpoint) *Client {
	t.Helper()
	c, err := NewClient(e)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func readHolding(addr uint16) Call {
	return Call{Slave: 1, Function: FuncHoldingRegisters, Address: addr, Quantity: 1, Timeout: 200 * time.Millisecond}
}

// TestClientReadWrite: a write and the read that sees it, against the simulator.
func TestClientReadWrite(t *testing.T) {
	srv := startSim(t)
	c := newClient(t, Endpoint{Address: srv.Addr().String()}) // mode "" is tcp
	if _, err := c.Do(Call{Slave: 1, Function: 6, Address: 7, Value: []byte{0x01, 0x02}, Timeout: time.Second}); err != nil {
		t.Fatalf("write: %v", err)
	}
	data, err := c.Do(readHolding(7))
	if err != nil || len(data) != 2 || data[0] != 1 || data[1] != 2 {
		t.Fatalf("read: % x, %v; want 01 02", data, err)
	}
}

// TestClientRetries: a call that gets no reply is tried 1 + Retries times; an exception reply only once.
func TestClientRetries(t *testing.T) {
	tests := []struct {
		name      string
		fault     modbussim.Fault
		retries   int
		wantKind  string
		wantReads uint64
	}{
		{"no reply, no retries", modbussim.Fault{Kind: modbussim.FaultNoReply}, 0, "timeout", 1},
		{"no reply, 2 retries", modbussim.Fault{Kind: modbussim.FaultNoReply}, 2, "timeout", 3},
		{"wrong transaction id", modbussim.Fault{Kind: modbussim.FaultWrongTxID}, 1, "mismatch", 2},
		{"exception is final", modbussim.Fault{Kind: modbussim.FaultException, Exception: 2}, 3, "exception", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startSim(t)
			srv.SetFaults(tc.fault)
			c := newClient(t, Endpoint{Mode: ModeTCP, Address: srv.Addr().String()})
			call := readHolding(0)
			call.Retries = tc.retries
			_, err := c.Do(call)
			if kind := ErrorKind(err); kind != tc.wantKind {
				t.Errorf("got %v (kind %q), want kind %q", err, kind, tc.wantKind)
			}
			if n := srv.Stats().Requests[3]; n != tc.wantReads {
				t.Errorf("the simulator saw %d reads, want %d", n, tc.wantReads)
			}
		})
	}
}

// TestClientDownAfterRefused: a refused connect is ErrDisconnected, and for the backoff after it calls fail at
// once with ErrDown, without dialling.
func TestClientDownAfterRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := newClient(t, Endpoint{Mode: ModeRTUOverTCP, Address: addr})
	if _, err := c.Do(readHolding(0)); !errors.Is(err, ErrDisconnected) || ErrorKind(err) != "disconnected" {
		t.Fatalf("got %v, want ErrDisconnected", err)
	}
	start := time.Now()
	if _, err := c.Do(readHolding(0)); !errors.Is(err, ErrDown) || ErrorKind(err) != "down" {
		t.Fatalf("got %v, want ErrDown", err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("a call while down took %s, want it to fail at once", d)
	}
}

func TestNewClientUnknownMode(t *testing.T) {
	if _, err := NewClient(Endpoint{Mode: "carrier-pigeon", Address: "x"}); !errors.Is(err, ErrMode) {
		t.Errorf("got %v, want ErrMode", err)
	}
}

// TestCRC16 checks the RTU CRC against a frame from the Modbus over serial line specification's examples.
func TestCRC16(t *testing.T) {
	if got := crc16([]byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x01}); got != 0x0A84 {
		t.Errorf("crc16 = %#04x, want 0x0a84 (sent 84 0A)", got)
	}
}

func TestErrorKind(t *testing.T) {
	dialTimeout := &net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"none", nil, ""},
		{"exception", fmt.Errorf("read: %w", &modbus.ModbusError{FunctionCode: 3, ExceptionCode: 2}), "exception"},
		{"timeout", fmt.Errorf("%w: i/o timeout", ErrTimeout), "timeout"},
		{"mismatch", fmt.Errorf("%w: crc", ErrMismatch), "mismatch"},
		{"down", fmt.Errorf("%w: reconnecting", ErrDown), "down"},
		{"short response", fmt.Errorf("register %q: %w", "a", ErrShortResponse), "invalid_reply"},
		{"dial timed out", fmt.Errorf("%w to x: %w", ErrDisconnected, dialTimeout), "disconnected"},
		{"deadline", os.ErrDeadlineExceeded, "timeout"},
		{"context deadline", context.DeadlineExceeded, "timeout"},
		{"net timeout", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, "timeout"},
		{"canceled", context.Canceled, "canceled"},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, "disconnected"},
		{"refused", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "disconnected"},
		{"eof", io.EOF, "disconnected"},
		{"closed", net.ErrClosed, "disconnected"},
		{"a reply goburrow refused", errors.New("modbus: response data size '3' does not match count '4'"), "invalid_reply"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ErrorKind(tc.err); got != tc.want {
				t.Errorf("ErrorKind(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}
