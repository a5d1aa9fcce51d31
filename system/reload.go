package system

import (
	"errors"
	"fmt"
	"reflect"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/iotgw/iotgw/config"
)

// ReloadResult says what a reload did.
type ReloadResult struct {
	Added   []string `json:"added"`
	Changed []string `json:"changed"`
	Removed []string `json:"removed"`
	Failed  []string `json:"failed"`  // "devices/x: why", rolled back to the previous config
	Restart []string `json:"restart"` // blocks that changed but only apply at the next start (gateway, nats, supervisor)
}

// component is one reloadable block: a device, sidecar, sink or simulator.
type component struct {
	group, name string
	block       any // the config value, compared without source positions
	spec        func() (ChildSpec, error)
}

// ErrNoConfigPath is the reload reply of a runtime that was not started from a file.
var ErrNoConfigPath = errors.New("this gateway was not started from a config file")

// Reload reads the config file again. A file with any problem changes nothing (the reply lists the problems).
// Otherwise only the devices, sidecars, sinks and simulators that were added, removed or changed are stopped and
// started; one that fails to start is rolled back to its previous config. Devices added at run time are not
// touched.
func (r *Runtime) Reload() ControlReply {
	if r.configPath == "" {
		return failure("%v", ErrNoConfigPath)
	}
	next, err := config.Load(r.configPath)
	if err != nil {
		reply := failure("config %s is not valid; nothing changed", r.configPath)
		var cerr *config.Error
		if errors.As(err, &cerr) {
			reply.Diagnostics = diagnostics(cerr.Diags)
		}
		return reply
	}
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	res := &ReloadResult{Added: []string{}, Changed: []string{}, Removed: []string{}, Failed: []string{}, Restart: []string{}}
	for _, b := range []struct {
		name     string
		old, new any
	}{{"gateway", r.cfg.Gateway, next.Gateway}, {"nats", r.cfg.NATS, next.NATS}, {"supervisor", r.cfg.Supervisor, next.Supervisor}, {"faults", r.cfg.Faults, next.Faults}} {
		if !reflect.DeepEqual(b.old, b.new) {
			res.Restart = append(res.Restart, b.name)
		}
	}
	old, nw := r.components(r.cfg), r.components(next)
	r.devices.mu.Lock()
	for key, c := range old { // runtime-added devices are not the file's to remove
		if e, ok := r.devices.entries[c.name]; c.group == GroupDevices && ok && e.source == SourceRuntime {
			delete(old, key)
		}
	}
	r.devices.mu.Unlock()

	keys := make([]string, 0, len(old)+len(nw))
	for k := range old {
		keys = append(keys, k)
	}
	for k := range nw {
		if _, ok := old[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		o, inOld := old[k]
		n, inNew := nw[k]
		switch {
		case inOld && !inNew:
			if err := r.RemoveActor(o.group, o.name); err != nil && !errors.Is(err, ErrNoChild) {
				res.Failed = append(res.Failed, fmt.Sprintf("%s: remove: %v", k, err))
				continue
			}
			res.Removed = append(res.Removed, k)
		case !inOld && inNew:
			if err := r.startComponent(n); err != nil {
				_ = r.RemoveActor(n.group, n.name)
				res.Failed = append(res.Failed, fmt.Sprintf("%s: %v", k, err))
				continue
			}
			res.Added = append(res.Added, k)
		case !reflect.DeepEqual(o.block, n.block):
			_ = r.RemoveActor(o.group, o.name)
			if err := r.startComponent(n); err != nil {
				_ = r.RemoveActor(n.group, n.name)
				if rerr := r.startComponent(o); rerr != nil {
					err = fmt.Errorf("%v; the previous config did not start again either: %v", err, rerr)
				}
				res.Failed = append(res.Failed, fmt.Sprintf("%s: %v (rolled back)", k, err))
				continue
			}
			res.Changed = append(res.Changed, k)
		}
	}
	// The new file is the config from now on, but for the blocks that only apply at the next start and the
	// components that were rolled back.
	// Only the reloadable parts change, in place: the rest of the runtime reads r.cfg's other blocks from other
	// goroutines (reports, HTTP). Reload itself runs on the control actor (SIGHUP goes through it too).
	r.cfg.Devices, r.cfg.Sidecars, r.cfg.Sinks, r.cfg.Simulators = next.Devices, next.Sidecars, next.Sinks, next.Simulators
	r.devices.mu.Lock()
	for id, e := range r.devices.entries {
		if e.source == SourceConfig {
			delete(r.devices.entries, id)
		}
	}
	for _, d := range next.Devices {
		if _, ok := r.devices.entries[d.ID]; !ok {
			r.devices.entries[d.ID] = &deviceEntry{dev: d, source: SourceConfig}
		}
	}
	r.devices.mu.Unlock()
	r.log.Info().Strs("added", res.Added).Strs("changed", res.Changed).Strs("removed", res.Removed).
		Strs("failed", res.Failed).Strs("restart_needed", res.Restart).Msg("config reloaded")
	return ControlReply{OK: len(res.Failed) == 0, Reload: res, Error: failedText(res)}
}

func failedText(res *ReloadResult) string {
	if len(res.Failed) == 0 {
		return ""
	}
	return fmt.Sprintf("%d component(s) failed to start and were rolled back", len(res.Failed))
}

func (r *Runtime) startComponent(c component) error {
	spec, err := c.spec()
	if err != nil {
		return err
	}
	if d, ok := c.block.(config.Device); ok {
		if err := r.ensureTransport(d); err != nil {
			return err
		}
	}
	return r.AddActor(c.group, spec)
}

// components lists a config's reloadable blocks by "group/name", positions cleared so that only what the operator
// wrote is compared.
func (r *Runtime) components(cfg *config.Config) map[string]component {
	out := map[string]component{}
	for _, d := range cfg.Devices {
		d := d
		d.DefRange = hcl.Range{}
		out[GroupDevices+"/"+d.ID] = component{group: GroupDevices, name: d.ID, block: d, spec: func() (ChildSpec, error) { return r.deviceSpec(d) }}
	}
	for _, s := range cfg.Sinks {
		s := s
		s.DefRange = hcl.Range{}
		out[GroupSinks+"/"+s.Name] = component{group: GroupSinks, name: s.Name, block: s, spec: func() (ChildSpec, error) { return r.sinkSpec(s) }}
	}
	for _, sc := range cfg.Sidecars {
		sc := sc
		sc.DefRange = hcl.Range{}
		out[GroupSidecars+"/"+sc.Name] = component{group: GroupSidecars, name: sc.Name, block: sc, spec: func() (ChildSpec, error) { return r.sidecarSpec(sc, cfg.Gateway.PluginsDir), nil }}
	}
	for _, sim := range cfg.Simulators {
		sim := sim
		sim.DefRange = hcl.Range{}
		name := "simulator-" + sim.Name
		out[GroupDevices+"/"+name] = component{group: GroupDevices, name: name, block: sim, spec: func() (ChildSpec, error) { return r.simulatorSpec(sim), nil }}
	}
	return out
}
