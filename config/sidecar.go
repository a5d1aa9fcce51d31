package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

// Sidecar is one `sidecar "name"` block: an ISP connection to a sidecar the gateway launches (Plugin, from
// gateway.plugins_dir) or one someone else runs (Address).
type Sidecar struct {
	Name                string
	Plugin              string            // launch plugins_dir/{plugin}-isp.json's entry
	Address             string            // or connect to this host:port
	Port                int               // ISP_PORT when launching; 0 = the manifest's isp_port
	Env                 map[string]string // extra environment of a launched plugin
	DialTimeout         time.Duration
	RequestTimeout      time.Duration // CONFIG and STATUS replies
	HeartbeatInterval   time.Duration
	MaxMissedHeartbeats int
	MaxLineSize         int64
	// StaleAfter is how long a key may go without a good value in DATA before its last point is republished
	// stale (stale=true, quality 0) with a "stale" event; 0 turns the check off. Default: 3 × config.interval
	// when the config block sets one (the sidecar polls at it), else DefaultSidecarStaleAfter.
	StaleAfter time.Duration
	Config     SidecarConfig // sent as CONFIG after every (re)connect
	DefRange   hcl.Range
}

// SidecarConfig is the CONFIG payload of the ISP seed, with the direct Modbus driver's connection settings.
type SidecarConfig struct {
	Mode      string // tcp | rtu | rtu-over-tcp, or what a non-Modbus sidecar understands
	Address   string // the device's address, as the sidecar understands it
	Timeout   time.Duration
	Interval  time.Duration
	Retries   int           // extra attempts of a request that timed out or got a garbled reply; default 1
	Serial    *ModbusSerial // mode rtu: the serial line, defaults filled in (9600 8N1); nil otherwise
	Registers []SidecarRegister
}

// SidecarRegister is one register of the CONFIG payload.
type SidecarRegister struct {
	Key      string
	Address  int
	Quantity int
	Type     string
	Function int
	Scale    float64
	DeviceID int // Modbus unit id
	Tags     map[string]string
}

type sidecarHCL struct {
	Plugin              *string           `hcl:"plugin,optional"`
	Address             *string           `hcl:"address,optional"`
	Port                *int              `hcl:"port,optional"`
	Env                 map[string]string `hcl:"env,optional"`
	DialTimeout         *string           `hcl:"dial_timeout,optional"`
	RequestTimeout      *string           `hcl:"request_timeout,optional"`
	HeartbeatInterval   *string           `hcl:"heartbeat_interval,optional"`
	MaxMissedHeartbeats *int              `hcl:"max_missed_heartbeats,optional"`
	MaxLineSize         *string           `hcl:"max_line_size,optional"`
	StaleAfter          *string           `hcl:"stale_after,optional"`
	Config              *sidecarConfigHCL `hcl:"config,block"`
}

type sidecarConfigHCL struct {
	Mode      string             `hcl:"mode"`
	Address   string             `hcl:"address,optional"`
	Timeout   *string            `hcl:"timeout,optional"`
	Interval  *string            `hcl:"interval,optional"`
	Retries   *int               `hcl:"retries,optional"`
	Serial    *ModbusSerial      `hcl:"serial,block"`
	Registers []sidecarRegisterH `hcl:"register,block"`
}

type sidecarRegisterH struct {
	Key      string            `hcl:"key,label"`
	Address  int               `hcl:"address"`
	Quantity *int              `hcl:"quantity,optional"`
	Type     *string           `hcl:"type,optional"`
	Function *int              `hcl:"function,optional"`
	Scale    *float64          `hcl:"scale,optional"`
	DeviceID *int              `hcl:"device_id,optional"`
	Unit     *string           `hcl:"unit,optional"`
	Tags     map[string]string `hcl:"tags,optional"`
}

// registerTypes are the ISP register types; quantity defaults to what the type needs.
var registerTypes = map[string]int{
	"bool": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
	"int64": 4, "uint64": 4, "float64": 4, "string": 1,
}

// DefaultSidecarStaleAfter is a sidecar's stale_after when neither it nor config.interval is set: such a sidecar
// may report on change rather than poll, so the check is lenient.
const DefaultSidecarStaleAfter = time.Minute

// sidecarStaleIntervals is how many of its CONFIG intervals a sidecar may go without sending a key (as Modbus
// devices: actors.StaleIntervals, which config cannot import).
const sidecarStaleIntervals = 3

func defaultSidecar(name string) Sidecar {
	return Sidecar{
		Name:                name,
		DialTimeout:         5 * time.Second,
		RequestTimeout:      10 * time.Second,
		HeartbeatInterval:   15 * time.Second,
		MaxMissedHeartbeats: 3,
		MaxLineSize:         1 << 20,
		Config:              SidecarConfig{Timeout: 3 * time.Second, Interval: 2 * time.Second, Retries: 1},
	}
}

func decodeSidecar(block *hcl.Block, ctx *hcl.EvalContext, diags *hcl.Diagnostics) Sidecar {
	sc := defaultSidecar(block.Labels[0])
	sc.DefRange = block.DefRange
	checkLabel(block, "sidecar name", diags)
	var h sidecarHCL
	if d := gohcl.DecodeBody(block.Body, ctx, &h); d.HasErrors() {
		*diags = append(*diags, d...)
		return sc
	}
	v := newValidator(block, fmt.Sprintf("sidecar %s", quote(sc.Name)), diags)
	set(&sc.Plugin, h.Plugin)
	set(&sc.Address, h.Address)
	set(&sc.Port, h.Port)
	sc.Env = h.Env
	setDuration(v, "dial_timeout", &sc.DialTimeout, h.DialTimeout)
	setDuration(v, "request_timeout", &sc.RequestTimeout, h.RequestTimeout)
	setDuration(v, "heartbeat_interval", &sc.HeartbeatInterval, h.HeartbeatInterval)
	set(&sc.MaxMissedHeartbeats, h.MaxMissedHeartbeats)
	setSize(v, "max_line_size", &sc.MaxLineSize, h.MaxLineSize)
	sc.StaleAfter = -1 // not set: derived from config.interval below
	setDuration(v, "stale_after", &sc.StaleAfter, h.StaleAfter)

	switch {
	case sc.Plugin == "" && sc.Address == "":
		v.Errorf("", "Write plugin = \"name\" to launch a plugin from plugins_dir, or address = \"host:port\" to connect to a sidecar that runs already.")
	case sc.Plugin != "" && sc.Address != "":
		v.Errorf("address", "write either plugin (the gateway launches the sidecar) or address (it runs already), not both")
	case sc.Plugin != "":
		if err := ValidToken(sc.Plugin); err != nil {
			v.Errorf("plugin", "the plugin name is a file name in plugins_dir: %v", err)
		}
	default:
		if err := checkHostPort(sc.Address); err != nil {
			v.Errorf("address", "%v", err)
		}
	}
	if sc.Port < 0 || sc.Port > 65535 {
		v.Errorf("port", "port %d is out of range 1..65535 (0: the plugin manifest's isp_port)", sc.Port)
	}
	if sc.Port != 0 && sc.Plugin == "" {
		v.Errorf("port", "port is the ISP_PORT of a launched plugin; with address, write the port in the address")
	}
	if len(sc.Env) > 0 && sc.Plugin == "" {
		v.Errorf("env", "env is the environment of a launched plugin; a sidecar at an address runs already")
	}
	for k := range sc.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || k == "ISP_PORT" || k == "LOG_LEVEL" {
			v.Errorf("env", "environment variable name %s: not allowed (ISP_PORT and LOG_LEVEL are set by the gateway)", quote(k))
		}
	}
	for _, d := range []struct {
		attr string
		set  *string
		val  time.Duration
	}{{"dial_timeout", h.DialTimeout, sc.DialTimeout}, {"request_timeout", h.RequestTimeout, sc.RequestTimeout}, {"heartbeat_interval", h.HeartbeatInterval, sc.HeartbeatInterval}} {
		if d.set != nil && d.val == 0 {
			v.Errorf(d.attr, "%s must be > 0", d.attr)
		}
	}
	if sc.MaxMissedHeartbeats < 1 {
		v.Errorf("max_missed_heartbeats", "max_missed_heartbeats is %d, must be >= 1", sc.MaxMissedHeartbeats)
	}
	if h.MaxLineSize != nil && (sc.MaxLineSize < 1024 || sc.MaxLineSize > 64<<20) {
		v.Errorf("max_line_size", "max_line_size must be between 1KB and 64MB")
	}
	if h.Config == nil {
		v.Errorf("", "A sidecar needs a config block: the CONFIG message sent to it (mode, address, registers).")
		return sc
	}
	decodeSidecarConfig(v.Block("config", ""), h.Config, &sc.Config)
	switch {
	case sc.StaleAfter >= 0: // written; 0 is off
	case h.Config.Interval != nil:
		sc.StaleAfter = sidecarStaleIntervals * sc.Config.Interval
	default:
		sc.StaleAfter = DefaultSidecarStaleAfter
	}
	return sc
}

func decodeSidecarConfig(v *Validator, h *sidecarConfigHCL, c *SidecarConfig) {
	c.Mode, c.Address = h.Mode, h.Address
	setDuration(v, "timeout", &c.Timeout, h.Timeout)
	setDuration(v, "interval", &c.Interval, h.Interval)
	if c.Mode == "" {
		v.Errorf("mode", "mode must not be empty (tcp, rtu, rtu-over-tcp for Modbus sidecars)")
	}
	if h.Interval != nil && c.Interval < time.Millisecond {
		v.Errorf("interval", "interval must be at least 1ms")
	}
	// The connection settings are the direct Modbus driver's, checked by the same rules.
	set(&c.Retries, h.Retries)
	checkRetries(v, c.Retries)
	c.Serial = checkSerial(v, c.Mode, h.Serial)
	regs := v.Blocks("register")
	seen := map[string]hcl.Range{}
	for i, rh := range h.Registers {
		rv := v
		if i < len(regs) {
			rv = regs[i]
		}
		r := SidecarRegister{Key: rh.Key, Address: rh.Address, Type: "uint16", Function: 3, DeviceID: 1, Tags: rh.Tags}
		set(&r.Type, rh.Type)
		set(&r.Function, rh.Function)
		set(&r.Scale, rh.Scale)
		set(&r.DeviceID, rh.DeviceID)
		if rh.Unit != nil {
			if r.Tags == nil {
				r.Tags = map[string]string{}
			}
			r.Tags["unit"] = *rh.Unit
		}
		if err := ValidToken(r.Key); err != nil {
			rv.Errorf("", "the register key becomes a subject token: %v", err)
		} else if first, dup := seen[r.Key]; dup {
			rv.Errorf("", "duplicate register key %s; the first is at %s", quote(r.Key), first)
		} else {
			seen[r.Key] = rv.DefRange()
		}
		need, ok := registerTypes[r.Type]
		if !ok {
			rv.Errorf("type", "unknown type %s; known: %s", quote(r.Type), oneOf(sortedKeys(registerTypes)))
		}
		r.Quantity = need
		set(&r.Quantity, rh.Quantity)
		if r.Function < 1 || r.Function > 4 {
			rv.Errorf("function", "function %d: want 1 (coils), 2 (discrete inputs), 3 (holding registers) or 4 (input registers)", r.Function)
		} else if r.Function <= 2 && r.Type != "bool" {
			rv.Errorf("type", "function %d reads bits: the type must be bool, not %s", r.Function, quote(r.Type))
		}
		if r.Address < 0 || r.Address > 65535 {
			rv.Errorf("address", "address %d is out of range 0..65535", r.Address)
		}
		if r.Quantity < 1 || r.Quantity > 125 {
			rv.Errorf("quantity", "quantity %d is out of range 1..125 registers", r.Quantity)
		} else if ok && r.Type != "string" && r.Quantity < need {
			rv.Errorf("quantity", "a %s needs %d registers, not %d", r.Type, need, r.Quantity)
		}
		if r.Address+r.Quantity > 65536 {
			rv.Errorf("quantity", "address %d + quantity %d runs past register 65535", r.Address, r.Quantity)
		}
		if r.DeviceID < 0 || r.DeviceID > 247 {
			rv.Errorf("device_id", "device_id (Modbus unit id) %d is out of range 0..247", r.DeviceID)
		}
		c.Registers = append(c.Registers, r)
	}
}
