package batch

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/iotgw/iotgw/isp"
)

// sameAsDecodeEncode is the property SplitPoints promises: when it accepts data, isp's decoder reads the batch
// without an error, into as many points, and each element is byte for byte AppendPoint of its point, with the
// device id and timestamp the decoder read. It returns "" or what differs.
func sameAsDecodeEncode(data []byte, els []Element) string {
	pts, err := isp.DecodeBatch(data)
	if err != nil {
		return "the decoder refuses what SplitPoints accepted: " + err.Error()
	}
	if len(pts) != len(els) {
		return "decoder " + strconv.Itoa(len(pts)) + " points, SplitPoints " + strconv.Itoa(len(els))
	}
	for i, e := range els {
		if got, want := data[e.Start:e.End], isp.AppendPoint(nil, &pts[i]); !bytes.Equal(got, want) {
			return "element " + strconv.Itoa(i) + ": got " + string(got) + ", want " + string(want)
		}
		if got := string(data[e.DeviceStart:e.DeviceEnd]); got != pts[i].DeviceID {
			return "element " + strconv.Itoa(i) + ": device " + strconv.Quote(got) + ", want " + strconv.Quote(pts[i].DeviceID)
		}
		if e.Timestamp != pts[i].Timestamp {
			return "element " + strconv.Itoa(i) + ": timestamp " + strconv.FormatInt(e.Timestamp, 10)
		}
		if msg := spansOf(data, e, &pts[i]); msg != "" {
			return "element " + strconv.Itoa(i) + ": " + msg
		}
	}
	return ""
}

// spansOf checks an element's spans of the key, value, type and the rest from the timestamp on against its point.
func spansOf(data []byte, e Element, p *isp.Point) string {
	key, typ := string(data[e.KeyStart:e.KeyEnd]), string(data[e.TypeStart:e.TypeEnd])
	// Without an escape the span is the key in quotes; with one it cannot be (the escape is not the key's text).
	if e.KeyEscaped == (key == "\""+p.Key+"\"") {
		return "key span " + key + ", escaped " + strconv.FormatBool(e.KeyEscaped) + ", want " + strconv.Quote(p.Key)
	}
	if p.Type == "" && typ != "" || p.Type != "" && (e.TypeEscaped == (typ == "\""+p.Type+"\"")) {
		return "type span " + typ + ", escaped " + strconv.FormatBool(e.TypeEscaped) + ", want " + strconv.Quote(p.Type)
	}
	one := isp.AppendPoint(nil, &isp.Point{Key: "k", Value: p.Value})
	want := string(one[len(`{"key":"k","value":`) : len(one)-len(`,"quality":0,"timestamp":0}`)])
	if got := string(data[e.ValueStart:e.ValueEnd]); got != want {
		return "value span " + got + ", want " + want
	}
	if e.Quality != p.Quality {
		return "quality " + strconv.Itoa(e.Quality)
	}
	if rest := string(data[e.TimestampAt:e.End]); !strings.HasPrefix(rest, `,"timestamp":`+strconv.FormatInt(p.Timestamp, 10)) || rest[len(rest)-1] != '}' {
		return "rest " + rest
	}
	return ""
}

// Every batch the encoder writes is accepted, and is what decode+encode writes: the values a gateway publishes
// (floats of every form, float32 readings widened, the edges of int64, strings with every escape). Not a float
// -0: the encoder writes it "-0", which reads back as the Int 0 and is written "0", so SplitPoints declines it
// (TestSplitPointsDeclines, "minus zero").
func TestSplitPointsAcceptsTheEncoder(t *testing.T) {
	values := []isp.Value{isp.Null(), isp.Bool(true), isp.Bool(false), isp.Int(0), isp.Int(-1), isp.Int(math.MaxInt64),
		isp.Int(math.MinInt64), isp.Float(74.5), isp.Float(25.53), isp.Float(float64(float32(25.53))), isp.Float(-0.000001),
		isp.Float(1e-7), isp.Float(1.5e300), isp.Float(1e21), isp.Float(1e20), isp.Float(123456789012345.6),
		isp.Float(0.1 + 0.2), isp.Float(math.SmallestNonzeroFloat64), isp.Float(math.MaxFloat64),
		isp.Float(9223372036854775808), isp.Float(math.NaN()), isp.Float(math.Inf(-1)),
		isp.String(""), isp.String("a \"b\" \\ / \n\r\t\b\f \x00\x1f\x7f é € 😀 \u2028")}
	for i := 0; i < 200; i++ {
		values = append(values, isp.Float(20+float64(i)/10), isp.Float(float64(float32(float64(i)*1.37))))
	}
	var pts []isp.Point
	for i, v := range values {
		p := isp.Point{Key: "k" + strconv.Itoa(i), Value: v, Quality: i%3 - 1, Timestamp: int64(i) * 1751200001000000007}
		switch i % 4 {
		case 0:
			p.DeviceID, p.Type, p.Source = "plc-1", "float32", "modbus"
			p.Tags = []isp.Tag{{Key: "unit", Value: "°C"}, {Key: "", Value: ""}, {Key: "n\"ote", Value: "x\ny"}}
		case 1:
			p.DeviceID = "d"
		case 2:
			p.Tags = []isp.Tag{{Key: "a", Value: "1"}}
			p.Timestamp = -p.Timestamp
		}
		pts = append(pts, p)
	}
	data := isp.AppendBatch(nil, pts)
	els, ok := SplitPoints(data, nil)
	if !ok {
		for i := range pts { // name the point it refuses
			if _, ok := SplitPoints(isp.AppendBatch(nil, pts[i:i+1]), nil); !ok {
				t.Fatalf("refused the encoder's point %d: %s", i, isp.AppendPoint(nil, &pts[i]))
			}
		}
		t.Fatal("refused the encoder's batch")
	}
	if diff := sameAsDecodeEncode(data, els); diff != "" {
		t.Fatal(diff)
	}
	for i := range pts {
		e, ok := OnePoint(append(append([]byte(" \n"), isp.AppendPoint(nil, &pts[i])...), '\n'))
		if !ok || e.End-e.Start != len(isp.AppendPoint(nil, &pts[i])) {
			t.Fatalf("OnePoint refused the encoder's point %d", i)
		}
	}
}

// What the decoder reads but the encoder would write differently is declined, and so is what the decoder refuses.
func TestSplitPointsDeclines(t *testing.T) {
	const pre, post = `{"points":[`, `]}`
	good := `{"device_id":"d","key":"k","value":1.5,"type":"f","quality":1,"timestamp":5,"tags":{"u":"C"},"source":"s"}`
	if _, ok := SplitPoints([]byte(pre+good+post), nil); !ok {
		t.Fatal("the good point itself is refused")
	}
	for _, tc := range []struct{ name, point string }{
		{"space after a colon", strings.Replace(good, `"key":`, `"key": `, 1)},
		{"space before the close", strings.Replace(good, `"s"}`, `"s" }`, 1)},
		{"members reordered", `{"key":"k","device_id":"d","value":1,"quality":1,"timestamp":5}`},
		{"unknown member", `{"key":"k","value":1,"quality":1,"timestamp":5,"x":1}`},
		{"quality missing", `{"key":"k","value":1,"timestamp":5}`},
		{"timestamp missing", `{"key":"k","value":1,"quality":1}`},
		{"value missing", `{"key":"k","quality":1,"timestamp":5}`},
		{"empty device_id", `{"device_id":"","key":"k","value":1,"quality":1,"timestamp":5}`},
		{"escaped device_id", `{"device_id":"d\"","key":"k","value":1,"quality":1,"timestamp":5}`},
		{"empty key", `{"key":"","value":1,"quality":1,"timestamp":5}`},
		{"empty type", `{"key":"k","value":1,"type":"","quality":1,"timestamp":5}`},
		{"empty source", `{"key":"k","value":1,"quality":1,"timestamp":5,"source":""}`},
		{"empty tags", `{"key":"k","value":1,"quality":1,"timestamp":5,"tags":{}}`},
		{"null tags", `{"key":"k","value":1,"quality":1,"timestamp":5,"tags":null}`},
		{"duplicate tag", `{"key":"k","value":1,"quality":1,"timestamp":5,"tags":{"a":"1","a":"2"}}`},
		{"tag not a string", `{"key":"k","value":1,"quality":1,"timestamp":5,"tags":{"a":1}}`},
		{"escaped slash", `{"key":"k\/","value":1,"quality":1,"timestamp":5}`},
		{"needless \\u", `{"key":"\u0041","value":1,"quality":1,"timestamp":5}`},
		{"\\u for a short escape", `{"key":"\u000a","value":1,"quality":1,"timestamp":5}`},
		{"upper-case hex", `{"key":"\u001F","value":1,"quality":1,"timestamp":5}`},
		{"surrogate pair", `{"key":"\ud83d\ude00","value":1,"quality":1,"timestamp":5}`},
		{"invalid UTF-8", "{\"key\":\"\xff\",\"value\":1,\"quality\":1,\"timestamp\":5}"},
		{"raw control byte", "{\"key\":\"\x01\",\"value\":1,\"quality\":1,\"timestamp\":5}"},
		{"whole float", `{"key":"k","value":25.0,"quality":1,"timestamp":5}`},
		{"trailing zero", `{"key":"k","value":25.50,"quality":1,"timestamp":5}`},
		{"not shortest", `{"key":"k","value":0.30000000000000001,"quality":1,"timestamp":5}`},
		{"exponent not needed", `{"key":"k","value":2.5e1,"quality":1,"timestamp":5}`},
		{"upper-case exponent", `{"key":"k","value":1E-7,"quality":1,"timestamp":5}`},
		{"small in f form", `{"key":"k","value":0.0000001,"quality":1,"timestamp":5}`},
		{"minus zero", `{"key":"k","value":-0,"quality":1,"timestamp":5}`},
		{"minus zero float", `{"key":"k","value":-0.0,"quality":1,"timestamp":5}`},
		{"leading zero", `{"key":"k","value":01,"quality":1,"timestamp":5}`},
		{"plus sign", `{"key":"k","value":+1,"quality":1,"timestamp":5}`},
		{"beyond float64", `{"key":"k","value":1e999,"quality":1,"timestamp":5}`},
		{"big integer not shortest", `{"key":"k","value":9223372036854775809,"quality":1,"timestamp":5}`},
		{"quality beyond int32", `{"key":"k","value":1,"quality":2147483648,"timestamp":5}`},
		{"quality float", `{"key":"k","value":1,"quality":1.0,"timestamp":5}`},
		{"timestamp beyond int64", `{"key":"k","value":1,"quality":1,"timestamp":9223372036854775808}`},
		{"timestamp minus zero", `{"key":"k","value":1,"quality":1,"timestamp":-0}`},
		{"truncated", good[:len(good)-1]},
		{"literal cut", `{"key":"k","value":nul`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(pre + good + "," + tc.point + post)
			if els, ok := SplitPoints(data, nil); ok || len(els) != 0 {
				t.Fatalf("got ok=%v with %d points, want declined: %s", ok, len(els), tc.point)
			}
			if _, ok := OnePoint([]byte(tc.point)); ok {
				t.Fatalf("OnePoint accepted %s", tc.point)
			}
		})
	}
	var tags strings.Builder
	for i := range isp.MaxTags + 1 {
		tags.WriteString(`,"t` + strconv.Itoa(i) + `":""`)
	}
	many := `{"key":"k","value":1,"quality":1,"timestamp":5,"tags":{` + tags.String()[1:] + `}}`
	if _, ok := OnePoint([]byte(many)); ok {
		t.Fatalf("accepted %d tags (the decoder takes at most %d)", isp.MaxTags+1, isp.MaxTags)
	}
}

func TestSplitPointsAllocatesNothing(t *testing.T) {
	pts := testPoints(30)
	for i := range pts {
		pts[i].Value = isp.Float(float64(float32(float64(i) * 1.37))) // the parsing tier too
	}
	data := isp.AppendBatch(nil, pts)
	els := make([]Element, 0, 30)
	if n := testing.AllocsPerRun(100, func() { els, _ = SplitPoints(data, els) }); n != 0 {
		t.Fatalf("got %v allocations per batch, want 0", n)
	}
	if len(els) != 30 {
		t.Fatalf("got %d points, want 30", len(els))
	}
}

// FuzzSplitPoints: on any input, SplitPoints either declines or gives exactly what decoding and encoding again
// gives; it never panics.
func FuzzSplitPoints(f *testing.F) {
	f.Add(isp.AppendBatch(nil, testPoints(2)))
	f.Add([]byte(`{"points":[{"key":"k","value":25.530000686645508,"quality":1,"timestamp":5}]}`))
	f.Add([]byte(`{"points":[{"key":"k","value":1e-7,"quality":-1,"timestamp":-5,"tags":{"":"\u001f"}}]}`))
	f.Add([]byte(`{"points":[{"device_id":"d","key":"k","value":"\"","type":"t","quality":0,"timestamp":0,"source":"s"}]}`))
	f.Add([]byte(` { "points" : [ {"key":"k","value":100000000000000000000,"quality":1,"timestamp":5} ] } `))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		els, ok := SplitPoints(data, nil)
		if !ok {
			if len(els) != 0 {
				t.Fatal("declined with points")
			}
			return
		}
		if diff := sameAsDecodeEncode(data, els); diff != "" {
			t.Fatal(diff)
		}
	})
}

// FuzzOnePoint: the same for a bare point.
func FuzzOnePoint(f *testing.F) {
	f.Add(isp.AppendPoint(nil, &testPoints(1)[0]))
	f.Add([]byte(`{"key":"k","value":0.000001,"quality":1,"timestamp":5}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, ok := OnePoint(data)
		if !ok {
			return
		}
		p, err := isp.DecodePoint(data)
		if err != nil {
			t.Fatalf("the decoder refuses what OnePoint accepted: %v", err)
		}
		if got, want := data[e.Start:e.End], isp.AppendPoint(nil, &p); !bytes.Equal(got, want) {
			t.Fatalf("got %s, want %s", got, want)
		}
		if string(data[e.DeviceStart:e.DeviceEnd]) != p.DeviceID || e.Timestamp != p.Timestamp {
			t.Fatalf("device or timestamp differ from %+v", p)
		}
	})
}
