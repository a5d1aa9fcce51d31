package bench

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/iotgw/iotgw/system"
)

// The MQTT and HTTP drivers from their source to iot.processed. The source runs as its own process in both —
// Debian's mosquitto fed by mosquitto_pub -l (one message per line of a file), and python3's http.server
// serving a JSON file — so the CPU measured (getrusage of this process) is the gateway's alone: the driver's
// client, the payload mapper, the bus, the processor and a counting sink.

// southboundResult is one run's figures.
type southboundResult struct {
	Name         string
	Points       int64
	PointsPerSec float64
	MsgsPerSec   float64
	CPUPerPoint  time.Duration
	AllocsPoint  float64
}

// startSouthbound starts a gateway with the config src and a counting sink on iot.processed.batch.>.
func startSouthbound(tb testing.TB, src string) (*system.Runtime, *atomic.Int64, *atomic.Int64) {
	tb.Helper()
	cfg := parseHCL(tb, "gateway { point_subjects = false }\n"+src)
	cfg.NATS.Port = -1
	cfg.Gateway.HTTPAddress = ""
	cfg.Gateway.DataDir = tb.TempDir()
	rt := startConfig(tb, cfg)
	points, batches := addCounter(tb, rt)
	return rt, points, batches
}

// jsonMessage is one message of fields numbers: {"f0":0.5,"f1":1.5,…}.
func jsonMessage(fields, seq int) string {
	var sb strings.Builder
	sb.WriteByte('{')
	for f := 0; f < fields; f++ {
		if f > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `"f%d":%d.5`, f, seq+f)
	}
	sb.WriteByte('}')
	return sb.String()
}

// mqttRun publishes messages JSON messages of fields numbers each through mosquitto and counts the points that
// reach iot.processed.
func mqttRun(tb testing.TB, messages, fields int, window time.Duration) southboundResult {
	broker := testenv.Mosquitto(tb, "max_queued_messages 0\nmax_inflight_messages 0\n")
	_, points, batches := startSouthbound(tb, fmt.Sprintf(`
device "mq" {
  driver = "mqtt"
  broker = %q
  qos    = 0
  batch_window = %q
  subscribe "bench/+device" { format = "json" }
}
`, broker.URL(), window))
	// Connected and subscribed: a probe message arrives.
	deadline := time.Now().Add(30 * time.Second)
	for points.Load() == 0 {
		if time.Now().After(deadline) {
			tb.Fatal("the mqtt device receives nothing")
		}
		broker.Publish(tb, "bench/probe", []byte(`{"x":1}`))
		time.Sleep(50 * time.Millisecond)
	}
	file := filepath.Join(tb.TempDir(), "messages")
	var sb strings.Builder
	for i := 0; i < messages; i++ {
		sb.WriteString(jsonMessage(fields, i))
		sb.WriteByte('\n')
	}
	if err := os.WriteFile(file, []byte(sb.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	in, err := os.Open(file)
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	p0, b0, cpu0, t0 := points.Load(), batches.Load(), cpuTime(), time.Now()
	pub := exec.Command(testenv.MosquittoPub, "-h", "127.0.0.1", "-p", strconv.Itoa(broker.Port), "-t", "bench/meter", "-l", "-q", "0")
	pub.Stdin = in
	if out, err := pub.CombinedOutput(); err != nil {
		tb.Fatalf("mosquitto_pub -l: %v: %s", err, out)
	}
	want := p0 + int64(messages*fields)
	last, lastAt := points.Load(), time.Now()
	for points.Load() < want && time.Since(lastAt) < 3*time.Second {
		time.Sleep(5 * time.Millisecond)
		if n := points.Load(); n != last {
			last, lastAt = n, time.Now()
		}
	}
	el := lastAt.Sub(t0)
	cpu1 := cpuTime()
	runtime.ReadMemStats(&m1)
	np, nb := points.Load()-p0, batches.Load()-b0
	if np == 0 {
		tb.Fatal("no points")
	}
	// The CPU of the idle wait after the last point is left out only roughly: the wait is at most 3 s of sleeping.
	return southboundResult{
		Name:   fmt.Sprintf("mqtt, %d JSON messages × %d fields, batch_window %s (%d arrived)", messages, fields, window, np),
		Points: np, PointsPerSec: float64(np) / el.Seconds(), MsgsPerSec: float64(nb) / el.Seconds(),
		CPUPerPoint: (cpu1 - cpu0) / time.Duration(np), AllocsPoint: float64(m1.Mallocs-m0.Mallocs) / float64(np),
	}
}

// httpRun polls a JSON document of fields numbers from python3's http.server every interval for d.
func httpRun(tb testing.TB, fields int, interval, d time.Duration) southboundResult {
	python := testenv.Python3(tb)
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "data.json"), []byte(jsonMessage(fields, 1)), 0o600); err != nil {
		tb.Fatal(err)
	}
	port := freePort(tb)
	srv := exec.Command(python, "-m", "http.server", strconv.Itoa(port), "--bind", "127.0.0.1", "--directory", dir)
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("python3 http.server does not listen: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, points, batches := startSouthbound(tb, fmt.Sprintf(`
device "web" {
  driver   = "http"
  url      = "http://127.0.0.1:%d/data.json"
  interval = %q
  format   = "json"
}
`, port, interval))
	for points.Load() == 0 {
		if time.Now().After(deadline) {
			tb.Fatal("the http device receives nothing")
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
	if np == 0 {
		tb.Fatal("no points")
	}
	return southboundResult{
		Name:   fmt.Sprintf("http poll, %d fields every %s", fields, interval),
		Points: np, PointsPerSec: float64(np) / el.Seconds(), MsgsPerSec: float64(nb) / el.Seconds(),
		CPUPerPoint: (cpu1 - cpu0) / time.Duration(np), AllocsPoint: float64(m1.Mallocs-m0.Mallocs) / float64(np),
	}
}

func report(b *testing.B, r southboundResult) {
	b.ReportMetric(r.PointsPerSec, "points/s")
	b.ReportMetric(r.MsgsPerSec, "msgs/s")
	b.ReportMetric(float64(r.CPUPerPoint.Nanoseconds()), "cpu-ns/point")
	b.ReportMetric(r.AllocsPoint, "allocs/point")
}

// BenchmarkMQTT: JSON messages of 1 and 30 fields through mosquitto, one batch per message, and messages of one
// field gathered by a 10 ms batch window. b.N is not used as a count: each run is
// one fixed batch of messages (run it with -benchtime=1x).
func BenchmarkMQTT(b *testing.B) {
	for _, c := range []struct {
		fields int
		window time.Duration
	}{{1, 0}, {1, 10 * time.Millisecond}, {30, 0}} {
		b.Run(fmt.Sprintf("fields=%d/window=%s", c.fields, c.window), func(b *testing.B) {
			report(b, mqttRun(b, 100000/c.fields, c.fields, c.window))
		})
	}
}

// BenchmarkHTTPPoll: a JSON document of 30 fields polled every millisecond (one poll at a time).
func BenchmarkHTTPPoll(b *testing.B) {
	report(b, httpRun(b, 30, time.Millisecond, 3*time.Second))
}

// southboundSection is the report's section on the MQTT and HTTP drivers.
func southboundSection(t *testing.T) string {
	var sb strings.Builder
	sb.WriteString("\n## MQTT and HTTP devices, source to iot.processed\n\n")
	sb.WriteString("The source is its own process: Debian's mosquitto fed by `mosquitto_pub -l` (one JSON message per line, QoS 0,\n")
	sb.WriteString("as fast as it publishes), and python3's `http.server` serving a JSON file that the http device polls every\n")
	sb.WriteString("millisecond (one poll at a time). Each message or response is one batch; the mapper flattens its numbers.\n")
	sb.WriteString("CPU is this process's only (the gateway's client, mapper, bus, processor and a counting sink).\n\n")
	sb.WriteString("| run | points/s | messages/s | CPU µs/point | allocs/point |\n|---|---:|---:|---:|---:|\n")
	for _, r := range []southboundResult{mqttRun(t, 300000, 1, 0), mqttRun(t, 300000, 1, 10*time.Millisecond), mqttRun(t, 10000, 30, 0), httpRun(t, 30, time.Millisecond, 5*time.Second)} {
		t.Logf("%s: %.0f points/s, %.0f msgs/s, %s cpu/point", r.Name, r.PointsPerSec, r.MsgsPerSec, r.CPUPerPoint)
		fmt.Fprintf(&sb, "| %s | %.0f | %.0f | %.2f | %.1f |\n", r.Name, r.PointsPerSec, r.MsgsPerSec,
			float64(r.CPUPerPoint.Nanoseconds())/1000, r.AllocsPoint)
	}
	sb.WriteString("\nThe MQTT rows are bounded by one publisher and one broker connection, not by the gateway alone; with QoS 0\n")
	sb.WriteString("the broker may drop what a slow subscriber cannot take, which the \"arrived\" count shows.\n")
	return sb.String()
}
