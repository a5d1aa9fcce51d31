package config

import (
	"fmt"
	"math"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

// Rule is one `rule "name"` block: what it reads (Match, From), when it applies (When) and what it does (one of
// the type's settings). Every expression is compiled and type-checked at load.
type Rule struct {
	Name string
	Type string // alert | transform | filter | aggregate | forward
	// From names the rule whose output this one reads (chaining); "" reads the processed batches.
	From  string
	Queue string // the queue group gateways sharing the rule use; default iotgw.rules.{name}
	// Partition is "device" when every device's points must reach one gateway of those sharing the rule (the
	// default for alert and aggregate rules, which keep state per device), "none" when any gateway of the queue
	// group may take any batch (the default for the others).
	Partition string
	Match     RuleMatch
	When      *Expr // nil: every matched point

	Alert     *AlertRule
	Transform *TransformRule
	Filter    *FilterRule
	Aggregate *AggregateRule
	Forward   *ForwardRule

	DefRange  hcl.Range `json:"-"` // not part of what the rule does: a reload compares rules without them
	FromRange hcl.Range `json:"-"`
}

// Partition modes of a rule.
const (
	PartitionDevice = "device"
	PartitionNone   = "none"
)

// Rule types.
const (
	RuleAlert     = "alert"
	RuleTransform = "transform"
	RuleFilter    = "filter"
	RuleAggregate = "aggregate"
	RuleForward   = "forward"
)

// RuleTypes are the rule types, in the README's order.
var RuleTypes = []string{RuleAlert, RuleTransform, RuleFilter, RuleAggregate, RuleForward}

// RuleMatch selects the points a rule sees. Each list is a set of alternatives (a point matches when it matches
// one); the lists and tags must all match. Devices and keys are patterns: * matches any run of characters.
type RuleMatch struct {
	Devices []string
	Keys    []string
	Tags    map[string]string
}

// Matches reports whether the point with this device, key and tag lookup is selected.
func (m *RuleMatch) Matches(device, key string, tag func(string) (string, bool)) bool {
	if len(m.Devices) > 0 && !matchAny(m.Devices, device) {
		return false
	}
	if len(m.Keys) > 0 && !matchAny(m.Keys, key) {
		return false
	}
	for k, want := range m.Tags {
		if got, ok := tag(k); !ok || got != want {
			return false
		}
	}
	return true
}

// MatchesDevice reports whether the device can match at all (its points may still be filtered by key or tags).
func (m *RuleMatch) MatchesDevice(device string) bool {
	return len(m.Devices) == 0 || matchAny(m.Devices, device)
}

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if p == s || p == "*" {
			return true
		}
		if strings.ContainsRune(p, '*') {
			if ok, _ := path.Match(p, s); ok { // names hold no '/', so * is any run of characters
				return true
			}
		}
	}
	return false
}

// Alert levels, on iot.alerts.{level}.{device}.
var AlertLevels = []string{"info", "warning", "critical"}

// AlertRule is an alert rule's settings.
type AlertRule struct {
	Level string
	// Message and DedupKey are templates over {rule}, {device}, {key}, {value}, {level}, {condition}, {tag:NAME}.
	Message  string
	DedupKey string
	// For is how long the condition must hold before a pending alert fires (0: at once).
	For time.Duration
	// ClearWhen, when set, is the condition that resolves a firing alert (hysteresis: a firing alert stays firing
	// while neither `when` nor `clear_when` holds). Without it the alert resolves when `when` is false.
	ClearWhen *Expr
	// Deadband is the other hysteresis: with a threshold comparison `when` (value > T, value >= T, value < T,
	// value <= T) the alert resolves only once the value is deadband past T the other way.
	Deadband float64
	// Repeat re-sends a firing alert's event every Repeat while it fires (0: once).
	Repeat time.Duration
	// Throttle is the least time between the end of an alert and the next firing of the same key: one that would
	// fire sooner waits pending (against an alert that flaps although it has hysteresis). 0: off.
	Throttle time.Duration
	// NoData raises an alert when a matched series sends nothing for this long (0: off).
	NoData time.Duration
	// BadQuality raises an alert while a matched series' points have bad quality (0).
	BadQuality bool
	// Threshold is the T of a deadband `when` (set at load from the expression).
	Threshold float64
	Above     bool // the `when` is value > T or value >= T
}

// TransformRule is a transform rule's settings: each matched point becomes a new point.
type TransformRule struct {
	Value     *Expr    // the new value; nil keeps it
	Scale     *float64 // value × scale + offset (after Value)
	Offset    float64
	Rename    string // new key; "" keeps it
	Unit      string // tags.unit; "" keeps it
	ValueType string // the new point's type; "" keeps it (a Value or Scale makes it float64)
	Derive    []DerivedPoint
}

// DerivedPoint is a `derive "key" { value = … }` block: one more point per batch of a device, computed from
// several of its keys (values.voltage * values.current). It is made when every key it reads is in the batch.
type DerivedPoint struct {
	Key   string
	Value *Expr
	Unit  string
	Needs []string // the keys of values it reads
}

// FilterRule is a filter rule's settings: a point passes when it matches, `when` holds and the change and rate
// limits let it through.
type FilterRule struct {
	Deadband        float64       // pass only when |value − last passed| > deadband (0: off)
	DeadbandPercent float64       // pass only when the change exceeds this % of the last passed value (0: off)
	RateLimit       time.Duration // at most one point per series per interval (0: off)
}

// Window kinds of an aggregate rule.
var WindowKinds = []string{"tumbling", "hopping", "sliding", "count", "session"}

// AggregateFunctions are what an aggregate computes; p50, p90, p95, p99 and pNN in general are percentiles.
var AggregateFunctions = []string{"avg", "min", "max", "sum", "count", "first", "last", "stddev"}

// AggregateRule is an aggregate rule's settings.
type AggregateRule struct {
	Window    string
	Size      time.Duration // tumbling, hopping, sliding: the window's length; session: its longest
	Hop       time.Duration // hopping: a window starts every hop
	Count     int           // count: points per window
	Gap       time.Duration // session: the window closes after gap without a point
	Functions []string
	EventTime bool          // time = "event": windows by the points' timestamps, with Lateness
	Lateness  time.Duration // event time: how late a point may come before its window is closed
	GroupBy   string        // "" per device and key; a tag name: per value of that tag and key
	MaxPoints int           // the values kept per window for percentiles and sliding windows
}

// ForwardRule is a forward rule's settings.
type ForwardRule struct {
	// Subject is a template ({rule}, {device}, {key} as whole tokens); "" publishes on iot.rules.{rule}.{device},
	// where another rule can read it (From). With {key} each point travels alone, otherwise one batch per device.
	Subject string
	Rename  string
}

// ruleHCL is a rule block as written; which attributes a type may use is in ruleAttrs.
type ruleHCL struct {
	Type      string    `hcl:"type"`
	When      *string   `hcl:"when,optional"`
	From      *string   `hcl:"from,optional"`
	Queue     *string   `hcl:"queue,optional"`
	Partition *string   `hcl:"partition,optional"`
	Match     *matchHCL `hcl:"match,block"`

	Level      *string `hcl:"level,optional"`
	Message    *string `hcl:"message,optional"`
	For        *string `hcl:"for,optional"`
	ClearWhen  *string `hcl:"clear_when,optional"`
	Deadband   *float64
	DedupKey   *string `hcl:"dedup_key,optional"`
	Repeat     *string `hcl:"repeat,optional"`
	Throttle   *string `hcl:"throttle,optional"`
	NoData     *string `hcl:"no_data,optional"`
	BadQuality *bool   `hcl:"bad_quality,optional"`

	Value     *string     `hcl:"value,optional"`
	Scale     *float64    `hcl:"scale,optional"`
	Offset    *float64    `hcl:"offset,optional"`
	Rename    *string     `hcl:"rename,optional"`
	Unit      *string     `hcl:"unit,optional"`
	ValueType *string     `hcl:"value_type,optional"`
	Derive    []deriveHCL `hcl:"derive,block"`

	DeadbandAttr    *float64 `hcl:"deadband,optional"`
	DeadbandPercent *float64 `hcl:"deadband_percent,optional"`
	RateLimit       *string  `hcl:"rate_limit,optional"`

	Window    *string  `hcl:"window,optional"`
	Size      *string  `hcl:"size,optional"`
	Hop       *string  `hcl:"hop,optional"`
	Count     *int     `hcl:"count,optional"`
	Gap       *string  `hcl:"gap,optional"`
	Functions []string `hcl:"functions,optional"`
	Time      *string  `hcl:"time,optional"`
	Lateness  *string  `hcl:"lateness,optional"`
	GroupBy   *string  `hcl:"group_by,optional"`
	MaxPoints *int     `hcl:"max_points,optional"`

	Subject *string `hcl:"subject,optional"`
}

type matchHCL struct {
	Devices []string          `hcl:"devices,optional"`
	Keys    []string          `hcl:"keys,optional"`
	Tags    map[string]string `hcl:"tags,optional"`
}

type deriveHCL struct {
	Key   string  `hcl:"key,label"`
	Value string  `hcl:"value"`
	Unit  *string `hcl:"unit,optional"`
}

// ruleAttrs lists, per type, the attributes beside type, when, from, queue and match.
var ruleAttrs = map[string][]string{
	RuleAlert:     {"level", "message", "for", "clear_when", "deadband", "dedup_key", "repeat", "throttle", "no_data", "bad_quality"},
	RuleTransform: {"value", "scale", "offset", "rename", "unit", "value_type", "derive"},
	RuleFilter:    {"deadband", "deadband_percent", "rate_limit"},
	RuleAggregate: {"window", "size", "hop", "count", "gap", "functions", "time", "lateness", "group_by", "max_points"},
	RuleForward:   {"subject", "rename"},
}

// templateFields are the placeholders of alert messages and dedup keys ({tag:NAME} besides).
var templateFields = []string{"rule", "device", "key", "value", "level", "condition"}

// ValueTypes a transform may give its points.
var ValueTypes = []string{"float64", "int64", "bool", "string"}

// decodeRule decodes one rule block. The rule's Type settings are nil after a problem.
func decodeRule(block *hcl.Block, ctx *hcl.EvalContext, diags *hcl.Diagnostics) Rule {
	r := Rule{Name: block.Labels[0], DefRange: block.DefRange}
	checkLabel(block, "rule name", diags)
	if r.Name == "processor" {
		addLabelError(block, "Reserved rule name",
			`The rule name "processor" is the built-in first stage (rules/processor); choose another name.`, diags)
	}
	var h ruleHCL
	if d := gohcl.DecodeBody(block.Body, ctx, &h); d.HasErrors() {
		*diags = append(*diags, d...)
		return r
	}
	h.Deadband = h.DeadbandAttr
	v := newValidator(block, fmt.Sprintf("rule %s", quote(r.Name)), diags)
	n := len(*diags)
	r.Type = h.Type
	allowed, ok := ruleAttrs[h.Type]
	if !ok {
		v.Errorf("type", "unknown rule type %s; known: %s", quote(h.Type), oneOf(RuleTypes))
		return r
	}
	for typ, attrs := range ruleAttrs {
		if typ == h.Type {
			continue
		}
		for _, a := range attrs {
			if v.Has(a) && !isOneOf(a, allowed) {
				v.Errorf(a, "%s is not a setting of a %s rule (it belongs to: %s)", a, h.Type, strings.Join(typesWith(a), ", "))
			}
		}
	}
	if h.Type != RuleTransform && len(h.Derive) > 0 {
		v.Block("derive", "").Errorf("", "derive blocks belong to transform rules")
	}
	r.Queue = "iotgw.rules." + r.Name
	r.Partition = PartitionNone
	if h.Type == RuleAlert || h.Type == RuleAggregate {
		r.Partition = PartitionDevice
	}
	set(&r.Partition, h.Partition)
	if !isOneOf(r.Partition, []string{PartitionDevice, PartitionNone}) {
		v.Errorf("partition", "unknown partition %s; known: device, none", quote(r.Partition))
	}
	if r.Partition == PartitionDevice && h.Queue != nil {
		v.Errorf("queue", "a rule partitioned by device takes no queue group: each gateway reads every batch and keeps the devices it owns")
	}
	if h.Queue != nil {
		r.Queue = *h.Queue
		if err := ValidSubject(r.Queue, false); err != nil {
			v.Errorf("queue", "invalid queue group: %v", err)
		}
	}
	if h.From != nil {
		r.From = *h.From
		r.FromRange = v.rangeOf("from")
		if err := ValidToken(r.From); err != nil {
			v.Errorf("from", "from names a rule: %v", err)
		}
	}
	if h.Match != nil {
		mv := v.Block("match", "")
		r.Match = RuleMatch{Devices: h.Match.Devices, Keys: h.Match.Keys, Tags: h.Match.Tags}
		checkPatterns(mv, "devices", r.Match.Devices)
		checkPatterns(mv, "keys", r.Match.Keys)
		for k := range r.Match.Tags {
			if err := ValidToken(k); err != nil {
				mv.Errorf("tags", "tag name %s: %v", quote(k), err)
			}
		}
	}
	if h.When != nil {
		r.When = compileAttr(v, "when", *h.When, ExprBool)
	}
	switch h.Type {
	case RuleAlert:
		r.Alert = decodeAlert(v, &h, r.When)
	case RuleTransform:
		r.Transform = decodeTransform(v, &h)
	case RuleFilter:
		r.Filter = decodeFilter(v, &h)
	case RuleAggregate:
		r.Aggregate = decodeAggregate(v, &h)
	case RuleForward:
		r.Forward = decodeForward(v, &h)
	}
	if len(*diags) > n {
		r.Alert, r.Transform, r.Filter, r.Aggregate, r.Forward = nil, nil, nil, nil, nil
	}
	return r
}

func typesWith(attr string) []string {
	var out []string
	for _, t := range RuleTypes {
		if isOneOf(attr, ruleAttrs[t]) {
			out = append(out, t)
		}
	}
	return out
}

func checkPatterns(v *Validator, attr string, patterns []string) {
	for i, p := range patterns {
		if p == "*" {
			continue
		}
		if err := ValidToken(strings.ReplaceAll(p, "*", "x")); err != nil {
			v.ErrorfIndex(attr, i, "%s is not a name or a pattern of one (letters, digits, - and _, with * for any run): %v", quote(p), err)
		}
	}
}

func duration(v *Validator, attr string, src *string) time.Duration {
	if src == nil {
		return 0
	}
	d, _ := v.Duration(attr, *src)
	return d
}

func finite(v *Validator, attr string, f *float64) float64 {
	if f == nil {
		return 0
	}
	if math.IsNaN(*f) || math.IsInf(*f, 0) {
		v.Errorf(attr, "%s must be a finite number", attr)
		return 0
	}
	return *f
}

func decodeAlert(v *Validator, h *ruleHCL, when *Expr) *AlertRule {
	a := &AlertRule{Level: "warning", Message: "{rule}: {device} {key} = {value}", DedupKey: "{rule}:{device}:{key}:{condition}"}
	set(&a.Level, h.Level)
	set(&a.Message, h.Message)
	set(&a.DedupKey, h.DedupKey)
	set(&a.BadQuality, h.BadQuality)
	if !isOneOf(a.Level, AlertLevels) {
		v.Errorf("level", "unknown level %s; known: %s", quote(a.Level), oneOf(AlertLevels))
	}
	checkTemplate(v, "message", a.Message)
	checkTemplate(v, "dedup_key", a.DedupKey)
	if !strings.Contains(a.DedupKey, "{device}") && !strings.Contains(a.DedupKey, "{tag:") {
		v.Errorf("dedup_key", "the de-duplication key must contain {device} (or a {tag:NAME}): an alert's state is kept per device")
	}
	a.For = duration(v, "for", h.For)
	a.Repeat = duration(v, "repeat", h.Repeat)
	a.Throttle = duration(v, "throttle", h.Throttle)
	a.NoData = duration(v, "no_data", h.NoData)
	if h.ClearWhen != nil {
		a.ClearWhen = compileAttr(v, "clear_when", *h.ClearWhen, ExprBool)
	}
	a.Deadband = finite(v, "deadband", h.Deadband)
	if a.Deadband < 0 {
		v.Errorf("deadband", "deadband must be >= 0")
	}
	if h.Deadband != nil {
		if h.ClearWhen != nil {
			v.Errorf("deadband", "write clear_when or deadband, not both: both say when a firing alert resolves")
		}
		t, above, ok := threshold(h.When)
		if !ok {
			v.Errorf("deadband", "a deadband needs a when of the form value > N, value >= N, value < N or value <= N; write clear_when otherwise")
		}
		a.Threshold, a.Above = t, above
	}
	if h.When == nil && a.NoData == 0 && !a.BadQuality {
		v.Errorf("", "An alert rule needs a when condition, no_data or bad_quality = true.")
	}
	if h.When == nil && h.ClearWhen != nil {
		v.Errorf("clear_when", "clear_when resolves what when raised: write when too")
	}
	return a
}

// threshold reads N from "value > N" (and >=, <, <=), for a deadband.
func threshold(when *string) (t float64, above, ok bool) {
	if when == nil {
		return 0, false, false
	}
	s := strings.TrimSpace(*when)
	rest, found := strings.CutPrefix(s, "value")
	if !found {
		return 0, false, false
	}
	rest = strings.TrimSpace(rest)
	for _, op := range []string{">=", "<=", ">", "<"} {
		if num, ok := strings.CutPrefix(rest, op); ok {
			if _, err := fmt.Sscanf(strings.TrimSpace(num), "%g", &t); err != nil || strings.ContainsAny(strings.TrimSpace(num), " \t()&|") {
				return 0, false, false
			}
			return t, op[0] == '>', true
		}
	}
	return 0, false, false
}

// checkTemplate reports unknown placeholders in a message or dedup-key template.
func checkTemplate(v *Validator, attr, tmpl string) {
	for rest := tmpl; ; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			return
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			v.Errorf(attr, "unclosed { in %s", quote(tmpl))
			return
		}
		name := rest[i+1 : i+j]
		if tag, ok := strings.CutPrefix(name, "tag:"); ok {
			if ValidToken(tag) != nil {
				v.Errorf(attr, "{tag:%s}: not a tag name", tag)
			}
		} else if !isOneOf(name, templateFields) {
			v.Errorf(attr, "unknown placeholder {%s}; known: {%s}, {tag:NAME}", name, strings.Join(templateFields, "}, {"))
		}
		rest = rest[i+j+1:]
	}
}

func decodeTransform(v *Validator, h *ruleHCL) *TransformRule {
	t := &TransformRule{Scale: h.Scale}
	if h.Value != nil {
		t.Value = compileAttr(v, "value", *h.Value, ExprNumber)
	}
	if h.Scale != nil {
		finite(v, "scale", h.Scale)
	}
	t.Offset = finite(v, "offset", h.Offset)
	set(&t.Rename, h.Rename)
	set(&t.Unit, h.Unit)
	set(&t.ValueType, h.ValueType)
	if t.Rename != "" {
		if err := ValidToken(t.Rename); err != nil {
			v.Errorf("rename", "the new key becomes a subject token: %v", err)
		}
	}
	if t.ValueType != "" && !isOneOf(t.ValueType, ValueTypes) {
		v.Errorf("value_type", "unknown type %s; known: %s", quote(t.ValueType), oneOf(ValueTypes))
	}
	seen := map[string]bool{}
	for i, d := range h.Derive {
		dv := v.Blocks("derive")[i]
		if err := ValidToken(d.Key); err != nil {
			dv.Errorf("", "the derived key becomes a subject token: %v", err)
		}
		if seen[d.Key] {
			dv.Errorf("", "derived key %s twice", quote(d.Key))
		}
		seen[d.Key] = true
		dp := DerivedPoint{Key: d.Key, Value: compileAttr(dv, "value", d.Value, ExprNumber), Needs: valuesRead(d.Value)}
		set(&dp.Unit, d.Unit)
		if dp.Value != nil && len(dp.Needs) == 0 {
			dv.Errorf("value", "a derived point is computed from other keys: read them as values.KEY")
		}
		t.Derive = append(t.Derive, dp)
	}
	if t.Value == nil && h.Scale == nil && h.Offset == nil && t.Rename == "" && t.Unit == "" && t.ValueType == "" && len(h.Derive) == 0 && h.Value == nil {
		v.Errorf("", "A transform rule needs value, scale, offset, rename, unit, value_type or a derive block.")
	}
	return t
}

// valuesRead lists the KEYs of values.KEY in an expression (the keys a derived point needs).
func valuesRead(src string) []string {
	var out []string
	for rest := src; ; {
		i := strings.Index(rest, "values.")
		if i < 0 {
			break
		}
		rest = rest[i+len("values."):]
		j := 0
		for j < len(rest) && (rest[j] == '_' || rest[j] == '-' || rest[j] >= '0' && rest[j] <= '9' || rest[j] >= 'a' && rest[j] <= 'z' || rest[j] >= 'A' && rest[j] <= 'Z') {
			j++
		}
		if j > 0 && !isOneOf(rest[:j], out) {
			out = append(out, rest[:j])
		}
	}
	sort.Strings(out)
	return out
}

func decodeFilter(v *Validator, h *ruleHCL) *FilterRule {
	f := &FilterRule{
		Deadband:        finite(v, "deadband", h.Deadband),
		DeadbandPercent: finite(v, "deadband_percent", h.DeadbandPercent),
		RateLimit:       duration(v, "rate_limit", h.RateLimit),
	}
	if f.Deadband < 0 {
		v.Errorf("deadband", "deadband must be >= 0")
	}
	if f.DeadbandPercent < 0 || f.DeadbandPercent > 1000 {
		v.Errorf("deadband_percent", "deadband_percent is a percentage from 0 to 1000")
	}
	if f.Deadband > 0 && f.DeadbandPercent > 0 {
		v.Errorf("deadband_percent", "write deadband or deadband_percent, not both")
	}
	if h.When == nil && h.Deadband == nil && h.DeadbandPercent == nil && h.RateLimit == nil {
		v.Errorf("", "A filter rule needs when, deadband, deadband_percent or rate_limit.")
	}
	return f
}

// maxWindowPoints bounds max_points: a window's values are kept for percentiles and sliding windows only.
const maxWindowPoints = 100000

func decodeAggregate(v *Validator, h *ruleHCL) *AggregateRule {
	a := &AggregateRule{Window: "tumbling", Functions: []string{"avg", "min", "max", "count"}, MaxPoints: 10000}
	set(&a.Window, h.Window)
	set(&a.Count, h.Count)
	set(&a.GroupBy, h.GroupBy)
	set(&a.MaxPoints, h.MaxPoints)
	if h.Functions != nil {
		a.Functions = h.Functions
	}
	a.Size = duration(v, "size", h.Size)
	a.Hop = duration(v, "hop", h.Hop)
	a.Gap = duration(v, "gap", h.Gap)
	a.Lateness = duration(v, "lateness", h.Lateness)
	timeMode := "processing"
	set(&timeMode, h.Time)
	switch timeMode {
	case "processing":
		if h.Lateness != nil {
			v.Errorf("lateness", "lateness is for time = \"event\"")
		}
	case "event":
		a.EventTime = true
	default:
		v.Errorf("time", "unknown time %s; known: processing, event", quote(timeMode))
	}
	if !isOneOf(a.Window, WindowKinds) {
		v.Errorf("window", "unknown window %s; known: %s", quote(a.Window), oneOf(WindowKinds))
	}
	need := func(attr string, ok bool, what string) {
		if !ok {
			v.Errorf(attr, "a %s window needs %s", a.Window, what)
		}
	}
	minSize := 10 * time.Millisecond
	switch a.Window {
	case "tumbling", "sliding":
		need("size", a.Size >= minSize, "size of at least 10ms")
	case "hopping":
		need("size", a.Size >= minSize, "size of at least 10ms")
		need("hop", a.Hop >= minSize && a.Hop <= a.Size, "hop from 10ms to size")
		if a.Hop > 0 && a.Size/a.Hop > 100 {
			v.Errorf("hop", "size / hop is %d: at most 100 windows overlap", a.Size/a.Hop)
		}
	case "count":
		need("count", a.Count >= 1 && a.Count <= maxWindowPoints, fmt.Sprintf("count from 1 to %d", maxWindowPoints))
	case "session":
		need("gap", a.Gap >= minSize, "gap of at least 10ms")
		if h.Size != nil && a.Size < a.Gap {
			v.Errorf("size", "a session's size (its longest) must be at least its gap")
		}
	}
	for attr, used := range map[string]bool{"hop": a.Window == "hopping", "count": a.Window == "count", "gap": a.Window == "session"} {
		if v.Has(attr) && !used {
			v.Errorf(attr, "%s is not used by a %s window", attr, a.Window)
		}
	}
	if a.Window == "count" && h.Size != nil {
		v.Errorf("size", "a count window is sized by count")
	}
	if a.Window == "count" && a.EventTime {
		v.Errorf("time", "a count window has no time")
	}
	if len(a.Functions) == 0 {
		v.Errorf("functions", "at least one function: %s, or pNN", oneOf(AggregateFunctions))
	}
	for i, f := range a.Functions {
		if _, ok := Percentile(f); !ok && !isOneOf(f, AggregateFunctions) {
			v.ErrorfIndex("functions", i, "unknown function %s; known: %s, or a percentile p1 … p99 (p99.9 too)", quote(f), oneOf(AggregateFunctions))
		}
	}
	if a.GroupBy != "" && ValidToken(a.GroupBy) != nil {
		v.Errorf("group_by", "group_by names a tag: %v", ValidToken(a.GroupBy))
	}
	if a.MaxPoints < 1 || a.MaxPoints > maxWindowPoints {
		v.Errorf("max_points", "max_points from 1 to %d", maxWindowPoints)
	}
	return a
}

// Percentile reads a percentile function name: p50 is 0.5, p99.9 is 0.999.
func Percentile(name string) (q float64, ok bool) {
	num, found := strings.CutPrefix(name, "p")
	if !found || num == "" || len(num) > 5 {
		return 0, false
	}
	var f float64
	if _, err := fmt.Sscanf(num, "%g", &f); err != nil || fmt.Sprint(f) != num || f <= 0 || f >= 100 {
		return 0, false
	}
	return f / 100, true
}

// closedPrefixes are subjects a forward rule may not publish to: the control plane, the JetStream and KV APIs,
// the system account, the inboxes, and the gateway's own input subjects (publishing there would loop).
var closedPrefixes = []string{"iot.control.", "$", "_INBOX.", "_IOTGW_INBOX.", "iot.raw.", "iot.processed.", "iot.errors."}

func decodeForward(v *Validator, h *ruleHCL) *ForwardRule {
	f := &ForwardRule{}
	set(&f.Subject, h.Subject)
	set(&f.Rename, h.Rename)
	if f.Rename != "" {
		if err := ValidToken(f.Rename); err != nil {
			v.Errorf("rename", "the new key becomes a subject token: %v", err)
		}
	}
	if f.Subject != "" {
		if err := CheckForwardSubject(f.Subject); err != nil {
			v.Errorf("subject", "%v", err)
		}
	}
	return f
}

// CheckForwardSubject checks a forward rule's subject template.
func CheckForwardSubject(s string) error {
	probe := strings.NewReplacer("{rule}", "r", "{device}", "d", "{key}", "k").Replace(s)
	if err := ValidSubject(probe, false); err != nil {
		return err
	}
	for _, tok := range strings.Split(s, ".") {
		if strings.ContainsAny(tok, "{}") && tok != "{rule}" && tok != "{device}" && tok != "{key}" {
			return fmt.Errorf("%s: placeholders are whole tokens, one of {rule}, {device}, {key}", quote(s))
		}
	}
	for _, p := range closedPrefixes {
		if strings.HasPrefix(probe, p) || probe+"." == p {
			return fmt.Errorf("%s: a rule may not publish on %s… (the control plane, the JetStream and KV APIs, inboxes and the gateway's own input and error subjects are closed)", quote(s), p)
		}
	}
	return nil
}

// checkRules checks what spans rules: From names a rule that publishes (filter, transform, forward without its
// own subject), and the From chains have no cycle.
func checkRules(rules []Rule, diags *hcl.Diagnostics) {
	byName := map[string]*Rule{}
	for i := range rules {
		byName[rules[i].Name] = &rules[i]
	}
	bad := func(r *Rule, summary, detail string) {
		*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: r.FromRange.Ptr()})
	}
	for i := range rules {
		r := &rules[i]
		if r.From == "" {
			continue
		}
		src, ok := byName[r.From]
		switch {
		case !ok:
			bad(r, "Unknown rule in from", fmt.Sprintf("No rule is named %s.", quote(r.From)))
		case !Chainable(src):
			bad(r, "Rule in from has no output to read", fmt.Sprintf("Rule %s is a %s rule; only filter, transform and forward rules without a subject publish on iot.rules.{rule}.{device} for another rule to read.", quote(src.Name), src.Type))
		}
	}
	// A cycle: follow From from every rule; a walk that comes back to its start is one. Reported once, at each
	// rule of the cycle's from.
	reported := map[string]bool{}
	for i := range rules {
		start := &rules[i]
		seen := map[string]bool{start.Name: true}
		chain := []string{start.Name}
		for cur := start; cur.From != ""; {
			next, ok := byName[cur.From]
			if !ok {
				break
			}
			if next.Name == start.Name {
				if !reported[start.Name] {
					for _, n := range chain {
						reported[n] = true
					}
					bad(start, "Rules read each other in a cycle",
						fmt.Sprintf("%s → %s: a point would go round for ever.", strings.Join(chain, " → "), start.Name))
				}
				break
			}
			if seen[next.Name] {
				break // a cycle further on, reported from its own rules
			}
			seen[next.Name] = true
			chain = append(chain, next.Name)
			cur = next
		}
	}
}

// CheckRules checks what spans a set of rules (from names a rule with output, no cycles), as a file's are
// checked: for a reload, the file's new rules together with the rules added at run time.
func CheckRules(rules []Rule) hcl.Diagnostics {
	var diags hcl.Diagnostics
	checkRules(rules, &diags)
	return diags
}

// Chainable says whether other rules may read r's output (From).
func Chainable(r *Rule) bool {
	switch r.Type {
	case RuleFilter, RuleTransform:
		return true
	case RuleForward:
		return r.Forward == nil || r.Forward.Subject == ""
	}
	return false
}

// RuleInput is the subject a rule reads: the processed batches, or the output of the rule it chains from.
func RuleInput(r *Rule) string {
	if r.From != "" {
		return "iot.rules." + r.From + ".>"
	}
	return "iot.processed.batch.>"
}

var ruleSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{{Type: "rule", LabelNames: []string{"name"}}},
}

// ParseRuntimeRule parses a source holding exactly one `rule "name" { … }` block that does not come from the
// configuration file (a control request, a stored rule): the same decoding and checks as in the file, env() an
// error at its position. It does not know the other rules: others are the running ones, for From and cycles
// (the parsed rule replaces one of the same name among them).
func ParseRuntimeRule(src []byte, filename string, others []Rule) (*Rule, hcl.Diagnostics) {
	file, diags := parseSyntax(src, filename)
	if diags.HasErrors() {
		return nil, limit(diags)
	}
	content, d := file.Body.Content(ruleSchema)
	diags = append(diags, d...)
	switch {
	case len(content.Blocks) == 0 && !diags.HasErrors():
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Missing rule block", Detail: `Write one rule "name" { … } block.`,
			Subject: file.Body.MissingItemRange().Ptr(),
		})
	case len(content.Blocks) > 1:
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "More than one rule block",
			Detail:  fmt.Sprintf("Write one rule block; the first is at %s.", content.Blocks[0].DefRange),
			Subject: content.Blocks[1].DefRange.Ptr(),
		})
	}
	if diags.HasErrors() {
		return nil, limit(diags)
	}
	r := decodeRule(content.Blocks[0], runtimeEvalContext(), &diags)
	if diags.HasErrors() {
		return nil, limit(diags)
	}
	all := make([]Rule, 1, len(others)+1)
	all[0] = r // first, so that a cycle through the running rules is reported at this rule's from
	for _, o := range others {
		if o.Name != r.Name {
			all = append(all, o)
		}
	}
	var cross hcl.Diagnostics
	checkRules(all, &cross)
	for _, d := range cross {
		if d.Subject != nil && d.Subject.Filename == filename {
			diags = append(diags, d) // problems of the new rule, not of the running ones
		}
	}
	if diags.HasErrors() {
		return nil, limit(diags)
	}
	return &r, diags
}
