package config

import (
	"fmt"
	"slices"
	"strings"
	"time"

	mb "github.com/iotgw/iotgw/modbus"
)

// NewModbusDevice returns the settings of a modbus device block with their defaults, for the driver's
// registration (actors/device/modbus).
func NewModbusDevice() DriverSettings {
	return &ModbusDevice{
		Mode: "tcp", UnitID: 1, TimeoutText: "1s", IntervalText: "1s", Retries: 1, PauseText: "0s",
		MaxGap: 10, MaxBitGap: 128,
	}
}

// ModbusDevice is driver "modbus": a device polled directly by the gateway (package modbus) over Modbus TCP,
// RTU on a serial line, or RTU framed over TCP (serial servers). Devices that share an endpoint (the same serial
// line or TCP address) share one transport actor, which serialises their transactions.
type ModbusDevice struct {
	Mode        string            `hcl:"mode,optional"`    // tcp (default) | rtu | rtu-over-tcp
	Address     string            `hcl:"address"`          // host:port, or the serial device for rtu (/dev/ttyUSB0)
	UnitID      int               `hcl:"unit_id,optional"` // default 1; a register may override it
	Retries     int               `hcl:"retries,optional"` // extra attempts of a request that timed out; default 1
	AddressBase int               `hcl:"address_base,optional"`
	MaxGap      int               `hcl:"max_gap,optional"`     // registers read and discarded to merge requests; -1 never
	MaxBitGap   int               `hcl:"max_bit_gap,optional"` // the same for coils and discrete inputs
	Tags        map[string]string `hcl:"tags,optional"`
	Serial      *ModbusSerial     `hcl:"serial,block"`
	Groups      []ModbusGroup     `hcl:"group,block"`
	// Registers are the register blocks as decoded. Validate checks them, turns them into Model and Extras, and
	// drops them: at 184 bytes a block they were 5 KB of a 30-register device's memory, kept for as long as the
	// gateway runs, beside the model the driver needs anyway.
	Registers []ModbusRegister `hcl:"register,block"`
	// Model is the device's register list once validated: the register model of package modbus, in the order of
	// the blocks, addresses made zero-based and each register's unit id resolved. The driver reads it, never
	// changes it.
	Model []mb.Register
	// Extras holds what polling a register needs beside Model, one per register of Model; nil when no register
	// has a group or reports on change (most devices).
	Extras []ModbusRegisterExtra

	Timeout    time.Duration // per request; default 1s
	Interval   time.Duration // default poll interval; default 1s
	Pause      time.Duration // between two requests to this device; default 0
	StaleAfter time.Duration // a point not read for this long is reported stale; default 3 × its interval

	TimeoutText    string `hcl:"timeout,optional"`
	IntervalText   string `hcl:"interval,optional"`
	PauseText      string `hcl:"pause,optional"`
	StaleAfterText string `hcl:"stale_after,optional"`
}

// ModbusEndpoint is what the devices on one Modbus endpoint share: one transport actor runs it, serialising their
// transactions. Devices on one serial line must agree on its settings.
type ModbusEndpoint struct {
	Mode    string
	Address string
	Serial  *ModbusSerial // rtu only
}

func (e ModbusEndpoint) String() string {
	if e.Serial == nil {
		return fmt.Sprintf("%s %s", e.Mode, e.Address)
	}
	return fmt.Sprintf("%s %s at %s", e.Mode, e.Address, e.Serial)
}

var _ EndpointSettings = (*ModbusDevice)(nil)

// Endpoint implements EndpointSettings: devices with the same mode and address (one serial line, one TCP gateway
// or PLC) share a transport. The key is a valid actor name: modbus-{mode}-{address with / : . as _}.
// endpointKeyChars makes an address one token of an actor name (a Replacer is safe for concurrent use and costly
// to build: once per call was a quarter of a 1,000-device config's load).
var endpointKeyChars = strings.NewReplacer("/", "_", ":", "_", ".", "_")

func (m *ModbusDevice) Endpoint() (Endpoint, bool) {
	return Endpoint{
		Key:      "modbus-" + m.Mode + "-" + endpointKeyChars.Replace(m.Address),
		Settings: ModbusEndpoint{Mode: m.Mode, Address: m.Address, Serial: m.Serial},
	}, true
}

// ModbusSerial is the serial line of an rtu device.
type ModbusSerial struct {
	BaudRate int    `hcl:"baud_rate,optional"` // default 9600
	DataBits int    `hcl:"data_bits,optional"` // default 8
	Parity   string `hcl:"parity,optional"`    // N (default), E, O
	StopBits int    `hcl:"stop_bits,optional"` // default 1
}

// ModbusGroup is a poll group: registers with group = "name" are polled at its interval.
type ModbusGroup struct {
	Name         string `hcl:"name,label"`
	IntervalText string `hcl:"interval"`
	Interval     time.Duration
}

// ModbusRegisterExtra is how a register is polled: its group ("" for the device's interval) and its report on
// change.
type ModbusRegisterExtra struct {
	Group      string
	OnChange   bool
	Deadband   float64
	ForceEvery int
}

// ModbusRegister is one `register "key"` block, as decoded (see ModbusDevice.Registers).
type ModbusRegister struct {
	Key        string            `hcl:"key,label"`
	Table      string            `hcl:"table,optional"` // holding (default) | input | coil | discrete
	Address    int               `hcl:"address"`        // as documented by the device (see address_base)
	Type       string            `hcl:"type,optional"`  // default uint16 (bool for coil and discrete)
	Order      string            `hcl:"order,optional"` // ABCD (default) | DCBA | BADC | CDAB; 64-bit: ABCDEFGH | HGFEDCBA | BADCFEHG | GHEFCDAB
	Length     int               `hcl:"length,optional"`
	Bit        *int              `hcl:"bit,optional"`
	Scale      float64           `hcl:"scale,optional"`
	Offset     float64           `hcl:"offset,optional"`
	Unit       string            `hcl:"unit,optional"`
	UnitID     *int              `hcl:"unit_id,optional"`
	Tags       map[string]string `hcl:"tags,optional"`
	Group      string            `hcl:"group,optional"`
	OnChange   bool              `hcl:"on_change,optional"`
	Deadband   float64           `hcl:"deadband,optional"`
	ForceEvery int               `hcl:"force_every,optional"`
}

var (
	modbusModes  = []string{"tcp", "rtu", "rtu-over-tcp"}
	modbusTables = []string{"holding", "input", "coil", "discrete"}
	modbusTypes  = []string{"bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"}
	modbusOrders = []string{"ABCD", "DCBA", "BADC", "CDAB"}
	// modbusOrders64 are the same four orders spelled over the eight bytes of a 64-bit value (Telegraf's names),
	// in the order of modbusOrders: ABCDEFGH is ABCD, HGFEDCBA is DCBA, and so on.
	modbusOrders64 = []string{"ABCDEFGH", "HGFEDCBA", "BADCFEHG", "GHEFCDAB"}
	modbusWidth    = map[string]int{"bool": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4, "float64": 4}
)

// Function is the Modbus read function of a register's table: 1 coils, 2 discrete inputs, 3 holding, 4 input.
func (r *ModbusRegister) Function() uint8 {
	switch r.Table {
	case "coil":
		return 1
	case "discrete":
		return 2
	case "input":
		return 4
	default:
		return 3
	}
}

// Validate implements DriverSettings.
func (m *ModbusDevice) Validate(v *Validator) {
	m.Timeout = minDuration(v, "timeout", m.TimeoutText, time.Millisecond)
	m.Interval = minDuration(v, "interval", m.IntervalText, time.Millisecond)
	m.Pause, _ = v.Duration("pause", m.PauseText)
	if m.StaleAfterText != "" {
		m.StaleAfter = minDuration(v, "stale_after", m.StaleAfterText, time.Millisecond)
	}
	if !isOneOf(m.Mode, modbusModes) {
		v.Errorf("mode", "unknown mode %s; known: %s", quote(m.Mode), oneOf(modbusModes))
	}
	switch {
	case m.Address == "":
		v.Errorf("address", "address must not be empty")
	case m.Mode == "rtu":
		if !strings.HasPrefix(m.Address, "/") && !strings.HasPrefix(strings.ToUpper(m.Address), "COM") {
			v.Errorf("address", "an rtu device's address is its serial port, like \"/dev/ttyUSB0\"")
		}
	default:
		if err := checkHostPort(m.Address); err != nil {
			v.Errorf("address", "%v", err)
		}
	}
	m.Serial = checkSerial(v, m.Mode, m.Serial)
	if m.UnitID < 0 || m.UnitID > 255 {
		v.Errorf("unit_id", "unit_id %d is out of range 0..255", m.UnitID)
	}
	checkRetries(v, m.Retries)
	if m.AddressBase != 0 && m.AddressBase != 1 {
		v.Errorf("address_base", "address_base is 0 (protocol addresses) or 1 (register numbers counted from 1), not %d", m.AddressBase)
	}
	if m.MaxGap < -1 || m.MaxGap > 124 {
		v.Errorf("max_gap", "max_gap %d: want -1 (never bridge a gap) .. 124", m.MaxGap)
	}
	if m.MaxBitGap < -1 || m.MaxBitGap > 1999 {
		v.Errorf("max_bit_gap", "max_bit_gap %d: want -1 .. 1999", m.MaxBitGap)
	}
	groups := map[string]bool{}
	gv := v.Blocks("group")
	for i := range m.Groups {
		g := &m.Groups[i]
		vv := v
		if i < len(gv) {
			vv = gv[i]
		}
		if groups[g.Name] {
			vv.Errorf("", "duplicate group %s", quote(g.Name))
		}
		groups[g.Name] = true
		g.Interval = minDuration(vv, "interval", g.IntervalText, time.Millisecond)
	}
	if len(m.Registers) == 0 {
		v.Errorf("", `A modbus device needs at least one register block, like register "temperature" { address = 0, type = "float32" }.`)
	}
	rv := v.Blocks("register")
	first := map[string]*Validator{}
	for i := range m.Registers {
		r := &m.Registers[i]
		vv := v
		if i < len(rv) {
			vv = rv[i]
		}
		checkKey(vv, "register", "Register", r.Key, first)
		r.validate(vv, m.AddressBase, groups)
	}
	m.model()
}

// model builds Model and Extras from the validated blocks and drops the blocks.
func (m *ModbusDevice) model() {
	m.Model = make([]mb.Register, len(m.Registers))
	m.Extras = nil
	for i := range m.Registers {
		r := &m.Registers[i]
		t, _ := mb.ParseType(r.Type)
		o, _ := mb.ParseByteOrder(r.Order)
		slave := m.UnitID
		if r.UnitID != nil {
			slave = *r.UnitID
		}
		bit := mb.NoBit
		if r.Bit != nil {
			bit = *r.Bit
		}
		m.Model[i] = mb.Register{
			Key: r.Key, SlaveID: uint8(slave), Function: r.Function(), Address: uint16(r.Address - m.AddressBase),
			Type: t, Length: uint16(r.Length), Order: o, Bit: bit, Scale: r.Scale, Offset: r.Offset, Unit: r.Unit, Tags: r.Tags,
		}
		if x := (ModbusRegisterExtra{Group: r.Group, OnChange: r.OnChange, Deadband: r.Deadband, ForceEvery: r.ForceEvery}); x != (ModbusRegisterExtra{}) {
			if m.Extras == nil {
				m.Extras = make([]ModbusRegisterExtra, len(m.Registers))
			}
			m.Extras[i] = x
		}
	}
	m.Registers = nil
}

// Extra is register i's poll settings (the zero value: the device's interval, every value reported).
func (m *ModbusDevice) Extra(i int) ModbusRegisterExtra {
	if m.Extras == nil {
		return ModbusRegisterExtra{}
	}
	return m.Extras[i]
}

func (s *ModbusSerial) String() string {
	return fmt.Sprintf("%d baud %d%s%d", s.BaudRate, s.DataBits, s.Parity, s.StopBits)
}

// checkSerial checks a Modbus connection's serial block, for a modbus device and a sidecar's config alike: only
// mode rtu has one, and there it is never nil and has its defaults filled in.
func checkSerial(v *Validator, mode string, s *ModbusSerial) *ModbusSerial {
	if s != nil && mode != "rtu" {
		v.Errorf("", "a serial block only applies to mode = \"rtu\"")
	}
	if mode != "rtu" {
		return s
	}
	if s == nil {
		s = &ModbusSerial{}
	}
	s.defaults(v.Block("serial", ""))
	return s
}

// checkRetries checks a Modbus connection's retries.
func checkRetries(v *Validator, retries int) {
	if retries < 0 || retries > 10 {
		v.Errorf("retries", "retries %d: want 0..10", retries)
	}
}

func (s *ModbusSerial) defaults(v *Validator) {
	if s.BaudRate == 0 {
		s.BaudRate = 9600
	}
	if s.DataBits == 0 {
		s.DataBits = 8
	}
	if s.Parity == "" {
		s.Parity = "N"
	}
	if s.StopBits == 0 {
		s.StopBits = 1
	}
	if s.BaudRate < 50 || s.BaudRate > 4000000 {
		v.Errorf("baud_rate", "baud_rate %d is not a serial speed", s.BaudRate)
	}
	if s.DataBits < 5 || s.DataBits > 8 {
		v.Errorf("data_bits", "data_bits %d: want 5..8", s.DataBits)
	}
	if !isOneOf(s.Parity, []string{"N", "E", "O"}) {
		v.Errorf("parity", "parity %s: want N, E or O", quote(s.Parity))
	}
	if s.StopBits != 1 && s.StopBits != 2 {
		v.Errorf("stop_bits", "stop_bits %d: want 1 or 2", s.StopBits)
	}
}

func (r *ModbusRegister) validate(v *Validator, base int, groups map[string]bool) {
	if r.Table == "" {
		r.Table = "holding"
	}
	if !isOneOf(r.Table, modbusTables) {
		v.Errorf("table", "unknown table %s; known: %s", quote(r.Table), oneOf(modbusTables))
	}
	bits := r.Table == "coil" || r.Table == "discrete"
	if r.Type == "" {
		r.Type = "uint16"
		if bits {
			r.Type = "bool"
		}
	}
	if !isOneOf(r.Type, modbusTypes) {
		v.Errorf("type", "unknown type %s; known: %s", quote(r.Type), oneOf(modbusTypes))
	} else if bits && r.Type != "bool" {
		v.Errorf("type", "a %s is one bit: its type is bool, not %s", r.Table, quote(r.Type))
	}
	if r.Order == "" {
		r.Order = "ABCD"
	}
	r.Order = strings.ToUpper(r.Order)
	checkOrder(v, r.Order, r.Type, r.Length)
	if r.Type == "string" {
		if r.Length < 1 || r.Length > 125 {
			v.Errorf("length", "a string register needs length = registers (1..125), not %d", r.Length)
		}
	} else if r.Length != 0 {
		v.Errorf("length", "length only applies to type = \"string\"")
	}
	if r.Bit != nil && (r.Type != "bool" || bits || *r.Bit < 0 || *r.Bit > 15) {
		v.Errorf("bit", "bit selects 0..15 of a holding or input register read as bool")
	}
	width := modbusWidth[r.Type]
	if r.Type == "string" {
		width = r.Length
	}
	addr := r.Address - base
	if addr < 0 || addr+width > 65536 {
		v.Errorf("address", "address %d (address_base %d) with %d registers is outside 0..65535", r.Address, base, width)
	}
	if (r.Scale != 0 || r.Offset != 0) && (r.Type == "bool" || r.Type == "string") {
		v.Errorf("scale", "scale and offset do not apply to a %s", r.Type)
	}
	if r.UnitID != nil && (*r.UnitID < 0 || *r.UnitID > 255) {
		v.Errorf("unit_id", "unit_id %d is out of range 0..255", *r.UnitID)
	}
	if r.Group != "" && !groups[r.Group] {
		v.Errorf("group", "no group %s in this device; declare it with group %s { interval = \"…\" }", quote(r.Group), quote(r.Group))
	}
	if r.Deadband < 0 {
		v.Errorf("deadband", "deadband must be >= 0")
	}
	if r.ForceEvery < 0 {
		v.Errorf("force_every", "force_every must be >= 0 (0: only on change)")
	}
	if (r.Deadband != 0 || r.ForceEvery != 0) && !r.OnChange {
		v.Errorf("on_change", "deadband and force_every apply to on_change = true registers")
	}
}

// checkOrder reports a byte order that is unknown or does not fit the type: the four-letter names describe a
// pattern that applies to every width, the eight-letter names spell it over the bytes of a 64-bit value only, so
// an eight-letter name on a narrower type is a mistake (the register map was written for another type).
func checkOrder(v *Validator, order, typ string, length int) {
	if isOneOf(order, modbusOrders) {
		return
	}
	i := slices.Index(modbusOrders64, order)
	if i < 0 {
		v.Errorf("order", "unknown byte order %s; known: %s, and for 64-bit types %s",
			quote(order), oneOf(modbusOrders), oneOf(modbusOrders64))
		return
	}
	width, known := modbusWidth[typ]
	if typ == "string" {
		width, known = length, true
	}
	if known && (width != 4 || typ == "string") { // an unknown type is reported at type
		v.Errorf("order", "byte order %s names the 8 bytes of a 64-bit value (int64, uint64, float64), and a %s register is %d bytes: write %s",
			quote(order), typ, 2*max(width, 1), modbusOrders[i])
	}
}
