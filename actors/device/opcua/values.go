package opcua

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
)

// Values between OPC UA and points. A node's configured type is what its point is published as; the server's
// value must fit it: float64 takes any number, int64 an integer, bool a Boolean, string a String or
// LocalizedText. Anything else (an array, a structure, a Double for int64) is a wrong type: the point is bad and an
// event says which type the server gave. A point's type is declared in the config and travels with it, so a value
// that does not fit is refused rather than published as a string where a float was promised (or truncated where
// an integer was).

// errWrongType is the error of a value that does not fit the node's type.
var errWrongType = errors.New("wrong type")

// pointValue converts a server value for node n: its published value and type.
func pointValue(n *config.OPCUANode, v *ua.Variant) (isp.Value, string, error) {
	if v == nil || v.Value() == nil {
		return isp.Null(), n.Type, fmt.Errorf("%w: the server gave no value", errWrongType)
	}
	if v.ArrayLength() > 0 || len(v.ArrayDimensions()) > 0 {
		return isp.Null(), n.Type, fmt.Errorf("%w: the server gives an array of %s, the point is one %s", errWrongType, typeName(v.Type()), n.Type)
	}
	scaled := n.Scale != 0 || n.Offset != 0
	switch n.Type {
	case "bool":
		if b, ok := v.Value().(bool); ok {
			return isp.Bool(b), "bool", nil
		}
	case "string":
		switch s := v.Value().(type) {
		case string:
			return isp.String(s), "string", nil
		case *ua.LocalizedText:
			if s != nil {
				return isp.String(s.Text), "string", nil
			}
		}
	case "int64":
		if i, ok := integer(v.Value()); ok {
			if scaled {
				return isp.Float(scale(n, float64(i))), "float64", nil
			}
			return isp.Int(i), "int64", nil
		}
		if u, ok := v.Value().(uint64); ok {
			if scaled {
				return isp.Float(scale(n, float64(u))), "float64", nil
			}
			return isp.Null(), n.Type, fmt.Errorf("%w: UInt64 %d does not fit int64", errWrongType, u)
		}
	default: // float64
		if f, ok := number(v.Value()); ok {
			return isp.Float(scale(n, f)), "float64", nil
		}
	}
	return isp.Null(), n.Type, fmt.Errorf("%w: the server gives %s, the point is %s", errWrongType, typeName(v.Type()), n.Type)
}

func scale(n *config.OPCUANode, f float64) float64 {
	if n.Scale != 0 {
		f *= n.Scale
	}
	return f + n.Offset
}

// integer is a signed or unsigned OPC UA integer that fits int64 (not UInt64, checked by the caller).
func integer(x any) (int64, bool) {
	switch i := x.(type) {
	case int8:
		return int64(i), true
	case uint8:
		return int64(i), true
	case int16:
		return int64(i), true
	case uint16:
		return int64(i), true
	case int32:
		return int64(i), true
	case uint32:
		return int64(i), true
	case int64:
		return i, true
	case uint64:
		if i <= math.MaxInt64 {
			return int64(i), true
		}
	}
	return 0, false
}

func number(x any) (float64, bool) {
	switch f := x.(type) {
	case float32:
		return float64(f), true
	case float64:
		return f, true
	case uint64:
		return float64(f), true
	}
	if i, ok := integer(x); ok {
		return float64(i), true
	}
	return 0, false
}

// quality maps an OPC UA status code to a point's quality by its severity (the top two bits, Part 4 7.39): good is
// 1, uncertain is -1 (the value is published, its quality unknown), bad is 0.
func quality(s ua.StatusCode) int {
	switch uint32(s) >> 30 {
	case 0:
		return isp.QualityGood
	case 1:
		return isp.QualityUnknown
	default:
		return isp.QualityBad
	}
}

// typeName is a variant's type as OPC UA names it: Double, not TypeIDDouble.
func typeName(t ua.TypeID) string { return strings.TrimPrefix(t.String(), "TypeID") }

// statusName is a status code as OPC UA names it: "BadNodeIdUnknown (0x80340000)".
func statusName(s ua.StatusCode) string {
	if d, ok := ua.StatusCodes[s]; ok {
		return fmt.Sprintf("%s (0x%08X)", strings.TrimPrefix(d.Name, "Status"), uint32(s))
	}
	return fmt.Sprintf("status 0x%08X", uint32(s))
}

// statusText names a status with its description when gopcua knows it.
func statusText(s ua.StatusCode) string {
	d, ok := ua.StatusCodes[s]
	if !ok {
		return fmt.Sprintf("status 0x%08X", uint32(s))
	}
	return fmt.Sprintf("%s (0x%08X): %s", strings.TrimPrefix(d.Name, "Status"), uint32(s), d.Text)
}

// timestamp is a value's source timestamp, else the server's, else at.
func timestamp(dv *ua.DataValue, at time.Time) int64 {
	switch {
	case dv != nil && dv.EncodingMask&ua.DataValueSourceTimestamp != 0 && !dv.SourceTimestamp.IsZero():
		return dv.SourceTimestamp.UnixNano()
	case dv != nil && dv.EncodingMask&ua.DataValueServerTimestamp != 0 && !dv.ServerTimestamp.IsZero():
		return dv.ServerTimestamp.UnixNano()
	}
	return at.UnixNano()
}

// writeVariant encodes a write request's JSON value for node n as a variant of the server's type for the node (the
// type of its current value), undoing the node's scale and offset: a float for a Float node, an Int16 in range
// for an Int16 node. A value that does not fit is an error naming the type and the range.
func writeVariant(n *config.OPCUANode, raw json.RawMessage, serverType ua.TypeID) (*ua.Variant, any, error) {
	if len(raw) == 0 {
		return nil, nil, errors.New("missing")
	}
	var x any
	if err := json.Unmarshal(raw, &x); err != nil {
		return nil, nil, err
	}
	switch serverType {
	case ua.TypeIDBoolean:
		b, ok := x.(bool)
		if !ok {
			if f, isNum := x.(float64); isNum && (f == 0 || f == 1) {
				b, ok = f == 1, true
			}
		}
		if !ok {
			return nil, nil, fmt.Errorf("the node is Boolean: want true or false, not %s", raw)
		}
		return ua.MustVariant(b), b, nil
	case ua.TypeIDString:
		s, ok := x.(string)
		if !ok {
			return nil, nil, fmt.Errorf("the node is a String: want a string, not %s", raw)
		}
		return ua.MustVariant(s), s, nil
	}
	f, ok := x.(float64)
	if !ok {
		return nil, nil, fmt.Errorf("the node is %s: want a number, not %s", typeName(serverType), raw)
	}
	value := f
	if n.Scale != 0 || n.Offset != 0 {
		s := n.Scale
		if s == 0 {
			s = 1
		}
		f = (f - n.Offset) / s
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, nil, fmt.Errorf("%v is not a number the node can take", value)
	}
	intIn := func(lo, hi float64) (int64, error) {
		r := math.Round(f)
		if math.Abs(r-f) > 1e-9 || r < lo || r > hi {
			return 0, fmt.Errorf("the node is %s: %v (raw %v) is not an integer in %v..%v", typeName(serverType), value, f, lo, hi)
		}
		return int64(r), nil
	}
	var v any
	var err error
	var i int64
	switch serverType {
	case ua.TypeIDDouble:
		v = f
	case ua.TypeIDFloat:
		if math.Abs(f) > math.MaxFloat32 {
			return nil, nil, fmt.Errorf("the node is Float: %v is out of its range", value)
		}
		v = float32(f)
	case ua.TypeIDSByte:
		i, err = intIn(math.MinInt8, math.MaxInt8)
		v = int8(i)
	case ua.TypeIDByte:
		i, err = intIn(0, math.MaxUint8)
		v = uint8(i)
	case ua.TypeIDInt16:
		i, err = intIn(math.MinInt16, math.MaxInt16)
		v = int16(i)
	case ua.TypeIDUint16:
		i, err = intIn(0, math.MaxUint16)
		v = uint16(i)
	case ua.TypeIDInt32:
		i, err = intIn(math.MinInt32, math.MaxInt32)
		v = int32(i)
	case ua.TypeIDUint32:
		i, err = intIn(0, math.MaxUint32)
		v = uint32(i)
	case ua.TypeIDInt64:
		i, err = intIn(-(1 << 53), 1<<53) // a JSON number is exact to 2^53
		v = i
	case ua.TypeIDUint64:
		i, err = intIn(0, 1<<53)
		v = uint64(i)
	default:
		return nil, nil, fmt.Errorf("the node's type %s cannot be written by the gateway (numbers, Boolean and String can)", typeName(serverType))
	}
	if err != nil {
		return nil, nil, err
	}
	variant, err := ua.NewVariant(v)
	if err != nil {
		return nil, nil, err
	}
	return variant, value, nil
}
