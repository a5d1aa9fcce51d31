package rule

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
)

// The undecoded path (raw.go) must publish exactly what the decoding path publishes: the same subjects, the
// same bytes, the same error events and figures.

// rawRules are rules of the undecoded path: filters that keep all or some points, read the type, the device,
// the series; transforms with a value, scale and offset, a rename, a value type, NaN results; forwards with a
// rename and per-point subjects; run-time errors.
var rawRules = []struct{ name, src string }{
	{"filter keeps all", `type = "filter"
  when = "value > 0 && quality == 1"`},
	{"filter drops some", `type = "filter"
  when = "value > 21"`},
	{"filter on type and device, keys matched", `type = "filter"
  when = "type == \"float32\" || device == \"d2\""
  match {
    keys = ["a", "b*", "c"]
  }`},
	{"filter deadband", `type = "filter"
  deadband = 0.5`},
	{"filter deadband percent and changed", `type = "filter"
  deadband_percent = 10
  when = "changed()"`},
	{"filter rate limit", `type = "filter"
  rate_limit = "2s"`},
	{"filter run-time error", `type = "filter"
  when = "int(text) > 2"`},
	{"filter rate, devices matched", `type = "filter"
  when = "rate() > 0 || is_number == false"
  match {
    devices = ["d1", "x*"]
  }`},
	{"transform value and rename", `type   = "transform"
  value  = "value * 1.8 + 32"
  rename = "f"`},
	{"transform scale and offset", `type   = "transform"
  scale  = 0.1
  offset = -3`},
	{"transform to int64", `type       = "transform"
  value_type = "int64"`},
	{"transform to string and rename", `type       = "transform"
  value_type = "string"
  rename     = "s"`},
	{"transform to bool", `type       = "transform"
  value_type = "bool"`},
	{"transform to NaN and Inf", `type  = "transform"
  value = "value / (value - 20)"`},
	{"transform with the VM", `type  = "transform"
  value = "quality < 1 ? 0 : value + timestamp % 7"`},
	{"forward", `type = "forward"`},
	{"forward rename", `type   = "forward"
  rename = "r"`},
	{"forward per point", `type    = "forward"
  subject = "out.{device}.{key}"`},
	{"forward per point renamed", `type    = "forward"
  subject = "out.{rule}.{key}"
  rename  = "z"
  when    = "key != \"b\""`},
}

// rawBatches are batches as the processor encodes them, in turn: one device with tags and sources, every kind of
// value (strings with escapes, bools, null, ints at the edges, floats of every form), bad and unknown quality,
// several devices interleaved, a device id and keys that are not subject tokens, an escaped key and type.
func rawBatches() [][]isp.Point {
	tags := []isp.Tag{{Key: "unit", Value: "C"}, {Key: "site", Value: "x \"y\""}}
	values := []isp.Value{isp.Float(20.5), isp.Int(3), isp.Float(21.25), isp.Bool(true), isp.Null(), isp.String("abc"),
		isp.String("4"), isp.String("a \"q\" \\ \n é"), isp.Int(math.MaxInt64), isp.Int(math.MinInt64), isp.Float(1e21),
		isp.Float(-1.5e-7), isp.Float(float64(float32(25.53))), isp.Float(9223372036854775808), isp.Float(0.1 + 0.2),
		isp.Float(-0.5), isp.Bool(false), isp.Float(123456789.123), isp.Float(20), isp.Int(0)}
	keys := []string{"a", "b", "bb", "c", "d"}
	var out [][]isp.Point
	for round := range 4 {
		var one []isp.Point
		for i, v := range values {
			if round%2 == 1 {
				if f, ok := v.Float(); ok {
					v = isp.Float(f + 0.75) // the next poll moves, for deadbands, changed and rate
				}
			}
			p := isp.Point{DeviceID: "d1", Key: keys[i%len(keys)] + string(rune('0'+i/len(keys))), Value: v,
				Type: []string{"float32", "", "int16", "bool"}[i%4], Quality: []int{1, 1, 0, -1, 1}[i%5],
				Timestamp: ns(float64(round)) + int64(i), Source: []string{"modbus", ""}[i%2]}
			if i%3 != 2 {
				p.Tags = tags
			}
			one = append(one, p)
		}
		out = append(out, one)
		mixed := []isp.Point{
			{DeviceID: "d1", Key: "a", Value: isp.Float(22 + float64(round)), Type: "float32", Quality: 1, Timestamp: ns(float64(round))},
			{DeviceID: "d2", Key: "a", Value: isp.Float(19), Quality: 1, Timestamp: ns(float64(round)), Tags: tags},
			{DeviceID: "d2", Key: "b", Value: isp.Int(25), Quality: 0, Timestamp: ns(float64(round))},
			{DeviceID: "d1", Key: "c", Value: isp.String("7"), Quality: 1, Timestamp: ns(float64(round)), Source: "s"},
			{DeviceID: "x9", Key: "bx", Value: isp.Float(30.5), Quality: 1, Timestamp: ns(float64(round))},
			{Key: "nodevice", Value: isp.Float(30), Quality: 1, Timestamp: ns(float64(round))},
			{DeviceID: "d1", Key: "not.a.token", Value: isp.Float(30), Quality: 1, Timestamp: ns(float64(round))},
			{DeviceID: "d1", Key: "esc\"aped", Value: isp.Float(31), Type: "t\\y", Quality: 1, Timestamp: ns(float64(round))},
		}
		out = append(out, mixed)
	}
	return out
}

// sameOutputs runs a rule on each batch both ways, at the same times, and reports the first difference. It
// fails if the undecoded path declines a batch the encoder wrote.
func sameOutputs(t *testing.T, r *config.Rule, batches [][]byte, mustTake bool) {
	t.Helper()
	times := make([]time.Time, len(batches))
	for i := range times {
		times[i] = at(float64(i))
	}
	sameOutputsAt(t, r, batches, times, mustTake)
}

// sameOutputsAt is sameOutputs with batch i processed at times[i].
func sameOutputsAt(t *testing.T, r *config.Rule, batches [][]byte, times []time.Time, mustTake bool) {
	t.Helper()
	src := r.Name
	if r.When != nil {
		src += " when " + r.When.Source
	}
	raw, dec := &recorder{}, &recorder{}
	er, ed := NewEngine(r, raw), NewEngine(r, dec)
	var d isp.Decoder
	var pts []isp.Point
	for i, data := range batches {
		now := times[i]
		n, ok := er.ProcessRaw(data, now)
		var err error
		pts, err = d.DecodeBatch(data, pts)
		if err != nil {
			if ok {
				t.Fatalf("batch %d: the undecoded path took a batch the decoder refuses (%v): %s", i, err, data)
			}
			continue
		}
		ed.ProcessBatch(pts, data, now)
		if !ok {
			if mustTake {
				t.Fatalf("batch %d: the undecoded path declined the encoder's batch %s", i, data)
			}
			er.ProcessBatch(pts, data, now)
		} else if n != len(pts) {
			t.Fatalf("batch %d: %d points, the decoder reads %d", i, n, len(pts))
		}
		got, want := normalize(raw.take()), normalize(dec.take())
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("rule %q, batch %d:\nundecoded:\n%s\ndecoded:\n%s", src, i, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		sr, sd := er.Stats(), ed.Stats()
		sr.EvalNs, sd.EvalNs = 0, 0
		if sr != sd {
			t.Fatalf("rule %q, batch %d: figures %+v, decoded %+v", src, i, sr, sd)
		}
	}
}

// normalize clears the time an error event was made at, which differs between the two runs.
func normalize(msgs []string) []string {
	for i, m := range msgs {
		body, ok := strings.CutPrefix(m, SubjectErrors+" ")
		if !ok {
			continue
		}
		var ev ErrorEvent
		if err := json.Unmarshal([]byte(body), &ev); err != nil {
			continue
		}
		ev.Timestamp = 0
		b, _ := json.Marshal(ev)
		msgs[i] = SubjectErrors + " " + string(b)
	}
	return msgs
}

func TestRawPathSameAsDecoded(t *testing.T) {
	var batches [][]byte
	for _, b := range rawBatches() {
		batches = append(batches, isp.AppendBatch(nil, b))
	}
	for _, tc := range rawRules {
		t.Run(tc.name, func(t *testing.T) {
			r := parseRule(t, "rule \"r\" {\n  "+tc.src+"\n}")
			if NewEngine(r, &recorder{}).undec == nil {
				t.Fatalf("rule %q does not take the undecoded path", tc.src)
			}
			sameOutputs(t, r, batches, true)
		})
	}
}

// What the undecoded path cannot prove goes the decoding way: another encoder's spacing, an invalid batch; and
// rules that read tags or other keys never take it.
func TestRawPathDeclines(t *testing.T) {
	batches := [][]byte{
		[]byte(`{"points": [{"device_id":"d1","key":"a","value":22,"quality":1,"timestamp":5}]}`), // the envelope: any spacing
		[]byte(`{"points":[{"device_id": "d1","key":"a","value":22,"quality":1,"timestamp":5}]}`),
		[]byte(`{"points":[{"key":"a","device_id":"d1","value":22,"quality":1,"timestamp":5}]}`),
		[]byte(`{"points":[{"device_id":"d1","key":"a","value":22.50,"quality":1,"timestamp":5}]}`),
		[]byte(`{"points":[{"device_id":"d1","key":"a","value":22,"quality":1,"timestamp":5,"extra":[1]}]}`),
		[]byte(`{"points":[{"device_id":"d1","key":"a","value":22,"quality":1}`),
		[]byte(`not a batch`),
	}
	for i, b := range batches {
		_, ok := NewEngine(parseRule(t, "rule \"r\" {\n  "+rawRules[0].src+"\n}"), &recorder{}).ProcessRaw(b, t0)
		if want := i == 0; ok != want {
			t.Errorf("batch %d %s: taken %v, want %v", i, b, ok, want)
		}
	}
	for _, tc := range rawRules {
		sameOutputs(t, parseRule(t, "rule \"r\" {\n  "+tc.src+"\n}"), batches, false)
	}
	for _, src := range []string{
		`type = "filter"
  when = "tags.unit == \"C\""`,
		`type = "filter"
  when = "value > 0"
  match {
    tags = { unit = "C" }
  }`,
		`type  = "transform"
  value = "values.a + value"`,
		`type = "transform"
  unit = "F"`,
		`type = "alert"
  when = "value > 3"`,
	} {
		if NewEngine(parseRule(t, "rule \"r\" {\n  "+src+"\n}"), &recorder{}).undec != nil {
			t.Errorf("rule %q takes the undecoded path", src)
		}
	}
}

// FuzzRawPath: on any bytes, the undecoded path either declines or publishes what the decoding path does.
func FuzzRawPath(f *testing.F) {
	for _, b := range rawBatches() {
		f.Add(isp.AppendBatch(nil, b))
	}
	f.Add([]byte(`{"points":[{"device_id":"d1","key":"a","value":-0,"quality":1,"timestamp":5}]}`))
	rules := make([]*config.Rule, len(rawRules))
	for i, tc := range rawRules {
		rules[i] = parseRule(f, "rule \"r"+strconv.Itoa(i)+"\" {\n  "+tc.src+"\n}")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, r := range rules {
			sameOutputs(t, r, [][]byte{data, data}, false)
		}
	})
}
