package batch

import (
	"strconv"
	"strings"
	"testing"

	"github.com/iotgw/iotgw/isp"
)

func testPoints(n int) []isp.Point {
	pts := make([]isp.Point, n)
	for i := range pts {
		pts[i] = isp.Point{DeviceID: "meter-1", Key: "r" + strconv.Itoa(i), Value: isp.Int(int64(i)), Type: "uint16",
			Quality: isp.QualityGood, Timestamp: 1751200001000000000, Source: "modbus",
			Tags: []isp.Tag{{Key: "unit", Value: "V"}, {Key: "note", Value: "a \"quoted\" {brace] \\ \n line"}}}
	}
	return pts
}

// The processor's batches print exactly the lines that decoding and encoding each point again printed.
func TestSplitSameLinesAsDecoding(t *testing.T) {
	for _, n := range []int{0, 1, 30, 200} {
		data := isp.AppendBatch(nil, testPoints(n))
		spans, ok := Split(data, nil)
		if !ok {
			t.Fatalf("n=%d: a batch of AppendBatch not split: %s", n, data)
		}
		pts, err := isp.DecodeBatch(data)
		if err != nil {
			t.Fatal(err)
		}
		if len(spans) != len(pts) {
			t.Fatalf("n=%d: got %d elements, want %d", n, len(spans), len(pts))
		}
		for i, s := range spans {
			if got, want := string(data[s[0]:s[1]]), string(isp.AppendPoint(nil, &pts[i])); got != want {
				t.Fatalf("n=%d element %d: got %s, want %s", n, i, got, want)
			}
		}
	}
}

func TestSplitRefuses(t *testing.T) {
	good := string(isp.AppendPoint(nil, &testPoints(1)[0]))
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"not an object", `[` + good + `]`},
		{"other member first", `{"x":1,"points":[` + good + `]}`},
		{"other member after", `{"points":[` + good + `],"x":1}`},
		{"escaped key", `{"p\u006fints":[` + good + `]}`},
		{"truncated", `{"points":[` + good[:len(good)/2]},
		{"truncated after element", `{"points":[` + good},
		{"no closing brace", `{"points":[` + good + `]`},
		{"trailing garbage", `{"points":[` + good + `]}x`},
		{"two batches", `{"points":[]}{"points":[]}`},
		{"element not an object", `{"points":[1]}`},
		{"element a string", `{"points":["{}"]}`},
		{"missing comma", `{"points":[{}{}]}`},
		{"trailing comma", `{"points":[{},]}`},
		{"raw newline in a string", `{"points":[{"key":"a` + "\n" + `b"}]}`},
		{"raw newline between members", `{"points":[{"key":"a",` + "\n" + `"value":1}]}`},
		{"escaped control byte", `{"points":[{"key":"a\` + "\n" + `"}]}`},
		{"unclosed string", `{"points":[{"key":"a}]}`},
		{"mismatched brackets", `{"points":[{"tags":[}]}]}`},
		{"closing bracket first", `{"points":[{]}]}`},
		{"too deep", `{"points":[` + strings.Repeat(`{"a":`, 9) + `1` + strings.Repeat(`}`, 9) + `]}`},
		{"NUL", "{\"points\":[{\"key\":\"\x00\"}]}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if spans, ok := Split([]byte(tc.in), nil); ok || len(spans) != 0 {
				t.Fatalf("got ok=%v with %d elements, want refused", ok, len(spans))
			}
		})
	}
}

func TestSplitAccepts(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"empty batch", `{"points":[]}`, nil},
		{"spaces", " {\n \"points\" : [ {\"a\":1} ,\t{\"b\":[2,{\"c\":\"}\"}]} ] }\n", []string{`{"a":1}`, `{"b":[2,{"c":"}"}]}`}},
		{"escaped quote", `{"points":[{"k":"a\"}b\\"}]}`, []string{`{"k":"a\"}b\\"}`}},
		{"eight deep", `{"points":[` + strings.Repeat(`{"a":`, 7) + `{}` + strings.Repeat(`}`, 7) + `]}`,
			[]string{strings.Repeat(`{"a":`, 7) + `{}` + strings.Repeat(`}`, 7)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spans, ok := Split([]byte(tc.in), nil)
			if !ok {
				t.Fatal("refused")
			}
			var got []string
			for _, s := range spans {
				got = append(got, tc.in[s[0]:s[1]])
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSplitAllocatesNothing(t *testing.T) {
	data := isp.AppendBatch(nil, testPoints(30))
	spans := make([][2]int, 0, 30)
	if n := testing.AllocsPerRun(100, func() { spans, _ = Split(data, spans) }); n != 0 {
		t.Fatalf("got %v allocations per batch, want 0", n)
	}
}

// FuzzSplit: whatever it accepts prints as one line per element, each an object, in order, covering the
// array; it never panics.
func FuzzSplit(f *testing.F) {
	f.Add(isp.AppendBatch(nil, testPoints(2)))
	f.Add([]byte(`{"points":[{"a":[1,{"b":"]"}]}]}`))
	f.Add([]byte(`{"points":[{"k":"\"}"},{}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		spans, ok := Split(data, nil)
		if !ok {
			if len(spans) != 0 {
				t.Fatal("refused with elements")
			}
			return
		}
		last := 0
		for _, s := range spans {
			if s[0] < last || s[1] <= s[0] || s[1] > len(data) {
				t.Fatalf("span %v out of order or range", s)
			}
			e := data[s[0]:s[1]]
			if e[0] != '{' || e[len(e)-1] != '}' {
				t.Fatalf("element %q is not an object", e)
			}
			for _, c := range e {
				if c < 0x20 {
					t.Fatalf("element %q has a control byte: it would not print as one line", e)
				}
			}
			last = s[1]
		}
		if pts, err := isp.DecodeBatch(data); err == nil && len(pts) != len(spans) {
			// The decoder may refuse what the splitter accepts (it checks meaning); when both accept, they agree.
			t.Fatalf("decoder saw %d points, splitter %d", len(pts), len(spans))
		}
	})
}

// BenchmarkPrintBatch: a poll's batch of 30 points split (Split for the console, SplitPoints with its proof for
// the file sink) against decoding and encoding it again
// (what the console did before); ns/point side by side in one run.
func BenchmarkPrintBatch(b *testing.B) {
	data := isp.AppendBatch(nil, testPoints(30))
	b.Run("split", func(b *testing.B) {
		var spans [][2]int
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			spans, _ = Split(data, spans)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*30), "ns/point")
	})
	b.Run("splitpoints", func(b *testing.B) {
		var els []Element
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			els, _ = SplitPoints(data, els)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*30), "ns/point")
	})
	b.Run("decode+encode", func(b *testing.B) {
		var dec isp.Decoder
		var pts []isp.Point
		var line []byte
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			pts, _ = dec.DecodeBatch(data, pts[:0])
			for j := range pts {
				line = isp.AppendPoint(line[:0], &pts[j])
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*30), "ns/point")
	})
}
