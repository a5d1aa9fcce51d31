package actors

import (
	"fmt"
	"sort"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/config"
)

// The registry of kinds. A kind (a device driver, a sink type) registers itself once, in its own package's init,
// with its schema and its actor together (telegraf's inputs.Add, caddy's RegisterModule); a blank import of the
// package (actors/all) plugs it in, and the runtime finds it by name, never naming a kind itself.
//
// It lives here rather than in config or a package of its own because this is the lowest package that knows both
// halves: config (the schema) may not import the actors, and an actor constructor needs Env. The schema half is
// handed on to config, which decodes blocks with it. Written only by init functions, then only read.
var (
	deviceKinds = map[string]DeviceKind{}
	sinkKinds   = map[string]SinkKind{}
)

// DeviceKind is one device driver.
type DeviceKind struct {
	// Settings returns a device block's settings with their defaults: the schema `driver = name` decodes into.
	Settings func() config.DriverSettings
	// New returns the producer of a device's actor. Env.Endpoint is its endpoint's actor when it has one.
	New func(dev config.Device, env Env) actor.Producer
	// NewEndpoint, for a driver whose settings implement config.EndpointSettings, returns the producer of the
	// actor of one endpoint its devices share (built from the endpoint's settings, which they agree on).
	NewEndpoint func(ep config.Endpoint, env Env) actor.Producer
}

// SinkKind is one sink type.
type SinkKind struct {
	// Settings returns a sink block's settings with their defaults: the schema `type = name` decodes into.
	Settings func() config.SinkSettings
	// New returns the producer of a sink's actor.
	New func(s config.Sink, env Env) actor.Producer
}

// RegisterDevice makes a device driver known, schema and actor in one call. It is meant for init functions and
// panics on a duplicate name or a missing half, so a kind that lacks one cannot start.
func RegisterDevice(name string, k DeviceKind) {
	if k.Settings == nil || k.New == nil {
		panic(fmt.Sprintf("actors: driver %q registered without its settings or its actor", name))
	}
	if _, dup := deviceKinds[name]; dup {
		panic(fmt.Sprintf("actors: driver %q registered twice", name))
	}
	if _, endpoints := k.Settings().(config.EndpointSettings); endpoints != (k.NewEndpoint != nil) {
		panic(fmt.Sprintf("actors: driver %q: settings that declare endpoints need NewEndpoint, and only they", name))
	}
	config.RegisterDriver(name, k.Settings)
	deviceKinds[name] = k
}

// RegisterSink makes a sink type known, schema and actor in one call; like RegisterDevice.
func RegisterSink(name string, k SinkKind) {
	if k.Settings == nil || k.New == nil {
		panic(fmt.Sprintf("actors: sink type %q registered without its settings or its actor", name))
	}
	if _, dup := sinkKinds[name]; dup {
		panic(fmt.Sprintf("actors: sink type %q registered twice", name))
	}
	config.RegisterSink(name, k.Settings)
	sinkKinds[name] = k
}

// Driver returns the driver registered as name.
func Driver(name string) (DeviceKind, bool) {
	k, ok := deviceKinds[name]
	return k, ok
}

// SinkType returns the sink type registered as name.
func SinkType(name string) (SinkKind, bool) {
	k, ok := sinkKinds[name]
	return k, ok
}

// Drivers returns the names of the registered drivers, sorted.
func Drivers() []string { return sortedNames(deviceKinds) }

// SinkTypes returns the names of the registered sink types, sorted.
func SinkTypes() []string { return sortedNames(sinkKinds) }

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
