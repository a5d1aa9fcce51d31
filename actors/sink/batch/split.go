package batch

import (
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/iotgw/iotgw/isp"
)

// Splitting a batch {"points":[…]} into its elements as the bytes they were sent as, without decoding them: the
// sinks that write a point as its JSON (the console's json format, the file sink's jsonl) write those bytes
// instead of decoding the point and encoding it again, which cost them three quarters of their CPU per point.
// Two strengths of check share the walk over the batch:
//
//   - Split checks structure only (an array of objects, each printable as one line): the console prints what
//     its publisher sent.
//   - SplitPoints proves more: every element is byte for byte what isp.AppendPoint writes for the point that
//     isp's decoder reads from it, so writing the element is writing decode+encode's output. That is what a
//     file must hold (a file is data, read back by programs that expect the encoder's form).
//
// Both decline — and the caller decodes as before — on anything they cannot prove; neither ever gives a
// partial answer.

// Split finds each element of a batch {"points":[…]} without decoding it. It accepts only what keeps the
// output one JSON object per line: the batch object with the one member "points", an array of objects, strings
// closed, brackets balanced (at most maxSplitDepth deep) and no control byte anywhere inside an element (so no
// element can print as two lines). Anything else returns false having no spans. It checks structure, not
// meaning: an element is as its publisher encoded it.
//
// spans is scratch space; the elements are data[s[0]:s[1]] for each returned span.
func Split(data []byte, spans [][2]int) ([][2]int, bool) {
	spans = spans[:0]
	ok := elements(data, func(start int) (int, bool) {
		end, ok := objectEnd(data, start)
		if ok {
			spans = append(spans, [2]int{start, end})
		}
		return end, ok
	})
	if !ok {
		return spans[:0], false
	}
	return spans, true
}

// Element is one element of a batch that SplitPoints proved to be in the encoder's form.
type Element struct {
	Start, End int // data[Start:End] is the point's JSON: exactly isp.AppendPoint of its decoding
	// data[DeviceStart:DeviceEnd] is its device_id as it decodes (SplitPoints declines a device_id with an
	// escape, which no valid device id has); empty when the point has none.
	DeviceStart, DeviceEnd int
	Timestamp              int64 // its timestamp, as decoded
	// What a reader of the point's other fields needs without decoding it (the rule engine's path, actors/rule):
	// data[KeyStart:KeyEnd] and data[TypeStart:TypeEnd] are the key and type as JSON strings (with their quotes;
	// the type's span is empty when the point has none), KeyEscaped and TypeEscaped say whether they hold an
	// escape (so their bytes are not their text); data[ValueStart:ValueEnd] is the value's JSON; Quality is the
	// quality as decoded; data[TimestampAt:End] is the rest of the point from its "timestamp" member on
	// (`,"timestamp":…}`).
	KeyStart, KeyEnd, TypeStart, TypeEnd, ValueStart, ValueEnd, TimestampAt int
	KeyEscaped, TypeEscaped                                                 bool
	Quality                                                                 int
}

// SplitPoints finds each point of a batch {"points":[…]} and proves that its bytes are what isp.AppendPoint
// writes for the point isp.Decoder reads from them (and that the decoder reads the whole batch without an
// error). It declines (false, no points) whatever it cannot prove; the caller then decodes. What it accepts is
// the form the processing stage's encoder writes: the members in AppendPoint's order with nothing between them,
// the optional ones only when not empty, no other member, strings escaped exactly as appendString escapes
// them (no \/, no \u for what has a short escape or needs none, lower-case hex), valid UTF-8, integers without
// a leading zero or "-0", floats in the shortest form that reads back (see number), tags without a duplicate
// key. The envelope around the elements may have any JSON whitespace: it is not written.
//
// dst is scratch space.
func SplitPoints(data []byte, dst []Element) ([]Element, bool) {
	dst = dst[:0]
	ok := elements(data, func(start int) (int, bool) {
		if len(dst) == isp.MaxPointsPerBatch {
			return 0, false // the decoder refuses the batch
		}
		dst = append(dst, Element{})
		return canonicalPoint(data, start, &dst[len(dst)-1])
	})
	if !ok {
		return dst[:0], false
	}
	return dst, true
}

// OnePoint is SplitPoints for the body of a point subject: a bare point, with JSON whitespace around it.
func OnePoint(data []byte) (Element, bool) {
	var p Element
	i := skipWS(data, 0)
	end, ok := canonicalPoint(data, i, &p)
	if !ok || skipWS(data, end) != len(data) {
		return Element{}, false
	}
	return p, true
}

// elements walks the batch envelope; element is called at the start of each element ('{' unchecked) and
// returns the index just past it.
func elements(data []byte, element func(start int) (int, bool)) bool {
	i := skipWS(data, 0)
	const head = `"points"`
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipWS(data, i+1)
	if len(data)-i < len(head) || string(data[i:i+len(head)]) != head {
		return false
	}
	i = skipWS(data, i+len(head))
	if i >= len(data) || data[i] != ':' {
		return false
	}
	i = skipWS(data, i+1)
	if i >= len(data) || data[i] != '[' {
		return false
	}
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == ']' {
		i++
	} else {
		for {
			if i >= len(data) || data[i] != '{' {
				return false
			}
			end, ok := element(i)
			if !ok {
				return false
			}
			i = skipWS(data, end)
			if i >= len(data) {
				return false
			}
			if data[i] == ']' {
				i++
				break
			}
			if data[i] != ',' {
				return false
			}
			i = skipWS(data, i+1)
		}
	}
	i = skipWS(data, i)
	if i >= len(data) || data[i] != '}' {
		return false
	}
	return skipWS(data, i+1) == len(data)
}

// maxSplitDepth bounds the nesting inside one element for Split (a point's tags are one level deep).
const maxSplitDepth = 8

// objectEnd returns the index just past the object that starts at data[start] ('{').
func objectEnd(data []byte, start int) (int, bool) {
	var open [maxSplitDepth]byte // the closing bracket each open one wants
	depth := 0
	for i := start; i < len(data); i++ {
		c := data[i]
		switch {
		case c < 0x20:
			return 0, false
		case c == '"':
			for i++; ; i++ {
				for i < len(data) && plain[data[i]] { // the bytes that need no look: most of a string
					i++
				}
				if i >= len(data) || data[i] < 0x20 {
					return 0, false
				}
				if data[i] == '\\' {
					i++ // the escaped byte, whatever it is, cannot close the string
					if i < len(data) && data[i] < 0x20 {
						return 0, false
					}
					continue
				}
				break // data[i] is the closing quote
			}
		case c == '{' || c == '[':
			if depth == maxSplitDepth {
				return 0, false
			}
			open[depth] = c + 2 // '{'+2 is '}', '['+2 is ']'
			depth++
		case c == '}' || c == ']':
			if depth == 0 || open[depth-1] != c {
				return 0, false
			}
			if depth--; depth == 0 {
				return i + 1, true
			}
		}
	}
	return 0, false
}

// plain marks the bytes of a string that neither end it nor escape nor break a line (bytes above 0x7f too:
// Split does not look at UTF-8; canonicalString does).
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func skipWS(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// lit reports whether data[i:] starts with s.
func lit(data []byte, i int, s string) bool {
	return len(data)-i >= len(s) && string(data[i:i+len(s)]) == s
}

// canonicalPoint checks the point object at data[start] ('{') against isp.AppendPoint's form, member by member
// in its order, and returns the index just past it. It fills p.
func canonicalPoint(data []byte, start int, p *Element) (int, bool) {
	*p = Element{Start: start}
	if start >= len(data) || data[start] != '{' {
		return 0, false
	}
	i := start + 1
	var ok, esc bool
	var end int
	if lit(data, i, `"device_id":`) {
		i += len(`"device_id":`)
		if end, esc, ok = canonicalString(data, i); !ok || esc || end-i == 2 { // AppendPoint omits an empty one
			return 0, false
		}
		p.DeviceStart, p.DeviceEnd = i+1, end-1
		if i = end; i >= len(data) || data[i] != ',' {
			return 0, false
		}
		i++
	}
	if !lit(data, i, `"key":`) {
		return 0, false
	}
	i += len(`"key":`)
	if end, esc, ok = canonicalString(data, i); !ok || end-i == 2 { // the decoder refuses an empty key
		return 0, false
	}
	p.KeyStart, p.KeyEnd, p.KeyEscaped = i, end, esc
	if i = end; !lit(data, i, `,"value":`) {
		return 0, false
	}
	p.ValueStart = i + len(`,"value":`)
	if i, ok = canonicalValue(data, p.ValueStart); !ok {
		return 0, false
	}
	p.ValueEnd = i
	p.TypeStart, p.TypeEnd = i, i
	if lit(data, i, `,"type":`) {
		i += len(`,"type":`)
		if end, esc, ok = canonicalString(data, i); !ok || end-i == 2 {
			return 0, false
		}
		p.TypeStart, p.TypeEnd, p.TypeEscaped = i, end, esc
		i = end
	}
	if !lit(data, i, `,"quality":`) {
		return 0, false
	}
	q, end, ok := canonicalInt(data, i+len(`,"quality":`))
	if !ok || q < -1<<31 || q > 1<<31-1 { // the decoder's range for quality
		return 0, false
	}
	p.Quality = int(q)
	if i = end; !lit(data, i, `,"timestamp":`) {
		return 0, false
	}
	p.TimestampAt = i
	if p.Timestamp, i, ok = canonicalInt(data, i+len(`,"timestamp":`)); !ok {
		return 0, false
	}
	if lit(data, i, `,"tags":{`) {
		if i, ok = canonicalTags(data, i+len(`,"tags":{`)); !ok {
			return 0, false
		}
	}
	if lit(data, i, `,"source":`) {
		i += len(`,"source":`)
		if end, _, ok = canonicalString(data, i); !ok || end-i == 2 {
			return 0, false
		}
		i = end
	}
	if i >= len(data) || data[i] != '}' {
		return 0, false
	}
	p.End = i + 1
	return p.End, true
}

// canonicalTags checks the members of a tags object whose '{' has been read: at least one (AppendPoint omits
// empty tags), at most isp.MaxTags, no key twice (the decoder would merge them). The encoding of a string is
// one-to-one, so keys are told apart by their bytes.
func canonicalTags(data []byte, i int) (int, bool) {
	var keys [isp.MaxTags][2]int
	n := 0
	for {
		end, _, ok := canonicalString(data, i)
		if !ok || end >= len(data) || data[end] != ':' {
			return 0, false
		}
		key := data[i:end]
		for _, k := range keys[:n] {
			if string(data[k[0]:k[1]]) == string(key) {
				return 0, false
			}
		}
		if n == len(keys) {
			return 0, false
		}
		keys[n] = [2]int{i, end}
		n++
		if i, _, ok = canonicalString(data, end+1); !ok || i >= len(data) {
			return 0, false
		}
		switch data[i] {
		case '}':
			return i + 1, true
		case ',':
			i++
		default:
			return 0, false
		}
	}
}

// canonicalString checks the string at data[i] ('"' expected) against isp's appendString: bytes from 0x20 up
// as they are except '"' and '\', which are escaped as \" and \\; \n \r \t \b \f for those; \u00xx (lower-case
// hex) for the other control bytes; valid UTF-8 (the decoder refuses anything else). It returns the index just
// past the closing quote and whether there was an escape.
func canonicalString(data []byte, i int) (end int, escaped, ok bool) {
	if i >= len(data) || data[i] != '"' {
		return 0, false, false
	}
	start := i + 1
	high := false
	for i = start; i < len(data); i++ {
		c := data[i]
		if ascii[c] {
			continue
		}
		switch {
		case c == '"':
			if high && !utf8.Valid(data[start:i]) {
				return 0, false, false
			}
			return i + 1, escaped, true
		case c == '\\':
			escaped = true
			if i+1 >= len(data) {
				return 0, false, false
			}
			switch data[i+1] {
			case '"', '\\', 'n', 'r', 't', 'b', 'f':
				i++
			case 'u':
				if len(data)-i < 6 || data[i+2] != '0' || data[i+3] != '0' {
					return 0, false, false
				}
				h, l := data[i+4], data[i+5]
				if h != '0' && h != '1' || !(l >= '0' && l <= '9' || l >= 'a' && l <= 'f') {
					return 0, false, false
				}
				switch string(data[i+4 : i+6]) {
				case "08", "09", "0a", "0c", "0d": // \b \t \n \f \r
					return 0, false, false
				}
				i += 5
			default:
				return 0, false, false
			}
		case c >= utf8.RuneSelf:
			high = true
		default: // a control byte
			return 0, false, false
		}
	}
	return 0, false, false
}

// ascii marks the bytes appendString copies as they are, short of UTF-8's multi-byte sequences.
var ascii = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// canonicalValue checks a point's value: null, true, false, a string, or a number in the form appendValue writes.
func canonicalValue(data []byte, i int) (int, bool) {
	if i >= len(data) {
		return 0, false
	}
	switch data[i] {
	case 'n':
		return i + 4, lit(data, i, "null")
	case 't':
		return i + 4, lit(data, i, "true")
	case 'f':
		return i + 5, lit(data, i, "false")
	case '"':
		end, _, ok := canonicalString(data, i)
		return end, ok
	}
	return canonicalNumber(data, i)
}

// canonicalInt checks an integer as strconv.AppendInt writes it (no leading zero, no "-0") that fits int64.
func canonicalInt(data []byte, i int) (int64, int, bool) {
	neg := i < len(data) && data[i] == '-'
	if neg {
		i++
	}
	if i >= len(data) || data[i] < '0' || data[i] > '9' {
		return 0, 0, false
	}
	if data[i] == '0' {
		if neg || i+1 < len(data) && data[i+1] >= '0' && data[i+1] <= '9' {
			return 0, 0, false
		}
		return 0, i + 1, true
	}
	var u uint64
	d := i
	for ; i < len(data) && data[i] >= '0' && data[i] <= '9'; i++ {
		if i-d == 19 {
			return 0, 0, false // 20 digits: beyond int64
		}
		u = u*10 + uint64(data[i]-'0') // 19 digits stay below 2^64
	}
	switch {
	case neg && u <= 1<<63:
		return int64(-u), i, true
	case !neg && u <= 1<<63-1:
		return int64(u), i, true
	}
	return 0, 0, false
}

// canonicalNumber checks a value's number against appendValue. An integer literal that fits int64 decodes as an
// Int and is written back by AppendInt. Anything else decodes as a Float and is written back in the shortest
// form that reads back exactly, 'f' between 1e-6 and 1e21 and 'e' outside ("e" and "." forms alike, as
// strconv writes them). Two ways to prove a float literal is that form:
//
//   - Without parsing, for a plain decimal with a fraction, at most 15 significant digits, no trailing zero, and
//     at least 1e-6: two different decimals of at most 15 significant digits never read as the same float64
//     (15 is float64's decimal precision, DBL_DIG), so no shorter decimal reads back as this one's float, and
//     the shortest form is the literal itself. That covers most readings (74.5, 25.53).
//   - Otherwise parse it (strconv.ParseFloat: correctly rounded, as the decoder is) and format it the way
//     appendValue does, and compare: a float32 register widened to float64 (25.530000686645508) costs this.
func canonicalNumber(data []byte, i int) (int, bool) {
	start := i
	if i < len(data) && data[i] == '-' {
		i++
	}
	intStart := i
	if i >= len(data) || data[i] < '0' || data[i] > '9' {
		return 0, false
	}
	if data[i] == '0' {
		i++
	} else {
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	}
	intEnd := i
	fracStart, fracEnd := i, i
	if i < len(data) && data[i] == '.' {
		i++
		fracStart = i
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
		fracEnd = i
		if fracEnd == fracStart {
			return 0, false
		}
	}
	hasExp := false
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		hasExp = true
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		e := i
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
		if i == e {
			return 0, false
		}
	}
	number := data[start:i]
	if fracEnd == intEnd && !hasExp { // an integer literal
		if _, end, ok := canonicalInt(data, start); ok {
			return end, end == i
		}
		if string(number) == "-0" {
			return 0, false // decodes as Int 0, written "0"
		}
		// beyond int64: a Float
	} else if !hasExp && data[fracEnd-1] != '0' {
		sig := (intEnd - intStart) + (fracEnd - fracStart)
		if intEnd-intStart == 1 && data[intStart] == '0' { // 0.000123: the zeros after the point are not significant
			z := 0
			for fracStart+z < fracEnd && data[fracStart+z] == '0' {
				z++
			}
			sig = fracEnd - fracStart - z
			if z <= 5 && sig <= 15 { // 0.000001 is 1e-6, still 'f'
				return i, true
			}
		} else if sig <= 15 {
			return i, true
		}
	}
	f, err := strconv.ParseFloat(string(number), 64)
	if err != nil {
		return 0, false // beyond float64's range: the decoder refuses it
	}
	var buf [32]byte
	var out []byte
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		out = strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	} else {
		out = strconv.AppendFloat(buf[:0], f, 'f', -1, 64)
	}
	return i, string(out) == string(number)
}
