package isp

import (
	"math"
	"strconv"
)

// Quality codes of a point, as the ISP seed defines them.
const (
	QualityGood    = 1
	QualityBad     = 0
	QualityUnknown = -1
)

// Kind is the JSON type of a point's value.
type Kind uint8

// The kinds of Value. The zero Value is null.
const (
	KindNull   Kind = iota
	KindFloat       // a JSON number with a fraction or exponent, or an integer beyond int64
	KindInt         // a JSON integer literal that fits int64
	KindBool        // true or false
	KindString      // a JSON string
)

var kindNames = [...]string{KindNull: "null", KindFloat: "float", KindInt: "int", KindBool: "bool", KindString: "string"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Value is a point's value. It holds numbers and bools without boxing them in an interface, so making one, copying
// it and reading it never allocate. Build one with Float, Int, Bool, String or Null; the zero Value is null.
type Value struct {
	kind Kind
	bits uint64 // float64 bits for KindFloat, the int64 for KindInt, 0 or 1 for KindBool
	str  string // KindString only
}

// Float returns a float value. NaN and ±Inf are allowed in memory but are not JSON: they encode as null.
func Float(f float64) Value { return Value{kind: KindFloat, bits: math.Float64bits(f)} }

// Int returns an integer value.
func Int(i int64) Value { return Value{kind: KindInt, bits: uint64(i)} }

// Bool returns a boolean value.
func Bool(b bool) Value {
	v := Value{kind: KindBool}
	if b {
		v.bits = 1
	}
	return v
}

// String returns a string value.
func String(s string) Value { return Value{kind: KindString, str: s} }

// Null returns the null value, the same as Value{}.
func Null() Value { return Value{} }

// Kind reports the value's kind.
func (v Value) Kind() Kind { return v.kind }

// Float returns the value as a float64: floats as they are, ints converted (large ones rounded), bools as 1 or 0.
// ok is false for strings and null.
func (v Value) Float() (f float64, ok bool) {
	switch v.kind {
	case KindFloat:
		return math.Float64frombits(v.bits), true
	case KindInt:
		return float64(int64(v.bits)), true
	case KindBool:
		return float64(v.bits), true
	}
	return 0, false
}

// Int returns the value as an int64: ints as they are, bools as 1 or 0, and floats only when they are whole
// numbers within int64's range (25.0 gives 25; 25.5 gives ok false, never a silently truncated 25).
func (v Value) Int() (i int64, ok bool) {
	switch v.kind {
	case KindInt, KindBool:
		return int64(v.bits), true
	case KindFloat:
		f := math.Float64frombits(v.bits)
		// -2^63 is exact as a float64; 2^63 is the first float above int64's range.
		if f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63 {
			return int64(f), true
		}
	}
	return 0, false
}

// Bool returns the value as a bool: bools as they are, and numbers as "not zero" (a coil read as 0 or 1 is
// often sent as a number). ok is false for strings, null and NaN.
func (v Value) Bool() (b bool, ok bool) {
	switch v.kind {
	case KindBool, KindInt:
		return v.bits != 0, true
	case KindFloat:
		f := math.Float64frombits(v.bits)
		if f != f {
			return false, false
		}
		return f != 0, true
	}
	return false, false
}

// Str returns the string of a string value; ok is false for every other kind (use String for display).
func (v Value) Str() (s string, ok bool) {
	if v.kind == KindString {
		return v.str, true
	}
	return "", false
}

// String formats the value for people: 25.5, 42, true, "text" (quoted, so a string "42" is told from a number),
// null.
func (v Value) String() string {
	switch v.kind {
	case KindFloat:
		return strconv.FormatFloat(math.Float64frombits(v.bits), 'g', -1, 64)
	case KindInt:
		return strconv.FormatInt(int64(v.bits), 10)
	case KindBool:
		return strconv.FormatBool(v.bits != 0)
	case KindString:
		return strconv.Quote(v.str)
	}
	return "null"
}

// Any returns the value as float64, int64, bool, string or nil, for code that hands it to encoding/json or fmt.
// Numbers and bools are boxed, so this allocates; the codec never calls it.
func (v Value) Any() any {
	switch v.kind {
	case KindFloat:
		return math.Float64frombits(v.bits)
	case KindInt:
		return int64(v.bits)
	case KindBool:
		return v.bits != 0
	case KindString:
		return v.str
	}
	return nil
}

// Tag is one entry of a point's tags. Tags are a slice, not a map, so their order survives a round trip and
// decoding them needs no map per point.
type Tag struct{ Key, Value string }

// Point is the seed's data point. The comments give the JSON field names.
type Point struct {
	DeviceID  string // "device_id", omitted when empty
	Key       string // "key", required and not empty
	Value     Value  // "value": number, bool, string or null
	Type      string // "type", the register's type such as float32, int16, bool or string; omitted when empty
	Quality   int    // "quality": QualityGood, QualityBad or QualityUnknown
	Timestamp int64  // "timestamp" in Unix nanoseconds; 0 means "not stamped yet"
	Tags      []Tag  // "tags", a JSON object of strings in this order; omitted when empty
	Source    string // "source", omitted when empty
}

// Tag returns the value of the tag named key.
func (p *Point) Tag(key string) (string, bool) {
	for i := range p.Tags {
		if p.Tags[i].Key == key {
			return p.Tags[i].Value, true
		}
	}
	return "", false
}
