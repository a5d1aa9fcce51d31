package rule

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strings"
)

// Handing an aggregate rule's open windows on with its devices (partition = "device").
//
// A window changes with every point, so it is not checkpointed (a store write per batch per device would be the
// bus path's cost again); it is written once, by the owner that loses the device, at the moment it loses it, and
// the new owner merges it into its own windows:
//
//   - A leaves (stop, restart, reload that removes or changes the rule): before its "leave", A writes the open
//     windows of all its devices and waits for the store's acknowledgement; the others read at the "leave",
//     which comes after the write on the bus, so they find it.
//   - B joins (the set grows): A sees B's "up", writes the windows of the devices it no longer owns, drops them,
//     and then says "handoff"; B reads at that message. B may have taken a moved device's first batches
//     meanwhile, into windows of its own: merging adds A's part to them (counts, sums, min, max, first, last,
//     the mean and variance by Chan's parallel formula, the kept values), so the window is emitted once with
//     every point. Only a window that B closed before the handoff arrived (its end passed in the few ms between)
//     is emitted a second time with A's part, rather than lost.
//   - A dies: nothing is written. Its devices' open windows are lost, and their points until the others drop A
//     (memberTimeout); the README states it.
//
// A stored state names the window settings it was made with (windowShape): a rule changed by a reload does not
// merge windows of another size into its own. Each write is its own entry (rule, device, gateway, a sequence),
// read and deleted by the one gateway that owns the device, so two handoffs of one device never overwrite each
// other. eKuiper checkpoints a rule's whole state periodically (qos, checkpointInterval) for recovery on one
// node; it does not hand state between nodes, which is what this is for.

// WindowStore keeps the windows a gateway hands on (the runtime's is the JetStream KV bucket IOTGW_WINDOWS; without
// JetStream an in-memory one, which hands windows on across restarts of the rule's actor only).
type WindowStore interface {
	// Save stores the open windows of some devices of a rule; it returns once they are stored.
	Save(ctx context.Context, rule string, states []WindowState) error
	// Take returns, and deletes from the store, the stored windows of the rule's devices for which owns is true.
	Take(ctx context.Context, rule string, owns func(device string) bool) ([]WindowState, error)
}

// WindowState is the open windows of one device (or group_by value) of an aggregate rule.
type WindowState struct {
	Rule    string        `json:"rule"`
	Device  string        `json:"device"`
	Shape   string        `json:"shape"` // windowShape of the rule that made it
	Gateway string        `json:"gateway,omitempty"`
	Series  []SeriesState `json:"series"`
}

// SeriesState is one key's windows.
type SeriesState struct {
	Key         string        `json:"key"`
	ClosedUntil int64         `json:"closed_until,omitempty"`
	MaxTs       int64         `json:"max_ts,omitempty"`
	Windows     []WindowAcc   `json:"windows,omitempty"` // tumbling, hopping
	Current     *WindowAcc    `json:"current,omitempty"` // count, session
	Samples     []SampleState `json:"samples,omitempty"` // sliding
}

// WindowAcc is one open window's running figures.
type WindowAcc struct {
	Start     int64     `json:"start"`
	End       int64     `json:"end"`
	N         int       `json:"n"`
	Sum       float64   `json:"sum"`
	Mean      float64   `json:"mean"`
	M2        float64   `json:"m2"`
	Min       float64   `json:"min"`
	Max       float64   `json:"max"`
	First     float64   `json:"first"`
	Last      float64   `json:"last"`
	FirstTs   int64     `json:"first_ts"`
	LastTs    int64     `json:"last_ts"`
	Values    []float64 `json:"values,omitempty"`
	Truncated bool      `json:"truncated,omitempty"`
}

// SampleState is one point of a sliding window.
type SampleState struct {
	T int64   `json:"t"`
	V float64 `json:"v"`
}

// windowShape fingerprints the settings that give windows their meaning.
func windowShape(a *aggregator) string {
	c := a.cfg
	h := fnv.New64a()
	fmt.Fprintf(h, "%s|%d|%d|%d|%d|%s|%t|%d|%s|%d", c.Window, c.Size, c.Hop, c.Count, c.Gap,
		strings.Join(c.Functions, ","), c.EventTime, c.Lateness, c.GroupBy, c.MaxPoints)
	return fmt.Sprintf("%016x", h.Sum64())
}

// TakeWindows removes the windows of the devices for which keep is false (all of them when keep is nil) and
// returns them, to be handed on. A rule that is not an aggregate has none.
func (e *Engine) TakeWindows(keep func(device string) bool) []WindowState {
	a := e.agg
	if a == nil {
		return nil
	}
	devices := make([]string, 0, len(a.groups))
	for dev := range a.groups {
		if keep == nil || !keep(dev) {
			devices = append(devices, dev)
		}
	}
	sort.Strings(devices)
	shape := windowShape(a)
	var out []WindowState
	for _, dev := range devices {
		st := WindowState{Rule: e.rule.Name, Device: dev, Shape: shape}
		keys := a.groups[dev]
		names := make([]string, 0, len(keys))
		for k := range keys {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			if s, open := keys[k].state(); open {
				st.Series = append(st.Series, s)
			}
		}
		delete(a.groups, dev)
		if len(st.Series) > 0 {
			out = append(out, st)
		}
	}
	return out
}

// state is a group's open windows; open is false when it has none (nothing to hand on).
func (g *group) state() (SeriesState, bool) {
	s := SeriesState{Key: g.key, ClosedUntil: g.closedUntil, MaxTs: g.maxTs}
	for _, w := range g.windows {
		if w.n > 0 {
			s.Windows = append(s.Windows, w.export())
		}
	}
	if g.cur != nil && g.cur.n > 0 {
		c := g.cur.export()
		s.Current = &c
	}
	for _, p := range g.samples {
		s.Samples = append(s.Samples, SampleState{T: p.t, V: p.v})
	}
	return s, len(s.Windows) > 0 || s.Current != nil || len(s.Samples) > 0
}

func (w *window) export() WindowAcc {
	return WindowAcc{Start: w.start, End: w.end, N: w.n, Sum: w.sum, Mean: w.mean, M2: w.m2, Min: w.min, Max: w.max,
		First: w.first, Last: w.last, FirstTs: w.firstTs, LastTs: w.lastTs, Values: slices.Clone(w.values), Truncated: w.truncated}
}

func (s *WindowAcc) window() *window {
	return &window{start: s.Start, end: s.End, acc: acc{n: s.N, sum: s.Sum, mean: s.Mean, m2: s.M2, min: s.Min, max: s.Max,
		first: s.First, last: s.Last, firstTs: s.FirstTs, lastTs: s.LastTs, values: s.Values, truncated: s.Truncated, hasAny: s.N > 0}}
}

// MergeWindows adds handed-on windows to the rule's own: the same window's figures merge, a window this rule
// does not have opens, and one it has already closed is emitted with the handed-on part alone (late, but not
// lost). It returns how many of the states it merged; a state made with other window settings, or for another
// rule, is skipped.
func (e *Engine) MergeWindows(states []WindowState) int {
	a := e.agg
	if a == nil {
		return 0
	}
	shape := windowShape(a)
	merged := 0
	for i := range states {
		st := &states[i]
		if st.Rule != e.rule.Name || st.Shape != shape {
			continue
		}
		merged++
		for j := range st.Series {
			a.merge(st.Device, &st.Series[j])
		}
	}
	return merged
}

func (a *aggregator) merge(device string, s *SeriesState) {
	keys := a.groups[device]
	if keys == nil {
		if len(a.groups) >= maxSeries {
			return
		}
		keys = map[string]*group{}
		a.groups[device] = keys
	}
	g := keys[s.Key]
	if g == nil {
		g = &group{device: device, key: s.Key}
		keys[s.Key] = g
	}
	g.maxTs = max(g.maxTs, s.MaxTs)
	for i := range s.Windows {
		in := s.Windows[i].window()
		if in.end <= g.closedUntil {
			a.emit(g, in) // this gateway closed it already
			continue
		}
		w := g.window(in.start, in.end-in.start)
		w.merge(&in.acc, a.cfg.MaxPoints)
	}
	g.closedUntil = max(g.closedUntil, s.ClosedUntil)
	if s.Current != nil {
		in := s.Current.window()
		switch {
		case g.cur == nil:
			g.cur = in
		case a.cfg.Window == "session" && !sessionsTouch(g.cur, in, int64(a.cfg.Gap)):
			// More than gap apart: two sessions, as one gateway would have seen them. The earlier one is over.
			early, late := in, g.cur
			if g.cur.start < in.start {
				early, late = g.cur, in
			}
			early.end = early.lastTs
			a.emit(g, early)
			g.cur = late
		default:
			g.cur.start = min(g.cur.start, in.start)
			g.cur.merge(&in.acc, a.cfg.MaxPoints)
		}
		// A count window whose two parts hold more than count points is emitted whole, with them all: which of
		// them one gateway would have put in the next window depends on an order the two did not share.
		if a.cfg.Window == "count" && g.cur.n >= a.cfg.Count {
			g.cur.end = g.cur.lastTs
			a.emit(g, g.cur)
			g.cur = nil
		}
	}
	if len(s.Samples) > 0 {
		for _, p := range s.Samples {
			g.samples = append(g.samples, sample{t: p.T, v: p.V})
		}
		sort.SliceStable(g.samples, func(i, j int) bool { return g.samples[i].t < g.samples[j].t })
		if n := len(g.samples) - a.cfg.MaxPoints; n > 0 {
			g.samples = g.samples[n:]
		}
	}
}

// sessionsTouch says whether two sessions are no more than gap apart (one session to a gateway that saw both).
func sessionsTouch(a, b *window, gap int64) bool {
	if a.start > b.start {
		a, b = b, a
	}
	return b.start-a.lastTs <= gap
}

// merge adds b's figures to a's, as if a had seen b's points too: the mean and the sum of squared differences
// by Chan, Golub and LeVeque's pairwise formula, first and last by their times.
func (a *acc) merge(b *acc, limit int) {
	if b.n == 0 {
		return
	}
	if a.n == 0 {
		values := append(a.values[:0], b.values...)
		*a = *b
		a.values = values
		return
	}
	na, nb := float64(a.n), float64(b.n)
	n := na + nb
	d := b.mean - a.mean
	a.mean += d * nb / n
	a.m2 += b.m2 + d*d*na*nb/n
	a.n += b.n
	a.sum += b.sum
	a.min = min(a.min, b.min)
	a.max = max(a.max, b.max)
	if b.firstTs < a.firstTs {
		a.first, a.firstTs = b.first, b.firstTs
	}
	if b.lastTs >= a.lastTs {
		a.last, a.lastTs = b.last, b.lastTs
	}
	room := max(limit-len(a.values), 0)
	if len(b.values) > room {
		a.truncated = true
	}
	a.values = append(a.values, b.values[:min(room, len(b.values))]...)
	a.truncated = a.truncated || b.truncated
}
