package rule

import (
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/iotgw/iotgw/isp"
)

// The alert lifecycle, per de-duplication key:
//
//	(none) ──condition holds──▶ pending ──held for `for`──▶ firing ──clears──▶ resolved (gone)
//	                               └──stops holding──▶ cancelled (gone)
//
// with an event on iot.alerts.{level}.{device} at each change (and "repeat" every `repeat` while firing and not
// acknowledged, "acknowledged" when an operator acks it). A firing alert clears by clear_when, or by its deadband
// (value > T fires, value < T − deadband clears), or, without either, when its condition stops holding.
//
// Compared with ThingsBoard's alarms (create/clear conditions with durations, severity, acknowledge, one active
// alarm per originator and type) this follows the model and its ack, keeps it at the edge per de-dup key, and adds
// the hysteresis in the rule itself. Prometheus's pending → firing with `for` is the other model it follows: a
// pending alert whose condition stops holding is cancelled, never fired.

// Alert conditions.
const (
	condWhen = iota
	condNoData
	condBadQuality
	numConditions
)

var conditionNames = [numConditions]string{"when", "no_data", "bad_quality"}

// Alert states and events.
const (
	StatePending  = "pending"
	StateFiring   = "firing"
	StateResolved = "resolved"

	EventPending      = "pending"
	EventFiring       = "firing"
	EventRepeat       = "repeat"
	EventAcknowledged = "acknowledged"
	EventResolved     = "resolved"
	EventCancelled    = "cancelled"
)

// Alert is one active alert, as published, listed and stored.
type Alert struct {
	Key       string          `json:"dedup_key"` // the alert's identity
	Rule      string          `json:"rule"`
	Event     string          `json:"event"`
	State     string          `json:"state"`
	Level     string          `json:"level"`
	Condition string          `json:"condition"`
	Device    string          `json:"device_id"`
	PointKey  string          `json:"key"` // the point's key, as in the point
	Message   string          `json:"message"`
	Value     json.RawMessage `json:"value"`
	// Timestamp is the event's time; Since when it became pending (or firing without `for`); FiredAt when it fired.
	Timestamp    int64  `json:"timestamp"`
	Since        int64  `json:"since"`
	FiredAt      int64  `json:"fired_at,omitempty"`
	LastSent     int64  `json:"last_sent,omitempty"`
	Repeats      int    `json:"repeats,omitempty"`
	Acknowledged bool   `json:"acknowledged,omitempty"`
	AckedBy      string `json:"acked_by,omitempty"`
	AckedAt      int64  `json:"acked_at,omitempty"`
}

// AlertChange is told to the actor after every change of an alert's state, to persist it.
type AlertChange struct {
	Alert   *Alert
	Deleted bool
}

type alerts struct {
	e      *Engine
	active map[string]*Alert
	// ended is when each key's last alert ended, for throttle (bounded: forgotten once throttle has passed).
	ended map[string]time.Time
	// changed, when set, is called after each change (the actor persists the alert).
	changed func(AlertChange)
	buf     []byte
}

func newAlerts(e *Engine) *alerts {
	a := &alerts{e: e, active: map[string]*Alert{}, ended: map[string]time.Time{}}
	// A silent device that never sent anything is silent too: the series the rule names without a pattern are
	// known from the start, so no_data covers them from the first moment.
	if r := e.rule.Alert; r.NoData > 0 {
		for _, d := range e.rule.Match.Devices {
			for _, k := range e.rule.Match.Keys {
				if !strings.ContainsRune(d, '*') && !strings.ContainsRune(k, '*') {
					s := e.seriesOf(&isp.Point{DeviceID: d, Key: k})
					s.lastSeen = time.Time{} // set at the first tick
				}
			}
		}
	}
	return a
}

// OnAlertChange sets the function told about every change of an alert (for persistence).
func (e *Engine) OnAlertChange(fn func(AlertChange)) {
	if e.alerts != nil {
		e.alerts.changed = fn
	}
}

// Alerts returns the active (pending and firing) alerts, sorted by key.
func (e *Engine) Alerts() []Alert {
	if e.alerts == nil {
		return nil
	}
	out := make([]Alert, 0, len(e.alerts.active))
	for _, a := range e.alerts.active {
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Restore puts stored alerts back without an event: a firing alert stays firing and is not sent again. An alert
// the engine has already, or of a device another gateway owns (SetOwner), is left alone.
func (e *Engine) Restore(list []Alert) {
	if e.alerts == nil {
		return
	}
	for i := range list {
		a := list[i]
		if a.Rule != e.rule.Name || (a.State != StatePending && a.State != StateFiring) || e.alerts.active[a.Key] != nil ||
			(e.owns != nil && !e.owns(a.Device)) {
			continue
		}
		e.alerts.active[a.Key] = &a
		if s := e.seriesOf(&isp.Point{DeviceID: a.Device, Key: a.PointKey}); s != nil && a.Condition == conditionNames[condNoData] {
			s.lastSeen = time.Time{}
		}
	}
}

// DropForeign forgets, without an event and without telling the store, the alerts of devices another gateway now
// owns: that gateway reads them from the shared store and goes on with them.
func (e *Engine) DropForeign() {
	if e.alerts == nil || e.owns == nil {
		return
	}
	for k, a := range e.alerts.active {
		if !e.owns(a.Device) {
			delete(e.alerts.active, k)
		}
	}
}

// Ack acknowledges the active alert with this de-duplication key: it stays firing (or pending) but is not
// repeated. It reports whether the rule has that alert.
func (e *Engine) Ack(key, by string, now time.Time) bool {
	if e.alerts == nil {
		return false
	}
	a := e.alerts.active[key]
	if a == nil {
		return false
	}
	if !a.Acknowledged {
		a.Acknowledged, a.AckedBy, a.AckedAt = true, by, now.UnixNano()
		e.alerts.send(a, EventAcknowledged, now)
	}
	return true
}

func (a *alerts) point(p *isp.Point, s *series, now time.Time) {
	r := a.e.rule
	cfg := r.Alert
	if r.When != nil {
		holds, ok := a.e.evalBool(r.When, p)
		if ok {
			a.update(s, condWhen, p, holds, now, func() bool { return a.clears(p, holds) })
		}
	}
	if cfg.BadQuality {
		bad := p.Quality == isp.QualityBad
		a.update(s, condBadQuality, p, bad, now, func() bool { return !bad })
	}
	if cfg.NoData > 0 {
		if cur := a.active[a.dedup(s, condNoData, p)]; cur != nil {
			a.setPoint(cur, p)
			a.end(cur, now)
		}
	}
}

// update moves one condition's alert on after a point: holds is the condition, clears says whether a firing
// alert resolves (hysteresis).
func (a *alerts) update(s *series, cond int, p *isp.Point, holds bool, now time.Time, clears func() bool) {
	key := a.dedup(s, cond, p)
	cur := a.active[key]
	switch {
	case cur == nil && holds:
		cur = &Alert{Key: key, Rule: a.e.rule.Name, Level: a.e.rule.Alert.Level, Condition: conditionNames[cond],
			Device: s.device, PointKey: s.key, Since: now.UnixNano()}
		a.setPoint(cur, p)
		a.active[key] = cur
		if a.e.rule.Alert.For > 0 || a.throttled(key, now) {
			cur.State = StatePending
			a.send(cur, EventPending, now)
			return
		}
		a.fire(cur, now)
	case cur == nil:
	case cur.State == StatePending && !holds:
		a.setPoint(cur, p)
		a.end(cur, now)
	case cur.State == StatePending:
		a.setPoint(cur, p)
		if a.due(cur, now) {
			a.fire(cur, now)
		}
	case cur.State == StateFiring:
		a.setPoint(cur, p)
		if clears() {
			a.end(cur, now)
		}
	}
}

// clears says whether a firing `when` alert resolves on this point.
func (a *alerts) clears(p *isp.Point, holds bool) bool {
	cfg := a.e.rule.Alert
	if cfg.ClearWhen == nil && (!a.e.env.IsNumber || p.Quality == isp.QualityBad) {
		return false // a failed reading (null, bad quality) says nothing about the value: it does not clear
	}
	switch {
	case cfg.ClearWhen != nil:
		c, ok := a.e.evalBool(cfg.ClearWhen, p)
		return ok && c
	case cfg.Deadband > 0:
		v := a.e.env.Value
		if cfg.Above {
			return v < cfg.Threshold-cfg.Deadband
		}
		return v > cfg.Threshold+cfg.Deadband
	}
	return !holds
}

func (a *alerts) fire(cur *Alert, now time.Time) {
	cur.State = StateFiring
	cur.FiredAt = now.UnixNano()
	a.send(cur, EventFiring, now)
}

// throttled says whether key ended less than throttle ago.
func (a *alerts) throttled(key string, now time.Time) bool {
	t := a.e.rule.Alert.Throttle
	if t <= 0 {
		return false
	}
	at, ok := a.ended[key]
	if ok && now.Sub(at) >= t {
		delete(a.ended, key)
		return false
	}
	return ok
}

// due says whether a pending alert fires now: its condition has held for `for`, and it is not throttled.
func (a *alerts) due(cur *Alert, now time.Time) bool {
	return now.Sub(time.Unix(0, cur.Since)) >= a.e.rule.Alert.For && !a.throttled(cur.Key, now)
}

// end resolves a firing alert, or cancels a pending one, and forgets it.
func (a *alerts) end(cur *Alert, now time.Time) {
	if a.e.rule.Alert.Throttle > 0 && cur.State == StateFiring {
		if len(a.ended) >= maxSeries {
			clear(a.ended)
		}
		a.ended[cur.Key] = now
	}
	ev := EventResolved
	if cur.State == StatePending {
		ev = EventCancelled
	}
	cur.State = StateResolved
	delete(a.active, cur.Key)
	a.send(cur, ev, now)
}

// tick fires pending alerts whose `for` has passed, repeats firing ones and raises no-data alerts.
func (a *alerts) tick(now time.Time) {
	cfg := a.e.rule.Alert
	for _, cur := range a.sorted() {
		switch {
		case cur.State == StatePending && a.due(cur, now):
			a.fire(cur, now)
		case cur.State == StateFiring && cfg.Repeat > 0 && !cur.Acknowledged && now.Sub(time.Unix(0, cur.LastSent)) >= cfg.Repeat:
			cur.Repeats++
			a.send(cur, EventRepeat, now)
		}
	}
	if cfg.NoData <= 0 {
		return
	}
	for dev, keys := range a.e.series {
		if a.e.owns != nil && !a.e.owns(dev) {
			continue // another gateway sharing the rule watches this device
		}
		for _, s := range keys {
			if s.lastSeen.IsZero() {
				s.lastSeen = now // a series known from the config, or restored: silent from now on
				continue
			}
			if now.Sub(s.lastSeen) < cfg.NoData {
				continue
			}
			p := &isp.Point{DeviceID: s.device, Key: s.key}
			key := a.dedup(s, condNoData, p)
			if a.active[key] != nil {
				continue
			}
			cur := &Alert{Key: key, Rule: a.e.rule.Name, Level: cfg.Level, Condition: conditionNames[condNoData],
				Device: s.device, PointKey: s.key, Since: s.lastSeen.UnixNano(), Value: json.RawMessage("null")}
			cur.Message = a.render(cfg.Message, cur, p)
			a.active[key] = cur
			a.fire(cur, now)
		}
	}
}

func (a *alerts) sorted() []*Alert {
	out := make([]*Alert, 0, len(a.active))
	for _, cur := range a.active {
		out = append(out, cur)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func (a *alerts) setPoint(cur *Alert, p *isp.Point) {
	cur.Value = json.RawMessage(appendValue(nil, p.Value))
	cur.Message = a.render(a.e.rule.Alert.Message, cur, p)
}

// send publishes an event of the alert and tells the actor it changed.
func (a *alerts) send(cur *Alert, event string, now time.Time) {
	cur.Event = event
	cur.Timestamp = now.UnixNano()
	cur.LastSent = cur.Timestamp
	data, err := json.Marshal(cur)
	if err != nil {
		return
	}
	a.e.stats.Out++
	a.buf = append(append(append(append(a.buf[:0], SubjectAlertsPrefix...), cur.Level...), '.'), cur.Device...)
	a.e.publish(string(a.buf), data)
	if a.changed != nil {
		c := *cur
		a.changed(AlertChange{Alert: &c, Deleted: cur.State == StateResolved})
	}
}

// dedup is the de-duplication key of a series and condition, made once per series.
func (a *alerts) dedup(s *series, cond int, p *isp.Point) string {
	if s.dedup[cond] == "" {
		tmp := &Alert{Rule: a.e.rule.Name, Level: a.e.rule.Alert.Level, Condition: conditionNames[cond], Device: s.device, PointKey: s.key}
		s.dedup[cond] = a.render(a.e.rule.Alert.DedupKey, tmp, p)
	}
	return s.dedup[cond]
}

// render fills a template's placeholders (checked at load: config.checkTemplate).
func (a *alerts) render(tmpl string, cur *Alert, p *isp.Point) string {
	var b strings.Builder
	for rest := tmpl; ; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			b.WriteString(rest)
			return b.String()
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			b.WriteString(rest)
			return b.String()
		}
		b.WriteString(rest[:i])
		switch name := rest[i+1 : i+j]; name {
		case "rule":
			b.WriteString(cur.Rule)
		case "device":
			b.WriteString(cur.Device)
		case "key":
			b.WriteString(cur.PointKey)
		case "value":
			b.WriteString(strings.Trim(p.Value.String(), `"`))
		case "level":
			b.WriteString(cur.Level)
		case "condition":
			b.WriteString(cur.Condition)
		default:
			if tag, ok := strings.CutPrefix(name, "tag:"); ok {
				v, _ := p.Tag(tag)
				b.WriteString(v)
			}
		}
		rest = rest[i+j+1:]
	}
}

// appendValue writes a point's value as JSON.
func appendValue(b []byte, v isp.Value) []byte {
	switch v.Kind() {
	case isp.KindFloat:
		f, _ := v.Float()
		return appendFloat(b, f)
	case isp.KindNull:
		return append(b, "null"...)
	case isp.KindString:
		str, _ := v.Str()
		q, _ := json.Marshal(str)
		return append(b, q...)
	}
	return append(b, v.String()...) // ints and bools
}
