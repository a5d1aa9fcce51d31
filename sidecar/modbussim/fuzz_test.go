package modbussim

import (
	"encoding/binary"
	"testing"
	"time"
)

// FuzzServeFrame feeds arbitrary bytes to the frame handler: it must never
// panic, and whatever it answers must be a well-formed MBAP frame for the
// same transaction and unit.
func FuzzServeFrame(f *testing.F) {
	for _, seed := range [][]byte{
		adu(1, 1, 1, 0, 0, 0, 10),
		adu(2, 1, 2, 0, 0, 0x07, 0xD0),
		adu(3, 1, 3, 0, 0, 0, 125),
		adu(4, 1, 4, 0, 5, 0, 4),
		adu(5, 1, 5, 0, 1, 0xFF, 0),
		adu(6, 1, 6, 0, 1, 0x12, 0x34),
		adu(7, 1, 15, 0, 0, 0, 10, 2, 0xFF, 0x03),
		adu(8, 1, 16, 0, 0, 0, 2, 4, 0, 1, 0, 2),
		adu(9, 2, 3, 0xFF, 0xFF, 0, 1),
		adu(10, 1, 0x2B, 0x0E, 1, 0),
		{0, 1, 0, 1, 0, 6, 1, 3, 0, 0, 0, 1},
		{0, 1, 0, 0, 0, 0, 1},
		{},
	} {
		f.Add(seed, uint8(0))
	}
	s, err := New(Config{Units: []Unit{
		{ID: 1, Coils: 100, DiscreteInputs: 100, HoldingRegisters: 100, InputRegisters: 100, Signals: []Signal{
			{Address: 0, Type: "float32", Kind: KindSine, Min: -1, Max: 1},
			{Address: 2, Type: "uint64", Kind: KindCounter, Period: time.Millisecond},
			{Table: Input, Address: 5, Type: "int16", Kind: KindRandom, Min: -5, Max: 5},
			{Table: Coil, Address: 0, Type: "bool", Kind: KindStep, Period: time.Millisecond},
		}},
	}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, frame []byte, fault uint8) {
		// Exercise the fault paths too, but never a real delay.
		if k := FaultKind(fault % 8); k != 0 && k != FaultDelay && k <= FaultWrongTxID {
			s.SetFaults(Fault{Kind: k, Exception: fault, From: uint16(fault) * 7, To: uint16(fault) * 9})
		} else {
			s.ClearFaults()
		}
		res, err := s.serveFrame(make([]byte, 0, 8), frame)
		if err != nil || res.act != actReply {
			return
		}
		r := res.resp
		if len(r) < 9 || len(r) > maxFrame {
			t.Fatalf("response of %d bytes: % X", len(r), r)
		}
		if n := int(binary.BigEndian.Uint16(r[4:])); n != len(r)-6 {
			t.Fatalf("length field %d for %d bytes", n, len(r))
		}
		if binary.BigEndian.Uint16(r[2:]) != 0 || r[6] != frame[6] {
			t.Fatalf("response header % X for request header % X", r[:7], frame[:7])
		}
		if k := FaultKind(fault % 8); k != FaultWrongTxID && (r[0] != frame[0] || r[1] != frame[1]) {
			t.Fatalf("transaction id % X for request % X", r[:2], frame[:2])
		}
	})
}
