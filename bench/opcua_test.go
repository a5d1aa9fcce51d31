package bench

import (
	"bufio"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/internal/testenv"
)

// opcuaServer runs the node-opcua test server with n bench nodes (ns=1;s=Bench.{i}, changing every 10 ms) as its
// own process, so the CPU measured (getrusage of this process) is the gateway's alone.
func opcuaServer(tb testing.TB, n int) string {
	tb.Helper()
	node, script := testenv.NodeOPCUA(tb)
	port := freePort(tb)
	cmd := exec.Command(node, script, "--port", fmt.Sprint(port), "--pki", tb.TempDir(), "--bench", fmt.Sprint(n))
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "listening ") {
			go func() { // drains the server's stdout until it exits (the benchmark's process, not an actor's)
				for sc.Scan() {
				}
			}()
			return fmt.Sprintf("opc.tcp://127.0.0.1:%d", port)
		}
	}
	tb.Fatal("the OPC UA server did not start")
	return ""
}

// opcuaResult is one OPC UA run's figures.
type opcuaResult struct {
	PointsPerSec, BatchesPerSec float64
	CPUPerPoint, CPUPerBatch    time.Duration
	AllocsPoint                 float64
}

// opcuaRun reads devices × nodes bench nodes in mode (poll every interval, or a subscription with that publishing
// and sampling interval) from node-opcua in another process, through the device actors, the bus and the
// processor, to a counting sink actor on iot.processed.batch.>, for d.
func opcuaRun(tb testing.TB, devices, nodes int, mode string, interval, d time.Duration) opcuaResult {
	endpoint := opcuaServer(tb, nodes)
	var src strings.Builder
	fmt.Fprintf(&src, "gateway { point_subjects = false }\n")
	for i := 0; i < devices; i++ {
		fmt.Fprintf(&src, "device \"ua-%d\" {\n  driver = \"opcua\"\n  endpoint = %q\n  mode = %q\n  interval = %q\n", i, endpoint, mode, interval)
		for n := 0; n < nodes; n++ {
			fmt.Fprintf(&src, "  node \"b%d\" {\n    node_id = \"ns=1;s=Bench.%d\"\n    type = \"int64\"\n", n, n)
			if mode == "subscribe" {
				fmt.Fprintf(&src, "    sampling_interval = %q\n", interval)
			}
			src.WriteString("  }\n")
		}
		src.WriteString("}\n")
	}
	cfg := parseHCL(tb, src.String())
	cfg.NATS.Port = -1
	cfg.Gateway.HTTPAddress = ""
	cfg.Gateway.DataDir = tb.TempDir()
	rt := startConfig(tb, cfg)
	defer func() { _ = rt.Stop() }()
	points, batches := addCounter(tb, rt)
	deadline := time.Now().Add(60 * time.Second) // until every device has a session and data flows
	for points.Load() < int64(devices*nodes*2) {
		if time.Now().After(deadline) {
			tb.Fatalf("no OPC UA points after 60s (%d)", points.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	p0, b0, cpu0, t0 := points.Load(), batches.Load(), cpuTime(), time.Now()
	time.Sleep(d)
	p1, b1, cpu1, el := points.Load(), batches.Load(), cpuTime(), time.Since(t0)
	runtime.ReadMemStats(&m1)
	np, nb := p1-p0, b1-b0
	if np == 0 || nb == 0 {
		tb.Fatal("no points")
	}
	return opcuaResult{
		PointsPerSec: float64(np) / el.Seconds(), BatchesPerSec: float64(nb) / el.Seconds(),
		CPUPerPoint: (cpu1 - cpu0) / time.Duration(np), CPUPerBatch: (cpu1 - cpu0) / time.Duration(nb),
		AllocsPoint: float64(m1.Mallocs-m0.Mallocs) / float64(np),
	}
}

var opcuaCases = []struct {
	devices, nodes int
	mode           string
	interval       time.Duration
}{
	{1, 100, "poll", 10 * time.Millisecond},
	{10, 100, "poll", 100 * time.Millisecond},
	{1, 100, "subscribe", 10 * time.Millisecond},
}

func BenchmarkOPCUA(b *testing.B) {
	for _, c := range opcuaCases {
		b.Run(fmt.Sprintf("%s/devices=%d/nodes=%d/every=%s", c.mode, c.devices, c.nodes, c.interval), func(b *testing.B) {
			r := opcuaRun(b, c.devices, c.nodes, c.mode, c.interval, 3*time.Second)
			b.ReportMetric(r.PointsPerSec, "points/s")
			b.ReportMetric(float64(r.CPUPerPoint.Nanoseconds()), "cpu-ns/point")
			b.ReportMetric(float64(r.CPUPerBatch.Microseconds()), "cpu-µs/batch")
			b.ReportMetric(r.AllocsPoint, "allocs/point")
		})
	}
}

// opcuaReport writes the OPC UA section of the report.
func opcuaReport(t *testing.T, sb *strings.Builder) {
	sb.WriteString("\n## OPC UA, server to processed\n\n")
	sb.WriteString("The node-opcua test server (actors/device/opcua/testdata/server) runs as a separate process with bench nodes\n")
	sb.WriteString("(UInt32, changing every 10 ms); the gateway reads them (one Read of all nodes per poll, or a subscription with a\n")
	sb.WriteString("monitored item per node), and the device actors, the bus and the processor bring them to a counting sink on\n")
	sb.WriteString("iot.processed.batch.>. CPU is this process's (the gateway's) only. node-opcua, not the gateway, bounds the rate:\n")
	sb.WriteString("it is a JavaScript server on the same two cores.\n\n")
	sb.WriteString("| mode | devices × nodes every | points/s | batches/s | CPU µs/point | CPU µs/batch | allocs/point |\n|---|---|---:|---:|---:|---:|---:|\n")
	for _, c := range opcuaCases {
		r := opcuaRun(t, c.devices, c.nodes, c.mode, c.interval, 5*time.Second)
		t.Logf("opcua %s %d × %d every %s: %.0f points/s, %s cpu/point", c.mode, c.devices, c.nodes, c.interval, r.PointsPerSec, r.CPUPerPoint)
		fmt.Fprintf(sb, "| %s | %d × %d every %s | %.0f | %.0f | %.2f | %.1f | %.1f |\n", c.mode, c.devices, c.nodes, c.interval,
			r.PointsPerSec, r.BatchesPerSec, float64(r.CPUPerPoint.Nanoseconds())/1000, float64(r.CPUPerBatch.Nanoseconds())/1000, r.AllocsPoint)
	}
}
