package system

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/iotgw/iotgw/actors/rule/processor"
)

// limitsConfig is a gateway whose IOT_DATA holds 64 KiB, filled quickly by a device with many points.
func limitsConfig(t *testing.T, discard string) string {
	t.Helper()
	return fmt.Sprintf(`
gateway { point_subjects = false }
nats {
  jetstream {
    max_bytes = "64KB"
    discard   = %q
  }
}
device "d1" {
  driver   = "mock"
  interval = "10ms"
  point "a" { signal = "sine" }
  point "b" { signal = "sine" }
  point "c" { signal = "sine" }
  point "d" { signal = "sine" }
}
`, discard)
}

// TestStreamDiscardOldCounted: with discard "old", a full IOT_DATA deletes its oldest messages; the watcher counts
// them (iotgw_stream_discarded_total) and reports them on iot.errors.jetstream.discarded.
func TestStreamDiscardOldCounted(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, limitsConfig(t, "old")), withStreamWatchInterval(100*time.Millisecond))
	nc := client(t, rt.Bus().URL)
	events, err := nc.SubscribeSync(SubjectErrorDiscarded)
	if err != nil {
		t.Fatal(err)
	}
	m, err := events.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("no event on %s: %v", SubjectErrorDiscarded, err)
	}
	var ev DiscardEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Stream != StreamName || ev.Discarded == 0 || ev.Total < ev.Discarded || ev.MaxBytes != 64<<10 {
		t.Errorf("event %+v", ev)
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if got := counterValue(t, rt.Gatherer(), "iotgw_stream_discarded_total", map[string]string{"stream": StreamName}); got < float64(ev.Total) {
			return fmt.Errorf("iotgw_stream_discarded_total %v, want at least %d", got, ev.Total)
		}
		return nil
	})
}

// TestStreamDiscardNewCounted: with discard "new", a full IOT_DATA refuses the processing stage's publishes: it
// knows from their acknowledgements, counts each batch lost and reports it on iot.errors.processor.store.
func TestStreamDiscardNewCounted(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, limitsConfig(t, "new")))
	nc := client(t, rt.Bus().URL)
	events, err := nc.SubscribeSync(processor.SubjectErrorStore)
	if err != nil {
		t.Fatal(err)
	}
	m, err := events.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("no event on %s: %v", processor.SubjectErrorStore, err)
	}
	var ev processor.StoreEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if !ev.Refused || ev.Subject != "iot.processed.batch.d1" || ev.MsgID == "" || ev.Attempts != 1 {
		t.Errorf("event %+v: want a refused batch of d1, once", ev)
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if got := counterValue(t, rt.Gatherer(), "iotgw_errors_total", map[string]string{"actor": "rules/processor", "kind": "store_lost"}); got < 1 {
			return fmt.Errorf("store_lost %v, want the refusals counted", got)
		}
		return nil
	})
}
