package modbussim

import "time"

// Demo is the simulator that the out-of-the-box gateway.hcl polls, on
// DefaultListen. Every value is ABCD (big-endian, high word first) unless
// marked; addresses are 0-based protocol addresses.
//
// Unit 1, a boiler:
//
//	holding 0-1    float32  temperature °C          sine 20..90, 60 s
//	holding 2-3    float32  pressure bar            random 1.0..2.5
//	holding 4      uint16   status word             step 1 ↔ 3, 30 s (bit 0 running, bit 1 burner on)
//	holding 5      int16    outside temperature °C  sine -10..30, 10 min
//	holding 10-11  uint32   operating seconds       counter +1 per second
//	holding 20-21  float32  temperature °C, CDAB    the same sine as 0-1, registers swapped
//	holding 100-109         free registers for write tests (start at 0)
//	coil 0         bool     pump                    step, 10 s
//	coil 1         bool     burner                  step, 20 s
//	coil 2         bool     valve                   step, 30 s
//	coil 3         bool     alarm                   step, 60 s
//	coil 10-19              free coils for write tests
//
// Unit 2, a three-phase power meter, 30 holding registers (read 0..29 in one
// request):
//
//	0-1    float32  voltage L1 V            sine 228..232, 50 s
//	2-3    float32  voltage L2 V            sine 227..233, 70 s
//	4-5    float32  voltage L3 V            sine 229..231, 90 s
//	6-7    float32  current L1 A            sine 8..12, 40 s
//	8-9    float32  current L2 A            sine 7..11, 45 s
//	10-11  float32  current L3 A            random 9..10
//	12-13  float32  active power kW         sine 5..8, 40 s
//	14-15  float32  reactive power kvar     random 0.5..1.5
//	16-17  float32  apparent power kVA      sine 5.2..8.3, 40 s
//	18-19  float32  power factor            random 0.90..0.99
//	20-21  float32  frequency Hz            random 49.95..50.05
//	22-23  uint32   energy imported kWh     counter +1 per 2 s
//	24-25  uint32   energy exported kWh     counter +1 per 10 s
//	26-27  float32  max demand kW           constant 9.5
//	28-29  uint32   running seconds         counter +1 per second
//
// Both units have the default table sizes, so addresses up to 9999 read
// (as 0 where no signal is); 10000 and up answer exception 2. Any other unit
// id answers exception 11.
func Demo() Config {
	f32 := func(addr uint16, kind string, lo, hi float64, period time.Duration) Signal {
		return Signal{Table: Holding, Address: addr, Type: "float32", Kind: kind, Min: lo, Max: hi, Period: period}
	}
	coil := func(addr uint16, period time.Duration) Signal {
		return Signal{Table: Coil, Address: addr, Type: "bool", Kind: KindStep, Period: period}
	}
	boiler := Unit{ID: 1, Signals: []Signal{
		f32(0, KindSine, 20, 90, time.Minute),
		f32(2, KindRandom, 1.0, 2.5, 0),
		{Table: Holding, Address: 4, Type: "uint16", Kind: KindStep, Min: 1, Max: 3, Period: 30 * time.Second},
		{Table: Holding, Address: 5, Type: "int16", Kind: KindSine, Min: -10, Max: 30, Period: 10 * time.Minute},
		{Table: Holding, Address: 10, Type: "uint32", Kind: KindCounter, Period: time.Second},
		{Table: Holding, Address: 20, Type: "float32", Order: "CDAB", Kind: KindSine, Min: 20, Max: 90, Period: time.Minute},
		coil(0, 10*time.Second), coil(1, 20*time.Second), coil(2, 30*time.Second), coil(3, time.Minute),
	}}
	meter := Unit{ID: 2, Signals: []Signal{
		f32(0, KindSine, 228, 232, 50*time.Second),
		f32(2, KindSine, 227, 233, 70*time.Second),
		f32(4, KindSine, 229, 231, 90*time.Second),
		f32(6, KindSine, 8, 12, 40*time.Second),
		f32(8, KindSine, 7, 11, 45*time.Second),
		f32(10, KindRandom, 9, 10, 0),
		f32(12, KindSine, 5, 8, 40*time.Second),
		f32(14, KindRandom, 0.5, 1.5, 0),
		f32(16, KindSine, 5.2, 8.3, 40*time.Second),
		f32(18, KindRandom, 0.90, 0.99, 0),
		f32(20, KindRandom, 49.95, 50.05, 0),
		{Table: Holding, Address: 22, Type: "uint32", Kind: KindCounter, Period: 2 * time.Second},
		{Table: Holding, Address: 24, Type: "uint32", Kind: KindCounter, Period: 10 * time.Second},
		{Table: Holding, Address: 26, Type: "float32", Kind: KindConstant, Value: 9.5},
		{Table: Holding, Address: 28, Type: "uint32", Kind: KindCounter, Period: time.Second},
	}}
	return Config{Listen: DefaultListen, Units: []Unit{boiler, meter}}
}
