package modbussim

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/goburrow/modbus"
)

// startServer runs a server for cfg on a free loopback port until the test ends.
func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// dial returns a goburrow client for one unit of s, closed when the test ends.
func dial(t testing.TB, s *Server, unitID uint8, timeout time.Duration) (modbus.Client, *modbus.TCPClientHandler) {
	t.Helper()
	h := modbus.NewTCPClientHandler(s.Addr().String())
	h.SlaveId = unitID
	h.Timeout = timeout
	h.IdleTimeout = 0
	if err := h.Connect(); err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return modbus.NewClient(h), h
}

// exceptionCode is the Modbus exception in err, or 0.
func exceptionCode(err error) byte {
	var me *modbus.ModbusError
	if errors.As(err, &me) {
		return me.ExceptionCode
	}
	return 0
}

// adu frames a PDU with an MBAP header.
func adu(tx uint16, unitID byte, pdu ...byte) []byte {
	b := make([]byte, 7, 7+len(pdu))
	binary.BigEndian.PutUint16(b, tx)
	binary.BigEndian.PutUint16(b[4:], uint16(1+len(pdu)))
	b[6] = unitID
	return append(b, pdu...)
}

// readADU reads one MBAP frame from c.
func readADU(c net.Conn) ([]byte, error) {
	h := make([]byte, 7)
	if _, err := io.ReadFull(c, h); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(h[4:]))
	if n < 1 {
		return nil, errors.New("length 0 in response")
	}
	b := make([]byte, 6+n)
	copy(b, h)
	_, err := io.ReadFull(c, b[7:])
	return b, err
}

// rawDial opens a plain TCP connection to s with a deadline.
func rawDial(t testing.TB, s *Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	// The wait is a guard against a hang, not a bound on speed: never shorter than hangFloor, so a test that asks
	// for a few seconds cannot fail on a loaded machine (go test -race ./... on two shared cores) only for being slow.
	d = max(d, hangFloor)
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func regsOf(b []byte) []uint16 {
	out := make([]uint16, len(b)/2)
	for i := range out {
		out[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	return out
}

func bytesOf(regs ...uint16) []byte {
	b := make([]byte, 0, 2*len(regs))
	for _, r := range regs {
		b = binary.BigEndian.AppendUint16(b, r)
	}
	return b
}

func contextWithCancel(t testing.TB) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, cancel
}

// hangFloor is the shortest wait of a polling helper (a failure waits this long; a success returns at once).
const hangFloor = 30 * time.Second
