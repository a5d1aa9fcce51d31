package system

import (
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/iotgw/iotgw/config"
)

// endpointSet is what runs in the endpoints group besides the simulators: one actor per endpoint key the devices
// declare (config.EndpointSettings), with the settings it was built from. An endpoint lives as long as a
// registered device uses it: it is counted from the device registry, not kept as a number beside it, so a
// device that moves, fails to start or is removed can never leave a count behind.
type endpointSet struct {
	mu      sync.Mutex
	running map[string]config.Endpoint
}

// registeredDevices is every device the registry holds but id's. The caller holds r.devices.mu.
func (r *Runtime) registeredDevices(except string) []config.Device {
	out := make([]config.Device, 0, len(r.devices.entries))
	for id, e := range r.devices.entries {
		if id != except {
			out = append(out, e.dev)
		}
	}
	return out
}

// ensureEndpoint starts the endpoint d needs. One that runs with other settings is rebuilt with d's: the caller
// has checked (config.EndpointConflict) that no other device uses it with the old ones, so d's settings are the
// endpoint's now (an update that changes a serial line's speed takes effect).
func (r *Runtime) ensureEndpoint(d config.Device) error {
	ep, ok := config.EndpointOf(d)
	if !ok {
		return nil
	}
	r.endpoints.mu.Lock()
	defer r.endpoints.mu.Unlock()
	if cur, ok := r.endpoints.running[ep.Key]; ok {
		if reflect.DeepEqual(cur.Settings, ep.Settings) {
			return nil
		}
		if err := r.RemoveActor(GroupEndpoints, ep.Key); err != nil && !errors.Is(err, ErrNoChild) {
			return fmt.Errorf("endpoint %s: stop it to apply new settings: %w", ep.Key, err)
		}
		delete(r.endpoints.running, ep.Key)
		r.log.Info().Str("endpoint", ep.Key).Str("device", d.ID).Msg("endpoint rebuilt with new settings")
	}
	spec, err := r.endpointSpec(d.Driver, ep)
	if err != nil {
		return err
	}
	if err := r.AddActor(GroupEndpoints, spec); err != nil {
		_ = r.RemoveActor(GroupEndpoints, ep.Key) // it may be there, failing
		return fmt.Errorf("start endpoint %s: %w", ep.Key, err)
	}
	r.endpoints.running[ep.Key] = ep
	return nil
}

// pruneEndpoints stops and forgets the endpoints that no registered device uses any more (its last device
// removed, or moved to another endpoint). The caller holds r.devices.mu.
func (r *Runtime) pruneEndpoints() {
	used := map[string]bool{}
	for _, e := range r.devices.entries {
		if ep, ok := config.EndpointOf(e.dev); ok {
			used[ep.Key] = true
		}
	}
	r.endpoints.mu.Lock()
	defer r.endpoints.mu.Unlock()
	for key := range r.endpoints.running {
		if used[key] {
			continue
		}
		if err := r.RemoveActor(GroupEndpoints, key); err != nil && !errors.Is(err, ErrNoChild) {
			r.log.Error().Err(err).Str("endpoint", key).Msg("cannot stop an endpoint no device uses")
			continue
		}
		delete(r.endpoints.running, key)
		if m := r.mon.actorMetrics(); m != nil {
			m.Forget(GroupEndpoints + "/" + key)
		}
		r.log.Debug().Str("endpoint", key).Msg("endpoint stopped: no device uses it")
	}
}
