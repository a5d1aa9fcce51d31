package bench

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/iotgw/iotgw/isp"
	"github.com/iotgw/iotgw/system"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The mqtt sink's benchmark: processed batches of 30 points stored in IOT_DATA (acknowledged publishes, as the
// processing stage does), read by the sink's durable consumer and published to Debian's mosquitto on loopback,
// each delivery acked after the broker's acknowledgement. Points/s is until the sink has written (the broker
// acknowledged) every point; CPU is this process's (publisher, NATS server, JetStream, the sink), mosquitto's is
// its own process's. Beside it, in the same run: the raw bus rate (rawRun), and mosquitto's own limit measured with
// its own client (mosquitto_pub -l, one message per line, the same payloads).

const mqttBatch = 30

type mqttSetup struct {
	protocol, payload, topic string
	qos                      int
}

func mqttSinkRun(tb testing.TB, name string, points int, su mqttSetup) result {
	tb.Helper()
	broker := testenv.MosquittoSink(tb, "")
	src := fmt.Sprintf(`
gateway {
  http_address   = ""
  point_subjects = false
  data_dir       = %q
}
nats {
  port = -1
}
sink "up" {
  type     = "mqtt"
  broker   = %q
  protocol = %q
  payload  = %q
  topic    = %q
  qos      = %d
}
`, tb.TempDir(), broker.URL(), su.protocol, su.payload, su.topic, su.qos)
	cfg := parseHCL(tb, src)
	rt := startConfig(tb, cfg)
	waitRunning(tb, rt, "sinks/up")
	select {
	case <-rt.Bus().JetStreamReady():
	case <-time.After(30 * time.Second):
		tb.Fatal("JetStream not ready")
	}
	nc, err := nats.Connect(rt.Bus().URL)
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256))
	if err != nil {
		tb.Fatal(err)
	}
	bodies := make([][]byte, 10)
	for d := range bodies {
		bodies[d] = isp.AppendBatch(nil, makeBatch(fmt.Sprintf("plc-%d", d), mqttBatch))
	}
	batches := points / mqttBatch
	start, cpu0 := time.Now(), cpuTime()
	for i := 0; i < batches; i++ {
		d := i % len(bodies)
		// A generous stall wait: on a loaded machine JetStream's acks can lag the 200ms default, and the row
		// measures the sink, not the publisher's patience.
		if _, err := js.PublishAsync("iot.processed.batch.plc-"+strconv.Itoa(d), bodies[d], jetstream.WithStallWait(time.Minute)); err != nil {
			tb.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		tb.Fatal("publishes not acknowledged")
	}
	want := uint64(batches * mqttBatch)
	deadline := time.Now().Add(10 * time.Minute)
	for written(rt) < want {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: %d of %d points written", name, written(rt), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	return result{Name: name, Points: int(want), PointsPerSec: float64(want) / elapsed.Seconds(), CPUPerPoint: cpu / time.Duration(want)}
}

func written(rt *system.Runtime) uint64 {
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
				if l.GetName() == "actor" && l.GetValue() == "sinks/up" {
					return uint64(m.GetCounter().GetValue())
				}
			}
		}
	}
	return 0
}

// mosquittoOwnLimit publishes msgs messages of payload to a fresh mosquitto with mosquitto_pub -l at qos and
// protocol (mqttv311, mqttv5) and returns messages/s: the broker's (and its own client's) rate on this machine.
// window is mosquitto_pub's -M (messages in flight): 0 keeps its default of 20; the sink's is max_inflight (1024).
func mosquittoOwnLimit(tb testing.TB, msgs, qos int, payload, protocol string, window int) float64 {
	tb.Helper()
	broker := testenv.MosquittoSink(tb, "")
	var in bytes.Buffer
	for i := 0; i < msgs; i++ {
		in.WriteString(payload)
		in.WriteByte('\n')
	}
	cmd := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", strconv.Itoa(broker.Port), "-t", "plant/plc-0/k0",
		"-q", strconv.Itoa(qos), "-V", protocol, "-l")
	if window > 0 {
		cmd.Args = append(cmd.Args, "-M", strconv.Itoa(window))
	}
	cmd.Stdin = &in
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	return float64(msgs) / time.Since(start).Seconds()
}

// mqttReport is the report's mqtt section.
func mqttReport(t *testing.T, points int) string {
	var sb strings.Builder
	raw := rawRun(t, "raw NATS, batches of 30 points", points, mqttBatch)
	sb.WriteString("\n## MQTT sink\n\n")
	sb.WriteString("Batches of 30 points into IOT_DATA (acknowledged publishes), the mqtt sink's durable consumer, mosquitto on\n")
	sb.WriteString("loopback; a delivery is acked after the broker acknowledged all its messages. CPU is this process's only (the\n")
	sb.WriteString("publisher, NATS, JetStream, the sink); mosquitto runs as its own process. Both protocols pipeline: up to\n")
	sb.WriteString("max_inflight (1024) messages on the wire, their acknowledgements checked in order. The raw NATS row and\n")
	sb.WriteString("mosquitto's own limit (mosquitto_pub -l, one message per line, with its default window of 20 and with the\n")
	sb.WriteString("sink's 1024) are measured in the same run: a message-per-point row near it is bounded by the broker, which\n")
	sb.WriteString("shares the two cores.\n\n")
	sb.WriteString("| run | points/s | CPU µs/point |\n|---|---:|---:|\n")
	fmt.Fprintf(&sb, "| %s | %.0f | %.2f |\n", raw.Name, raw.PointsPerSec, float64(raw.CPUPerPoint.Nanoseconds())/1000)
	for _, c := range []struct {
		name string
		su   mqttSetup
	}{
		{"mqtt 3.1.1 QoS 1, a message per point (value)", mqttSetup{"3.1.1", "value", "plant/{device}/{key}", 1}},
		{"mqtt 3.1.1 QoS 1, a message per batch", mqttSetup{"3.1.1", "batch", "plant/{device}", 1}},
		{"mqtt 5 QoS 1, a message per point (value)", mqttSetup{"5", "value", "plant/{device}/{key}", 1}},
		{"mqtt 5 QoS 1, a message per batch", mqttSetup{"5", "batch", "plant/{device}", 1}},
	} {
		r := mqttSinkRun(t, c.name, points, c.su)
		t.Logf("%-48s %10.0f points/s %8s cpu/point", r.Name, r.PointsPerSec, r.CPUPerPoint)
		fmt.Fprintf(&sb, "| %s | %.0f | %.2f |\n", r.Name, r.PointsPerSec, float64(r.CPUPerPoint.Nanoseconds())/1000)
	}
	for _, o := range []struct {
		name, protocol string
		window         int
	}{
		{"3.1.1", "mqttv311", 0}, {"5", "mqttv5", 0}, {"3.1.1", "mqttv311", 1024}, {"5", "mqttv5", 1024},
	} {
		own := mosquittoOwnLimit(t, 100_000, 1, "25.5", o.protocol, o.window)
		w := "its default window of 20"
		if o.window > 0 {
			w = fmt.Sprintf("-M %d, the sink's window", o.window)
		}
		fmt.Fprintf(&sb, "| mosquitto's own limit: mosquitto_pub -l, %s QoS 1, %s, 100000 messages | %.0f messages/s | (other process) |\n", o.name, w, own)
	}
	return sb.String()
}

// BenchmarkMQTTSink runs the sink rows once per iteration (run it with -benchtime=1x).
func BenchmarkMQTTSink(b *testing.B) {
	for _, c := range []struct {
		name string
		su   mqttSetup
	}{
		{"3.1.1-value", mqttSetup{"3.1.1", "value", "plant/{device}/{key}", 1}},
		{"3.1.1-batch", mqttSetup{"3.1.1", "batch", "plant/{device}", 1}},
		{"5-value", mqttSetup{"5", "value", "plant/{device}/{key}", 1}},
		{"5-batch", mqttSetup{"5", "batch", "plant/{device}", 1}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				r := mqttSinkRun(b, c.name, 30_000, c.su)
				b.ReportMetric(r.PointsPerSec, "points/s")
				b.ReportMetric(float64(r.CPUPerPoint.Nanoseconds()), "cpu-ns/point")
			}
		})
	}
	b.Run("mosquitto_pub-own-limit", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.ReportMetric(mosquittoOwnLimit(b, 20_000, 1, "25.5", "mqttv311", 0), "messages/s")
		}
	})
	b.Run("mosquitto_pub-own-limit-M1024", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.ReportMetric(mosquittoOwnLimit(b, 20_000, 1, "25.5", "mqttv311", 1024), "messages/s")
		}
	})
}
