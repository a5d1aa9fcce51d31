package console

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// lockedBuffer is the sink's standard output: the actor writes from its own goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// printAll runs a console sink in the given format, sends it msgs in order, stops it (which flushes) and returns
// what it printed and the points it counted.
func printAll(t *testing.T, format string, msgs ...*nats.Msg) (string, float64) {
	t.Helper()
	out := &lockedBuffer{}
	m := actors.NewMetrics(prometheus.NewRegistry())
	env := actors.Env{Log: zerolog.Nop(), Stdout: out, Metrics: m}
	sys := actor.NewActorSystem()
	pid := sys.Root.Spawn(actor.PropsFromProducer(New(config.Sink{Name: "console", Settings: &config.ConsoleSink{Format: format}}, env)))
	for _, msg := range msgs {
		sys.Root.Send(pid, msg)
	}
	if err := sys.Root.PoisonFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
	in, _, _ := m.Counted("sinks/console")
	return out.String(), float64(in)
}

func points(device string, n int) []isp.Point {
	p := make([]isp.Point, n)
	for i := range p {
		p[i] = isp.Point{DeviceID: device, Key: "k" + string(rune('0'+i)), Value: isp.Float(20.5 + float64(i)), Quality: isp.QualityGood,
			Timestamp: 1700000000000000000, Tags: []isp.Tag{{Key: "unit", Value: "°C"}}}
	}
	return p
}

// In JSON a batch prints one line per point, each the point as the processor encoded it, and so does a rule's
// output batch and a batch on a forward rule's own subject.
func TestJSONPrintsEachPointOfABatch(t *testing.T) {
	pts := points("plc-1", 3)
	b := isp.AppendBatch(nil, pts)
	out, n := printAll(t, "json",
		&nats.Msg{Subject: "iot.processed.batch.plc-1", Data: b},
		&nats.Msg{Subject: "iot.rules.hot.plc-1", Data: b},
		&nats.Msg{Subject: "plant.plc-1", Data: b})
	var want strings.Builder
	for range 3 {
		for i := range pts {
			want.Write(isp.AppendPoint(nil, &pts[i]))
			want.WriteByte('\n')
		}
	}
	if out != want.String() {
		t.Fatalf("printed\n%s\nwant\n%s", out, want.String())
	}
	if n != 9 {
		t.Fatalf("counted %v points, want 9", n)
	}
}

// In text a point reads as columns; a point without a device_id takes its subject's, a bare point prints once.
func TestTextColumns(t *testing.T) {
	p := points("", 1)[0]
	out, n := printAll(t, "text",
		&nats.Msg{Subject: "iot.processed.batch.plc-2", Data: isp.AppendBatch(nil, []isp.Point{p})},
		&nats.Msg{Subject: "iot.processed.plc-3.k0", Data: isp.AppendPoint(nil, &p)})
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || n != 2 {
		t.Fatalf("printed %q, counted %v: want two lines and two points", out, n)
	}
	for i, dev := range []string{"plc-2", "plc-3"} {
		if !strings.Contains(lines[i], "  "+dev+"  k0  20.5 °C  good") {
			t.Errorf("line %d = %q, want device %s, key, value with unit, quality", i, lines[i], dev)
		}
	}
}

// What is neither a point nor a batch, malformed or truncated or hostile, prints once as "subject body" and counts
// no point; the sink goes on with what follows.
func TestMalformedPrintsRawOnce(t *testing.T) {
	good := isp.AppendBatch(nil, points("plc-1", 2))
	for _, format := range []string{"json", "text"} {
		out, n := printAll(t, format,
			&nats.Msg{Subject: "iot.processed.batch.plc-1", Data: good[:len(good)/2]}, // truncated
			&nats.Msg{Subject: "iot.processed.batch.plc-1", Data: []byte(`{"points":[1,"two"]}`)},
			&nats.Msg{Subject: "iot.processed.plc-1.k", Data: []byte("\x00\xff not json")},
			&nats.Msg{Subject: "iot.processed.batch.plc-1", Data: good})
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 5 {
			t.Fatalf("%s: printed %d lines, want 3 raw and 2 points:\n%s", format, len(lines), out)
		}
		for i := range 3 {
			if !strings.HasPrefix(lines[i], "iot.processed.") {
				t.Errorf("%s: line %d = %q, want the raw message", format, i, lines[i])
			}
		}
		if n != 2 {
			t.Errorf("%s: counted %v points, want 2", format, n)
		}
	}
}

// In JSON the console prints a batch's elements as their publisher wrote them (batch.Split checks structure, not
// meaning: README, The console sink); an element that is no valid point still prints as one line of its own.
func TestJSONPrintsElementsAsSent(t *testing.T) {
	out, _ := printAll(t, "json", &nats.Msg{Subject: "iot.processed.batch.plc-1", Data: []byte(`{"points":[{"key":1},{"a":"b\nc"}]}`)})
	if out != "{\"key\":1}\n{\"a\":\"b\\nc\"}\n" {
		t.Fatalf("printed %q", out)
	}
}
