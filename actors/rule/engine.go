// Package rule is the rule engine: each rule block (alert, transform, filter, aggregate, forward) runs as one actor
// under the rules supervisor, reading batches of processed points through its subject mailbox in a queue group and
// publishing what it makes on iot.rules.{rule}.{device}, iot.alerts.{level}.{device} and
// iot.aggregated.{device}.{key}. An expression error on a point is an event on iot.errors.rules, never a crash.
//
// The Engine holds a rule's logic and state and knows nothing of NATS or actors: it is given points and the time,
// and hands what it emits to an Output, so its table tests feed it exact inputs and read exact outputs. The actor
// (actor.go) is the thin part that decodes bus messages, ticks the clock and persists alert state.
//
// It must never evaluate anything but the rule's compiled expressions (config.CompileExpr): a rule added at run
// time gets no access to the environment, the file system or subjects beyond the ones its config allows.
package rule

import (
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/expr-lang/expr/vm"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
)

// Subjects of the rule engine.
const (
	SubjectErrors = "iot.errors.rules"
	// SubjectErrorStore reports a rule result the stream did not store (refused, or not acknowledged within the
	// duplicate window): an actors.StoreEvent.
	SubjectErrorStore    = "iot.errors.rules.store"
	SubjectRulesPrefix   = "iot.rules."
	SubjectAlertsPrefix  = "iot.alerts."
	SubjectAggregatePref = "iot.aggregated."
)

// Output is where an engine's messages go; the actor's publishes on the bus. data is only valid during the call.
type Output interface {
	Publish(subject string, data []byte) error
}

// Stats are a rule's figures: points in (matched or not), points out, points dropped (by match, when, a deadband,
// a rate limit, a late arrival), expression errors and the time spent evaluating.
type Stats struct {
	In      uint64 `json:"in"`
	Matched uint64 `json:"matched"`
	Out     uint64 `json:"out"`
	Dropped uint64 `json:"dropped"`
	Late    uint64 `json:"late"`
	Errors  uint64 `json:"errors"`
	EvalNs  uint64 `json:"eval_ns"`
	Alerts  int    `json:"active_alerts,omitempty"`
	Series  int    `json:"series"`
	// A rule partitioned by device: the batches of devices another gateway owns (skipped undecoded), and the
	// gateways sharing the rule, this one included.
	NotOwned uint64 `json:"not_owned,omitempty"`
	Members  int    `json:"members,omitempty"`
	// Skipped are the batches of a device the rule's match.devices excludes, known by the subject and not decoded.
	Skipped uint64 `json:"skipped_batches,omitempty"`
	// PublishErrors are the messages the bus refused (a subject the server's permissions deny, a closed
	// connection).
	PublishErrors uint64 `json:"publish_errors,omitempty"`
	// ErrorsSuppressed are error events not published: past maxErrorEvents a second.
	ErrorsSuppressed uint64 `json:"errors_suppressed,omitempty"`
}

// maxSeries bounds the series (device × key, or group) one rule keeps state for: a misbehaving source inventing
// keys must not grow a rule without end. Points of a series beyond it are dropped and counted as errors.
const maxSeries = 100000

// Engine is one rule's logic and state. It is used from one goroutine (the actor's).
type Engine struct {
	rule *config.Rule
	out  Output
	env  config.RuleEnv
	cur  *series // the series of the point being evaluated, for changed, delta and rate

	series  map[string]map[string]*series // device → key → state (two levels: no string built per lookup)
	nseries int
	stats   Stats

	batch   []isp.Point
	raw     []byte // the batch being processed as it came (ProcessBatch), republished as it is when nothing changed
	rawLen  int    // its points
	buf     []byte
	subject []byte
	undec   *undecoded // a rule that can run on undecoded batches (raw.go); nil otherwise
	hint    *series    // the series seriesOf tries first (series are never removed, so it stays valid)

	lastDevice, lastSubject string // the subject of the last batch published, and its device

	alerts *alerts
	agg    *aggregator

	errWindow time.Time // the second error events are counted in
	errSent   int

	// owns, when set, says whether this gateway owns a device (a rule partitioned by device): the clock's
	// no-data checks and restored alerts are for owned devices only.
	owns func(device string) bool

	machine                        vm.VM // reused: vm.Run would make a VM (and its stack) per evaluation (expressions without a fast path)
	needTags, needValues, needText bool  // what the rule's expressions read
}

// series is the state of one device and key.
type series struct {
	device, key string
	prev        float64 // the previous value, for changed, delta, rate
	prevTs      int64
	hasPrev     bool
	// filter
	passed     float64
	passedAt   time.Time
	hasPassed  bool
	lastSeen   time.Time
	transforms []isp.Tag // a transform's tags with the unit set, made once per series
	tagsFrom   []isp.Tag
	dedup      [numConditions]string // the alert's de-duplication keys, made once
}

// NewEngine returns the engine of a rule, which must have come out of config's decoding without errors.
func NewEngine(r *config.Rule, out Output) *Engine {
	e := &Engine{rule: r, out: out, series: map[string]map[string]*series{}}
	e.env.Changed = func() bool { return e.cur == nil || !e.cur.hasPrev || e.cur.prev != e.env.Value }
	e.env.Delta = func() float64 {
		if e.cur == nil || !e.cur.hasPrev {
			return 0
		}
		return e.env.Value - e.cur.prev
	}
	e.env.Rate = func() float64 {
		if e.cur == nil || !e.cur.hasPrev || e.env.Timestamp <= e.cur.prevTs {
			return 0
		}
		return (e.env.Value - e.cur.prev) / (float64(e.env.Timestamp-e.cur.prevTs) / 1e9)
	}
	for _, x := range e.exprs() {
		e.needTags = e.needTags || x.UsesTags
		e.needValues = e.needValues || x.UsesValues
		e.needText = e.needText || x.UsesText
	}
	if rawCapable(r, e.needTags, e.needValues) {
		e.undec = &undecoded{names: map[string]string{}}
	}
	switch r.Type {
	case config.RuleAlert:
		e.alerts = newAlerts(e)
	case config.RuleAggregate:
		e.agg = newAggregator(e)
	}
	return e
}

// SetOwner sets the ownership test of a rule partitioned by device (nil: every device is this gateway's).
func (e *Engine) SetOwner(owns func(device string) bool) { e.owns = owns }

// Rule is the engine's rule.
func (e *Engine) Rule() *config.Rule { return e.rule }

// Stats returns the rule's figures.
func (e *Engine) Stats() Stats {
	s := e.stats
	s.Series = e.nseries
	if e.alerts != nil {
		s.Alerts = len(e.alerts.active)
	}
	if e.agg != nil {
		s.Series = len(e.agg.groups)
	}
	return s
}

// ProcessBatch is Process for a batch that came as raw (its encoding, which points decodes): a filter that keeps
// every point of a one-device batch, or a forward without rename, publishes raw as it came instead of encoding
// the same points again (the encoding was a fifth of the rule path's CPU). The consumer decodes the same points
// from it; what it may carry beyond them (unknown fields, whitespace, escapes) passes through. raw is not kept.
func (e *Engine) ProcessBatch(points []isp.Point, raw []byte, now time.Time) {
	e.raw, e.rawLen = raw, len(points)
	e.Process(points, now)
	e.raw = nil
}

// Process runs the rule over a batch of points (normally one device's, from one poll).
func (e *Engine) Process(points []isp.Point, now time.Time) {
	e.stats.In += uint64(len(points))
	e.batch = e.batch[:0]
	start := time.Now()
	for i := range points {
		e.point(&points[i], points, now)
	}
	if e.rule.Transform != nil && len(e.rule.Transform.Derive) > 0 {
		e.derive(points)
	}
	e.flush()
	e.stats.EvalNs += uint64(time.Since(start))
}

// point runs the rule on one point of a batch (points, which derived values read).
func (e *Engine) point(p *isp.Point, points []isp.Point, now time.Time) {
	if !e.rule.Match.Matches(p.DeviceID, p.Key, p.Tag) {
		e.stats.Dropped++
		return
	}
	s := e.seriesOf(p)
	if s == nil {
		e.stats.Errors++
		if e.nseries < maxSeries {
			e.errorEvent("", p, "device_id and key must be subject tokens (letters, digits, - and _)")
		}
		return
	}
	e.fill(p, s, points)
	s.lastSeen = now
	switch e.rule.Type {
	case config.RuleAlert:
		e.stats.Matched++
		e.alerts.point(p, s, now)
	case config.RuleAggregate:
		if e.when(p) {
			e.stats.Matched++
			e.agg.point(p, now)
		} else {
			e.stats.Dropped++
		}
	default:
		if e.when(p) {
			e.stats.Matched++
			e.handle(p, s, now)
		} else {
			e.stats.Dropped++
		}
	}
	s.prev, s.prevTs, s.hasPrev = e.env.Value, p.Timestamp, e.env.IsNumber
}

// Tick lets time pass: alerts become firing after `for`, series go silent, windows close.
func (e *Engine) Tick(now time.Time) {
	if e.alerts != nil {
		e.alerts.tick(now)
	}
	if e.agg != nil {
		e.agg.tick(now)
	}
}

// seriesOf returns the point's series, making it on its first point. Its device id and key are checked then,
// once per series: they go into the subjects the rule publishes on (a forward's {device}.{key}), so a batch
// published by hand with a device "iot.control" must not become a control request. The processor checks them
// too, but a rule also reads what others publish on its input subject.
func (e *Engine) seriesOf(p *isp.Point) *series {
	if h := e.hint; h != nil && h.device == p.DeviceID && h.key == p.Key {
		return h // the undecoded path's guess: the series of the same point of the previous batch (raw.go)
	}
	keys := e.series[p.DeviceID]
	if keys == nil {
		if e.nseries >= maxSeries || config.ValidToken(p.DeviceID) != nil {
			return nil
		}
		keys = map[string]*series{}
		e.series[p.DeviceID] = keys
	}
	s := keys[p.Key]
	if s == nil {
		if e.nseries >= maxSeries || config.ValidToken(p.Key) != nil {
			return nil
		}
		s = &series{device: p.DeviceID, key: p.Key}
		keys[p.Key] = s
		e.nseries++
	}
	return s
}

// fill sets the expression environment from a point; tags and values are built only when an expression reads them.
func (e *Engine) fill(p *isp.Point, s *series, batch []isp.Point) {
	e.cur = s
	env := &e.env
	env.Value, env.IsNumber = p.Value.Float()
	if !env.IsNumber {
		env.Value = math.NaN()
	}
	if str, ok := p.Value.Str(); ok {
		env.Text = str
	} else if p.Value.Kind() == isp.KindNull || !e.needText {
		env.Text = ""
	} else {
		env.Text = p.Value.String()
	}
	env.Device, env.Key, env.Quality, env.Timestamp, env.Type = p.DeviceID, p.Key, p.Quality, p.Timestamp, p.Type
	if e.needTags {
		env.Tags = make(map[string]string, len(p.Tags))
		for _, t := range p.Tags {
			env.Tags[t.Key] = t.Value
		}
	}
	if e.needValues {
		env.Values = valuesOf(batch, p.DeviceID, env.Values)
	}
}

func valuesOf(batch []isp.Point, device string, m map[string]float64) map[string]float64 {
	if m == nil {
		m = make(map[string]float64, len(batch))
	}
	clear(m)
	for i := range batch {
		if batch[i].DeviceID != device {
			continue
		}
		if f, ok := batch[i].Value.Float(); ok {
			m[batch[i].Key] = f
		}
	}
	return m
}

// exprs are the rule's expressions evaluated per point (derived points fill their own values).
func (e *Engine) exprs() []*config.Expr {
	r := e.rule
	var out []*config.Expr
	for _, x := range []*config.Expr{r.When, alertClear(r), transformValue(r)} {
		if x != nil {
			out = append(out, x)
		}
	}
	return out
}

func alertClear(r *config.Rule) *config.Expr {
	if r.Alert == nil {
		return nil
	}
	return r.Alert.ClearWhen
}

func transformValue(r *config.Rule) *config.Expr {
	if r.Transform == nil {
		return nil
	}
	return r.Transform.Value
}

// when evaluates the rule's when on the filled environment; no when is true. An error is reported and is false.
func (e *Engine) when(p *isp.Point) bool {
	if e.rule.When == nil {
		return true
	}
	ok, _ := e.evalBool(e.rule.When, p)
	return ok
}

func (e *Engine) evalBool(x *config.Expr, p *isp.Point) (result, ok bool) {
	b, err := x.EvalBool(&e.machine, &e.env)
	if err != nil {
		e.exprError(x, p, err)
		return false, false
	}
	return b, true
}

func (e *Engine) evalNumber(x *config.Expr, p *isp.Point) (float64, bool) {
	f, err := x.EvalNumber(&e.machine, &e.env)
	if err != nil {
		e.exprError(x, p, err)
		return 0, false
	}
	return f, true
}

// AllowErrorEvent says whether one more event may go on iot.errors.rules this second (maxErrorEvents), counting
// the ones that may not.
func (e *Engine) AllowErrorEvent() bool {
	if now := time.Now(); now.Sub(e.errWindow) >= time.Second {
		e.errWindow, e.errSent = now, 0
	}
	if e.errSent >= maxErrorEvents {
		e.stats.ErrorsSuppressed++
		return false
	}
	e.errSent++
	return true
}

// ErrorEvent is published on iot.errors.rules when a rule's expression fails on a point.
type ErrorEvent struct {
	Rule       string          `json:"rule"`
	Expression string          `json:"expression"`
	Error      string          `json:"error"`
	Point      json.RawMessage `json:"point"`
	Timestamp  int64           `json:"timestamp"`
}

func (e *Engine) exprError(x *config.Expr, p *isp.Point, err error) {
	e.stats.Errors++
	e.errorEvent(x.Source, p, err.Error())
}

// maxErrorEvents bounds the events on iot.errors.rules one rule publishes per second: a device sending garbage
// must not flood the bus. Past it the errors are counted (Stats.Errors) and the suppressed events too.
const maxErrorEvents = 100

func (e *Engine) errorEvent(source string, p *isp.Point, msg string) {
	if !e.AllowErrorEvent() {
		return
	}
	var pt json.RawMessage
	switch {
	case e.undec != nil && e.undec.elem != nil:
		pt = e.undec.elem // the point's encoding as it came (raw.go): the undecoded path has not read its tags
	case p != nil:
		pt = isp.AppendPoint(nil, p)
	}
	data, _ := json.Marshal(ErrorEvent{Rule: e.rule.Name, Expression: source, Error: msg, Point: pt, Timestamp: time.Now().UnixNano()})
	_ = e.out.Publish(SubjectErrors, data)
}

// handle runs a filter, transform or forward rule on a matched point that passed when.
func (e *Engine) handle(p *isp.Point, s *series, now time.Time) {
	switch e.rule.Type {
	case config.RuleFilter:
		if e.pass(p, s, now) {
			e.batch = append(e.batch, *p)
		} else {
			e.stats.Dropped++
		}
	case config.RuleTransform:
		if q, ok := e.transform(p, s); ok {
			e.batch = append(e.batch, q)
		}
	case config.RuleForward:
		q := *p
		if e.rule.Forward.Rename != "" {
			q.Key = e.rule.Forward.Rename
		}
		e.batch = append(e.batch, q)
	}
}

// pass applies a filter's deadband and rate limit (Node-RED's deadband node: "block unless value changes by more
// than", compared with the last value that passed, not the last one seen, so a slow drift still gets through).
func (e *Engine) pass(p *isp.Point, s *series, now time.Time) bool {
	f := e.rule.Filter
	v := e.env.Value
	if s.hasPassed {
		if f.RateLimit > 0 && now.Sub(s.passedAt) < f.RateLimit {
			return false
		}
		if e.env.IsNumber && (f.Deadband > 0 || f.DeadbandPercent > 0) {
			d := math.Abs(v - s.passed)
			limit := f.Deadband
			if f.DeadbandPercent > 0 {
				limit = math.Abs(s.passed) * f.DeadbandPercent / 100
			}
			if d <= limit {
				return false
			}
		}
	}
	s.passed, s.passedAt, s.hasPassed = v, now, true
	return true
}

func (e *Engine) transform(p *isp.Point, s *series) (isp.Point, bool) {
	t := e.rule.Transform
	q := *p
	v, numeric := e.env.Value, e.env.IsNumber
	if t.Value != nil {
		f, ok := e.evalNumber(t.Value, p)
		if !ok {
			return q, false
		}
		v, numeric = f, true
		q.Type = "float64"
	}
	if t.Scale != nil || t.Offset != 0 {
		if !numeric {
			e.stats.Errors++
			e.errorEvent("scale/offset", p, "the value is not a number")
			return q, false
		}
		if t.Scale != nil {
			v *= *t.Scale
		}
		v += t.Offset
		q.Type = "float64"
	}
	if t.Value != nil || t.Scale != nil || t.Offset != 0 {
		q.Value = isp.Float(v)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			q.Quality = isp.QualityBad // as the processor marks a NaN: a consumer must not take it for a reading
		}
	}
	if t.ValueType != "" {
		q.Value, q.Type = convert(q.Value, t.ValueType)
	}
	if t.Rename != "" {
		q.Key = t.Rename
	}
	if t.Unit != "" {
		q.Tags = s.unitTags(p.Tags, t.Unit)
	}
	return q, true
}

// unitTags are the point's tags with unit set, made once per series and again only when the tags change.
func (s *series) unitTags(tags []isp.Tag, unit string) []isp.Tag {
	if s.transforms != nil && sameTags(s.tagsFrom, tags) {
		return s.transforms
	}
	s.tagsFrom = append(s.tagsFrom[:0], tags...)
	out := make([]isp.Tag, 0, len(tags)+1)
	set := false
	for _, t := range tags {
		if t.Key == "unit" {
			t.Value, set = unit, true
		}
		out = append(out, t)
	}
	if !set {
		out = append(out, isp.Tag{Key: "unit", Value: unit})
	}
	s.transforms = out
	return out
}

func sameTags(a, b []isp.Tag) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// convert gives a value the type a transform asks for.
func convert(v isp.Value, typ string) (isp.Value, string) {
	f, num := v.Float()
	switch typ {
	case "float64":
		if num {
			return isp.Float(f), typ
		}
	case "int64":
		if num && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return isp.Int(int64(math.Round(f))), typ
		}
	case "bool":
		if num {
			return isp.Bool(f != 0), typ
		}
	case "string":
		if s, ok := v.Str(); ok {
			return isp.String(s), typ
		}
		return isp.String(v.String()), typ
	}
	return isp.Null(), typ
}

// derive makes the derived points of each device in the batch whose needed keys are all there.
func (e *Engine) derive(points []isp.Point) {
	t := e.rule.Transform
	for start := 0; start < len(points); {
		dev := points[start].DeviceID
		end := start + 1
		for end < len(points) && points[end].DeviceID == dev {
			end++
		}
		group := points[start:end]
		start = end
		if !e.rule.Match.MatchesDevice(dev) || config.ValidToken(dev) != nil {
			continue // a device id that is not a subject token makes no derived point (see seriesOf)
		}
		e.env.Values = valuesOf(group, dev, e.env.Values)
		for i := range t.Derive {
			d := &t.Derive[i]
			var ts int64
			quality := isp.QualityGood
			complete := true
			for _, k := range d.Needs {
				p := find(group, k)
				if p == nil {
					complete = false
					break
				}
				ts = max(ts, p.Timestamp)
				quality = min(quality, p.Quality)
			}
			if !complete {
				continue
			}
			base := find(group, d.Needs[0])
			q := isp.Point{DeviceID: dev, Key: d.Key, Type: "float64", Quality: quality, Timestamp: ts, Source: base.Source}
			e.env.Device, e.env.Key, e.env.Timestamp, e.env.Quality = dev, d.Key, ts, quality
			e.cur = nil
			f, ok := e.evalNumber(d.Value, &q)
			if !ok {
				continue
			}
			q.Value = isp.Float(f)
			if d.Unit != "" {
				q.Tags = []isp.Tag{{Key: "unit", Value: d.Unit}}
			}
			e.batch = append(e.batch, q)
		}
	}
}

func find(points []isp.Point, key string) *isp.Point {
	for i := range points {
		if points[i].Key == key {
			return &points[i]
		}
	}
	return nil
}

// flush publishes what a filter, transform or forward rule let through: one batch per device on
// iot.rules.{rule}.{device} (the forward rule's subject when it has one; with {key} in it, one point per message).
func (e *Engine) flush() {
	if len(e.batch) == 0 {
		return
	}
	e.stats.Out += uint64(len(e.batch))
	perPoint := e.rule.Forward != nil && containsKeyToken(e.rule.Forward.Subject)
	if e.raw != nil && !perPoint && len(e.batch) == e.rawLen && e.unchanged() && oneDevice(e.batch) {
		e.publish(e.outSubject(e.batch[0].DeviceID, ""), e.raw)
		e.batch = e.batch[:0]
		return
	}
	for start := 0; start < len(e.batch); {
		dev := e.batch[start].DeviceID
		end := start + 1
		for end < len(e.batch) && e.batch[end].DeviceID == dev {
			end++
		}
		if perPoint {
			for i := start; i < end; i++ {
				e.buf = e.appendPoint(e.buf[:0], i)
				e.publish(e.outSubject(dev, e.batch[i].Key), e.buf)
			}
		} else { // isp.AppendBatch's form
			e.buf = append(e.buf[:0], `{"points":[`...)
			for i := start; i < end; i++ {
				if i > start {
					e.buf = append(e.buf, ',')
				}
				e.buf = e.appendPoint(e.buf, i)
			}
			e.buf = append(e.buf, "]}"...)
			e.publish(e.outSubject(dev, ""), e.buf)
		}
		start = end
	}
	e.batch = e.batch[:0]
}

// appendPoint appends the encoding of e.batch[i]: made from its element on the undecoded path (raw.go), by
// isp.AppendPoint otherwise.
func (e *Engine) appendPoint(dst []byte, i int) []byte {
	if e.undec != nil && e.undec.data != nil {
		return e.appendRaw(dst, i)
	}
	return isp.AppendPoint(dst, &e.batch[i])
}

func oneDevice(points []isp.Point) bool {
	for i := 1; i < len(points); i++ {
		if points[i].DeviceID != points[0].DeviceID {
			return false
		}
	}
	return true
}

// unchanged says whether the points the rule lets through are the points it got, unmodified: a filter's, or a
// forward's without rename.
func (e *Engine) unchanged() bool {
	switch e.rule.Type {
	case config.RuleFilter:
		return true
	case config.RuleForward:
		return e.rule.Forward.Rename == ""
	}
	return false
}

func (e *Engine) publish(subject string, data []byte) {
	if err := e.out.Publish(subject, data); err != nil {
		e.stats.PublishErrors++
	}
}

func containsKeyToken(s string) bool {
	for i := 0; i+5 <= len(s); i++ {
		if s[i:i+5] == "{key}" {
			return true
		}
	}
	return false
}

// outSubject is where a batch (key "") or a point goes.
func (e *Engine) outSubject(device, key string) string {
	if key == "" && e.lastSubject != "" && device == e.lastDevice {
		return e.lastSubject // a batch's subject depends on its device alone: one string per stream of batches
	}
	s := e.makeSubject(device, key)
	if key == "" {
		e.lastDevice, e.lastSubject = device, s
	}
	return s
}

func (e *Engine) makeSubject(device, key string) string {
	if e.rule.Forward == nil || e.rule.Forward.Subject == "" {
		e.subject = append(append(append(e.subject[:0], SubjectRulesPrefix...), e.rule.Name...), '.')
		e.subject = append(e.subject, device...)
		return string(e.subject)
	}
	e.subject = e.subject[:0]
	tmpl := e.rule.Forward.Subject
	for start := 0; start <= len(tmpl); {
		end := start
		for end < len(tmpl) && tmpl[end] != '.' {
			end++
		}
		switch tok := tmpl[start:end]; tok {
		case "{rule}":
			e.subject = append(e.subject, e.rule.Name...)
		case "{device}":
			e.subject = append(e.subject, device...)
		case "{key}":
			e.subject = append(e.subject, key...)
		default:
			e.subject = append(e.subject, tok...)
		}
		if end < len(tmpl) {
			e.subject = append(e.subject, '.')
		}
		start = end + 1
	}
	return string(e.subject)
}

// appendFloat writes a float as JSON: NaN and infinities, which JSON lacks, as null.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}
