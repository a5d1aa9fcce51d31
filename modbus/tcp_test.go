package modbus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/goburrow/modbus"
)

// replyServer answers each request on one connection with what answer makes of it (nil: no reply, the
// connection closed), written in the given pieces.
func replyServer(t *testing.T, answer func(req []byte) [][]byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 300)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					parts := answer(append([]byte(nil), buf[:n]...))
					if parts == nil {
						return
					}
					for _, p := range parts {
						if _, err := c.Write(p); err != nil {
							return
						}
						time.Sleep(time.Millisecond) // separate segments: the client must read on
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// adu is a reply to req with the PDU pdu, its MBAP header from req (length fixed up).
func adu(req []byte, pdu ...byte) []byte {
	b := append(append([]byte(nil), req[:7]...), pdu...)
	binary.BigEndian.PutUint16(b[4:], uint16(len(pdu)+1))
	return b
}

func one(b []byte) [][]byte { return [][]byte{b} }

func TestTCPReplies(t *testing.T) {
	read := Call{Slave: 1, Function: FuncHoldingRegisters, Address: 4, Quantity: 2, Timeout: 300 * time.Millisecond}
	tests := []struct {
		name   string
		call   Call
		answer func(req []byte) [][]byte
		want   []byte
		kind   string // ErrorKind of the error; "" for none
	}{
		{"read", read, func(r []byte) [][]byte { return one(adu(r, 3, 4, 1, 2, 3, 4)) }, []byte{1, 2, 3, 4}, ""},
		{"read in three pieces", read, func(r []byte) [][]byte {
			b := adu(r, 3, 4, 1, 2, 3, 4)
			return [][]byte{b[:3], b[3:9], b[9:]}
		}, []byte{1, 2, 3, 4}, ""},
		{"write single register", Call{Slave: 1, Function: 6, Address: 9, Value: []byte{0, 7}, Timeout: time.Second},
			func(r []byte) [][]byte { return one(adu(r, 6, 0, 9, 0, 7)) }, []byte{0, 7}, ""},
		{"write multiple registers", Call{Slave: 1, Function: 16, Address: 9, Quantity: 2, Value: []byte{0, 1, 0, 2}, Timeout: time.Second},
			func(r []byte) [][]byte { return one(adu(r, 16, 0, 9, 0, 2)) }, []byte{0, 2}, ""},
		{"exception", read, func(r []byte) [][]byte { return one(adu(r, 0x83, 2)) }, nil, "exception"},
		{"wrong transaction id", read, func(r []byte) [][]byte {
			b := adu(r, 3, 2, 0, 0)
			b[1]++
			return one(b)
		}, nil, "mismatch"},
		{"wrong protocol id", read, func(r []byte) [][]byte { b := adu(r, 3, 2, 0, 0); b[3] = 1; return one(b) }, nil, "mismatch"},
		{"wrong unit id", read, func(r []byte) [][]byte { b := adu(r, 3, 2, 0, 0); b[6] = 9; return one(b) }, nil, "mismatch"},
		{"another function", read, func(r []byte) [][]byte { return one(adu(r, 4, 2, 0, 0)) }, nil, "mismatch"},
		{"MBAP length 0", read, func(r []byte) [][]byte { b := adu(r, 3, 2, 0, 0); b[4], b[5] = 0, 0; return one(b) }, nil, "mismatch"},
		{"MBAP length too large", read, func(r []byte) [][]byte { b := adu(r, 3, 2, 0, 0); b[4], b[5] = 1, 0; return one(b) }, nil, "mismatch"},
		{"bytes after the reply", read, func(r []byte) [][]byte { return one(append(adu(r, 3, 4, 1, 2, 3, 4), 0xEE)) }, nil, "mismatch"},
		{"byte count off", read, func(r []byte) [][]byte { return one(adu(r, 3, 5, 1, 2, 3, 4)) }, nil, "invalid_reply"},
		{"no data", read, func(r []byte) [][]byte { return one(adu(r, 3)) }, nil, "invalid_reply"},
		{"write echo off", Call{Slave: 1, Function: 6, Address: 9, Value: []byte{0, 7}, Timeout: time.Second},
			func(r []byte) [][]byte { return one(adu(r, 6, 0, 9, 0, 8)) }, nil, "invalid_reply"},
		{"truncated", read, func(r []byte) [][]byte { return one(adu(r, 3, 4, 1, 2, 3, 4)[:9]) }, nil, "timeout"},
		{"closed", read, func(r []byte) [][]byte { return nil }, nil, "disconnected"},
		{"silent", read, func(r []byte) [][]byte { return [][]byte{} }, nil, "timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := replyServer(t, tc.answer)
			c := newClient(t, Endpoint{Address: addr})
			got, err := c.Do(tc.call)
			kind := ErrorKind(err)
			if kind != tc.kind || !bytes.Equal(got, tc.want) {
				t.Fatalf("got % x, %v (kind %q); want % x, kind %q", got, err, kind, tc.want, tc.kind)
			}
			var exc *modbus.ModbusError
			if tc.kind == "exception" && (!errors.As(err, &exc) || exc.ExceptionCode != 2 || exc.FunctionCode != 0x83) {
				t.Fatalf("got %#v, want exception 2 of function 0x83", err)
			}
		})
	}
}

// Requests the protocol does not allow never reach the wire.
func TestTCPRefusesBadRequests(t *testing.T) {
	sent := make(chan struct{}, 1)
	addr := replyServer(t, func(r []byte) [][]byte { sent <- struct{}{}; return nil })
	c := newClient(t, Endpoint{Address: addr})
	for _, call := range []Call{
		{Slave: 1, Function: 3, Quantity: 0},
		{Slave: 1, Function: 3, Quantity: 126},
		{Slave: 1, Function: 1, Quantity: 2001},
		{Slave: 1, Function: 5, Value: []byte{0x12, 0x34}},
		{Slave: 1, Function: 6, Value: []byte{1}},
		{Slave: 1, Function: 16, Quantity: 2, Value: []byte{1, 2}},
		{Slave: 1, Function: 16, Quantity: 124, Value: make([]byte, 248)},
		{Slave: 1, Function: 15, Quantity: 9, Value: []byte{1}},
		{Slave: 1, Function: 8, Quantity: 1},
	} {
		if _, err := c.Do(call); err == nil {
			t.Errorf("function %d quantity %d value % x: got no error", call.Function, call.Quantity, call.Value)
		}
	}
	select {
	case <-sent:
		t.Fatal("a refused request reached the wire")
	default:
	}
}

// A read into a buffer with room allocates nothing: the poll path's cost per request (the lever).
func TestTCPReadAllocatesNothing(t *testing.T) {
	srv := startSim(t)
	c := newClient(t, Endpoint{Address: srv.Addr().String()})
	call := Call{Slave: 1, Function: FuncHoldingRegisters, Address: 0, Quantity: 30, Timeout: time.Second}
	buf := make([]byte, 0, 256)
	if _, err := c.DoAppend(buf, call); err != nil { // connect first
		t.Fatal(err)
	}
	var err error
	if n := testing.AllocsPerRun(200, func() { _, err = c.DoAppend(buf[:0], call) }); n != 0 {
		t.Fatalf("got %v allocations per read, want 0", n)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// FuzzTCPReply: any bytes a device sends are a reply or an error, never a panic, and a reply's data lies within
// what was sent.
func FuzzTCPReply(f *testing.F) {
	call := Call{Slave: 1, Function: FuncHoldingRegisters, Address: 4, Quantity: 2}
	var tc tcpClient
	tc.slave = 1
	n, _ := tc.encode(&call)
	req := append([]byte(nil), tc.req[:n]...)
	f.Add(adu(req, 3, 4, 1, 2, 3, 4))
	f.Add(adu(req, 0x83, 2))
	f.Add(adu(req, 3))
	f.Fuzz(func(t *testing.T, resp []byte) {
		if len(resp) < tcpHeaderSize {
			return
		}
		want, err := frameLength(resp)
		if err != nil {
			return
		}
		if want > tcpMaxLength {
			t.Fatalf("frame of %d bytes allowed", want)
		}
		if len(resp) < want {
			return
		}
		data, err := reply(nil, &call, req, resp[:want])
		if err == nil && (len(data) > want || !bytes.Contains(resp, data)) {
			t.Fatalf("data % x not from the reply % x", data, resp)
		}
	})
}

func BenchmarkTCPRead(b *testing.B) {
	srv := startSim(b)
	c, _ := NewClient(Endpoint{Address: srv.Addr().String()})
	defer c.Close()
	call := Call{Slave: 1, Function: FuncHoldingRegisters, Address: 0, Quantity: 30, Timeout: time.Second}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := c.DoAppend(buf[:0], call); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGoburrowTCPRead is the same read through goburrow's TCP client, the client's TCP path before tcp.go.
func BenchmarkGoburrowTCPRead(b *testing.B) {
	srv := startSim(b)
	h := modbus.NewTCPClientHandler(srv.Addr().String())
	h.SlaveId, h.Timeout = 1, time.Second
	defer h.Close()
	c := modbus.NewClient(h)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := c.ReadHoldingRegisters(0, 30); err != nil {
			b.Fatal(err)
		}
	}
}
