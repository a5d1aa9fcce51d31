package device

import (
	"time"

	"github.com/iotgw/iotgw/actors"
)

// MaxTrackedKeys bounds the keys whose staleness a driver tracks with Keys: keys that come from outside (MQTT
// topics, pushed points, HTTP responses) are not chosen by the device's config, and a peer inventing keys must not
// grow the gateway's memory without end. Keys past it are published as usual, not tracked.
const MaxTrackedKeys = 10000

// PointID names one point of a driver: the device (a driver may publish for several, MQTT's +device) and key.
type PointID struct{ Device, Key string }

// Keys tracks when each point a driver has seen was last good (actors.Freshness by index), for drivers whose
// points are not fixed by the config: mqtt, and http's push mode. Not safe for concurrent use.
type Keys struct {
	fresh  actors.Freshness
	index  map[PointID]int
	ids    []PointID
	capped uint64
}

// Good records a good value of the point at at, tracking it from now on if it is new.
func (k *Keys) Good(id PointID, at time.Time) {
	i, ok := k.index[id]
	if !ok {
		if len(k.ids) >= MaxTrackedKeys {
			k.capped++
			return
		}
		if k.index == nil {
			k.index = map[PointID]int{}
		}
		i = k.fresh.Add(at)
		k.index[id] = i
		k.ids = append(k.ids, id)
	}
	k.fresh.Good(i, at)
}

// Stale returns the points that became stale at now: no good value for after.
func (k *Keys) Stale(now time.Time, after time.Duration) []PointID {
	var out []PointID
	for i, id := range k.ids {
		if _, became := k.fresh.Check(i, now, after); became {
			out = append(out, id)
		}
	}
	return out
}

// IsStale says whether a tracked point is stale now (it has been reported so and has had no good value since).
func (k *Keys) IsStale(id PointID, now time.Time, after time.Duration) bool {
	i, ok := k.index[id]
	if !ok {
		return false
	}
	stale, _ := k.fresh.Check(i, now, after)
	return stale
}

// Tracked returns the tracked points in the order they were first seen.
func (k *Keys) Tracked() []PointID { return k.ids }

// Untracked is the number of points not tracked because MaxTrackedKeys was reached.
func (k *Keys) Untracked() uint64 { return k.capped }
