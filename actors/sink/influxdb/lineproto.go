package influxdb

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/iotgw/iotgw/isp"
)

// The line protocol encoder is this package's own, append-style with no allocation per point: the client library
// (influxdb-client-go) builds a write.Point per point and encodes it through a generic encoder, and keeps its own
// retry buffer in memory, which the durable inbox makes redundant. The escaping follows InfluxDB's line protocol
// reference: in a measurement, commas and spaces are escaped; in tag keys, tag values and field keys, commas,
// equals signs and spaces; in a string field value, double quotes and backslashes. In names InfluxDB 1.x has no
// escape for a backslash: it keeps "a\\b" as two backslashes and reads "\\," as a backslash that escapes the
// comma (tried against 1.6: the server test writes such names and reads them back). So a backslash in a name is
// written as it is, and a name with a backslash before a comma, an equals sign, a space or at its end is refused,
// as is what cannot be written at all: a line break in a name (line protocol has no escape for it), a measurement
// starting with '#' (a comment line), an empty name, invalid UTF-8, NaN and infinities.

// ErrEncode classifies what cannot be written as line protocol.
var ErrEncode = errors.New("cannot be written as line protocol")

// maxName bounds a measurement, tag or field name (InfluxDB's own limit on a series key is 64 KB).
const maxName = 4096

// checkName reports a measurement, tag key, tag value or field key that line protocol cannot carry.
func checkName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty %s", ErrEncode, what)
	case len(s) > maxName:
		return fmt.Errorf("%w: %s of %d bytes, at most %d", ErrEncode, what, len(s), maxName)
	case strings.ContainsAny(s, "\n\r"):
		return fmt.Errorf("%w: %s %q contains a line break", ErrEncode, what, truncate(s))
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s %q is not UTF-8", ErrEncode, what, truncate(s))
	case s[len(s)-1] == '\\':
		return fmt.Errorf("%w: %s %q ends with a backslash", ErrEncode, what, truncate(s))
	}
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '\\' && strings.IndexByte(escTag, s[i+1]) >= 0 {
			return fmt.Errorf("%w: %s %q has a backslash before %q", ErrEncode, what, truncate(s), s[i+1])
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// appendEscaped appends s with the bytes of special escaped by a backslash (s passed checkName).
func appendEscaped(dst []byte, s string, special string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if strings.IndexByte(special, c) >= 0 {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return dst
}

const (
	escMeasurement = ", "
	escTag         = ",= "
)

// line is one point as line protocol names it.
type line struct {
	measurement string
	tags        []isp.Tag // in order; keys unique
	field       string
	value       isp.Value
	intField    bool // an integer value written as an integer (…i), else as a float
	ts          int64
}

// appendLine appends one line (with its newline) or returns an error and dst unchanged.
func appendLine(dst []byte, l *line) ([]byte, error) {
	if err := checkName("measurement", l.measurement); err != nil {
		return dst, err
	}
	if l.measurement[0] == '#' {
		return dst, fmt.Errorf("%w: measurement %q starts with '#' (a comment line)", ErrEncode, truncate(l.measurement))
	}
	if err := checkName("field", l.field); err != nil {
		return dst, err
	}
	for _, t := range l.tags {
		if err := checkName("tag key", t.Key); err != nil {
			return dst, err
		}
		if err := checkName("tag value", t.Value); err != nil {
			return dst, fmt.Errorf("tag %q: %w", truncate(t.Key), err)
		}
	}
	start := len(dst)
	dst = appendEscaped(dst, l.measurement, escMeasurement)
	for _, t := range l.tags {
		dst = append(dst, ',')
		dst = appendEscaped(dst, t.Key, escTag)
		dst = append(dst, '=')
		dst = appendEscaped(dst, t.Value, escTag)
	}
	dst = append(dst, ' ')
	dst = appendEscaped(dst, l.field, escTag)
	dst = append(dst, '=')
	switch l.value.Kind() {
	case isp.KindFloat:
		f, _ := l.value.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return dst[:start], fmt.Errorf("%w: value %v", ErrEncode, f)
		}
		dst = strconv.AppendFloat(dst, f, 'g', -1, 64)
	case isp.KindInt:
		i, _ := l.value.Int()
		if l.intField {
			dst = strconv.AppendInt(dst, i, 10)
			dst = append(dst, 'i')
		} else {
			dst = strconv.AppendFloat(dst, float64(i), 'g', -1, 64)
		}
	case isp.KindBool:
		b, _ := l.value.Bool()
		dst = strconv.AppendBool(dst, b)
	case isp.KindString:
		s, _ := l.value.Str()
		if !utf8.ValidString(s) {
			return dst[:start], fmt.Errorf("%w: string value is not UTF-8", ErrEncode)
		}
		if len(s) > maxString {
			return dst[:start], fmt.Errorf("%w: string value of %d bytes, at most %d", ErrEncode, len(s), maxString)
		}
		dst = append(dst, '"')
		for i := 0; i < len(s); i++ {
			if s[i] == '"' || s[i] == '\\' {
				dst = append(dst, '\\')
			}
			dst = append(dst, s[i])
		}
		dst = append(dst, '"')
	default:
		return dst[:start], fmt.Errorf("%w: a null value", ErrEncode)
	}
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, l.ts, 10)
	return append(dst, '\n'), nil
}

// maxString is InfluxDB's limit on a string field value (64 KB).
const maxString = 64 << 10

// parseLine reads back one line appendLine wrote (without its newline): the tests' and the fuzz target's check
// that the escaping is reversible. It knows only what appendLine writes.
func parseLine(s string) (measurement string, tags []isp.Tag, field, value string, ts int64, err error) {
	i := 0
	next := func(stops string) (string, byte) {
		var sb strings.Builder
		for i < len(s) {
			c := s[i]
			if c == '\\' && i+1 < len(s) { // InfluxDB 1.x: a backslash skips the next byte, unescaping only ,= and space
				if strings.IndexByte(escTag, s[i+1]) < 0 {
					sb.WriteByte(c)
				}
				sb.WriteByte(s[i+1])
				i += 2
				continue
			}
			if strings.IndexByte(stops, c) >= 0 {
				i++
				return sb.String(), c
			}
			sb.WriteByte(c)
			i++
		}
		return sb.String(), 0
	}
	var stop byte
	measurement, stop = next(", ")
	for stop == ',' {
		var k, v string
		k, stop = next("=")
		if stop != '=' {
			return "", nil, "", "", 0, fmt.Errorf("tag key %q without '='", k)
		}
		v, stop = next(", ")
		tags = append(tags, isp.Tag{Key: k, Value: v})
	}
	if stop != ' ' {
		return "", nil, "", "", 0, errors.New("no field set")
	}
	field, stop = next("=")
	if stop != '=' {
		return "", nil, "", "", 0, errors.New("field without '='")
	}
	sp := strings.LastIndexByte(s, ' ')
	if sp < i {
		return "", nil, "", "", 0, errors.New("no timestamp")
	}
	value = s[i:sp]
	if strings.HasPrefix(value, `"`) {
		var sb strings.Builder
		for j := 1; j < len(value)-1; j++ {
			if value[j] == '\\' {
				j++
			}
			sb.WriteByte(value[j])
		}
		value = sb.String()
	}
	ts, err = strconv.ParseInt(s[sp+1:], 10, 64)
	return measurement, tags, field, value, ts, err
}
