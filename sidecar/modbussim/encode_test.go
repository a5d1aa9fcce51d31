package modbussim

import (
	"errors"
	"slices"
	"testing"
)

// goldens are the documented wire forms; float32 123.456 is 0x42F6E979 and
// float64 123.456 is 0x405EDD2F1A9FBE77.
var goldens = []struct {
	typ, order string
	v          float64
	want       []uint16
}{
	{"float32", "ABCD", 123.456, []uint16{0x42F6, 0xE979}},
	{"float32", "", 123.456, []uint16{0x42F6, 0xE979}},
	{"float32", "DCBA", 123.456, []uint16{0x79E9, 0xF642}},
	{"float32", "BADC", 123.456, []uint16{0xF642, 0x79E9}},
	{"float32", "CDAB", 123.456, []uint16{0xE979, 0x42F6}},
	{"float64", "ABCD", 123.456, []uint16{0x405E, 0xDD2F, 0x1A9F, 0xBE77}},
	{"float64", "DCBA", 123.456, []uint16{0x77BE, 0x9F1A, 0x2FDD, 0x5E40}},
	{"float64", "BADC", 123.456, []uint16{0x5E40, 0x2FDD, 0x9F1A, 0x77BE}},
	{"float64", "CDAB", 123.456, []uint16{0xBE77, 0x1A9F, 0xDD2F, 0x405E}},
	{"uint16", "ABCD", 0x1234, []uint16{0x1234}},
	{"uint16", "DCBA", 0x1234, []uint16{0x3412}},
	{"uint16", "BADC", 0x1234, []uint16{0x3412}},
	{"uint16", "CDAB", 0x1234, []uint16{0x1234}},
	{"uint16", "ABCD", 70000, []uint16{0xFFFF}}, // clamped
	{"uint16", "ABCD", 1.5, []uint16{2}},        // rounded
	{"int16", "ABCD", -2, []uint16{0xFFFE}},
	{"int16", "DCBA", -2, []uint16{0xFEFF}},
	{"int16", "ABCD", -40000, []uint16{0x8000}},
	{"int32", "ABCD", -123456, []uint16{0xFFFE, 0x1DC0}},
	{"int32", "DCBA", -123456, []uint16{0xC01D, 0xFEFF}},
	{"int32", "BADC", -123456, []uint16{0xFEFF, 0xC01D}},
	{"int32", "CDAB", -123456, []uint16{0x1DC0, 0xFFFE}},
	{"uint32", "ABCD", 0x12345678, []uint16{0x1234, 0x5678}},
	{"uint32", "DCBA", 0x12345678, []uint16{0x7856, 0x3412}},
	{"uint32", "BADC", 0x12345678, []uint16{0x3412, 0x7856}},
	{"uint32", "CDAB", 0x12345678, []uint16{0x5678, 0x1234}},
	{"uint32", "ABCD", -5, []uint16{0, 0}},
	{"int64", "ABCD", -1, []uint16{0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF}},
	{"int64", "ABCD", 0x0102030405060700, []uint16{0x0102, 0x0304, 0x0506, 0x0700}},
	{"int64", "DCBA", 0x0102030405060700, []uint16{0x0007, 0x0605, 0x0403, 0x0201}},
	{"int64", "BADC", 0x0102030405060700, []uint16{0x0201, 0x0403, 0x0605, 0x0007}},
	{"int64", "CDAB", 0x0102030405060700, []uint16{0x0700, 0x0506, 0x0304, 0x0102}},
	{"uint64", "ABCD", 0x0102030405060700, []uint16{0x0102, 0x0304, 0x0506, 0x0700}},
	{"uint64", "CDAB", 0x0102030405060700, []uint16{0x0700, 0x0506, 0x0304, 0x0102}},
	{"uint64", "ABCD", 1e30, []uint16{0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF}},
	{"bool", "ABCD", 1, []uint16{1}},
	{"bool", "ABCD", 0, []uint16{0}},
}

func TestEncodeGolden(t *testing.T) {
	for _, tc := range goldens {
		t.Run(tc.typ+"/"+tc.order, func(t *testing.T) {
			got, err := Encode(tc.typ, tc.order, tc.v)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Encode(%s, %s, %v) = %04X, want %04X", tc.typ, tc.order, tc.v, got, tc.want)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	if _, err := Encode("float16", "", 1); !errors.Is(err, ErrBadType) {
		t.Errorf("bad type: got %v, want ErrBadType", err)
	}
	if _, err := Encode("int32", "ACBD", 1); !errors.Is(err, ErrBadOrder) {
		t.Errorf("bad order: got %v, want ErrBadOrder", err)
	}
}
