package bench

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/iotgw/iotgw/system"
)

// The WebSocket endpoint's benchmark (/ws, system/websocket.go): processed batches of 30 points published on the
// gateway's connection (core subjects: the endpoint is a live view, not a durable consumer), streamed to real
// WebSocket clients (coder/websocket's Dial, in this process) on loopback, each bus message one text frame. A
// client counts its frames and checks each is the endpoint's frame of a processed batch. The publisher keeps at
// most wsWindow batches ahead of the slowest client: the endpoint drops a client that falls wsQueue messages behind
// (a live view never slows the gateway), so a run that went faster than its clients read would measure the drop,
// not the stream. CPU is the whole process's (publisher, NATS server, the endpoint, and the clients' reads) per
// point delivered to each client; the raw NATS rate for batches of 30 is measured in the same run.

const wsWindow = 256 // batches: about 0.8 MB of frames, a fifth of the endpoint's per-connection byte bound

// wsClient is one browser: it reads frames until its context ends and counts those of processed batches.
type wsClient struct {
	frames atomic.Int64
	bad    atomic.Int64
	seen   atomic.Bool // any frame, the readiness probe's too
	err    error
	done   chan struct{}
}

func startWSGateway(tb testing.TB) *system.Runtime {
	tb.Helper()
	src := `
gateway {
  http_address   = "127.0.0.1:0"
  point_subjects = false
}
nats {
  port = -1
  jetstream { enabled = false }
}
`
	cfg := parseHCL(tb, src)
	rt := startConfig(tb, cfg)
	return rt
}

// dialWS connects a client to /ws?subject=iot.processed.batch.> and starts its read loop.
func dialWS(ctx context.Context, tb testing.TB, rt *system.Runtime) *wsClient {
	c, _, err := websocket.Dial(ctx, "ws://"+rt.HTTPAddr()+"/ws?subject=iot.processed.batch.%3E", nil)
	if err != nil {
		tb.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	cl := &wsClient{done: make(chan struct{})}
	prefix := []byte(`{"subject":"iot.processed.batch.`)
	go func() {
		defer close(cl.done)
		defer c.CloseNow()
		var buf bytes.Buffer
		for {
			typ, r, err := c.Reader(ctx)
			if err != nil {
				if ctx.Err() == nil {
					cl.err = err
				}
				return
			}
			buf.Reset()
			if _, err := buf.ReadFrom(r); err != nil {
				cl.err = err
				return
			}
			b := buf.Bytes()
			cl.seen.Store(true)
			switch {
			case typ != websocket.MessageText || !bytes.HasPrefix(b, prefix):
				cl.bad.Add(1)
			case bytes.Contains(b[:min(len(b), 64)], []byte("batch.ready")):
				// the readiness probe, not a point
			default:
				cl.frames.Add(1)
			}
		}
	}()
	return cl
}

// wsRun streams n points to clients WebSocket clients and returns the rate each client received.
func wsRun(tb testing.TB, name string, n, clients int) result {
	rt := startWSGateway(tb)
	defer func() { _ = rt.Stop() }()
	ctx, cancel := context.WithCancel(context.Background())
	var cls []*wsClient
	defer func() {
		cancel()
		for _, cl := range cls {
			<-cl.done
		}
	}()
	for range clients {
		cls = append(cls, dialWS(ctx, tb, rt))
	}
	// Ready: the endpoint subscribes after the upgrade, so a probe is published until every client has seen one.
	nc := rt.Bus().Conn
	probe := []byte(`{"points":[]}`)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := nc.Publish("iot.processed.batch.ready", probe); err != nil {
			tb.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		all := true
		for _, cl := range cls {
			all = all && cl.seen.Load()
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: the WebSocket clients saw no probe in 10s", name)
		}
	}
	batches := max(n, fileBatch) / fileBatch
	p := newPublisher(tb, rt, false)
	slowest := func() int64 {
		m := int64(-1)
		for _, cl := range cls {
			if f := cl.frames.Load(); m < 0 || f < m {
				m = f
			}
		}
		return m
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cpu0, t0 := cpuTime(), time.Now()
	deadline := t0.Add(5 * time.Minute)
	for sent := int64(0); sent < int64(batches); sent++ {
		for sent-slowest() >= wsWindow {
			if time.Now().After(deadline) {
				tb.Fatalf("%s: stuck at %d of %d frames", name, slowest(), batches)
			}
			runtime.Gosched()
		}
		p.one()
	}
	for slowest() < int64(batches) {
		for _, cl := range cls {
			select {
			case <-cl.done:
				tb.Fatalf("%s: a client ended after %d of %d frames: %v", name, cl.frames.Load(), batches, cl.err)
			default:
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: only %d of %d frames", name, slowest(), batches)
		}
		time.Sleep(time.Millisecond)
	}
	wall, cpu := time.Since(t0), cpuTime()-cpu0
	runtime.ReadMemStats(&m1)
	for _, cl := range cls {
		if got := cl.frames.Load(); got != int64(batches) || cl.bad.Load() != 0 {
			tb.Fatalf("%s: a client had %d frames of %d, %d not a processed batch's", name, got, batches, cl.bad.Load())
		}
	}
	points := batches * fileBatch
	delivered := time.Duration(points * clients)
	return result{
		Name: name, Points: points,
		PointsPerSec: float64(points) / wall.Seconds(),
		CPUPerPoint:  cpu / delivered,
		AllocsPoint:  float64(m1.Mallocs-m0.Mallocs) / float64(delivered),
		BytesPoint:   float64(m1.TotalAlloc-m0.TotalAlloc) / float64(delivered),
	}
}

// wsSection runs the rows and returns the report's section.
func wsSection(t *testing.T, n int) string {
	rows := []result{
		rawRun(t, "raw NATS, batches of 30", n, fileBatch),
		wsRun(t, "websocket, 1 client", n, 1),
		wsRun(t, "websocket, 4 clients", n, 4),
	}
	var sb strings.Builder
	sb.WriteString("\n## WebSocket endpoint: processed batches of 30 to browsers\n\n")
	sb.WriteString("Processed batches of 30 points for 10 devices published on the gateway's connection (core subjects: /ws is a\n")
	sb.WriteString("live view), streamed by the endpoint to real WebSocket clients (coder/websocket, in this process) on loopback,\n")
	sb.WriteString("a text frame per bus message; each client checks and counts every frame. The publisher keeps at most 256\n")
	sb.WriteString("batches ahead of the slowest client (the endpoint drops a client that falls 4096 messages behind rather than\n")
	sb.WriteString("slow the gateway). points/s is what each client received; CPU is the whole process's (publisher, NATS server,\n")
	sb.WriteString("endpoint and the clients' own reads) per point delivered to a client.\n\n")
	sb.WriteString("| run | points/s (each client) | CPU µs/point delivered | allocs/point |\n|---|---:|---:|---:|\n")
	for _, r := range rows {
		t.Logf("%-30s %10.0f points/s %8s cpu/point", r.Name, r.PointsPerSec, r.CPUPerPoint)
		fmt.Fprintf(&sb, "| %s | %.0f | %.2f | %.1f |\n", r.Name, r.PointsPerSec, float64(r.CPUPerPoint.Nanoseconds())/1000, r.AllocsPoint)
	}
	return sb.String()
}

func BenchmarkWebSocket(b *testing.B) {
	for _, clients := range []int{1, 4} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			r := wsRun(b, "websocket", max(b.N, 30_000), clients)
			b.ReportMetric(r.PointsPerSec, "points/s")
			b.ReportMetric(float64(r.CPUPerPoint.Nanoseconds()), "cpu-ns/point")
			b.ReportMetric(r.AllocsPoint, "allocs/point")
		})
	}
}
