package processor

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// recorder is a Publisher that keeps copies of what was published (the processor reuses its messages).
type recorder struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func (r *recorder) Publish(subject string, data []byte) error {
	return r.PublishMsg(&nats.Msg{Subject: subject, Data: data})
}

func (r *recorder) PublishMsg(m *nats.Msg) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := &nats.Msg{Subject: m.Subject, Data: append([]byte(nil), m.Data...), Header: nats.Header{}}
	for k, v := range m.Header {
		c.Header[k] = append([]string(nil), v...)
	}
	r.msgs = append(r.msgs, c)
	return nil
}

// take returns what was published since the last call.
func (r *recorder) take() []*nats.Msg {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.msgs
	r.msgs = nil
	return out
}

func newTestProcessor(pointSubjects bool) (*processor, *recorder) {
	rec := &recorder{}
	p := New(actors.Env{Bus: rec, Log: zerolog.Nop(), PointSubjects: pointSubjects})().(*processor)
	return p, rec
}

func raw(subject, body, trace string) *nats.Msg {
	m := &nats.Msg{Subject: subject, Data: []byte(body), Header: nats.Header{}}
	if trace != "" {
		m.Header.Set(actors.HeaderTraceID, trace)
	}
	return m
}

// TestProcessedCarriesTraceID: the processed batch and every per-point message carry the raw message's
// Iot-Trace-Id; a raw message without one (published by hand) gets a new one, the same on all it becomes.
func TestProcessedCarriesTraceID(t *testing.T) {
	p, rec := newTestProcessor(true)
	body := `{"points":[{"key":"a","value":1},{"key":"b","value":2}]}`

	p.process(raw("iot.raw.modbus.d1", body, "0123456789abcdef"))
	out := rec.take()
	if len(out) != 3 {
		t.Fatalf("got %d messages, want a batch and 2 points", len(out))
	}
	for _, m := range out {
		if got := m.Header.Get(actors.HeaderTraceID); got != "0123456789abcdef" {
			t.Errorf("%s: got trace id %q, want the raw message's 0123456789abcdef", m.Subject, got)
		}
	}

	p.process(raw("iot.raw.test.d1", body, ""))
	out = rec.take()
	minted := out[0].Header.Get(actors.HeaderTraceID)
	if len(minted) != 16 || minted == "0123456789abcdef" {
		t.Fatalf("raw message without a trace id: got %q on the batch, want a new 16-digit one", minted)
	}
	for _, m := range out {
		if got := m.Header.Get(actors.HeaderTraceID); got != minted {
			t.Errorf("%s: got trace id %q, want %q like its batch", m.Subject, got, minted)
		}
	}
}

// TestPublishedTypeDescribesValue: a bool point is true or false (0 and 1 become false and true; anything else is
// dropped with an event naming the point), and an integer-typed value with a fraction is typed float64.
func TestPublishedTypeDescribesValue(t *testing.T) {
	tests := []struct {
		name      string
		point     string
		wantValue string // JSON, "" when the point must be dropped
		wantType  string
		wantErr   string // in the invalid-point event
	}{
		{"bool true", `{"key":"k","value":true,"type":"bool"}`, "true", "bool", ""},
		{"bool 1", `{"key":"k","value":1,"type":"bool"}`, "true", "bool", ""},
		{"bool 0", `{"key":"k","value":0,"type":"bool"}`, "false", "bool", ""},
		{"bool 1.0", `{"key":"k","value":1.0,"type":"bool"}`, "true", "bool", ""},
		{"bool null (bad quality)", `{"key":"k","value":null,"type":"bool","quality":0}`, "null", "bool", ""},
		{"bool 37", `{"key":"k","value":37,"type":"bool"}`, "", "", "type bool: value 37 is not a bool"},
		{"bool 0.5", `{"key":"k","value":0.5,"type":"bool"}`, "", "", "value 0.5 is not a bool"},
		{"bool string", `{"key":"k","value":"on","type":"bool"}`, "", "", `value "on" is not a bool`},
		{"scaled int16", `{"key":"k","value":25.5,"type":"int16"}`, "25.5", "float64", ""},
		{"whole int16", `{"key":"k","value":26,"type":"int16"}`, "26", "int16", ""},
		{"uint64 beyond int64", `{"key":"k","value":18446744073709551615,"type":"uint64"}`, "18446744073709552000", "float64", ""},
		{"float32 integer", `{"key":"k","value":3,"type":"float32"}`, "3", "float32", ""},
		{"no type", `{"key":"k","value":37}`, "37", "", ""},
	}
	p, rec := newTestProcessor(false)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p.process(raw("iot.raw.isp.sc1", `{"points":[`+tc.point+`,{"key":"other","value":1}]}`, "t1"))
			var batch []isp.Point
			var events []InvalidEvent
			for _, m := range rec.take() {
				switch {
				case m.Subject == SubjectErrorInvalid:
					var ev InvalidEvent
					if err := json.Unmarshal(m.Data, &ev); err != nil {
						t.Fatalf("event %s: %v", m.Data, err)
					}
					events = append(events, ev)
				case strings.HasPrefix(m.Subject, SubjectBatchPrefix):
					pts, err := isp.DecodeBatch(m.Data)
					if err != nil {
						t.Fatalf("batch %s: %v", m.Data, err)
					}
					batch = append(batch, pts...)
				}
			}
			if tc.wantValue == "" {
				if len(events) != 1 || events[0].Key != "k" || events[0].DeviceID != "sc1" || events[0].TraceID != "t1" ||
					!strings.Contains(events[0].Error, tc.wantErr) {
					t.Errorf("got events %+v, want one for sc1/k with trace t1 saying %q", events, tc.wantErr)
				}
				if len(batch) != 1 || batch[0].Key != "other" {
					t.Errorf("got batch %+v, want only the other point", batch)
				}
				return
			}
			if len(events) != 0 || len(batch) != 2 {
				t.Fatalf("got events %+v and batch %+v, want both points published", events, batch)
			}
			got := string(isp.AppendPoint(nil, &batch[0]))
			if !strings.Contains(got, `"value":`+tc.wantValue) || batch[0].Type != tc.wantType {
				t.Errorf("got %s, want value %s typed %q", got, tc.wantValue, tc.wantType)
			}
		})
	}
}
