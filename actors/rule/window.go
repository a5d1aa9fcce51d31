package rule

import (
	"math"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
)

// Aggregate windows, per device and key (or per value of a tag and key), following eKuiper's window kinds:
//
//   - tumbling: [k·size, (k+1)·size), aligned to the Unix epoch, back to back;
//   - hopping:  windows of size starting every hop (aligned the same way), so a point is in size/hop of them;
//   - sliding:  at each point, the points of the last size before it (an output per point);
//   - count:    every count points;
//   - session:  points no more than gap apart, at most size long when size is set.
//
// In processing time (the default) a point's time is when it arrives, and a window closes when the clock passes its
// end, on the actor's tick, whether a point comes or not. In event time it is the point's timestamp: a window closes
// when a point arrives more than lateness past its end (the watermark: the latest timestamp seen minus lateness)
// or when the clock passes end + lateness (so a device that went silent still gets its window closed); a point
// for a window already closed is late: dropped and counted (Stats.Late). eKuiper departs here: it closes event-time
// windows only on the watermark, so a silent stream keeps its last window open.
//
// Running sums (count, sum, sum of squares, min, max, first, last) cost nothing per point; percentiles and the
// sliding window keep the values (at most max_points per window; past that, percentiles are over the first
// max_points and the output says "truncated").

type aggregator struct {
	e         *Engine
	cfg       *config.AggregateRule
	groups    map[string]map[string]*group // device (or the group_by tag's value) → key → group
	quantiles []float64                    // per function: the percentile, or -1
	values    bool                         // windows keep their values
	buf       []byte
	subject   []byte
	scratch   []float64
}

type group struct {
	device, key string
	windows     []*window // open time windows, by start
	closedUntil int64     // the end of the last window closed: a point before it is late
	maxTs       int64     // event time: the latest timestamp seen
	samples     []sample  // sliding
	cur         *window   // count and session
}

type sample struct {
	t int64
	v float64
}

type window struct {
	start, end int64
	acc
}

type acc struct {
	n                 int
	sum, mean, m2     float64 // m2: Welford's running sum of squared differences from the mean
	min, max          float64
	first, last       float64
	firstTs, lastTs   int64
	values            []float64
	truncated, hasAny bool
}

func (a *acc) add(v float64, t int64, keep bool, limit int) {
	if !a.hasAny {
		a.min, a.max, a.first, a.firstTs, a.hasAny = v, v, v, t, true
	}
	a.n++
	a.sum += v
	d := v - a.mean
	a.mean += d / float64(a.n)
	a.m2 += d * (v - a.mean)
	a.min = math.Min(a.min, v)
	a.max = math.Max(a.max, v)
	a.last, a.lastTs = v, t
	if keep {
		if len(a.values) < limit {
			a.values = append(a.values, v)
		} else {
			a.truncated = true
		}
	}
}

func newAggregator(e *Engine) *aggregator {
	cfg := e.rule.Aggregate
	a := &aggregator{e: e, cfg: cfg, groups: map[string]map[string]*group{}}
	a.quantiles = make([]float64, len(cfg.Functions))
	for i, f := range cfg.Functions {
		a.quantiles[i] = -1
		if q, ok := config.Percentile(f); ok {
			a.quantiles[i] = q
			a.values = true
		}
	}
	return a
}

func (a *aggregator) groupOf(p *isp.Point) *group {
	dev := p.DeviceID
	if a.cfg.GroupBy != "" {
		v, ok := p.Tag(a.cfg.GroupBy)
		if !ok || config.ValidToken(v) != nil {
			a.e.stats.Errors++
			a.e.errorEvent("group_by", p, "the point has no tag "+strconv.Quote(a.cfg.GroupBy)+" that can be a subject token")
			return nil
		}
		dev = v
	}
	keys := a.groups[dev]
	if keys == nil {
		if len(a.groups) >= maxSeries {
			return nil
		}
		keys = map[string]*group{}
		a.groups[dev] = keys
	}
	g := keys[p.Key]
	if g == nil {
		g = &group{device: dev, key: p.Key}
		keys[p.Key] = g
	}
	return g
}

func (a *aggregator) point(p *isp.Point, now time.Time) {
	if !a.e.env.IsNumber || math.IsNaN(a.e.env.Value) {
		a.e.stats.Dropped++ // a string, a null or a NaN has no place in a sum
		return
	}
	g := a.groupOf(p)
	if g == nil {
		return
	}
	v := a.e.env.Value
	t := now.UnixNano()
	if a.cfg.EventTime {
		t = p.Timestamp
	}
	switch a.cfg.Window {
	case "tumbling", "hopping":
		a.timed(g, v, t)
	case "sliding":
		a.sliding(g, v, t)
	case "count":
		if g.cur == nil {
			g.cur = &window{start: t}
		}
		g.cur.add(v, t, a.values, a.cfg.MaxPoints)
		if g.cur.n >= a.cfg.Count {
			g.cur.end = t
			a.emit(g, g.cur)
			g.cur = nil
		}
	case "session":
		gap := int64(a.cfg.Gap)
		if g.cur != nil && t-g.cur.lastTs > gap {
			a.closeSession(g)
		}
		if g.cur == nil {
			g.cur = &window{start: t}
		}
		g.cur.add(v, max(t, g.cur.lastTs), a.values, a.cfg.MaxPoints)
		if a.cfg.Size > 0 && g.cur.lastTs-g.cur.start >= int64(a.cfg.Size) {
			a.closeSession(g)
		}
	}
}

func (a *aggregator) late() {
	a.e.stats.Late++
	a.e.stats.Dropped++
}

func (a *aggregator) closeSession(g *group) {
	g.cur.end = g.cur.lastTs
	a.emit(g, g.cur)
	g.cur = nil
}

// timed adds a point to the tumbling or hopping windows that hold its time t.
func (a *aggregator) timed(g *group, v float64, t int64) {
	size := int64(a.cfg.Size)
	hop := size
	if a.cfg.Window == "hopping" {
		hop = int64(a.cfg.Hop)
	}
	if a.cfg.EventTime {
		g.maxTs = max(g.maxTs, t)
		a.closeUpTo(g, g.maxTs-int64(a.cfg.Lateness))
	} else {
		a.closeUpTo(g, t)
	}
	added := false
	for start := floorTo(t, hop); start > t-size; start -= hop {
		if start+size <= g.closedUntil {
			break // this window and the earlier ones are closed
		}
		w := g.window(start, size)
		w.add(v, t, a.values, a.cfg.MaxPoints)
		added = true
	}
	if !added {
		a.late()
	}
}

func floorTo(t, step int64) int64 {
	r := t % step
	if r < 0 {
		r += step
	}
	return t - r
}

// window returns the open window starting at start, opening it when needed (kept sorted by start).
func (g *group) window(start, size int64) *window {
	i := sort.Search(len(g.windows), func(i int) bool { return g.windows[i].start >= start })
	if i < len(g.windows) && g.windows[i].start == start {
		return g.windows[i]
	}
	w := &window{start: start, end: start + size}
	g.windows = slices.Insert(g.windows, i, w)
	return w
}

// closeUpTo emits and drops the windows that end at or before t.
func (a *aggregator) closeUpTo(g *group, t int64) {
	n := 0
	for _, w := range g.windows {
		if w.end > t {
			break
		}
		a.emit(g, w)
		g.closedUntil = max(g.closedUntil, w.end)
		n++
	}
	if n > 0 {
		g.windows = append(g.windows[:0], g.windows[n:]...)
	}
}

func (a *aggregator) sliding(g *group, v float64, t int64) {
	size := int64(a.cfg.Size)
	if a.cfg.EventTime {
		if g.maxTs != 0 && t < g.maxTs-int64(a.cfg.Lateness) {
			a.late()
			return
		}
		g.maxTs = max(g.maxTs, t)
	}
	i := sort.Search(len(g.samples), func(i int) bool { return g.samples[i].t > t })
	if len(g.samples) >= a.cfg.MaxPoints {
		g.samples = g.samples[1:]
		i = max(i-1, 0)
	}
	g.samples = slices.Insert(g.samples, i, sample{t: t, v: v})
	cut := sort.Search(len(g.samples), func(i int) bool { return g.samples[i].t > t-size })
	if cut > 0 {
		g.samples = append(g.samples[:0], g.samples[cut:]...)
	}
	w := &window{start: t - size, end: t}
	for _, s := range g.samples {
		if s.t <= t {
			w.add(s.v, s.t, a.values, a.cfg.MaxPoints)
		}
	}
	a.emit(g, w)
}

// tick closes what time has closed: windows past their end (plus lateness in event time) and sessions past their gap.
func (a *aggregator) tick(now time.Time) {
	t := now.UnixNano()
	if a.cfg.EventTime {
		t -= int64(a.cfg.Lateness)
	}
	for _, keys := range a.groups {
		for _, g := range keys {
			switch a.cfg.Window {
			case "tumbling", "hopping":
				a.closeUpTo(g, t)
			case "session":
				if g.cur != nil && t-g.cur.lastTs > int64(a.cfg.Gap) {
					a.closeSession(g)
				}
			}
		}
	}
}

// emit publishes one window's result on iot.aggregated.{device}.{key}:
//
//	{"rule":"avg","device_id":"d1","key":"temp","window":"tumbling","start":…,"end":…,"count":3,"values":{"avg":2,…}}
func (a *aggregator) emit(g *group, w *window) {
	if w.n == 0 {
		return
	}
	b := append(a.buf[:0], `{"rule":`...)
	b = strconv.AppendQuote(b, a.e.rule.Name)
	b = append(b, `,"device_id":`...)
	b = strconv.AppendQuote(b, g.device)
	b = append(b, `,"key":`...)
	b = strconv.AppendQuote(b, g.key)
	if a.cfg.GroupBy != "" {
		b = append(b, `,"group_by":`...)
		b = strconv.AppendQuote(b, a.cfg.GroupBy)
	}
	b = append(b, `,"window":"`...)
	b = append(b, a.cfg.Window...)
	b = append(b, `","start":`...)
	b = strconv.AppendInt(b, w.start, 10)
	b = append(b, `,"end":`...)
	b = strconv.AppendInt(b, w.end, 10)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, int64(w.n), 10)
	if w.truncated {
		b = append(b, `,"truncated":true`...)
	}
	b = append(b, `,"values":{`...)
	var sorted []float64
	for i, f := range a.cfg.Functions {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, f)
		b = append(b, ':')
		if q := a.quantiles[i]; q >= 0 {
			if sorted == nil {
				sorted = append(a.scratch[:0], w.values...)
				slices.Sort(sorted)
				a.scratch = sorted
			}
			b = appendFloat(b, percentile(sorted, q))
			continue
		}
		b = appendFloat(b, w.result(f))
	}
	b = append(b, "}}"...)
	a.buf = b
	a.subject = append(append(append(append(a.subject[:0], SubjectAggregatePref...), g.device...), '.'), g.key...)
	a.e.stats.Out++
	a.e.publish(string(a.subject), b)
}

func (w *window) result(f string) float64 {
	n := float64(w.n)
	switch f {
	case "avg":
		return w.sum / n
	case "min":
		return w.min
	case "max":
		return w.max
	case "sum":
		return w.sum
	case "count":
		return n
	case "first":
		return w.first
	case "last":
		return w.last
	case "stddev":
		// The sample standard deviation (n − 1), as Telegraf's basicstats reports it; 0 for one point.
		if w.n < 2 {
			return 0
		}
		return math.Sqrt(w.m2 / (n - 1))
	}
	return math.NaN()
}

// percentile interpolates linearly between the closest ranks (numpy's default, Hyndman and Fan's type 7).
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(sorted)-1)
	frac := pos - float64(lo)
	return sorted[lo] + (sorted[hi]-sorted[lo])*frac
}
