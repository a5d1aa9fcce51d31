package batch

import (
	"testing"

	"github.com/iotgw/iotgw/isp"
)

func TestIsBatch(t *testing.T) {
	b := isp.AppendBatch(nil, testPoints(2))
	p := isp.AppendPoint(nil, &testPoints(1)[0])
	for _, c := range []struct {
		subject string
		data    []byte
		want    bool
	}{
		{"iot.processed.batch.plc-1", b, true},
		{"iot.raw.modbus.plc-1", b, true},
		{"iot.rules.hot.plc-1", b, true},
		{"iot.rules.hot.plc-1", []byte("garbage"), true}, // the subject says batch: the decoder says why not
		{"iot.processed.plc-1.temp", p, false},
		{"iot.rules.hot.plc-1.temp", p, false}, // a forward with {key}: one point per message
		{"plant.plc-1", b, true},               // a forward's own subject: the payload tells
		{"plant.plc-1", []byte(" \n{ \t\"points\" :[]}"), true},
		{"plant.plc-1", p, false},
		{"plant.plc-1", []byte(`{"pointsx":[]}`), false},
		{"plant.plc-1", []byte(`{"points"`), false}, // truncated
		{"plant.plc-1", []byte(`{"poi`), false},
		{"plant.plc-1", []byte(`[{"points":[]}]`), false},
		{"plant.plc-1", nil, false},
		{"plant.plc-1", []byte("{"), false},
	} {
		if got := IsBatch(c.subject, c.data); got != c.want {
			t.Errorf("IsBatch(%q, %q) = %v, want %v", c.subject, c.data, got, c.want)
		}
	}
}

func TestSubjectDevice(t *testing.T) {
	for subject, want := range map[string]string{
		"iot.processed.batch.plc-1":   "plc-1",
		"iot.processed.plc-1.temp":    "plc-1",
		"iot.raw.modbus.plc-1":        "plc-1",
		"iot.rules.hot.plc-1":         "plc-1",
		"iot.rules.hot.plc-1.temp":    "",
		"iot.processed.batch.":        "",
		"iot.processed.batch":         "",
		"iot.alerts.critical.plc-1":   "",
		"other.processed.batch.plc-1": "",
		"iot.raw.modbus.plc-1.extra":  "",
		"":                            "",
		"....":                        "",
		"iot.processed.batch.a.b.c.d": "",
	} {
		if got := SubjectDevice(subject); got != want {
			t.Errorf("SubjectDevice(%q) = %q, want %q", subject, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = SubjectDevice("iot.processed.batch.plc-1") }); n != 0 {
		t.Errorf("SubjectDevice allocates %v times", n)
	}
}

// Whatever the bytes, IsBatch and SubjectDevice answer without panicking, and a device is always a token of the
// subject.
func FuzzSubjects(f *testing.F) {
	f.Add("iot.processed.batch.plc-1", []byte(`{"points":[]}`))
	f.Add("iot.rules.r.d", []byte(" { \"points\" : "))
	f.Add("plant.x", []byte("{"))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		_ = IsBatch(subject, data)
		if d := SubjectDevice(subject); d != "" {
			if len(d) > len(subject) || subject[len(subject)-len(d):] != d && !containsToken(subject, d) {
				t.Fatalf("device %q is not a token of %q", d, subject)
			}
		}
	})
}

func containsToken(subject, tok string) bool {
	for i := 0; i+len(tok) <= len(subject); i++ {
		if subject[i:i+len(tok)] == tok && (i == 0 || subject[i-1] == '.') && (i+len(tok) == len(subject) || subject[i+len(tok)] == '.') {
			return true
		}
	}
	return false
}
