package isp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

var fuzzLineSeeds = []string{
	seedConfigLine,
	seedStatusLine,
	heartbeatLine,
	`{"type":"DATA","timestamp":1751200001000000000,"payload":{"points":[{"key":"temperature","source":"my-sidecar","timestamp":1751200001000000000,"value":25.5,"type":"float32","quality":1,"tags":{"unit":"°C","device":"sensor-01"}}]}}`,
	`{"type":"DATA","id":"d","payload":{"points":[{"value":1}]}}`,
	`{"type":"RESPONSE","id":"x","payload":{"success":false,"error":"boom"}}`,
	`{"type":"METRICS","payload":{"counters":{"polls":12,"errors":0.5}}}`,
	`{"type":"FOO","id":"u\u00e9\ud800"}`,
	`{"type":"STATUS","timestamp":-9223372036854775808}`,
	`{"type":"STATUS","timestamp":9223372036854775808}`,
	`{"id":"x"}`,
	"{\"type\":\"STATUS\",\"id\":\"\xff\"}",
	"\x00",
	`[{"type":"STATUS"}]`,
	`{"type":"DATA","payload":[[[[[[[[[[[[]]]]]]]]]]]]}`,
	`{"type":"STATUS"} {}`,
}

// FuzzLineReader feeds arbitrary bytes, many lines at once: Next never panics, every error is a *LineError
// wrapping a sentinel or io.EOF, every message has a known type and a valid JSON payload, and reading a byte
// at a time gives exactly the same results.
func FuzzLineReader(f *testing.F) {
	for _, s := range fuzzLineSeeds {
		f.Add([]byte(s + "\n" + heartbeatLine + "\r\n\n" + s))
	}
	f.Add(bytes.Repeat([]byte("x"), 300))
	f.Fuzz(func(t *testing.T, data []byte) {
		whole := fuzzRead(t, bytes.NewReader(data))
		oneByte := fuzzRead(t, iotest.OneByteReader(bytes.NewReader(data)))
		if len(whole) != len(oneByte) {
			t.Fatalf("whole: %q\none byte: %q", whole, oneByte)
		}
		for i := range whole {
			if whole[i] != oneByte[i] {
				t.Fatalf("result %d: whole %q, one byte %q", i, whole[i], oneByte[i])
			}
		}
	})
}

func fuzzRead(t *testing.T, r io.Reader) []string {
	lr := NewLineReader(r, 128)
	var out []string
	var pts []Point
	for {
		m, err := lr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			checkLineError(t, err, lr.Line())
			out = append(out, err.Error())
			continue
		}
		if !isKnownType(m.Type) {
			t.Fatalf("message of unknown type %q", m.Type)
		}
		if m.Payload != nil && !json.Valid(m.Payload) {
			t.Fatalf("invalid payload %q", m.Payload)
		}
		out = append(out, fmt.Sprintf("%s %q %d %s", m.Type, m.ID, m.Timestamp, m.Payload))
		if m.Type == TypeData {
			if pts, err = lr.DecodeData(m, pts); err != nil {
				checkLineError(t, err, lr.Line())
			}
		}
	}
}

func checkLineError(t *testing.T, err error, line int) {
	t.Helper()
	var le *LineError
	if !errors.As(err, &le) {
		t.Fatalf("got %T %v, want a *LineError", err, err)
	}
	if le.Line < 1 || le.Line > line {
		t.Fatalf("error %v: line %d outside 1..%d", err, le.Line, line)
	}
	for _, s := range lineSentinels {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error %v wraps no sentinel", err)
}

func isKnownType(typ string) bool {
	for _, k := range knownTypes {
		if typ == k {
			return true
		}
	}
	return false
}

// FuzzMessage decodes one line and compares with encoding/json: a line we accept is valid JSON and survives a
// round trip through LineWriter; a line we call not JSON is not valid JSON (or not an object); a valid JSON
// object in valid UTF-8 is never called not JSON.
func FuzzMessage(f *testing.F) {
	for _, s := range fuzzLineSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		if bytes.IndexByte(line, '\n') >= 0 {
			return // one line only; FuzzLineReader covers several
		}
		lr := NewLineReader(bytes.NewReader(line), 0)
		m, err := lr.Next()
		trimmed := bytes.TrimLeft(line, " \t\r")
		isObject := len(trimmed) > 0 && trimmed[0] == '{'
		valid := json.Valid(bytes.TrimSuffix(line, []byte{'\r'}))
		switch {
		case err == io.EOF:
			if len(bytes.Trim(line, " \t\r")) != 0 {
				t.Fatalf("non-blank line %q taken as blank", line)
			}
			return
		case err != nil:
			checkLineError(t, err, 1)
			if errors.Is(err, ErrNotJSON) && valid && isObject {
				t.Fatalf("valid JSON object %q called not JSON: %v", line, err)
			}
			if errors.Is(err, ErrInvalidUTF8) && utf8.Valid(line) {
				t.Fatalf("valid UTF-8 %q called invalid: %v", line, err)
			}
			if valid && isObject && utf8.Valid(line) && (errors.Is(err, ErrNotJSON) || errors.Is(err, ErrInvalidUTF8)) {
				t.Fatalf("valid line %q rejected: %v", line, err)
			}
			return
		}
		if !valid || !isObject || !utf8.Valid(line) {
			t.Fatalf("accepted %q, which is not a JSON object in UTF-8", line)
		}
		// encoding/json must read the same fields. It matches names without regard to case, so compare only
		// lines without escapes or case variants of our names.
		var std Message
		lower := bytes.ToLower(line)
		sameCase := true
		for _, name := range []string{`"type"`, `"id"`, `"timestamp"`} {
			sameCase = sameCase && bytes.Count(lower, []byte(name)) == bytes.Count(line, []byte(name))
		}
		if sameCase && bytes.IndexByte(line, '\\') < 0 && json.Unmarshal(line, &std) == nil {
			if std.Type != m.Type || std.ID != m.ID || std.Timestamp != m.Timestamp {
				t.Fatalf("line %q: encoding/json reads %q %q %d, we read %q %q %d", line,
					std.Type, std.ID, std.Timestamp, m.Type, m.ID, m.Timestamp)
			}
		}
		kept := m.Clone()
		var out bytes.Buffer
		if err := NewLineWriter(&out).Write(kept); err != nil {
			t.Fatalf("write back %q: %v", line, err)
		}
		back, err := NewLineReader(&out, 0).Next()
		if err != nil {
			t.Fatalf("read back %q: %v", out.Bytes(), err)
		}
		var c1, c2 bytes.Buffer
		if kept.Payload != nil {
			_ = json.Compact(&c1, kept.Payload)
		}
		if back.Payload != nil {
			c2.Write(back.Payload)
		}
		wantTS := kept.Timestamp
		if wantTS == 0 {
			wantTS = back.Timestamp // stamped on write
		}
		if back.Type != kept.Type || back.ID != kept.ID || back.Timestamp != wantTS || c1.String() != c2.String() {
			t.Fatalf("round trip of %q: got %+v, want %+v", line, back, kept)
		}
	})
}
