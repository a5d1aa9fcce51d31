package payload

import (
	"encoding/json"
	"fmt"
	"strconv"
)

type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
)

// scalar is one JSON scalar as it stands in the input: for a string, raw is what is between the quotes.
type scalar struct {
	kind    kind
	raw     []byte
	escaped bool // a string with backslash escapes: text() decodes them
}

// text is a string scalar's value.
func (s scalar) text() string {
	if !s.escaped {
		return string(s.raw)
	}
	var out string
	quoted := make([]byte, 0, len(s.raw)+2)
	quoted = append(append(append(quoted, '"'), s.raw...), '"')
	if err := json.Unmarshal(quoted, &out); err != nil { // the scanner checked the escapes: cannot happen
		return string(s.raw)
	}
	return out
}

func (s scalar) describe() string {
	switch s.kind {
	case kindNull:
		return "null"
	case kindBool:
		return "a boolean"
	case kindNumber:
		return "the number " + excerpt(s.raw)
	}
	return "the string " + excerpt(s.raw)
}

// scanner is a strict, single-pass JSON reader (RFC 8259's grammar, as encoding/json.Valid reads it) that calls
// visit for every scalar with its dotted path, and gives up on input nested deeper than maxDepth or holding more
// than maxValues values.
type scanner struct {
	data      []byte
	pos       int
	depth     int
	maxDepth  int
	values    int
	maxValues int
	path      []byte
}

func (s *scanner) fail(what string) error {
	return fmt.Errorf("%w: %s at byte %d", ErrSyntax, what, s.pos)
}

func (s *scanner) document(visit func(path []byte, sc scalar)) error {
	s.skipSpace()
	if err := s.value(visit); err != nil {
		return err
	}
	s.skipSpace()
	if s.pos != len(s.data) {
		return s.fail("data after the end of the document")
	}
	return nil
}

// plainScalar reads input that is exactly one scalar (surrounding space allowed).
func (s *scanner) plainScalar() (scalar, bool) {
	s.skipSpace()
	sc, err := s.scalar()
	if err != nil {
		return scalar{}, false
	}
	s.skipSpace()
	return sc, s.pos == len(s.data)
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) && isSpace(s.data[s.pos]) {
		s.pos++
	}
}

func (s *scanner) count() error {
	s.values++
	if s.values > s.maxValues {
		return fmt.Errorf("%w: more than %d in one message", ErrTooMany, s.maxValues)
	}
	return nil
}

func (s *scanner) value(visit func([]byte, scalar)) error {
	if err := s.count(); err != nil {
		return err
	}
	if s.pos >= len(s.data) {
		return s.fail("unexpected end")
	}
	switch s.data[s.pos] {
	case '{':
		return s.object(visit)
	case '[':
		return s.array(visit)
	}
	sc, err := s.scalar()
	if err != nil {
		return err
	}
	visit(s.path, sc)
	return nil
}

func (s *scanner) enter() error {
	s.depth++
	if s.depth > s.maxDepth {
		return fmt.Errorf("%w: more than %d levels", ErrTooDeep, s.maxDepth)
	}
	s.pos++ // the '{' or '['
	s.skipSpace()
	return nil
}

func (s *scanner) object(visit func([]byte, scalar)) error {
	if err := s.enter(); err != nil {
		return err
	}
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		s.depth--
		return nil
	}
	base := len(s.path)
	for {
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return s.fail("want a member name")
		}
		name, err := s.str()
		if err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return s.fail("want ':' after a member name")
		}
		s.pos++
		s.skipSpace()
		if base > 0 {
			s.path = append(s.path, '.')
		}
		if name.escaped {
			s.path = append(s.path, name.text()...)
		} else {
			s.path = append(s.path, name.raw...)
		}
		if err := s.value(visit); err != nil {
			return err
		}
		s.path = s.path[:base]
		s.skipSpace()
		if s.pos >= len(s.data) {
			return s.fail("unexpected end in an object")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
			s.skipSpace()
		case '}':
			s.pos++
			s.depth--
			return nil
		default:
			return s.fail("want ',' or '}' in an object")
		}
	}
}

func (s *scanner) array(visit func([]byte, scalar)) error {
	if err := s.enter(); err != nil {
		return err
	}
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		s.depth--
		return nil
	}
	base := len(s.path)
	for i := 0; ; i++ {
		if base > 0 {
			s.path = append(s.path, '.')
		}
		s.path = strconv.AppendInt(s.path, int64(i), 10)
		if err := s.value(visit); err != nil {
			return err
		}
		s.path = s.path[:base]
		s.skipSpace()
		if s.pos >= len(s.data) {
			return s.fail("unexpected end in an array")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
			s.skipSpace()
		case ']':
			s.pos++
			s.depth--
			return nil
		default:
			return s.fail("want ',' or ']' in an array")
		}
	}
}

func (s *scanner) scalar() (scalar, error) {
	if s.pos >= len(s.data) {
		return scalar{}, s.fail("unexpected end")
	}
	switch c := s.data[s.pos]; {
	case c == '"':
		return s.str()
	case c == 't':
		return s.literal("true", kindBool)
	case c == 'f':
		return s.literal("false", kindBool)
	case c == 'n':
		return s.literal("null", kindNull)
	case c == '-' || (c >= '0' && c <= '9'):
		start := s.pos
		s.pos += numberLen(s.data[s.pos:])
		if s.pos == start {
			return scalar{}, s.fail("malformed number")
		}
		return scalar{kind: kindNumber, raw: s.data[start:s.pos]}, nil
	}
	return scalar{}, s.fail(fmt.Sprintf("unexpected %q", s.data[s.pos]))
}

func (s *scanner) literal(word string, k kind) (scalar, error) {
	if len(s.data)-s.pos < len(word) || string(s.data[s.pos:s.pos+len(word)]) != word {
		return scalar{}, s.fail("malformed literal")
	}
	raw := s.data[s.pos : s.pos+len(word)]
	s.pos += len(word)
	return scalar{kind: k, raw: raw}, nil
}

// str reads a string at s.pos (its opening quote).
func (s *scanner) str() (scalar, error) {
	s.pos++
	start, escaped := s.pos, false
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			sc := scalar{kind: kindString, raw: s.data[start:s.pos], escaped: escaped}
			s.pos++
			return sc, nil
		case c < 0x20:
			return scalar{}, s.fail("control character in a string")
		case c == '\\':
			escaped = true
			if s.pos+1 >= len(s.data) {
				return scalar{}, s.fail("unexpected end in an escape")
			}
			switch s.data[s.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos += 2
			case 'u':
				if len(s.data)-s.pos < 6 || !isHex4(s.data[s.pos+2:s.pos+6]) {
					return scalar{}, s.fail("malformed \\u escape")
				}
				s.pos += 6
			default:
				return scalar{}, s.fail("unknown escape")
			}
		default:
			s.pos++
		}
	}
	return scalar{}, s.fail("unterminated string")
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// numberLen is the length of the JSON number at the start of b, 0 when there is none:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func numberLen(b []byte) int {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return 0
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return 0
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return 0
		}
	}
	return i
}

func validNumber(b []byte) bool { return len(b) > 0 && numberLen(b) == len(b) }
