package modbus

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"

	"github.com/iotgw/iotgw/isp"
)

// FuzzDecode feeds arbitrary register definitions and bytes to Decode, which must never panic, even for a register
// that fails Validate. When an integer register decodes, encoding the value gives back the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(uint8(3), uint8(TypeInt16), uint8(ABCD), int8(-1), uint8(0), 0.1, 0.0, uint16(0), []byte{0x00, 0xEB})
	f.Add(uint8(4), uint8(TypeUint32), uint8(CDAB), int8(-1), uint8(0), 0.0, -40.0, uint16(1), []byte{1, 2, 3, 4, 5, 6})
	f.Add(uint8(3), uint8(TypeInt64), uint8(BADC), int8(0), uint8(0), 1.0, 0.0, uint16(0), []byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(uint8(3), uint8(TypeString), uint8(DCBA), int8(-1), uint8(3), 0.0, 0.0, uint16(0), []byte("abcde\x00"))
	f.Add(uint8(1), uint8(TypeBool), uint8(ABCD), int8(-1), uint8(0), 0.0, 0.0, uint16(9), []byte{0, 2})
	f.Add(uint8(3), uint8(TypeBool), uint8(ABCD), int8(15), uint8(0), 0.0, 0.0, uint16(0), []byte{0x80, 0})
	f.Add(uint8(3), uint8(TypeFloat32), uint8(ABCD), int8(-1), uint8(0), 0.0, 0.0, uint16(0), []byte{0x7F, 0xC0, 0, 0})
	f.Fuzz(func(t *testing.T, fn, typ, order uint8, bit int8, length uint8, scale, offset float64, off uint16, raw []byte) {
		r := Register{Key: "f", Function: fn, Type: Type(typ), Order: ByteOrder(order), Bit: int(bit),
			Length: uint16(length), Scale: scale, Offset: offset}
		v, err := DecodeAt(&r, raw, off)
		if r.Validate() != nil || err != nil || !r.Type.isInt() {
			return
		}
		if r.scaled() && (r.Type.registers() == 4 || math.Abs(r.scale()) < 1e-6 || math.Abs(r.scale()) > 1e6 || math.Abs(r.Offset) > 1e6) {
			return // a float64 cannot carry every bit of a scaled 64-bit value, nor survive extreme scales
		}
		if r.Type == TypeUint64 && v.Kind() == isp.KindFloat {
			return // above int64: decoded as a rounded float by design
		}
		w := r
		w.Function = FuncHoldingRegisters // input registers are read-only, but the bytes are the same
		enc, err := Encode(&w, v)
		if err != nil {
			t.Fatalf("Encode(%v) of a decoded %v: %v", v, r.Type, err)
		}
		start := 2 * int(off)
		if want := raw[start : start+2*int(r.Quantity())]; !bytes.Equal(enc, want) {
			t.Fatalf("%v %v scale %v offset %v: decoded %v, encoded % X, want % X", r.Type, r.Order, r.Scale, r.Offset, v, enc, want)
		}
	})
}

// FuzzPlan plans random register sets with random options and checks the plan's invariants (see checkPlan).
func FuzzPlan(f *testing.F) {
	f.Add([]byte{1, 3, 0, 0, 2, 1, 3, 0, 12, 2, 1, 1, 0, 5, 1}, 0, 0, 0, 0)
	f.Add(bytes.Repeat([]byte{1, 3, 0, 1, 9}, 50), 10, 0, -1, 0)
	f.Fuzz(func(t *testing.T, data []byte, maxRegs, maxBits, gap, bitGap int) {
		// Five bytes a register: slave (0..2), function (1..4), address (16 bits, folded to a small range so
		// registers collide and cluster, with the top of the address space reachable), type.
		var regs []Register
		for i := 0; i+5 <= len(data) && len(regs) < 2000; i += 5 {
			fn := data[i+1]%4 + 1
			addr := binary.BigEndian.Uint16(data[i+2:])
			if addr < 0xF000 {
				addr %= 600
			}
			r := Register{SlaveID: data[i] % 3, Function: fn, Address: addr, Bit: NoBit,
				Type: Type(data[i+4]%uint8(TypeString) + 1)}
			if r.IsBit() {
				r.Type = TypeBool
			}
			if r.Type == TypeString {
				r.Length = uint16(data[i+4]%20 + 1)
			}
			if int(r.Address)+int(r.Quantity()) > 1<<16 {
				r.Address = uint16(1<<16 - int(r.Quantity()))
			}
			r.Key = "k" + string(rune('a'+len(regs)%26)) + string(rune('a'+len(regs)/26%26)) + string(rune('a'+len(regs)/676))
			regs = append(regs, r)
		}
		opt := PlanOptions{MaxRegisters: maxRegs % 200, MaxBits: maxBits % 3000, MaxGap: gap % 300, MaxBitGap: bitGap % 3000}
		reqs, err := Plan(regs, opt)
		if err != nil {
			t.Fatal(err)
		}
		checkPlan(t, regs, opt, reqs)
	})
}
