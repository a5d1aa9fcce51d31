package system

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/iotgw/iotgw/config"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Device sources in iot.control.devices.list.
const (
	SourceConfig  = "config"  // a device block of gateway.hcl
	SourceRuntime = "runtime" // added through iot.control.devices.add (and stored)
)

// maxDeviceRequest bounds a device request's body: a device block is a few kilobytes.
const maxDeviceRequest = 256 << 10

// deviceEntry is one device the gateway runs.
type deviceEntry struct {
	dev    config.Device
	source string
	hcl    []byte // the block's text, for runtime devices and overrides
	// override: a device of the file replaced at run time (devices.update). It runs until its block in the file
	// changes (a reload then runs the file's new block) or the gateway restarts (the file's block runs); it is
	// not stored.
	override bool
}

// deviceRegistry is what devices run and where they came from. The control actor and reload change it.
type deviceRegistry struct {
	mu      sync.Mutex
	entries map[string]*deviceEntry
}

// deviceStore keeps the devices added at run time across restarts: a JetStream key-value bucket when JetStream
// is on, otherwise a file in the data directory written atomically.
type deviceStore interface {
	Load(ctx context.Context) (map[string][]byte, error)
	Put(ctx context.Context, id string, hcl []byte) error
	Delete(ctx context.Context, id string) error
	String() string
}

// fileStore is devices.json in the data directory: {"id": "device \"id\" { … }", …}.
type fileStore struct {
	path string
	mu   sync.Mutex
}

func (f *fileStore) String() string { return f.path }

func (f *fileStore) Load(context.Context) (map[string][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.load()
}

func (f *fileStore) load() (map[string][]byte, error) {
	data, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, err
	}
	var m map[string]string
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", f.path, err)
	}
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = []byte(v)
	}
	return out, nil
}

func (f *fileStore) Put(_ context.Context, id string, hclText []byte) error {
	return f.change(func(m map[string][]byte) { m[id] = hclText })
}

func (f *fileStore) Delete(_ context.Context, id string) error {
	return f.change(func(m map[string][]byte) { delete(m, id) })
}

// change rewrites the file atomically: a temporary file in the same directory, synced, renamed over the old one,
// and the directory synced, so a crash leaves the old file or the new one, never half of one.
func (f *fileStore) change(edit func(map[string][]byte)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.load()
	if err != nil {
		return err
	}
	edit(m)
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".devices-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// kvStore is a JetStream key-value bucket of devices (or rules) added at run time, one entry per id, keyed
// {gateway}.{base64url(id)} (ids may hold characters keys may not). The gateway's id in the key keeps gateways
// that share one JetStream (client mode, on one server or cluster) apart: each loads only what was added to it,
// where before they all loaded every entry, so a device added to one gateway was polled by all after a restart.
//
// An entry of the earlier form, the bare {base64url(id)}, is still loaded (by every gateway that shares the
// bucket, as before: it cannot say whose it was) and is moved to this gateway's key at the next change of that id.
type kvStore struct {
	kv      jetstream.KeyValue
	gateway string         // the gateway id, the keys' first token
	log     zerolog.Logger // an entry that cannot be read is skipped with an error here
}

// DevicesBucket is the JetStream key-value bucket of devices added at run time.
const DevicesBucket = "IOTGW_DEVICES"

func (k *kvStore) String() string { return "JetStream bucket " + k.kv.Bucket() }

// kvKey is the key of id in a bucket of the gateway's run-time devices or rules.
func kvKey(gateway, id string) string { return gateway + "." + legacyKVKey(id) }

// legacyKVKey is the key of the earlier form, without the gateway.
func legacyKVKey(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

func (k *kvStore) Load(ctx context.Context) (map[string][]byte, error) {
	out := map[string][]byte{}
	keys, err := k.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	// One entry that cannot be read must not keep the others from running, so it is skipped, but never silently.
	own := map[string]bool{} // ids with an entry of this gateway's form: it wins over a legacy entry of the id
	for key := range keys.Keys() {
		enc, legacy := key, true
		if gw, rest, ok := strings.Cut(key, "."); ok {
			if gw != k.gateway {
				continue // another gateway's
			}
			enc, legacy = rest, false
		}
		id, err := base64.RawURLEncoding.DecodeString(enc)
		if err != nil {
			k.log.Error().Str("key", key).Str("store", k.String()).Err(err).Msg("stored key is not a base64url id; skipped")
			continue
		}
		if legacy && own[string(id)] {
			continue
		}
		e, err := k.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			k.log.Error().Str("id", string(id)).Str("store", k.String()).Err(err).Msg("stored entry cannot be read; skipped")
			continue
		}
		out[string(id)] = e.Value()
		if !legacy {
			own[string(id)] = true
		}
	}
	return out, nil
}

func (k *kvStore) Put(ctx context.Context, id string, hclText []byte) error {
	if _, err := k.kv.Put(ctx, kvKey(k.gateway, id), hclText); err != nil {
		return err
	}
	return k.deleteLegacy(ctx, id)
}

func (k *kvStore) Delete(ctx context.Context, id string) error {
	err := k.kv.Delete(ctx, kvKey(k.gateway, id))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	return k.deleteLegacy(ctx, id)
}

// deleteLegacy removes id's entry of the earlier form, if there is one (moved to this gateway's key, or deleted).
func (k *kvStore) deleteLegacy(ctx context.Context, id string) error {
	if _, err := k.kv.Get(ctx, legacyKVKey(id)); errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	err := k.kv.Delete(ctx, legacyKVKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// openDeviceStore picks the store and loads the devices added at run time. A stored device whose id the config
// file also uses is ignored with a warning: the file is the source of truth for the devices it names (edit it, or
// remove the block, to let the stored one run).
func (r *Runtime) openDeviceStore(ctx context.Context) error {
	if r.cfg.NATS.JetStream.Enabled && r.bus.JS == nil {
		r.store = newLateStore() // NATS was not there: the bucket is read at the first connection (late.go)
	} else if r.bus.JS != nil {
		kv, err := devicesBucket(ctx, r.bus.JS, r.cfg.Gateway.ID, r.log)
		if err != nil {
			return fmt.Errorf("device store: %w", err)
		}
		r.store = kv
	} else {
		r.store = &fileStore{path: filepath.Join(r.cfg.Gateway.DataDir, "devices.json")}
	}
	r.devices = &deviceRegistry{entries: map[string]*deviceEntry{}}
	r.fileDevices = append([]config.Device(nil), r.cfg.Devices...)
	for _, d := range r.cfg.Devices {
		r.devices.entries[d.ID] = &deviceEntry{dev: d, source: SourceConfig}
	}
	if _, late := r.store.(*lateStore); late {
		return nil
	}
	stored, err := r.store.Load(ctx)
	if err != nil {
		return fmt.Errorf("device store %s: %w", r.store, err)
	}
	for _, e := range r.acceptStored(stored) {
		r.cfg.Devices = append(r.cfg.Devices, e.dev)
	}
	if n := len(r.cfg.Devices) - len(r.devices.entries); n != 0 {
		r.log.Debug().Int("delta", n).Msg("device registry")
	}
	return nil
}

// acceptStored adds the stored devices that may run to the registry (the caller holds it or runs before the tree
// starts) and returns them, in id order: one whose id a device of the registry has is skipped, one that no longer
// parses is skipped with an error.
func (r *Runtime) acceptStored(stored map[string][]byte) []*deviceEntry {
	ids := make([]string, 0, len(stored))
	for id := range stored {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var out []*deviceEntry
	for _, id := range ids {
		if _, ok := r.devices.entries[id]; ok {
			r.log.Warn().Str("device", id).Str("store", r.store.String()).Msg("a device added at run time has the id of a device in the config file; the file's device runs")
			continue
		}
		// Parsed as text from outside the config file: whoever could write the store must not get env() evaluated.
		dev, diags := config.ParseRuntimeDevice(stored[id], "stored device "+id)
		if diags.HasErrors() {
			r.log.Error().Str("device", id).Str("store", r.store.String()).Str("error", (&config.Error{Diags: diags}).Error()).Msg("stored device not valid; skipped")
			continue
		}
		if err := r.sharedName(dev.ID); err != nil {
			r.log.Error().Str("device", id).Str("store", r.store.String()).Err(err).Msg("stored device not valid; skipped")
			continue
		}
		if err := config.EndpointConflict(*dev, r.registeredDevices(id)); err != nil {
			r.log.Error().Str("device", id).Str("store", r.store.String()).Err(err).Msg("stored device not valid; skipped")
			continue
		}
		e := &deviceEntry{dev: *dev, source: SourceRuntime, hcl: stored[id]}
		r.devices.entries[id] = e
		out = append(out, e)
	}
	return out
}

// DeviceInfo is one device in iot.control.devices.list and .get.
type DeviceInfo struct {
	ID       string `json:"id"`
	Driver   string `json:"driver"`
	Source   string `json:"source"` // config or runtime
	State    string `json:"state"`
	Restarts int    `json:"restarts"`
	HCL      string `json:"hcl,omitempty"`
	Defined  string `json:"defined,omitempty"` // file:line of a config device
	// Override: a config device replaced at run time by devices.update (its hcl is what runs), until its block
	// in the file changes or the gateway restarts.
	Override bool `json:"override,omitempty"`
}

// Diagnostic is one config problem in an error reply.
type Diagnostic struct {
	Pos     string `json:"pos,omitempty"`
	Summary string `json:"summary"`
	Detail  string `json:"detail,omitempty"`
}

// ControlReply is the reply of the device, fault, restart and reload requests. The fields a reply is about are
// always there, empty or zero as they may be (devices.list's "devices", faults.list's "faults", faults.clear's
// "cleared"); the others are left out. Hence omitzero on the lists (a nil list is not this reply's, an empty one
// is) and a pointer for the count.
type ControlReply struct {
	OK          bool          `json:"ok"`
	Error       string        `json:"error,omitempty"`
	Diagnostics []Diagnostic  `json:"diagnostics,omitempty"`
	HCL         string        `json:"hcl,omitempty"` // the device block a JSON request was read as
	ID          string        `json:"id,omitempty"`
	Path        string        `json:"path,omitempty"`  // actors.restart: the actor restarted
	State       string        `json:"state,omitempty"` // actors.restart: its state once restarted
	Device      *DeviceInfo   `json:"device,omitempty"`
	Devices     []DeviceInfo  `json:"devices,omitzero"`
	Fault       *FaultInfo    `json:"fault,omitempty"`
	Faults      []FaultInfo   `json:"faults,omitzero"`
	Cleared     *int          `json:"cleared,omitempty"`
	Reload      *ReloadResult `json:"reload,omitempty"`
	Sink        *SinkInfo     `json:"sink,omitempty"`
	Sinks       []SinkInfo    `json:"sinks,omitzero"`
}

func failure(format string, args ...any) ControlReply {
	return ControlReply{Error: fmt.Sprintf(format, args...)}
}

func (r *Runtime) deviceInfo(e *deviceEntry) DeviceInfo {
	info := DeviceInfo{ID: e.dev.ID, Driver: e.dev.Driver, Source: e.source, State: StateStopped}
	if n, ok := r.tree.Get(GroupDevices + "/" + e.dev.ID); ok {
		info.State, info.Restarts = n.State, n.Restarts
	}
	if e.source == SourceConfig {
		info.Defined = fmt.Sprintf("%s:%d", e.dev.DefRange.Filename, e.dev.DefRange.Start.Line)
	}
	if e.source == SourceRuntime || e.override {
		info.HCL, info.Override = string(e.hcl), e.override
	}
	return info
}

func (r *Runtime) listDevices() ControlReply {
	r.devices.mu.Lock()
	defer r.devices.mu.Unlock()
	out := ControlReply{OK: true, Devices: []DeviceInfo{}}
	for _, e := range r.devices.entries {
		out.Devices = append(out.Devices, r.deviceInfo(e))
	}
	sort.Slice(out.Devices, func(i, j int) bool { return out.Devices[i].ID < out.Devices[j].ID })
	return out
}

// idRequest reads {"id":"…"}.
func idRequest(body []byte) (string, error) {
	var req struct {
		ID string `json:"id"`
	}
	if len(body) > maxDeviceRequest {
		return "", fmt.Errorf("request of %d bytes: at most %d", len(body), maxDeviceRequest)
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return "", fmt.Errorf(`request is not {"id":"…"}: %v`, err)
	}
	if req.ID == "" {
		return "", errors.New(`request lacks "id"`)
	}
	return req.ID, nil
}

func (r *Runtime) getDevice(body []byte) ControlReply {
	id, err := idRequest(body)
	if err != nil {
		return failure("%v", err)
	}
	r.devices.mu.Lock()
	defer r.devices.mu.Unlock()
	e, ok := r.devices.entries[id]
	if !ok {
		return failure("no device %q", id)
	}
	info := r.deviceInfo(e)
	return ControlReply{OK: true, Device: &info}
}

// parseDeviceRequest reads an add or update request: the HCL text of a device block, or JSON that is turned into
// it. Both are validated by config.ParseRuntimeDevice, like a block of gateway.hcl but without env(): a request
// must not put the gateway's environment on the bus.
func parseDeviceRequest(body []byte) (*config.Device, []byte, ControlReply) {
	if len(body) > maxDeviceRequest {
		return nil, nil, failure("request of %d bytes: at most %d", len(body), maxDeviceRequest)
	}
	src := body
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' {
		var err error
		if src, err = deviceHCL(t); err != nil {
			return nil, nil, failure("%v", err)
		}
	}
	dev, diags := config.ParseRuntimeDevice(src, "request")
	if diags.HasErrors() {
		reply := ControlReply{Error: "invalid device: " + firstLine(diags), Diagnostics: diagnostics(diags)}
		if !bytes.Equal(src, body) {
			reply.HCL = string(src)
		}
		return nil, nil, reply
	}
	return dev, src, ControlReply{OK: true}
}

// diagnostics turns config problems into their reply form.
func diagnostics(diags hcl.Diagnostics) []Diagnostic {
	out := make([]Diagnostic, 0, len(diags))
	for _, d := range diags {
		dg := Diagnostic{Summary: d.Summary, Detail: d.Detail}
		if d.Subject != nil {
			dg.Pos = fmt.Sprintf("%s:%d:%d", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		out = append(out, dg)
	}
	return out
}

func firstLine(diags hcl.Diagnostics) string {
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			if d.Detail != "" {
				return d.Summary + ": " + d.Detail
			}
			return d.Summary
		}
	}
	return diags.Error()
}

// addDevice starts a device at run time (update: replaces a running one) and stores it. An update of a device
// of the file is an override: not stored, in force until the file's block changes or the gateway restarts (the
// file wins then, as at every start).
func (r *Runtime) addDevice(body []byte, update bool) ControlReply {
	dev, src, reply := parseDeviceRequest(body)
	if !reply.OK {
		return reply
	}
	if err := r.sharedName(dev.ID); err != nil {
		return failure("invalid device: %v", err)
	}
	r.devices.mu.Lock()
	defer r.devices.mu.Unlock()
	old, exists := r.devices.entries[dev.ID]
	switch {
	case !update && exists:
		return failure("device %q exists (from the %s); use update", dev.ID, old.source)
	case update && !exists:
		return failure("no device %q to update; use add", dev.ID)
	}
	// Devices on one endpoint must agree on its settings, as in the file (config.EndpointConflict).
	if err := config.EndpointConflict(*dev, r.registeredDevices(dev.ID)); err != nil {
		return failure("invalid device: %v", err)
	}
	spec, err := r.deviceSpec(*dev)
	if err != nil {
		return failure("%v", err)
	}
	// Whatever happens, no endpoint is left without a device (one started for a device that did not start, the
	// old endpoint of a device that moved).
	defer r.pruneEndpoints()
	if exists {
		if err := r.RemoveActor(GroupDevices, dev.ID); err != nil && !errors.Is(err, ErrNoChild) {
			return failure("stop device %q: %v", dev.ID, err)
		}
	}
	err = r.ensureEndpoint(*dev)
	if err == nil {
		err = r.AddActor(GroupDevices, spec)
	}
	if err != nil {
		// It may be there, failing: not the device asked for.
		if rerr := r.removeIfThere(GroupDevices, dev.ID); rerr != nil {
			err = fmt.Errorf("%v; removing it failed too: %v", err, rerr)
		}
		// Roll back to the device as it was.
		if exists {
			if rerr := r.restartOld(old.dev); rerr != nil {
				err = fmt.Errorf("%v; the previous device did not start again either: %v", err, rerr)
			} else {
				err = fmt.Errorf("%v (rolled back)", err)
			}
		}
		return failure("start device %q: %v", dev.ID, err)
	}
	if exists && old.source == SourceConfig {
		r.devices.entries[dev.ID] = &deviceEntry{dev: *dev, source: SourceConfig, hcl: src, override: true}
		r.log.Info().Str("device", dev.ID).Str("driver", dev.Driver).
			Msg("device of the config file updated at run time: in force until its block in the file changes or the gateway restarts")
		return ControlReply{OK: true, ID: dev.ID}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.store.Put(ctx, dev.ID, src); err != nil {
		r.log.Error().Err(err).Str("device", dev.ID).Msg("device runs but could not be stored: it will not survive a restart")
	}
	r.devices.entries[dev.ID] = &deviceEntry{dev: *dev, source: SourceRuntime, hcl: src}
	verb := "added"
	if update {
		verb = "updated"
	}
	r.log.Info().Str("device", dev.ID).Str("driver", dev.Driver).Msg("device " + verb + " at run time")
	return ControlReply{OK: true, ID: dev.ID}
}

// sharedName refuses a device id that a configured sidecar uses as its name (config.SharedNameDetail says why).
func (r *Runtime) sharedName(id string) error {
	if sc := r.cfg.SidecarNamed(id); sc != nil {
		return fmt.Errorf("device id %q used by a sidecar: %s", id, config.SharedNameDetail(id, sc.DefRange))
	}
	return nil
}

func (r *Runtime) removeDevice(body []byte) ControlReply {
	id, err := idRequest(body)
	if err != nil {
		return failure("%v", err)
	}
	r.devices.mu.Lock()
	defer r.devices.mu.Unlock()
	e, ok := r.devices.entries[id]
	if !ok {
		return failure("no device %q", id)
	}
	if err := r.RemoveActor(GroupDevices, id); err != nil && !errors.Is(err, ErrNoChild) {
		return failure("stop device %q: %v", id, err)
	}
	delete(r.devices.entries, id)
	r.pruneEndpoints()
	if m := r.mon.actorMetrics(); m != nil {
		m.Forget(GroupDevices + "/" + id)
		m.ForgetDevice(id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.store.Delete(ctx, id); err != nil {
		r.log.Error().Err(err).Str("device", id).Msg("device removed but still stored: it will come back at the next start")
	}
	r.log.Info().Str("device", id).Str("source", e.source).Msg("device removed at run time")
	return ControlReply{OK: true, ID: id}
}

// restartOld starts a device again as it ran before a failed update.
func (r *Runtime) restartOld(dev config.Device) error {
	spec, err := r.deviceSpec(dev)
	if err != nil {
		return err
	}
	if err := r.ensureEndpoint(dev); err != nil {
		return err
	}
	return r.AddActor(GroupDevices, spec)
}
