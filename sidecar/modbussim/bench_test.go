package modbussim

import (
	"fmt"
	"io"
	"testing"
	"time"
)

var benchSizes = []uint16{10, 125}

// BenchmarkGoburrowRead is a gateway's view: one goburrow client, one
// loopback connection, one holding-register read after another.
func BenchmarkGoburrowRead(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("regs=%d", n), func(b *testing.B) {
			s := startServer(b, Demo())
			c, _ := dial(b, s, 2, 5*time.Second)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.ReadHoldingRegisters(0, n); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
		})
	}
}

// BenchmarkRawRead uses a client that does not allocate, so allocs/op is
// the server's (and the loopback socket's) per request.
func BenchmarkRawRead(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("regs=%d", n), func(b *testing.B) {
			s := startServer(b, Demo())
			c := rawDial(b, s)
			c.SetDeadline(time.Time{})
			req := adu(1, 2, 3, 0, 0, byte(n>>8), byte(n))
			resp := make([]byte, 9+2*int(n))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, resp); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
		})
	}
}

// BenchmarkServeFrame is the server's work per request without the network:
// decode, refresh the demo meter's signals, encode.
func BenchmarkServeFrame(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("regs=%d", n), func(b *testing.B) {
			s, err := New(Demo())
			if err != nil {
				b.Fatal(err)
			}
			req := adu(1, 2, 3, 0, 0, byte(n>>8), byte(n))
			out := make([]byte, 0, maxFrame)
			b.ReportAllocs()
			for b.Loop() {
				res, err := s.serveFrame(out[:0], req)
				if err != nil || len(res.resp) != 9+2*int(n) {
					b.Fatalf("%v, %d bytes", err, len(res.resp))
				}
			}
		})
	}
}
