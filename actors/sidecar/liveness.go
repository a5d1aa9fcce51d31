package sidecar

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
)

// maxTracked bounds the keys whose liveness one sidecar's connection tracks: a sidecar inventing keys must not
// grow the gateway's memory without end. Keys past it are published as usual but never reported stale.
const maxTracked = 10000

// liveness is the data liveness check of a sidecar (stale_after): the last point of every key DATA brought, and
// when each last had a good value (actors.Freshness, the mechanism Modbus devices use). The client's reader
// goroutine records DATA; the actor's stale tick reads. Heartbeats say the sidecar is alive; only this says it
// still sends data.
type liveness struct {
	mu      sync.Mutex
	index   map[pointKey]int
	last    []isp.Point // the last point of each key, its tags copied (the client reuses its slices)
	fresh   actors.Freshness
	full    bool // maxTracked reached (logged once)
	newFull bool
}

type pointKey struct{ device, key string }

// seen records a DATA frame's points.
func (l *liveness) seen(points []isp.Point, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.index == nil {
		l.index = make(map[pointKey]int, len(points))
	}
	for i := range points {
		p := &points[i]
		j, ok := l.index[pointKey{p.DeviceID, p.Key}]
		if !ok {
			if len(l.last) >= maxTracked {
				l.newFull = !l.full
				l.full = true
				continue
			}
			j = l.fresh.Add(now)
			l.last = append(l.last, isp.Point{})
			l.index[pointKey{p.DeviceID, p.Key}] = j
		}
		slot := &l.last[j]
		tags := slot.Tags[:0]
		*slot = *p
		slot.Tags = append(tags, p.Tags...)
		if p.Quality == isp.QualityGood {
			l.fresh.Good(j, now)
		}
	}
}

// becameStale returns the keys without a good value for after that were not reported yet, as the points to
// republish: the last point of each, quality 0, stamped now, with stale=true. full says the key limit was hit
// since the last call.
func (l *liveness) becameStale(now time.Time, after time.Duration) (out []isp.Point, full bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for j := range l.last {
		if _, became := l.fresh.Check(j, now, after); became {
			p := l.last[j]
			p.Quality, p.Timestamp, p.Tags = isp.QualityBad, now.UnixNano(), actors.MarkStale(p.Tags)
			out = append(out, p)
		}
	}
	full, l.newFull = l.newFull, false
	return out, full
}

// staleCheckEvery is how often the actor looks for stale keys: a key is reported at most a quarter of stale_after
// late.
func staleCheckEvery(after time.Duration) time.Duration {
	return min(max(after/4, 10*time.Millisecond), time.Second)
}

// StaleEvent is published on iot.errors.isp.{sidecar} when keys of a sidecar go stale; its fields are those of the
// Modbus device's event of kind "stale".
type StaleEvent struct {
	Sidecar   string   `json:"sidecar"`
	Device    string   `json:"device"`
	Kind      string   `json:"kind"` // "stale"
	Error     string   `json:"error"`
	Keys      []string `json:"keys"`
	Timestamp int64    `json:"timestamp"`
}

// checkStale republishes the points that became stale (one batch on the sidecar's raw subject, as a DATA frame
// would be) and sends one event per device.
func (c *conn) checkStale() {
	now := time.Now()
	points, full := c.live.becameStale(now, c.cfg.StaleAfter)
	if full {
		c.env.Log.Warn().Str("sidecar", c.cfg.Name).Int("keys", maxTracked).Msg("sidecar sends more keys than the liveness check tracks; the others are never reported stale")
	}
	if len(points) == 0 {
		return
	}
	raw := &nats.Msg{Subject: "iot.raw.isp." + c.cfg.Name, Header: nats.Header{}}
	raw.Header.Set(actors.HeaderSource, c.cfg.Name)
	raw.Header.Set(actors.HeaderSchema, actors.SchemaVersion)
	raw.Data = isp.AppendBatch(nil, points)
	if err := c.env.Bus.PublishMsg(raw); err != nil {
		c.env.Log.Warn().Err(err).Str("subject", raw.Subject).Msg("cannot publish stale sidecar points")
	}
	byDevice := map[string][]string{}
	for _, p := range points {
		dev := p.DeviceID
		if dev == "" {
			dev = c.cfg.Name // as the processor names it
		}
		byDevice[dev] = append(byDevice[dev], p.Key)
	}
	devices := make([]string, 0, len(byDevice))
	for dev := range byDevice {
		devices = append(devices, dev)
	}
	sort.Strings(devices)
	why := fmt.Sprintf("no good value in DATA for %s", c.cfg.StaleAfter)
	for _, dev := range devices {
		data, _ := json.Marshal(StaleEvent{Sidecar: c.cfg.Name, Device: dev, Kind: "stale", Error: why, Keys: byDevice[dev], Timestamp: now.UnixNano()})
		if err := c.env.Bus.Publish("iot.errors.isp."+c.cfg.Name, data); err != nil {
			c.env.Log.Warn().Err(err).Msg("cannot publish sidecar stale event")
		}
	}
	c.env.Log.Warn().Str("sidecar", c.cfg.Name).Int("keys", len(points)).Stringer("stale_after", c.cfg.StaleAfter).Msg("sidecar keys stale: " + why)
}
