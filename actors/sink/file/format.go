package file

import (
	"math"
	"strconv"
	"time"

	"github.com/iotgw/iotgw/isp"
)

// The three line formats. Each appends one point as one line (with its newline) and allocates nothing once the
// buffer has grown: the sink's cost per point is the encoder's, so they are written like isp.AppendPoint.

// Formats of the file sink.
const (
	FormatJSONL  = "jsonl"
	FormatInflux = "influx"
	FormatCSV    = "csv"
)

var formats = []string{FormatJSONL, FormatInflux, FormatCSV}

// csvHeader is the first line of every CSV file the sink starts (an existing file it appends to has one).
const csvHeader = "timestamp,device_id,key,value,type,quality,source,tags\n"

// appendLine appends p in format to dst.
func appendLine(dst []byte, format string, p *isp.Point) []byte {
	switch format {
	case FormatInflux:
		return appendInflux(dst, p)
	case FormatCSV:
		return appendCSV(dst, p)
	default:
		return append(isp.AppendPoint(dst, p), '\n')
	}
}

// appendInflux writes InfluxDB line protocol: the point's key is the measurement, device, type, source and the
// point's tags are tags, value and quality are fields, the timestamp is in nanoseconds:
//
//	temperature,device=boiler-1,type=float64,source=mock,unit=°C value=74.5,quality=1i 1700000000000000000
//
// Escaping follows the line protocol reference: in the measurement commas and spaces, in tag keys and values
// also '=', in string fields '"' and '\'. Line protocol has no way to carry a newline in a tag or a field, so
// control characters become spaces; a tag with an empty value is left out (the protocol forbids it), and so is
// the value field of a null, NaN or infinite value (quality is always there, so the line keeps a field).
func appendInflux(dst []byte, p *isp.Point) []byte {
	dst = appendInfluxName(dst, p.Key, false)
	dst = appendInfluxTag(dst, "device", p.DeviceID)
	dst = appendInfluxTag(dst, "type", p.Type)
	dst = appendInfluxTag(dst, "source", p.Source)
	for _, t := range p.Tags {
		if t.Key == "device" || t.Key == "type" || t.Key == "source" {
			continue // the point's own fields win over a tag that would shadow them
		}
		dst = appendInfluxTag(dst, t.Key, t.Value)
	}
	dst = append(dst, ' ')
	if v, ok := influxValue(dst, p.Value); ok {
		dst = append(v, ',')
	}
	dst = append(dst, "quality="...)
	dst = strconv.AppendInt(dst, int64(p.Quality), 10)
	dst = append(dst, 'i')
	if p.Timestamp != 0 {
		dst = append(dst, ' ')
		dst = strconv.AppendInt(dst, p.Timestamp, 10)
	}
	return append(dst, '\n')
}

func influxValue(dst []byte, v isp.Value) ([]byte, bool) {
	switch v.Kind() {
	case isp.KindFloat:
		f, _ := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return dst, false
		}
		dst = append(dst, "value="...)
		return strconv.AppendFloat(dst, f, 'g', -1, 64), true
	case isp.KindInt:
		i, _ := v.Int()
		dst = append(dst, "value="...)
		return append(strconv.AppendInt(dst, i, 10), 'i'), true
	case isp.KindBool:
		b, _ := v.Bool()
		dst = append(dst, "value="...)
		return strconv.AppendBool(dst, b), true
	case isp.KindString:
		s, _ := v.Str()
		dst = append(dst, `value="`...)
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20 || c == 0x7f:
				dst = append(dst, ' ')
			default:
				dst = append(dst, c)
			}
		}
		return append(dst, '"'), true
	}
	return dst, false
}

func appendInfluxTag(dst []byte, key, value string) []byte {
	if key == "" || value == "" {
		return dst
	}
	dst = append(dst, ',')
	dst = appendInfluxName(dst, key, true)
	dst = append(dst, '=')
	return appendInfluxName(dst, value, true)
}

// appendInfluxName escapes a measurement (tag false) or a tag key or value (tag true).
func appendInfluxName(dst []byte, s string, tag bool) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ',' || c == ' ' || (tag && c == '='):
			dst = append(dst, '\\', c)
		case c == '\\' && i == len(s)-1:
			dst = append(dst, '\\', '\\') // a trailing backslash would escape the separator after it
		case c < 0x20 || c == 0x7f:
			dst = append(dst, '\\', ' ')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// appendCSV writes one RFC 4180 record in the columns of csvHeader: the timestamp in RFC 3339 with nanoseconds,
// UTC (empty when the point has none), the value as JSON would write it but strings unquoted, tags as
// key=value pairs separated by ';'. A field is quoted when it holds a comma, a quote, a CR or LF, or starts or
// ends with a space.
func appendCSV(dst []byte, p *isp.Point) []byte {
	if p.Timestamp != 0 {
		dst = time.Unix(0, p.Timestamp).UTC().AppendFormat(dst, time.RFC3339Nano)
	}
	dst = append(dst, ',')
	dst = appendCSVField(dst, p.DeviceID)
	dst = append(dst, ',')
	dst = appendCSVField(dst, p.Key)
	dst = append(dst, ',')
	switch p.Value.Kind() {
	case isp.KindString:
		s, _ := p.Value.Str()
		dst = appendCSVField(dst, s)
	case isp.KindFloat:
		if f, _ := p.Value.Float(); !math.IsNaN(f) && !math.IsInf(f, 0) { // else empty, as JSON's null
			dst = strconv.AppendFloat(dst, f, 'g', -1, 64)
		}
	case isp.KindInt:
		i, _ := p.Value.Int()
		dst = strconv.AppendInt(dst, i, 10)
	case isp.KindBool:
		b, _ := p.Value.Bool()
		dst = strconv.AppendBool(dst, b)
	}
	dst = append(dst, ',')
	dst = appendCSVField(dst, p.Type)
	dst = append(dst, ',')
	dst = strconv.AppendInt(dst, int64(p.Quality), 10)
	dst = append(dst, ',')
	dst = appendCSVField(dst, p.Source)
	dst = append(dst, ',')
	if len(p.Tags) > 0 {
		start := len(dst)
		for i, t := range p.Tags {
			if i > 0 {
				dst = append(dst, ';')
			}
			dst = append(append(append(dst, t.Key...), '='), t.Value...)
		}
		tags := string(dst[start:]) // rare enough (tags present) to quote through a copy
		dst = appendCSVField(dst[:start], tags)
	}
	return append(dst, '\n')
}

func appendCSVField(dst []byte, s string) []byte {
	quote := len(s) > 0 && (s[0] == ' ' || s[len(s)-1] == ' ')
	for i := 0; i < len(s) && !quote; i++ {
		switch s[i] {
		case ',', '"', '\n', '\r':
			quote = true
		}
	}
	if !quote {
		return append(dst, s...)
	}
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			dst = append(dst, '"')
		}
		dst = append(dst, s[i])
	}
	return append(dst, '"')
}
