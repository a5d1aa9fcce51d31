package processor

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
)

// sealedRaw is a raw batch as a driver of this process publishes it: points checked, trace id (a new one) and
// source set, sealed.
func sealedRaw(t *testing.T, subject string, pts []isp.Point) *nats.Msg {
	t.Helper()
	for i := range pts {
		if err := Check(&pts[i]); err != nil {
			t.Fatalf("point %d: %v", i, err)
		}
	}
	m := &nats.Msg{Subject: subject, Data: isp.AppendBatch(nil, pts), Header: nats.Header{}}
	m.Header.Set(actors.HeaderTraceID, actors.NewTraceID())
	m.Header.Set(actors.HeaderSource, "modbus")
	Sealer{}.Seal(m, len(pts))
	return m
}

func twoPoints() []isp.Point {
	return []isp.Point{
		{DeviceID: "d1", Key: "a", Value: isp.Int(1), Type: "uint16", Quality: isp.QualityGood, Timestamp: 1, Source: "modbus"},
		{DeviceID: "d1", Key: "b", Value: isp.Float(2.5), Type: "float32", Quality: isp.QualityGood, Timestamp: 1, Source: "modbus"},
	}
}

// copyMsg is what the processor receives: the bus's own copy of the message.
func copyMsg(m *nats.Msg) *nats.Msg {
	c := &nats.Msg{Subject: m.Subject, Data: append([]byte(nil), m.Data...), Header: nats.Header{}}
	for k, v := range m.Header {
		c.Header[k] = append([]string(nil), v...)
	}
	return c
}

// TestSealedBatchForwarded: a batch sealed in this process is published as the device's processed batch byte for
// byte, with its trace id and source, and (per-point subjects on) one message per point.
func TestSealedBatchForwarded(t *testing.T) {
	for _, pointSubjects := range []bool{false, true} {
		p, rec := newTestProcessor(pointSubjects)
		m := sealedRaw(t, "iot.raw.modbus.d1", twoPoints())
		if len(m.Header) != 2 {
			t.Errorf("a sealed batch carries headers %v, want only the trace id and source: the seal is not on the bus", m.Header)
		}
		p.process(copyMsg(m))
		out := rec.take()
		want := 1
		if pointSubjects {
			want = 3
		}
		if len(out) != want {
			t.Fatalf("point subjects %t: got %d messages, want %d", pointSubjects, len(out), want)
		}
		b := out[0]
		if b.Subject != SubjectBatchPrefix+"d1" || string(b.Data) != string(m.Data) {
			t.Errorf("got %s %s, want the raw bytes on %sd1", b.Subject, b.Data, SubjectBatchPrefix)
		}
		if b.Header.Get(actors.HeaderTraceID) != m.Header.Get(actors.HeaderTraceID) || b.Header.Get(actors.HeaderSource) != "modbus" {
			t.Errorf("got headers %v, want the raw trace id and source", b.Header)
		}
		if pointSubjects && (out[1].Subject != "iot.processed.d1.a" || out[2].Subject != "iot.processed.d1.b") {
			t.Errorf("got %s and %s, want the two point subjects", out[1].Subject, out[2].Subject)
		}
	}
}

// fullPath reports whether the processor took m the full way: m's body is bad (its point a.b is not a subject
// token), so the full path drops that point with one event and publishes the other, while a forwarded batch would
// carry both.
func fullPath(t *testing.T, m *nats.Msg, device string) bool {
	t.Helper()
	p, rec := newTestProcessor(false)
	p.process(m)
	var batch []isp.Point
	events := 0
	for _, o := range rec.take() {
		switch o.Subject {
		case SubjectErrorInvalid:
			events++
		case SubjectBatchPrefix + device:
			pts, err := isp.DecodeBatch(o.Data)
			if err != nil {
				t.Fatalf("batch %s: %v", o.Data, err)
			}
			batch = append(batch, pts...)
		}
	}
	return events == 1 && len(batch) == 1 && batch[0].Key == "ok"
}

const badBody = `{"points":[{"key":"ok","value":1},{"key":"a.b","value":2}]}` // a.b is not a subject token

// TestForgedSealTakesFullPath: an attacker who reads iot.raw.> and may publish there sends, under a trace id the
// gateway sealed, another body, subject or source, or sets a header claiming a seal, or sends a trace id this
// process never sealed (another gateway's): each is decoded and checked like any raw message, so its invalid
// point is dropped with an event instead of being forwarded. And the forgery does not spend the real batch's
// seal.
func TestForgedSealTakesFullPath(t *testing.T) {
	tests := []struct {
		name   string
		forge  func(m *nats.Msg) // m is a copy of a validly sealed batch on iot.raw.modbus.d1
		device string
	}{
		{"body altered", func(m *nats.Msg) { m.Data = []byte(badBody) }, "d1"},
		{"moved to another subject", func(m *nats.Msg) { m.Subject, m.Data = "iot.raw.modbus.d2", []byte(badBody) }, "d2"},
		{"another source", func(m *nats.Msg) { m.Data = []byte(badBody); m.Header.Set(actors.HeaderSource, "mqtt") }, "d1"},
		{"trace id never sealed", func(m *nats.Msg) { m.Data = []byte(badBody); m.Header.Set(actors.HeaderTraceID, actors.NewTraceID()) }, "d1"},
		{"a seal header", func(m *nats.Msg) {
			m.Data = []byte(badBody)
			m.Header.Set(actors.HeaderTraceID, actors.NewTraceID())
			m.Header.Set("Iot-Sealed", "2.0000000000000001.00000000000000000000000000000000")
		}, "d1"},
		{"no trace id", func(m *nats.Msg) { m.Data = []byte(badBody); m.Header.Del(actors.HeaderTraceID) }, "d1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := sealedRaw(t, "iot.raw.modbus.d1", twoPoints())
			forged := copyMsg(m)
			tc.forge(forged)
			if !fullPath(t, forged, tc.device) {
				t.Fatal("the forged batch was not taken the full path")
			}
			if _, ok := (Sealer{}).sealed(copyMsg(m)); !ok {
				t.Error("the real batch lost its seal to the forgery")
			}
		})
	}
}

// TestSealSpentOnce: a sealed batch replayed unchanged is forwarded once; the second copy takes the full path.
func TestSealSpentOnce(t *testing.T) {
	pts := []isp.Point{{DeviceID: "d1", Key: "ok", Value: isp.Int(1), Quality: isp.QualityGood, Timestamp: 1, Source: "modbus"}}
	m := sealedRaw(t, "iot.raw.modbus.d1", pts)
	if n, ok := (Sealer{}).sealed(copyMsg(m)); !ok || n != 1 {
		t.Fatalf("first copy: %d, %t; want 1 point, sealed", n, ok)
	}
	if _, ok := (Sealer{}).sealed(copyMsg(m)); ok {
		t.Fatal("the replayed copy is sealed too")
	}
}

// TestSealRegistryBounded: the registry keeps at most sealSlots records (the oldest is overwritten) and sealBytes
// of bodies (a batch past it is not sealed), and gives back what it held once taken or overwritten.
func TestSealRegistryBounded(t *testing.T) {
	r := &sealRegistry{index: map[string]int{}}
	body := []byte(strings.Repeat("x", 100))
	msg := func(i int) *nats.Msg {
		m := &nats.Msg{Subject: "iot.raw.modbus.d1", Data: body, Header: nats.Header{}}
		m.Header.Set(actors.HeaderTraceID, fmt.Sprintf("t%d", i))
		return m
	}
	for i := range sealSlots + 10 {
		r.record(fmt.Sprintf("t%d", i), "iot.raw.modbus.d1", "", 1, body)
	}
	if len(r.index) != sealSlots || r.bytes != sealSlots*len(body) {
		t.Fatalf("%d records, %d bytes; want %d, %d", len(r.index), r.bytes, sealSlots, sealSlots*len(body))
	}
	for i := range 10 {
		if _, ok := r.take(msg(i)); ok {
			t.Fatalf("record t%d outlived the ring", i)
		}
	}
	if _, ok := r.take(msg(10)); !ok {
		t.Fatal("the oldest record kept is gone")
	}
	if _, ok := r.take(msg(sealSlots + 9)); !ok {
		t.Fatal("the newest record is gone")
	}
	if r.bytes != (sealSlots-2)*len(body) {
		t.Fatalf("%d bytes after two takes, want %d", r.bytes, (sealSlots-2)*len(body))
	}

	big := &sealRegistry{index: map[string]int{}}
	huge := make([]byte, sealBytes/2+1)
	big.record("a", "s", "", 1, huge)
	big.record("b", "s", "", 1, huge) // past the bound: not sealed
	if _, ok := big.index["b"]; ok || big.bytes != len(huge) {
		t.Fatalf("a batch past %d bytes was recorded (%d bytes held)", sealBytes, big.bytes)
	}
	// The same trace id twice (a driver's bug): neither batch is trusted.
	big.record("a", "s", "", 1, huge)
	if len(big.index) != 0 || big.bytes != 0 {
		t.Fatalf("a trace id sealed twice left %d records, %d bytes", len(big.index), big.bytes)
	}
}

// TestCheck: the checks a sealing driver applies are the processor's: NaN and infinities become bad quality, a
// key that is not a subject token is refused, a fraction on an integer type makes it float64.
func TestCheck(t *testing.T) {
	pt := isp.Point{DeviceID: "d1", Key: "k", Value: isp.Float(math.NaN()), Type: "float32", Quality: isp.QualityGood, Timestamp: 1}
	if err := Check(&pt); err != nil || pt.Quality != isp.QualityBad {
		t.Errorf("NaN: got quality %d, err %v; want bad quality, no error", pt.Quality, err)
	}
	pt = isp.Point{DeviceID: "d1", Key: "a.b", Value: isp.Int(1), Quality: isp.QualityGood, Timestamp: 1}
	if err := Check(&pt); err == nil {
		t.Error("key a.b: got no error, want one")
	}
	pt = isp.Point{DeviceID: "d1", Key: "k", Value: isp.Float(2.5), Type: "int16", Quality: isp.QualityGood, Timestamp: 1}
	if err := Check(&pt); err != nil || pt.Type != "float64" {
		t.Errorf("scaled int16: got type %q, err %v; want float64", pt.Type, err)
	}
}
