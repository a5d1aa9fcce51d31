package mqtt

import (
	"time"

	"github.com/iotgw/iotgw/actors"
)

// maxTracked bounds the keys whose staleness a device tracks: the keys come from topics, which the device does
// not choose, and a publisher inventing keys must not grow the gateway's memory without end. Keys past it are
// published as usual, not tracked.
const maxTracked = 10000

type pointID struct{ device, key string }

// staleness tracks when each key a device has received was last good (actors.Freshness by index).
type staleness struct {
	after  time.Duration
	fresh  actors.Freshness
	index  map[pointID]int
	ids    []pointID
	capped uint64 // keys not tracked because of maxTracked
}

func newStaleness(after time.Duration) *staleness {
	return &staleness{after: after, index: map[pointID]int{}}
}

func (s *staleness) good(device, key string, at time.Time) {
	id := pointID{device, key}
	i, ok := s.index[id]
	if !ok {
		if len(s.ids) >= maxTracked {
			s.capped++
			return
		}
		i = s.fresh.Add(at)
		s.index[id] = i
		s.ids = append(s.ids, id)
	}
	s.fresh.Good(i, at)
}

// check returns the keys that became stale at now.
func (s *staleness) check(now time.Time) []pointID {
	var out []pointID
	for i, id := range s.ids {
		if _, became := s.fresh.Check(i, now, s.after); became {
			out = append(out, id)
		}
	}
	return out
}
