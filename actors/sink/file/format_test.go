package file

import (
	"encoding/csv"
	"math"
	"strings"
	"testing"

	"github.com/iotgw/iotgw/isp"
)

func samplePoint() isp.Point {
	return isp.Point{DeviceID: "plc-1", Key: "temp", Value: isp.Float(21.5), Type: "float32", Quality: 1,
		Timestamp: 1700000000123456789, Tags: []isp.Tag{{Key: "unit", Value: "°C"}, {Key: "line", Value: "A"}}, Source: "modbus"}
}

func TestJSONLinesRoundTrip(t *testing.T) {
	p := samplePoint()
	p.Value = isp.String("a \"quoted\"\nline")
	line := appendLine(nil, FormatJSONL, &p)
	if strings.Count(string(line), "\n") != 1 || line[len(line)-1] != '\n' {
		t.Fatalf("got %q, want one line", line)
	}
	back, err := isp.DecodePoint(line[:len(line)-1])
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := back.Value.Str(); s != "a \"quoted\"\nline" || back.DeviceID != p.DeviceID || back.Timestamp != p.Timestamp {
		t.Fatalf("got %+v, want %+v", back, p)
	}
}

func TestInfluxLines(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(p *isp.Point)
		want string
	}{
		{"float", func(*isp.Point) {}, `temp,device=plc-1,type=float32,source=modbus,unit=°C,line=A value=21.5,quality=1i 1700000000123456789`},
		{"int", func(p *isp.Point) { p.Value = isp.Int(-42); p.Tags = nil }, `temp,device=plc-1,type=float32,source=modbus value=-42i,quality=1i 1700000000123456789`},
		{"bool", func(p *isp.Point) { p.Value = isp.Bool(true); p.Tags = nil; p.Type = "" }, `temp,device=plc-1,source=modbus value=true,quality=1i 1700000000123456789`},
		{"string", func(p *isp.Point) { p.Value = isp.String(`say "hi" \ now` + "\n"); p.Tags = nil }, `temp,device=plc-1,type=float32,source=modbus value="say \"hi\" \\ now ",quality=1i 1700000000123456789`},
		{"null", func(p *isp.Point) { p.Value = isp.Null(); p.Tags = nil; p.Quality = 0 }, `temp,device=plc-1,type=float32,source=modbus quality=0i 1700000000123456789`},
		{"nan", func(p *isp.Point) { p.Value = isp.Float(math.NaN()); p.Tags = nil }, `temp,device=plc-1,type=float32,source=modbus quality=1i 1700000000123456789`},
		{"escapes", func(p *isp.Point) {
			p.Key = "a b,c"
			p.Tags = []isp.Tag{{Key: "k=1", Value: "v, w"}, {Key: "empty", Value: ""}, {Key: "nl", Value: "x\ny"}, {Key: "bs", Value: `end\`}}
		}, `a\ b\,c,device=plc-1,type=float32,source=modbus,k\=1=v\,\ w,nl=x\ y,bs=end\\ value=21.5,quality=1i 1700000000123456789`},
		{"shadowing tag", func(p *isp.Point) { p.Tags = []isp.Tag{{Key: "device", Value: "other"}} }, `temp,device=plc-1,type=float32,source=modbus value=21.5,quality=1i 1700000000123456789`},
		{"no timestamp", func(p *isp.Point) { p.Timestamp = 0; p.Tags = nil }, `temp,device=plc-1,type=float32,source=modbus value=21.5,quality=1i`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := samplePoint()
			tc.edit(&p)
			got := string(appendLine(nil, FormatInflux, &p))
			if got != tc.want+"\n" {
				t.Fatalf("got  %q\nwant %q", got, tc.want+"\n")
			}
		})
	}
}

// CSV is read back with encoding/csv: hostile strings (commas, quotes, newlines, leading spaces) stay one field.
func TestCSVRecords(t *testing.T) {
	points := []isp.Point{samplePoint(), samplePoint(), samplePoint(), samplePoint()}
	points[1].Value = isp.String("a,b \"c\"\r\nd")
	points[1].Tags = []isp.Tag{{Key: "note", Value: "x,y"}}
	points[2].Value = isp.Int(7)
	points[2].Source = " padded "
	points[3].Value = isp.Float(math.Inf(1))
	points[3].Timestamp = 0
	text := csvHeader
	for i := range points {
		text += string(appendLine(nil, FormatCSV, &points[i]))
	}
	recs, err := csv.NewReader(strings.NewReader(text)).ReadAll()
	if err != nil {
		t.Fatalf("%v in %q", err, text)
	}
	if len(recs) != 5 {
		t.Fatalf("got %d records, want 5: %q", len(recs), recs)
	}
	for i, want := range [][]string{
		{"timestamp", "device_id", "key", "value", "type", "quality", "source", "tags"},
		{"2023-11-14T22:13:20.123456789Z", "plc-1", "temp", "21.5", "float32", "1", "modbus", "unit=°C;line=A"},
		{"2023-11-14T22:13:20.123456789Z", "plc-1", "temp", "a,b \"c\"\nd", "float32", "1", "modbus", "note=x,y"}, // encoding/csv reads a quoted \r\n as \n
		{"2023-11-14T22:13:20.123456789Z", "plc-1", "temp", "7", "float32", "1", " padded ", "unit=°C;line=A"},
		{"", "plc-1", "temp", "", "float32", "1", "modbus", "unit=°C;line=A"},
	} {
		if strings.Join(recs[i], "|") != strings.Join(want, "|") {
			t.Errorf("record %d: got %q, want %q", i, recs[i], want)
		}
	}
}

func TestFormatsAllocateNothing(t *testing.T) {
	p := samplePoint()
	buf := make([]byte, 0, 1024)
	for _, f := range formats {
		if n := testing.AllocsPerRun(100, func() { buf = appendLine(buf[:0], f, &p) }); n != 0 {
			t.Errorf("%s: %v allocations per point, want 0", f, n)
		}
	}
}
