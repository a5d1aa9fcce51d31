package system

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/isp"
)

const e2eConfig = `
gateway {
  id             = "gw-test"
  point_subjects = true
}
device "d1" {
  driver   = "mock"
  interval = "20ms"
  tags     = { line = "A" }
  point "temperature" {
    signal = "sine"
    min    = 20
    max    = 30
    unit   = "C"
  }
  point "count" {
    signal = "ramp"
    type   = "int64"
    max    = 1000
  }
}
sink "console" {
  type     = "console"
  subjects = ["iot.processed.batch.>"]
  format   = "text"
}
`

// TestPointsFlowEndToEnd: a mock device's polls reach the console sink and, as an operator would see them with
// `nats sub`, the per-point subjects iot.processed.{device}.{key} with the seed's fields.
func TestPointsFlowEndToEnd(t *testing.T) {
	var out syncBuffer
	rt := startRuntime(t, parseConfig(t, e2eConfig), WithStdout(&out))
	nc := client(t, rt.Bus().URL)

	sub, err := nc.SubscribeSync("iot.processed.d1.temperature")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no point on iot.processed.d1.temperature: %v", err)
	}
	var p map[string]any
	if err := json.Unmarshal(msg.Data, &p); err != nil {
		t.Fatalf("point %q: %v", msg.Data, err)
	}
	for _, field := range []string{"device_id", "key", "value", "quality", "timestamp", "tags", "source"} {
		if _, ok := p[field]; !ok {
			t.Errorf("point %s lacks %q", msg.Data, field)
		}
	}
	if p["device_id"] != "d1" || p["key"] != "temperature" || p["source"] != "mock" || p["quality"] != 1.0 {
		t.Errorf("point %s: want device d1, key temperature, source mock, quality 1", msg.Data)
	}
	if v, ok := p["value"].(float64); !ok || v < 20 || v > 30 {
		t.Errorf("value %v, want a number in 20..30", p["value"])
	}
	if ts, ok := p["timestamp"].(float64); !ok || time.Since(time.Unix(0, int64(ts))) > time.Minute {
		t.Errorf("timestamp %v, want Unix ns of now", p["timestamp"])
	}
	if got := msg.Header.Get("Iot-Schema"); got != "1" {
		t.Errorf("header Iot-Schema %q, want 1", got)
	}

	bsub, err := nc.SubscribeSync("iot.processed.batch.d1")
	if err != nil {
		t.Fatal(err)
	}
	bmsg, err := bsub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no batch: %v", err)
	}
	pts, err := isp.DecodeBatch(bmsg.Data)
	if err != nil || len(pts) != 2 {
		t.Fatalf("batch %s: %d points, %v; want 2", bmsg.Data, len(pts), err)
	}

	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		s := out.String()
		if !strings.Contains(s, "d1  temperature") || !strings.Contains(s, "d1  count") {
			return fmt.Errorf("console output so far: %q", s)
		}
		return nil
	})
	line := lines(out.String())[0]
	for _, want := range []string{"good", "mock", "line=A"} {
		if !strings.Contains(line, want) {
			t.Errorf("console line %q lacks %q", line, want)
		}
	}
}

func TestControlPingAndTree(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, e2eConfig))
	nc := client(t, rt.Bus().URL)

	msg, err := nc.Request(SubjectPing, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var pong Pong
	if err := json.Unmarshal(msg.Data, &pong); err != nil || !pong.Pong || pong.Gateway != "gw-test" {
		t.Fatalf("ping reply %s (%v), want pong from gw-test", msg.Data, err)
	}

	var tr *Node
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		tr = tree(t, nc)
		if n := find(tr, "devices/d1"); n == nil || n.State != StateRunning {
			return fmt.Errorf("devices/d1 not running yet: %+v", n)
		}
		return nil
	})
	if tr.Path != "root" || tr.Kind != "supervisor" {
		t.Errorf("tree root %s (%s), want root supervisor", tr.Path, tr.Kind)
	}
	var top []string
	for _, c := range tr.Children {
		top = append(top, c.Name)
	}
	if got, want := strings.Join(top, ","), "control,sinks,rules,sidecars,endpoints,devices"; got != want {
		t.Errorf("root's children %s, want %s", got, want)
	}
	for path, kind := range map[string]string{
		"devices/d1": "device/mock", "sinks/console": "sink/console", "rules/processor": "processor", "control": "control",
	} {
		n := find(tr, path)
		if n == nil {
			t.Errorf("tree lacks %s", path)
			continue
		}
		if n.Kind != kind || n.State != StateRunning {
			t.Errorf("%s: kind %s state %s, want %s running", path, n.Kind, n.State, kind)
		}
	}
	sink := find(tr, "sinks/console")
	if len(sink.Subjects) != 1 || sink.Subjects[0] != "iot.processed.batch.>" || sink.Mailbox == nil || sink.Mailbox.Capacity == 0 {
		t.Errorf("sinks/console subjects %v mailbox %+v, want its subject and mailbox figures", sink.Subjects, sink.Mailbox)
	}

	bad, err := nc.Request("iot.control.tree", []byte("{not json"), 5*time.Second)
	if err != nil || !strings.Contains(string(bad.Data), `"root"`) {
		t.Errorf("tree with a junk body: %s %v, want the tree (the body is ignored)", bad.Data, err)
	}
}

// TestStopIsPromptAndLeavesNothingBehind: Stop drains and stops everything within the stop timeout, and no
// goroutine of the runtime (actors, workers, subscriptions, the embedded server) survives it.
func TestStopIsPromptAndLeavesNothingBehind(t *testing.T) {
	before := runtime.NumGoroutine()
	// Every kind of actor that owns goroutines: mock devices (tickers), an in-process Modbus simulator, a Modbus
	// transport and device (wire worker, tickers), the processor and a sink (subscriptions).
	cfg := parseConfig(t, e2eConfig+fmt.Sprintf(`
simulator "sim" { listen = "127.0.0.1:%d" }
device "m1" {
  driver   = "modbus"
  address  = "127.0.0.1:%[1]d"
  interval = "20ms"
  register "temperature" {
    address = 0
    type    = "float32"
  }
}
`, freePort(t)))
	cfg.NATS.Port = -1
	cfg.Gateway.HTTPAddress = "127.0.0.1:0"
	cfg.Gateway.DataDir = t.TempDir()
	var out syncBuffer
	rt := New(cfg, WithStdout(&out), WithLogger(testLogger(t)))
	if err := rt.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !strings.Contains(out.String(), "d1  temperature") || !strings.Contains(out.String(), "m1  temperature") {
			return fmt.Errorf("no output yet")
		}
		return nil
	})
	start := time.Now()
	if err := rt.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	took := time.Since(start)
	t.Logf("stopped in %s", took)
	if took > 5*time.Second {
		t.Errorf("stop took %s, want under 5s", took)
	}
	checkFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		if n := runtime.NumGoroutine(); n > before+2 {
			buf := make([]byte, 1<<20)
			return fmt.Errorf("%d goroutines after stop, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		return nil
	})
}
