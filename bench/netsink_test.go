package bench

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/iotgw/iotgw/system"
)

// The network sinks' benchmarks (redis, influxdb; one file each): processed batches of 30 points for 10 devices,
// published with acknowledged publishes into IOT_DATA as the processing stage does, read by the sink's durable
// consumer and written into its real server, started by the benchmark on a loopback port. CPU is this process's
// (publisher, NATS server, gateway, sink) per point, and the server's own, from /proc, beside it.

// startSinkGateway runs the gateway in-process with JetStream and the one sink block given.
func startSinkGateway(tb testing.TB, sinkBlock, sinkName string) *system.Runtime {
	tb.Helper()
	src := fmt.Sprintf(`
gateway {
  data_dir       = %q
  http_address   = ""
  point_subjects = false
}
nats {
  port = -1
  jetstream { enabled = true }
}
%s
`, tb.TempDir(), sinkBlock)
	cfg := parseHCL(tb, src)
	rt := startConfig(tb, cfg)
	waitRunning(tb, rt, "sinks/"+sinkName)
	select {
	case <-rt.Bus().JetStreamReady():
	case <-time.After(30 * time.Second):
		tb.Fatal("JetStream not ready")
	}
	return rt
}

// pointsOut reads a sink's points_out counter: the points it wrote and acknowledged.
func pointsOut(rt *system.Runtime, actor string) int64 {
	mfs, err := rt.Gatherer().Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != "iotgw_points_out_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "actor" && l.GetValue() == actor {
					return int64(m.GetCounter().GetValue())
				}
			}
		}
	}
	return 0
}

// netSinkResult is one run into a server: the process's figures and the server's CPU per point.
type netSinkResult struct {
	result
	ServerCPUPerPoint time.Duration
}

// netSinkRun publishes n points in batches of 30 and waits until the sink has written them all.
func netSinkRun(tb testing.TB, name string, n int, srv *testenv.Server, sinkBlock, sinkName string) netSinkResult {
	rt := startSinkGateway(tb, sinkBlock, sinkName)
	defer func() { _ = rt.Stop() }()
	actor := "sinks/" + sinkName
	points := max(n, fileBatch) / fileBatch * fileBatch
	p := newPublisher(tb, rt, true)
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cpu0, srv0, t0 := cpuTime(), srv.CPU(), time.Now()
	deadline := t0.Add(5 * time.Minute)
	written, checked := int64(0), time.Time{}
	// The counter is read through the Prometheus registry (the whole gather: every sink's and inbox's figures),
	// so at most every 20ms: read every 2ms it was a fifth of the process's CPU in a slow sink's run, charged
	// to the sink per point.
	for p.sent < int64(points) {
		for p.sent-written > fileWindow {
			if time.Now().After(deadline) {
				tb.Fatalf("%s: stuck at %d of %d points written", name, written, points)
			}
			time.Sleep(2 * time.Millisecond)
			if time.Since(checked) > 20*time.Millisecond {
				written, checked = pointsOut(rt, actor), time.Now()
			}
		}
		p.one()
		if time.Since(checked) > 20*time.Millisecond {
			written, checked = pointsOut(rt, actor), time.Now()
		}
	}
	for written < int64(points) {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: only %d of %d points written", name, written, points)
		}
		time.Sleep(10 * time.Millisecond)
		written = pointsOut(rt, actor)
	}
	wall, cpu, scpu := time.Since(t0), cpuTime()-cpu0, srv.CPU()-srv0
	runtime.ReadMemStats(&m1)
	return netSinkResult{result: result{
		Name: name, Points: points,
		PointsPerSec: float64(points) / wall.Seconds(),
		CPUPerPoint:  cpu / time.Duration(points),
		AllocsPoint:  float64(m1.Mallocs-m0.Mallocs) / float64(points),
		BytesPoint:   float64(m1.TotalAlloc-m0.TotalAlloc) / float64(points),
	}, ServerCPUPerPoint: scpu / time.Duration(points)}
}

// netSinkTable renders rows: the raw bus, the server alone with its own client, the sink.
func netSinkTable(sb *strings.Builder, rows []netSinkResult) {
	sb.WriteString("| run | points/s | CPU µs/point (this process) | server CPU µs/point | allocs/point |\n|---|---:|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(sb, "| %s | %.0f | %.2f | %.2f | %.1f |\n", r.Name, r.PointsPerSec,
			float64(r.CPUPerPoint.Nanoseconds())/1000, float64(r.ServerCPUPerPoint.Nanoseconds())/1000, r.AllocsPoint)
	}
}
