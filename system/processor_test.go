package system

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/actors/rule/processor"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
)

// TestProcessorRejectsBadInputAndKeepsGoing sends the processing stage malformed, truncated, oversized and
// hostile raw messages between good ones: each bad one gets an error event naming what was wrong, bad points are
// dropped from their batch alone, and the good data keeps flowing.
func TestProcessorRejectsBadInputAndKeepsGoing(t *testing.T) {
	cfg := parseConfig(t, `gateway { point_subjects = false }`)
	rt := startRuntime(t, cfg)
	nc := client(t, rt.Bus().URL)

	decodeErrs, err := nc.SubscribeSync(processor.SubjectErrorDecode)
	if err != nil {
		t.Fatal(err)
	}
	invalid, err := nc.SubscribeSync(processor.SubjectErrorInvalid)
	if err != nil {
		t.Fatal(err)
	}
	processed, err := nc.SubscribeSync("iot.processed.batch.>")
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		n, _ := rt.Tree().Get("rules/processor")
		if n == nil || n.State != StateRunning {
			return errNotYet
		}
		return nil
	})

	good := `{"points":[{"key":"t","value":1.5,"quality":1,"timestamp":5}]}`
	cases := []struct {
		name, subject, body, wantErr string
	}{
		{"not JSON", "iot.raw.test.d1", "hello", ""},
		{"truncated batch", "iot.raw.test.d1", good[:30], ""},
		{"empty body", "iot.raw.test.d1", "", ""},
		{"wrong type for points", "iot.raw.test.d1", `{"points":5}`, ""},
		{"point without key", "iot.raw.test.d1", `{"value":1}`, "key"},
		{"deep nesting", "iot.raw.test.d1", `{"key":"a","x":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`, ""},
		{"invalid UTF-8", "iot.raw.test.d1", "{\"key\":\"\xff\xfe\",\"value\":1}", ""},
		{"subject without device", "iot.raw.test", good, "iot.raw.{protocol}.{device}"},
		{"oversized junk", "iot.raw.test.d1", strings.Repeat("x", 1<<20), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := nc.Publish(tc.subject, []byte(tc.body)); err != nil {
				t.Fatal(err)
			}
			msg, err := decodeErrs.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("no decode error event: %v", err)
			}
			var ev processor.DecodeEvent
			if err := json.Unmarshal(msg.Data, &ev); err != nil {
				t.Fatalf("event %q: %v", msg.Data, err)
			}
			if ev.Subject != tc.subject || ev.Error == "" || ev.Size != len(tc.body) || len(ev.Body) > 256*3 {
				t.Errorf("event %+v: want subject %s, an error, size %d and a short body", ev, tc.subject, len(tc.body))
			}
			if tc.wantErr != "" && !strings.Contains(ev.Error, tc.wantErr) {
				t.Errorf("error %q, want it to mention %q", ev.Error, tc.wantErr)
			}
			// The stage is still alive and processing.
			if err := nc.Publish("iot.raw.test.d1", []byte(good)); err != nil {
				t.Fatal(err)
			}
			if _, err := processed.NextMsg(5 * time.Second); err != nil {
				t.Fatalf("good batch after bad input not processed: %v", err)
			}
		})
	}

	// A batch with one bad point: the others go through, the bad one is reported.
	mixed := `{"points":[{"key":"ok1","value":1},{"key":"bad.key","value":2},{"key":"ok2","value":3,"quality":7},{"key":"ok3","value":true}]}`
	if err := nc.Publish("iot.raw.test.d2", []byte(mixed)); err != nil {
		t.Fatal(err)
	}
	msg, err := processed.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := isp.DecodeBatch(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, p := range pts {
		keys = append(keys, p.Key)
		if p.DeviceID != "d2" || p.Source != "test" || p.Timestamp == 0 {
			t.Errorf("point %+v: want device d2 from the subject, source test, a timestamp", p)
		}
	}
	if got := strings.Join(keys, ","); got != "ok1,ok3" || msg.Subject != "iot.processed.batch.d2" {
		t.Errorf("processed %s keys %s, want iot.processed.batch.d2 with ok1,ok3", msg.Subject, got)
	}
	for _, want := range []string{"bad.key", "quality 7"} {
		m, err := invalid.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no invalid-point event for %s: %v", want, err)
		}
		if !strings.Contains(string(m.Data), want) {
			t.Errorf("invalid event %s, want it to mention %q", m.Data, want)
		}
	}
	if n, _ := rt.Tree().Get("rules/processor"); n.Restarts != 0 {
		t.Errorf("processor restarted %d times on bad input, want 0", n.Restarts)
	}
}

// TestProcessorPerPointSubjects: with point_subjects on, every point also arrives on iot.processed.{device}.{key}.
func TestProcessorPerPointSubjects(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `gateway { point_subjects = true }`))
	nc := client(t, rt.Bus().URL)
	sub, err := nc.SubscribeSync("iot.processed.*.*")
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n, _ := rt.Tree().Get("rules/processor"); n == nil || n.State != StateRunning {
			return errNotYet
		}
		return nil
	})
	msg := &nats.Msg{Subject: "iot.raw.mock.m1", Data: []byte(`{"points":[{"key":"a","value":1},{"key":"b","value":"on"}]}`), Header: nats.Header{}}
	msg.Header.Set("Iot-Trace-Id", "trace-42")
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for i := 0; i < 3; i++ {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		got[m.Subject] = true
		if m.Header.Get("Iot-Trace-Id") != "trace-42" {
			t.Errorf("%s: trace id %q, want it carried from the raw message", m.Subject, m.Header.Get("Iot-Trace-Id"))
		}
	}
	for _, s := range []string{"iot.processed.batch.m1", "iot.processed.m1.a", "iot.processed.m1.b"} {
		if !got[s] {
			t.Errorf("nothing on %s; got %v", s, got)
		}
	}
}

// TestTraceIDFromBirthToProcessed: a batch gets its Iot-Trace-Id where it is born (a mock tick, a Modbus poll, a
// sidecar's DATA frame) and its processed batch carries the same one. A scaled integer register is published
// typed float64, the type of its value.
func TestTraceIDFromBirthToProcessed(t *testing.T) {
	needPython(t)
	rt := startRuntime(t, parseConfig(t, sidecarConfig(t, fmt.Sprintf(`
simulator "plant" { listen = "127.0.0.1:%d" }
device "boiler" {
  driver   = "modbus"
  address  = "127.0.0.1:%[1]d"
  interval = "50ms"
  register "outside" {
    address = 5
    type    = "int16"
    scale   = 0.1
  }
}
device "m1" {
  driver   = "mock"
  interval = "50ms"
  point "p" { signal = "sine" }
}
`, freePort(t)), map[string]string{"py": ""})))
	nc := client(t, rt.Bus().URL)

	var mu sync.Mutex
	born := map[string]map[string]bool{} // device → trace ids of its raw batches
	carried := map[string]int{}          // device → processed batches whose trace id was born on a raw one
	var bad []string
	types := map[string]string{}
	record := func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		trace := m.Header.Get(actors.HeaderTraceID)
		parts := strings.Split(m.Subject, ".")
		dev := parts[len(parts)-1]
		if len(trace) != 16 {
			bad = append(bad, fmt.Sprintf("%s: trace id %q", m.Subject, trace))
			return
		}
		if parts[1] == "raw" {
			if born[dev] == nil {
				born[dev] = map[string]bool{}
			}
			born[dev][trace] = true
			return
		}
		if born[dev][trace] {
			carried[dev]++
		}
		if pts, err := isp.DecodeBatch(m.Data); err == nil {
			for _, p := range pts {
				types[dev+"/"+p.Key] = p.Type
			}
		}
	}
	for _, subj := range []string{"iot.raw.>", "iot.processed.batch.>"} {
		if _, err := nc.Subscribe(subj, record); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(bad) > 0 {
			return nil
		}
		for _, dev := range []string{"boiler", "m1", "py"} {
			if carried[dev] < 2 {
				return fmt.Errorf("%s: %d processed batches with the trace id of their raw batch", dev, carried[dev])
			}
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("messages without a trace id: %v", bad)
	}
	if got := types["boiler/outside"]; got != "float64" {
		t.Errorf("int16 register with scale 0.1: got type %q, want float64", got)
	}
}
