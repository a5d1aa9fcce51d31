// Package modbus is the Modbus protocol code that the reference Modbus sidecar (sidecar/modbusisp) and the direct
// Modbus driver (actors/device/modbus) share:
// register definitions and their validation, decoding raw register bytes into isp values (and encoding values
// for writes), planning a poll as few coalesced read requests as the protocol allows, a report-on-change filter,
// and the client that talks to the devices.
//
// The register model never does I/O: no sockets, serial ports, goroutines or clocks. Its callers hand it the bytes
// a device answered and get values back, which keeps every rule about byte orders, scaling and request limits
// testable without a device. The one part that does I/O is Client (client.go), the Modbus client both callers
// share: connection settings, retries, RTU over TCP, the reconnect backoff and ErrorKind, the one classifier of
// its errors. It starts no goroutines; its owner runs it on its own (the driver's transport actor, the sidecar's
// poller).
package modbus

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/iotgw/iotgw/isp"
)

// Function codes of the four readable Modbus tables. A Register names its table by the function that reads it.
const (
	FuncCoils            uint8 = 1 // read coils: read/write bits
	FuncDiscreteInputs   uint8 = 2 // read discrete inputs: read-only bits
	FuncHoldingRegisters uint8 = 3 // read holding registers: read/write 16-bit registers
	FuncInputRegisters   uint8 = 4 // read input registers: read-only 16-bit registers
)

// Protocol limits of one read request (Modbus Application Protocol v1.1b3, 6.1–6.4): the answer's byte count is
// one byte, so 125 registers (250 bytes) or 2000 bits (250 bytes) at most.
const (
	MaxReadRegisters = 125
	MaxReadBits      = 2000
)

// Type is how a register's bytes are interpreted.
type Type uint8

// The register types. The zero Type is invalid so that a register without a type fails Validate instead of being
// read as something.
const (
	TypeInvalid Type = iota
	TypeBool         // a coil or discrete input, a whole register (not zero is true), or one bit of a register
	TypeInt16
	TypeUint16
	TypeInt32
	TypeUint32
	TypeInt64
	TypeUint64
	TypeFloat32 // IEEE 754 binary32
	TypeFloat64 // IEEE 754 binary64
	TypeString  // Length registers, two characters each; trailing NULs and spaces are trimmed
)

var typeNames = [...]string{
	TypeInvalid: "invalid", TypeBool: "bool", TypeInt16: "int16", TypeUint16: "uint16", TypeInt32: "int32",
	TypeUint32: "uint32", TypeInt64: "int64", TypeUint64: "uint64", TypeFloat32: "float32", TypeFloat64: "float64",
	TypeString: "string",
}

// String returns the type's name as it appears in config and in a point's "type" field: "int16", "float32", ….
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ParseType returns the type named s, ignoring case ("float32", "FLOAT32").
func ParseType(s string) (Type, error) {
	for t := TypeBool; int(t) < len(typeNames); t++ {
		if strings.EqualFold(s, typeNames[t]) {
			return t, nil
		}
	}
	return TypeInvalid, fmt.Errorf("unknown register type %q (want one of bool, int16, uint16, int32, uint32, int64, uint64, float32, float64, string)", s)
}

// registers returns how many 16-bit registers a value of fixed-size type t spans (0 for string, whose size is its
// Length, and 1 for bool).
func (t Type) registers() uint16 {
	switch t {
	case TypeBool, TypeInt16, TypeUint16:
		return 1
	case TypeInt32, TypeUint32, TypeFloat32:
		return 2
	case TypeInt64, TypeUint64, TypeFloat64:
		return 4
	}
	return 0
}

func (t Type) isInt() bool { return t >= TypeInt16 && t <= TypeUint64 }

// ByteOrder is where the bytes of a multi-register value sit on the wire. Modbus itself only fixes that each
// 16-bit register travels high byte first; how a device lays a wider value over several registers varies, so each
// register names its order.
//
// Write a value's bytes from most to least significant as A B C D (32-bit) or A B C D E F G H (64-bit). The wire
// bytes, lowest register address first, are then:
//
//	order  16-bit  32-bit    64-bit            also known as
//	ABCD   A B     A B C D   A B C D E F G H   big endian (the Modbus default)
//	DCBA   B A     D C B A   H G F E D C B A   little endian
//	BADC   B A     B A D C   B A D C F E H G   big-endian words, bytes swapped in each register
//	CDAB   A B     C D A B   G H E F C D A B   little-endian word order, big-endian bytes ("word swapped")
//
// So CDAB reverses the order of the registers and BADC swaps the two bytes of every register; DCBA does both.
// A 16-bit value is one register, so only the byte swap applies to it. Strings ignore word order: in ABCD and
// CDAB the first character of each register is its high byte, in DCBA and BADC its low byte. These are the
// names and meanings Telegraf's modbus input uses (including its 64-bit CDAB, GHEFCDAB), so a Telegraf register
// map carries over unchanged.
type ByteOrder uint8

// The byte orders; the zero ByteOrder is ABCD, Modbus's own big endian.
const (
	ABCD ByteOrder = iota
	DCBA
	BADC
	CDAB
)

var orderNames = [...]string{ABCD: "ABCD", DCBA: "DCBA", BADC: "BADC", CDAB: "CDAB"}

// String returns "ABCD", "DCBA", "BADC" or "CDAB".
func (o ByteOrder) String() string {
	if int(o) < len(orderNames) {
		return orderNames[o]
	}
	return fmt.Sprintf("order(%d)", uint8(o))
}

// ParseByteOrder returns the order named s, ignoring case. "AB" and "BA", the 16-bit spellings Telegraf accepts,
// mean ABCD and DCBA; ABCDEFGH, HGFEDCBA, BADCFEHG and GHEFCDAB, its 64-bit spellings, mean ABCD, DCBA, BADC and
// CDAB (see the table above). Whether a name fits the register's width is the configuration's to check.
func ParseByteOrder(s string) (ByteOrder, error) {
	switch strings.ToUpper(s) {
	case "ABCD", "AB", "ABCDEFGH":
		return ABCD, nil
	case "DCBA", "BA", "HGFEDCBA":
		return DCBA, nil
	case "BADC", "BADCFEHG":
		return BADC, nil
	case "CDAB", "GHEFCDAB":
		return CDAB, nil
	}
	return ABCD, fmt.Errorf("unknown byte order %q (want ABCD, DCBA, BADC or CDAB; ABCDEFGH, HGFEDCBA, BADCFEHG or GHEFCDAB for 64 bits)", s)
}

// swapsBytes reports whether the order swaps the two bytes inside each register.
func (o ByteOrder) swapsBytes() bool { return o == DCBA || o == BADC }

// NoBit is Register.Bit when a register is not read as a single bit.
const NoBit = -1

// Register is one named value on a Modbus device: where it is, how to read its bytes and how to scale them.
// Validate it before use; Decode, Encode and Plan assume a valid register.
type Register struct {
	Key      string    // the point key; a NATS subject token, unique within a device
	SlaveID  uint8     // the unit identifier (RTU slave address); 0 is broadcast on serial lines, "any" for most TCP devices
	Function uint8     // FuncCoils, FuncDiscreteInputs, FuncHoldingRegisters or FuncInputRegisters
	Address  uint16    // zero-based protocol address (holding register 40001 in the 1-based convention is Address 0)
	Type     Type      // how the bytes are read; coils and discrete inputs are always TypeBool
	Length   uint16    // registers of a TypeString (two characters each); 0 for every other type
	Order    ByteOrder // byte order of the registers; ignored for coils and discrete inputs
	// Bit selects one bit (0 least significant … 15) of a 16-bit register read as TypeBool, after Order is
	// applied. NoBit (-1) reads the whole register as a bool, true when it is not zero. For every other type, and
	// for coils and discrete inputs, Bit has no meaning and must be NoBit or 0 (the zero value is tolerated so a
	// Register literal without Bit stays valid).
	Bit int
	// Scale and Offset turn a raw number into engineering units: value = raw*Scale + Offset, in float64. A Scale
	// of 0 means 1, so the zero Register is unscaled. Not allowed on bool and string registers.
	Scale, Offset float64
	Unit          string            // engineering unit for people ("V", "kWh"); carried, never interpreted
	Tags          map[string]string // tags for the register's points
}

// Sentinel errors. Every error of this package that is about one of these wraps it, so callers classify with
// errors.Is and people read the wrapping message, which names the register and the offending value.
var (
	ErrInvalidRegister = errors.New("invalid register")
	ErrNotFinite       = errors.New("value is NaN or infinite")
	ErrRange           = errors.New("value out of range")
	ErrKind            = errors.New("wrong kind of value")
	ErrReadOnly        = errors.New("register is read-only")
	ErrShortResponse   = errors.New("response too short")
)

// Quantity returns how many registers the register spans, or for coils and discrete inputs how many bits (always 1).
// This is the quantity a read of this register alone would ask for.
func (r *Register) Quantity() uint16 {
	if r.Type == TypeString {
		return r.Length
	}
	return r.Type.registers()
}

// IsBit reports whether the register is in a bit table (coils or discrete inputs), where addresses count bits.
func (r *Register) IsBit() bool { return r.Function == FuncCoils || r.Function == FuncDiscreteInputs }

// Writable reports whether the register's table can be written (coils and holding registers).
func (r *Register) Writable() bool {
	return r.Function == FuncCoils || r.Function == FuncHoldingRegisters
}

// scale returns the effective scale: Scale, with 0 meaning 1.
func (r *Register) scale() float64 {
	if r.Scale == 0 {
		return 1
	}
	return r.Scale
}

// scaled reports whether Decode turns the raw value into engineering units (and so returns a float).
func (r *Register) scaled() bool { return (r.Scale != 0 && r.Scale != 1) || r.Offset != 0 }

// ValueType is the type of the values the register decodes to, which a point publishes as its type: the
// register's own, except that a scaled integer decodes to a float64 (int16 235 with scale 0.1 is 23.5).
func (r *Register) ValueType() Type {
	if r.Type.isInt() && r.scaled() {
		return TypeFloat64
	}
	return r.Type
}

// Validate reports everything wrong with the register, joined, each wrapping ErrInvalidRegister and naming the
// register: a missing key, an unknown function, type or byte order, a type the function cannot hold, a bit out of
// range, a string of no registers, a register too long for one read, or one running past address 65535.
func (r *Register) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("register %q: %s: %w", r.Key, fmt.Sprintf(format, args...), ErrInvalidRegister))
	}
	if r.Key == "" {
		bad("empty key")
	} else if err := isp.ValidToken(r.Key); err != nil {
		bad("the key becomes a NATS subject token: %v", err) // the gateway would drop its points
	}
	if r.Function < FuncCoils || r.Function > FuncInputRegisters {
		bad("function %d is not a read function (want 1 coils, 2 discrete inputs, 3 holding or 4 input registers)", r.Function)
	}
	if r.Type == TypeInvalid || int(r.Type) >= len(typeNames) {
		bad("no valid type (got %v)", r.Type)
	}
	if int(r.Order) >= len(orderNames) {
		bad("unknown byte order %v", r.Order)
	}
	if r.IsBit() {
		if r.Type != TypeBool && r.Type != TypeInvalid {
			bad("function %d reads bits, so the type must be bool, not %v", r.Function, r.Type)
		}
		if r.Bit != NoBit && r.Bit != 0 {
			bad("bit %d given for a coil or discrete input, which is one bit already (want -1)", r.Bit)
		}
	} else if r.Type == TypeBool {
		if r.Bit < NoBit || r.Bit > 15 {
			bad("bit %d out of range (want 0..15, or -1 for the whole register)", r.Bit)
		}
	} else if r.Bit != NoBit && r.Bit != 0 {
		bad("bit %d given for a %v register; bits apply to type bool only", r.Bit, r.Type)
	}
	if r.Type == TypeString {
		if r.Length == 0 {
			bad("string of length 0 (Length counts registers, two characters each)")
		}
	} else if r.Length != 0 && r.Length != r.Type.registers() {
		bad("length %d given for a %v, which spans %d register(s)", r.Length, r.Type, r.Type.registers())
	}
	if r.Type == TypeBool || r.Type == TypeString {
		if r.scaled() {
			bad("scale %v and offset %v do not apply to a %v register", r.Scale, r.Offset, r.Type)
		}
	}
	if math.IsNaN(r.Scale) || math.IsInf(r.Scale, 0) || math.IsNaN(r.Offset) || math.IsInf(r.Offset, 0) {
		bad("scale %v and offset %v must be finite", r.Scale, r.Offset)
	}
	if q := r.Quantity(); q > 0 {
		limit, unit := MaxReadRegisters, "registers"
		if r.IsBit() {
			limit, unit = MaxReadBits, "bits"
		}
		if int(q) > limit {
			bad("spans %d %s, more than one read can return (%d)", q, unit, limit)
		}
		if end := int(r.Address) + int(q) - 1; end > math.MaxUint16 {
			bad("address %d + %d %s runs past 65535", r.Address, q, unit)
		}
	}
	return errors.Join(errs...)
}
