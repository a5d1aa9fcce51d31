package influxdb

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/iotgw/iotgw/isp"
)

func TestAppendLine(t *testing.T) {
	tests := []struct {
		name string
		l    line
		want string
		err  bool
	}{
		{name: "float", l: line{measurement: "d1", field: "temp", value: isp.Float(25.5), ts: 7}, want: "d1 temp=25.5 7\n"},
		{name: "int as float", l: line{measurement: "d1", field: "n", value: isp.Int(3), ts: 7}, want: "d1 n=3 7\n"},
		{name: "int", l: line{measurement: "d1", field: "n", value: isp.Int(-3), intField: true, ts: 7}, want: "d1 n=-3i 7\n"},
		{name: "bool", l: line{measurement: "d1", field: "on", value: isp.Bool(true), ts: 7}, want: "d1 on=true 7\n"},
		{name: "string", l: line{measurement: "d1", field: "s", value: isp.String(`a "b" \c` + "\nd"), ts: 7}, want: "d1 s=\"a \\\"b\\\" \\\\c\nd\" 7\n"},
		{name: "escapes", l: line{measurement: "a b,c=d", tags: []isp.Tag{{Key: "k k,=", Value: "v v,="}}, field: "f f,=", value: isp.Float(1), ts: 1},
			want: `a\ b\,c=d,k\ k\,\==v\ v\,\= f\ f\,\==1 1` + "\n"},
		{name: "backslash kept", l: line{measurement: `c:\dir`, tags: []isp.Tag{{Key: "p", Value: `a\\b`}}, field: "f", value: isp.Float(1), ts: 1}, want: `c:\dir,p=a\\b f=1 1` + "\n"},
		{name: "backslash before comma", l: line{measurement: `a\,b`, field: "f", value: isp.Float(1)}, err: true},
		{name: "trailing backslash tag", l: line{measurement: "m", tags: []isp.Tag{{Key: "k", Value: `v\`}}, field: "f", value: isp.Float(1)}, err: true},
		{name: "newline in measurement", l: line{measurement: "a\nb", field: "f", value: isp.Float(1)}, err: true},
		{name: "CR in tag", l: line{measurement: "m", tags: []isp.Tag{{Key: "k", Value: "a\rb"}}, field: "f", value: isp.Float(1)}, err: true},
		{name: "comment", l: line{measurement: "#m", field: "f", value: isp.Float(1)}, err: true},
		{name: "empty tag value", l: line{measurement: "m", tags: []isp.Tag{{Key: "k"}}, field: "f", value: isp.Float(1)}, err: true},
		{name: "null", l: line{measurement: "m", field: "f", value: isp.Null()}, err: true},
		{name: "NaN", l: line{measurement: "m", field: "f", value: isp.Float(math.NaN())}, err: true},
		{name: "Inf", l: line{measurement: "m", field: "f", value: isp.Float(math.Inf(1))}, err: true},
		{name: "bad utf8", l: line{measurement: "m\xff", field: "f", value: isp.Float(1)}, err: true},
		{name: "huge name", l: line{measurement: strings.Repeat("m", maxName+1), field: "f", value: isp.Float(1)}, err: true},
		{name: "huge string", l: line{measurement: "m", field: "f", value: isp.String(strings.Repeat("s", maxString+1))}, err: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := appendLine([]byte("x"), &tc.l)
			if tc.err {
				if !errors.Is(err, ErrEncode) || string(got) != "x" {
					t.Fatalf("got %q, %v; want ErrEncode and nothing appended", got, err)
				}
				return
			}
			if err != nil || string(got[1:]) != tc.want {
				t.Fatalf("got %q, %v; want %q", got[1:], err, tc.want)
			}
		})
	}
}

// FuzzLine: whatever names and string value come in, a line is either refused with ErrEncode or reads back as
// exactly what was given, with one newline, at its end.
func FuzzLine(f *testing.F) {
	f.Add("d1", "site", "plant 1", "temp", "v", int64(1))
	f.Add(`a\,b`, `k\`, "v=,", "f f", "q\"\\\n", int64(-5))
	f.Add("#x", "", "", "=", "", int64(0))
	f.Fuzz(func(t *testing.T, meas, tagKey, tagValue, field, str string, ts int64) {
		l := line{measurement: meas, field: field, value: isp.String(str), ts: ts}
		if tagKey != "" || tagValue != "" {
			l.tags = []isp.Tag{{Key: tagKey, Value: tagValue}}
		}
		out, err := appendLine(nil, &l)
		if err != nil {
			if !errors.Is(err, ErrEncode) || len(out) != 0 {
				t.Fatalf("error %v with %q appended", err, out)
			}
			return
		}
		if out[len(out)-1] != '\n' || strings.Count(string(out), "\n")-strings.Count(str, "\n") != 1 {
			// A string field keeps its newlines as they are (the line protocol quotes it); the line has one more.
			t.Fatalf("%q: not one line", out)
		}
		m, tags, fl, v, gotTS, err := parseLine(string(out[:len(out)-1]))
		if err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		if m != meas || fl != field || v != str || gotTS != ts || len(tags) != len(l.tags) {
			t.Fatalf("%q read back as %q %v %q=%q %d", out, m, tags, fl, v, gotTS)
		}
		if len(tags) == 1 && tags[0] != l.tags[0] {
			t.Fatalf("%q: tag read back as %v, want %v", out, tags[0], l.tags[0])
		}
	})
}

// FuzzRefusedLines: any error text InfluxDB (or something posing as it) answers maps to lines of the batch or to
// none, never panics, and names only lines that exist.
func FuzzRefusedLines(f *testing.F) {
	f.Add(`partial write: unable to parse 'd0 n=1 1': invalid field format dropped=0`)
	f.Add(`partial write: field type conflict: input field "n" on measurement "d0" is type integer, already exists as type float dropped=1`)
	f.Add(`unable to parse '`)
	f.Fuzz(func(t *testing.T, text string) {
		b := &lineBatch{cfg: &Settings{}}
		for i := range 3 {
			l := line{measurement: "d0", field: "n", value: isp.Int(int64(i)), intField: i == 1, ts: int64(i)}
			var err error
			if b.body, err = appendLine(b.body, &l); err != nil {
				t.Fatal(err)
			}
			b.ends = append(b.ends, len(b.body))
			b.kinds = append(b.kinds, kindOf(&l))
		}
		for l, why := range refusedLines(b, text) {
			if l < 0 || l >= len(b.ends) || why == "" {
				t.Fatalf("line %d (%q) of %d named", l, why, len(b.ends))
			}
		}
	})
}

func TestRefusedLines(t *testing.T) {
	b := &lineBatch{cfg: &Settings{}}
	for i, v := range []isp.Value{isp.Float(1), isp.Int(2), isp.String("x"), isp.Float(3)} {
		l := line{measurement: "d0", field: "n", value: v, intField: true, ts: int64(i)}
		var err error
		if b.body, err = appendLine(b.body, &l); err != nil {
			t.Fatal(err)
		}
		b.ends = append(b.ends, len(b.body))
		b.kinds = append(b.kinds, kindOf(&l))
	}
	got := refusedLines(b, `partial write: field type conflict: input field "n" on measurement "d0" is type integer, already exists as type float dropped=2`)
	if len(got) != 2 || got[1] == "" || got[2] == "" {
		t.Fatalf("got %v, want lines 1 and 2 (integer, string)", got)
	}
	got = refusedLines(b, `partial write: unable to parse '`+string(b.line(3))+`': invalid number unable to parse 'other 1': bad dropped=0`)
	if len(got) != 1 || !strings.Contains(got[3], "invalid number") || strings.Contains(got[3], "other") {
		t.Fatalf("got %v, want line 3 with its reason only", got)
	}
	if got := refusedLines(b, "points beyond retention policy dropped="+strconv.Itoa(4)); len(got) != 0 {
		t.Fatalf("got %v, want none named", got)
	}
}
