package bench

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
	"github.com/iotgw/iotgw/system"
	"github.com/nats-io/nats.go"
)

// result is one benchmark's figures.
type result struct {
	Name         string
	Points       int
	PointsPerSec float64
	CPUPerPoint  time.Duration // whole process: publisher, NATS server, gateway actors and sink
	AllocsPoint  float64
	BytesPoint   float64
	P50, P99     time.Duration // publish → sink
}

func (r result) report(b *testing.B) {
	// ns/op is the wall time of the whole run including set-up; the figures that matter are reported per point.
	b.ReportMetric(r.PointsPerSec, "points/s")
	b.ReportMetric(float64(r.CPUPerPoint.Nanoseconds()), "cpu-ns/point")
	b.ReportMetric(r.AllocsPoint, "allocs/point")
	b.ReportMetric(r.BytesPoint, "B/point")
	b.ReportMetric(float64(r.P50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(r.P99.Microseconds()), "p99-µs")
}

// window is how many batches may be in flight: enough to keep every stage busy, bounded so the latency figures
// measure the pipeline, not an ever-growing queue.
const window = 64

// flow is the publisher side's view of how far the sink has got.
type flow struct {
	tokens  chan struct{}
	got     atomic.Int64
	mu      sync.Mutex
	latency []time.Duration
	done    chan struct{}
	want    int64
}

func newFlow(points int) *flow {
	return &flow{tokens: make(chan struct{}, window), done: make(chan struct{}), want: int64(points), latency: make([]time.Duration, 0, 1<<16)}
}

// arrived records n points whose first was stamped at ts; releases a token when a whole batch is in.
func (f *flow) arrived(n int, ts int64, batchEnd bool) {
	if cap(f.latency) > len(f.latency) {
		f.mu.Lock()
		f.latency = append(f.latency, time.Duration(time.Now().UnixNano()-ts))
		f.mu.Unlock()
	}
	if batchEnd {
		<-f.tokens
	}
	if f.got.Add(int64(n)) >= f.want {
		select {
		case <-f.done:
		default:
			close(f.done)
		}
	}
}

// measure runs publish (which must call f.tokens <- struct{}{} before each batch) and returns the figures.
func measure(tb testing.TB, name string, points int, f *flow, publish func()) result {
	tb.Helper()
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cpu0, t0 := cpuTime(), time.Now()
	go publish()
	select {
	case <-f.done:
	case <-time.After(2 * time.Minute):
		tb.Fatalf("%s: only %d of %d points arrived", name, f.got.Load(), points)
	}
	wall, cpu := time.Since(t0), cpuTime()-cpu0
	runtime.ReadMemStats(&m1)
	f.mu.Lock()
	lat := f.latency
	f.mu.Unlock()
	return result{
		Name: name, Points: points,
		PointsPerSec: float64(points) / wall.Seconds(),
		CPUPerPoint:  cpu / time.Duration(points),
		AllocsPoint:  float64(m1.Mallocs-m0.Mallocs) / float64(points),
		BytesPoint:   float64(m1.TotalAlloc-m0.TotalAlloc) / float64(points),
		P50:          percentile(lat, 50), P99: percentile(lat, 99),
	}
}

// makeBatch builds a poll's worth of points like a mock or Modbus device produces.
func makeBatch(device string, n int) []isp.Point {
	pts := make([]isp.Point, n)
	for i := range pts {
		pts[i] = isp.Point{
			DeviceID: device, Key: "reg" + strconv.Itoa(i), Value: isp.Float(20 + float64(i)/10), Type: "float32",
			Quality: isp.QualityGood, Source: "modbus", Tags: []isp.Tag{{Key: "unit", Value: "C"}},
		}
	}
	return pts
}

// setup is how a run's gateway is built and driven.
type setup struct {
	batch         int           // points per raw message
	pointSubjects bool          // the processor also publishes every point on its own subject
	inProcess     bool          // the gateway's connection to its embedded server is in-memory, not TCP
	pace          time.Duration // one batch every pace (0: as fast as the window allows)
}

func startGateway(b testing.TB, pointSubjects, inProcess bool) *system.Runtime {
	b.Helper()
	cfg := config.Default()
	// The path without durability, as measured before JetStream was on by default (issue 11): the JetStream
	// comparison is a benchmark of its own.
	cfg.NATS.JetStream.Enabled = false
	cfg.NATS.Port = -1
	cfg.Gateway.HTTPAddress = "" // measured: the gateway's data path, not its HTTP server
	cfg.Gateway.DataDir = b.TempDir()
	cfg.Gateway.PointSubjects = pointSubjects
	cfg.NATS.InProcess = inProcess
	rt := system.New(cfg)
	if err := rt.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rt.Stop() })
	return rt
}

// counter is the counting sink: a real actor with a subject mailbox, like every sink.
type counter struct {
	subject string
	batches bool
	f       *flow
	batch   int
	dec     isp.Decoder
	pts     []isp.Point
	seen    int
}

func (c *counter) Inboxes() []actors.Inbox { return []actors.Inbox{{Subject: c.subject}} }

func (c *counter) Receive(ctx actor.Context) {
	msg, ok := ctx.Message().(*nats.Msg)
	if !ok {
		return
	}
	if c.batches {
		var err error
		c.pts, err = c.dec.DecodeBatch(msg.Data, c.pts[:0])
		if err != nil || len(c.pts) == 0 {
			panic(fmt.Sprintf("counter: %v", err))
		}
		c.f.arrived(len(c.pts), c.pts[0].Timestamp, true)
		return
	}
	if strings.HasPrefix(msg.Subject, "iot.processed.batch.") {
		return
	}
	if cap(c.pts) == 0 {
		c.pts = make([]isp.Point, 1)
	}
	c.pts = c.pts[:1]
	if err := c.dec.DecodePoint(msg.Data, &c.pts[0]); err != nil {
		panic(fmt.Sprintf("counter: %v", err))
	}
	c.seen++
	end := c.seen%c.batch == 0
	c.f.arrived(1, c.pts[0].Timestamp, end)
}

// gatewayRun publishes raw batches as a device actor does (one message per poll on iot.raw.modbus.{device}),
// through the gateway's processing stage, to a counting sink actor.
func gatewayRun(b testing.TB, name string, n int, su setup) result {
	batchSize, pointSubjects := su.batch, su.pointSubjects
	rt := startGateway(b, pointSubjects, su.inProcess)
	defer func() { _ = rt.Stop() }()
	points := max(n, batchSize) / batchSize * batchSize
	f := newFlow(points)
	sinkSubject := "iot.processed.batch.>"
	if pointSubjects {
		sinkSubject = "iot.processed.*.*" // also matches the batches, which the counter skips
	}
	c := &counter{subject: sinkSubject, batches: !pointSubjects, f: f, batch: batchSize}
	if err := rt.AddActor(system.GroupSinks, system.ChildSpec{Name: "count", Kind: "sink/count", Producer: func() actor.Actor { return c }}); err != nil {
		b.Fatal(err)
	}
	waitRunning(b, rt, "sinks/count")
	pts := makeBatch("plc-1", batchSize)
	nc := rt.Bus().Conn
	return measure(b, name, points, f, func() {
		msg := &nats.Msg{Subject: "iot.raw.modbus.plc-1", Header: nats.Header{}}
		msg.Header.Set(actors.HeaderSource, "modbus")
		var tick <-chan time.Time
		if su.pace > 0 {
			t := time.NewTicker(su.pace)
			defer t.Stop()
			tick = t.C
		}
		for sent := 0; sent < points; sent += batchSize {
			if tick != nil {
				<-tick
			}
			f.tokens <- struct{}{}
			ts := time.Now().UnixNano()
			for i := range pts {
				pts[i].Timestamp = ts
			}
			msg.Data = isp.AppendBatch(msg.Data[:0], pts)
			if err := nc.PublishMsg(msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// rawRun is the same machine's NATS alone: JSON points (batchSize 1: one message per point) or batches published on
// one TCP loopback connection to the embedded server and decoded by a subscriber on another.
func rawRun(b testing.TB, name string, n, batchSize int) result {
	rt := startGateway(b, false, false)
	defer func() { _ = rt.Stop() }()
	points := max(n, batchSize) / batchSize * batchSize
	f := newFlow(points)
	sub, err := nats.Connect(rt.Bus().URL)
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	var dec isp.Decoder
	var buf []isp.Point
	var p isp.Point
	if _, err := sub.Subscribe("bench.raw", func(m *nats.Msg) {
		if batchSize == 1 {
			if err := dec.DecodePoint(m.Data, &p); err != nil {
				b.Error(err)
			}
			f.arrived(1, p.Timestamp, true)
			return
		}
		buf, err = dec.DecodeBatch(m.Data, buf[:0])
		if err != nil {
			b.Error(err)
		}
		f.arrived(len(buf), buf[0].Timestamp, true)
	}); err != nil {
		b.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		b.Fatal(err)
	}
	pub, err := nats.Connect(rt.Bus().URL)
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	pts := makeBatch("plc-1", batchSize)
	return measure(b, name, points, f, func() {
		var data []byte
		for sent := 0; sent < points; sent += batchSize {
			f.tokens <- struct{}{}
			ts := time.Now().UnixNano()
			for i := range pts {
				pts[i].Timestamp = ts
			}
			if batchSize == 1 {
				data = isp.AppendPoint(data[:0], &pts[0])
			} else {
				data = isp.AppendBatch(data[:0], pts)
			}
			if err := pub.Publish("bench.raw", data); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// waitRunning waits until an actor has started (its subscriptions are made) and the server has seen them.
func waitRunning(b testing.TB, rt *system.Runtime, path string) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n, ok := rt.Tree().Get(path); ok && n.State == system.StateRunning {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s did not start", path)
		}
		time.Sleep(time.Millisecond)
	}
	if err := rt.Bus().Conn.Flush(); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkRawNATS(b *testing.B) {
	for _, size := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			rawRun(b, fmt.Sprintf("raw NATS, %d point(s)/msg", size), b.N, size).report(b)
		})
	}
}

func BenchmarkGateway(b *testing.B) {
	for _, size := range []int{10, 100} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			gatewayRun(b, fmt.Sprintf("gateway, batches of %d", size), b.N, setup{batch: size, inProcess: true}).report(b)
		})
	}
	b.Run("per-point", func(b *testing.B) {
		gatewayRun(b, "gateway, per-point subjects (batches of 100 in)", b.N, setup{batch: 100, pointSubjects: true, inProcess: true}).report(b)
	})
	b.Run("tcp", func(b *testing.B) {
		gatewayRun(b, "gateway, batches of 100, TCP loopback connection", b.N, setup{batch: 100}).report(b)
	})
}

// parseHCL parses a benchmark's gateway configuration.
func parseHCL(tb testing.TB, src string) *config.Config {
	tb.Helper()
	cfg, diags := config.Parse([]byte(src), "bench.hcl")
	if diags.HasErrors() {
		tb.Fatal(diags.Error())
	}
	return cfg
}

// startConfig starts a gateway in this process, stopped at the end of the test (Stop is idempotent, so a run may
// stop it earlier).
func startConfig(tb testing.TB, cfg *config.Config) *system.Runtime {
	tb.Helper()
	rt := system.New(cfg)
	if err := rt.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = rt.Stop() })
	return rt
}

// addCounter adds a counting sink actor (pointCounter) on iot.processed.batch.> and waits until it runs.
func addCounter(tb testing.TB, rt *system.Runtime) (points, batches *atomic.Int64) {
	tb.Helper()
	points, batches = new(atomic.Int64), new(atomic.Int64)
	c := &pointCounter{points: points, batches: batches}
	if err := rt.AddActor(system.GroupSinks, system.ChildSpec{Name: "count", Kind: "sink/count", Producer: func() actor.Actor { return c }}); err != nil {
		tb.Fatal(err)
	}
	waitRunning(tb, rt, "sinks/count")
	return points, batches
}
