package isp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Classes of bad line. A LineError wraps one of them; test with errors.Is.
var (
	ErrLineTooLong    = errors.New("line too long")           // longer than the reader's limit; skipped to its newline
	ErrNotJSON        = errors.New("not JSON")                // not a JSON object (RFC 8259), or data after it
	ErrInvalidUTF8    = errors.New("invalid UTF-8")           // a byte sequence that is not UTF-8
	ErrUnknownType    = errors.New("unknown message type")    // a type that is not one of the Type constants
	ErrMissingField   = errors.New("missing field")           // no "type", or no payload where the type needs one
	ErrBadField       = errors.New("bad field")               // "type" or "id" not a string, "timestamp" not an integer
	ErrBadPayload     = errors.New("bad payload")             // a payload that does not decode as its type says
	ErrUnexpectedType = errors.New("unexpected message type") // a known type sent in the wrong direction
)

// LineError is a line that could not be taken as a message. The connection it came from is still usable.
type LineError struct {
	Line int    // 1-based line number on this connection
	ID   string // the message's id if it could be read, so the caller can answer it
	Type string // the message's type if it could be read
	Err  error  // wraps one of the line sentinels (ErrNotJSON, …)
}

func (e *LineError) Error() string {
	var b strings.Builder
	b.WriteString("isp: line ")
	b.WriteString(strconv.Itoa(e.Line))
	if e.ID != "" {
		b.WriteString(" (id ")
		b.WriteString(strconv.Quote(e.ID))
		b.WriteString(")")
	}
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("bad line")
	}
	return b.String()
}

func (e *LineError) Unwrap() error { return e.Err }

// payloadError is a payload that failed to decode: it is ErrBadPayload and also the decoder's own error
// (a *DecodeError for DATA), so both errors.Is and errors.As find what they look for.
type payloadError struct {
	msg string
	err error
}

func (e *payloadError) Error() string   { return e.msg }
func (e *payloadError) Unwrap() []error { return []error{ErrBadPayload, e.err} }

func badPayload(err error) error {
	return &payloadError{msg: "bad payload: " + strings.TrimPrefix(err.Error(), "isp: "), err: err}
}

func lineErr(kind error, msg string) error { return &detail{msg: msg, kind: kind} }

// A LineReader reads messages, one JSON object per line, from a stream. Lines end in "\n" or "\r\n"; blank
// lines are skipped. It validates each line as JSON (RFC 8259, UTF-8) in one pass without encoding/json, so
// the payload of a DATA line is found without reflection and handed to DecodeData.
//
// A LineReader is not safe for concurrent use.
type LineReader struct {
	rd   io.Reader
	max  int
	buf  []byte
	r, w int // unread data is buf[r:w]
	seen int // bytes of buf[r:w] already searched for a newline
	line int
	skip bool  // discarding the rest of an oversized line
	err  error // the read error, returned once the buffered lines are used up

	msg Message
	dec Decoder
}

// NewLineReader returns a reader of lines of at most maxLine bytes (not counting the line ending);
// maxLine <= 0 means DefaultMaxLineSize. Its buffer starts small and grows up to maxLine as lines need it.
func NewLineReader(r io.Reader, maxLine int) *LineReader {
	if maxLine <= 0 {
		maxLine = DefaultMaxLineSize
	}
	return &LineReader{rd: r, max: maxLine}
}

// Next returns the next message. The Message and its Payload are owned by the reader and valid until the next
// call to Next: Clone what you keep.
//
// An error from the underlying reader (io.EOF, a reset, a deadline) is returned as it is, after the lines read
// before it: the stream is finished. A line that is not a valid message returns a *LineError and the reader
// stays usable: call Next again for the following line. An oversized line is reported as soon as it is known
// to be too long and then skipped up to its newline without being buffered. A last line without a newline
// before io.EOF is read like any other.
func (r *LineReader) Next() (*Message, error) {
	for {
		if r.skip {
			if i := bytes.IndexByte(r.buf[r.r:r.w], '\n'); i >= 0 {
				r.r += i + 1
				r.skip = false
				continue
			}
			r.r, r.w = 0, 0
			if r.err != nil {
				return nil, r.err
			}
			r.fill()
			continue
		}
		if i := bytes.IndexByte(r.buf[r.r+r.seen:r.w], '\n'); i >= 0 {
			end := r.r + r.seen + i
			line := r.buf[r.r:end]
			r.r, r.seen = end+1, 0
			r.line++
			if m, err := r.parse(line); m != nil || err != nil {
				return m, err
			}
			continue
		}
		r.seen = r.w - r.r
		if r.seen > r.max+1 { // too long even if a "\r\n" comes next
			r.line++
			err := r.tooLong(r.buf[r.r:r.w])
			r.r, r.w, r.seen, r.skip = 0, 0, 0, true
			return nil, err
		}
		if r.err != nil {
			if r.err == io.EOF && r.w > r.r {
				line := r.buf[r.r:r.w]
				r.r, r.seen = r.w, 0
				r.line++
				if m, err := r.parse(line); m != nil || err != nil {
					return m, err
				}
			}
			return nil, r.err
		}
		r.fill()
	}
}

// fill reads once into the free space of buf, first moving the unread data to the front and growing buf
// (up to max+2 bytes, room for a full line and its "\r\n") when it is full.
func (r *LineReader) fill() {
	if r.r > 0 {
		r.w = copy(r.buf, r.buf[r.r:r.w])
		r.r = 0
	}
	if r.w == len(r.buf) {
		n := 2 * len(r.buf)
		if n == 0 {
			n = defaultReaderBufferSize
		}
		n = min(n, r.max+2)
		if n > len(r.buf) {
			buf := make([]byte, n)
			copy(buf, r.buf[:r.w])
			r.buf = buf
		}
	}
	n, err := r.rd.Read(r.buf[r.w:])
	if n < 0 || n > len(r.buf)-r.w {
		n, err = 0, io.ErrNoProgress // a broken reader must not make us index out of range
	}
	r.w += n
	if err != nil {
		r.err = err
	}
}

// tooLong builds the error for an oversized line, with the id and type if its beginning holds them.
func (r *LineReader) tooLong(prefix []byte) error {
	var env envelope
	env.scan(prefix) // an error is expected: the line is cut off
	le := &LineError{Line: r.line, Err: lineErr(ErrLineTooLong, "line longer than "+strconv.Itoa(r.max)+" bytes")}
	le.ID, le.Type = env.idString(""), env.typeString()
	return le
}

// parse turns one line (without its "\n") into r.msg. It returns nil, nil for a blank line.
func (r *LineReader) parse(line []byte) (*Message, error) {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if len(line) > r.max {
		return nil, r.tooLong(line)
	}
	var env envelope
	err := env.scan(line)
	if err == nil && env.blank {
		return nil, nil
	}
	id := env.idString(r.msg.ID)
	typ := env.typeString()
	if err == nil {
		err = env.check(typ)
	}
	if err != nil {
		return nil, &LineError{Line: r.line, ID: id, Type: typ, Err: err}
	}
	r.msg = Message{Type: typ, ID: id, Timestamp: env.ts, Payload: env.payload}
	return &r.msg, nil
}

// DecodeData decodes the payload of m, the DATA message Next just returned, with the reader's Decoder,
// appending the points to dst[:0] (see Decoder.DecodeBatch: passing the previous result back in makes steady
// decoding allocation-free). A payload that is not a valid batch gives a *LineError wrapping ErrBadPayload and
// the *DecodeError.
func (r *LineReader) DecodeData(m *Message, dst []Point) ([]Point, error) {
	pts, err := r.dec.DecodeBatch(m.Payload, dst)
	if err != nil {
		return pts, &LineError{Line: r.line, ID: m.ID, Type: m.Type, Err: badPayload(err)}
	}
	return pts, nil
}

// Line returns the number of lines read so far, blank ones included.
func (r *LineReader) Line() int { return r.line }

// envelope is what scanning a line found. Its byte slices alias the line.
type envelope struct {
	blank          bool
	typ, id        []byte // raw string contents, still escaped when typEsc/idEsc
	typEsc, idEsc  bool
	hasTyp, hasID  bool
	ts             int64
	payload        []byte // nil when absent or null
	payloadPresent bool
}

var knownTypes = [...]string{TypeConfig, TypeData, TypeStatus, TypeResponse, TypeHeartbeat, TypeMetrics}

func (e *envelope) typeString() string {
	if !e.hasTyp {
		return ""
	}
	if !e.typEsc {
		for _, t := range knownTypes {
			if string(e.typ) == t {
				return t
			}
		}
		return string(e.typ)
	}
	return unquote(e.typ)
}

// idString returns the id, reusing prev when it is the same so a repeated id costs nothing.
func (e *envelope) idString(prev string) string {
	switch {
	case !e.hasID:
		return ""
	case e.idEsc:
		return unquote(e.id)
	case string(e.id) == prev:
		return prev
	}
	return string(e.id)
}

// unquote decodes the contents of a JSON string with escapes; the scanner has validated it. Rare, so it may
// use encoding/json.
func unquote(raw []byte) string {
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	var s string
	if json.Unmarshal(q, &s) != nil {
		return string(raw)
	}
	return s
}

// check applies the rules that go beyond JSON: a known type, and a payload where the type needs one.
func (e *envelope) check(typ string) error {
	if !e.hasTyp || typ == "" {
		return lineErr(ErrMissingField, `missing field "type"`)
	}
	switch typ {
	case TypeConfig, TypeData, TypeResponse, TypeMetrics:
		if e.payload == nil {
			return lineErr(ErrMissingField, `missing field "payload" in `+typ)
		}
	case TypeStatus, TypeHeartbeat:
	default:
		return lineErr(ErrUnknownType, "unknown message type "+strconv.Quote(truncateString(typ, 64)))
	}
	return nil
}

func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// scanner walks one line as JSON, validating it completely (structure, escapes, numbers, UTF-8).
type scanner struct {
	data []byte
	pos  int
}

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) fail(kind error, what string) error {
	return lineErr(kind, kind.Error()+": "+what+" at column "+strconv.Itoa(s.pos+1))
}

// unexpected reports the byte at pos (or the end of the line) where something else was wanted.
func (s *scanner) unexpected(want string) error {
	if s.pos >= len(s.data) {
		return s.fail(ErrNotJSON, "line ends where "+want+" was expected")
	}
	c := s.data[s.pos]
	if c >= utf8.RuneSelf {
		if r, _ := utf8.DecodeRune(s.data[s.pos:]); r == utf8.RuneError {
			return s.fail(ErrInvalidUTF8, "byte 0x"+strconv.FormatUint(uint64(c), 16))
		}
	}
	return s.fail(ErrNotJSON, "unexpected "+quoteByte(c)+", want "+want)
}

// scan reads one line: a JSON object whose type, id, timestamp and payload members it records. It records
// members as it meets them, so after an error (a line cut off, say) what came before is still known.
func (e *envelope) scan(line []byte) error {
	s := scanner{data: line}
	s.ws()
	if s.pos == len(line) {
		e.blank = true
		return nil
	}
	if line[s.pos] != '{' {
		return s.unexpected("'{' (a line is one JSON object)")
	}
	s.pos++
	s.ws()
	if s.pos < len(line) && line[s.pos] == '}' {
		s.pos++
	} else {
		for {
			s.ws()
			if s.pos >= len(line) || line[s.pos] != '"' {
				return s.unexpected("a member name")
			}
			name, esc, err := s.str()
			if err != nil {
				return err
			}
			if esc { // "typ\u0065" is "type" too
				name = []byte(unquote(name))
			}
			s.ws()
			if s.pos >= len(line) || line[s.pos] != ':' {
				return s.unexpected("':'")
			}
			s.pos++
			s.ws()
			if err := e.member(&s, name); err != nil {
				return err
			}
			s.ws()
			if s.pos < len(line) && line[s.pos] == ',' {
				s.pos++
				continue
			}
			if s.pos < len(line) && line[s.pos] == '}' {
				s.pos++
				break
			}
			return s.unexpected("',' or '}'")
		}
	}
	s.ws()
	if s.pos < len(line) {
		return s.unexpected("the end of the line after the object")
	}
	return nil
}

// member reads the value of the member called name (raw, as it appears between the quotes).
func (e *envelope) member(s *scanner, name []byte) error {
	switch string(name) {
	case "type", "id":
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			start := s.pos
			if err := s.value(1); err != nil {
				return err
			}
			return lineErr(ErrBadField, "bad field "+strconv.Quote(string(name))+": want a string, got "+
				jsonType(s.data[start]))
		}
		v, esc, err := s.str()
		if err != nil {
			return err
		}
		if name[0] == 't' {
			e.typ, e.typEsc, e.hasTyp = v, esc, true
		} else {
			e.id, e.idEsc, e.hasID = v, esc, true
		}
	case "timestamp":
		start := s.pos
		lit, isInt, err := s.number()
		if err != nil {
			if s.pos == start && s.pos < len(s.data) && s.data[s.pos] != '-' && !isDigit(s.data[s.pos]) {
				if err := s.value(1); err != nil {
					return err
				}
				return lineErr(ErrBadField, `bad field "timestamp": want an integer, got `+jsonType(s.data[start]))
			}
			return err
		}
		ts, ok := parseInt(lit)
		if !isInt || !ok {
			return lineErr(ErrBadField, `bad field "timestamp": `+truncate(lit)+" is not an int64 integer")
		}
		e.ts = ts
	case "payload":
		start := s.pos
		if err := s.value(1); err != nil {
			return err
		}
		e.payload, e.payloadPresent = s.data[start:s.pos], true
		if string(e.payload) == "null" {
			e.payload = nil
		}
	default:
		return s.value(1)
	}
	return nil
}

// value skips one JSON value, validating it.
func (s *scanner) value(depth int) error {
	if s.pos >= len(s.data) {
		return s.unexpected("a value")
	}
	switch c := s.data[s.pos]; c {
	case '{', '[':
		if depth > maxNesting {
			return lineErr(ErrBadPayload, "bad payload: nested deeper than "+strconv.Itoa(maxNesting)+" levels")
		}
		s.pos++
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		s.ws()
		if s.pos < len(s.data) && s.data[s.pos] == closer {
			s.pos++
			return nil
		}
		for {
			s.ws()
			if c == '{' {
				if s.pos >= len(s.data) || s.data[s.pos] != '"' {
					return s.unexpected("a member name")
				}
				if _, _, err := s.str(); err != nil {
					return err
				}
				s.ws()
				if s.pos >= len(s.data) || s.data[s.pos] != ':' {
					return s.unexpected("':'")
				}
				s.pos++
				s.ws()
			}
			if err := s.value(depth + 1); err != nil {
				return err
			}
			s.ws()
			if s.pos < len(s.data) && s.data[s.pos] == ',' {
				s.pos++
				continue
			}
			if s.pos < len(s.data) && s.data[s.pos] == closer {
				s.pos++
				return nil
			}
			return s.unexpected("',' or " + quoteByte(closer))
		}
	case '"':
		_, _, err := s.str()
		return err
	case 't':
		return s.word("true")
	case 'f':
		return s.word("false")
	case 'n':
		return s.word("null")
	default:
		if c == '-' || isDigit(c) {
			_, _, err := s.number()
			return err
		}
		return s.unexpected("a value")
	}
}

func (s *scanner) word(w string) error {
	if len(s.data)-s.pos >= len(w) && string(s.data[s.pos:s.pos+len(w)]) == w {
		s.pos += len(w)
		return nil
	}
	return s.fail(ErrNotJSON, "invalid literal, want "+w)
}

// str reads a string at pos and returns its raw contents and whether it holds escapes.
func (s *scanner) str() (raw []byte, escaped bool, err error) {
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return nil, false, s.unexpected("a string")
	}
	s.pos++
	start := s.pos
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		if plain[c] {
			s.pos++
			continue
		}
		switch {
		case c == '"':
			raw = s.data[start:s.pos]
			s.pos++
			return raw, escaped, nil
		case c == '\\':
			escaped = true
			if s.pos+1 >= len(s.data) {
				s.pos++
				return nil, false, s.fail(ErrNotJSON, "unterminated string")
			}
			switch s.data[s.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos += 2
			case 'u':
				if _, ok := hex4(s.data, s.pos+2); !ok {
					return nil, false, s.fail(ErrNotJSON, `invalid \u escape`)
				}
				s.pos += 6
			default:
				return nil, false, s.fail(ErrNotJSON, "invalid escape "+quoteByte(s.data[s.pos+1]))
			}
		case c < 0x20:
			return nil, false, s.fail(ErrNotJSON, "control character "+quoteByte(c)+" in a string")
		default: // c >= 0x80
			r, size := utf8.DecodeRune(s.data[s.pos:])
			if r == utf8.RuneError && size <= 1 {
				return nil, false, s.fail(ErrInvalidUTF8, "byte 0x"+strconv.FormatUint(uint64(c), 16)+" in a string")
			}
			s.pos += size
		}
	}
	return nil, false, s.fail(ErrNotJSON, "unterminated string")
}

// number reads a number at pos and returns its literal and whether it is an integer (no fraction or exponent).
func (s *scanner) number() (lit []byte, isInt bool, err error) {
	start := s.pos
	d := s.data
	if s.pos < len(d) && d[s.pos] == '-' {
		s.pos++
	}
	switch {
	case s.pos < len(d) && d[s.pos] == '0':
		s.pos++
	case s.pos < len(d) && d[s.pos] >= '1' && d[s.pos] <= '9':
		for s.pos < len(d) && isDigit(d[s.pos]) {
			s.pos++
		}
	default:
		return nil, false, s.unexpected("a digit")
	}
	isInt = true
	if s.pos < len(d) && d[s.pos] == '.' {
		isInt = false
		s.pos++
		if s.pos >= len(d) || !isDigit(d[s.pos]) {
			return nil, false, s.unexpected("a digit after '.'")
		}
		for s.pos < len(d) && isDigit(d[s.pos]) {
			s.pos++
		}
	}
	if s.pos < len(d) && (d[s.pos] == 'e' || d[s.pos] == 'E') {
		isInt = false
		s.pos++
		if s.pos < len(d) && (d[s.pos] == '+' || d[s.pos] == '-') {
			s.pos++
		}
		if s.pos >= len(d) || !isDigit(d[s.pos]) {
			return nil, false, s.unexpected("a digit in the exponent")
		}
		for s.pos < len(d) && isDigit(d[s.pos]) {
			s.pos++
		}
	}
	return d[start:s.pos], isInt, nil
}

// A LineWriter writes messages, one line each. It is safe for concurrent use: each call writes its whole line
// with one Write to the underlying writer, so lines never interleave. When the writer has a
// SetWriteDeadline method (a net.Conn), every write must finish within DefaultWriteTimeout, so a peer that
// stopped reading cannot block a caller for ever. After a failed write the stream may hold half a line, so the
// LineWriter is broken: every later call returns the same error.
type LineWriter struct {
	mu       sync.Mutex
	w        io.Writer
	deadline interface{ SetWriteDeadline(time.Time) error }
	timeout  time.Duration
	buf      []byte
	err      error
}

// NewLineWriter returns a LineWriter on w.
func NewLineWriter(w io.Writer) *LineWriter {
	lw := &LineWriter{w: w, timeout: DefaultWriteTimeout}
	lw.deadline, _ = w.(interface{ SetWriteDeadline(time.Time) error })
	return lw
}

// Write writes m as one line. A zero Timestamp is stamped with the current time (m is not changed). The
// payload must be valid JSON; it is compacted, so a pretty-printed payload still makes one line.
func (w *LineWriter) Write(m *Message) error {
	if m.Type == "" {
		return errors.New(`isp: write message: missing field "type"`)
	}
	ts := m.Timestamp
	if ts == 0 {
		ts = time.Now().UnixNano()
	}
	var payload []byte
	if len(m.Payload) > 0 {
		var c bytes.Buffer
		if err := json.Compact(&c, m.Payload); err != nil {
			return errors.New("isp: write " + m.Type + " message: payload: " + err.Error())
		}
		if c.String() != "null" {
			payload = c.Bytes()
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = appendMessage(w.buf[:0], m.Type, m.ID, ts, payload)
	return w.writeLocked(w.buf)
}

// WriteData writes a DATA message holding points, stamped with the current time. It encodes with
// AppendBatch into a reused buffer: no reflection and, in steady state, no allocation.
func (w *LineWriter) WriteData(points []Point) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = appendDataFrame(w.buf[:0], points, time.Now().UnixNano())
	return w.writeLocked(w.buf)
}

// writeLine writes an encoded line (newline included), as the Server does with a frame it encoded once for
// all its clients.
func (w *LineWriter) writeLine(line []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writeLocked(line)
}

func (w *LineWriter) writeLocked(line []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.deadline != nil {
		if err := w.deadline.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
			w.err = err
			return err
		}
	}
	_, err := w.w.Write(line)
	if cap(w.buf) > maxRetainedWriterBufferSize {
		w.buf = nil // one huge message should not pin its buffer for the life of the connection
	}
	if err != nil {
		w.err = err
	}
	return err
}

// appendDataFrame appends a whole DATA line, newline included.
func appendDataFrame(dst []byte, points []Point, ts int64) []byte {
	dst = append(dst, `{"type":"DATA","timestamp":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, `,"payload":`...)
	dst = AppendBatch(dst, points)
	return append(dst, '}', '\n')
}
