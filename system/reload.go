package system

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

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
	// Restarted are the actors that had failed for good or were stopped (a stop fault) and whose block did not
	// change: a reload starts them again, the built-in ones (rules/processor, endpoints) included.
	Restarted []string `json:"restarted"`
}

// component is one reloadable block: a device, sidecar, sink or simulator.
type component struct {
	group, name string
	block       any // the config value, compared without source positions
	spec        func() (ChildSpec, error)
	// peers are the devices a device's block must agree with on a shared endpoint (config.EndpointConflict):
	// the new file's devices and those added at run time. Nil for a rollback, which goes back to what ran.
	peers []config.Device
}

// ErrNoConfigPath is the reload reply of a runtime that was not started from a file.
var ErrNoConfigPath = errors.New("this gateway was not started from a config file")

// Reload reads the config file again. A file with any problem changes nothing (the reply lists the problems).
// Otherwise only the devices, sidecars, sinks and simulators whose blocks were added, removed or changed in the
// file are stopped and started; one that fails to start is rolled back to its previous config. What the file did
// not change stays as it runs: devices added at run time, a device of the file updated or removed at run time.
// A block that changed wins over such a run-time change (as the file wins at every start). Then the actors that
// failed for good or were stopped are started again.
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
	res := &ReloadResult{Added: []string{}, Changed: []string{}, Removed: []string{}, Failed: []string{}, Restart: []string{}, Restarted: []string{}}
	for _, b := range []struct {
		name     string
		old, new any
	}{{"gateway", r.cfg.Gateway, next.Gateway}, {"nats", r.cfg.NATS, next.NATS}, {"supervisor", r.cfg.Supervisor, next.Supervisor}, {"faults", r.cfg.Faults, next.Faults}, {"http", r.cfg.HTTP, next.HTTP}} {
		if !reflect.DeepEqual(b.old, b.new) {
			res.Restart = append(res.Restart, b.name)
		}
	}
	prev := *r.cfg
	prev.Devices = r.fileDevices // the file's devices as last loaded, not the stored ones
	old, nw := r.components(&prev), r.components(next)
	r.devices.mu.Lock()
	runtimeIDs := map[string]bool{}    // devices added at run time, and stored
	runs := map[string]config.Device{} // what runs where it is not the file's block: to roll back to
	for id, e := range r.devices.entries {
		if e.source == SourceRuntime {
			runtimeIDs[id] = true
		}
		if e.source == SourceRuntime || e.override {
			runs[id] = e.dev
		}
	}
	// The devices that will run once the file's are in: a new block must agree with them on shared endpoints
	// (the file's devices agree among themselves; config.Load checked them).
	peers := append([]config.Device(nil), next.Devices...)
	for _, e := range r.devices.entries {
		if e.source == SourceRuntime && !slices.ContainsFunc(next.Devices, func(d config.Device) bool { return d.ID == e.dev.ID }) {
			peers = append(peers, e.dev)
		}
	}
	for k, c := range nw {
		if c.group == GroupDevices {
			c.peers = peers
			nw[k] = c
		}
	}
	r.devices.mu.Unlock()
	// rollback is what to start again when c's new block fails: what ran before.
	rollback := func(c component) component {
		if d, ok := runs[c.name]; ok && c.group == GroupDevices {
			return component{group: c.group, name: c.name, block: d, spec: func() (ChildSpec, error) { return r.deviceSpec(d) }}
		}
		return c
	}
	isRuntime := func(c component) bool { return c.group == GroupDevices && runtimeIDs[c.name] }
	applied := map[string]bool{} // the keys whose new block now runs (added, changed) or that are gone (removed)

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
			if isRuntime(o) { // removed from the file, but what runs under that id was added at run time
				continue
			}
			if err := r.RemoveActor(o.group, o.name); err != nil && !errors.Is(err, ErrNoChild) {
				res.Failed = append(res.Failed, fmt.Sprintf("%s: remove: %v", k, err))
				continue
			}
			res.Removed = append(res.Removed, k)
			applied[k] = true
		case !inOld && inNew:
			if isRuntime(n) { // the file now names a device added at run time: the file wins, as at start-up
				if err := r.removeIfThere(n.group, n.name); err != nil {
					res.Failed = append(res.Failed, fmt.Sprintf("%s: remove the device added at run time: %v", k, err))
					continue
				}
			}
			if err := r.startComponent(n); err != nil {
				err = r.undoStart(n, err)
				if isRuntime(n) {
					if rerr := r.startComponent(rollback(n)); rerr != nil {
						err = fmt.Errorf("%v; the device added at run time did not start again either: %v", err, rerr)
					}
					err = fmt.Errorf("%v (rolled back)", err)
				}
				res.Failed = append(res.Failed, fmt.Sprintf("%s: %v", k, err))
				continue
			}
			res.Added = append(res.Added, k)
			applied[k] = true
		case !reflect.DeepEqual(o.block, n.block):
			if err := r.removeIfThere(o.group, o.name); err != nil { // the old block keeps running
				res.Failed = append(res.Failed, fmt.Sprintf("%s: remove: %v", k, err))
				continue
			}
			if err := r.startComponent(n); err != nil {
				err = r.undoStart(n, err)
				if rerr := r.startComponent(rollback(o)); rerr != nil {
					err = fmt.Errorf("%v; the previous config did not start again either: %v", err, rerr)
				}
				res.Failed = append(res.Failed, fmt.Sprintf("%s: %v (rolled back)", k, err))
				continue
			}
			res.Changed = append(res.Changed, k)
			applied[k] = true
		}
	}
	// The new file is the config from now on, but for the blocks that only apply at the next start and the
	// components that were rolled back.
	// Only the reloadable parts change, in place: the rest of the runtime reads r.cfg's other blocks from other
	// goroutines (reports, HTTP). Reload itself runs on the control actor (SIGHUP goes through it too).
	r.cfg.Devices, r.cfg.Sidecars, r.cfg.Sinks, r.cfg.Simulators = next.Devices, next.Sidecars, next.Sinks, next.Simulators
	r.fileDevices = next.Devices
	r.devices.mu.Lock()
	inFile := map[string]config.Device{}
	for _, d := range next.Devices {
		inFile[d.ID] = d
	}
	for id, e := range r.devices.entries {
		key := GroupDevices + "/" + id
		d, ok := inFile[id]
		switch {
		case applied[key] && !ok: // removed from the file
			delete(r.devices.entries, id)
		case applied[key]: // the file's new block runs
			if e.source == SourceRuntime {
				r.forgetStored(id)
			}
			r.devices.entries[id] = &deviceEntry{dev: d, source: SourceConfig}
		case ok && e.source == SourceConfig && !e.override:
			e.dev = d // the same block, maybe at another line
		}
	}
	for id, d := range inFile {
		key := GroupDevices + "/" + id
		if _, ok := r.devices.entries[id]; !ok && applied[key] {
			r.devices.entries[id] = &deviceEntry{dev: d, source: SourceConfig}
		}
	}
	r.pruneEndpoints()
	r.devices.mu.Unlock()
	r.reloadRules(next.Rules, res, applied) // rules.go
	r.restartStopped(res, applied)
	r.log.Info().Strs("added", res.Added).Strs("changed", res.Changed).Strs("removed", res.Removed).
		Strs("failed", res.Failed).Strs("restart_needed", res.Restart).Strs("restarted", res.Restarted).Msg("config reloaded")
	return ControlReply{OK: len(res.Failed) == 0, Reload: res, Error: failedText(res)}
}

func failedText(res *ReloadResult) string {
	if len(res.Failed) == 0 {
		return ""
	}
	return fmt.Sprintf("%d component(s) failed to start and were rolled back", len(res.Failed))
}

// restartStopped starts again the actors that failed for good or were stopped and that this reload did not just
// start or remove: first the groups, then the actors in them.
func (r *Runtime) restartStopped(res *ReloadResult, applied map[string]bool) {
	down := func(n *Node) bool { return n.State == StateFailed || n.State == StateStopped }
	for _, top := range []bool{true, false} {
		for _, n := range flatten(r.tree.Snapshot(), nil) {
			isTop := !strings.Contains(n.Path, "/")
			if n.Path == rootPath || n.Path == ControlActor || isTop != top || applied[n.Path] || !down(n) {
				continue
			}
			if err := r.RestartActor(n.Path); err != nil {
				res.Failed = append(res.Failed, fmt.Sprintf("%s: restart: %v", n.Path, err))
				continue
			}
			res.Restarted = append(res.Restarted, n.Path)
		}
	}
	sort.Strings(res.Restarted)
}

// forgetStored deletes a device added at run time from the store, once the file has taken its id over.
func (r *Runtime) forgetStored(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.store.Delete(ctx, id); err != nil {
		r.log.Error().Err(err).Str("device", id).Msg("device of the file replaces a stored one, which could not be deleted")
	}
}

// removeIfThere removes an actor that may be gone already (ErrNoChild is no failure here); any other error is
// returned, for the reload's result.
func (r *Runtime) removeIfThere(group, name string) error {
	if err := r.RemoveActor(group, name); err != nil && !errors.Is(err, ErrNoChild) {
		return err
	}
	return nil
}

// undoStart removes what a failed start of c left supervised (a child that spawned but did not start) and adds
// a failure of that removal to err, the start's error: before a rollback, it would otherwise be lost.
func (r *Runtime) undoStart(c component, err error) error {
	if rerr := r.removeIfThere(c.group, c.name); rerr != nil {
		return fmt.Errorf("%v; removing what did start failed too: %v", err, rerr)
	}
	return err
}

func (r *Runtime) startComponent(c component) error {
	spec, err := c.spec()
	if err != nil {
		return err
	}
	if d, ok := c.block.(config.Device); ok {
		if err := config.EndpointConflict(d, c.peers); err != nil {
			return err
		}
		if err := r.ensureEndpoint(d); err != nil {
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
		name := simulatorName(sim)
		out[GroupEndpoints+"/"+name] = component{group: GroupEndpoints, name: name, block: sim, spec: func() (ChildSpec, error) { return r.simulatorSpec(sim), nil }}
	}
	return out
}
