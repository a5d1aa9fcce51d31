package isp

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// AppendPoint appends p as one JSON object to dst and returns the extended buffer. It allocates only when dst
// runs out of capacity.
//
// key, value, quality and timestamp are always written; device_id, type, tags and source only when not empty.
// The output is always valid JSON: strings are escaped, invalid UTF-8 becomes U+FFFD, and a NaN or infinite
// float (which JSON cannot hold) is written as null. Floats use the shortest form that reads back exactly, so a
// whole float such as 25.0 is written 25 and reads back as an Int; Value.Float reads either.
func AppendPoint(dst []byte, p *Point) []byte {
	dst = append(dst, '{')
	if p.DeviceID != "" {
		dst = append(dst, `"device_id":`...)
		dst = appendString(dst, p.DeviceID)
		dst = append(dst, ',')
	}
	dst = AppendMembers(dst, p.Key, p.Value, p.Type, p.Quality)
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, p.Timestamp, 10)
	if len(p.Tags) > 0 {
		dst = append(dst, `,"tags":{`...)
		for i, t := range p.Tags {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, t.Key)
			dst = append(dst, ':')
			dst = appendString(dst, t.Value)
		}
		dst = append(dst, '}')
	}
	if p.Source != "" {
		dst = append(dst, `,"source":`...)
		dst = appendString(dst, p.Source)
	}
	return append(dst, '}')
}

// AppendMembers appends the members AppendPoint writes between a point's device id and its timestamp:
// "key":…,"value":…, "type":… when typ is not empty, and "quality":…. A rule that changes only these
// (actors/rule/raw.go) writes them between the bytes of the element it came from.
func AppendMembers(dst []byte, key string, v Value, typ string, quality int) []byte {
	dst = append(dst, `"key":`...)
	dst = appendString(dst, key)
	dst = append(dst, `,"value":`...)
	dst = appendValue(dst, v)
	if typ != "" {
		dst = append(dst, `,"type":`...)
		dst = appendString(dst, typ)
	}
	dst = append(dst, `,"quality":`...)
	return strconv.AppendInt(dst, int64(quality), 10)
}

// AppendBatch appends {"points":[…]} holding every point to dst and returns the extended buffer: the ISP DATA
// payload and the body of a batch subject.
func AppendBatch(dst []byte, points []Point) []byte {
	dst = append(dst, `{"points":[`...)
	for i := range points {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendPoint(dst, &points[i])
	}
	return append(dst, "]}"...)
}

func appendValue(dst []byte, v Value) []byte {
	switch v.kind {
	case KindFloat:
		f := math.Float64frombits(v.bits)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return append(dst, "null"...)
		}
		// Like encoding/json: plain digits between 1e-6 and 1e21, so a meter reading of 1234567 stays readable
		// on `nats sub`; exponents outside that.
		if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
			return strconv.AppendFloat(dst, f, 'e', -1, 64)
		}
		return strconv.AppendFloat(dst, f, 'f', -1, 64)
	case KindInt:
		return strconv.AppendInt(dst, int64(v.bits), 10)
	case KindBool:
		if v.bits != 0 {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case KindString:
		return appendString(dst, v.str)
	}
	return append(dst, "null"...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a quoted JSON string. Runs of bytes that need no escaping are copied at once, so
// the usual key or device id costs one append.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
