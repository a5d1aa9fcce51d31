package actors

import (
	"slices"
	"time"

	"github.com/iotgw/iotgw/isp"
)

// Staleness: a point whose source has not given a good value of it for stale_after is reported stale — the tag
// stale=true on the point and one "stale" event when it becomes so. Modbus devices (a register not read
// successfully) and sidecars (a key not sent in DATA) use this one mechanism.

// StaleTag is the tag a stale point carries.
var StaleTag = isp.Tag{Key: "stale", Value: "true"}

// StaleIntervals is how many poll intervals without a good value make a point stale when stale_after is not
// configured.
const StaleIntervals = 3

// StaleAfter is configured when it is set, else StaleIntervals × the interval the source polls at.
func StaleAfter(configured, interval time.Duration) time.Duration {
	if configured > 0 {
		return configured
	}
	return StaleIntervals * interval
}

// MarkStale returns tags with StaleTag added, in a new slice (the point's tags are often shared).
func MarkStale(tags []isp.Tag) []isp.Tag {
	out := make([]isp.Tag, 0, len(tags)+1)
	return append(append(out, tags...), StaleTag)
}

// Freshness tracks, per point of a source (by index), when it last had a good value and whether it has been
// reported stale since. It is not safe for concurrent use.
type Freshness struct {
	// base is the first Add's time; last holds each point's good time as an offset from it on the monotonic
	// clock: 8 bytes a point instead of a time.Time's 24 (1,000 devices of 30 registers: issue 13's memory aim).
	base  time.Time
	last  []time.Duration
	stale []bool
}

// Grow makes room for n more points without reallocating.
func (f *Freshness) Grow(n int) {
	f.last = slices.Grow(f.last, n)
	f.stale = slices.Grow(f.stale, n)
}

// Add tracks one more point, good as of at (staleness counts from then), and returns its index.
func (f *Freshness) Add(at time.Time) int {
	if len(f.last) == 0 {
		f.base = at
	}
	f.last = append(f.last, at.Sub(f.base))
	f.stale = append(f.stale, false)
	return len(f.last) - 1
}

// Good records a good value of point i at at; a stale point is fresh again.
func (f *Freshness) Good(i int, at time.Time) {
	f.last[i], f.stale[i] = at.Sub(f.base), false
}

// Check says whether point i, without a good value since Good, is stale at at (after passed), and whether it
// became stale with this call (report that once).
func (f *Freshness) Check(i int, at time.Time, after time.Duration) (stale, became bool) {
	if after <= 0 || at.Sub(f.base)-f.last[i] < after {
		return false, false
	}
	became = !f.stale[i]
	f.stale[i] = true
	return true, became
}
