package system

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/actors/rule"
	"github.com/iotgw/iotgw/actors/rule/processor"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// TestProcessorStoresARawMessageOnce: the same raw message twice (the replay after a hung link sends what the
// server did not confirm again) is stored once: the processing stage's message id is its trace id and subject, and
// the stream's acknowledgement says the second was a duplicate.
func TestProcessorStoresARawMessageOnce(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `gateway { point_subjects = false }`))
	nc := client(t, rt.Bus().URL)
	storedOnceOfTwo(t, rt, nc, "iot.raw.test.d9", "trace-twice-1", "rules/processor", "iot.processed.batch.d9")
}

// storedOnceOfTwo publishes the same raw message (one trace id) twice and checks that the actor whose acknowledged
// publishes store it was told the second was a duplicate, and that the stream holds one message on stored.
func storedOnceOfTwo(t *testing.T, rt *Runtime, nc *nats.Conn, raw, trace, actor, stored string) {
	t.Helper()
	m := &nats.Msg{Subject: raw, Data: []byte(`{"points":[{"key":"x","value":1,"timestamp":1700000000000000000}]}`), Header: nats.Header{}}
	m.Header.Set(actors.HeaderTraceID, trace)
	for range 2 {
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if got := counterValue(t, rt.Gatherer(), "iotgw_errors_total", map[string]string{"actor": actor, "kind": "store_duplicate"}); got != 1 {
			return fmt.Errorf("%s: store_duplicate %v, want 1", actor, got)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := rt.Bus().JS.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(stored))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[stored]; n != 1 {
		t.Errorf("%d messages on %s stored, want 1", n, stored)
	}
}

// TestProcessorRetriesUntilStored: while IOT_DATA is gone (deleted under the running gateway), the processing
// stage's publishes find no stream; it keeps them and publishes them again, with their message ids, and once the
// stream is back every poll of the gap is stored, once.
func TestProcessorRetriesUntilStored(t *testing.T) {
	cfg := parseConfig(t, `
gateway { point_subjects = false }
device "d1" {
  driver   = "mock"
  interval = "50ms"
  point "x" { signal = "sine" }
}
`)
	rt := startRuntime(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js := rt.Bus().JS
	stream, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if info, err := stream.Info(ctx); err != nil || info.State.Msgs < 3 {
			return errNotYet
		}
		return nil
	})
	if err := js.DeleteStream(ctx, StreamName); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if got := counterValue(t, rt.Gatherer(), "iotgw_errors_total", map[string]string{"actor": "rules/processor", "kind": "store_retry"}); got < 10 {
			return fmt.Errorf("store_retry %v, want retries while the stream is gone", got)
		}
		return nil
	})
	gapEnd := time.Now()
	if _, err := js.CreateStream(ctx, dataStreamConfig(cfg.NATS.JetStream)); err != nil {
		t.Fatal(err)
	}
	// Every poll from the deletion until after the stream came back is stored (the first ones of the gap came
	// before it was recreated, so only the retries can have stored them).
	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		info, err := js.Stream(ctx, StreamName)
		if err != nil {
			return err
		}
		st := info.CachedInfo().State
		var stamps []int64
		for seq := st.FirstSeq; st.Msgs > 0 && seq <= st.LastSeq; seq++ {
			m, err := info.GetMsg(ctx, seq)
			if err != nil {
				return err
			}
			pts, err := isp.DecodeBatch(m.Data)
			if err != nil || len(pts) != 1 {
				return fmt.Errorf("batch %q: %v", m.Data, err)
			}
			stamps = append(stamps, pts[0].Timestamp)
		}
		before := 0
		for _, ts := range stamps {
			if time.Unix(0, ts).Before(gapEnd) {
				before++
			}
		}
		if before < 10 {
			return fmt.Errorf("%d batches polled while the stream was gone are stored, want them all (>= 10)", before)
		}
		return nil
	})
	if lost := counterValue(t, rt.Gatherer(), "iotgw_errors_total", map[string]string{"actor": "rules/processor", "kind": "store_lost"}); lost != 0 {
		t.Errorf("store_lost %v, want 0: the stream was back within the duplicate window", lost)
	}
}

// TestRuleResultsStoredOnce: a rule's results that land in IOT_DATA (iot.rules.>) are published with an
// acknowledgement and a message id made of the batch's trace id, the subject and the output's number. The same raw
// message twice reaches the rule twice (the second processed batch is a duplicate to the stream, not to its core
// subscribers); the rule's second result gets the same id, the stream says it is a duplicate, and it is stored once.
func TestRuleResultsStoredOnce(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `
gateway { point_subjects = false }
rule "fw" {
  type = "forward"
}
`))
	nc := client(t, rt.Bus().URL)
	// The rule reads once its result of a warm-up batch (another device) comes.
	warm := collect(t, nc, "iot.rules.fw.d7")
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if warm.n() == 0 {
			if err := nc.Publish("iot.raw.test.d7", []byte(`{"points":[{"key":"x","value":1}]}`)); err != nil {
				return err
			}
			return errNotYet
		}
		return nil
	})
	storedOnceOfTwo(t, rt, nc, "iot.raw.test.d8", "trace-rule-twice", "rules/fw", "iot.rules.fw.d8")
}

// TestRuleResultsRefusedCounted: with discard "new", a full IOT_DATA refuses a rule's results as it refuses the
// batches: the rule knows from the acknowledgements, counts each one lost and reports it on
// iot.errors.rules.store.
func TestRuleResultsRefusedCounted(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, limitsConfig(t, "new")+`
rule "fw" {
  type = "forward"
}
`))
	nc := client(t, rt.Bus().URL)
	events, err := nc.SubscribeSync(rule.SubjectErrorStore)
	if err != nil {
		t.Fatal(err)
	}
	m, err := events.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("no event on %s: %v", rule.SubjectErrorStore, err)
	}
	var ev actors.StoreEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if !ev.Refused || ev.Subject != "iot.rules.fw.d1" || !strings.HasSuffix(ev.MsgID, ":iot.rules.fw.d1:1") || ev.Attempts != 1 {
		t.Errorf("event %+v: want a refused result of d1, once", ev)
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if got := counterValue(t, rt.Gatherer(), "iotgw_errors_total", map[string]string{"actor": "rules/fw", "kind": "store_lost"}); got < 1 {
			return fmt.Errorf("the rule's store_lost %v, want the refusals counted", got)
		}
		return nil
	})
}
