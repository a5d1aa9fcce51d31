package system

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	_ "github.com/iotgw/iotgw/actors/all" // every kind the gateway is built with registers itself
	"github.com/iotgw/iotgw/actors/device/simulator"
	"github.com/iotgw/iotgw/actors/rule/processor"
	actorsidecar "github.com/iotgw/iotgw/actors/sidecar"
	"github.com/iotgw/iotgw/config"
)

// The runtime finds device drivers and sink types by name in the registry their packages fill
// (actors.RegisterDevice, actors.RegisterSink, plugged in by actors/all): it never names a kind.

// deviceSpecs is the devices group: one actor per device block. Their endpoints are in the endpoints group.
func (r *Runtime) deviceSpecs() ([]ChildSpec, error) {
	specs := make([]ChildSpec, 0, len(r.cfg.Devices))
	for _, d := range r.cfg.Devices {
		spec, err := r.deviceSpec(d)
		if err != nil {
			return nil, err
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

func (r *Runtime) deviceSpec(d config.Device) (ChildSpec, error) {
	kind, ok := actors.Driver(d.Driver)
	if !ok {
		return ChildSpec{}, fmt.Errorf("device %q: driver %q has no actor", d.ID, d.Driver)
	}
	env := r.env(GroupDevices + "/" + d.ID)
	if ep, ok := config.EndpointOf(d); ok {
		env.Endpoint = r.endpointPID(ep.Key)
	}
	return ChildSpec{Name: d.ID, Kind: "device/" + d.Driver, Producer: kind.New(d, env)}, nil
}

// endpointSpecs is the endpoints group in start order: in-process simulators first (so the first polls find them),
// then one actor per endpoint the devices declare (devices on one serial line or TCP address share it).
func (r *Runtime) endpointSpecs() ([]ChildSpec, error) {
	specs := make([]ChildSpec, 0, len(r.cfg.Simulators))
	for _, sim := range r.cfg.Simulators {
		specs = append(specs, r.simulatorSpec(sim))
	}
	r.endpoints.running = map[string]config.Endpoint{}
	for _, d := range r.cfg.Devices {
		ep, ok := config.EndpointOf(d)
		if !ok {
			continue
		}
		if _, seen := r.endpoints.running[ep.Key]; seen {
			continue
		}
		spec, err := r.endpointSpec(d.Driver, ep)
		if err != nil {
			return nil, err
		}
		r.endpoints.running[ep.Key] = ep
		specs = append(specs, spec)
	}
	return specs, nil
}

// kindEndpoint prefixes the kind of an endpoint actor in the tree: endpoint/{driver}.
const kindEndpoint = "endpoint/"

// endpointSpec is the actor of an endpoint of a driver's devices, shared by them.
func (r *Runtime) endpointSpec(driver string, ep config.Endpoint) (ChildSpec, error) {
	kind, ok := actors.Driver(driver)
	if !ok || kind.NewEndpoint == nil {
		return ChildSpec{}, fmt.Errorf("endpoint %s: driver %q has no endpoint actor", ep.Key, driver)
	}
	return ChildSpec{Name: ep.Key, Kind: kindEndpoint + driver,
		Producer: kind.NewEndpoint(ep, r.env(GroupEndpoints+"/"+ep.Key))}, nil
}

// endpointPID is where the endpoint actor named key is, whether it runs yet or not: devices hold it across the
// endpoint's restarts.
func (r *Runtime) endpointPID(key string) *actor.PID {
	return r.sys.NewLocalPID(rootPath + "/" + GroupEndpoints + "/" + key)
}

// simulatorName is a simulator's actor name in the endpoints group; the prefix keeps it apart from endpoint keys,
// which start with their driver's name.
func simulatorName(sim config.Simulator) string { return "simulator-" + sim.Name }

func (r *Runtime) simulatorSpec(sim config.Simulator) ChildSpec {
	name := simulatorName(sim)
	return ChildSpec{Name: name, Kind: "simulator/modbus", Producer: simulator.New(sim, r.env(GroupEndpoints+"/"+name))}
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
	kind, ok := actors.SinkType(s.Type)
	if !ok {
		return ChildSpec{}, fmt.Errorf("sink %q: type %q has no actor", s.Name, s.Type)
	}
	return ChildSpec{Name: s.Name, Kind: "sink/" + s.Type, Producer: kind.New(s, r.env("sinks/"+s.Name))}, nil
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

// ruleSpecs is the rule stage: the built-in processor, which validates raw points and republishes them as
// processed data (its name is reserved among rules), then one actor per rule (rules.go).
func (r *Runtime) ruleSpecs() []ChildSpec {
	return append([]ChildSpec{{Name: "processor", Kind: "processor", Producer: processor.New(r.env("rules/processor"))}},
		r.ruleActorSpecs()...)
}
