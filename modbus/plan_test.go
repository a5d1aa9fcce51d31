package modbus

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/iotgw/iotgw/isp"
)

// reg builds a valid register with a unique key from its position; tests set keys with keyed() afterwards.
func reg(slave, fn uint8, addr uint16, typ Type) Register {
	if fn == FuncCoils || fn == FuncDiscreteInputs {
		typ = TypeBool
	}
	return Register{SlaveID: slave, Function: fn, Address: addr, Type: typ, Bit: NoBit}
}

func keyed(regs ...Register) []Register {
	for i := range regs {
		if regs[i].Key == "" {
			regs[i].Key = fmt.Sprintf("r%d", i)
		}
	}
	return regs
}

func run(n int, slave, fn uint8, from uint16, typ Type) []Register {
	var regs []Register
	for i := 0; i < n; i++ {
		regs = append(regs, reg(slave, fn, from+uint16(i)*Type.registers(typ), typ))
	}
	return regs
}

func describe(reqs []Request) string {
	var s []string
	for _, q := range reqs {
		s = append(s, fmt.Sprintf("%d/%d %d+%d", q.SlaveID, q.Function, q.Address, q.Quantity))
	}
	return strings.Join(s, ", ")
}

func TestPlan(t *testing.T) {
	str20 := reg(1, 3, 0, TypeString)
	str20.Length = 20
	bit0, bit15 := reg(1, 3, 5, TypeBool), reg(1, 3, 5, TypeBool)
	bit0.Bit, bit15.Bit = 0, 15
	tests := []struct {
		name string
		regs []Register
		opt  PlanOptions
		want string // requests as "slave/function address+quantity", in order
	}{
		{"empty", nil, PlanOptions{}, ""},
		{"contiguous", run(3, 1, 3, 0, TypeUint16), PlanOptions{}, "1/3 0+3"},
		{"gap exactly MaxGap merges", []Register{reg(1, 3, 0, TypeUint16), reg(1, 3, 11, TypeUint16)}, PlanOptions{}, "1/3 0+12"},
		{"gap MaxGap+1 splits", []Register{reg(1, 3, 0, TypeUint16), reg(1, 3, 12, TypeUint16)}, PlanOptions{}, "1/3 0+1, 1/3 12+1"},
		{"gap after a float32", []Register{reg(1, 3, 0, TypeFloat32), reg(1, 3, 12, TypeUint16)}, PlanOptions{}, "1/3 0+13"},
		{"custom gap 2 merges", []Register{reg(1, 4, 0, TypeUint16), reg(1, 4, 3, TypeUint16)}, PlanOptions{MaxGap: 2}, "1/4 0+4"},
		{"custom gap 2 splits", []Register{reg(1, 4, 0, TypeUint16), reg(1, 4, 4, TypeUint16)}, PlanOptions{MaxGap: 2}, "1/4 0+1, 1/4 4+1"},
		{"no gaps: contiguous merges", []Register{reg(1, 3, 0, TypeUint16), reg(1, 3, 1, TypeUint16)}, PlanOptions{MaxGap: -1}, "1/3 0+2"},
		{"no gaps: one register apart splits", []Register{reg(1, 3, 0, TypeUint16), reg(1, 3, 2, TypeUint16)}, PlanOptions{MaxGap: -1}, "1/3 0+1, 1/3 2+1"},
		{"125-register limit", run(130, 1, 3, 0, TypeUint16), PlanOptions{}, "1/3 0+125, 1/3 125+5"},
		{"300 registers", run(300, 1, 4, 1000, TypeUint16), PlanOptions{}, "1/4 1000+125, 1/4 1125+125, 1/4 1250+50"},
		{"lower MaxRegisters", run(10, 1, 3, 0, TypeFloat32), PlanOptions{MaxRegisters: 8}, "1/3 0+8, 1/3 8+8, 1/3 16+4"},
		{"MaxRegisters above protocol is 125", run(130, 1, 3, 0, TypeUint16), PlanOptions{MaxRegisters: 500}, "1/3 0+125, 1/3 125+5"},
		{"float64 straddling the limit is not split",
			append(run(122, 1, 3, 0, TypeUint16), reg(1, 3, 122, TypeFloat64)), PlanOptions{}, "1/3 0+122, 1/3 122+4"},
		{"float64 ending at the limit fits",
			append(run(121, 1, 3, 0, TypeUint16), reg(1, 3, 121, TypeFloat64)), PlanOptions{}, "1/3 0+125"},
		{"2000-bit limit for coils", run(2001, 1, 1, 0, TypeBool), PlanOptions{}, "1/1 0+2000, 1/1 2000+1"},
		{"coil gap 128 merges", []Register{reg(1, 1, 0, 0), reg(1, 1, 129, 0)}, PlanOptions{}, "1/1 0+130"},
		{"coil gap 129 splits", []Register{reg(1, 1, 0, 0), reg(1, 1, 130, 0)}, PlanOptions{}, "1/1 0+1, 1/1 130+1"},
		{"register gap does not apply to coils", []Register{reg(1, 2, 0, 0), reg(1, 2, 50, 0)}, PlanOptions{MaxGap: -1}, "1/2 0+51"},
		{"slaves and functions never merge", []Register{
			reg(2, 3, 0, TypeUint16), reg(1, 4, 0, TypeUint16), reg(1, 3, 0, TypeUint16), reg(1, 3, 1, TypeUint16),
			reg(1, 1, 0, 0), reg(1, 2, 0, 0),
		}, PlanOptions{}, "1/1 0+1, 1/2 0+1, 1/3 0+2, 1/4 0+1, 2/3 0+1"},
		{"bits of one register and the register share", []Register{bit0, reg(1, 3, 5, TypeUint16), bit15}, PlanOptions{}, "1/3 5+1"},
		{"register inside a longer one", []Register{reg(1, 3, 11, TypeUint16), reg(1, 3, 10, TypeFloat64)}, PlanOptions{}, "1/3 10+4"},
		{"a register at the limit moves to the next request with what shares its address",
			append(run(125, 1, 3, 0, TypeUint16), reg(1, 3, 124, TypeFloat32)), PlanOptions{}, "1/3 0+124, 1/3 124+2"},
		{"overlap at the limit reads a register twice rather than split one",
			append(run(123, 1, 3, 0, TypeUint16), reg(1, 3, 123, TypeFloat32), reg(1, 3, 124, TypeFloat32)), PlanOptions{}, "1/3 0+125, 1/3 124+2"},
		{"unsorted input", []Register{reg(1, 3, 20, TypeUint16), reg(1, 3, 0, TypeUint16), reg(1, 3, 10, TypeUint16)}, PlanOptions{}, "1/3 0+21"},
		{"string longer than MaxRegisters gets its own request", []Register{reg(1, 3, 20, TypeUint16), str20}, PlanOptions{MaxRegisters: 10}, "1/3 0+20, 1/3 20+1"},
		{"registers inside an oversized one share its request", []Register{reg(1, 3, 4, TypeFloat64), str20, reg(1, 3, 19, TypeUint16)},
			PlanOptions{MaxRegisters: 10}, "1/3 0+20"},
		{"top of the address space", []Register{reg(1, 3, 65535, TypeUint16), reg(1, 3, 65530, TypeUint16)}, PlanOptions{}, "1/3 65530+6"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			regs := keyed(tc.regs...)
			reqs, err := Plan(regs, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(reqs); got != tc.want {
				t.Fatalf("got %s\nwant %s", got, tc.want)
			}
			checkPlan(t, regs, tc.opt, reqs)
		})
	}
}

func TestPlanFields(t *testing.T) {
	regs := keyed(reg(1, 3, 20, TypeUint16), reg(1, 3, 0, TypeFloat32), reg(1, 3, 10, TypeUint16), reg(1, 3, 1, TypeUint16))
	reqs, err := Plan(regs, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Field{{Index: 1, Offset: 0}, {Index: 3, Offset: 1}, {Index: 2, Offset: 10}, {Index: 0, Offset: 20}}
	if len(reqs) != 1 || fmt.Sprint(reqs[0].Fields) != fmt.Sprint(want) {
		t.Fatalf("got %+v, want one request with fields %v", reqs, want)
	}
	if regs[0].Address != 20 {
		t.Fatal("Plan reordered its input")
	}
}

func TestPlanErrors(t *testing.T) {
	bad := reg(1, 1, 0, TypeBool)
	bad.Type = TypeInt16
	regs := keyed(reg(1, 3, 0, TypeUint16), reg(1, 3, 1, TypeUint16), bad)
	regs[1].Key = regs[0].Key
	_, err := Plan(regs, PlanOptions{})
	if !errors.Is(err, ErrInvalidRegister) {
		t.Fatalf("got %v, want ErrInvalidRegister", err)
	}
	for _, text := range []string{`key "r0" already used by register 0`, "register 2:", "must be bool"} {
		if !strings.Contains(err.Error(), text) {
			t.Errorf("error %q does not say %q", err, text)
		}
	}
}

// powerMeter is a realistic register map: a three-phase meter's 30 values as its manual lists them, with the small
// gaps such maps have (reserved registers between blocks).
func powerMeter() []Register {
	var regs []Register
	add := func(key string, addr uint16, typ Type, scale float64, unit string) {
		regs = append(regs, Register{Key: key, SlaveID: 1, Function: FuncInputRegisters, Address: addr, Type: typ,
			Order: ABCD, Bit: NoBit, Scale: scale, Unit: unit})
	}
	for i, ph := range []string{"l1", "l2", "l3"} {
		a := uint16(2 * i)
		add("voltage_"+ph, 0+a, TypeFloat32, 0, "V")
		add("current_"+ph, 6+a, TypeFloat32, 0, "A")
		add("power_"+ph, 12+a, TypeFloat32, 0, "W")
		add("apparent_"+ph, 18+a, TypeFloat32, 0, "VA")
		add("reactive_"+ph, 24+a, TypeFloat32, 0, "var")
		add("pf_"+ph, 30+a, TypeInt16, 0.001, "")
		add("thd_v_"+ph, 234+a, TypeUint16, 0.1, "%")
	}
	add("power_total", 52, TypeFloat32, 0, "W")
	add("frequency", 70, TypeUint16, 0.01, "Hz")
	add("energy_import", 342, TypeUint32, 0.1, "kWh")
	add("energy_export", 344, TypeUint32, 0.1, "kWh")
	add("energy_reactive", 348, TypeUint32, 0.1, "kvarh")
	add("temperature", 400, TypeInt16, 0.1, "°C")
	add("status", 402, TypeUint16, 0, "")
	add("serial", 500, TypeString, 0, "")
	regs[len(regs)-1].Length = 4
	add("alarm", 504, TypeBool, 0, "")
	regs[len(regs)-1].Bit = 3
	return regs
}

func TestPlanRealisticMap(t *testing.T) {
	regs := powerMeter()
	if len(regs) != 30 {
		t.Fatalf("map has %d registers, want 30", len(regs))
	}
	for _, tc := range []struct {
		name string
		opt  PlanOptions
		want int
	}{
		{"default gap", PlanOptions{}, 7},
		{"contiguous only", PlanOptions{MaxGap: -1}, 13},
		{"gap 50", PlanOptions{MaxGap: 50}, 4},
	} {
		reqs, err := Plan(regs, tc.opt)
		if err != nil {
			t.Fatal(err)
		}
		read := 0
		for _, q := range reqs {
			read += int(q.Quantity)
		}
		t.Logf("%s: %d registers in %d requests instead of %d (%.0f%% fewer round trips), reading %d registers: %s",
			tc.name, len(regs), len(reqs), len(regs), 100*(1-float64(len(reqs))/float64(len(regs))), read, describe(reqs))
		if len(reqs) != tc.want {
			t.Errorf("%s: got %d requests, want %d", tc.name, len(reqs), tc.want)
		}
		checkPlan(t, regs, tc.opt, reqs)
	}
}

// TestRequestDecode runs a whole poll: plan, build each answer from known values, decode every field.
func TestRequestDecode(t *testing.T) {
	regs := powerMeter()
	want := make([]isp.Value, len(regs))
	for i := range regs {
		switch regs[i].Type {
		case TypeBool:
			want[i] = isp.Bool(true)
		case TypeString:
			want[i] = isp.String("SN-1234")
		case TypeFloat32:
			want[i] = isp.Float(float64(float32(230 + i)))
		default:
			if regs[i].scaled() {
				want[i] = isp.Float(float64(i) + 0.5)
			} else {
				want[i] = isp.Int(int64(i))
			}
		}
	}
	reqs, err := Plan(regs, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]isp.Value, len(regs))
	seen := 0
	for _, q := range reqs {
		resp := make([]byte, q.ResponseLen())
		for _, f := range q.Fields {
			r := regs[f.Index]
			w := r
			w.Function, w.Bit = FuncHoldingRegisters, NoBit // encode the alarm's register as a whole 0x0008
			v := want[f.Index]
			if r.Type == TypeBool {
				v = isp.Int(8)
				w.Type = TypeUint16
			}
			enc, err := Encode(&w, v)
			if err != nil {
				t.Fatalf("%s: %v", r.Key, err)
			}
			copy(resp[2*int(f.Offset):], enc)
		}
		err := q.Decode(regs, resp, func(i int, v isp.Value, err error) {
			if err != nil {
				t.Errorf("%s: %v", regs[i].Key, err)
			}
			got[i] = v
			seen++
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Decode(regs, resp[:len(resp)-1], func(int, isp.Value, error) { t.Error("emitted for a short answer") }); !errors.Is(err, ErrShortResponse) {
			t.Errorf("short answer: got %v, want ErrShortResponse", err)
		}
	}
	if seen != len(regs) {
		t.Fatalf("decoded %d fields, want %d", seen, len(regs))
	}
	for i := range regs {
		if !sameValue(got[i], want[i]) {
			t.Errorf("%s: got %v, want %v", regs[i].Key, got[i], want[i])
		}
	}
}

func TestResponseLen(t *testing.T) {
	for _, tc := range []struct {
		q    Request
		want int
	}{
		{Request{Function: 3, Quantity: 125}, 250},
		{Request{Function: 1, Quantity: 2000}, 250},
		{Request{Function: 2, Quantity: 9}, 2},
		{Request{Function: 2, Quantity: 8}, 1},
	} {
		if got := tc.q.ResponseLen(); got != tc.want {
			t.Errorf("function %d quantity %d: got %d, want %d", tc.q.Function, tc.q.Quantity, got, tc.want)
		}
	}
}

// checkPlan asserts the invariants every plan keeps: each register served by exactly one field that lies inside
// its request, requests within the limits (unless one register alone is longer), fields in address order, no
// request wider than its fields, and neighbouring requests that could not have been one.
func checkPlan(t testing.TB, regs []Register, opt PlanOptions, reqs []Request) {
	t.Helper()
	served := make([]int, len(regs))
	for k, q := range reqs {
		if int(q.Address)+int(q.Quantity) > 1<<16 || q.Quantity == 0 {
			t.Fatalf("request %d (%s) is outside the address space", k, describe(reqs[k:k+1]))
		}
		span, gap := opt.limits(q.Function == FuncCoils || q.Function == FuncDiscreteInputs)
		lo, hi := math.MaxInt, 0
		prev := -1
		covered := make([]bool, q.Quantity)
		for _, f := range q.Fields {
			r := &regs[f.Index]
			served[f.Index]++
			if r.SlaveID != q.SlaveID || r.Function != q.Function || int(r.Address) != int(q.Address)+int(f.Offset) {
				t.Fatalf("request %d: field %+v does not match register %+v", k, f, *r)
			}
			end := int(f.Offset) + int(r.Quantity())
			if end > int(q.Quantity) {
				t.Fatalf("request %d: register %q runs past the request", k, r.Key)
			}
			if int(f.Offset) < prev {
				t.Fatalf("request %d: fields out of address order", k)
			}
			prev = int(f.Offset)
			lo, hi = min(lo, int(f.Offset)), max(hi, end)
			for i := int(f.Offset); i < end; i++ {
				covered[i] = true
			}
		}
		if lo != 0 || hi != int(q.Quantity) {
			t.Fatalf("request %d reads [%d, %d) beyond its fields [%d, %d)", k, 0, q.Quantity, lo, hi)
		}
		if int(q.Quantity) > span && int(regs[q.Fields[0].Index].Quantity()) != int(q.Quantity) {
			t.Fatalf("request %d: %d > limit %d, and not for one register longer than the limit", k, q.Quantity, span)
		}
		run := 0
		for _, c := range covered {
			if c {
				run = 0
			} else if run++; run > gap {
				t.Fatalf("request %d has a gap of more than %d", k, gap)
			}
		}
		if k > 0 {
			p := reqs[k-1]
			if p.SlaveID == q.SlaveID && p.Function == q.Function {
				pEnd := int(p.Address) + int(p.Quantity)
				if q.Address < p.Address {
					t.Fatalf("requests %d and %d out of order", k-1, k)
				}
				qEnd := int(q.Address) + int(q.Quantity)
				if qEnd <= pEnd || int(q.Address)-pEnd <= gap && max(pEnd, qEnd)-int(p.Address) <= span {
					t.Fatalf("requests %d (%s) and %d (%s) could have been one", k-1, describe(reqs[k-1:k]), k, describe(reqs[k:k+1]))
				}
				if int(q.Address) < pEnd {
					// Overlap is allowed only when forced: the next request's first register did not fit.
					first := regs[q.Fields[0].Index]
					if int(first.Address)+int(first.Quantity())-int(p.Address) <= span {
						t.Fatalf("requests %d and %d overlap though the register fitted", k-1, k)
					}
				}
			}
		}
	}
	for i, n := range served {
		if n != 1 {
			t.Fatalf("register %d (%q) served %d times, want once", i, regs[i].Key, n)
		}
	}
}
