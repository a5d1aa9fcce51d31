package system

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/actors/device/mock"
	"github.com/iotgw/iotgw/actors/device/modbus"
	"github.com/iotgw/iotgw/actors/device/simulator"
	"github.com/iotgw/iotgw/actors/rule/processor"
	actorsidecar "github.com/iotgw/iotgw/actors/sidecar"
	"github.com/iotgw/iotgw/actors/sink/console"
	"github.com/iotgw/iotgw/config"
)

// deviceKinds maps a device block's driver to its actor; config/ registers the same names for decoding. Adding a
// driver is a file in config/ and a folder in actors/device/, and one line here.
var deviceKinds = map[string]func(dev config.Device, env actors.Env) actor.Producer{
	"mock":   mock.New,
	"modbus": modbus.New,
}

// sinkKinds maps a sink block's type to its actor.
var sinkKinds = map[string]func(s config.Sink, env actors.Env) actor.Producer{
	"console": console.New,
}

// deviceSpecs is the devices group in start order: in-process simulators first (so the first polls find them),
// then one transport per Modbus endpoint (devices on one serial line or TCP address share it), then the devices.
func (r *Runtime) deviceSpecs() ([]ChildSpec, error) {
	specs := make([]ChildSpec, 0, len(r.cfg.Devices)+len(r.cfg.Simulators))
	for _, sim := range r.cfg.Simulators {
		specs = append(specs, r.simulatorSpec(sim))
	}
	transports := map[string]bool{}
	for _, d := range r.cfg.Devices {
		m, ok := d.Settings.(*config.ModbusDevice)
		if !ok {
			continue
		}
		name := modbus.TransportName(m)
		if transports[name] {
			continue
		}
		transports[name] = true
		specs = append(specs, r.transportSpec(m))
	}
	for _, d := range r.cfg.Devices {
		spec, err := r.deviceSpec(d)
		if err != nil {
			return nil, err
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

// KindTransport is the kind of a Modbus endpoint's transport actor in the tree.
const KindTransport = "modbus/transport"

// transportSpec is the transport actor of a Modbus device's endpoint, shared by the devices on it.
func (r *Runtime) transportSpec(m *config.ModbusDevice) ChildSpec {
	name := modbus.TransportName(m)
	return ChildSpec{Name: name, Kind: KindTransport, Producer: modbus.NewTransport(*m, r.env(GroupDevices+"/"+name))}
}

func (r *Runtime) deviceSpec(d config.Device) (ChildSpec, error) {
	newActor, ok := deviceKinds[d.Driver]
	if !ok {
		return ChildSpec{}, fmt.Errorf("device %q: driver %q has no actor", d.ID, d.Driver)
	}
	return ChildSpec{Name: d.ID, Kind: "device/" + d.Driver, Producer: newActor(d, r.env("devices/"+d.ID))}, nil
}

func (r *Runtime) simulatorSpec(sim config.Simulator) ChildSpec {
	return ChildSpec{Name: "simulator-" + sim.Name, Kind: "simulator/modbus",
		Producer: simulator.New(sim, r.env("devices/simulator-"+sim.Name))}
}

func (r *Runtime) sinkSpecs() ([]ChildSpec, error) {
	specs := make([]ChildSpec, 0, len(r.cfg.Sinks))
	for _, s := range r.cfg.Sinks {
		spec, err := r.sinkSpec(s)
		if err != nil {
			return nil, err
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

func (r *Runtime) sinkSpec(s config.Sink) (ChildSpec, error) {
	newActor, ok := sinkKinds[s.Type]
	if !ok {
		return ChildSpec{}, fmt.Errorf("sink %q: type %q has no actor", s.Name, s.Type)
	}
	return ChildSpec{Name: s.Name, Kind: "sink/" + s.Type, Producer: newActor(s, r.env("sinks/"+s.Name))}, nil
}

// sidecarSpecs is one connection actor per sidecar block.
func (r *Runtime) sidecarSpecs() []ChildSpec {
	specs := make([]ChildSpec, 0, len(r.cfg.Sidecars))
	for _, sc := range r.cfg.Sidecars {
		specs = append(specs, r.sidecarSpec(sc, r.cfg.Gateway.PluginsDir))
	}
	return specs
}

func (r *Runtime) sidecarSpec(sc config.Sidecar, pluginsDir string) ChildSpec {
	kind := "sidecar/address"
	if sc.Plugin != "" {
		kind = "sidecar/plugin:" + sc.Plugin
	}
	return ChildSpec{Name: sc.Name, Kind: kind, Producer: actorsidecar.NewConn(sc, pluginsDir, r.env("sidecars/"+sc.Name))}
}

// ruleSpecs is the rule stage: for now the built-in processor, which validates raw points and republishes them as
// processed data. Its name is reserved among rules.
func (r *Runtime) ruleSpecs() []ChildSpec {
	return []ChildSpec{{Name: "processor", Kind: "processor", Producer: processor.New(r.env("rules/processor"))}}
}
