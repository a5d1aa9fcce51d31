package modbus

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"strings"
	"unicode/utf8"

	"github.com/iotgw/iotgw/isp"
)

// Type conversion, compared with the peers:
//
//   - Telegraf (plugins/inputs/modbus/type_conversions*.go) builds one converter closure per field, per input type,
//     byte order and output type, and multiplies by the scale. We follow its byte-order names and meanings (see
//     ByteOrder) but depart in two ways: there is no separate output type (an unscaled integer stays an integer,
//     a scaled one becomes a float and keeps its fraction, where Telegraf's INT64 output truncates it), and a
//     decimal scale such as 0.1 divides by 10 instead of multiplying by 0.1, so 231 × 0.1 reads 23.1, not
//     23.100000000000001.
//   - Neuron's Modbus plugin reads bits of registers and strings with a per-tag option; we keep the bit (Bit) and
//     keep of its four string layouts the two that pack two characters per register (high byte first, "H", or low
//     byte first, "L"), chosen by the register's byte order; its one-character-per-register layouts are left out.
//
// The hot path is DecodeAt: a switch and a few shifts, no allocation except for strings, no reflection, no
// closures kept per register (a Register stays a plain value that config can build and compare).

// load reads an n-byte (2, 4 or 8) unsigned value from wire bytes b in order o.
func load(b []byte, o ByteOrder, n int) uint64 {
	switch n {
	case 2:
		v := binary.BigEndian.Uint16(b)
		if o.swapsBytes() {
			v = bits.ReverseBytes16(v)
		}
		return uint64(v)
	case 4:
		return uint64(order32(binary.BigEndian.Uint32(b), o))
	default:
		return order64(binary.BigEndian.Uint64(b), o)
	}
}

// store writes the n-byte value v into b in order o; it is load's inverse.
func store(b []byte, o ByteOrder, n int, v uint64) {
	switch n {
	case 2:
		w := uint16(v)
		if o.swapsBytes() {
			w = bits.ReverseBytes16(w)
		}
		binary.BigEndian.PutUint16(b, w)
	case 4:
		binary.BigEndian.PutUint32(b, order32(uint32(v), o))
	default:
		binary.BigEndian.PutUint64(b, order64(v, o))
	}
}

// order32 converts between the big-endian reading of the wire bytes and the value. Every permutation here is its
// own inverse, so the same function serves load and store.
func order32(v uint32, o ByteOrder) uint32 {
	switch o {
	case DCBA:
		return bits.ReverseBytes32(v)
	case BADC:
		return (v&0x00FF00FF)<<8 | (v>>8)&0x00FF00FF
	case CDAB:
		return bits.RotateLeft32(v, 16)
	}
	return v
}

func order64(v uint64, o ByteOrder) uint64 {
	switch o {
	case DCBA:
		return bits.ReverseBytes64(v)
	case BADC:
		return (v&0x00FF00FF00FF00FF)<<8 | (v>>8)&0x00FF00FF00FF00FF
	case CDAB: // reverse the four 16-bit words: swap the halves, then the words in each half
		v = bits.RotateLeft64(v, 32)
		return (v&0x0000FFFF0000FFFF)<<16 | (v>>16)&0x0000FFFF0000FFFF
	}
	return v
}

// decimal returns n when the scale s is 1/n for a whole n (0.1, 0.01, 0.001, -0.5 …), so that scaling can divide by
// n, which rounds the way people expect decimal fractions to, instead of multiplying by the inexact s.
func decimal(s float64) (n float64, ok bool) {
	if s == 0 || math.Abs(s) >= 1 {
		return 0, false
	}
	n = 1 / s
	return n, n == math.Trunc(n) && math.Abs(n) <= 1<<53
}

// applyScale turns a raw number into engineering units.
func (r *Register) applyScale(raw float64) float64 {
	if n, ok := decimal(r.Scale); ok {
		return raw/n + r.Offset
	}
	return raw*r.scale() + r.Offset
}

// unscale is applyScale's inverse, for writes.
func (r *Register) unscale(v float64) float64 {
	if n, ok := decimal(r.Scale); ok {
		return (v - r.Offset) * n
	}
	return (v - r.Offset) / r.scale()
}

// Decode decodes a register from raw, the bytes of exactly its registers as Modbus delivers them (high byte of
// each register first), or for coils and discrete inputs the packed bit bytes with the register's bit at index 0.
// It is DecodeAt(r, raw, 0).
func Decode(r *Register, raw []byte) (isp.Value, error) { return DecodeAt(r, raw, 0) }

// DecodeAt decodes register r from resp, the data bytes of a read response, where r starts off registers (or for
// coils and discrete inputs, off bits) after the first address the response covers.
//
// Integers decode as isp.Int unless the register is scaled, when they become isp.Float with their fraction kept
// (int16 235 with Scale 0.1 is 23.5); a uint64 above the int64 range also becomes a Float, rounded. Floats always
// decode as isp.Float. A NaN or infinite result is returned together with an error wrapping ErrNotFinite, so the
// caller can publish it with quality bad. Bools decode as isp.Bool, strings as isp.String with trailing NULs and
// spaces trimmed and invalid UTF-8 replaced.
//
// DecodeAt allocates only for strings and errors.
func DecodeAt(r *Register, resp []byte, off uint16) (isp.Value, error) {
	if r.IsBit() {
		i := int(off) >> 3
		if i >= len(resp) {
			return isp.Value{}, r.short(int(off)/8+1, len(resp))
		}
		return isp.Bool(resp[i]>>(off&7)&1 == 1), nil
	}
	start := 2 * int(off)
	end := start + 2*int(r.Quantity())
	if end > len(resp) || r.Quantity() == 0 {
		return isp.Value{}, r.short(end, len(resp))
	}
	b := resp[start:end]
	switch r.Type {
	case TypeBool:
		w := uint16(load(b, r.Order, 2))
		if r.Bit >= 0 {
			return isp.Bool(w>>uint(r.Bit)&1 == 1), nil
		}
		return isp.Bool(w != 0), nil
	case TypeInt16:
		return r.integer(int64(int16(load(b, r.Order, 2))))
	case TypeUint16:
		return r.integer(int64(load(b, r.Order, 2)))
	case TypeInt32:
		return r.integer(int64(int32(load(b, r.Order, 4))))
	case TypeUint32:
		return r.integer(int64(load(b, r.Order, 4)))
	case TypeInt64:
		return r.integer(int64(load(b, r.Order, 8)))
	case TypeUint64:
		u := load(b, r.Order, 8)
		if u > math.MaxInt64 {
			return r.float(float64(u))
		}
		return r.integer(int64(u))
	case TypeFloat32:
		return r.float(float64(math.Float32frombits(uint32(load(b, r.Order, 4)))))
	case TypeFloat64:
		return r.float(math.Float64frombits(load(b, r.Order, 8)))
	case TypeString:
		return isp.String(decodeString(b, r.Order)), nil
	}
	return isp.Value{}, fmt.Errorf("register %q: no valid type (got %v): %w", r.Key, r.Type, ErrInvalidRegister)
}

func (r *Register) short(need, got int) error {
	return fmt.Errorf("register %q: need %d bytes, got %d: %w", r.Key, need, got, ErrShortResponse)
}

// integer returns an integer register's value: an Int as it is, or scaled to a Float.
func (r *Register) integer(i int64) (isp.Value, error) {
	if !r.scaled() {
		return isp.Int(i), nil
	}
	return r.float(float64(i))
}

// float scales a raw float and flags NaN and infinities (also those a huge scale makes).
func (r *Register) float(f float64) (isp.Value, error) {
	if r.scaled() {
		f = r.applyScale(f)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return isp.Float(f), fmt.Errorf("register %q: %v: %w", r.Key, f, ErrNotFinite)
	}
	return isp.Float(f), nil
}

// decodeString reads two characters per register, high byte first unless the order swaps bytes, and trims
// trailing NULs and spaces (devices pad fixed-size string registers with either).
func decodeString(b []byte, o ByteOrder) string {
	var buf [2 * MaxReadRegisters]byte
	s := buf[:0]
	if len(b) > len(buf) {
		s = make([]byte, 0, len(b))
	}
	if o.swapsBytes() {
		for i := 0; i+1 < len(b); i += 2 {
			s = append(s, b[i+1], b[i])
		}
	} else {
		s = append(s, b...)
	}
	n := len(s)
	for n > 0 && (s[n-1] == 0 || s[n-1] == ' ') {
		n--
	}
	if !utf8.Valid(s[:n]) {
		return strings.ToValidUTF8(string(s[:n]), "\uFFFD")
	}
	return string(s[:n])
}

// Encode returns the bytes to write register r with v: for holding registers the wire bytes of its registers in
// its byte order (what Write Multiple Registers, function 16, sends); for a coil one byte holding the bit at index 0
// (what Write Multiple Coils, function 15, sends with quantity 1; CoilValue gives function 5's form).
//
// The scale is applied inversely ((v-Offset)/Scale) and a scaled integer is rounded to the nearest step; an
// unscaled integer register rejects a fraction instead of truncating it. Errors wrap ErrRange when the value does
// not fit the type (and name the type's range), ErrKind when v is the wrong kind (a string for a number, a number
// for a string), ErrNotFinite for NaN and infinities, and ErrReadOnly for discrete inputs and input registers.
// A single bit of a register cannot be written without knowing the rest of it; use BitMask for that.
func Encode(r *Register, v isp.Value) ([]byte, error) {
	if !r.Writable() {
		return nil, fmt.Errorf("register %q: function %d: %w", r.Key, r.Function, ErrReadOnly)
	}
	return appendEncode(nil, r, v)
}

// AppendEncode is Encode appending to dst, for callers that reuse a buffer.
func AppendEncode(dst []byte, r *Register, v isp.Value) ([]byte, error) {
	if !r.Writable() {
		return dst, fmt.Errorf("register %q: function %d: %w", r.Key, r.Function, ErrReadOnly)
	}
	return appendEncode(dst, r, v)
}

// CoilValue returns the value Write Single Coil (function 5) sends: 0xFF00 for on, 0x0000 for off.
func CoilValue(on bool) uint16 {
	if on {
		return 0xFF00
	}
	return 0
}

// BitMask returns the masks of Mask Write Register (function 22) that set bit r.Bit of register r to on and leave the
// other bits alone: the device computes (current AND and) OR (or AND NOT and). The masks are in wire order, so a
// byte-swapped register's bit lands in the right byte.
func BitMask(r *Register, on bool) (and, or uint16, err error) {
	if r.Function != FuncHoldingRegisters || r.Type != TypeBool || r.Bit < 0 || r.Bit > 15 {
		return 0, 0, fmt.Errorf("register %q: not a bit of a holding register: %w", r.Key, ErrInvalidRegister)
	}
	bit := uint16(1) << uint(r.Bit)
	if r.Order.swapsBytes() {
		bit = bits.ReverseBytes16(bit)
	}
	if on {
		return ^bit, bit, nil
	}
	return ^bit, 0, nil
}

// Integer ranges by type, as float64 bounds for scaled values ([lo, hi) with hi exclusive, exact powers of two) and
// for the messages.
var intRanges = [...]struct {
	lo, hi float64 // lo inclusive, hi exclusive
	text   string
}{
	TypeInt16:  {-1 << 15, 1 << 15, "[-32768, 32767]"},
	TypeUint16: {0, 1 << 16, "[0, 65535]"},
	TypeInt32:  {-1 << 31, 1 << 31, "[-2147483648, 2147483647]"},
	TypeUint32: {0, 1 << 32, "[0, 4294967295]"},
	TypeInt64:  {-1 << 63, 1 << 63, "[-9223372036854775808, 9223372036854775807]"},
	TypeUint64: {0, 1 << 64, "[0, 18446744073709551615]"},
}

func appendEncode(dst []byte, r *Register, v isp.Value) ([]byte, error) {
	kindErr := func(want string) error {
		return fmt.Errorf("register %q: %v register needs %s, got %v %v: %w", r.Key, r.Type, want, v.Kind(), v, ErrKind)
	}
	rangeErr := func(text string) error {
		return fmt.Errorf("register %q: %v out of range for %v %s: %w", r.Key, v, r.Type, text, ErrRange)
	}
	switch r.Type {
	case TypeBool:
		b, ok := v.Bool()
		if !ok {
			return dst, kindErr("a bool")
		}
		if r.IsBit() {
			if b {
				return append(dst, 1), nil
			}
			return append(dst, 0), nil
		}
		if r.Bit >= 0 {
			return dst, fmt.Errorf("register %q: writing bit %d alone needs the rest of the register; use BitMask and function 22: %w", r.Key, r.Bit, ErrInvalidRegister)
		}
		var w uint64
		if b {
			w = 1
		}
		return appendWord(dst, r, 2, w), nil
	case TypeString:
		s, ok := v.Str()
		if !ok {
			return dst, kindErr("a string")
		}
		if len(s) > 2*int(r.Length) {
			return dst, fmt.Errorf("register %q: string of %d bytes does not fit %d registers (%d bytes): %w", r.Key, len(s), r.Length, 2*int(r.Length), ErrRange)
		}
		at := len(dst)
		dst = append(dst, s...)
		for len(dst)-at < 2*int(r.Length) {
			dst = append(dst, 0)
		}
		if r.Order.swapsBytes() {
			for i := at; i+1 < len(dst); i += 2 {
				dst[i], dst[i+1] = dst[i+1], dst[i]
			}
		}
		return dst, nil
	case TypeFloat32, TypeFloat64:
		f, ok := number(v)
		if !ok {
			return dst, kindErr("a number")
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return dst, fmt.Errorf("register %q: %v: %w", r.Key, f, ErrNotFinite)
		}
		if r.scaled() {
			f = r.unscale(f)
		}
		if r.Type == TypeFloat64 {
			if math.IsInf(f, 0) {
				return dst, rangeErr("[±1.7976931348623157e308]")
			}
			return appendWord(dst, r, 8, math.Float64bits(f)), nil
		}
		f32 := float32(f)
		if math.IsInf(float64(f32), 0) {
			return dst, rangeErr("[±3.4028235e38]")
		}
		return appendWord(dst, r, 4, uint64(math.Float32bits(f32))), nil
	}
	if !r.Type.isInt() {
		return dst, fmt.Errorf("register %q: no valid type (got %v): %w", r.Key, r.Type, ErrInvalidRegister)
	}
	rng := intRanges[r.Type]
	n := 2 * int(r.Type.registers())
	if v.Kind() == isp.KindInt && !r.scaled() {
		// Exact path: an int64 never goes through float64, so int64 and uint64 registers keep every bit.
		i, _ := v.Int()
		if (r.Type != TypeInt64 && r.Type != TypeUint64 && (float64(i) < rng.lo || float64(i) >= rng.hi)) ||
			(r.Type == TypeUint64 && i < 0) {
			return dst, rangeErr(rng.text)
		}
		return appendWord(dst, r, n, uint64(i)), nil
	}
	if v.Kind() != isp.KindInt && v.Kind() != isp.KindFloat {
		return dst, kindErr("a number")
	}
	f, _ := v.Float()
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, fmt.Errorf("register %q: %v: %w", r.Key, f, ErrNotFinite)
	}
	if r.scaled() {
		f = math.Round(r.unscale(f))
	} else if f != math.Trunc(f) {
		return dst, fmt.Errorf("register %q: %v is not a whole number, which a %v holds: %w", r.Key, v, r.Type, ErrRange)
	}
	if !(f >= rng.lo && f < rng.hi) { // also catches a NaN that a zero scale could not make, but a bad offset could
		return dst, rangeErr(rng.text)
	}
	var u uint64
	if r.Type == TypeUint64 {
		u = uint64(f)
	} else {
		u = uint64(int64(f))
	}
	return appendWord(dst, r, n, u), nil
}

// number returns an int or float value as float64; bools and strings are not numbers to a numeric register.
func number(v isp.Value) (float64, bool) {
	if v.Kind() != isp.KindInt && v.Kind() != isp.KindFloat {
		return 0, false
	}
	return v.Float()
}

func appendWord(dst []byte, r *Register, n int, u uint64) []byte {
	var b [8]byte
	store(b[:n], r.Order, n, u)
	return append(dst, b[:n]...)
}
