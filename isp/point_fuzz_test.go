package isp

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

var fuzzPointSeeds = []string{
	`{"key":"temperature","source":"my-sidecar","timestamp":1751200001000000000,"value":25.5,"type":"float32","quality":1,"tags":{"unit":"°C","device":"sensor-01"}}`,
	`{"device_id":"d1","key":"temp","value":25.5}`,
	`{"key":"k","value":"s\u00e9\ud83d\ude00\n","tags":null}`,
	`{"key":"k","value":-0,"quality":-1,"timestamp":0}`,
	`{"key":"k","value":1e400}`,
	`{"key":"k","value":99999999999999999999}`,
	`{"key":"k","value":true,"x":[{"a":null},1.5e-3,"\ud800"]}`,
	`{"key":"a","key":"b","tags":{"t":"1","t":"2"}}`,
	`{"key":"k","value":01}`,
	"{\"key\":\"\xff\"}",
	`{"key":"k"} x`,
	`[[[[[[[[[[]]]]]]]]]]`,
}

// fuzzCheck is the property both targets share: if encoding/json says data is not JSON, we reject it; if we
// accept it, encoding/json reads the same points, and encoding and decoding again gives them back.
func fuzzCheck(t *testing.T, data []byte, batch bool) {
	var d Decoder
	var pts []Point
	var err error
	if batch {
		pts, err = d.DecodeBatch(data, nil)
	} else {
		pts = make([]Point, 1)
		err = d.DecodePoint(data, &pts[0])
	}
	valid := json.Valid(data)
	if err != nil {
		var de *DecodeError
		if !errors.As(err, &de) || de.Err == nil {
			t.Fatalf("got %T %v, want a *DecodeError", err, err)
		}
		if de.Offset < 0 || de.Offset > len(data) {
			t.Fatalf("error offset %d outside the input of %d bytes: %v", de.Offset, len(data), err)
		}
		if len(pts) != 0 && batch {
			t.Fatalf("got %d points with the error", len(pts))
		}
		return
	}
	if !valid {
		t.Fatalf("accepted what encoding/json says is not JSON: %q", data)
	}
	objs, jerr := jsonObjects(data, batch)
	if jerr != nil || len(objs) != len(pts) {
		t.Fatalf("encoding/json read %d objects (%v), we %d", len(objs), jerr, len(pts))
	}
	for i := range pts {
		if err := agreesWithJSON(&pts[i], objs[i]); err != nil {
			t.Fatalf("point %d of %q: %v", i, data, err)
		}
	}

	var enc []byte
	var again []Point
	if batch {
		enc = AppendBatch(nil, pts)
		again, err = d.DecodeBatch(enc, nil)
	} else {
		enc = AppendPoint(nil, &pts[0])
		again = make([]Point, 1)
		err = d.DecodePoint(enc, &again[0])
	}
	if err != nil {
		t.Fatalf("re-encoded %q does not decode: %v", enc, err)
	}
	if len(again) != len(pts) {
		t.Fatalf("re-encoded: got %d points, want %d", len(again), len(pts))
	}
	for i := range pts {
		if err := samePoint(&pts[i], &again[i]); err != nil {
			t.Fatalf("point %d changed through %q: %v", i, enc, err)
		}
	}
	// After one round the encoding is a fixed point.
	var enc2 []byte
	if batch {
		enc2 = AppendBatch(nil, again)
	} else {
		enc2 = AppendPoint(nil, &again[0])
	}
	if !bytes.Equal(enc, enc2) {
		t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
	}
}

func FuzzDecodePoint(f *testing.F) {
	for _, s := range fuzzPointSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzCheck(t, data, false) })
}

func FuzzDecodeBatch(f *testing.F) {
	for _, s := range fuzzPointSeeds {
		f.Add([]byte(`{"points":[` + s + `]}`))
	}
	f.Add([]byte(`{"points":[]}`))
	f.Add([]byte(`{"points":null,"points":[{"key":"a"},{"key":"b"}]}`))
	f.Add([]byte(`{"type":"DATA","points":[{"key":"a","tags":{}}],"extra":{"x":[1]}}`))
	f.Add(AppendBatch(nil, benchBatch(3)))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzCheck(t, data, true) })
}

// FuzzFastNumber: the one-pass number paths (fastNumber, fastInt) give exactly what the general ones (scan, then
// convert) give, to the bit and the byte, for whatever they take; what they decline, the general paths decode.
func FuzzFastNumber(f *testing.F) {
	for _, s := range []string{"0", "-0", "-0.0", "25.5", "20.100000381469727", "1751200001000000000",
		"9223372036854775807", "-9223372036854775808", "9223372036854775808", "123456789012345678", "1.", "01",
		"-", "1e5", "0.1e1", "12345678901234567890", "0.0000000000000000000001", "4503599627370497.5", "7,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, lit string) {
		data := []byte(lit)
		fast, slow := Decoder{data: data}, Decoder{data: data}
		if v, ok := fast.fastNumber(); ok {
			want, err := slow.numberValue()
			if err != nil {
				t.Fatalf("%q: fastNumber took %v, the general path says %v", lit, v, err)
			}
			if v != want || fast.pos != slow.pos {
				t.Fatalf("%q: fastNumber %#v at %d, the general path %#v at %d", lit, v, fast.pos, want, slow.pos)
			}
		} else if fast.pos != 0 {
			t.Fatalf("%q: fastNumber declined but moved to %d", lit, fast.pos)
		}
		fast, slow = Decoder{data: data}, Decoder{data: data}
		if i, ok := fast.fastInt(); ok {
			want, err := slow.slowInteger()
			if err != nil || i != want || fast.pos != slow.pos {
				t.Fatalf("%q: fastInt %d at %d, the general path %d at %d (%v)", lit, i, fast.pos, want, slow.pos, err)
			}
		} else if fast.pos != 0 {
			t.Fatalf("%q: fastInt declined but moved to %d", lit, fast.pos)
		}
	})
}
