package rule

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
)

// recorder is an Output that keeps what the engine published, "subject body" each.
type recorder struct{ msgs []string }

func (r *recorder) Publish(subject string, data []byte) error {
	r.msgs = append(r.msgs, subject+" "+string(data))
	return nil
}

func (r *recorder) take() []string {
	out := r.msgs
	r.msgs = nil
	return out
}

// parseRule decodes one rule block as the config file would.
func parseRule(t testing.TB, src string) *config.Rule {
	t.Helper()
	cfg, diags := config.Parse([]byte(src), "rule.hcl")
	if diags.HasErrors() {
		t.Fatalf("rule does not load: %v", diags)
	}
	return &cfg.Rules[len(cfg.Rules)-1]
}

// t0 is aligned to 10 s, so windows of 5 s and 10 s start there.
var t0 = time.Unix(1_700_000_000, 0)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func ns(s float64) int64 { return at(s).UnixNano() }

func pt(dev, key string, v float64, ts float64) isp.Point {
	return isp.Point{DeviceID: dev, Key: key, Value: isp.Float(v), Type: "float64", Quality: isp.QualityGood, Timestamp: ns(ts)}
}

// step is one thing that happens to an engine: a batch at a time, or a tick.
type step struct {
	at     float64
	points []isp.Point
	want   []string
}

func run(t *testing.T, e *Engine, rec *recorder, steps []step) {
	t.Helper()
	if e.undec != nil {
		// The rule can also run on the batches' bytes (raw.go): that must publish what decoding them does.
		var batches [][]byte
		var times []time.Time
		for _, s := range steps {
			if s.points != nil {
				batches, times = append(batches, isp.AppendBatch(nil, s.points)), append(times, at(s.at))
			}
		}
		sameOutputsAt(t, e.Rule(), batches, times, true)
	}
	for i, s := range steps {
		if s.points != nil {
			e.Process(s.points, at(s.at))
		} else {
			e.Tick(at(s.at))
		}
		got := rec.take()
		if len(got) != len(s.want) {
			t.Fatalf("step %d (t=%vs): got %d messages %q, want %d %q", i, s.at, len(got), got, len(s.want), s.want)
		}
		for j := range got {
			if !matchMsg(got[j], s.want[j]) {
				t.Errorf("step %d (t=%vs) message %d:\n got %s\nwant %s", i, s.at, j, got[j], s.want[j])
			}
		}
	}
}

// matchMsg compares a message with its expectation. An alert's expectation lists only the fields it cares for
// ("iot.alerts.warning.d1 event=firing state=firing value=86"), since alerts carry times.
func matchMsg(got, want string) bool {
	if !strings.Contains(want, "=") || strings.Contains(want, "{") {
		return got == want
	}
	subj, body, _ := strings.Cut(got, " ")
	wsubj, fields, _ := strings.Cut(want, " ")
	if subj != wsubj {
		return false
	}
	var m map[string]any
	if json.Unmarshal([]byte(body), &m) != nil {
		return false
	}
	for _, f := range strings.Fields(fields) {
		k, v, _ := strings.Cut(f, "=")
		if fmt.Sprint(m[k]) != v {
			return false
		}
	}
	return true
}

func batch(points ...isp.Point) []isp.Point { return points }

func TestFilter(t *testing.T) {
	cases := []struct {
		name, rule string
		steps      []step
	}{
		{"when", `rule "hot" {
  type = "filter"
  when = "value > 10 && key == \"temp\""
}`, []step{
			{0, batch(pt("d1", "temp", 9, 0), pt("d1", "temp", 11, 0), pt("d1", "rpm", 50, 0)), []string{
				`iot.rules.hot.d1 {"points":[{"device_id":"d1","key":"temp","value":11,"type":"float64","quality":1,"timestamp":1700000000000000000}]}`}},
			{1, batch(pt("d1", "temp", 3, 1)), nil},
		}},
		{"absolute deadband against the last value passed", `rule "db" {
  type     = "filter"
  deadband = 0.5
}`, []step{
			{0, batch(pt("d1", "t", 10, 0), pt("d1", "t", 10.3, 1), pt("d1", "t", 10.6, 2), pt("d1", "t", 10.7, 3), pt("d1", "t", 11.2, 4)), []string{
				`iot.rules.db.d1 {"points":[` +
					`{"device_id":"d1","key":"t","value":10,"type":"float64","quality":1,"timestamp":1700000000000000000},` +
					`{"device_id":"d1","key":"t","value":10.6,"type":"float64","quality":1,"timestamp":1700000002000000000},` +
					`{"device_id":"d1","key":"t","value":11.2,"type":"float64","quality":1,"timestamp":1700000004000000000}]}`}},
		}},
		{"relative deadband", `rule "pct" {
  type             = "filter"
  deadband_percent = 10
}`, []step{
			{0, batch(pt("d1", "t", 100, 0)), []string{`iot.rules.pct.d1 {"points":[{"device_id":"d1","key":"t","value":100,"type":"float64","quality":1,"timestamp":1700000000000000000}]}`}},
			{1, batch(pt("d1", "t", 109, 1)), nil},
			{2, batch(pt("d1", "t", 89, 2)), []string{`iot.rules.pct.d1 {"points":[{"device_id":"d1","key":"t","value":89,"type":"float64","quality":1,"timestamp":1700000002000000000}]}`}},
		}},
		{"rate limit per series", `rule "rl" {
  type       = "filter"
  rate_limit = "1s"
}`, []step{
			{0, batch(pt("d1", "a", 1, 0), pt("d1", "b", 1, 0)), []string{`iot.rules.rl.d1 {"points":[{"device_id":"d1","key":"a","value":1,"type":"float64","quality":1,"timestamp":1700000000000000000},{"device_id":"d1","key":"b","value":1,"type":"float64","quality":1,"timestamp":1700000000000000000}]}`}},
			{0.5, batch(pt("d1", "a", 2, 0.5)), nil},
			{1, batch(pt("d1", "a", 3, 1)), []string{`iot.rules.rl.d1 {"points":[{"device_id":"d1","key":"a","value":3,"type":"float64","quality":1,"timestamp":1700000001000000000}]}`}},
		}},
		{"changed only, by expression", `rule "ch" {
  type = "filter"
  when = "changed()"
}`, []step{
			{0, batch(pt("d1", "a", 1, 0), pt("d1", "a", 1, 1), pt("d1", "a", 2, 2)), []string{`iot.rules.ch.d1 {"points":[{"device_id":"d1","key":"a","value":1,"type":"float64","quality":1,"timestamp":1700000000000000000},{"device_id":"d1","key":"a","value":2,"type":"float64","quality":1,"timestamp":1700000002000000000}]}`}},
		}},
		{"match by device pattern and tag", `rule "m" {
  type = "filter"
  match {
    devices = ["boiler-*"]
    tags    = { line = "1" }
  }
  when = "true"
}`, []step{
			{0, batch(
				isp.Point{DeviceID: "boiler-1", Key: "t", Value: isp.Int(1), Quality: 1, Timestamp: ns(0), Tags: []isp.Tag{{Key: "line", Value: "1"}}},
				isp.Point{DeviceID: "boiler-1", Key: "u", Value: isp.Int(2), Quality: 1, Timestamp: ns(0), Tags: []isp.Tag{{Key: "line", Value: "2"}}},
				isp.Point{DeviceID: "mixer-1", Key: "t", Value: isp.Int(3), Quality: 1, Timestamp: ns(0), Tags: []isp.Tag{{Key: "line", Value: "1"}}},
			), []string{`iot.rules.m.boiler-1 {"points":[{"device_id":"boiler-1","key":"t","value":1,"quality":1,"timestamp":1700000000000000000,"tags":{"line":"1"}}]}`}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			run(t, NewEngine(parseRule(t, tc.rule), rec), rec, tc.steps)
		})
	}
}

func TestTransformAndForward(t *testing.T) {
	cases := []struct {
		name, rule string
		steps      []step
	}{
		{"value, rename, unit", `rule "f" {
  type   = "transform"
  match { keys = ["temp"] }
  value  = "value * 1.8 + 32"
  rename = "temp_f"
  unit   = "°F"
}`, []step{
			{0, batch(isp.Point{DeviceID: "d1", Key: "temp", Value: isp.Float(25), Type: "float32", Quality: 1, Timestamp: ns(0), Tags: []isp.Tag{{Key: "site", Value: "a"}, {Key: "unit", Value: "°C"}}}, pt("d1", "rpm", 1, 0)),
				[]string{`iot.rules.f.d1 {"points":[{"device_id":"d1","key":"temp_f","value":77,"type":"float64","quality":1,"timestamp":1700000000000000000,"tags":{"site":"a","unit":"°F"}}]}`}},
		}},
		{"scale and offset, to int64", `rule "s" {
  type       = "transform"
  scale      = 0.1
  offset     = -40
  value_type = "int64"
}`, []step{
			{0, batch(isp.Point{DeviceID: "d1", Key: "raw", Value: isp.Int(655), Type: "uint16", Quality: 1, Timestamp: ns(0)}),
				[]string{`iot.rules.s.d1 {"points":[{"device_id":"d1","key":"raw","value":26,"type":"int64","quality":1,"timestamp":1700000000000000000}]}`}},
		}},
		{"derived point from two keys", `rule "p" {
  type = "transform"
  match { keys = ["none"] }
  derive "power" {
    value = "values.voltage * values.current"
    unit  = "W"
  }
}`, []step{
			{0, batch(pt("m1", "voltage", 230, 0), pt("m1", "current", 2.5, 0.1), pt("m2", "voltage", 231, 0)),
				[]string{`iot.rules.p.m1 {"points":[{"device_id":"m1","key":"power","value":575,"type":"float64","quality":1,"timestamp":1700000000100000000,"tags":{"unit":"W"}}]}`}},
		}},
		{"forward per point with rename", `rule "fw" {
  type    = "forward"
  match { keys = ["temp"] }
  subject = "plant.{device}.{key}"
  rename  = "temperature"
}`, []step{
			{0, batch(pt("d1", "temp", 20, 0), pt("d1", "x", 1, 0)),
				[]string{`plant.d1.temperature {"device_id":"d1","key":"temperature","value":20,"type":"float64","quality":1,"timestamp":1700000000000000000}`}},
		}},
		{"forward batches to iot.rules", `rule "fb" {
  type = "forward"
}`, []step{
			{0, batch(pt("d1", "a", 1, 0), pt("d2", "a", 2, 0)), []string{
				`iot.rules.fb.d1 {"points":[{"device_id":"d1","key":"a","value":1,"type":"float64","quality":1,"timestamp":1700000000000000000}]}`,
				`iot.rules.fb.d2 {"points":[{"device_id":"d2","key":"a","value":2,"type":"float64","quality":1,"timestamp":1700000000000000000}]}`}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			run(t, NewEngine(parseRule(t, tc.rule), rec), rec, tc.steps)
		})
	}
}

// TestExpressionErrorGoesOnTheBusAndTheRuleGoesOn: a point whose evaluation fails is reported on iot.errors.rules
// with the rule and the point; the next point of the same batch is handled.
func TestExpressionErrorGoesOnTheBusAndTheRuleGoesOn(t *testing.T) {
	rec := &recorder{}
	e := NewEngine(parseRule(t, `rule "e" {
  type = "filter"
  when = "int(text) > 1"
}`), rec)
	e.Process(batch(isp.Point{DeviceID: "d1", Key: "s", Value: isp.String("abc"), Quality: 1, Timestamp: ns(0)}, pt("d1", "n", 5, 0)), at(0))
	got := rec.take()
	if len(got) != 2 {
		t.Fatalf("got %q, want an error event and the batch", got)
	}
	subj, body, _ := strings.Cut(got[0], " ")
	var ev ErrorEvent
	if subj != SubjectErrors || json.Unmarshal([]byte(body), &ev) != nil || ev.Rule != "e" || !strings.Contains(string(ev.Point), `"value":"abc"`) || ev.Expression != "int(text) > 1" || ev.Error == "" {
		t.Errorf("error event: got %s", got[0])
	}
	if !strings.HasPrefix(got[1], `iot.rules.e.d1 {"points":[{"device_id":"d1","key":"n","value":5`) {
		t.Errorf("the next point: got %s", got[1])
	}
	if s := e.Stats(); s.Errors != 1 || s.Out != 1 || s.In != 2 {
		t.Errorf("stats: got %+v", s)
	}
}

func TestAlertLifecycle(t *testing.T) {
	const w = "iot.alerts.warning.d1"
	cases := []struct {
		name, rule string
		steps      []step
	}{
		{"flapping around the threshold without hysteresis fires each time", `rule "hot" {
  type = "alert"
  when = "value > 85"
}`, []step{
			{0, batch(pt("d1", "t", 84, 0)), nil},
			{1, batch(pt("d1", "t", 86, 1)), []string{w + " event=firing state=firing value=86 dedup_key=hot:d1:t:when condition=when"}},
			{2, batch(pt("d1", "t", 84, 2)), []string{w + " event=resolved state=resolved value=84"}},
			{3, batch(pt("d1", "t", 86, 3)), []string{w + " event=firing state=firing value=86"}},
			// A failed reading neither clears nor raises.
			{4, batch(isp.Point{DeviceID: "d1", Key: "t", Value: isp.Null(), Quality: isp.QualityBad, Timestamp: ns(4)}), nil},
			{5, batch(isp.Point{DeviceID: "d1", Key: "t", Value: isp.Float(20), Quality: isp.QualityBad, Timestamp: ns(5)}), nil},
			{6, batch(pt("d1", "t", 20, 6)), []string{w + " event=resolved value=20"}},
		}},
		{"a deadband holds it through the flapping", `rule "hot" {
  type     = "alert"
  when     = "value > 85"
  deadband = 2
}`, []step{
			{0, batch(pt("d1", "t", 86, 0)), []string{w + " event=firing state=firing value=86"}},
			{1, batch(pt("d1", "t", 84, 1)), nil},
			{2, batch(pt("d1", "t", 85.5, 2)), nil},
			{3, batch(pt("d1", "t", 83, 3)), nil}, // 83 is not below 85 − 2
			{4, batch(pt("d1", "t", 82.9, 4)), []string{w + " event=resolved state=resolved value=82.9"}},
			{5, batch(pt("d1", "t", 86, 5)), []string{w + " event=firing value=86"}},
		}},
		{"clear_when", `rule "hot" {
  type       = "alert"
  when       = "value > 85"
  clear_when = "value < 80"
  level      = "critical"
  message    = "{device}_{key}_at_{value}"
}`, []step{
			{0, batch(pt("d1", "t", 90, 0)), []string{"iot.alerts.critical.d1 event=firing level=critical message=d1_t_at_90"}},
			{1, batch(pt("d1", "t", 81, 1)), nil},
			{2, batch(pt("d1", "t", 79, 2)), []string{"iot.alerts.critical.d1 event=resolved message=d1_t_at_79"}},
		}},
		{"for: pending, then firing on the clock; a short spike is cancelled", `rule "hot" {
  type = "alert"
  when = "value > 85"
  for  = "5s"
}`, []step{
			{0, batch(pt("d1", "t", 90, 0)), []string{w + " event=pending state=pending"}},
			{2, batch(pt("d1", "t", 91, 2)), nil},
			{4.9, nil, nil},
			{5, nil, []string{w + " event=firing state=firing value=91"}},
			{6, batch(pt("d1", "t", 70, 6)), []string{w + " event=resolved"}},
			{7, batch(pt("d1", "t", 90, 7)), []string{w + " event=pending"}},
			{8, batch(pt("d1", "t", 80, 8)), []string{w + " event=cancelled state=resolved"}},
			{20, nil, nil},
		}},
		{"bad quality", `rule "q" {
  type        = "alert"
  bad_quality = true
}`, []step{
			{0, batch(isp.Point{DeviceID: "d1", Key: "t", Value: isp.Float(1), Quality: isp.QualityBad, Timestamp: ns(0)}), []string{w + " event=firing condition=bad_quality"}},
			{1, batch(isp.Point{DeviceID: "d1", Key: "t", Value: isp.Float(1), Quality: isp.QualityBad, Timestamp: ns(1)}), nil},
			{2, batch(pt("d1", "t", 1, 2)), []string{w + " event=resolved condition=bad_quality"}},
		}},
		{"a silent device: no data from the start, then after its last point", `rule "silent" {
  type    = "alert"
  match {
    devices = ["d1"]
    keys    = ["t"]
  }
  no_data = "3s"
}`, []step{
			{0, nil, nil},
			{2.9, nil, nil},
			{3, nil, []string{w + " event=firing condition=no_data dedup_key=silent:d1:t:no_data"}},
			{4, nil, nil},
			{5, batch(pt("d1", "t", 1, 5)), []string{w + " event=resolved condition=no_data value=1"}},
			{7.9, nil, nil},
			{8, nil, []string{w + " event=firing condition=no_data"}},
		}},
		{"repeat until acknowledged", `rule "r" {
  type   = "alert"
  when   = "value > 1"
  repeat = "10s"
}`, []step{
			{0, batch(pt("d1", "t", 2, 0)), []string{w + " event=firing"}},
			{9, nil, nil},
			{10, nil, []string{w + " event=repeat repeats=1"}},
			{20, nil, []string{w + " event=repeat repeats=2"}},
		}},
		{"throttle: an alert that ended fires again only after throttle", `rule "t" {
  type     = "alert"
  when     = "value > 85"
  throttle = "10s"
}`, []step{
			{0, batch(pt("d1", "t", 90, 0)), []string{w + " event=firing"}},
			{1, batch(pt("d1", "t", 80, 1)), []string{w + " event=resolved"}},
			{2, batch(pt("d1", "t", 90, 2)), []string{w + " event=pending state=pending"}},
			{5, batch(pt("d1", "t", 91, 5)), nil},
			{10.9, nil, nil},
			{11, nil, []string{w + " event=firing value=91"}},
		}},
		{"one dedup key for the whole device", `rule "dev" {
  type      = "alert"
  when      = "value > 1"
  dedup_key = "{rule}:{device}"
}`, []step{
			{0, batch(pt("d1", "a", 2, 0), pt("d1", "b", 2, 0)), []string{w + " event=firing dedup_key=dev:d1 key=a"}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			run(t, NewEngine(parseRule(t, tc.rule), rec), rec, tc.steps)
		})
	}
}

func TestAlertAck(t *testing.T) {
	rec := &recorder{}
	e := NewEngine(parseRule(t, `rule "r" {
  type   = "alert"
  when   = "value > 1"
  repeat = "10s"
}`), rec)
	run(t, e, rec, []step{{0, batch(pt("d1", "t", 2, 0)), []string{"iot.alerts.warning.d1 event=firing"}}})
	if e.Ack("nope", "op", at(1)) {
		t.Error("acked an unknown key")
	}
	if !e.Ack("r:d1:t:when", "op", at(1)) {
		t.Fatal("ack of the firing alert not found")
	}
	run(t, e, rec, []step{
		{1, nil, []string{"iot.alerts.warning.d1 event=acknowledged state=firing acked_by=op"}}, // published by Ack
	})
	list := e.Alerts()
	if len(list) != 1 || !list[0].Acknowledged || list[0].AckedBy != "op" || list[0].State != StateFiring {
		t.Errorf("list after ack: got %+v", list)
	}
	run(t, e, rec, []step{{30, nil, nil}}) // acknowledged: no repeat
}

// TestRestartInTheMiddleOfAFiringAlert: the engine's changes, stored and given to a new engine, make it go on
// where the old one was: the firing alert does not fire again, and it resolves when it clears.
func TestRestartInTheMiddleOfAFiringAlert(t *testing.T) {
	r := parseRule(t, `rule "hot" {
  type = "alert"
  when = "value > 85"
  for  = "2s"
}`)
	stored := map[string]Alert{}
	keep := func(c AlertChange) {
		if c.Deleted {
			delete(stored, c.Alert.Key)
		} else {
			stored[c.Alert.Key] = *c.Alert
		}
	}
	rec := &recorder{}
	e := NewEngine(r, rec)
	e.OnAlertChange(keep)
	run(t, e, rec, []step{
		{0, batch(pt("d1", "t", 90, 0), pt("d2", "t", 90, 0)), []string{"iot.alerts.warning.d1 event=pending", "iot.alerts.warning.d2 event=pending"}},
		{2, batch(pt("d1", "t", 90, 2)), []string{"iot.alerts.warning.d1 event=firing"}},
	})
	if len(stored) != 2 || stored["hot:d1:t:when"].State != StateFiring || stored["hot:d2:t:when"].State != StatePending {
		t.Fatalf("stored: got %+v", stored)
	}
	// The gateway restarts: a new engine from the store.
	var list []Alert
	for _, a := range stored {
		list = append(list, a)
	}
	rec2 := &recorder{}
	e2 := NewEngine(r, rec2)
	e2.OnAlertChange(keep)
	e2.Restore(list)
	run(t, e2, rec2, []step{
		{3, batch(pt("d1", "t", 95, 3)), nil},                                              // still firing: not fired again
		{3.5, nil, []string{"iot.alerts.warning.d2 event=firing"}},                         // d2's pending `for` counted from before
		{4, batch(pt("d1", "t", 80, 4)), []string{"iot.alerts.warning.d1 event=resolved"}}, // and not forgotten
	})
	if len(stored) != 1 {
		t.Errorf("stored after resolve: got %+v", stored)
	}
}

func TestAggregateWindows(t *testing.T) {
	const subj = "iot.aggregated.d1.t "
	out := func(rule, window string, start, end float64, count int, values string) string {
		return fmt.Sprintf(`%s{"rule":%q,"device_id":"d1","key":"t","window":%q,"start":%d,"end":%d,"count":%d,"values":{%s}}`,
			subj, rule, window, ns(start), ns(end), count, values)
	}
	p := func(v, ts float64) []isp.Point { return batch(pt("d1", "t", v, ts)) }
	cases := []struct {
		name, rule string
		steps      []step
	}{
		{"tumbling: the window edge belongs to the next window; closes on the clock", `rule "a" {
  type      = "aggregate"
  window    = "tumbling"
  size      = "10s"
  functions = ["avg", "min", "max", "count"]
}`, []step{
			{0, p(1, 0), nil},
			{3, p(2, 3), nil},
			{9.999, p(3, 9.999), nil},
			{10, p(4, 10), []string{out("a", "tumbling", 0, 10, 3, `"avg":2,"min":1,"max":3,"count":3`)}},
			{19.9, nil, nil},
			{20, nil, []string{out("a", "tumbling", 10, 20, 1, `"avg":4,"min":4,"max":4,"count":1`)}},
			{40, nil, nil}, // an empty window says nothing
		}},
		{"hopping", `rule "h" {
  type      = "aggregate"
  window    = "hopping"
  size      = "10s"
  hop       = "5s"
  functions = ["sum"]
}`, []step{
			{1, p(1, 1), nil},
			{6, p(2, 6), []string{out("h", "hopping", -5, 5, 1, `"sum":1`)}},
			{11, p(3, 11), []string{out("h", "hopping", 0, 10, 2, `"sum":3`)}},
			{20, nil, []string{out("h", "hopping", 5, 15, 2, `"sum":5`), out("h", "hopping", 10, 20, 1, `"sum":3`)}},
		}},
		{"event time with lateness: a late point within it counts, one past it is dropped", `rule "ev" {
  type      = "aggregate"
  size      = "10s"
  time      = "event"
  lateness  = "2s"
  functions = ["count", "first", "last"]
}`, []step{
			{100, p(1, 1), nil},
			{100, p(5, 5), nil},
			{100, p(11, 11), nil},
			{100, p(9, 9), nil}, // out of order, but [0,10) is open until the watermark passes 10
			{100, p(12.5, 12.5), []string{out("ev", "tumbling", 0, 10, 3, `"count":3,"first":1,"last":9`)}},
			{100, p(8, 8), nil}, // late: dropped
		}},
		{"event time closes on the clock when the device goes silent", `rule "ev2" {
  type      = "aggregate"
  size      = "10s"
  time      = "event"
  lateness  = "2s"
  functions = ["count"]
}`, []step{
			{1, p(1, 1), nil},
			{11.9, nil, nil},
			{12, nil, []string{out("ev2", "tumbling", 0, 10, 1, `"count":1`)}},
		}},
		{"sliding: one result per point over the size before it", `rule "s" {
  type      = "aggregate"
  window    = "sliding"
  size      = "10s"
  functions = ["avg", "count"]
}`, []step{
			{0, p(1, 0), []string{out("s", "sliding", -10, 0, 1, `"avg":1,"count":1`)}},
			{5, p(2, 5), []string{out("s", "sliding", -5, 5, 2, `"avg":1.5,"count":2`)}},
			{12, p(3, 12), []string{out("s", "sliding", 2, 12, 2, `"avg":2.5,"count":2`)}},
		}},
		{"count", `rule "c" {
  type      = "aggregate"
  window    = "count"
  count     = 3
  functions = ["avg"]
}`, []step{
			{0, p(1, 0), nil}, {1, p(2, 1), nil},
			{2, p(3, 2), []string{out("c", "count", 0, 2, 3, `"avg":2`)}},
			{3, p(4, 3), nil}, {4, p(5, 4), nil},
			{5, p(6, 5), []string{out("c", "count", 3, 5, 3, `"avg":5`)}},
			{100, nil, nil},
		}},
		{"session: closed by the gap, on a point or on the clock", `rule "se" {
  type      = "aggregate"
  window    = "session"
  gap       = "5s"
  functions = ["count", "max"]
}`, []step{
			{0, p(1, 0), nil}, {2, p(3, 2), nil}, {4, p(2, 4), nil},
			{20, p(7, 20), []string{out("se", "session", 0, 4, 3, `"count":3,"max":3`)}},
			{25, nil, nil},
			{25.1, nil, []string{out("se", "session", 20, 20, 1, `"count":1,"max":7`)}},
		}},
		{"percentiles and stddev", `rule "pc" {
  type      = "aggregate"
  window    = "count"
  count     = 10
  functions = ["p50", "p90", "stddev", "sum"]
}`, []step{
			{0, batch(pt("d1", "t", 7, 0), pt("d1", "t", 1, 0), pt("d1", "t", 10, 0), pt("d1", "t", 4, 0), pt("d1", "t", 5, 0),
				pt("d1", "t", 3, 0), pt("d1", "t", 9, 0), pt("d1", "t", 2, 0), pt("d1", "t", 8, 0), pt("d1", "t", 6, 0)),
				[]string{out("pc", "count", 0, 0, 10, `"p50":5.5,"p90":9.1,"stddev":3.0276503540974917,"sum":55`)}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			run(t, NewEngine(parseRule(t, tc.rule), rec), rec, tc.steps)
		})
	}
}

func TestAggregateCountsLatePoints(t *testing.T) {
	rec := &recorder{}
	e := NewEngine(parseRule(t, `rule "ev" {
  type     = "aggregate"
  size     = "10s"
  time     = "event"
  lateness = "1s"
}`), rec)
	e.Process(batch(pt("d1", "t", 1, 1), pt("d1", "t", 1, 12), pt("d1", "t", 1, 5), pt("d1", "t", 1, 13)), at(0))
	if s := e.Stats(); s.Late != 1 || s.Dropped != 1 {
		t.Errorf("got %+v, want one late point", s)
	}
}

func TestAggregatePerTag(t *testing.T) {
	rec := &recorder{}
	e := NewEngine(parseRule(t, `rule "line" {
  type      = "aggregate"
  window    = "count"
  count     = 2
  group_by  = "line"
  functions = ["sum"]
}`), rec)
	tagged := func(dev string, v float64, line string) isp.Point {
		p := pt(dev, "t", v, 0)
		if line != "" {
			p.Tags = []isp.Tag{{Key: "line", Value: line}}
		}
		return p
	}
	e.Process(batch(tagged("d1", 1, "L1"), tagged("d2", 2, "L1"), tagged("d3", 5, "L2"), tagged("d4", 5, "")), at(0))
	got := rec.take()
	if len(got) != 2 || !strings.HasPrefix(got[1], "iot.errors.rules ") ||
		got[0] != `iot.aggregated.L1.t {"rule":"line","device_id":"L1","key":"t","group_by":"line","window":"count","start":1700000000000000000,"end":1700000000000000000,"count":2,"values":{"sum":3}}` {
		t.Errorf("got %q", got)
	}
}

// TestHostileDeviceIDsNeverBecomeSubjects: a batch published by hand on the rule's input with a device id or key
// that is not a subject token (iot.control, a wildcard) is refused with an event, never published on.
func TestHostileDeviceIDsNeverBecomeSubjects(t *testing.T) {
	rec := &recorder{}
	e := NewEngine(parseRule(t, `rule "fw" {
  type    = "forward"
  subject = "{device}.{key}"
}`), rec)
	e.Process(batch(pt("iot.control", "reload", 1, 0), pt("d1", ">", 1, 0), pt("*", "k", 1, 0), pt("d1", "ok", 1, 0)), at(0))
	got := rec.take()
	if len(got) != 4 {
		t.Fatalf("got %q", got)
	}
	for _, m := range got[:3] {
		if !strings.HasPrefix(m, SubjectErrors+" ") {
			t.Errorf("got %s, want an error event", m)
		}
	}
	if !strings.HasPrefix(got[3], "d1.ok ") {
		t.Errorf("the valid point: got %s", got[3])
	}
}

// TestRendezvousSpreadsDevices: with two gateways, similar device ids are spread over both, each device to one.
func TestRendezvousSpreadsDevices(t *testing.T) {
	a, b := newMembership("gw-a", "r"), newMembership("gw-b", "r")
	for _, m := range []*membership{a, b} {
		m.active = true
		m.touch("gw-a", t0)
		m.touch("gw-b", t0)
	}
	byA := 0
	for i := range 1000 {
		dev := fmt.Sprintf("dev-%d", i)
		if a.owns(dev) == b.owns(dev) {
			t.Fatalf("%s: owned by both or neither", dev)
		}
		if a.owns(dev) {
			byA++
		}
	}
	if byA < 400 || byA > 600 {
		t.Errorf("gw-a owns %d of 1000 devices, want about half", byA)
	}
}

// TestErrorEventsAreBounded: a batch of bad points gives at most maxErrorEvents events a second; the rest are
// counted, never lost from the figures.
func TestErrorEventsAreBounded(t *testing.T) {
	rec := &recorder{}
	e := NewEngine(parseRule(t, `rule "e" {
  type = "filter"
  when = "int(text) > 1"
}`), rec)
	bad := make([]isp.Point, 300)
	for i := range bad {
		bad[i] = isp.Point{DeviceID: "d1", Key: "s", Value: isp.String("x"), Quality: 1, Timestamp: ns(0)}
	}
	e.Process(bad, at(0))
	if got := len(rec.take()); got != maxErrorEvents {
		t.Errorf("got %d events, want %d", got, maxErrorEvents)
	}
	if s := e.Stats(); s.Errors != 300 || s.ErrorsSuppressed != 200 {
		t.Errorf("stats: %+v", s)
	}
}

// TestWindowSpanningAChangeOfOwner pins what README "Window state moves with its device" promises when a gateway
// B joins and takes device d1 from A in the middle of a window: A hands d1's open window on (TakeWindows, through
// the store's JSON), B, which has taken d1's points since the change, merges it, and the window is emitted once,
// by B, with every point; A emits nothing for it.
func TestWindowSpanningAChangeOfOwner(t *testing.T) {
	const src = `rule "w" {
  type      = "aggregate"
  window    = "tumbling"
  size      = "10s"
  functions = ["sum", "count"]
}`
	recA, recB := &recorder{}, &recorder{}
	a, b := NewEngine(parseRule(t, src), recA), NewEngine(parseRule(t, src), recB)
	ownedByA := true
	a.SetOwner(func(string) bool { return ownedByA })
	b.SetOwner(func(string) bool { return !ownedByA })
	a.Process(batch(pt("d1", "t", 1, 1), pt("d1", "t", 2, 3)), at(3))
	ownedByA = false // B's "up": from here the actor hands d1's batches to B only
	b.Process(batch(pt("d1", "t", 4, 5), pt("d1", "t", 8, 7)), at(7))
	if n := b.MergeWindows(handOver(t, a.TakeWindows(func(string) bool { return ownedByA }))); n != 1 {
		t.Fatalf("merged %d states, want 1", n)
	}
	a.Tick(at(10))
	b.Tick(at(10))
	want := fmt.Sprintf(`iot.aggregated.d1.t {"rule":"w","device_id":"d1","key":"t","window":"tumbling","start":%d,"end":%d,"count":4,"values":{"sum":15,"count":4}}`,
		ns(0), ns(10))
	if got := recA.take(); len(got) != 0 {
		t.Errorf("A emitted %q, want nothing", got)
	}
	if got := recB.take(); len(got) != 1 || got[0] != want {
		t.Errorf("B emitted %q, want %q", got, want)
	}
}

// handOver sends states through JSON, as the stores do.
func handOver(t *testing.T, states []WindowState) []WindowState {
	t.Helper()
	data, err := json.Marshal(states)
	if err != nil {
		t.Fatal(err)
	}
	var out []WindowState
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWindowHandoverMergesExactly: for each window kind, a window whose points came partly to A (handed on) and
// partly to B (before and after the handoff reached it) is emitted by B exactly as one engine that saw every point emits it,
// every function included (the mean and variance merge by Chan's formula, first and last by time, percentiles
// from the kept values).
func TestWindowHandoverMergesExactly(t *testing.T) {
	const fns = `functions = ["avg", "min", "max", "sum", "count", "first", "last", "stddev", "p50"]`
	cases := []struct{ name, settings string }{
		{"tumbling", `window = "tumbling"
  size = "10s"`},
		{"hopping", `window = "hopping"
  size = "10s"
  hop = "5s"`},
		{"count", `window = "count"
  count = 5`},
		{"session", `window = "session"
  gap = "10s"`},
		{"event time", `window = "tumbling"
  size = "10s"
  time = "event"
  lateness = "1s"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := "rule \"w\" {\n  type = \"aggregate\"\n  " + tc.settings + "\n  " + fns + "\n}"
			recAll, recA, recB := &recorder{}, &recorder{}, &recorder{}
			all, a, b := NewEngine(parseRule(t, src), recAll), NewEngine(parseRule(t, src), recA), NewEngine(parseRule(t, src), recB)
			// A takes three points, B one before the handoff reaches it and one after.
			for i, v := range []float64{3, 1, 4, 1, 5} {
				ts := float64(i + 1)
				all.Process(batch(pt("d1", "t", v, ts)), at(ts))
				switch {
				case i < 3:
					a.Process(batch(pt("d1", "t", v, ts)), at(ts))
				case i == 3:
					b.Process(batch(pt("d1", "t", v, ts)), at(ts))
					b.MergeWindows(handOver(t, a.TakeWindows(nil)))
				default:
					b.Process(batch(pt("d1", "t", v, ts)), at(ts))
				}
			}
			for _, e := range []*Engine{all, a, b} {
				e.Tick(at(30))
			}
			want, got := recAll.take(), recB.take()
			if len(want) == 0 || strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("B emitted\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if got := recA.take(); len(got) != 0 {
				t.Errorf("A emitted %q after handing its windows on", got)
			}
			if s := a.Stats(); s.Series != 0 {
				t.Errorf("A keeps %d series after handing them on", s.Series)
			}
		})
	}
}

// TestSlidingWindowHandover: a sliding window's samples move too, so the first result the new owner gives after
// the handoff covers the points the old owner had.
func TestSlidingWindowHandover(t *testing.T) {
	const src = `rule "w" {
  type      = "aggregate"
  window    = "sliding"
  size      = "10s"
  functions = ["count", "sum"]
}`
	recAll, recA, recB := &recorder{}, &recorder{}, &recorder{}
	all, a, b := NewEngine(parseRule(t, src), recAll), NewEngine(parseRule(t, src), recA), NewEngine(parseRule(t, src), recB)
	for i, v := range []float64{3, 1, 4} {
		ts := float64(i + 1)
		all.Process(batch(pt("d1", "t", v, ts)), at(ts))
		a.Process(batch(pt("d1", "t", v, ts)), at(ts))
	}
	b.MergeWindows(handOver(t, a.TakeWindows(nil)))
	recAll.take()
	all.Process(batch(pt("d1", "t", 5, 4)), at(4))
	b.Process(batch(pt("d1", "t", 5, 4)), at(4))
	if want, got := recAll.take(), recB.take(); len(want) != 1 || strings.Join(got, "\n") != want[0] {
		t.Errorf("B emitted %q, want %q", got, want)
	}
}

// TestSessionHandoverKeepsTheGap: sessions of the two owners more than gap apart stay two sessions.
func TestSessionHandoverKeepsTheGap(t *testing.T) {
	const src = `rule "w" {
  type      = "aggregate"
  window    = "session"
  gap       = "5s"
  functions = ["count"]
}`
	recAll, recA, recB := &recorder{}, &recorder{}, &recorder{}
	all, a, b := NewEngine(parseRule(t, src), recAll), NewEngine(parseRule(t, src), recA), NewEngine(parseRule(t, src), recB)
	for _, ts := range []float64{1, 2} {
		all.Process(batch(pt("d1", "t", 1, ts)), at(ts))
		a.Process(batch(pt("d1", "t", 1, ts)), at(ts))
	}
	for _, ts := range []float64{9, 10} { // B's first point comes 7 s after A's last: a new session
		all.Process(batch(pt("d1", "t", 1, ts)), at(ts))
		b.Process(batch(pt("d1", "t", 1, ts)), at(ts))
	}
	b.MergeWindows(handOver(t, a.TakeWindows(nil)))
	all.Tick(at(30))
	b.Tick(at(30))
	if want, got := recAll.take(), recB.take(); len(want) != 2 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("B emitted\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestWindowHandoverEdges: a state made with other window settings (a reload changed the rule) is not merged; a
// handed-on window that the new owner has already closed is emitted with the handed-on part, not lost; TakeWindows
// keeps the devices still owned.
func TestWindowHandoverEdges(t *testing.T) {
	const src = `rule "w" {
  type      = "aggregate"
  window    = "tumbling"
  size      = "10s"
  functions = ["count"]
}`
	recA, recB, recC := &recorder{}, &recorder{}, &recorder{}
	a, b := NewEngine(parseRule(t, src), recA), NewEngine(parseRule(t, src), recB)
	a.Process(batch(pt("d1", "t", 1, 1), pt("d2", "t", 1, 1)), at(1))
	b.Process(batch(pt("d1", "t", 1, 2)), at(2))
	b.Tick(at(10)) // B closes d1's window before A's part reaches it
	if got := len(recB.take()); got != 1 {
		t.Fatalf("B emitted %d windows at 10 s, want 1", got)
	}
	states := handOver(t, a.TakeWindows(func(dev string) bool { return dev == "d2" }))
	if len(states) != 1 || states[0].Device != "d1" {
		t.Fatalf("handed on %+v, want d1's windows only", states)
	}
	other := NewEngine(parseRule(t, strings.Replace(src, `"10s"`, `"20s"`, 1)), recC)
	if n := other.MergeWindows(states); n != 0 {
		t.Errorf("a rule with other window settings merged %d states", n)
	}
	b.MergeWindows(states)
	want := fmt.Sprintf(`iot.aggregated.d1.t {"rule":"w","device_id":"d1","key":"t","window":"tumbling","start":%d,"end":%d,"count":1,"values":{"count":1}}`, ns(0), ns(10))
	if got := recB.take(); len(got) != 1 || got[0] != want {
		t.Errorf("late handoff: B emitted %q, want %q", got, want)
	}
	a.Tick(at(10))
	if got := recA.take(); len(got) != 1 || !strings.Contains(got[0], `"device_id":"d2"`) {
		t.Errorf("A emitted %q, want d2's window (still its own)", got)
	}
}

// TestRepublishUnchanged: a filter that keeps every point of a one-device batch, and a forward without rename,
// publish the batch as it came; anything that changes the points (one dropped, a rename, a transform, two
// devices in one batch) is encoded again.
func TestRepublishUnchanged(t *testing.T) {
	raw := []byte(`{"points":[ {"device_id":"d1","key":"a","value":1,"extra":true}, {"device_id":"d1","key":"b","value":2} ]}`)
	twoDevices := []byte(`{"points":[{"device_id":"d1","key":"a","value":1},{"device_id":"d2","key":"b","value":2}]}`)
	cases := []struct {
		name, rule string
		data       []byte
		asItCame   bool
		outputs    int
	}{
		{"filter keeps all", `rule "r" {
  type = "filter"
  when = "value > 0"
}`, raw, true, 1},
		{"filter drops one", `rule "r" {
  type = "filter"
  when = "value > 1"
}`, raw, false, 1},
		{"forward", `rule "r" {
  type = "forward"
}`, raw, true, 1},
		{"forward with rename", `rule "r" {
  type   = "forward"
  rename = "x"
}`, raw, false, 1},
		{"transform", `rule "r" {
  type  = "transform"
  value = "value"
}`, raw, false, 1},
		{"two devices", `rule "r" {
  type = "forward"
}`, twoDevices, false, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			e := NewEngine(parseRule(t, tc.rule), rec)
			pts, err := isp.DecodeBatch(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			e.ProcessBatch(pts, tc.data, at(0))
			got := rec.take()
			if len(got) != tc.outputs {
				t.Fatalf("got %d outputs, want %d: %q", len(got), tc.outputs, got)
			}
			body := got[0][strings.IndexByte(got[0], ' ')+1:]
			if same := body == string(tc.data); same != tc.asItCame {
				t.Errorf("published %s; as it came: %t, want %t", body, same, tc.asItCame)
			}
			if !tc.asItCame {
				// Encoded again: the points that passed, in the encoder's form.
				out, err := isp.DecodeBatch([]byte(body))
				if err != nil || string(isp.AppendBatch(nil, out)) != body {
					t.Errorf("output %s is not the encoder's (%v)", body, err)
				}
			}
		})
	}
}
