package system

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
)

// FaultInfo is an injected fault in iot.control.faults.list.
type FaultInfo struct {
	ID          string     `json:"id"`
	Kind        string     `json:"kind"`
	Target      string     `json:"target"` // actor path, e.g. devices/plc-1
	Probability float64    `json:"probability,omitempty"`
	Latency     string     `json:"latency,omitempty"`
	Injected    time.Time  `json:"injected"`
	Until       *time.Time `json:"until,omitempty"` // cleared by itself then; none: until cleared

	fault *actors.Fault // what was sent to the target, applied again to each of its later incarnations
}

// faultRequest is the body of iot.control.faults.inject.
type faultRequest struct {
	Kind        string  `json:"kind"`
	Target      string  `json:"target"`
	Duration    string  `json:"duration"`
	Probability float64 `json:"probability"`
	Latency     string  `json:"latency"`
}

// faultManager keeps the injected faults and ends the timed ones. It is the same mechanism the test suite uses:
// a fault is a message to the target actor, which its subject mailbox wrapper (crash, stop) or the actor itself
// (FaultTarget) acts on.
//
// A lasting fault (drop, latency, error, bad_quality) belongs to its target's path, not to one incarnation: the
// wrapper of every incarnation that starts applies the faults listed for its path again (of), so a restart — by the
// supervisor or by hand — leaves in force exactly what iot.control.faults.list shows. Removing the actor clears
// its faults (forget).
type faultManager struct {
	rt     *Runtime
	mu     sync.Mutex
	seq    int
	active map[string]*FaultInfo
	timers map[string]*time.Timer
}

// ErrFaultsDisabled is the reply when faults { enabled = true } is not set.
var ErrFaultsDisabled = errors.New("fault injection is disabled: set faults { enabled = true } in the config")

func newFaultManager(rt *Runtime) *faultManager {
	return &faultManager{rt: rt, active: map[string]*FaultInfo{}, timers: map[string]*time.Timer{}}
}

func (m *faultManager) inject(body []byte) ControlReply {
	if !m.rt.cfg.Faults.Enabled {
		return failure("%v", ErrFaultsDisabled)
	}
	var req faultRequest
	if len(body) > 4<<10 {
		return failure("request of %d bytes: at most 4096", len(body))
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return failure(`request is not {"kind":…, "target":…}: %v`, err)
	}
	if !slices.Contains(actors.FaultKinds, req.Kind) {
		return failure("unknown fault kind %q; known: %s", req.Kind, strings.Join(actors.FaultKinds, ", "))
	}
	target := strings.Trim(req.Target, "/")
	if target == "" {
		return failure("target: the path of an actor, like devices/plc-1 (see iot.control.tree)")
	}
	// The control actor serves this very request (a fault on it would wait for itself, then cut every later
	// request and SIGHUP), and the root holds it: refused, whatever the kind. The group supervisors may be
	// crashed or stopped: they come back by themselves or by iot.control.actors.restart.
	if target == rootPath || target == ControlActor {
		return failure("target %s %v", target, ErrControlPlane)
	}
	n, ok := m.rt.tree.Get(target)
	if !ok {
		return failure("no actor %q (see iot.control.tree)", target)
	}
	if n.State == StateStopped || n.State == StateFailed {
		return failure("actor %s is not running (%s)", target, n.State)
	}
	if req.Probability < 0 || req.Probability > 1 {
		return failure("probability %v: want 0..1", req.Probability)
	}
	var dur, lat time.Duration
	var err error
	if req.Duration != "" {
		if dur, err = time.ParseDuration(req.Duration); err != nil || dur <= 0 {
			return failure("duration %q: want a positive duration like \"30s\"", req.Duration)
		}
	}
	if req.Latency != "" {
		if lat, err = time.ParseDuration(req.Latency); err != nil || lat <= 0 {
			return failure("latency %q: want a positive duration like \"200ms\"", req.Latency)
		}
	}
	if req.Kind == actors.FaultLatency && lat == 0 {
		return failure(`a latency fault needs "latency", like "200ms"`)
	}

	m.mu.Lock()
	m.seq++
	id := fmt.Sprintf("f-%d", m.seq)
	m.mu.Unlock()
	f := &actors.Fault{ID: id, Kind: req.Kind, Probability: req.Probability, Latency: lat}
	info := &FaultInfo{ID: id, Kind: req.Kind, Target: target, Probability: req.Probability, Injected: time.Now(), fault: f}
	if lat > 0 {
		info.Latency = lat.String()
	}
	lasting := req.Kind != actors.FaultCrash && req.Kind != actors.FaultStop && req.Kind != actors.FaultKill
	if lasting {
		// Listed before it is sent: an incarnation of the target that starts meanwhile applies it too.
		m.mu.Lock()
		m.active[id] = info
		m.mu.Unlock()
	}
	refuse := func(format string, args ...any) ControlReply {
		if lasting {
			m.mu.Lock()
			delete(m.active, id)
			m.mu.Unlock()
		}
		return failure(format, args...)
	}
	pid := m.rt.sys.NewLocalPID(m.rt.root.Id + "/" + target)
	res, err := m.rt.sys.Root.RequestFuture(pid, f, 5*time.Second).Result()
	if errors.Is(err, actor.ErrDeadLetter) { // it stopped between the check and the request
		state := StateStopped
		if n, ok := m.rt.tree.Get(target); ok {
			state = n.State
		}
		return refuse("actor %s is not running (%s)", target, state)
	}
	if err != nil {
		return refuse("fault %s on %s: %v", req.Kind, target, err)
	}
	if r, ok := res.(*actors.FaultReply); ok && r.Err != nil {
		return refuse("fault %s on %s: %v", req.Kind, target, r.Err)
	}
	ev := m.rt.log.Warn().Str("fault", id).Str("kind", req.Kind).Str("target", target)
	if dur > 0 {
		ev = ev.Str("duration", dur.String())
	}
	if lat > 0 {
		ev = ev.Str("latency", lat.String())
	}
	if req.Probability > 0 {
		ev = ev.Float64("probability", req.Probability)
	}
	ev.Msg("fault injected")
	if !lasting {
		return ControlReply{OK: true, Fault: info} // done at once: nothing stays active
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rt.tree.update(target, func(e *treeEntry) { e.faults = append(e.faults, id+" "+req.Kind) })
	if dur > 0 {
		until := info.Injected.Add(dur)
		info.Until = &until
		m.timers[id] = time.AfterFunc(dur, func() { m.clearIDs([]string{id}) })
	}
	return ControlReply{OK: true, Fault: info}
}

func (m *faultManager) clear(body []byte) ControlReply {
	var req struct {
		ID     string `json:"id"`
		Target string `json:"target"`
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return failure(`request is not {"id":…} or {"target":…} (or empty for all): %v`, err)
		}
	}
	m.mu.Lock()
	var ids []string
	for id, f := range m.active {
		if (req.ID == "" || req.ID == id) && (req.Target == "" || strings.Trim(req.Target, "/") == f.Target) {
			ids = append(ids, id)
		}
	}
	m.mu.Unlock()
	if req.ID != "" && len(ids) == 0 {
		return failure("no active fault %q", req.ID)
	}
	n := m.clearIDs(ids)
	return ControlReply{OK: true, Cleared: &n}
}

func (m *faultManager) clearIDs(ids []string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, id := range ids {
		f, ok := m.active[id]
		if !ok {
			continue
		}
		delete(m.active, id)
		if t := m.timers[id]; t != nil {
			t.Stop()
			delete(m.timers, id)
		}
		if m.rt.root != nil {
			m.rt.sys.Root.Send(m.rt.sys.NewLocalPID(m.rt.root.Id+"/"+f.Target), &actors.FaultClear{ID: id})
		}
		m.rt.tree.update(f.Target, func(e *treeEntry) {
			e.faults = slices.DeleteFunc(e.faults, func(s string) bool { return strings.HasPrefix(s, id+" ") })
		})
		m.rt.log.Info().Str("fault", id).Str("kind", f.Kind).Str("target", f.Target).Msg("fault cleared")
		n++
	}
	return n
}

// of returns the lasting faults listed for the actor at path, oldest first: what a new incarnation of it applies.
func (m *faultManager) of(path string) []*actors.Fault {
	m.mu.Lock()
	defer m.mu.Unlock()
	var infos []*FaultInfo
	for _, f := range m.active {
		if f.Target == path {
			infos = append(infos, f)
		}
	}
	slices.SortFunc(infos, func(a, b *FaultInfo) int { return a.Injected.Compare(b.Injected) })
	out := make([]*actors.Fault, len(infos))
	for i, f := range infos {
		out[i] = f.fault
	}
	return out
}

// forget clears the faults of the actor at path, which is about to be removed: while it still runs, so that it
// ends what it passed on (a Modbus device's drop or latency, held by its endpoint's transport).
func (m *faultManager) forget(path string) {
	m.mu.Lock()
	var ids []string
	for id, f := range m.active {
		if f.Target == path {
			ids = append(ids, id)
		}
	}
	m.mu.Unlock()
	m.clearIDs(ids)
}

func (m *faultManager) list() ControlReply {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := ControlReply{OK: true, Faults: []FaultInfo{}}
	for _, f := range m.active {
		out.Faults = append(out.Faults, *f)
	}
	slices.SortFunc(out.Faults, func(a, b FaultInfo) int { return a.Injected.Compare(b.Injected) })
	return out
}

// stop ends the timers (Runtime.Stop).
func (m *faultManager) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, t := range m.timers {
		t.Stop()
		delete(m.timers, id)
	}
}
