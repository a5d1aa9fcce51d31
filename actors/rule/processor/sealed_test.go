package processor

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"math"
	"strings"
	"testing"

	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
)

// sealedRaw is a raw batch as a driver of this process publishes it: points checked, trace id and source set, sealed.
func sealedRaw(t *testing.T, subject string, pts []isp.Point) *nats.Msg {
	t.Helper()
	for i := range pts {
		if err := Check(&pts[i]); err != nil {
			t.Fatalf("point %d: %v", i, err)
		}
	}
	m := &nats.Msg{Subject: subject, Data: isp.AppendBatch(nil, pts), Header: nats.Header{}}
	m.Header.Set(actors.HeaderTraceID, "00000000000000aa")
	m.Header.Set(actors.HeaderSource, "modbus")
	var s Sealer
	s.Seal(m, len(pts))
	return m
}

func twoPoints() []isp.Point {
	return []isp.Point{
		{DeviceID: "d1", Key: "a", Value: isp.Int(1), Type: "uint16", Quality: isp.QualityGood, Timestamp: 1, Source: "modbus"},
		{DeviceID: "d1", Key: "b", Value: isp.Float(2.5), Type: "float32", Quality: isp.QualityGood, Timestamp: 1, Source: "modbus"},
	}
}

// TestSealedBatchForwarded: a batch sealed in this process is published as the device's processed batch byte for
// byte, with its trace id and source, and (per-point subjects on) one message per point.
func TestSealedBatchForwarded(t *testing.T) {
	for _, pointSubjects := range []bool{false, true} {
		p, rec := newTestProcessor(pointSubjects)
		m := sealedRaw(t, "iot.raw.modbus.d1", twoPoints())
		p.process(m)
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
		if b.Header.Get(actors.HeaderTraceID) != "00000000000000aa" || b.Header.Get(actors.HeaderSource) != "modbus" ||
			b.Header.Get(HeaderSealed) != "" {
			t.Errorf("got headers %v, want the raw trace id and source, no seal", b.Header)
		}
		if pointSubjects && (out[1].Subject != "iot.processed.d1.a" || out[2].Subject != "iot.processed.d1.b") {
			t.Errorf("got %s and %s, want the two point subjects", out[1].Subject, out[2].Subject)
		}
	}
}

// TestForgedSealTakesFullPath: a seal that does not match its message (altered body, another subject, another
// count, another key, garbage) is ignored: the batch is decoded and checked like any raw message, so its invalid
// point is dropped with an event instead of being forwarded.
func TestForgedSealTakesFullPath(t *testing.T) {
	const bad = `{"points":[{"key":"ok","value":1},{"key":"a.b","value":2}]}` // a.b is not a subject token
	otherKey := func(m *nats.Msg) string {                                    // the same construction under another key
		block, _ := aes.NewCipher([]byte("not the key 16 b"))
		gcm, _ := cipher.NewGCM(block)
		tag := gcm.Seal(nil, make([]byte, nonceLen), nil, m.Data)
		return "2.0000000000000000." + hex.EncodeToString(tag[len(tag)-tagLen:])
	}
	tests := []struct {
		name   string
		forge  func(m *nats.Msg) // m is a validly sealed batch on iot.raw.modbus.d1
		device string
	}{
		{"body altered", func(m *nats.Msg) { m.Data = []byte(bad) }, "d1"},
		{"moved to another subject", func(m *nats.Msg) {
			good := sealedRaw(t, "iot.raw.modbus.d1", []isp.Point{{DeviceID: "d1", Key: "ok", Value: isp.Int(1), Quality: 1, Timestamp: 1, Source: "x"}})
			m.Subject, m.Data = "iot.raw.modbus.d2", []byte(bad)
			m.Header.Set(HeaderSealed, good.Header.Get(HeaderSealed))
		}, "d2"},
		{"another count", func(m *nats.Msg) {
			m.Data = []byte(bad)
			_, rest, _ := strings.Cut(m.Header.Get(HeaderSealed), ".")
			m.Header.Set(HeaderSealed, "3."+rest)
		}, "d1"},
		{"another key", func(m *nats.Msg) { m.Data = []byte(bad); m.Header.Set(HeaderSealed, otherKey(m)) }, "d1"},
		{"garbage", func(m *nats.Msg) { m.Data = []byte(bad); m.Header.Set(HeaderSealed, "2.zz") }, "d1"},
		{"another nonce", func(m *nats.Msg) {
			m.Data = []byte(bad)
			v := m.Header.Get(HeaderSealed)
			m.Header.Set(HeaderSealed, v[:2]+"ffffffffffffffff"+v[18:])
		}, "d1"},
		{"trace id changed", func(m *nats.Msg) { m.Data = []byte(bad); m.Header.Set(actors.HeaderTraceID, "00000000000000bb") }, "d1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, rec := newTestProcessor(false)
			m := sealedRaw(t, "iot.raw.modbus.d1", twoPoints())
			tc.forge(m)
			p.process(m)
			var batch []isp.Point
			events := 0
			for _, o := range rec.take() {
				switch o.Subject {
				case SubjectErrorInvalid:
					events++
				case SubjectBatchPrefix + tc.device:
					pts, err := isp.DecodeBatch(o.Data)
					if err != nil {
						t.Fatalf("batch %s: %v", o.Data, err)
					}
					batch = append(batch, pts...)
				}
			}
			if events != 1 || len(batch) != 1 || batch[0].Key != "ok" {
				t.Errorf("got %d invalid-point events and batch %+v, want the point a.b dropped with one event", events, batch)
			}
		})
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
