// Package payload maps the bodies devices send or serve — an MQTT message, an HTTP response — to points: a plain
// number or boolean, or JSON with field paths (several points from one message), with the timestamp taken from a
// field or the arrival time. The mqtt and http drivers share it, so a payload maps the same way whichever way it
// came.
//
// It is a single-pass, bounded scanner over the bytes, not encoding/json into interface values: it never builds a
// tree, refuses input nested deeper than MaxDepth or holding more than MaxValues values before it can cost
// anything (a JSON bomb), and reads only what the mapping names. Telegraf's json_v2 parser (gjson paths) and
// its flattening "json" parser are the anchors: a field path here is gjson's dotted path without its query
// language (`data.temp`, `sensors.0.value`), and a message mapped without fields is flattened the way Telegraf's
// json parser does it (nested names joined with '_', numbers and booleans only). Unlike Telegraf, a field that is
// missing or of the wrong type is an error naming it, not a silently absent value.
//
// The package never publishes and never sees the bus: it turns bytes into points and says why it could not.
package payload

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/iotgw/iotgw/isp"
)

// Formats of a payload.
const (
	FormatAuto  = "auto"  // a plain number or boolean when the payload is one, else JSON
	FormatValue = "value" // a plain number or boolean (or any text, with type string)
	FormatJSON  = "json"  // JSON: fields, value_field, or every number and boolean flattened
)

// Formats lists the formats a mapping may name.
var Formats = []string{FormatAuto, FormatValue, FormatJSON}

// Types a mapped value may be given; "" keeps the type it was sent with (a whole number is int64).
var Types = []string{"float64", "int64", "bool", "string"}

// TimeFormats are the ways a time_field may be written.
var TimeFormats = []string{"unix", "unix_ms", "unix_us", "unix_ns", "rfc3339"}

// Limits of one message when the mapping does not set its own.
const (
	DefaultMaxDepth  = 32
	DefaultMaxValues = 10000
	// maxString bounds a string value that becomes a point (a point is not a document).
	maxString = 4 << 10
)

// Errors of Map, for errors.Is; each error Map returns wraps one and says where.
var (
	ErrSyntax   = errors.New("not valid JSON")
	ErrNotPlain = errors.New("not a plain number or boolean")
	ErrTooDeep  = errors.New("nested too deep")
	ErrTooMany  = errors.New("too many values")
	ErrMissing  = errors.New("field not found")
	ErrType     = errors.New("wrong type")
	ErrNoKey    = errors.New("no key")
	ErrBadKey   = errors.New("key is not a valid name")
	ErrTime     = errors.New("bad timestamp")
	ErrEmpty    = errors.New("empty payload")
)

// Field maps the value at a JSON path to a point.
type Field struct {
	Path string // dotted path: "temp", "data.temp", "sensors.0.value"
	Key  string // the point's key; default the path's last element
	Type string // one of Types, or "" to keep the type it was sent with
}

// FieldBlock is a `field "key" { path = "data.temp" type = "float64" }` block of a driver's config (mqtt's
// subscribe blocks, the http device), decoded by the driver's schema.
type FieldBlock struct {
	Key  string `hcl:"key,label"`
	Path string `hcl:"path,optional"` // default the key
	Type string `hcl:"type,optional"`
}

// FieldsOf turns field blocks into the fields of a Spec.
func FieldsOf(blocks []FieldBlock) []Field {
	var out []Field
	for _, f := range blocks {
		p := f.Path
		if p == "" {
			p = f.Key
		}
		out = append(out, Field{Path: p, Key: f.Key, Type: f.Type})
	}
	return out
}

// Spec is a mapping as configured.
type Spec struct {
	Format string // one of Formats; "" is auto
	// Key is the key of a plain value, or of ValueField's, when the topic names none (MQTT's +key).
	Key string
	// Type is the type of a plain value or of ValueField's value.
	Type string
	// ValueField is the path of the one value of a JSON message whose key comes from the topic or Key, such
	// as {"value": 21.5, "ts": …}.
	ValueField string
	Fields     []Field
	TimeField  string // path of the timestamp; "" stamps the arrival time
	TimeFormat string // one of TimeFormats; default unix_ms
	MaxDepth   int    // default DefaultMaxDepth
	MaxValues  int    // default DefaultMaxValues
}

// Mapper maps payloads as its Spec says. It is not safe for concurrent use (it reuses its buffers).
type Mapper struct {
	spec   Spec
	fields map[string]int // path → index in spec.Fields
	found  []bool
	s      scanner
	time   scalar
	hasTS  bool
	errs   []error
	dst    []isp.Point
	keyBuf []byte
}

// Check reports what is wrong with a spec, for config validation; New refuses the same.
func Check(spec Spec) error {
	var errs []error
	if spec.Format != "" && !isOneOf(spec.Format, Formats) {
		errs = append(errs, fmt.Errorf("unknown format %q; known: %s", spec.Format, strings.Join(Formats, ", ")))
	}
	if spec.Type != "" && !isOneOf(spec.Type, Types) {
		errs = append(errs, fmt.Errorf("unknown type %q; known: %s", spec.Type, strings.Join(Types, ", ")))
	}
	if spec.TimeFormat != "" && !isOneOf(spec.TimeFormat, TimeFormats) {
		errs = append(errs, fmt.Errorf("unknown time_format %q; known: %s", spec.TimeFormat, strings.Join(TimeFormats, ", ")))
	}
	if spec.Format == FormatValue && (len(spec.Fields) > 0 || spec.ValueField != "" || spec.TimeField != "") {
		errs = append(errs, errors.New(`format "value" is a plain number or boolean: fields, value_field and time_field are for JSON`))
	}
	if spec.ValueField != "" && len(spec.Fields) > 0 {
		errs = append(errs, errors.New("value_field and field blocks exclude each other: value_field maps one value keyed by the topic, fields several"))
	}
	if spec.Key != "" {
		if err := isp.ValidToken(spec.Key); err != nil {
			errs = append(errs, fmt.Errorf("key: %w", err))
		}
	}
	for _, p := range []string{spec.ValueField, spec.TimeField} {
		if p != "" {
			if err := checkPath(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	seen := map[string]bool{}
	keys := map[string]bool{}
	for _, f := range spec.Fields {
		if err := checkPath(f.Path); err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[f.Path] {
			errs = append(errs, fmt.Errorf("field path %q is mapped twice", f.Path))
		}
		seen[f.Path] = true
		key := fieldKey(f)
		if err := isp.ValidToken(key); err != nil {
			errs = append(errs, fmt.Errorf("field %q: key: %w", f.Path, err))
		} else if keys[key] {
			errs = append(errs, fmt.Errorf("field %q: key %q is used twice", f.Path, key))
		}
		keys[key] = true
		if f.Type != "" && !isOneOf(f.Type, Types) {
			errs = append(errs, fmt.Errorf("field %q: unknown type %q; known: %s", f.Path, f.Type, strings.Join(Types, ", ")))
		}
	}
	if spec.MaxDepth < 0 || spec.MaxValues < 0 {
		errs = append(errs, errors.New("max_depth and max_values must not be negative"))
	}
	return errors.Join(errs...)
}

func checkPath(p string) error {
	if p == "" || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") || strings.Contains(p, "..") {
		return fmt.Errorf("path %q: write names and array indexes separated by single dots, like \"data.temp\" or \"sensors.0.value\"", p)
	}
	return nil
}

func fieldKey(f Field) string {
	if f.Key != "" {
		return f.Key
	}
	if i := strings.LastIndexByte(f.Path, '.'); i >= 0 {
		return f.Path[i+1:]
	}
	return f.Path
}

func isOneOf(s string, list []string) bool {
	for _, x := range list {
		if s == x {
			return true
		}
	}
	return false
}

// New compiles a spec.
func New(spec Spec) (*Mapper, error) {
	if err := Check(spec); err != nil {
		return nil, err
	}
	if spec.Format == "" {
		spec.Format = FormatAuto
	}
	if spec.TimeFormat == "" {
		spec.TimeFormat = "unix_ms"
	}
	if spec.MaxDepth == 0 {
		spec.MaxDepth = DefaultMaxDepth
	}
	if spec.MaxValues == 0 {
		spec.MaxValues = DefaultMaxValues
	}
	m := &Mapper{spec: spec, fields: map[string]int{}, found: make([]bool, len(spec.Fields))}
	for i := range spec.Fields {
		spec.Fields[i].Key = fieldKey(spec.Fields[i])
		m.fields[spec.Fields[i].Path] = i
	}
	if spec.ValueField != "" {
		m.fields[spec.ValueField] = -1
	}
	return m, nil
}

// Map appends the points of payload to dst and returns it. topicKey is the key the message's topic gives (MQTT's
// +key), "" for none; arrival stamps the points unless the mapping names a time field. Points carry Key, Value,
// Type, Quality (good) and Timestamp; the caller adds the device, tags and source.
//
// An error says why the payload, or a part of it, did not map (wrapping one of the Err values above): the
// points that did map are still returned beside it, so one bad field does not lose the others.
func (m *Mapper) Map(dst []isp.Point, payload []byte, topicKey string, arrival time.Time) ([]isp.Point, error) {
	m.dst, m.errs, m.hasTS = dst, m.errs[:0], false
	start := len(dst)
	body := trimSpace(payload)
	if len(body) == 0 {
		return dst, ErrEmpty
	}
	// A payload is one plain value when the format says so, or when it is no object or array and the mapping does
	// not name fields in it (then a scalar is read as JSON, and fails the fields it lacks).
	named := len(m.spec.Fields) > 0 || m.spec.ValueField != ""
	if m.spec.Format == FormatValue || (!named && body[0] != '{' && body[0] != '[') {
		m.plain(body, topicKey, arrival.UnixNano())
		return m.dst, m.joined()
	}
	clear(m.found)
	m.s = scanner{data: body, maxDepth: m.spec.MaxDepth, maxValues: m.spec.MaxValues, path: m.s.path[:0]} // reuses the path buffer
	if err := m.s.document(m.visit); err != nil {
		m.dst = m.dst[:start] // a message that is not JSON maps to nothing: half a document proves nothing
		return m.dst, err
	}
	for i, ok := range m.found {
		if !ok {
			m.errs = append(m.errs, fmt.Errorf("%w: %q", ErrMissing, m.spec.Fields[i].Path))
		}
	}
	if m.spec.ValueField != "" && len(m.dst) == start && !m.hasErr(ErrType) {
		m.errs = append(m.errs, fmt.Errorf("%w: %q", ErrMissing, m.spec.ValueField))
	}
	for i := start; i < len(m.dst); i++ { // value_field's point: its key comes from the topic or the mapping
		if m.dst[i].Key != "" {
			continue
		}
		k, err := m.plainKey(topicKey)
		if err != nil {
			m.errs = append(m.errs, err)
			m.dst = append(m.dst[:i], m.dst[i+1:]...)
			i--
			continue
		}
		m.dst[i].Key = k
	}
	ts := arrival.UnixNano()
	if m.spec.TimeField != "" {
		switch t, err := m.timestamp(); {
		case !m.hasTS:
			m.errs = append(m.errs, fmt.Errorf("%w: time field %q not found; stamped with the arrival time", ErrTime, m.spec.TimeField))
		case err != nil:
			m.errs = append(m.errs, fmt.Errorf("%w: time field %q: %v; stamped with the arrival time", ErrTime, m.spec.TimeField, err))
		default:
			ts = t
		}
	}
	for i := start; i < len(m.dst); i++ {
		m.dst[i].Timestamp = ts
	}
	return m.dst, m.joined()
}

func (m *Mapper) hasErr(target error) bool {
	for _, e := range m.errs {
		if errors.Is(e, target) {
			return true
		}
	}
	return false
}

func (m *Mapper) joined() error {
	switch len(m.errs) {
	case 0:
		return nil
	case 1:
		return m.errs[0]
	}
	return errors.Join(m.errs...)
}

func (m *Mapper) plainKey(topicKey string) (string, error) {
	switch {
	case topicKey != "":
		return topicKey, nil
	case m.spec.Key != "":
		return m.spec.Key, nil
	}
	return "", fmt.Errorf("%w: a single value needs its key from the topic (+key) or the mapping's key", ErrNoKey)
}

// plain maps a payload that is one value.
func (m *Mapper) plain(body []byte, topicKey string, ts int64) {
	key, err := m.plainKey(topicKey)
	if err != nil {
		m.errs = append(m.errs, err)
		return
	}
	var sc scalar
	switch {
	case m.spec.Type == "string" && (len(body) == 0 || body[0] != '"'):
		sc = scalar{kind: kindString, raw: body}
	default:
		s := scanner{data: body, maxDepth: 1, maxValues: 1}
		var ok bool
		sc, ok = s.plainScalar()
		if !ok {
			kind := ErrNotPlain
			if m.spec.Format == FormatJSON {
				kind = ErrSyntax
			}
			m.errs = append(m.errs, fmt.Errorf("%w: %s", kind, excerpt(body)))
			return
		}
	}
	v, typ, err := convert(sc, m.spec.Type)
	if err != nil {
		m.errs = append(m.errs, fmt.Errorf("value: %w", err))
		return
	}
	m.dst = append(m.dst, isp.Point{Key: key, Value: v, Type: typ, Quality: isp.QualityGood, Timestamp: ts})
}

// visit is called for every scalar of a JSON document with its dotted path.
func (m *Mapper) visit(path []byte, sc scalar) {
	if m.spec.TimeField != "" && string(path) == m.spec.TimeField {
		m.time, m.hasTS = sc, true
		if sc.kind == kindString {
			m.time.raw = append([]byte(nil), sc.raw...) // the scanner's buffer is reused
		}
		return
	}
	if len(m.fields) == 0 {
		m.flattened(path, sc)
		return
	}
	i, ok := m.fields[string(path)]
	if !ok {
		return
	}
	typ, key := m.spec.Type, ""
	if i >= 0 {
		m.found[i] = true
		typ, key = m.spec.Fields[i].Type, m.spec.Fields[i].Key
	}
	v, t, err := convert(sc, typ)
	if err != nil {
		m.errs = append(m.errs, fmt.Errorf("field %q: %w", path, err))
		return
	}
	m.dst = append(m.dst, isp.Point{Key: key, Value: v, Type: t, Quality: isp.QualityGood})
}

// flattened maps every number and boolean of a message mapped without fields, its path joined with '_' as key
// (Telegraf's json parser); strings and nulls are not measurements and are left out.
func (m *Mapper) flattened(path []byte, sc scalar) {
	if sc.kind != kindNumber && sc.kind != kindBool {
		return
	}
	m.keyBuf = append(m.keyBuf[:0], path...)
	for i, c := range m.keyBuf {
		if c == '.' {
			m.keyBuf[i] = '_'
		}
	}
	if len(m.keyBuf) == 0 {
		m.errs = append(m.errs, fmt.Errorf("%w: a value without a name", ErrBadKey))
		return
	}
	key := string(m.keyBuf)
	if err := isp.ValidToken(key); err != nil {
		m.errs = append(m.errs, fmt.Errorf("%w: %v", ErrBadKey, err))
		return
	}
	v, t, err := convert(sc, "")
	if err != nil {
		m.errs = append(m.errs, fmt.Errorf("%q: %w", key, err))
		return
	}
	m.dst = append(m.dst, isp.Point{Key: key, Value: v, Type: t, Quality: isp.QualityGood})
}

func (m *Mapper) timestamp() (int64, error) {
	sc := m.time
	if m.spec.TimeFormat == "rfc3339" {
		if sc.kind != kindString {
			return 0, fmt.Errorf("want an RFC 3339 string, got %s", sc.describe())
		}
		t, err := time.Parse(time.RFC3339Nano, sc.text())
		if err != nil {
			return 0, err
		}
		return t.UnixNano(), nil
	}
	if sc.kind == kindString { // a number sent as a string ("1700000000000") is common enough to read
		sc = scalar{kind: kindNumber, raw: []byte(sc.text())}
		if !validNumber(sc.raw) {
			return 0, fmt.Errorf("want a number, got %s", excerpt(sc.raw))
		}
	}
	if sc.kind != kindNumber {
		return 0, fmt.Errorf("want a number, got %s", sc.describe())
	}
	scale := timeScale[m.spec.TimeFormat]
	if n, err := strconv.ParseInt(string(sc.raw), 10, 64); err == nil { // exact: a float64 would round ns away
		if n < 0 || n > math.MaxInt64/scale {
			return 0, fmt.Errorf("%s %s is out of range", excerpt(sc.raw), m.spec.TimeFormat)
		}
		return n * scale, nil
	}
	f, err := strconv.ParseFloat(string(sc.raw), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("%s is not a number", excerpt(sc.raw))
	}
	ns := f * float64(scale)
	if ns < 0 || ns >= math.MaxInt64 {
		return 0, fmt.Errorf("%s %s is out of range", excerpt(sc.raw), m.spec.TimeFormat)
	}
	return int64(ns), nil
}

// timeScale is the nanoseconds of one unit of each numeric time format.
var timeScale = map[string]int64{"unix": 1e9, "unix_ms": 1e6, "unix_us": 1e3, "unix_ns": 1}

// convert turns a scalar into a point value of the wanted type.
func convert(sc scalar, typ string) (isp.Value, string, error) {
	switch sc.kind {
	case kindNull:
		return isp.Value{}, "", fmt.Errorf("%w: null has no value", ErrType)
	case kindBool:
		b := sc.raw[0] == 't'
		switch typ {
		case "", "bool":
			return isp.Bool(b), "bool", nil
		case "string":
			return isp.String(strconv.FormatBool(b)), "string", nil
		}
		return isp.Value{}, "", fmt.Errorf("%w: want %s, got a boolean", ErrType, typ)
	case kindString:
		s := sc.text()
		if typ == "string" || typ == "" {
			if len(s) > maxString {
				return isp.Value{}, "", fmt.Errorf("%w: a string of %d bytes, at most %d", ErrType, len(s), maxString)
			}
			return isp.String(strings.ToValidUTF8(s, "\uFFFD")), "string", nil
		}
		return isp.Value{}, "", fmt.Errorf("%w: want %s, got the string %s", ErrType, typ, excerpt([]byte(s)))
	}
	// a number
	raw := string(sc.raw)
	isInt := !strings.ContainsAny(raw, ".eE")
	switch typ {
	case "string":
		return isp.String(raw), "string", nil
	case "bool":
		switch raw {
		case "0":
			return isp.Bool(false), "bool", nil
		case "1":
			return isp.Bool(true), "bool", nil
		}
		return isp.Value{}, "", fmt.Errorf("%w: want bool, got the number %s", ErrType, excerpt(sc.raw))
	case "int64":
		if isInt {
			if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
				return isp.Int(n), "int64", nil
			}
		}
		f, err := strconv.ParseFloat(raw, 64)
		if err == nil && f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63 {
			return isp.Int(int64(f)), "int64", nil
		}
		return isp.Value{}, "", fmt.Errorf("%w: want int64, got %s", ErrType, excerpt(sc.raw))
	case "", "float64":
		if isInt && typ == "" {
			if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
				return isp.Int(n), "int64", nil
			}
		}
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil || math.IsInf(f, 0) {
			return isp.Value{}, "", fmt.Errorf("%w: %s does not fit a float64", ErrType, excerpt(sc.raw))
		}
		return isp.Float(f), "float64", nil
	}
	return isp.Value{}, "", fmt.Errorf("%w: unknown type %q", ErrType, typ)
}

// excerpt quotes the start of input for an error message: a 10 MB payload must not make a 10 MB error.
func excerpt(b []byte) string {
	const max = 48
	if len(b) <= max {
		return strconv.Quote(string(b))
	}
	return strconv.Quote(string(b[:max])) + fmt.Sprintf("… (%d bytes)", len(b))
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
