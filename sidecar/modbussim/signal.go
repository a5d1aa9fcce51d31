package modbussim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// signal is a compiled Signal.
type signal struct {
	index           int // position in Unit.Signals, for messages
	table           Table
	addr            uint16
	typ             valueType
	order           byteOrder
	kind            string
	min, max, value float64
	period          time.Duration
}

func compileSignal(cs Signal) (signal, error) {
	typ, err := parseType(cs.Type)
	if err != nil {
		return signal{}, err
	}
	order, err := parseOrder(cs.Order)
	if err != nil {
		return signal{}, err
	}
	s := signal{table: cs.Table, addr: cs.Address, typ: typ, order: order,
		kind: strings.ToLower(cs.Kind), min: cs.Min, max: cs.Max, value: cs.Value, period: cs.Period}
	if s.table == 0 {
		s.table = Holding
		if typ == typeBool {
			s.table = Coil
		}
	}
	switch {
	case s.table < Coil || s.table > Input:
		return signal{}, fmt.Errorf("%w: %d", ErrBadTable, s.table)
	case s.table.isBits() && typ != typeBool:
		return signal{}, fmt.Errorf("%w: %s table holds bits, type must be bool, not %s", ErrBadType, s.table, cs.Type)
	}
	if s.period < 0 {
		return signal{}, fmt.Errorf("negative period %s", s.period)
	}
	switch s.kind {
	case "":
		s.kind = KindConstant
	case KindConstant, KindRandom:
	case KindSine, KindRamp, KindStep:
		if s.period == 0 {
			s.period = time.Minute
		}
		if typ == typeBool && s.kind == KindStep && s.min == 0 && s.max == 0 {
			s.max = 1
		}
	case KindCounter:
		if s.period == 0 {
			s.period = time.Second
		}
		if s.value == 0 {
			s.value = 1
		}
	default:
		return signal{}, fmt.Errorf("%w: %q (want constant, sine, ramp, random, step or counter)", ErrBadKind, cs.Kind)
	}
	return s, nil
}

// width is how many registers or bits the signal covers.
func (s *signal) width() int {
	if s.table.isBits() {
		return 1
	}
	return s.typ.registers()
}

// at is the signal's value at elapsed time t since the server was built.
func (s *signal) at(t time.Duration) float64 {
	switch s.kind {
	case KindSine:
		phase := float64(t%s.period) / float64(s.period)
		return s.min + (s.max-s.min)*(0.5+0.5*math.Sin(2*math.Pi*phase))
	case KindRamp:
		return s.min + (s.max-s.min)*float64(t%s.period)/float64(s.period)
	case KindRandom:
		return s.min + (s.max-s.min)*rand.Float64()
	case KindStep:
		if t%s.period < s.period/2 {
			return s.min
		}
		return s.max
	case KindCounter:
		v := s.value * float64(t/s.period)
		if span := s.max - s.min; span > 0 {
			if s.typ != typeFloat32 && s.typ != typeFloat64 {
				span++ // an integer counter shows Max itself before it wraps
			}
			v = math.Mod(v, span)
		}
		return s.min + v
	}
	return s.value
}

// unit is one slave's memory. One mutex guards all its tables: requests are
// short, and a read must see a signal's registers written as one value.
type unit struct {
	id      uint8
	mu      sync.Mutex
	bits    [2][]bool   // Coil, Discrete
	regs    [2][]uint16 // Holding, Input
	signals [4][]signal // by Table-1
}

func (u *unit) size(t Table) int {
	switch t {
	case Coil, Discrete:
		return len(u.bits[t-1])
	case Holding, Input:
		return len(u.regs[t-3])
	}
	return 0
}

// overlap returns the index (in Unit.Signals) of a signal that shares an
// address with s, or -1.
func (u *unit) overlap(s signal) int {
	lo, hi := int(s.addr), int(s.addr)+s.width()
	for _, o := range u.signals[s.table-1] {
		if int(o.addr) < hi && lo < int(o.addr)+o.width() {
			return o.index
		}
	}
	return -1
}

// refresh recomputes every signal of table t that covers any of addr..addr+n-1.
// The caller holds u.mu.
func (u *unit) refresh(t Table, addr, n int, elapsed time.Duration) {
	for i := range u.signals[t-1] {
		s := &u.signals[t-1][i]
		if int(s.addr) >= addr+n || int(s.addr)+s.width() <= addr {
			continue
		}
		v := s.at(elapsed)
		if t.isBits() {
			u.bits[t-1][s.addr] = v != 0
			continue
		}
		w := s.typ.registers()
		encode(u.regs[t-3][s.addr:int(s.addr)+w], s.typ, s.order, v)
	}
}
