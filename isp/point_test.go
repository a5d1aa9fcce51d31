package isp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func TestValueAccessors(t *testing.T) {
	type want struct {
		f      float64
		fOK    bool
		i      int64
		iOK    bool
		b      bool
		bOK    bool
		s      string
		sOK    bool
		text   string
		any    any
		kind   Kind
		kindTx string
	}
	tests := []struct {
		name string
		v    Value
		want want
	}{
		{"float", Float(25.5), want{25.5, true, 0, false, true, true, "", false, "25.5", 25.5, KindFloat, "float"}},
		{"whole float", Float(25), want{25, true, 25, true, true, true, "", false, "25", 25.0, KindFloat, "float"}},
		{"float beyond int64", Float(1e19), want{1e19, true, 0, false, true, true, "", false, "1e+19", 1e19, KindFloat, "float"}},
		{"float zero", Float(0), want{0, true, 0, true, false, true, "", false, "0", 0.0, KindFloat, "float"}},
		{"int", Int(-42), want{-42, true, -42, true, true, true, "", false, "-42", int64(-42), KindInt, "int"}},
		{"int zero", Int(0), want{0, true, 0, true, false, true, "", false, "0", int64(0), KindInt, "int"}},
		{"true", Bool(true), want{1, true, 1, true, true, true, "", false, "true", true, KindBool, "bool"}},
		{"false", Bool(false), want{0, true, 0, true, false, true, "", false, "false", false, KindBool, "bool"}},
		{"string", String("42"), want{0, false, 0, false, false, false, "42", true, `"42"`, "42", KindString, "string"}},
		{"null", Null(), want{0, false, 0, false, false, false, "", false, "null", nil, KindNull, "null"}},
		{"zero value", Value{}, want{0, false, 0, false, false, false, "", false, "null", nil, KindNull, "null"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, w := tc.v, tc.want
			if got := v.Kind(); got != w.kind || got.String() != w.kindTx {
				t.Errorf("Kind: got %v, want %v", got, w.kind)
			}
			if f, ok := v.Float(); f != w.f || ok != w.fOK {
				t.Errorf("Float: got %v, %v, want %v, %v", f, ok, w.f, w.fOK)
			}
			if i, ok := v.Int(); i != w.i || ok != w.iOK {
				t.Errorf("Int: got %v, %v, want %v, %v", i, ok, w.i, w.iOK)
			}
			if b, ok := v.Bool(); b != w.b || ok != w.bOK {
				t.Errorf("Bool: got %v, %v, want %v, %v", b, ok, w.b, w.bOK)
			}
			if s, ok := v.Str(); s != w.s || ok != w.sOK {
				t.Errorf("Str: got %q, %v, want %q, %v", s, ok, w.s, w.sOK)
			}
			if got := v.String(); got != w.text {
				t.Errorf("String: got %s, want %s", got, w.text)
			}
			if got := v.Any(); got != w.any {
				t.Errorf("Any: got %#v, want %#v", got, w.any)
			}
		})
	}
	if _, ok := Float(math.NaN()).Bool(); ok {
		t.Errorf("NaN.Bool: got ok, want not ok")
	}
	if i, ok := Float(-(1 << 63)).Int(); !ok || i != math.MinInt64 {
		t.Errorf("Float(-2^63).Int: got %d, %v, want %d, true", i, ok, int64(math.MinInt64))
	}
	if _, ok := Float(1 << 63).Int(); ok {
		t.Errorf("Float(2^63).Int: got ok, want not ok")
	}
}

func TestPointTag(t *testing.T) {
	p := Point{Tags: []Tag{{"unit", "°C"}, {"line", "A"}}}
	if v, ok := p.Tag("line"); !ok || v != "A" {
		t.Errorf(`Tag("line"): got %q, %v, want "A", true`, v, ok)
	}
	if v, ok := p.Tag("site"); ok {
		t.Errorf(`Tag("site"): got %q, true, want not found`, v)
	}
}

// The seed's DATA point, as AppendPoint writes it.
func TestAppendPointGolden(t *testing.T) {
	tests := []struct {
		name string
		p    Point
		want string
	}{
		{
			name: "seed point",
			p: Point{Key: "temperature", Source: "my-sidecar", Timestamp: 1751200001000000000, Value: Float(25.5),
				Type: "float32", Quality: QualityGood, Tags: []Tag{{"unit", "°C"}, {"device", "sensor-01"}}},
			want: `{"key":"temperature","value":25.5,"type":"float32","quality":1,"timestamp":1751200001000000000,` +
				`"tags":{"unit":"°C","device":"sensor-01"},"source":"my-sidecar"}`,
		},
		{
			name: "minimal",
			p:    Point{Key: "k"},
			want: `{"key":"k","value":null,"quality":0,"timestamp":0}`,
		},
		{
			name: "all fields",
			p: Point{DeviceID: "d1", Key: "k", Value: Int(-7), Type: "int16", Quality: QualityUnknown, Timestamp: 5,
				Tags: []Tag{{"a", "1"}}, Source: "s"},
			want: `{"device_id":"d1","key":"k","value":-7,"type":"int16","quality":-1,"timestamp":5,"tags":{"a":"1"},"source":"s"}`,
		},
		{"NaN is null", Point{Key: "k", Value: Float(math.NaN())}, `{"key":"k","value":null,"quality":0,"timestamp":0}`},
		{"+Inf is null", Point{Key: "k", Value: Float(math.Inf(1))}, `{"key":"k","value":null,"quality":0,"timestamp":0}`},
		{"whole float", Point{Key: "k", Value: Float(25)}, `{"key":"k","value":25,"quality":0,"timestamp":0}`},
		{"large float", Point{Key: "k", Value: Float(1e21)}, `{"key":"k","value":1e+21,"quality":0,"timestamp":0}`},
		{"bool", Point{Key: "k", Value: Bool(false)}, `{"key":"k","value":false,"quality":0,"timestamp":0}`},
		{
			name: "escapes",
			p:    Point{Key: "a\"b\\c\n\r\t\b\f\x00\x1f\x7f/<>&", Value: String("\xff\xfeok\xe2\x82")},
			want: `{"key":"a\"b\\c\n\r\t\b\f\u0000\u001f` + "\x7f" + `/<>&","value":"` + "\uFFFD\uFFFDok\uFFFD\uFFFD" + `","quality":0,"timestamp":0}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := string(AppendPoint(nil, &tc.p))
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
	if got, want := string(AppendBatch([]byte("x"), nil)), `x{"points":[]}`; got != want {
		t.Errorf("empty batch: got %s, want %s", got, want)
	}
}

var roundTripPoints = []struct {
	name string
	p    Point
}{
	{"float", Point{DeviceID: "plc-1", Key: "temperature", Value: Float(25.5), Type: "float32", Quality: QualityGood,
		Timestamp: 1751200001000000000, Tags: []Tag{{"unit", "°C"}, {"device", "sensor-01"}}, Source: "modbus"}},
	{"tiny float", Point{Key: "k", Value: Float(5e-324)}},
	{"negative float", Point{Key: "k", Value: Float(-1.7976931348623157e308)}},
	{"large float, plain digits", Point{Key: "k", Value: Float(1.2345678e+06)}},
	{"float with exponent", Point{Key: "k", Value: Float(1.5e+22)}},
	{"int", Point{Key: "k", Value: Int(42), Type: "int16"}},
	{"min int", Point{Key: "k", Value: Int(math.MinInt64)}},
	{"max int", Point{Key: "k", Value: Int(math.MaxInt64)}},
	{"true", Point{Key: "coil", Value: Bool(true), Type: "bool"}},
	{"false", Point{Key: "coil", Value: Bool(false)}},
	{"string", Point{Key: "state", Value: String("running"), Type: "string"}},
	{"empty string", Point{Key: "state", Value: String("")}},
	{"null", Point{Key: "k", Value: Null(), Quality: QualityBad}},
	{"unknown quality", Point{Key: "k", Quality: QualityUnknown, Timestamp: -1}},
	{"escapes", Point{Key: "quote\"back\\slash", Value: String("line\nbreak\ttab\x00nul\x1bctl/\u2028"),
		Tags: []Tag{{"a\"b", "c\\d"}}, Source: "\r\n"}},
	{"unicode", Point{DeviceID: "設備-1", Key: "温度", Value: String("25 °C 🌡"), Tags: []Tag{{"单位", "℃"}, {"emoji", "😀"}}}},
	{"tags order", Point{Key: "k", Tags: []Tag{{"z", "1"}, {"a", "2"}, {"m", "3"}, {"b", ""}}}},
	{"empty optionals", Point{Key: "k", Quality: QualityGood}},
	{"long strings", Point{Key: strings.Repeat("k", 100), Source: strings.Repeat("é", 100), Tags: []Tag{{strings.Repeat("t", 70), strings.Repeat("v", 70)}}}},
}

func TestRoundTrip(t *testing.T) {
	var d Decoder
	for _, tc := range roundTripPoints {
		t.Run(tc.name, func(t *testing.T) {
			data := AppendPoint(nil, &tc.p)
			if !json.Valid(data) {
				t.Fatalf("not valid JSON: %s", data)
			}
			objs, err := jsonObjects(data, false)
			if err != nil {
				t.Fatalf("encoding/json: %v", err)
			}
			if err := agreesWithJSON(&tc.p, objs[0]); err != nil {
				t.Errorf("encoding/json reads %s differently: %v", data, err)
			}
			var got Point
			if err := d.DecodePoint(data, &got); err != nil {
				t.Fatalf("DecodePoint(%s): %v", data, err)
			}
			if err := samePoint(&got, &tc.p); err != nil {
				t.Errorf("DecodePoint(%s): got != want: %v", data, err)
			}
			if got.Value.Kind() != tc.p.Value.Kind() {
				t.Errorf("value kind: got %s, want %s", got.Value.Kind(), tc.p.Value.Kind())
			}
		})
	}
	t.Run("batch", func(t *testing.T) {
		pts := make([]Point, len(roundTripPoints))
		for i := range roundTripPoints {
			pts[i] = roundTripPoints[i].p
		}
		data := AppendBatch(nil, pts)
		objs, err := jsonObjects(data, true)
		if err != nil || len(objs) != len(pts) {
			t.Fatalf("encoding/json: %d objects, %v; want %d", len(objs), err, len(pts))
		}
		got, err := d.DecodeBatch(data, nil)
		if err != nil {
			t.Fatalf("DecodeBatch: %v", err)
		}
		if len(got) != len(pts) {
			t.Fatalf("got %d points, want %d", len(got), len(pts))
		}
		for i := range pts {
			if err := samePoint(&got[i], &pts[i]); err != nil {
				t.Errorf("point %d: %v", i, err)
			}
			if err := agreesWithJSON(&pts[i], objs[i]); err != nil {
				t.Errorf("point %d: %v", i, err)
			}
		}
	})
}

// Inputs our encoder never writes, decoded by us and by encoding/json: both must read the same points.
func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	points := []string{
		`{"key":"k"}`,
		` { "key" : "k" , "value" : 1.5 } `,
		"\t\n\r{\"key\":\"k\"}\n",
		`{"key":"k","value":-0}`,
		`{"key":"k","value":-0.0}`,
		`{"key":"k","value":0.000}`,
		`{"key":"k","value":1E2}`,
		`{"key":"k","value":1e-400}`,
		`{"key":"k","value":99999999999999999999}`,
		`{"key":"k","value":-9223372036854775808}`,
		`{"key":"k","value":9223372036854775807}`,
		`{"key":"k","value":9223372036854775808}`,
		`{"key":"k","value":-9223372036854775809}`,
		`{"key":"k","value":1.7976931348623157e308}`,
		`{"key":"k","value":"\u00e9\u4e2d\ud83d\ude00\/\"\\\b\f\n\r\t"}`,
		`{"key":"k","value":"\ud800"}`,
		`{"key":"k","value":"\udc00\ud800x"}`,
		`{"key":"k","value":"\ud800\ud800\udc00"}`,
		`{"key":"k","value":"\uD83D\uDE00"}`,
		`{"key":"\u006b"}`,
		`{"k\u0065y":"k"}`,
		`{"key":"a","key":"b"}`,
		`{"key":"","key":"b"}`,
		`{"key":"k","quality":5,"quality":0}`,
		`{"key":"k","tags":{"a":"1","b":"2","a":"3"}}`,
		`{"key":"k","tags":{"a":"1"},"tags":{"b":"2"}}`,
		`{"key":"k","tags":null}`,
		`{"key":"k","tags":{}}`,
		`{"key":"k","value":true,"quality":-1,"timestamp":-5}`,
		`{"key":"k","timestamp":0}`,
		`{"key":"k","KEY":"x","Key":"y"}`,
		`{"key":"k","extra":{"a":[1,2,{"b":null}],"c":"\u0041"},"more":[],"n":-1.5e-3,"t":true,"f":false,"z":null}`,
		`{"device_id":"d","key":"k","value":"v","type":"string","quality":1,"timestamp":1,"tags":{"unit":"°C"},"source":"s"}`,
		`{"key":"k","tags":{"":""}}`,
		`{"key":"k","value":"\u0000"}`,
	}
	batches := []string{
		`{"points":[]}`,
		`{"points":null}`,
		`{"points":[{"key":"a"},{"key":"b","value":2}]}`,
		`{"type":"DATA","points":[{"key":"a"}],"extra":{"x":[1]}}`,
		`{"points":[{"key":"a"}],"points":[{"key":"b"},{"key":"c"}]}`,
		` { "points" : [ { "key" : "a" } , { "key" : "b" } ] } `,
	}
	check := func(t *testing.T, input string, batch bool) {
		t.Helper()
		if !json.Valid([]byte(input)) {
			t.Fatalf("test input is not valid JSON: %s", input)
		}
		var d Decoder
		var got []Point
		var err error
		if batch {
			got, err = d.DecodeBatch([]byte(input), nil)
		} else {
			got = make([]Point, 1)
			err = d.DecodePoint([]byte(input), &got[0])
		}
		if err != nil {
			t.Fatalf("decode %s: %v", input, err)
		}
		objs, err := jsonObjects([]byte(input), batch)
		if err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		if len(objs) != len(got) {
			t.Fatalf("got %d points, encoding/json %d", len(got), len(objs))
		}
		for i := range got {
			if err := agreesWithJSON(&got[i], objs[i]); err != nil {
				t.Errorf("%s: point %d: %v", input, i, err)
			}
		}
	}
	for _, in := range points {
		t.Run(in, func(t *testing.T) { check(t, in, false) })
	}
	for _, in := range batches {
		t.Run(in, func(t *testing.T) { check(t, in, true) })
	}
}

func TestDecodeNumbers(t *testing.T) {
	tests := []struct {
		in   string
		want Value
	}{
		{"0", Int(0)},
		{"-0", Int(0)},
		{"42", Int(42)},
		{"-9223372036854775808", Int(math.MinInt64)},
		{"9223372036854775807", Int(math.MaxInt64)},
		{"9223372036854775808", Float(9223372036854775808)},
		{"99999999999999999999", Float(1e20)},
		{"-0.0", Float(math.Copysign(0, -1))},
		{"25.5", Float(25.5)},
		{"25.0", Float(25)},
		{"1e2", Float(100)},
		{"1E+2", Float(100)},
		{"1e-2", Float(0.01)},
		{"1e-400", Float(0)},
		{"1.7976931348623157e308", Float(math.MaxFloat64)},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			p, err := DecodePoint([]byte(`{"key":"k","value":` + tc.in + `}`))
			if err != nil {
				t.Fatalf("got error %v, want %s", err, tc.want)
			}
			if p.Value != tc.want {
				t.Errorf("got %s (%s), want %s (%s)", p.Value, p.Value.Kind(), tc.want, tc.want.Kind())
			}
		})
	}
}

func TestDecodeDefaults(t *testing.T) {
	p, err := DecodePoint([]byte(`{"key":"temp","value":25.5}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Point{Key: "temp", Value: Float(25.5), Quality: QualityGood}
	if err := samePoint(&p, &want); err != nil {
		t.Errorf("got %+v, want %+v: %v", p, want, err)
	}
}

func TestDecodeErrors(t *testing.T) {
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	manyTags := func(n int) string {
		var b strings.Builder
		b.WriteString(`{"key":"k","tags":{`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"t%d":"v"`, i)
		}
		b.WriteString("}}")
		return b.String()
	}
	tests := []struct {
		name   string
		in     string
		batch  bool
		want   error
		field  string
		point  int
		offset int // -1: do not check
	}{
		{"empty", ``, false, ErrSyntax, "", -1, 0},
		{"only space", "  \n", false, ErrSyntax, "", -1, 3},
		{"not an object", `[1]`, false, ErrType, "", -1, 0},
		{"string at top", `"key"`, false, ErrType, "", -1, 0},
		{"garbage", `x`, false, ErrSyntax, "", -1, 0},
		{"missing key", `{"value":1}`, false, ErrMissing, "key", -1, 0},
		{"empty object", `{}`, false, ErrMissing, "key", -1, 0},
		{"empty key", `{"key":""}`, false, ErrMissing, "key", -1, 7},
		{"missing quote", `{"key:"k"}`, false, ErrSyntax, "", -1, -1},
		{"unterminated string", `{"key":"k}`, false, ErrSyntax, "key", -1, 10},
		{"bad escape", `{"key":"a\qb"}`, false, ErrSyntax, "key", -1, 9},
		{"short unicode escape", `{"key":"\u12"}`, false, ErrSyntax, "key", -1, 8},
		{"bad unicode escape", `{"key":"\u12G4"}`, false, ErrSyntax, "key", -1, 8},
		{"raw newline in string", "{\"key\":\"a\nb\"}", false, ErrSyntax, "key", -1, 9},
		{"NUL in string", "{\"key\":\"a\x00b\"}", false, ErrSyntax, "key", -1, 9},
		{"NUL outside string", "{\"key\":\"k\"\x00}", false, ErrSyntax, "", -1, 10},
		{"NUL after object", "{\"key\":\"k\"}\x00", false, ErrSyntax, "", -1, 11},
		{"invalid UTF-8", "{\"key\":\"a\xffb\"}", false, ErrSyntax, "key", -1, 9},
		{"invalid UTF-8 before escape", "{\"key\":\"\xc3\\n\"}", false, ErrSyntax, "key", -1, 8},
		{"invalid UTF-8 after escape", "{\"key\":\"\\n\xc3\"}", false, ErrSyntax, "key", -1, 10},
		{"invalid UTF-8 in name", "{\"k\xff\":1,\"key\":\"k\"}", false, ErrSyntax, "", -1, 3},
		{"surrogate encoded in UTF-8", "{\"key\":\"\xed\xa0\x80\"}", false, ErrSyntax, "key", -1, 8},
		{"trailing comma", `{"key":"k",}`, false, ErrSyntax, "", -1, 11},
		{"missing colon", `{"key" "k"}`, false, ErrSyntax, "", -1, 7},
		{"missing comma", `{"key":"k" "value":1}`, false, ErrSyntax, "", -1, 11},
		{"trailing garbage", `{"key":"k"}x`, false, ErrSyntax, "", -1, 11},
		{"two objects", `{"key":"k"}{"key":"k"}`, false, ErrSyntax, "", -1, 11},
		{"single quotes", `{'key':'k'}`, false, ErrSyntax, "", -1, 1},
		{"leading zero", `{"key":"k","value":01}`, false, ErrSyntax, "value", -1, 19},
		{"leading zero negative", `{"key":"k","value":-01}`, false, ErrSyntax, "value", -1, 19},
		{"plus sign", `{"key":"k","value":+1}`, false, ErrSyntax, "value", -1, 19},
		{"bare dot", `{"key":"k","value":.5}`, false, ErrSyntax, "value", -1, 19},
		{"trailing dot", `{"key":"k","value":1.}`, false, ErrSyntax, "value", -1, 21},
		{"empty exponent", `{"key":"k","value":1e}`, false, ErrSyntax, "value", -1, 21},
		{"hex number", `{"key":"k","value":0x10}`, false, ErrSyntax, "", -1, 20},
		{"NaN literal", `{"key":"k","value":NaN}`, false, ErrSyntax, "value", -1, 19},
		{"Infinity", `{"key":"k","value":Infinity}`, false, ErrSyntax, "value", -1, 19},
		{"bad literal", `{"key":"k","value":tru}`, false, ErrSyntax, "value", -1, 22},
		{"misspelt literal", `{"key":"k","value":nul1}`, false, ErrSyntax, "value", -1, 22},
		{"1e400", `{"key":"k","value":1e400}`, false, ErrRange, "value", -1, 19},
		{"-1e400", `{"key":"k","value":-1e400}`, false, ErrRange, "value", -1, 19},
		{"huge integer", `{"key":"k","value":1` + strings.Repeat("0", 400) + `}`, false, ErrRange, "value", -1, 19},
		{"key not a string", `{"key":1}`, false, ErrType, "key", -1, 7},
		{"key null", `{"key":null}`, false, ErrType, "key", -1, 7},
		{"device_id number", `{"key":"k","device_id":7}`, false, ErrType, "device_id", -1, 23},
		{"type bool", `{"key":"k","type":true}`, false, ErrType, "type", -1, 18},
		{"source object", `{"key":"k","source":{}}`, false, ErrType, "source", -1, 20},
		{"value object", `{"key":"k","value":{"a":1}}`, false, ErrType, "value", -1, 19},
		{"value array", `{"key":"k","value":[1]}`, false, ErrType, "value", -1, 19},
		{"quality float", `{"key":"k","quality":1.0}`, false, ErrType, "quality", -1, 21},
		{"quality string", `{"key":"k","quality":"1"}`, false, ErrType, "quality", -1, 21},
		{"quality null", `{"key":"k","quality":null}`, false, ErrType, "quality", -1, 21},
		{"quality too large", `{"key":"k","quality":99999999999}`, false, ErrRange, "quality", -1, 21},
		{"quality too small", `{"key":"k","quality":-99999999999}`, false, ErrRange, "quality", -1, 21},
		{"timestamp float", `{"key":"k","timestamp":1.7e18}`, false, ErrType, "timestamp", -1, 23},
		{"timestamp string", `{"key":"k","timestamp":"2025-06-29"}`, false, ErrType, "timestamp", -1, 23},
		{"timestamp beyond int64", `{"key":"k","timestamp":9223372036854775808}`, false, ErrRange, "timestamp", -1, 23},
		{"tags array", `{"key":"k","tags":["a"]}`, false, ErrType, "tags", -1, 18},
		{"tag value number", `{"key":"k","tags":{"a":1}}`, false, ErrType, "tags", -1, 23},
		{"tag value null", `{"key":"k","tags":{"a":null}}`, false, ErrType, "tags", -1, 23},
		{"too many tags", manyTags(MaxTags + 1), false, ErrTooLarge, "tags", -1, -1},
		{"unknown field invalid", `{"key":"k","x":[1,}`, false, ErrSyntax, "x", -1, 18},
		{"unknown field invalid UTF-8", "{\"key\":\"k\",\"x\":{\"a\":\"\xff\"}}", false, ErrSyntax, "x", -1, 21},
		{"nesting 10000 in unknown field", `{"key":"k","x":` + deep + `}`, false, ErrTooDeep, "x", -1, -1},
		{"nesting 10000 at top", deep, false, ErrType, "", -1, 0},
		{"nesting 10000 in batch", `{"x":` + deep + `}`, true, ErrTooDeep, "x", -1, -1},
		{"batch without points", `{"key":"k"}`, true, ErrMissing, "points", -1, 0},
		{"batch points object", `{"points":{}}`, true, ErrType, "points", -1, 10},
		{"batch point not object", `{"points":[{"key":"a"},1]}`, true, ErrType, "points", 1, 23},
		{"batch point error", `{"points":[{"key":"a"},{"key":"b","quality":"x"}]}`, true, ErrType, "quality", 1, 44},
		{"batch point missing key", `{"points":[{"key":"a"},{}]}`, true, ErrMissing, "key", 1, 23},
		{"batch trailing comma", `{"points":[{"key":"a"},]}`, true, ErrSyntax, "points", 1, 23},
		{"batch missing bracket", `{"points":[{"key":"a"}}`, true, ErrSyntax, "points", -1, 22},
		{"batch trailing garbage", `{"points":[]}]`, true, ErrSyntax, "", -1, 13},
		{"batch is an array", `[{"key":"a"}]`, true, ErrType, "", -1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d Decoder
			var err error
			if tc.batch {
				var pts []Point
				pts, err = d.DecodeBatch([]byte(tc.in), nil)
				if len(pts) != 0 {
					t.Errorf("got %d points with the error, want none", len(pts))
				}
			} else {
				p := Point{Key: "stale", Tags: []Tag{{"a", "b"}}}
				err = d.DecodePoint([]byte(tc.in), &p)
				if p.Key != "" || len(p.Tags) != 0 {
					t.Errorf("got point %+v with the error, want it cleared", p)
				}
			}
			if err == nil {
				t.Fatalf("got no error, want %v", tc.want)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("got %v, want errors.Is %v", err, tc.want)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("got %T, want *DecodeError", err)
			}
			if de.Field != tc.field {
				t.Errorf("Field: got %q, want %q (%v)", de.Field, tc.field, err)
			}
			if de.Point != tc.point {
				t.Errorf("Point: got %d, want %d (%v)", de.Point, tc.point, err)
			}
			if tc.offset >= 0 && de.Offset != tc.offset {
				t.Errorf("Offset: got %d, want %d (%v)", de.Offset, tc.offset, err)
			}
			if de.Offset < 0 || de.Offset > len(tc.in) {
				t.Errorf("Offset %d outside the input of %d bytes", de.Offset, len(tc.in))
			}
			if json.Valid([]byte(tc.in)) && errors.Is(err, ErrSyntax) && !strings.Contains(tc.name, "UTF-8") {
				t.Errorf("syntax error %v on valid JSON", err)
			}
		})
	}
}

func TestDecodeErrorMessage(t *testing.T) {
	in := `{"points":[{"key":"a"},{"key":"b"},{"key":"c"},{"key":"d","quality":1.5}]}`
	_, err := DecodeBatch([]byte(in))
	want := `isp: point 3: field "quality": expected integer, got 1.5 at offset 68`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	_, err = DecodePoint([]byte(`{"value":1}`))
	want = `isp: field "key": missing required field at offset 0`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	_, err = DecodePoint([]byte(`{"key":"k"`))
	want = `isp: unexpected end of input, want ',' or '}' at offset 10`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

// Every proper prefix of a valid batch or point is an error, never a panic or a partial result.
func TestDecodeTruncated(t *testing.T) {
	pts := make([]Point, len(roundTripPoints))
	for i := range roundTripPoints {
		pts[i] = roundTripPoints[i].p
	}
	batch := AppendBatch(nil, pts)
	batch = append(batch[:len(batch)-2], `],"extra":{"a":[1.5e3,true,null,"\u00e9"]}}`...)
	var d Decoder
	if _, err := d.DecodeBatch(batch, nil); err != nil {
		t.Fatalf("whole batch: %v", err)
	}
	for n := range len(batch) {
		got, err := d.DecodeBatch(batch[:n], nil)
		if err == nil || len(got) != 0 {
			t.Fatalf("prefix of %d bytes: got %d points, %v; want an error", n, len(got), err)
		}
		if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrMissing) {
			t.Fatalf("prefix of %d bytes: got %v, want a syntax error", n, err)
		}
	}
	point := AppendPoint(nil, &roundTripPoints[0].p)
	for n := range len(point) {
		var p Point
		if err := d.DecodePoint(point[:n], &p); err == nil {
			t.Fatalf("prefix of %d bytes: got no error", n)
		}
	}
}

func TestDecodeLimits(t *testing.T) {
	t.Run("tags", func(t *testing.T) {
		tags := make([]Tag, MaxTags)
		for i := range tags {
			tags[i] = Tag{"t" + strconv.Itoa(i), "v"}
		}
		p := Point{Key: "k", Tags: tags}
		got, err := DecodePoint(AppendPoint(nil, &p))
		if err != nil || len(got.Tags) != MaxTags {
			t.Fatalf("%d tags: got %d, %v", MaxTags, len(got.Tags), err)
		}
		// Duplicates do not count against the limit.
		data := AppendPoint(nil, &p)
		data = append(data[:len(data)-1], `,"tags":{"a":"1","a":"2","a":"3"}}`...)
		if _, err := DecodePoint(data); err != nil {
			t.Errorf("duplicate tags: %v", err)
		}
		p.Tags = append(p.Tags, Tag{"one-more", "v"})
		if _, err := DecodePoint(AppendPoint(nil, &p)); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%d tags: got %v, want %v", MaxTags+1, err, ErrTooLarge)
		}
	})
	t.Run("points", func(t *testing.T) {
		if testing.Short() {
			t.Skip("100k points")
		}
		pts := make([]Point, MaxPointsPerBatch)
		for i := range pts {
			pts[i] = Point{Key: "k"}
		}
		var d Decoder
		got, err := d.DecodeBatch(AppendBatch(nil, pts), nil)
		if err != nil || len(got) != MaxPointsPerBatch {
			t.Fatalf("%d points: got %d, %v", MaxPointsPerBatch, len(got), err)
		}
		pts = append(pts, Point{Key: "k"})
		got, err = d.DecodeBatch(AppendBatch(nil, pts), got)
		if !errors.Is(err, ErrTooLarge) || len(got) != 0 {
			t.Errorf("%d points: got %d, %v; want %v", len(pts), len(got), err, ErrTooLarge)
		}
	})
	t.Run("depth", func(t *testing.T) {
		// The point object is level 1, so an unknown field may nest MaxDepth-1 levels.
		nest := func(n int) []byte {
			return []byte(`{"key":"k","x":` + strings.Repeat(`{"a":[`, n/2) + strings.Repeat(`]}`, n/2) + `}`)
		}
		if _, err := DecodePoint(nest(MaxDepth - 2)); err != nil {
			t.Errorf("depth %d: %v", MaxDepth-1, err)
		}
		if _, err := DecodePoint(nest(MaxDepth)); !errors.Is(err, ErrTooDeep) {
			t.Errorf("depth %d: got %v, want %v", MaxDepth+1, err, ErrTooDeep)
		}
	})
}

// A Decoder's table stays bounded however many distinct strings go through it.
func TestInternTableBounded(t *testing.T) {
	var d Decoder
	var p Point
	for i := range 3 * maxInterned {
		data := []byte(`{"key":"key-` + strconv.Itoa(i) + `"}`)
		if err := d.DecodePoint(data, &p); err != nil {
			t.Fatal(err)
		}
		if len(d.strs) > maxInterned {
			t.Fatalf("table holds %d strings, want at most %d", len(d.strs), maxInterned)
		}
		if want := "key-" + strconv.Itoa(i); p.Key != want {
			t.Fatalf("got key %q, want %q", p.Key, want)
		}
	}
}

// Decoded points must not alias the input: the caller reuses its buffer (a NATS message, a line) at once.
func TestDecodeDoesNotAliasInput(t *testing.T) {
	long := strings.Repeat("x", 100)
	data := []byte(`{"points":[{"device_id":"d","key":"` + long + `","value":"v` + long + `","tags":{"t":"` + long + `"},"source":"s"}]}`)
	var d Decoder
	pts, err := d.DecodeBatch(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] = '#'
	}
	if pts[0].Key != long || pts[0].Value.String() != `"v`+long+`"` || pts[0].Tags[0].Value != long {
		t.Errorf("point changed with its input: %+v", pts[0])
	}
}

// Passing the previous result back reuses the points and their tags, and leaves no stale fields behind.
func TestDecodeBatchReuse(t *testing.T) {
	var d Decoder
	first := []byte(`{"points":[{"device_id":"d","key":"a","value":1,"type":"int16","quality":0,"timestamp":9,"tags":{"x":"1","y":"2"},"source":"s"},{"key":"b"}]}`)
	second := []byte(`{"points":[{"key":"c"}]}`)
	pts, err := d.DecodeBatch(first, nil)
	if err != nil {
		t.Fatal(err)
	}
	tags := pts[0].Tags
	pts, err = d.DecodeBatch(second, pts)
	if err != nil {
		t.Fatal(err)
	}
	want := Point{Key: "c", Quality: QualityGood}
	if len(pts) != 1 {
		t.Fatalf("got %d points, want 1", len(pts))
	}
	if err := samePoint(&pts[0], &want); err != nil {
		t.Errorf("got %+v, want %+v: %v", pts[0], want, err)
	}
	pts, err = d.DecodeBatch(first, pts)
	if err != nil {
		t.Fatal(err)
	}
	if &pts[0].Tags[0] != &tags[0] {
		t.Errorf("tags were reallocated, want their capacity reused")
	}
}

func TestZeroAllocs(t *testing.T) {
	pts := benchBatch(100)
	buf := make([]byte, 0, 64<<10)
	if n := testing.AllocsPerRun(100, func() { buf = AppendBatch(buf[:0], pts) }); n != 0 {
		t.Errorf("AppendBatch: got %v allocations, want 0", n)
	}
	data := AppendBatch(nil, pts)
	var d Decoder
	out, err := d.DecodeBatch(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { out, err = d.DecodeBatch(data, out) }); n != 0 || err != nil {
		t.Errorf("warm DecodeBatch: got %v allocations (%v), want 0", n, err)
	}
	var p Point
	one := AppendPoint(nil, &pts[0])
	if err := d.DecodePoint(one, &p); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { err = d.DecodePoint(one, &p) }); n != 0 || err != nil {
		t.Errorf("warm DecodePoint: got %v allocations (%v), want 0", n, err)
	}
	// Escaped strings and float literals go through scratch buffers, and a repeated string value is reused.
	esc := []byte(`{"points":[{"device_id":"d\u002d1","key":"t\"emp","value":-1.25e-3,"tags":{"unit":"\u00b0C"}},` +
		`{"key":"state","value":"running","extra":[1,{"a":"b"}]},{"key":"big","value":1e300}]}`)
	if out, err = d.DecodeBatch(esc, out); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { out, err = d.DecodeBatch(esc, out) }); n != 0 || err != nil {
		t.Errorf("warm DecodeBatch with escapes: got %v allocations (%v), want 0", n, err)
	}
	if !bytes.Contains(AppendPoint(nil, &out[0]), []byte(`"device_id":"d-1","key":"t\"emp","value":-0.00125`)) {
		t.Errorf("escaped batch decoded wrong: %s", AppendPoint(nil, &out[0]))
	}
}

// The fast float path must give exactly what strconv gives, for the literals it takes.
func TestParseFloatExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	literals := []string{"0", "-0", "0.0", "-0.0", "1", "25.53", "1e22", "1e23", "9007199254740993", "9007199254740992",
		"4503599627370497.5", "0.1", "1.7976931348623157e308", "5e-324", "1E+2", "1e-22", "1e-23", "123456789012345678",
		"1234567890123456789", "12345678901234567890", "0.0000000000000000000001", "1e1000000", "-1e-1000000"}
	for range 100000 {
		var lit string
		switch r.IntN(3) {
		case 0:
			lit = strconv.FormatFloat(r.NormFloat64()*math.Pow(10, float64(r.IntN(40)-20)), 'f', r.IntN(10)-1, 64)
		case 1:
			lit = strconv.FormatFloat(r.Float64()*math.Pow(10, float64(r.IntN(60)-30)), 'e', r.IntN(20)-1, 64)
		default:
			lit = strconv.FormatInt(r.Int64N(1<<62), 10) + "." + strconv.Itoa(r.IntN(1000)) + "e" + strconv.Itoa(r.IntN(50)-25)
		}
		literals = append(literals, lit)
	}
	taken := 0
	for _, lit := range literals {
		want, err := strconv.ParseFloat(lit, 64)
		got, ok := parseFloatExact([]byte(lit))
		if !ok {
			continue
		}
		taken++
		if err != nil || math.Float64bits(got) != math.Float64bits(want) {
			t.Errorf("%s: got %v, strconv %v (%v)", lit, got, want, err)
		}
	}
	if taken < len(literals)/4 {
		t.Errorf("fast path took %d of %d literals, want most of them", taken, len(literals))
	}
}
