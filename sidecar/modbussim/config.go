package modbussim

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Table is one of the four Modbus data tables.
type Table uint8

// The four Modbus tables. The zero Table is not a table; in a [Signal] it
// means Holding (or Coil for a bool signal).
const (
	Coil     Table = iota + 1 // read/write bits: functions 1, 5, 15
	Discrete                  // read-only bits: function 2
	Holding                   // read/write registers: functions 3, 6, 16
	Input                     // read-only registers: function 4
)

// String returns the table's name as [ParseTable] accepts it.
func (t Table) String() string {
	switch t {
	case Coil:
		return "coil"
	case Discrete:
		return "discrete"
	case Holding:
		return "holding"
	case Input:
		return "input"
	}
	return fmt.Sprintf("table(%d)", uint8(t))
}

func (t Table) isBits() bool { return t == Coil || t == Discrete }

// ParseTable reads a table name as a config file spells it: "coil",
// "discrete", "holding" or "input" (plural and "_register(s)" forms too).
func ParseTable(s string) (Table, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "coil", "coils":
		return Coil, nil
	case "discrete", "discrete_input", "discrete_inputs", "discreteinput", "discreteinputs":
		return Discrete, nil
	case "holding", "holding_register", "holding_registers", "holdingregister", "holdingregisters":
		return Holding, nil
	case "input", "input_register", "input_registers", "inputregister", "inputregisters":
		return Input, nil
	}
	return 0, fmt.Errorf("%w: %q (want coil, discrete, holding or input)", ErrBadTable, s)
}

// Errors returned by New and by the register accessors.
var (
	ErrBadTable      = errors.New("modbussim: unknown table")
	ErrBadType       = errors.New("modbussim: unknown value type")
	ErrBadOrder      = errors.New("modbussim: unknown byte order")
	ErrBadKind       = errors.New("modbussim: unknown signal kind")
	ErrNoUnit        = errors.New("modbussim: no such unit")
	ErrOutOfRange    = errors.New("modbussim: address out of range")
	ErrServerStarted = errors.New("modbussim: server already started")
	ErrServerClosed  = errors.New("modbussim: server closed")
)

// Defaults that New fills in.
const (
	DefaultListen      = "127.0.0.1:5020"
	DefaultTableSize   = 10000
	DefaultMaxConns    = 64
	DefaultIdleTimeout = 5 * time.Minute
	MaxTableSize       = 65536
)

// Config describes a simulator. The zero Config is a usable one: it listens
// on DefaultListen and answers every unit id from one unit of default size.
type Config struct {
	Listen string // "127.0.0.1:5020" when empty; ":0" picks a free port
	Units  []Unit // one unit with ID 0 (answers every unit id) when empty
	// MaxConns caps concurrent connections (default 64); further ones are
	// accepted and closed at once, and counted in Stats.Rejected.
	MaxConns int
	// IdleTimeout closes a connection that sends no complete request for
	// that long, and bounds how long a response write may block (default
	// 5 minutes; negative means never).
	IdleTimeout time.Duration
}

// Unit is one slave on the server.
type Unit struct {
	// ID is the unit identifier it answers. ID 0 answers every unit id that
	// no other unit claims. A request for an id that no unit answers gets
	// exception 11 (gateway target device failed to respond).
	ID uint8
	// Sizes of the four tables: 0 means DefaultTableSize, at most 65536.
	// Addresses at or past the size answer exception 2.
	Coils, DiscreteInputs, HoldingRegisters, InputRegisters int
	Signals                                                 []Signal
}

// Signal drives one value in a table: it is recomputed from the clock each
// time a request (or [Server.Register]) reads an address it covers, so its
// registers change on read, not in the background. A client write to a
// signal's registers holds only until the next read.
type Signal struct {
	// Table is Holding or Input for numeric types, Coil or Discrete (or a
	// register table, as 0/1) for bool. Zero means Holding, or Coil for bool.
	Table   Table
	Address uint16 // first register or bit
	// Type is int16, uint16 (default), int32, uint32, float32, int64, uint64,
	// float64 or bool: 1, 2 or 4 registers, or 1 bit.
	Type string
	// Order of the value's big-endian bytes A (most significant) B C D … on
	// the wire: ABCD (default, big-endian), DCBA (little-endian), BADC (bytes
	// swapped in each register), CDAB (registers swapped). 64-bit values
	// extend the pattern (CDAB = GHEFCDAB); 16-bit ones only know whether
	// bytes are swapped (DCBA and BADC swap, CDAB does not).
	Order string
	// Kind is the waveform, with t the time since New:
	//   constant  Value (the default kind)
	//   sine      Min..Max, one cycle per Period (default 60s)
	//   ramp      Min rising to Max over Period, then back to Min (sawtooth)
	//   random    uniform in Min..Max, a new value on every read
	//   step      Min for the first half of each Period, Max for the second
	//             (a bool with Min=Max=0 toggles false/true)
	//   counter   Min + Value (default 1) per Period (default 1s), wrapping
	//             back to Min past Max when Max > Min
	// Integer types round to nearest and clamp to the type's range; bool is
	// true when the value is not 0.
	Kind            string
	Min, Max, Value float64
	Period          time.Duration
}

// Signal kinds.
const (
	KindConstant = "constant"
	KindSine     = "sine"
	KindRamp     = "ramp"
	KindRandom   = "random"
	KindStep     = "step"
	KindCounter  = "counter"
)

// withDefaults returns the config New runs.
func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if len(c.Units) == 0 {
		c.Units = []Unit{{ID: 0}}
	}
	return c
}

// buildUnits validates the units and builds their tables; every problem is
// reported, each naming its unit and signal.
func buildUnits(units []Unit) ([]*unit, error) {
	var errs []error
	seen := map[uint8]bool{}
	out := make([]*unit, 0, len(units))
	for i, cu := range units {
		name := fmt.Sprintf("unit %d (#%d)", cu.ID, i)
		if seen[cu.ID] {
			errs = append(errs, fmt.Errorf("%s: duplicate unit id", name))
			continue
		}
		seen[cu.ID] = true
		u := &unit{id: cu.ID}
		sizes := [4]int{cu.Coils, cu.DiscreteInputs, cu.HoldingRegisters, cu.InputRegisters}
		for t := Coil; t <= Input; t++ {
			n := sizes[t-1]
			switch {
			case n == 0:
				n = DefaultTableSize
			case n < 0 || n > MaxTableSize:
				errs = append(errs, fmt.Errorf("%s: %s table size %d outside 1..%d", name, t, n, MaxTableSize))
				n = 0
			}
			if t.isBits() {
				u.bits[t-1] = make([]bool, n)
			} else {
				u.regs[t-3] = make([]uint16, n)
			}
		}
		for j, cs := range cu.Signals {
			sig, err := compileSignal(cs)
			sig.index = j
			if err == nil {
				if end := int(sig.addr) + sig.width(); end > u.size(sig.table) {
					err = fmt.Errorf("%w: %s %d..%d past table size %d", ErrOutOfRange, sig.table, sig.addr, end-1, u.size(sig.table))
				} else if k := u.overlap(sig); k >= 0 {
					err = fmt.Errorf("overlaps signal #%d", k)
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: signal #%d (%s %d): %w", name, j, cs.Table, cs.Address, err))
				continue
			}
			u.signals[sig.table-1] = append(u.signals[sig.table-1], sig)
		}
		out = append(out, u)
	}
	return out, errors.Join(errs...)
}
