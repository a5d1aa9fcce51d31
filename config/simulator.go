package config

import (
	"fmt"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

// Simulator is one `simulator "name"` block: a Modbus TCP server started inside the gateway (so the out-of-the-box
// config polls a real Modbus server over TCP) or by `iotgw sim modbus -config`. Without unit blocks it serves the
// demo map (a boiler on unit 1, a power meter on unit 2; see sidecar/modbussim.Demo).
type Simulator struct {
	Name     string
	Listen   string
	Units    []SimUnit
	DefRange hcl.Range
}

// SimUnit is a `unit "id"` block of a simulator.
type SimUnit struct {
	ID      int
	Signals []SimSignal
}

// SimSignal is a `signal "name"` block: one value driven by a waveform.
type SimSignal struct {
	Name    string
	Table   string // holding (default) | input | coil | discrete
	Address int
	Type    string // uint16 (default) … float64, bool
	Order   string // ABCD (default) | DCBA | BADC | CDAB
	Kind    string // constant (default) | sine | ramp | random | step | counter
	Min     float64
	Max     float64
	Value   float64
	Period  time.Duration
}

type simulatorHCL struct {
	Listen *string      `hcl:"listen,optional"`
	Units  []simUnitHCL `hcl:"unit,block"`
}

type simUnitHCL struct {
	ID      string         `hcl:"id,label"`
	Signals []simSignalHCL `hcl:"signal,block"`
}

type simSignalHCL struct {
	Name    string  `hcl:"name,label"`
	Table   string  `hcl:"table,optional"`
	Address int     `hcl:"address"`
	Type    string  `hcl:"type,optional"`
	Order   string  `hcl:"order,optional"`
	Kind    string  `hcl:"kind,optional"`
	Min     float64 `hcl:"min,optional"`
	Max     float64 `hcl:"max,optional"`
	Value   float64 `hcl:"value,optional"`
	Period  *string `hcl:"period,optional"`
}

var simKinds = []string{"constant", "sine", "ramp", "random", "step", "counter"}

func decodeSimulator(block *hcl.Block, ctx *hcl.EvalContext, diags *hcl.Diagnostics) Simulator {
	sim := Simulator{Name: block.Labels[0], Listen: "127.0.0.1:5020", DefRange: block.DefRange}
	checkLabel(block, "simulator name", diags)
	var h simulatorHCL
	if d := gohcl.DecodeBody(block.Body, ctx, &h); d.HasErrors() {
		*diags = append(*diags, d...)
		return sim
	}
	v := newValidator(block, fmt.Sprintf("simulator %s", quote(sim.Name)), diags)
	set(&sim.Listen, h.Listen)
	if err := checkHostPort(sim.Listen); err != nil {
		v.Errorf("listen", "%v", err)
	}
	uv := v.Blocks("unit")
	seen := map[int]bool{}
	for i, u := range h.Units {
		vv := v
		if i < len(uv) {
			vv = uv[i]
		}
		var id int
		if _, err := fmt.Sscanf(u.ID, "%d", &id); err != nil || id < 0 || id > 247 || fmt.Sprint(id) != u.ID {
			vv.Errorf("", "unit %s: the label is the unit id, 0..247 (0 answers every id)", quote(u.ID))
			continue
		}
		if seen[id] {
			vv.Errorf("", "unit %d is declared twice", id)
		}
		seen[id] = true
		unit := SimUnit{ID: id}
		sv := vv.Blocks("signal")
		for j, s := range u.Signals {
			svv := vv
			if j < len(sv) {
				svv = sv[j]
			}
			sig := SimSignal{Name: s.Name, Table: s.Table, Address: s.Address, Type: s.Type, Order: s.Order, Kind: s.Kind,
				Min: s.Min, Max: s.Max, Value: s.Value, Period: time.Minute}
			if sig.Table == "" {
				sig.Table = "holding"
				if s.Type == "bool" {
					sig.Table = "coil"
				}
			}
			if !isOneOf(sig.Table, modbusTables) {
				svv.Errorf("table", "unknown table %s; known: %s", quote(sig.Table), oneOf(modbusTables))
			}
			if sig.Type == "" {
				sig.Type = "uint16"
			}
			if !isOneOf(sig.Type, modbusTypes) || sig.Type == "string" {
				svv.Errorf("type", "unknown type %s", quote(sig.Type))
			}
			if sig.Order == "" {
				sig.Order = "ABCD"
			}
			if !isOneOf(sig.Order, modbusOrders) {
				svv.Errorf("order", "unknown byte order %s; known: %s", quote(sig.Order), oneOf(modbusOrders))
			}
			if sig.Kind == "" {
				sig.Kind = "constant"
			}
			if !isOneOf(sig.Kind, simKinds) {
				svv.Errorf("kind", "unknown kind %s; known: %s", quote(sig.Kind), oneOf(simKinds))
			}
			if sig.Address < 0 || sig.Address > 65535 {
				svv.Errorf("address", "address %d is outside 0..65535", sig.Address)
			}
			if s.Period != nil {
				sig.Period = minDuration(svv, "period", *s.Period, time.Millisecond)
			}
			unit.Signals = append(unit.Signals, sig)
		}
		sim.Units = append(sim.Units, unit)
	}
	return sim
}
