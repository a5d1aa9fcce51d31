package payload

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/isp"
)

var arrival = time.Unix(1700000000, 0)

func TestMap(t *testing.T) {
	tests := []struct {
		name     string
		spec     Spec
		payload  string
		topicKey string
		want     []isp.Point // Key, Value, Type, Timestamp
		err      error
	}{
		{name: "plain float", payload: " 21.5\n", topicKey: "temp",
			want: []isp.Point{{Key: "temp", Value: isp.Float(21.5), Type: "float64"}}},
		{name: "plain int", payload: "42", topicKey: "count", want: []isp.Point{{Key: "count", Value: isp.Int(42), Type: "int64"}}},
		{name: "plain bool", payload: "true", spec: Spec{Key: "on"}, want: []isp.Point{{Key: "on", Value: isp.Bool(true), Type: "bool"}}},
		{name: "plain as float", payload: "42", spec: Spec{Type: "float64"}, topicKey: "x", want: []isp.Point{{Key: "x", Value: isp.Float(42), Type: "float64"}}},
		{name: "plain string type", payload: "running", spec: Spec{Format: FormatValue, Type: "string"}, topicKey: "state",
			want: []isp.Point{{Key: "state", Value: isp.String("running"), Type: "string"}}},
		{name: "plain without key", payload: "1", err: ErrNoKey},
		{name: "plain not a number", payload: "hello", topicKey: "k", err: ErrNotPlain},
		{name: "plain NaN", payload: "NaN", topicKey: "k", err: ErrNotPlain},
		{name: "plain hex", payload: "0x10", topicKey: "k", err: ErrNotPlain},
		{name: "value format refuses JSON", spec: Spec{Format: FormatValue}, payload: `{"a":1}`, topicKey: "k", err: ErrNotPlain},
		{name: "plain int64 of a fraction", spec: Spec{Type: "int64"}, payload: "1.5", topicKey: "k", err: ErrType},
		{name: "empty", payload: "  ", topicKey: "k", err: ErrEmpty},
		{name: "flattened", payload: `{"temp": 21.5, "hum": 40, "ok": true, "name": "x", "n": null, "a": {"b": [1, 2]}}`,
			want: []isp.Point{
				{Key: "temp", Value: isp.Float(21.5), Type: "float64"}, {Key: "hum", Value: isp.Int(40), Type: "int64"},
				{Key: "ok", Value: isp.Bool(true), Type: "bool"}, {Key: "a_b_0", Value: isp.Int(1), Type: "int64"},
				{Key: "a_b_1", Value: isp.Int(2), Type: "int64"},
			}},
		{name: "flattened bad name", payload: `{"te mp": 1, "ok": 2}`, want: []isp.Point{{Key: "ok", Value: isp.Int(2), Type: "int64"}}, err: ErrBadKey},
		{name: "fields", spec: Spec{Fields: []Field{{Path: "data.temp", Type: "float64"}, {Path: "sensors.1.v", Key: "second"}, {Path: "state", Type: "string"}}},
			payload: `{"data": {"temp": 20, "x": 1}, "sensors": [{"v": 1}, {"v": 2.5}], "state": "run"}`,
			want: []isp.Point{
				{Key: "temp", Value: isp.Float(20), Type: "float64"}, {Key: "second", Value: isp.Float(2.5), Type: "float64"},
				{Key: "state", Value: isp.String("run"), Type: "string"},
			}},
		{name: "field missing", spec: Spec{Fields: []Field{{Path: "a"}, {Path: "b"}}}, payload: `{"a": 1}`,
			want: []isp.Point{{Key: "a", Value: isp.Int(1), Type: "int64"}}, err: ErrMissing},
		{name: "field wrong type", spec: Spec{Fields: []Field{{Path: "a", Type: "float64"}, {Path: "b"}}}, payload: `{"a": "hot", "b": 2}`,
			want: []isp.Point{{Key: "b", Value: isp.Int(2), Type: "int64"}}, err: ErrType},
		{name: "bool from 0/1", spec: Spec{Fields: []Field{{Path: "on", Type: "bool"}}}, payload: `{"on": 1}`,
			want: []isp.Point{{Key: "on", Value: isp.Bool(true), Type: "bool"}}},
		{name: "value field keyed by topic", spec: Spec{ValueField: "value", TimeField: "ts"}, topicKey: "temp",
			payload: `{"value": 3.25, "ts": 1700000001000}`,
			want:    []isp.Point{{Key: "temp", Value: isp.Float(3.25), Type: "float64", Timestamp: 1700000001000 * 1e6}}},
		{name: "value field missing", spec: Spec{ValueField: "value"}, topicKey: "temp", payload: `{"v": 1}`, err: ErrMissing},
		{name: "time rfc3339", spec: Spec{TimeField: "t", TimeFormat: "rfc3339"}, payload: `{"t": "2024-01-02T03:04:05.5Z", "x": 1}`,
			want: []isp.Point{{Key: "x", Value: isp.Int(1), Type: "int64", Timestamp: time.Date(2024, 1, 2, 3, 4, 5, 5e8, time.UTC).UnixNano()}}},
		{name: "time unix as string", spec: Spec{TimeField: "t", TimeFormat: "unix"}, payload: `{"t": "1700000002", "x": 1}`,
			want: []isp.Point{{Key: "x", Value: isp.Int(1), Type: "int64", Timestamp: 1700000002e9}}},
		{name: "time bad", spec: Spec{TimeField: "t"}, payload: `{"t": "soon", "x": 1}`,
			want: []isp.Point{{Key: "x", Value: isp.Int(1), Type: "int64"}}, err: ErrTime},
		{name: "time missing", spec: Spec{TimeField: "t"}, payload: `{"x": 1}`,
			want: []isp.Point{{Key: "x", Value: isp.Int(1), Type: "int64"}}, err: ErrTime},
		{name: "escaped names and strings", spec: Spec{Fields: []Field{{Path: "a\"b", Key: "ab"}, {Path: "s"}}}, payload: `{"a\u0022b": 1, "s": "x\ny"}`,
			want: []isp.Point{{Key: "ab", Value: isp.Int(1), Type: "int64"}, {Key: "s", Value: isp.String("x\ny"), Type: "string"}}},
		{name: "truncated", payload: `{"a": 1, "b": [1, 2`, err: ErrSyntax},
		{name: "trailing garbage", payload: `{"a": 1} x`, err: ErrSyntax},
		{name: "trailing comma", payload: `{"a": 1,}`, err: ErrSyntax},
		{name: "single quotes", payload: `{'a': 1}`, err: ErrSyntax},
		{name: "control char", payload: "{\"a\": \"x\x01\"}", err: ErrSyntax},
		{name: "bad escape", payload: `{"a": "\q"}`, err: ErrSyntax},
		{name: "leading zero", payload: `{"a": 01}`, err: ErrSyntax},
		{name: "json format not json", spec: Spec{Format: FormatJSON}, payload: `hello`, topicKey: "k", err: ErrSyntax},
		{name: "fields and not JSON", spec: Spec{Fields: []Field{{Path: "a"}}}, payload: `<html>down</html>`, err: ErrSyntax},
		{name: "fields and a scalar", spec: Spec{Fields: []Field{{Path: "a"}}}, payload: `42`, err: ErrMissing},
		{name: "deep nesting", payload: strings.Repeat("[", 100) + strings.Repeat("]", 100), err: ErrTooDeep},
		{name: "deep objects", payload: strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40), err: ErrTooDeep},
		{name: "huge array", payload: "[" + strings.Repeat("1,", 20000) + "1]", err: ErrTooMany},
		{name: "huge string value", spec: Spec{Fields: []Field{{Path: "s"}}}, payload: `{"s":"` + strings.Repeat("x", 5000) + `"}`, err: ErrType},
		{name: "overflowing int becomes float", payload: `{"a": 123456789012345678901234567890}`,
			want: []isp.Point{{Key: "a", Value: isp.Float(123456789012345678901234567890), Type: "float64"}}},
		{name: "number too large for float", payload: `{"a": 1e400}`, err: ErrType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Map(nil, []byte(tc.payload), tc.topicKey, arrival)
			if tc.err == nil && err != nil {
				t.Fatalf("error %v, want none", err)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d points %v, want %d %v", len(got), got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if w.Timestamp == 0 {
					w.Timestamp = arrival.UnixNano()
				}
				g := got[i]
				if g.Key != w.Key || g.Value != w.Value || g.Type != w.Type || g.Timestamp != w.Timestamp || g.Quality != isp.QualityGood {
					t.Errorf("point %d: got %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestMapErrorsAreShort(t *testing.T) {
	m, _ := New(Spec{})
	big := bytes.Repeat([]byte("x"), 10<<20)
	_, err := m.Map(nil, big, "k", arrival)
	if !errors.Is(err, ErrNotPlain) {
		t.Fatalf("got %v, want ErrNotPlain", err)
	}
	if len(err.Error()) > 200 {
		t.Fatalf("error of %d bytes for a 10 MB payload: %.100s…", len(err.Error()), err)
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"format", Spec{Format: "xml"}, "unknown format"},
		{"type", Spec{Type: "int8"}, "unknown type"},
		{"time format", Spec{TimeFormat: "excel"}, "unknown time_format"},
		{"value with fields", Spec{Format: FormatValue, Fields: []Field{{Path: "a"}}}, `format "value"`},
		{"both", Spec{ValueField: "v", Fields: []Field{{Path: "a"}}}, "exclude each other"},
		{"path", Spec{Fields: []Field{{Path: "a..b"}}}, "single dots"},
		{"dup path", Spec{Fields: []Field{{Path: "a"}, {Path: "a", Key: "b"}}}, "mapped twice"},
		{"dup key", Spec{Fields: []Field{{Path: "x.a"}, {Path: "y.a"}}}, "used twice"},
		{"bad key", Spec{Fields: []Field{{Path: "a", Key: "a.b"}}}, "key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := Check(Spec{Fields: []Field{{Path: "a.b"}}, TimeField: "ts"}); err != nil {
		t.Fatalf("good spec: %v", err)
	}
}
