package isp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

// readerResult is what one call to Next gave, in a form a table can spell out.
type readerResult struct {
	Type, ID string // a message, or the LineError's id and type
	Line     int    // the LineError's line; 0 for a message
	Err      error  // the sentinel the LineError wraps; nil for a message
}

func (r readerResult) String() string {
	if r.Err == nil {
		return fmt.Sprintf("msg %s id=%q", r.Type, r.ID)
	}
	return fmt.Sprintf("line %d: %v (type %q, id %q)", r.Line, r.Err, r.Type, r.ID)
}

var lineSentinels = []error{ErrLineTooLong, ErrNotJSON, ErrInvalidUTF8, ErrUnknownType, ErrMissingField,
	ErrBadField, ErrBadPayload}

// readAll calls Next until an io error and returns the results and that error.
func readAll(t *testing.T, lr *LineReader) ([]readerResult, error) {
	t.Helper()
	var out []readerResult
	for i := 0; ; i++ {
		if i > 100000 {
			t.Fatal("Next never returned an io error")
		}
		m, err := lr.Next()
		if err == nil {
			out = append(out, readerResult{Type: m.Type, ID: m.ID})
			continue
		}
		var le *LineError
		if !errors.As(err, &le) {
			return out, err
		}
		r := readerResult{Type: le.Type, ID: le.ID, Line: le.Line}
		for _, s := range lineSentinels {
			if errors.Is(err, s) {
				r.Err = s
			}
		}
		if r.Err == nil {
			t.Fatalf("LineError %v wraps no sentinel", err)
		}
		out = append(out, r)
	}
}

func msg(typ, id string) readerResult { return readerResult{Type: typ, ID: id} }

func bad(line int, err error, typ, id string) readerResult {
	return readerResult{Type: typ, ID: id, Line: line, Err: err}
}

const (
	seedConfigLine = `{"type":"CONFIG","id":"test-001","timestamp":1751200000000000000,"payload":{"mode":"tcp","address":"127.0.0.1:502","timeout_ms":3000,"interval_ms":2000,"registers":[]}}`
	seedStatusLine = `{"type":"STATUS","id":"status-001","timestamp":1751200000000000000}`
	heartbeatLine  = `{"type":"HEARTBEAT"}`
)

func TestLineReaderHostileInput(t *testing.T) {
	long := `{"type":"DATA","id":"big","payload":"` + strings.Repeat("x", 300) + `"}`
	exact := `{"type":"STATUS","id":"` + strings.Repeat("e", 256-len(`{"type":"STATUS","id":""}`)) + `"}`
	deep := `{"type":"DATA","payload":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`
	tests := []struct {
		name  string
		input string
		want  []readerResult
	}{
		{"seed lines", seedConfigLine + "\n" + seedStatusLine + "\n",
			[]readerResult{msg(TypeConfig, "test-001"), msg(TypeStatus, "status-001")}},
		{"not JSON", "hello\n" + heartbeatLine + "\n",
			[]readerResult{bad(1, ErrNotJSON, "", ""), msg(TypeHeartbeat, "")}},
		{"not an object", "[1,2]\n42\n\"s\"\n",
			[]readerResult{bad(1, ErrNotJSON, "", ""), bad(2, ErrNotJSON, "", ""), bad(3, ErrNotJSON, "", "")}},
		{"unknown type", `{"type":"FOO","id":"x1"}` + "\n" + heartbeatLine + "\n",
			[]readerResult{bad(1, ErrUnknownType, "FOO", "x1"), msg(TypeHeartbeat, "")}},
		{"lower-case type", `{"type":"heartbeat","id":"h"}` + "\n",
			[]readerResult{bad(1, ErrUnknownType, "heartbeat", "h")}},
		{"missing type", `{"id":"a","timestamp":1}` + "\n" + `{"type":"","id":"b"}` + "\n",
			[]readerResult{bad(1, ErrMissingField, "", "a"), bad(2, ErrMissingField, "", "b")}},
		{"missing payload", `{"type":"DATA","id":"d"}` + "\n" + `{"type":"CONFIG","id":"c","payload":null}` + "\n",
			[]readerResult{bad(1, ErrMissingField, TypeData, "d"), bad(2, ErrMissingField, TypeConfig, "c")}},
		{"bad fields", `{"type":5}` + "\n" + `{"type":"STATUS","id":7}` + "\n" +
			`{"type":"STATUS","id":"t","timestamp":"now"}` + "\n" + `{"type":"STATUS","timestamp":1.5}` + "\n" +
			`{"type":"STATUS","timestamp":99999999999999999999}` + "\n",
			[]readerResult{bad(1, ErrBadField, "", ""), bad(2, ErrBadField, TypeStatus, ""),
				bad(3, ErrBadField, TypeStatus, "t"), bad(4, ErrBadField, TypeStatus, ""), bad(5, ErrBadField, TypeStatus, "")}},
		{"oversized line skipped", long + "\n" + heartbeatLine + "\n",
			[]readerResult{bad(1, ErrLineTooLong, TypeData, "big"), msg(TypeHeartbeat, "")}},
		{"oversized line without id", strings.Repeat("y", 1000) + "\n" + heartbeatLine + "\n",
			[]readerResult{bad(1, ErrLineTooLong, "", ""), msg(TypeHeartbeat, "")}},
		{"oversized line at EOF", heartbeatLine + "\n" + strings.Repeat("y", 1000),
			[]readerResult{msg(TypeHeartbeat, ""), bad(2, ErrLineTooLong, "", "")}},
		{"line of exactly the limit", exact + "\n" + exact + "\r\n",
			[]readerResult{msg(TypeStatus, exact[23:len(exact)-2]), msg(TypeStatus, exact[23:len(exact)-2])}},
		{"line one byte over the limit", exact + " \n" + exact + " \r\n" + heartbeatLine + "\n",
			[]readerResult{bad(1, ErrLineTooLong, TypeStatus, exact[23:len(exact)-2]),
				bad(2, ErrLineTooLong, TypeStatus, exact[23:len(exact)-2]), msg(TypeHeartbeat, "")}},
		{"invalid UTF-8", "{\"type\":\"STATUS\",\"id\":\"i\",\"x\":\"\xff\"}\n\xfe\xff\n" + heartbeatLine + "\n",
			[]readerResult{bad(1, ErrInvalidUTF8, TypeStatus, "i"), bad(2, ErrInvalidUTF8, "", ""), msg(TypeHeartbeat, "")}},
		{"half line then EOF", heartbeatLine + "\n" + `{"type":"HEART`,
			[]readerResult{msg(TypeHeartbeat, ""), bad(2, ErrNotJSON, "", "")}},
		{"last line without newline", heartbeatLine + "\n" + `{"type":"STATUS","id":"last"}`,
			[]readerResult{msg(TypeHeartbeat, ""), msg(TypeStatus, "last")}},
		{"NUL bytes", "\x00\x00\n" + heartbeatLine + "\x00\n" + `{"type":"STATUS","id":"a` + "\x00" + `"}` + "\n",
			[]readerResult{bad(1, ErrNotJSON, "", ""), bad(2, ErrNotJSON, TypeHeartbeat, ""), bad(3, ErrNotJSON, TypeStatus, "")}},
		{"empty lines ignored", "\n\n   \n\r\n\t\n" + heartbeatLine + "\n\n",
			[]readerResult{msg(TypeHeartbeat, "")}},
		{"CRLF endings", `{"type":"STATUS","id":"s1"}` + "\r\n" + heartbeatLine + "\r\n",
			[]readerResult{msg(TypeStatus, "s1"), msg(TypeHeartbeat, "")}},
		{"data after the object", heartbeatLine + " x\n" + heartbeatLine + heartbeatLine + "\n",
			[]readerResult{bad(1, ErrNotJSON, TypeHeartbeat, ""), bad(2, ErrNotJSON, TypeHeartbeat, "")}},
		{"escaped strings", `{"type":"HEART\u0042EAT","id":"a\"b\\c\u00e9"}` + "\n",
			[]readerResult{msg(TypeHeartbeat, "a\"b\\cé")}},
		{"duplicate member: last wins", `{"type":"FOO","type":"STATUS","id":"1","id":"2"}` + "\n",
			[]readerResult{msg(TypeStatus, "2")}},
		{"unknown members skipped", `{"x":{"y":[1,-2.5e3,true,false,null,"z"]},"type":"STATUS","v":2}` + "\n",
			[]readerResult{msg(TypeStatus, "")}},
		{"nested too deeply", deep + "\n" + heartbeatLine + "\n",
			[]readerResult{bad(1, ErrBadPayload, TypeData, ""), msg(TypeHeartbeat, "")}},
		{"invalid JSON in payload", `{"type":"DATA","id":"p","payload":{"points":[01]}}` + "\n" +
			`{"type":"DATA","id":"q","payload":{"points":[1,]}}` + "\n" + `{"type":"STATUS","id":"r","x":"\q"}` + "\n" +
			"{\"type\":\"STATUS\",\"id\":\"s\",\"x\":\"a\tb\"}\n",
			[]readerResult{bad(1, ErrNotJSON, TypeData, "p"), bad(2, ErrNotJSON, TypeData, "q"),
				bad(3, ErrNotJSON, TypeStatus, "r"), bad(4, ErrNotJSON, TypeStatus, "s")}},
	}
	readers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"data+EOF": iotest.DataErrReader,
	}
	for _, tc := range tests {
		for rname, wrap := range readers {
			t.Run(tc.name+"/"+rname, func(t *testing.T) {
				lr := NewLineReader(wrap(strings.NewReader(tc.input)), 256)
				got, err := readAll(t, lr)
				if err != io.EOF {
					t.Errorf("final error: got %v, want io.EOF", err)
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("got  %v\nwant %v", got, tc.want)
				}
			})
		}
	}
}

func TestLineErrorMessages(t *testing.T) {
	tests := []struct {
		name, input string
		max         int
		want        string
	}{
		{"too long", "\n\n\n\n\n\n" + strings.Repeat("a", 2000) + "\n", 1000, `isp: line 7: line longer than 1000 bytes`},
		{"missing type", "\n\n" + `{"id":"cfg-1","payload":{}}` + "\n", 0, `isp: line 3 (id "cfg-1"): missing field "type"`},
		{"unknown type", `{"type":"PING","id":"p1"}` + "\n", 0, `isp: line 1 (id "p1"): unknown message type "PING"`},
		{"not JSON", "hello\n", 0, `isp: line 1: not JSON: unexpected 'h', want '{' (a line is one JSON object) at column 1`},
		{"cut off", `{"type":"STATUS"`, 0, `isp: line 1: not JSON: line ends where ',' or '}' was expected at column 17`},
		{"invalid UTF-8", "{\"type\":\"\xc3(\"}\n", 0, `isp: line 1: invalid UTF-8: byte 0xc3 in a string at column 10`},
		{"bad timestamp", `{"type":"STATUS","timestamp":"x"}` + "\n", 0, `isp: line 1: bad field "timestamp": want an integer, got string`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewLineReader(strings.NewReader(tc.input), tc.max).Next()
			if err == nil || err.Error() != tc.want {
				t.Errorf("got %v, want %s", err, tc.want)
			}
		})
	}
}

func TestLineReaderMessageFields(t *testing.T) {
	lr := NewLineReader(strings.NewReader(seedConfigLine+"\n"+`{"type":"STATUS","payload":null}`+"\n"), 0)
	m, err := lr.Next()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"mode":"tcp","address":"127.0.0.1:502","timeout_ms":3000,"interval_ms":2000,"registers":[]}`
	if m.Type != TypeConfig || m.ID != "test-001" || m.Timestamp != 1751200000000000000 || string(m.Payload) != want {
		t.Errorf("got %+v (payload %s)", m, m.Payload)
	}
	kept := m.Clone()
	m, err = lr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != TypeStatus || m.Payload != nil || m.ID != "" || m.Timestamp != 0 {
		t.Errorf("got %+v, want a STATUS without payload, id or timestamp", m)
	}
	if string(kept.Payload) != want {
		t.Errorf("clone changed: got %s, want %s", kept.Payload, want)
	}
}

func TestLineReaderPipelined(t *testing.T) {
	const n = 10000
	var in bytes.Buffer
	pts := benchBatch(3)
	for i := range n {
		if i%2 == 0 {
			in.WriteString(`{"type":"HEARTBEAT","id":"` + strconv.Itoa(i) + `"}` + "\n")
		} else {
			in.Write(appendDataFrame(nil, pts, int64(i)))
		}
	}
	lr := NewLineReader(iotest.HalfReader(&in), 0)
	var got []Point
	for i := range n {
		m, err := lr.Next()
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if i%2 == 0 {
			if m.Type != TypeHeartbeat || m.ID != strconv.Itoa(i) {
				t.Fatalf("line %d: got %s %q", i+1, m.Type, m.ID)
			}
			continue
		}
		if m.Timestamp != int64(i) {
			t.Fatalf("line %d: got timestamp %d, want %d", i+1, m.Timestamp, i)
		}
		if got, err = lr.DecodeData(m, got); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		for j := range got {
			if err := samePoint(&got[j], &pts[j]); err != nil {
				t.Fatalf("line %d point %d: %v", i+1, j, err)
			}
		}
	}
	if _, err := lr.Next(); err != io.EOF {
		t.Errorf("got %v, want io.EOF", err)
	}
}

func TestLineReaderDecodeDataBadPayload(t *testing.T) {
	in := `{"type":"DATA","id":"d1","payload":{"points":[{"value":1}]}}` + "\n" +
		`{"type":"DATA","payload":{"points":[{"key":"k","value":1}]}}` + "\n"
	lr := NewLineReader(strings.NewReader(in), 0)
	m, err := lr.Next()
	if err != nil {
		t.Fatal(err)
	}
	_, err = lr.DecodeData(m, nil)
	var le *LineError
	var de *DecodeError
	if !errors.As(err, &le) || !errors.Is(err, ErrBadPayload) || !errors.As(err, &de) || !errors.Is(err, ErrMissing) {
		t.Fatalf("got %v, want a LineError wrapping ErrBadPayload and a DecodeError", err)
	}
	if le.Line != 1 || le.ID != "d1" || le.Type != TypeData {
		t.Errorf("got line %d id %q type %q, want 1 d1 DATA", le.Line, le.ID, le.Type)
	}
	if want := `isp: line 1 (id "d1"): bad payload: point 0: field "key": missing required field at offset 11`; err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
	m, err = lr.Next()
	if err != nil {
		t.Fatal(err)
	}
	pts, err := lr.DecodeData(m, nil)
	if err != nil || len(pts) != 1 || pts[0].Key != "k" {
		t.Errorf("got %v, %v; want one point k", pts, err)
	}
}

func TestLineReaderReadError(t *testing.T) {
	boom := errors.New("connection reset")
	lr := NewLineReader(io.MultiReader(strings.NewReader(heartbeatLine+"\n"+`{"type":"STA`), iotest.ErrReader(boom)), 0)
	if m, err := lr.Next(); err != nil || m.Type != TypeHeartbeat {
		t.Fatalf("got %v, %v; want the heartbeat", m, err)
	}
	for range 2 { // the half line is dropped, not parsed, and the error sticks
		if _, err := lr.Next(); err != boom {
			t.Fatalf("got %v, want %v", err, boom)
		}
	}
}

func TestLineWriter(t *testing.T) {
	var out bytes.Buffer
	w := NewLineWriter(&out)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Write(&Message{Type: TypeConfig, ID: "c\"1", Timestamp: 7, Payload: []byte("{\n  \"mode\": \"tcp\"\n}")}))
	must(w.Write(&Message{Type: TypeHeartbeat, Timestamp: 8}))
	must(w.Write(&Message{Type: TypeStatus, Timestamp: 9, Payload: []byte("null")}))
	want := `{"type":"CONFIG","id":"c\"1","timestamp":7,"payload":{"mode":"tcp"}}` + "\n" +
		`{"type":"HEARTBEAT","timestamp":8}` + "\n" + `{"type":"STATUS","timestamp":9}` + "\n"
	if out.String() != want {
		t.Errorf("got  %s\nwant %s", out.String(), want)
	}
	if err := w.Write(&Message{Type: TypeData, Payload: []byte("{bad")}); err == nil {
		t.Error("invalid payload: got no error")
	}
	if err := w.Write(&Message{}); err == nil {
		t.Error("no type: got no error")
	}
	out.Reset()
	must(w.Write(&Message{Type: TypeHeartbeat}))
	m, err := NewLineReader(&out, 0).Next()
	if err != nil || m.Timestamp == 0 {
		t.Errorf("zero timestamp: got %v, %v; want it stamped", m, err)
	}
}

type failingWriter struct{ n int }

func (f *failingWriter) Write(p []byte) (int, error) {
	f.n++
	return 3, errors.New("broken pipe")
}

func TestLineWriterBrokenStaysBroken(t *testing.T) {
	fw := &failingWriter{}
	w := NewLineWriter(fw)
	err1 := w.WriteData(benchBatch(2))
	err2 := w.Write(&Message{Type: TypeHeartbeat})
	if err1 == nil || err2 != err1 || fw.n != 1 {
		t.Errorf("got %v then %v after %d writes; want the first error twice after one write", err1, err2, fw.n)
	}
}

func TestLineWriterConcurrent(t *testing.T) {
	var out bytes.Buffer
	w := NewLineWriter(&out)
	pts := benchBatch(5)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				var err error
				if g%2 == 0 {
					err = w.WriteData(pts)
				} else {
					err = w.Write(&Message{Type: TypeHeartbeat, ID: strconv.Itoa(i)})
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	lr := NewLineReader(&out, 0)
	var got []Point
	for n := 0; ; n++ {
		m, err := lr.Next()
		if err == io.EOF {
			if n != 1600 {
				t.Errorf("got %d lines, want 1600", n)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == TypeData {
			if got, err = lr.DecodeData(m, got); err != nil || len(got) != 5 {
				t.Fatalf("got %d points, %v", len(got), err)
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	reg := func(key string, f uint8, q uint16, typ string) Register {
		return Register{Key: key, Function: f, Quantity: q, Type: typ}
	}
	tests := []struct {
		name string
		cfg  ConfigPayload
		want []string // substrings of the error, in order; nil for valid
	}{
		{"seed", ConfigPayload{Mode: "tcp", Address: "127.0.0.1:502", TimeoutMS: 3000, IntervalMS: 2000,
			Registers: []Register{{Key: "temperature", Quantity: 1, Type: "float32", Function: 3, Scale: 0.1, DeviceID: 1}}}, nil},
		{"no registers", ConfigPayload{Mode: "rtu"}, nil},
		{"other mode", ConfigPayload{Mode: "opcua", Registers: []Register{reg("a", 1, 125, "bool")}}, nil},
		{"no mode", ConfigPayload{}, []string{"mode: missing"}},
		{"negative times", ConfigPayload{Mode: "tcp", TimeoutMS: -1, IntervalMS: -2},
			[]string{"timeout_ms: -1 is negative", "interval_ms: -2 is negative"}},
		{"bad registers", ConfigPayload{Mode: "tcp", Registers: []Register{
			reg("a", 3, 2, "float32"), reg("", 3, 1, "int16"), reg("a", 0, 126, "float16"), reg("b", 5, 0, "uint64")}},
			[]string{`registers[1].key: missing`, `registers[2].key: "a" is also registers[0].key`,
				`registers[2].function: 0 is not in 1..4`, `registers[2].quantity: 126 is not in 1..125`,
				`registers[2].type: "float16" is not one of`, `registers[3].function: 5 is not in 1..4`,
				`registers[3].quantity: 0 is not in 1..125`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == nil {
				if err != nil {
					t.Errorf("got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want ErrInvalidConfig", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("got %d errors (%v), want %d", len(lines), err, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("error %d: got %q, want it to contain %q", i, lines[i], w)
				}
			}
		})
	}
}
