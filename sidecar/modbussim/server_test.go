package modbussim

import (
	"bytes"
	"errors"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestClientEveryFunction(t *testing.T) {
	s := startServer(t, Config{Units: []Unit{{ID: 1, Coils: 100, DiscreteInputs: 100, HoldingRegisters: 200, InputRegisters: 200}}})
	if err := s.SetRegister(1, Holding, 10, 0x1234, 0xBEEF, 0, 0xFFFF); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRegister(1, Input, 190, 7, 8, 9); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBit(1, Coil, 3, true, false, true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBit(1, Discrete, 97, true, true, true); err != nil {
		t.Fatal(err)
	}
	c, _ := dial(t, s, 1, 5*time.Second)

	check := func(name string, got []byte, err error, want []byte) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: got % X, want % X", name, got, want)
		}
	}
	got, err := c.ReadHoldingRegisters(10, 4)
	check("fc3", got, err, bytesOf(0x1234, 0xBEEF, 0, 0xFFFF))
	got, err = c.ReadInputRegisters(190, 3)
	check("fc4", got, err, bytesOf(7, 8, 9))
	got, err = c.ReadCoils(0, 10) // bits 3 and 5
	check("fc1", got, err, []byte{0x28, 0x00})
	got, err = c.ReadDiscreteInputs(97, 3)
	check("fc2", got, err, []byte{0x07})

	got, err = c.WriteSingleRegister(20, 0xCAFE)
	check("fc6", got, err, []byte{0xCA, 0xFE})
	got, err = c.WriteMultipleRegisters(21, 3, bytesOf(1, 2, 3))
	check("fc16", got, err, []byte{0, 3})
	got, err = c.ReadHoldingRegisters(20, 4)
	check("fc3 after writes", got, err, bytesOf(0xCAFE, 1, 2, 3))
	if r, _ := s.Registers(1, Holding, 20, 4); !slices.Equal(r, []uint16{0xCAFE, 1, 2, 3}) {
		t.Errorf("Registers: got %04X, want CAFE 1 2 3", r)
	}

	got, err = c.WriteSingleCoil(50, 0xFF00)
	check("fc5", got, err, []byte{0xFF, 0x00})
	got, err = c.WriteMultipleCoils(60, 10, []byte{0b1010_0101, 0b11})
	check("fc15", got, err, []byte{0, 10})
	got, err = c.ReadCoils(50, 1)
	check("fc1 after fc5", got, err, []byte{0x01})
	got, err = c.ReadCoils(60, 10)
	check("fc1 after fc15", got, err, []byte{0xA5, 0x03})
	if b, _ := s.Bit(1, Coil, 50); !b {
		t.Error("Bit(coil 50): got false, want true")
	}

	// The largest reads the spec allows, and one more.
	if got, err := c.ReadHoldingRegisters(0, 125); err != nil || len(got) != 250 {
		t.Errorf("read 125 registers: %d bytes, %v", len(got), err)
	}
	if got, err := c.ReadCoils(0, 100); err != nil || len(got) != 13 {
		t.Errorf("read 100 coils: %d bytes, %v", len(got), err)
	}

	wantStats := map[uint8]uint64{1: 4, 2: 1, 3: 3, 4: 1, 5: 1, 6: 1, 15: 1, 16: 1}
	if st := s.Stats(); !mapsEqual(st.Requests, wantStats) || st.Exceptions != 0 || st.Connections != 1 {
		t.Errorf("stats: got %+v, want requests %v", st, wantStats)
	}
}

func mapsEqual(a, b map[uint8]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestExceptions(t *testing.T) {
	s := startServer(t, Config{Units: []Unit{{ID: 1, Coils: 3000, HoldingRegisters: 200, InputRegisters: 50}}})
	// goburrow refuses to send most of these, so they go out as raw frames.
	c := rawDial(t, s)
	tests := []struct {
		name string
		unit byte
		pdu  []byte
		want byte
	}{
		{"126 registers", 1, []byte{3, 0, 0, 0, 126}, 3},
		{"0 registers", 1, []byte{4, 0, 0, 0, 0}, 3},
		{"2001 coils", 1, []byte{1, 0, 0, 0x07, 0xD1}, 3},
		{"read with a byte too many", 1, []byte{3, 0, 0, 0, 1, 0}, 3},
		{"past holding", 1, []byte{3, 0, 199, 0, 2}, 2},
		{"past input", 1, []byte{4, 0, 50, 0, 1}, 2},
		{"write past holding", 1, []byte{6, 0, 200, 0, 1}, 2},
		{"coil value 0x1234", 1, []byte{5, 0, 0, 0x12, 0x34}, 3},
		{"124 registers written", 1, append([]byte{16, 0, 0, 0, 124, 248}, make([]byte, 248)...), 3},
		{"byte count disagrees", 1, []byte{16, 0, 0, 0, 2, 2, 0, 1}, 3},
		{"coil byte count disagrees", 1, []byte{15, 0, 0, 0, 9, 1, 0xFF}, 3},
		{"bad byte count past the end", 1, []byte{16, 0, 199, 0, 2, 2, 0, 1}, 3},
		{"good write past the end", 1, []byte{16, 0, 199, 0, 2, 4, 0, 1, 0, 2}, 2},
		{"unknown function", 1, []byte{0x2B, 0x0E, 1, 0}, 1},
		{"function with exception bit", 1, []byte{0x83, 0, 0, 0, 1}, 1},
		{"unknown unit", 9, []byte{3, 0, 0, 0, 1}, 11},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.Write(adu(uint16(i), tc.unit, tc.pdu...)); err != nil {
				t.Fatal(err)
			}
			resp, err := readADU(c)
			if err != nil {
				t.Fatal(err)
			}
			want := adu(uint16(i), tc.unit, tc.pdu[0]|0x80, tc.want)
			if !bytes.Equal(resp, want) {
				t.Errorf("got % X, want % X", resp, want)
			}
		})
	}
	g, _ := dial(t, s, 1, 5*time.Second)
	if got, err := g.ReadCoils(0, 2000); err != nil || len(got) != 250 {
		t.Errorf("read 2000 coils: %d bytes, %v", len(got), err)
	}
	if _, err := g.ReadHoldingRegisters(199, 2); exceptionCode(err) != 2 {
		t.Errorf("goburrow read past the end: got %v, want exception 2", err)
	}
	if st := s.Stats(); st.Exceptions != uint64(len(tests)+1) {
		t.Errorf("Stats.Exceptions: got %d, want %d", st.Exceptions, len(tests)+1)
	}
}

func TestDemoSignalsInRange(t *testing.T) {
	s := startServer(t, Demo())
	boiler, _ := dial(t, s, 1, 5*time.Second)
	meter, _ := dial(t, s, 2, 5*time.Second)
	f32 := func(r []uint16, i int) float64 {
		return float64(math.Float32frombits(uint32(r[i])<<16 | uint32(r[i+1])))
	}
	for range 20 {
		b, err := boiler.ReadHoldingRegisters(0, 22)
		if err != nil {
			t.Fatal(err)
		}
		r := regsOf(b)
		inRange(t, "temperature", f32(r, 0), 20, 90)
		inRange(t, "pressure", f32(r, 2), 1, 2.5)
		if r[4] != 1 && r[4] != 3 {
			t.Errorf("status word: got %d, want 1 or 3", r[4])
		}
		inRange(t, "outside temperature", float64(int16(r[5])), -10, 30)
		// Holding 20-21 is the same sine, CDAB, computed at the same instant.
		if cdab := f32([]uint16{r[21], r[20]}, 0); cdab != f32(r, 0) {
			t.Errorf("CDAB temperature: got %v, want %v", cdab, f32(r, 0))
		}
		m, err := meter.ReadHoldingRegisters(0, 30)
		if err != nil {
			t.Fatal(err)
		}
		r = regsOf(m)
		bounds := [][2]float64{{228, 232}, {227, 233}, {229, 231}, {8, 12}, {7, 11}, {9, 10}, {5, 8}, {0.5, 1.5}, {5.2, 8.3}, {0.9, 0.99}, {49.95, 50.05}}
		for i, bd := range bounds {
			inRange(t, "meter float", f32(r, 2*i), bd[0], bd[1])
		}
		if f32(r, 26) != 9.5 {
			t.Errorf("max demand: got %v, want 9.5", f32(r, 26))
		}
	}
	if _, err := boiler.ReadCoils(0, 4); err != nil {
		t.Errorf("read boiler coils: %v", err)
	}
}

func inRange(t *testing.T, what string, v, lo, hi float64) {
	t.Helper()
	// float32 rounding can land a hair outside the float64 bounds.
	const eps = 1e-4
	if v < lo-eps*math.Abs(lo)-eps || v > hi+eps*math.Abs(hi)+eps {
		t.Errorf("%s: got %v, want within %v..%v", what, v, lo, hi)
	}
}

func TestSignalKinds(t *testing.T) {
	s := startServer(t, Config{Units: []Unit{{ID: 1, Signals: []Signal{
		{Address: 0, Type: "uint32", Kind: KindCounter, Period: 5 * time.Millisecond},
		{Address: 2, Type: "uint16", Kind: KindCounter, Min: 10, Max: 12, Period: time.Millisecond},
		{Address: 3, Type: "float32", Kind: KindRamp, Min: -5, Max: 5, Period: 30 * time.Millisecond},
		{Address: 5, Type: "int16", Kind: KindStep, Min: -7, Max: 7, Period: 20 * time.Millisecond},
		{Address: 6, Type: "uint16", Kind: KindRandom, Min: 100, Max: 200},
		{Table: Discrete, Address: 0, Type: "bool", Kind: KindStep, Period: 20 * time.Millisecond},
		{Table: Input, Address: 0, Type: "int64", Kind: KindConstant, Value: -42},
	}}}})
	c, _ := dial(t, s, 1, 5*time.Second)
	var first uint32
	seen := map[uint16]bool{}
	steps := map[int16]bool{}
	waitFor(t, 10*time.Second, "counter to advance and step, wrap and toggle to show every value", func() bool {
		b, err := c.ReadHoldingRegisters(0, 7)
		if err != nil {
			t.Fatal(err)
		}
		r := regsOf(b)
		n := uint32(r[0])<<16 | uint32(r[1])
		if first == 0 {
			first = n + 1 // never 0 again below
		}
		if r[2] < 10 || r[2] > 12 {
			t.Fatalf("wrapping counter: got %d, want 10..12", r[2])
		}
		seen[r[2]] = true
		inRange(t, "ramp", float64(math.Float32frombits(uint32(r[3])<<16|uint32(r[4]))), -5, 5)
		steps[int16(r[5])] = true
		inRange(t, "random", float64(r[6]), 100, 200)
		d, err := c.ReadDiscreteInputs(0, 1)
		if err != nil {
			t.Fatal(err)
		}
		steps[int16(100+d[0])] = true
		time.Sleep(3 * time.Millisecond)
		return n > first && len(seen) == 3 && len(steps) == 4
	})
	if steps[0] || len(steps) != 4 {
		t.Errorf("step values: got %v, want -7, 7, 100, 101", steps)
	}
	b, err := c.ReadInputRegisters(0, 4)
	if err != nil || !bytes.Equal(b, bytesOf(0xFFFF, 0xFFFF, 0xFFFF, 0xFFD6)) {
		t.Errorf("int64 constant -42: got % X, %v", b, err)
	}
}

// TestWireGolden puts each golden value on the wire through a constant
// signal and reads it back with goburrow.
func TestWireGolden(t *testing.T) {
	var sigs []Signal
	addr := uint16(0)
	for _, g := range goldens {
		sigs = append(sigs, Signal{Table: Input, Address: addr, Type: g.typ, Order: g.order, Value: g.v})
		addr += uint16(len(g.want))
	}
	s := startServer(t, Config{Units: []Unit{{ID: 1, Signals: sigs}}})
	c, _ := dial(t, s, 1, 5*time.Second)
	got, err := c.ReadInputRegisters(0, addr)
	if err != nil {
		t.Fatal(err)
	}
	at := 0
	for _, g := range goldens {
		want := bytesOf(g.want...)
		if !bytes.Equal(got[at:at+len(want)], want) {
			t.Errorf("%s %s %v: got % X, want % X", g.typ, g.order, g.v, got[at:at+len(want)], want)
		}
		at += len(want)
	}
}

func TestPipelinedRequestsAnsweredInOrder(t *testing.T) {
	s := startServer(t, Config{Units: []Unit{{ID: 1}}})
	s.SetRegister(1, Holding, 0, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109)
	c := rawDial(t, s)
	var batch []byte
	for i := range 10 {
		batch = append(batch, adu(uint16(1000+i), 1, 3, 0, byte(i), 0, 1)...)
	}
	if _, err := c.Write(batch); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		resp, err := readADU(c)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		want := adu(uint16(1000+i), 1, 3, 2, 0, byte(100+i))
		if !bytes.Equal(resp, want) {
			t.Errorf("response %d: got % X, want % X", i, resp, want)
		}
	}
}

func TestMaxConns(t *testing.T) {
	s := startServer(t, Config{MaxConns: 1})
	c1, _ := dial(t, s, 1, 5*time.Second)
	if _, err := c1.ReadHoldingRegisters(0, 1); err != nil {
		t.Fatal(err)
	}
	c2 := rawDial(t, s)
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Error("second connection: got data, want closed")
	}
	if st := s.Stats(); st.Rejected != 1 || st.Active != 1 {
		t.Errorf("stats: got rejected %d active %d, want 1 and 1", st.Rejected, st.Active)
	}
}

func TestIdleTimeout(t *testing.T) {
	s := startServer(t, Config{IdleTimeout: 50 * time.Millisecond})
	c := rawDial(t, s)
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("idle connection: got %v, want EOF", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("closed after %s, want at least 50ms", d)
	}
}

func TestNewErrors(t *testing.T) {
	_, err := New(Config{Units: []Unit{
		{ID: 1, HoldingRegisters: 10, Signals: []Signal{
			{Address: 0, Type: "float32"},
			{Address: 1, Type: "uint16"},                  // overlaps #0
			{Address: 9, Type: "uint32"},                  // past the table
			{Address: 5, Type: "float16"},                 // unknown type
			{Address: 6, Order: "ACBD"},                   // unknown order
			{Address: 7, Kind: "square"},                  // unknown kind
			{Table: Coil, Address: 0, Type: "int16"},      // bits hold bools
			{Table: Table(9), Address: 0, Type: "uint16"}, // no such table
		}},
		{ID: 1},
		{ID: 2, Coils: -1},
	}})
	if err == nil {
		t.Fatal("New: got nil error, want one per problem")
	}
	for _, want := range []string{"overlaps signal #0", "signal #2", "float16", "ACBD", "square", "int16", "table(9)", "duplicate unit id", "size -1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if !errors.Is(err, ErrBadType) || !errors.Is(err, ErrOutOfRange) {
		t.Errorf("error %v: want ErrBadType and ErrOutOfRange in the chain", err)
	}
}

func TestAccessorErrors(t *testing.T) {
	s, err := New(Config{Units: []Unit{{ID: 3, HoldingRegisters: 5}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetRegister(4, Holding, 0, 1); !errors.Is(err, ErrNoUnit) {
		t.Errorf("unknown unit: got %v, want ErrNoUnit", err)
	}
	if err := s.SetRegister(3, Holding, 4, 1, 2); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("past the end: got %v, want ErrOutOfRange", err)
	}
	if err := s.SetRegister(3, Coil, 0, 1); !errors.Is(err, ErrBadTable) {
		t.Errorf("register into coils: got %v, want ErrBadTable", err)
	}
	if err := s.SetBit(3, Input, 0, true); !errors.Is(err, ErrBadTable) {
		t.Errorf("bit into input registers: got %v, want ErrBadTable", err)
	}
	if _, err := s.Register(3, Table(0), 0); !errors.Is(err, ErrBadTable) {
		t.Errorf("table 0: got %v, want ErrBadTable", err)
	}
	if s.Addr() != nil {
		t.Errorf("Addr before Start: got %v, want nil", s.Addr())
	}
	s.Stop()
	if err := s.Start(t.Context()); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Start after Stop: got %v, want ErrServerClosed", err)
	}
}

func TestContextCancelStops(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := contextWithCancel(t)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); !errors.Is(err, ErrServerStarted) {
		t.Errorf("second Start: got %v, want ErrServerStarted", err)
	}
	c := rawDial(t, s)
	cancel()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("connection after cancel: got data, want closed")
	}
	s.Stop()
}

func TestParseTable(t *testing.T) {
	for in, want := range map[string]Table{"coil": Coil, "Discrete_Inputs": Discrete, "holding": Holding, "input_registers": Input} {
		if got, err := ParseTable(in); got != want || err != nil {
			t.Errorf("ParseTable(%q): got %v, %v, want %v", in, got, err, want)
		}
		if got, _ := ParseTable(want.String()); got != want {
			t.Errorf("ParseTable(%v.String()): got %v", want, got)
		}
	}
	if _, err := ParseTable("eeprom"); !errors.Is(err, ErrBadTable) {
		t.Errorf("ParseTable(eeprom): got %v, want ErrBadTable", err)
	}
}
