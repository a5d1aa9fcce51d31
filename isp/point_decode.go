package isp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Limits on what a Decoder accepts, so a hostile message costs bounded memory and stack.
const (
	MaxPointsPerBatch = 100000 // points in one batch
	MaxTags           = 64     // distinct tags on one point
	MaxDepth          = 32     // nesting of objects and arrays, counting the outermost object as 1
)

const (
	maxInternLen = 64   // longer strings are copied, not interned: they are rarely repeated
	maxInterned  = 4096 // the table is emptied when it reaches this size, so it never grows without bound
)

// Classes of decoding error. A DecodeError wraps one of them; test with errors.Is.
var (
	ErrSyntax   = errors.New("invalid JSON")           // malformed JSON, invalid UTF-8, data after the object
	ErrType     = errors.New("wrong type")             // valid JSON, but the wrong type for the field
	ErrRange    = errors.New("out of range")           // a number too large for its field
	ErrMissing  = errors.New("missing required field") // no "key" (or an empty one), a batch without "points"
	ErrTooLarge = errors.New("too large")              // more than MaxPointsPerBatch points or MaxTags tags
	ErrTooDeep  = errors.New("nested too deeply")      // deeper than MaxDepth
)

// DecodeError says what was wrong with a point or batch and where.
type DecodeError struct {
	Offset int    // byte offset in the input where the problem was found
	Field  string // the point's or batch's field being read ("quality", "tags", "points"), or ""
	Point  int    // index of the point in the batch, or -1 outside a point and for a single point
	Err    error  // the problem; it wraps one of the Err sentinels
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	b.WriteString("isp: ")
	if e.Point >= 0 {
		b.WriteString("point ")
		b.WriteString(strconv.Itoa(e.Point))
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString("field ")
		b.WriteString(strconv.Quote(e.Field))
		b.WriteString(": ")
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("decode error")
	}
	b.WriteString(" at offset ")
	b.WriteString(strconv.Itoa(e.Offset))
	return b.String()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// detail is a specific message ("expected integer") that classifies as one of the sentinels.
type detail struct {
	msg  string
	kind error
}

func (e *detail) Error() string { return e.msg }
func (e *detail) Unwrap() error { return e.kind }

// A Decoder decodes points and batches. It keeps scratch buffers and a table of interned strings between calls,
// so one long-lived Decoder per stream (per actor) decodes a steady flow of batches without allocating: keys,
// device ids, types, sources and tag keys and values of up to 64 bytes are looked up in the table instead of
// copied. String values are not interned, since they are often unique (serial numbers, messages) and would
// push the repeated names out of the table. Before the table, each string is compared with the one the reused
// point slot held (see DecodeBatch), which is what a steady stream of polls repeats.
//
// The zero Decoder is ready to use. A Decoder is not safe for concurrent use. Decoded points never alias the
// input, which may be reused as soon as a call returns.
//
// Decoding follows RFC 8259 with these rules: "key" is required and not empty; "quality" and "timestamp" must be
// integer literals, quality any int32 (whether it is 1, 0 or -1 is the consumer's check; QualityGood when absent, as
// OPC UA reads a missing status code);
// "value" may be any JSON scalar (integer literals that fit int64 become KindInt, other numbers KindFloat, a
// number beyond float64's range is an error); "tags" is an object of strings or null; the other fields are strings.
// Unknown fields are skipped, but must be valid JSON no deeper than MaxDepth. A duplicated field or tag keeps its
// last value (a tag keeps its first position). Invalid UTF-8 is an error; an escaped lone surrogate (\ud800)
// decodes to U+FFFD, as in encoding/json.
type Decoder struct {
	data  []byte // the input of the call in progress; nil between calls so the caller's buffer is not kept
	pos   int
	point int    // index of the point being decoded, for errors
	field string // field being decoded, for errors

	name []byte // scratch for member names
	buf  []byte // scratch for unescaped values
	skip []byte // scratch for strings inside skipped values, so name stays intact for errors
	tags []Tag  // scratch for one point's tags

	strs     map[string]string
	noIntern bool
}

// DecodePoint decodes one JSON point from data into *p, overwriting it but reusing the capacity of p.Tags. Only
// whitespace may follow the object. On error *p is cleared.
func (d *Decoder) DecodePoint(data []byte, p *Point) error {
	d.begin(data)
	d.ws()
	err := d.pointObject(p, 1)
	if err == nil {
		err = d.end()
	}
	if err != nil {
		*p = Point{Tags: p.Tags[:0]}
	}
	d.data = nil
	return err
}

// DecodeBatch decodes {"points":[…]} from data, appending the points to dst[:0] and returning the result. It
// overwrites the points in dst's capacity and reuses their Tags' capacity, so passing the previous result back
// in (and not keeping its points elsewhere) makes steady-state decoding allocation-free. Fields other than
// "points" are skipped; "points": null is an empty batch. On error it returns dst[:0] and the error: a batch is
// taken whole or not at all.
func (d *Decoder) DecodeBatch(data []byte, dst []Point) ([]Point, error) {
	d.begin(data)
	pts := dst[:0]
	err := d.batch(&pts)
	if err == nil {
		err = d.end()
	}
	d.data = nil
	if err != nil {
		return pts[:0], err
	}
	return pts, nil
}

// DecodePoint decodes one point with a fresh Decoder. Use a long-lived Decoder on a hot path.
func DecodePoint(data []byte) (Point, error) {
	d := Decoder{noIntern: true} // a one-off table would cost more than it saves
	var p Point
	err := d.DecodePoint(data, &p)
	return p, err
}

// DecodeBatch decodes a batch with a fresh Decoder. Use a long-lived Decoder on a hot path.
func DecodeBatch(data []byte) ([]Point, error) {
	var d Decoder
	return d.DecodeBatch(data, nil)
}

func (d *Decoder) begin(data []byte) {
	d.data, d.pos, d.point, d.field = data, 0, -1, ""
}

// end checks that only whitespace is left.
func (d *Decoder) end() error {
	d.ws()
	if d.pos < len(d.data) {
		return d.errAt(d.pos, ErrSyntax, "data after the end of the object")
	}
	return nil
}

func (d *Decoder) batch(pts *[]Point) error {
	d.ws()
	start := d.pos
	if d.peek() != '{' {
		return d.wrongType("an object")
	}
	d.pos++
	have := false
	for first := true; ; first = false {
		name, done, err := d.member(first, &d.name)
		if err != nil {
			return err
		}
		if done {
			break
		}
		if string(name) == "points" {
			have = true
			d.field = "points"
			err = d.points(pts)
		} else {
			err = d.skipField(name, 2)
		}
		if err != nil {
			return err
		}
		d.field = ""
	}
	if !have {
		d.field = "points"
		return d.errAt(start, ErrMissing, "missing required field")
	}
	return nil
}

func (d *Decoder) points(dst *[]Point) error {
	pts := (*dst)[:0]
	defer func() { *dst = pts }()
	if d.peek() == 'n' {
		return d.literal("null")
	}
	if d.peek() != '[' {
		return d.wrongType("an array of points")
	}
	d.pos++
	for first := true; ; first = false {
		done, err := d.element(first)
		if err != nil || done {
			return err
		}
		if len(pts) == MaxPointsPerBatch {
			return d.errAt(d.pos, ErrTooLarge, "more than "+strconv.Itoa(MaxPointsPerBatch)+" points")
		}
		// Reuse the slot, and with it the capacity of its Tags, when dst has room.
		if len(pts) < cap(pts) {
			pts = pts[:len(pts)+1]
		} else {
			pts = append(pts, Point{})
		}
		d.point = len(pts) - 1
		if err := d.pointObject(&pts[len(pts)-1], 3); err != nil {
			return err
		}
		d.point, d.field = -1, "points"
	}
}

// pointObject decodes the object at d.pos, at nesting depth depth, into *p.
func (d *Decoder) pointObject(p *Point, depth int) error {
	start := d.pos
	if d.peek() != '{' {
		return d.wrongType("a point object")
	}
	d.pos++
	// The slot's previous strings are the first guess for its new ones: a stream of batches from one poll repeats
	// them slot by slot, and comparing is cheaper than the intern table.
	old := *p
	tags := p.Tags[:0]
	*p = Point{Tags: tags}
	haveKey, keyAt := false, start
	quality, qualityAt := int64(QualityGood), 0
	for first := true; ; first = false {
		name, err := d.fastMember(first), error(nil)
		var b []byte // the name as member read it, for an unknown field's errors
		if name == "" {
			var done bool
			b, done, err = d.member(first, &d.name)
			if err != nil {
				return err
			}
			if done {
				break
			}
			name = fieldName(b)
		}
		switch name {
		case "device_id":
			d.field = "device_id"
			p.DeviceID, err = d.stringField(old.DeviceID)
		case "key":
			d.field = "key"
			haveKey, keyAt = true, d.pos
			p.Key, err = d.stringField(old.Key)
		case "value":
			d.field = "value"
			p.Value, err = d.value(old.Value)
		case "type":
			d.field = "type"
			p.Type, err = d.stringField(old.Type)
		case "quality":
			d.field = "quality"
			qualityAt = d.pos
			quality, err = d.integer() // checked below, once the last duplicate has been read
		case "timestamp":
			d.field = "timestamp"
			p.Timestamp, err = d.integer()
		case "tags":
			d.field = "tags"
			if err = d.tagObject(old.Tags); err == nil {
				p.Tags = append(tags, d.tags...)
			}
		case "source":
			d.field = "source"
			p.Source, err = d.stringField(old.Source)
		default:
			err = d.skipField(b, depth+1)
		}
		if err != nil {
			return err
		}
		d.field = ""
	}
	if !haveKey {
		d.field = "key"
		return d.errAt(start, ErrMissing, "missing required field")
	}
	if p.Key == "" {
		d.field = "key"
		return d.errAt(keyAt, ErrMissing, "empty key")
	}
	// Only the representable range is checked here: whether a quality code is one the gateway knows (1, 0, -1) is
	// the consumer's call, so one odd point does not cost a whole DATA frame or batch its other points.
	if quality < math.MinInt32 || quality > math.MaxInt32 {
		d.field = "quality"
		return d.errAt(qualityAt, ErrRange, "quality "+strconv.FormatInt(quality, 10)+" is out of range")
	}
	p.Quality = int(quality)
	return nil
}

// pointFields are the names fastMember knows, each with the quote and colon that end it.
var pointFields = [...]string{
	"device_id\":", "key\":", "value\":", "type\":", "quality\":", "timestamp\":", "tags\":", "source\":",
}

// fastMember steps over the separator and name of the next member of a point when it is one of the point's
// fields written as the encoder writes it (no whitespace around the separator, no escapes), returning the field's
// name with d.pos at its value. For anything else it returns "" with d.pos unchanged, and member reads it, so
// every error is member's. It saves scanning and comparing the names, which were a fifth of decoding.
func (d *Decoder) fastMember(first bool) string {
	data, i := d.data, d.pos
	if !first {
		if i >= len(data) || data[i] != ',' {
			return ""
		}
		i++
	}
	if i+2 >= len(data) || data[i] != '"' {
		return ""
	}
	var k int
	switch data[i+1] {
	case 'd':
		k = 0
	case 'k':
		k = 1
	case 'v':
		k = 2
	case 'q':
		k = 4
	case 's':
		k = 7
	case 't':
		switch data[i+2] {
		case 'y':
			k = 3
		case 'i':
			k = 5
		case 'a':
			k = 6
		default:
			return ""
		}
	default:
		return ""
	}
	f := pointFields[k]
	rest := data[i+1:]
	if len(rest) >= 16 {
		// Two word compares instead of a call to memequal (which was most of this function's time).
		w := &fieldWords[k]
		if binary.LittleEndian.Uint64(rest)&w.m0 != w.w0 || binary.LittleEndian.Uint64(rest[8:])&w.m1 != w.w1 {
			return ""
		}
	} else if len(rest) < len(f) || string(rest[:len(f)]) != f {
		return ""
	}
	d.pos = i + 1 + len(f)
	d.ws()
	return f[:len(f)-2]
}

// fieldWords are pointFields as two masked little-endian words each (the names are at most 16 bytes).
var fieldWords = func() (t [len(pointFields)]struct{ w0, m0, w1, m1 uint64 }) {
	for k, f := range pointFields {
		var b, m [16]byte
		copy(b[:], f)
		for i := range len(f) {
			m[i] = 0xff
		}
		t[k].w0, t[k].m0 = binary.LittleEndian.Uint64(b[:]), binary.LittleEndian.Uint64(m[:])
		t[k].w1, t[k].m1 = binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(m[8:])
	}
	return t
}()

// fieldName is the point field named b, or "\x00" for any other name: no field has it, so pointObject's switch
// takes it to the default case (an unknown field), whatever the name was (even "\u0000").
func fieldName(b []byte) string {
	for _, f := range pointFields {
		if string(b) == f[:len(f)-2] {
			return f[:len(f)-2]
		}
	}
	return "\x00"
}

// tagObject decodes a tags object (or null) into d.tags; hints are the slot's previous tags.
func (d *Decoder) tagObject(hints []Tag) error {
	d.tags = d.tags[:0]
	switch d.peek() {
	case 'n':
		return d.literal("null")
	case '{':
	default:
		return d.wrongType("an object of strings")
	}
	d.pos++
	for first := true; ; first = false {
		at := d.pos
		name, done, err := d.member(first, &d.name)
		if err != nil || done {
			return err
		}
		var hint Tag
		if n := len(d.tags); n < len(hints) {
			hint = hints[n]
		}
		k := d.reuse(name, hint.Key)
		v, err := d.stringField(hint.Value)
		if err != nil {
			return err
		}
		dup := false
		for i := range d.tags {
			if d.tags[i].Key == k {
				d.tags[i].Value, dup = v, true
				break
			}
		}
		if !dup {
			if len(d.tags) == MaxTags {
				return d.errAt(at, ErrTooLarge, "more than "+strconv.Itoa(MaxTags)+" tags")
			}
			d.tags = append(d.tags, Tag{Key: k, Value: v})
		}
	}
}

// skipField skips the value of an unknown field, naming the field if the value is bad.
func (d *Decoder) skipField(name []byte, depth int) error {
	d.field = ""
	err := d.skipValue(depth)
	if de, ok := err.(*DecodeError); ok && de.Field == "" {
		de.Field = string(name)
	}
	return err
}

// skipValue checks and steps over any JSON value at nesting depth depth.
func (d *Decoder) skipValue(depth int) error {
	switch c := d.peek(); c {
	case '{', '[':
		if depth > MaxDepth {
			return d.errAt(d.pos, ErrTooDeep, "nested deeper than "+strconv.Itoa(MaxDepth)+" levels")
		}
		d.pos++
		for first := true; ; first = false {
			var done bool
			var err error
			if c == '{' {
				_, done, err = d.member(first, &d.skip)
			} else {
				done, err = d.element(first)
			}
			if err != nil || done {
				return err
			}
			if err := d.skipValue(depth + 1); err != nil {
				return err
			}
		}
	case '"':
		_, err := d.str(&d.skip)
		return err
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	default:
		if c == '-' || isDigit(c) {
			_, _, err := d.number()
			return err
		}
		return d.unexpected("a value")
	}
}

// member steps to the next member of an object whose '{' has been read: first says whether one has been read
// before. It returns the member's name with d.pos at its value, or done at the closing '}'. The name is only
// valid until the next use of buf.
func (d *Decoder) member(first bool, buf *[]byte) (name []byte, done bool, err error) {
	d.ws()
	switch c := d.peek(); {
	case c == '}':
		d.pos++
		return nil, true, nil
	case first:
	case c == ',':
		d.pos++
		d.ws()
	default:
		return nil, false, d.unexpected("',' or '}'")
	}
	if d.peek() != '"' {
		return nil, false, d.unexpected("a string (object key)")
	}
	if name, err = d.str(buf); err != nil {
		return nil, false, err
	}
	d.ws()
	if d.peek() != ':' {
		return nil, false, d.unexpected("':'")
	}
	d.pos++
	d.ws()
	return name, false, nil
}

// element steps to the next element of an array whose '[' has been read, or reports done at the closing ']'.
func (d *Decoder) element(first bool) (done bool, err error) {
	d.ws()
	switch c := d.peek(); {
	case c == ']':
		d.pos++
		return true, nil
	case first:
	case c == ',':
		d.pos++
		d.ws()
	default:
		return false, d.unexpected("',' or ']'")
	}
	return false, nil
}

// value decodes a point's value: a JSON scalar. A string equal to the slot's old one reuses it.
func (d *Decoder) value(old Value) (Value, error) {
	switch c := d.peek(); c {
	case '"':
		s, err := d.str(&d.buf)
		if err != nil {
			return Value{}, err
		}
		if old.kind == KindString && string(s) == old.str {
			return old, nil
		}
		return String(string(s)), nil
	case 't':
		return Bool(true), d.literal("true")
	case 'f':
		return Bool(false), d.literal("false")
	case 'n':
		return Value{}, d.literal("null")
	default:
		if c != '-' && !isDigit(c) {
			return Value{}, d.wrongType("a number, string, bool or null")
		}
	}
	if v, ok := d.fastNumber(); ok {
		return v, nil
	}
	return d.numberValue()
}

// numberValue is value's general path for a number: scan, then convert. fastNumber gives the same for what it takes.
func (d *Decoder) numberValue() (Value, error) {
	at := d.pos
	lit, isInt, err := d.number()
	if err != nil {
		return Value{}, err
	}
	if isInt {
		if i, ok := parseInt(lit); ok {
			return Int(i), nil
		}
	}
	if f, ok := parseFloatExact(lit); ok {
		return Float(f), nil
	}
	// string(lit) does not allocate: ParseFloat does not keep it, so the compiler converts on the stack.
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return Value{}, d.errAt(at, ErrRange, "number "+truncate(lit)+" is beyond float64's range")
	}
	return Float(f), nil
}

// integer decodes an integer literal that fits int64.
func (d *Decoder) integer() (int64, error) {
	if i, ok := d.fastInt(); ok {
		return i, nil
	}
	return d.slowInteger()
}

// slowInteger is integer's general path: scan, then convert. fastInt gives the same for what it takes.
func (d *Decoder) slowInteger() (int64, error) {
	at := d.pos
	if c := d.peek(); c != '-' && !isDigit(c) {
		return 0, d.wrongType("integer")
	}
	lit, isInt, err := d.number()
	if err != nil {
		return 0, err
	}
	if !isInt {
		return 0, d.errAt(at, ErrType, "expected integer, got "+truncate(lit))
	}
	i, ok := parseInt(lit)
	if !ok {
		return 0, d.errAt(at, ErrRange, "integer "+truncate(lit)+" is beyond int64's range")
	}
	return i, nil
}

// stringField decodes a JSON string, returning hint when it has the same text, else the interned string.
func (d *Decoder) stringField(hint string) (string, error) {
	if d.peek() != '"' {
		return "", d.wrongType("a string")
	}
	s, err := d.str(&d.buf)
	if err != nil {
		return "", err
	}
	return d.reuse(s, hint), nil
}

// reuse returns hint when b holds the same text, else the interned b.
func (d *Decoder) reuse(b []byte, hint string) string {
	if string(b) == hint {
		return hint
	}
	return d.intern(b)
}

// intern returns b as a string, from the table when it has been seen before. The lookup with string(b) as the
// map key does not allocate; only a new string does.
func (d *Decoder) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > maxInternLen || d.noIntern {
		return string(b)
	}
	if s, ok := d.strs[string(b)]; ok {
		return s
	}
	if d.strs == nil {
		d.strs = make(map[string]string, 256)
	} else if len(d.strs) >= maxInterned {
		clear(d.strs)
	}
	s := string(b)
	d.strs[s] = s
	return s
}

// str reads the JSON string at d.pos (its opening quote) and returns its content: a subslice of the input when
// it has no escapes, else the unescaped text in *buf. Either is valid only until the input or *buf is reused.
func (d *Decoder) str(buf *[]byte) ([]byte, error) {
	data := d.data
	start := d.pos + 1
	high := false
	for i := start; i < len(data); i++ {
		c := data[i]
		if plain[c] {
			continue
		}
		switch {
		case c == '"':
			s := data[start:i]
			if high && !utf8.Valid(s) {
				return nil, d.errAt(start+invalidUTF8(s), ErrSyntax, "invalid UTF-8 in string")
			}
			d.pos = i + 1
			return s, nil
		case c == '\\':
			if high && !utf8.Valid(data[start:i]) {
				return nil, d.errAt(start+invalidUTF8(data[start:i]), ErrSyntax, "invalid UTF-8 in string")
			}
			return d.unescape(start, i, buf)
		case c < 0x20:
			return nil, d.errAt(i, ErrSyntax, "control character "+quoteByte(c)+" in string")
		case c >= utf8.RuneSelf:
			high = true
		}
	}
	return nil, d.errAt(len(data), ErrSyntax, "unexpected end of input in string")
}

// unescape continues str from the first backslash at i, writing the string into *buf.
func (d *Decoder) unescape(start, i int, buf *[]byte) ([]byte, error) {
	data := d.data
	b := append((*buf)[:0], data[start:i]...)
	defer func() { *buf = b[:0] }() // keep the grown capacity
	for i < len(data) {
		c := data[i]
		switch {
		case c == '"':
			d.pos = i + 1
			return b, nil
		case c == '\\':
			if i+1 >= len(data) {
				return nil, d.errAt(len(data), ErrSyntax, "unexpected end of input in string")
			}
			switch e := data[i+1]; e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, ok := hex4(data, i+2)
				if !ok {
					return nil, d.errAt(i, ErrSyntax, `invalid \u escape`)
				}
				i += 6
				if utf16.IsSurrogate(r) {
					// A pair is two escapes; anything else is a lone surrogate, which has no UTF-8 form.
					r2 := rune(-1)
					if i+1 < len(data) && data[i] == '\\' && data[i+1] == 'u' {
						r2, _ = hex4(data, i+2)
					}
					if r = utf16.DecodeRune(r, r2); r != utf8.RuneError {
						i += 6
					}
				}
				b = utf8.AppendRune(b, r)
				continue
			default:
				return nil, d.errAt(i, ErrSyntax, "invalid escape "+strconv.Quote(string(data[i:i+2])))
			}
			i += 2
		case c < 0x20:
			return nil, d.errAt(i, ErrSyntax, "control character "+quoteByte(c)+" in string")
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				return nil, d.errAt(i, ErrSyntax, "invalid UTF-8 in string")
			}
			b = append(b, data[i:i+size]...)
			i += size
		}
	}
	return nil, d.errAt(len(data), ErrSyntax, "unexpected end of input in string")
}

// number scans the JSON number at d.pos and returns its text, and whether it is an integer literal (no fraction,
// no exponent).
func (d *Decoder) number() (lit []byte, isInt bool, err error) {
	data := d.data
	start := d.pos
	i := start
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i >= len(data):
		return nil, false, d.errAt(i, ErrSyntax, "unexpected end of input in number")
	case data[i] == '0':
		i++
		if i < len(data) && isDigit(data[i]) {
			return nil, false, d.errAt(start, ErrSyntax, "leading zero in number")
		}
	case isDigit(data[i]):
		for i++; i < len(data) && isDigit(data[i]); i++ {
		}
	default:
		return nil, false, d.errAt(i, ErrSyntax, "invalid character "+quoteByte(data[i])+" in number")
	}
	isInt = true
	if i < len(data) && data[i] == '.' {
		isInt = false
		i++
		if i >= len(data) || !isDigit(data[i]) {
			return nil, false, d.errAt(i, ErrSyntax, "want a digit after the decimal point")
		}
		for i++; i < len(data) && isDigit(data[i]); i++ {
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		isInt = false
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || !isDigit(data[i]) {
			return nil, false, d.errAt(i, ErrSyntax, "want a digit in the exponent")
		}
		for i++; i < len(data) && isDigit(data[i]); i++ {
		}
	}
	d.pos = i
	return data[start:i], isInt, nil
}

// fastInt reads, in one pass, an integer literal of at most 19 digits that fits int64 and is followed by neither a fraction nor an exponent. Anything else, including every malformed number, it leaves to number
// and parseInt (ok false, d.pos unchanged), so errors are theirs.
func (d *Decoder) fastInt() (int64, bool) {
	data := d.data
	i := d.pos
	neg := i < len(data) && data[i] == '-'
	if neg {
		i++
	}
	start := i
	var u uint64
	for ; i < len(data) && isDigit(data[i]); i++ {
		u = u*10 + uint64(data[i]-'0')
	}
	n := i - start
	if n == 0 || n > 19 || (data[start] == '0' && n > 1) { // 19 digits stay below 2^64 (a timestamp in ns has 19)
		return 0, false
	}
	if i < len(data) && (data[i] == '.' || data[i] == 'e' || data[i] == 'E') {
		return 0, false
	}
	switch {
	case neg && u > 1<<63, !neg && u > 1<<63-1:
		return 0, false // integer() reports the range
	case neg:
		d.pos = i
		return int64(-u), true
	}
	d.pos = i
	return int64(u), true
}

// fastNumber reads, in one pass, what sensors send: an integer of at most 18 digits, or a decimal fraction without
// exponent of at most 19 digits; when its digits fit 2^53 (and its fraction has at most 22), one correctly
// rounded division converts it exactly (Clinger's fast path, as parseFloatExact), else strconv does. It gives the same Value as number followed by
// parseInt or parseFloatExact; the rest (and every malformed number) it leaves to them (ok false, d.pos unchanged).
func (d *Decoder) fastNumber() (Value, bool) {
	data := d.data
	i := d.pos
	neg := i < len(data) && data[i] == '-'
	if neg {
		i++
	}
	start := i
	var mant uint64
	for ; i < len(data) && isDigit(data[i]); i++ {
		mant = mant*10 + uint64(data[i]-'0')
	}
	n := i - start
	if n == 0 || n > 18 || (data[start] == '0' && n > 1) {
		return Value{}, false
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		return Value{}, false
	}
	if i >= len(data) || data[i] != '.' {
		d.pos = i
		if neg {
			return Int(-int64(mant)), true
		}
		return Int(int64(mant)), true
	}
	i++
	fracStart := i
	for ; i < len(data) && isDigit(data[i]); i++ {
		mant = mant*10 + uint64(data[i]-'0')
	}
	frac := i - fracStart
	if frac == 0 || n+frac > 19 || frac >= len(pow10) {
		return Value{}, false
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		return Value{}, false
	}
	if mant > 1<<53 {
		// A valid literal of at most 19 digits that the fast path cannot convert exactly, such as a float32
		// reading widened to float64 (20.100000381469727): straight to strconv, which is what value would end
		// with after number and parseFloatExact rescanned it. It cannot be out of range.
		f, err := strconv.ParseFloat(string(data[d.pos:i]), 64)
		if err != nil {
			return Value{}, false
		}
		d.pos = i
		return Float(f), true
	}
	d.pos = i
	f := float64(mant) / pow10[frac]
	if neg {
		f = -f
	}
	return Float(f), true
}

// literal steps over true, false or null.
func (d *Decoder) literal(word string) error {
	rest := d.data[d.pos:]
	if len(rest) >= len(word) && string(rest[:len(word)]) == word {
		d.pos += len(word)
		return nil
	}
	for i := 0; i < len(rest) && i < len(word); i++ {
		if rest[i] != word[i] {
			d.pos += i
			return d.unexpected("'" + word[i:i+1] + "' of " + word)
		}
	}
	return d.errAt(len(d.data), ErrSyntax, "unexpected end of input in "+word)
}

// ws skips whitespace. The encoder writes none, so the common case is one comparison, inlined.
func (d *Decoder) ws() {
	if d.pos < len(d.data) && d.data[d.pos] > ' ' {
		return
	}
	d.wsSlow()
}

//go:noinline // keeps ws small enough to inline everywhere
func (d *Decoder) wsSlow() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// peek returns the byte at d.pos, or 0 at the end (0 is never valid there either, and errors check the position).
func (d *Decoder) peek() byte {
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

func (d *Decoder) errAt(offset int, kind error, msg string) error {
	return &DecodeError{Offset: offset, Field: d.field, Point: d.point, Err: &detail{msg: msg, kind: kind}}
}

// unexpected reports a syntax error at d.pos, where want was expected.
func (d *Decoder) unexpected(want string) error {
	if d.pos >= len(d.data) {
		return d.errAt(d.pos, ErrSyntax, "unexpected end of input, want "+want)
	}
	return d.errAt(d.pos, ErrSyntax, "invalid character "+quoteByte(d.data[d.pos])+", want "+want)
}

// wrongType reports that the value at d.pos is not what the field takes: a type error when a JSON value starts
// there, else a syntax error.
func (d *Decoder) wrongType(want string) error {
	switch c := d.peek(); {
	case c == '{' || c == '[' || c == '"' || c == 't' || c == 'f' || c == 'n' || c == '-' || isDigit(c):
		return d.errAt(d.pos, ErrType, "expected "+want+", got "+jsonType(c))
	}
	return d.unexpected(want)
}

func jsonType(c byte) string {
	switch c {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// plain marks the bytes a JSON string holds as they are: not a quote, backslash, control character or part of
// a multi-byte sequence.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// parseInt converts an integer literal (already checked by number) to int64, reporting false when it does not fit.
func parseInt(lit []byte) (int64, bool) {
	neg := lit[0] == '-'
	digits := lit
	if neg {
		digits = lit[1:]
	}
	if len(digits) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range digits {
		u = u*10 + uint64(c-'0') // 19 digits stay below 2^64
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return int64(-u), true
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

// pow10 holds the powers of ten that float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseFloatExact converts a number literal (already checked by number) the quick way when that is exact: a
// mantissa of at most 2^53 scaled by at most 10^22 is one correctly rounded multiplication or division (Clinger's
// fast path, which covers what sensors send, such as 25.53). It reports false for the rest, left to strconv.
func parseFloatExact(lit []byte) (float64, bool) {
	i, neg := 0, false
	if lit[0] == '-' {
		i, neg = 1, true
	}
	var mant uint64
	exp, digits := 0, 0
	for ; i < len(lit) && isDigit(lit[i]); i++ {
		mant = mant*10 + uint64(lit[i]-'0')
		digits++
	}
	if i < len(lit) && lit[i] == '.' {
		for i++; i < len(lit) && isDigit(lit[i]); i++ {
			mant = mant*10 + uint64(lit[i]-'0')
			digits++
			exp--
		}
	}
	if digits > 19 { // mant may have overflowed
		return 0, false
	}
	if i < len(lit) { // exponent
		i++
		eneg := false
		switch lit[i] {
		case '-':
			eneg = true
			i++
		case '+':
			i++
		}
		e := 0
		for ; i < len(lit); i++ {
			if e > 1000 {
				return 0, false
			}
			e = e*10 + int(lit[i]-'0')
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if mant > 1<<53 {
		return 0, false
	}
	f := float64(mant)
	switch {
	case exp == 0:
	case exp > 0 && exp < len(pow10):
		f *= pow10[exp]
	case exp < 0 && -exp < len(pow10):
		f /= pow10[-exp]
	default:
		return 0, false
	}
	if neg {
		f = -f
	}
	return f, true
}

func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return -1, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return -1, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// invalidUTF8 returns the offset of the first invalid byte sequence in s.
func invalidUTF8(s []byte) int {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(s)
}

func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("0x%02x", c)
}

// truncate quotes a literal for an error message, shortened so a hostile 1 MB number makes a short message.
func truncate(lit []byte) string {
	if len(lit) > 24 {
		return string(lit[:24]) + "…"
	}
	return string(lit)
}
