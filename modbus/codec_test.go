package modbus

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/iotgw/iotgw/isp"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func holding(typ Type, o ByteOrder) Register {
	return Register{Key: "k", Function: FuncHoldingRegisters, Type: typ, Order: o, Bit: NoBit}
}

func sameValue(a, b isp.Value) bool {
	if a.Kind() != b.Kind() {
		return false
	}
	if a.Kind() == isp.KindFloat {
		x, _ := a.Float()
		y, _ := b.Float()
		return x == y || (math.IsNaN(x) && math.IsNaN(y))
	}
	return a.String() == b.String()
}

// TestGolden checks hand-written wire bytes for every multi-byte type in every order, both ways.
func TestGolden(t *testing.T) {
	tests := []struct {
		name  string
		typ   Type
		order ByteOrder
		wire  string
		want  isp.Value
	}{
		{"int16 ABCD", TypeInt16, ABCD, "FF FE", isp.Int(-2)},
		{"int16 CDAB", TypeInt16, CDAB, "FF FE", isp.Int(-2)},
		{"int16 DCBA", TypeInt16, DCBA, "FE FF", isp.Int(-2)},
		{"int16 BADC", TypeInt16, BADC, "FE FF", isp.Int(-2)},
		{"uint16 ABCD", TypeUint16, ABCD, "12 34", isp.Int(0x1234)},
		{"uint16 DCBA", TypeUint16, DCBA, "34 12", isp.Int(0x1234)},

		{"float32 ABCD", TypeFloat32, ABCD, "42 F6 E9 79", isp.Float(float64(float32(123.456)))},
		{"float32 DCBA", TypeFloat32, DCBA, "79 E9 F6 42", isp.Float(float64(float32(123.456)))},
		{"float32 BADC", TypeFloat32, BADC, "F6 42 79 E9", isp.Float(float64(float32(123.456)))},
		{"float32 CDAB", TypeFloat32, CDAB, "E9 79 42 F6", isp.Float(float64(float32(123.456)))},
		{"int32 ABCD", TypeInt32, ABCD, "FF FF FF FE", isp.Int(-2)},
		{"int32 DCBA", TypeInt32, DCBA, "FE FF FF FF", isp.Int(-2)},
		{"int32 BADC", TypeInt32, BADC, "FF FF FE FF", isp.Int(-2)},
		{"int32 CDAB", TypeInt32, CDAB, "FF FE FF FF", isp.Int(-2)},
		{"uint32 ABCD", TypeUint32, ABCD, "11 22 33 44", isp.Int(0x11223344)},
		{"uint32 DCBA", TypeUint32, DCBA, "44 33 22 11", isp.Int(0x11223344)},
		{"uint32 BADC", TypeUint32, BADC, "22 11 44 33", isp.Int(0x11223344)},
		{"uint32 CDAB", TypeUint32, CDAB, "33 44 11 22", isp.Int(0x11223344)},

		{"int64 ABCD", TypeInt64, ABCD, "01 02 03 04 05 06 07 08", isp.Int(0x0102030405060708)},
		{"int64 DCBA", TypeInt64, DCBA, "08 07 06 05 04 03 02 01", isp.Int(0x0102030405060708)},
		{"int64 BADC", TypeInt64, BADC, "02 01 04 03 06 05 08 07", isp.Int(0x0102030405060708)},
		{"int64 CDAB", TypeInt64, CDAB, "07 08 05 06 03 04 01 02", isp.Int(0x0102030405060708)},
		{"int64 -2 CDAB", TypeInt64, CDAB, "FF FE FF FF FF FF FF FF", isp.Int(-2)},
		{"uint64 ABCD", TypeUint64, ABCD, "01 23 45 67 89 AB CD EF", isp.Int(0x0123456789ABCDEF)},
		{"uint64 DCBA", TypeUint64, DCBA, "EF CD AB 89 67 45 23 01", isp.Int(0x0123456789ABCDEF)},
		{"uint64 BADC", TypeUint64, BADC, "23 01 67 45 AB 89 EF CD", isp.Int(0x0123456789ABCDEF)},
		{"uint64 CDAB", TypeUint64, CDAB, "CD EF 89 AB 45 67 01 23", isp.Int(0x0123456789ABCDEF)},
		{"uint64 above int64", TypeUint64, ABCD, "FF FF FF FF FF FF FF FF", isp.Float(1 << 64)},
		{"float64 ABCD", TypeFloat64, ABCD, "40 5E DD 2F 1A 9F BE 77", isp.Float(123.456)},
		{"float64 DCBA", TypeFloat64, DCBA, "77 BE 9F 1A 2F DD 5E 40", isp.Float(123.456)},
		{"float64 BADC", TypeFloat64, BADC, "5E 40 2F DD 9F 1A 77 BE", isp.Float(123.456)},
		{"float64 CDAB", TypeFloat64, CDAB, "BE 77 1A 9F DD 2F 40 5E", isp.Float(123.456)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := holding(tc.typ, tc.order)
			wire := unhex(t, tc.wire)
			got, err := Decode(&r, wire)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !sameValue(got, tc.want) {
				t.Fatalf("Decode: got %v (%v), want %v (%v)", got, got.Kind(), tc.want, tc.want.Kind())
			}
			if tc.name == "uint64 above int64" {
				return // 2^64 as a float does not fit back; covered by TestEncodeErrors
			}
			enc, err := Encode(&r, tc.want)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.Equal(enc, wire) {
				t.Fatalf("Encode: got % X, want % X", enc, wire)
			}
		})
	}
}

// TestRoundTrip encodes then decodes every type in every order.
func TestRoundTrip(t *testing.T) {
	values := map[Type][]isp.Value{
		TypeBool:    {isp.Bool(true), isp.Bool(false)},
		TypeInt16:   {isp.Int(0), isp.Int(-32768), isp.Int(32767), isp.Int(-1)},
		TypeUint16:  {isp.Int(0), isp.Int(65535), isp.Int(258)},
		TypeInt32:   {isp.Int(math.MinInt32), isp.Int(math.MaxInt32), isp.Int(-123456)},
		TypeUint32:  {isp.Int(0), isp.Int(math.MaxUint32), isp.Int(0x01020304)},
		TypeInt64:   {isp.Int(math.MinInt64), isp.Int(math.MaxInt64), isp.Int(-1)},
		TypeUint64:  {isp.Int(0), isp.Int(math.MaxInt64), isp.Int(0x0102030405060708)},
		TypeFloat32: {isp.Float(0), isp.Float(-1.5), isp.Float(float64(float32(123.456))), isp.Float(math.MaxFloat32)},
		TypeFloat64: {isp.Float(0), isp.Float(-0.5), isp.Float(123.456), isp.Float(math.SmallestNonzeroFloat64)},
		TypeString:  {isp.String("ab"), isp.String("abc"), isp.String(""), isp.String("héllo")},
	}
	for typ := TypeBool; typ <= TypeString; typ++ {
		for o := ABCD; o <= CDAB; o++ {
			for _, v := range values[typ] {
				t.Run(typ.String()+"/"+o.String()+"/"+v.String(), func(t *testing.T) {
					r := holding(typ, o)
					if typ == TypeString {
						r.Length = 3
					}
					if err := r.Validate(); err != nil {
						t.Fatal(err)
					}
					enc, err := Encode(&r, v)
					if err != nil {
						t.Fatalf("Encode: %v", err)
					}
					if len(enc) != 2*int(r.Quantity()) {
						t.Fatalf("Encode: got %d bytes, want %d", len(enc), 2*r.Quantity())
					}
					got, err := Decode(&r, enc)
					if err != nil {
						t.Fatalf("Decode: %v", err)
					}
					if !sameValue(got, v) {
						t.Fatalf("got %v, want %v", got, v)
					}
				})
			}
		}
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		name  string
		order ByteOrder
		wire  string
		want  string
	}{
		{"odd length, NUL padded", ABCD, "41 42 43 00 00 00", "ABC"},
		{"space padded", CDAB, "41 42 43 20 20 20", "ABC"},
		{"mixed padding", ABCD, "41 20 42 00 20 00", "A B"},
		{"swapped bytes", DCBA, "42 41 00 43 00 00", "ABC"},
		{"swapped bytes BADC", BADC, "42 41 44 43 00 45", "ABCDE"},
		{"all NUL", ABCD, "00 00 00 00 00 00", ""},
		{"interior NUL kept", ABCD, "41 00 42 00 00 00", "A\x00B"},
		{"invalid UTF-8 replaced", ABCD, "41 FF 42 00 00 00", "A\uFFFDB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := holding(TypeString, tc.order)
			r.Length = 3
			got, err := Decode(&r, unhex(t, tc.wire))
			if err != nil {
				t.Fatal(err)
			}
			if s, _ := got.Str(); s != tc.want {
				t.Fatalf("got %q, want %q", s, tc.want)
			}
		})
	}
	t.Run("encode odd length pads with NUL", func(t *testing.T) {
		r := holding(TypeString, DCBA)
		r.Length = 2
		got, err := Encode(&r, isp.String("abc"))
		if want := unhex(t, "62 61 00 63"); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("got % X, %v, want % X", got, err, want)
		}
	})
}

func TestBits(t *testing.T) {
	t.Run("register bits", func(t *testing.T) {
		// 0x8001: bit 15 and bit 0 set.
		for _, tc := range []struct {
			order ByteOrder
			wire  string
			bit   int
			want  bool
		}{
			{ABCD, "80 01", 0, true}, {ABCD, "80 01", 15, true}, {ABCD, "80 01", 1, false}, {ABCD, "80 01", 14, false},
			{DCBA, "01 80", 0, true}, {DCBA, "01 80", 15, true}, {DCBA, "01 80", 8, false},
			{ABCD, "00 00", NoBit, false}, {ABCD, "01 00", NoBit, true},
		} {
			r := holding(TypeBool, tc.order)
			r.Bit = tc.bit
			got, err := Decode(&r, unhex(t, tc.wire))
			if b, _ := got.Bool(); err != nil || b != tc.want || got.Kind() != isp.KindBool {
				t.Errorf("%v %s bit %d: got %v, %v, want %v", tc.order, tc.wire, tc.bit, got, err, tc.want)
			}
		}
	})
	t.Run("coils across bytes", func(t *testing.T) {
		// Coils pack least significant bit first: byte 0 holds coils 0..7, byte 1 coils 8..15.
		resp := []byte{0b1000_0001, 0b0000_0010, 0b1000_0000}
		r := Register{Key: "c", Function: FuncCoils, Type: TypeBool, Bit: NoBit}
		for off, want := range map[uint16]bool{0: true, 1: false, 6: false, 7: true, 8: false, 9: true, 15: false, 16: false, 23: true} {
			got, err := DecodeAt(&r, resp, off)
			if b, _ := got.Bool(); err != nil || b != want {
				t.Errorf("coil %d: got %v, %v, want %v", off, got, err, want)
			}
		}
		if _, err := DecodeAt(&r, resp, 24); !errors.Is(err, ErrShortResponse) {
			t.Errorf("coil 24 of 3 bytes: got %v, want ErrShortResponse", err)
		}
	})
	t.Run("coil encode", func(t *testing.T) {
		r := Register{Key: "c", Function: FuncCoils, Type: TypeBool, Bit: NoBit}
		for _, on := range []bool{true, false} {
			enc, err := Encode(&r, isp.Bool(on))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := Decode(&r, enc)
			if b, _ := got.Bool(); b != on {
				t.Errorf("got %v, want %v", got, on)
			}
		}
		if CoilValue(true) != 0xFF00 || CoilValue(false) != 0 {
			t.Error("CoilValue")
		}
	})
	t.Run("mask write", func(t *testing.T) {
		r := holding(TypeBool, ABCD)
		r.Bit = 3
		if _, err := Encode(&r, isp.Bool(true)); !errors.Is(err, ErrInvalidRegister) {
			t.Errorf("Encode of one bit: got %v, want ErrInvalidRegister", err)
		}
		and, or, err := BitMask(&r, true)
		if err != nil || and != 0xFFF7 || or != 0x0008 {
			t.Errorf("ABCD bit 3 on: got %04X %04X %v", and, or, err)
		}
		r.Order = DCBA
		and, or, _ = BitMask(&r, false)
		if and != 0xF7FF || or != 0 {
			t.Errorf("DCBA bit 3 off: got %04X %04X", and, or)
		}
	})
}

func TestScale(t *testing.T) {
	tests := []struct {
		name          string
		typ           Type
		scale, offset float64
		wire          string
		want          isp.Value
	}{
		{"int16 x0.1 keeps fraction", TypeInt16, 0.1, 0, "00 EB", isp.Float(23.5)},
		{"int16 x0.1 decimal", TypeInt16, 0.1, 0, "00 E7", isp.Float(23.1)},
		{"int16 negative x0.1", TypeInt16, 0.1, 0, "FF 15", isp.Float(-23.5)},
		{"uint16 offset -40", TypeUint16, 0, -40, "00 41", isp.Float(25)},
		{"scale 0 is 1, stays int", TypeUint16, 0, 0, "00 41", isp.Int(65)},
		{"scale 1 stays int", TypeInt32, 1, 0, "FF FF FF FE", isp.Int(-2)},
		{"negative scale", TypeInt16, -2, 0, "00 0A", isp.Float(-20)},
		{"negative decimal scale", TypeInt16, -0.5, 1, "00 0A", isp.Float(-4)},
		{"scale and offset", TypeUint16, 0.01, -10, "27 10", isp.Float(90)},
		{"float32 scaled", TypeFloat32, 1000, 0, "3F C0 00 00", isp.Float(1500)},
		{"uint32 x0.001", TypeUint32, 0.001, 0, "00 01 E2 40", isp.Float(123.456)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := holding(tc.typ, ABCD)
			r.Scale, r.Offset = tc.scale, tc.offset
			if err := r.Validate(); err != nil {
				t.Fatal(err)
			}
			wire := unhex(t, tc.wire)
			got, err := Decode(&r, wire)
			if err != nil || !sameValue(got, tc.want) {
				t.Fatalf("Decode: got %v (%v), %v, want %v (%v)", got, got.Kind(), err, tc.want, tc.want.Kind())
			}
			enc, err := Encode(&r, tc.want)
			if err != nil || !bytes.Equal(enc, wire) {
				t.Fatalf("Encode(%v): got % X, %v, want % X", tc.want, enc, err, wire)
			}
		})
	}
	t.Run("encode rounds to the nearest step", func(t *testing.T) {
		r := holding(TypeInt16, ABCD)
		r.Scale = 0.1
		enc, err := Encode(&r, isp.Float(23.57))
		if want := []byte{0x00, 0xEC}; err != nil || !bytes.Equal(enc, want) {
			t.Fatalf("got % X, %v, want % X", enc, err, want)
		}
	})
}

func TestNotFinite(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  Type
		wire string
	}{
		{"float32 NaN", TypeFloat32, "7F C0 00 00"},
		{"float32 +Inf", TypeFloat32, "7F 80 00 00"},
		{"float64 -Inf", TypeFloat64, "FF F0 00 00 00 00 00 00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := holding(tc.typ, ABCD)
			got, err := Decode(&r, unhex(t, tc.wire))
			if !errors.Is(err, ErrNotFinite) || got.Kind() != isp.KindFloat {
				t.Fatalf("got %v, %v, want a float and ErrNotFinite", got, err)
			}
		})
	}
	t.Run("scale overflows", func(t *testing.T) {
		r := holding(TypeFloat32, ABCD)
		r.Scale = math.MaxFloat64
		if _, err := Decode(&r, unhex(t, "42 F6 E9 79")); !errors.Is(err, ErrNotFinite) {
			t.Fatalf("got %v, want ErrNotFinite", err)
		}
	})
}

func TestEncodeErrors(t *testing.T) {
	str := holding(TypeString, ABCD)
	str.Length = 2
	input := Register{Key: "in", Function: FuncInputRegisters, Type: TypeUint16, Bit: NoBit}
	tests := []struct {
		name string
		reg  Register
		v    isp.Value
		want error
		text string // part of the message
	}{
		{"70000 into uint16", holding(TypeUint16, ABCD), isp.Int(70000), ErrRange, "[0, 65535]"},
		{"-1 into uint16", holding(TypeUint16, ABCD), isp.Int(-1), ErrRange, "[0, 65535]"},
		{"-1.0 into uint16", holding(TypeUint16, ABCD), isp.Float(-1), ErrRange, "[0, 65535]"},
		{"40000 into int16", holding(TypeInt16, ABCD), isp.Int(40000), ErrRange, "[-32768, 32767]"},
		{"-1 into uint64", holding(TypeUint64, ABCD), isp.Int(-1), ErrRange, "[0, 18446744073709551615]"},
		{"2^64 into uint64", holding(TypeUint64, ABCD), isp.Float(1 << 64), ErrRange, "uint64"},
		{"2^63 into int64", holding(TypeInt64, ABCD), isp.Float(1 << 63), ErrRange, "int64"},
		{"1e40 into float32", holding(TypeFloat32, ABCD), isp.Float(1e40), ErrRange, "3.4028235e38"},
		{"fraction into int16", holding(TypeInt16, ABCD), isp.Float(1.5), ErrRange, "whole number"},
		{"NaN into float32", holding(TypeFloat32, ABCD), isp.Float(math.NaN()), ErrNotFinite, "NaN"},
		{"Inf into int32", holding(TypeInt32, ABCD), isp.Float(math.Inf(1)), ErrNotFinite, "Inf"},
		{"string into int16", holding(TypeInt16, ABCD), isp.String("1"), ErrKind, "needs a number"},
		{"bool into float32", holding(TypeFloat32, ABCD), isp.Bool(true), ErrKind, "needs a number"},
		{"null into uint16", holding(TypeUint16, ABCD), isp.Null(), ErrKind, "needs a number"},
		{"number into string", str, isp.Int(1), ErrKind, "needs a string"},
		{"string into bool", holding(TypeBool, ABCD), isp.String("on"), ErrKind, "needs a bool"},
		{"string too long", str, isp.String("abcde"), ErrRange, "does not fit"},
		{"input register", input, isp.Int(1), ErrReadOnly, "function 4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Encode(&tc.reg, tc.v)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want %v containing %q", err, tc.want, tc.text)
			}
			if !strings.Contains(err.Error(), `"`+tc.reg.Key+`"`) {
				t.Errorf("error %q does not name the register", err)
			}
		})
	}
	t.Run("scaled value out of range", func(t *testing.T) {
		r := holding(TypeInt16, ABCD)
		r.Scale = 0.1
		if _, err := Encode(&r, isp.Float(3300)); !errors.Is(err, ErrRange) { // raw 33000
			t.Fatalf("got %v, want ErrRange", err)
		}
	})
}

func TestDecodeShort(t *testing.T) {
	r := holding(TypeFloat32, ABCD)
	if _, err := Decode(&r, []byte{1, 2, 3}); !errors.Is(err, ErrShortResponse) {
		t.Fatalf("got %v, want ErrShortResponse", err)
	}
	if _, err := DecodeAt(&r, make([]byte, 8), 3); !errors.Is(err, ErrShortResponse) {
		t.Fatalf("offset 3 of 4 registers: got %v, want ErrShortResponse", err)
	}
}

func TestValidate(t *testing.T) {
	ok := holding(TypeFloat32, CDAB)
	tests := []struct {
		name   string
		mutate func(r *Register)
		text   string // "" for valid
	}{
		{"valid", func(r *Register) {}, ""},
		{"zero bit tolerated", func(r *Register) { r.Bit = 0 }, ""},
		{"coil", func(r *Register) { r.Function, r.Type = FuncCoils, TypeBool }, ""},
		{"register bit 15", func(r *Register) { r.Type, r.Bit = TypeBool, 15 }, ""},
		{"empty key", func(r *Register) { r.Key = "" }, "empty key"},
		{"dot in key", func(r *Register) { r.Key = "a.b" }, "NATS subject token"},
		// The gateway's processor drops a point whose key isp.ValidToken refuses: the sidecar refuses it first.
		{"non-ASCII key", func(r *Register) { r.Key = "temp°" }, "non-ASCII"},
		{"key of 65", func(r *Register) { r.Key = strings.Repeat("k", 65) }, "at most 64"},
		{"function 5", func(r *Register) { r.Function = 5 }, "not a read function"},
		{"no type", func(r *Register) { r.Type = TypeInvalid }, "no valid type"},
		{"bad order", func(r *Register) { r.Order = 9 }, "byte order"},
		{"coil int16", func(r *Register) { r.Function = FuncCoils; r.Type = TypeInt16 }, "must be bool"},
		{"discrete float", func(r *Register) { r.Function = FuncDiscreteInputs }, "must be bool"},
		{"coil with bit", func(r *Register) { r.Function, r.Type, r.Bit = FuncCoils, TypeBool, 3 }, "one bit already"},
		{"bit 16", func(r *Register) { r.Type, r.Bit = TypeBool, 16 }, "bit 16 out of range"},
		{"bit -2", func(r *Register) { r.Type, r.Bit = TypeBool, -2 }, "out of range"},
		{"bit on float", func(r *Register) { r.Bit = 3 }, "bits apply to type bool only"},
		{"string length 0", func(r *Register) { r.Type = TypeString }, "length 0"},
		{"length on float", func(r *Register) { r.Length = 3 }, "spans 2"},
		{"string 126", func(r *Register) { r.Type, r.Length = TypeString, 126 }, "more than one read"},
		{"past 65535", func(r *Register) { r.Address = 65535 }, "runs past 65535"},
		{"last address ok", func(r *Register) { r.Address = 65534 }, ""},
		{"scaled bool", func(r *Register) { r.Type, r.Scale = TypeBool, 2 }, "do not apply"},
		{"NaN scale", func(r *Register) { r.Scale = math.NaN() }, "finite"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.mutate(&r)
			err := r.Validate()
			if tc.text == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidRegister) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want ErrInvalidRegister containing %q", err, tc.text)
			}
		})
	}
}

func TestParse(t *testing.T) {
	for typ := TypeBool; typ <= TypeString; typ++ {
		if got, err := ParseType(strings.ToUpper(typ.String())); err != nil || got != typ {
			t.Errorf("ParseType(%q): got %v, %v", typ, got, err)
		}
	}
	if _, err := ParseType("float"); err == nil {
		t.Error(`ParseType("float"): want an error`)
	}
	for o := ABCD; o <= CDAB; o++ {
		if got, err := ParseByteOrder(strings.ToLower(o.String())); err != nil || got != o {
			t.Errorf("ParseByteOrder(%q): got %v, %v", o, got, err)
		}
	}
	if got, _ := ParseByteOrder("BA"); got != DCBA {
		t.Errorf(`ParseByteOrder("BA"): got %v, want DCBA`, got)
	}
	for name, want := range map[string]ByteOrder{"ABCDEFGH": ABCD, "hgfedcba": DCBA, "BADCFEHG": BADC, "GHEFCDAB": CDAB} {
		if got, err := ParseByteOrder(name); err != nil || got != want {
			t.Errorf("ParseByteOrder(%q): got %v, %v; want %v", name, got, err, want)
		}
	}
}
