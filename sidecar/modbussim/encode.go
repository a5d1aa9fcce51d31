package modbussim

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
)

// valueType is a Signal.Type, parsed.
type valueType uint8

const (
	typeUint16 valueType = iota
	typeInt16
	typeUint32
	typeInt32
	typeFloat32
	typeUint64
	typeInt64
	typeFloat64
	typeBool
)

var typeNames = map[string]valueType{
	"uint16": typeUint16, "int16": typeInt16,
	"uint32": typeUint32, "int32": typeInt32, "float32": typeFloat32,
	"uint64": typeUint64, "int64": typeInt64, "float64": typeFloat64,
	"bool": typeBool,
}

func parseType(s string) (valueType, error) {
	if s == "" {
		return typeUint16, nil
	}
	t, ok := typeNames[strings.ToLower(s)]
	if !ok {
		return 0, fmt.Errorf("%w: %q (want int16, uint16, int32, uint32, float32, int64, uint64, float64 or bool)", ErrBadType, s)
	}
	return t, nil
}

// registers is how many 16-bit registers the type takes (a bool takes one
// when it lives in a register table).
func (t valueType) registers() int {
	switch t {
	case typeUint32, typeInt32, typeFloat32:
		return 2
	case typeUint64, typeInt64, typeFloat64:
		return 4
	}
	return 1
}

// byteOrder is a Signal.Order, parsed.
type byteOrder uint8

const (
	orderABCD byteOrder = iota // big-endian
	orderDCBA                  // little-endian
	orderBADC                  // bytes swapped within each register
	orderCDAB                  // registers swapped, bytes in place
)

func parseOrder(s string) (byteOrder, error) {
	switch strings.ToUpper(s) {
	case "", "ABCD", "AB", "ABCDEFGH", "BIG":
		return orderABCD, nil
	case "DCBA", "BA", "HGFEDCBA", "LITTLE":
		return orderDCBA, nil
	case "BADC", "BADCFEHG":
		return orderBADC, nil
	case "CDAB", "GHEFCDAB":
		return orderCDAB, nil
	}
	return 0, fmt.Errorf("%w: %q (want ABCD, DCBA, BADC or CDAB)", ErrBadOrder, s)
}

// Encode returns the registers that hold v as typ in order, exactly as a
// [Signal] of that type and order puts them on the wire. Tests use it to
// build expected values; typ and order take the same names as in Signal.
// Integer types round to nearest and clamp to their range; a bool is one
// register holding 0 or 1.
func Encode(typ, order string, v float64) ([]uint16, error) {
	t, err := parseType(typ)
	if err != nil {
		return nil, err
	}
	o, err := parseOrder(order)
	if err != nil {
		return nil, err
	}
	out := make([]uint16, t.registers())
	encode(out, t, o, v)
	return out, nil
}

// encode writes v into dst (len(dst) == t.registers()) without allocating.
func encode(dst []uint16, t valueType, o byteOrder, v float64) {
	var b [8]byte
	n := 2 * t.registers()
	switch t {
	case typeUint16:
		binary.BigEndian.PutUint16(b[:], uint16(clampRound(v, 0, math.MaxUint16)))
	case typeInt16:
		binary.BigEndian.PutUint16(b[:], uint16(int16(clampRound(v, math.MinInt16, math.MaxInt16))))
	case typeBool:
		if v != 0 {
			b[1] = 1
		}
	case typeUint32:
		binary.BigEndian.PutUint32(b[:], uint32(clampRound(v, 0, math.MaxUint32)))
	case typeInt32:
		binary.BigEndian.PutUint32(b[:], uint32(int32(clampRound(v, math.MinInt32, math.MaxInt32))))
	case typeFloat32:
		binary.BigEndian.PutUint32(b[:], math.Float32bits(float32(v)))
	case typeUint64:
		binary.BigEndian.PutUint64(b[:], toUint64(v))
	case typeInt64:
		binary.BigEndian.PutUint64(b[:], uint64(toInt64(v)))
	case typeFloat64:
		binary.BigEndian.PutUint64(b[:], math.Float64bits(v))
	}
	reorder(b[:n], o)
	for i := range dst {
		dst[i] = binary.BigEndian.Uint16(b[2*i:])
	}
}

// reorder turns big-endian bytes into the wire order o, in place.
func reorder(b []byte, o byteOrder) {
	switch o {
	case orderDCBA:
		for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
			b[i], b[j] = b[j], b[i]
		}
	case orderBADC:
		for i := 0; i+1 < len(b); i += 2 {
			b[i], b[i+1] = b[i+1], b[i]
		}
	case orderCDAB:
		// Reverse the order of the registers, keep each register's bytes.
		for i, j := 0, len(b)-2; i < j; i, j = i+2, j-2 {
			b[i], b[i+1], b[j], b[j+1] = b[j], b[j+1], b[i], b[i+1]
		}
	}
}

// clampRound rounds v to the nearest integer inside lo..hi; NaN becomes 0.
// Go's float-to-int conversion is undefined out of range, hence the clamp.
func clampRound(v, lo, hi float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	v = math.Round(v)
	return math.Max(lo, math.Min(hi, v))
}

func toUint64(v float64) uint64 {
	v = clampRound(v, 0, math.MaxUint64)
	if v >= 1<<64 { // MaxUint64 rounds up to 2^64 as a float64
		return math.MaxUint64
	}
	return uint64(v)
}

func toInt64(v float64) int64 {
	v = clampRound(v, math.MinInt64, math.MaxInt64)
	if v >= 1<<63 {
		return math.MaxInt64
	}
	return int64(v)
}
