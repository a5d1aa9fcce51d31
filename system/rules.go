package system

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/iotgw/iotgw/actors/rule"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// The rules group: the built-in processor first, then one actor per rule block of the file and per rule added at
// run time (iot.control.rules.add), each under the rules supervisor. Rules added at run time are stored like
// devices: in the JetStream bucket IOTGW_RULES when JetStream is on, otherwise in <data_dir>/rules.json. Alert
// state is in the bucket IOTGW_ALERTS with JetStream, in memory without it (it then survives a restart of the
// rule's actor, not of the gateway).

// Control subjects of the rule engine.
const (
	SubjectRulesList   = "iot.control.rules.list"
	SubjectRulesGet    = "iot.control.rules.get"
	SubjectRulesAdd    = "iot.control.rules.add"
	SubjectRulesUpdate = "iot.control.rules.update"
	SubjectRulesRemove = "iot.control.rules.remove"
	SubjectRulesTest   = "iot.control.rules.test"
	SubjectAlertsList  = "iot.control.alerts.list"
	SubjectAlertsAck   = "iot.control.alerts.ack"
)

// ruleSubjects are the control subjects served for the rule engine.
var ruleSubjects = []string{SubjectRulesList, SubjectRulesGet, SubjectRulesAdd, SubjectRulesUpdate, SubjectRulesRemove,
	SubjectRulesTest, SubjectAlertsList, SubjectAlertsAck}

// Buckets of the rule engine.
const (
	RulesBucket  = "IOTGW_RULES"
	AlertsBucket = "IOTGW_ALERTS"
)

// maxRuleRequest bounds a rule request's body; maxTestPoints the points a rules.test request may give.
const (
	maxRuleRequest = 256 << 10
	maxTestPoints  = 10000
)

// ruleEntry is one rule the gateway runs.
type ruleEntry struct {
	rule    config.Rule
	source  string // SourceConfig or SourceRuntime
	hcl     []byte // the block's text, for runtime rules
	figures *rule.Figures
}

// ruleRegistry is what rules run and where they came from; the control actor changes it.
type ruleRegistry struct {
	mu      sync.Mutex
	entries map[string]*ruleEntry
	store   deviceStore // the runtime rules' store: the same two kinds as the devices'
	alerts  rule.AlertStore
	windows rule.WindowStore // open windows handed on between gateways (actors/rule/handover.go)
}

// ruleActorSpecs are the rule actors, after the processor: the file's rules, then the stored ones.
func (r *Runtime) ruleActorSpecs() []ChildSpec {
	reg := r.openRules()
	specs := make([]ChildSpec, 0, len(reg.entries))
	names := make([]string, 0, len(reg.entries))
	for n := range reg.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		specs = append(specs, r.ruleSpec(reg.entries[n]))
	}
	return specs
}

func (r *Runtime) ruleSpec(e *ruleEntry) ChildSpec {
	return ChildSpec{Name: e.rule.Name, Kind: "rule/" + e.rule.Type,
		Producer: rule.New(e.rule, r.env(GroupRules+"/"+e.rule.Name), r.rules.alerts, r.rules.windows, e.figures)}
}

// openRules builds the registry: the file's rules, the alert store and the stored rules (those that no longer
// parse, or whose name the file now uses, are skipped with an error or a warning).
func (r *Runtime) openRules() *ruleRegistry {
	if r.rules != nil {
		return r.rules
	}
	reg := &ruleRegistry{entries: map[string]*ruleEntry{}}
	r.rules = reg
	for _, rl := range r.cfg.Rules {
		reg.entries[rl.Name] = &ruleEntry{rule: rl, source: SourceConfig, figures: &rule.Figures{}}
	}
	switch {
	case r.cfg.NATS.JetStream.Enabled:
		reg.alerts = &alertKV{bus: r.bus, log: r.log}
		reg.windows = &windowKV{bus: r.bus, log: r.log}
		reg.store = &lazyKV{bus: r.bus, bucket: RulesBucket, gateway: r.cfg.Gateway.ID, log: r.log}
	default:
		reg.alerts = newAlertMemory()
		reg.windows = newWindowMemory()
		reg.store = &fileStore{path: filepath.Join(r.cfg.Gateway.DataDir, "rules.json")}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stored, err := reg.store.Load(ctx)
	if err != nil {
		r.log.Error().Err(err).Str("store", reg.store.String()).Msg("rules added at run time cannot be read; they do not run")
		return reg
	}
	names := make([]string, 0, len(stored))
	for n := range stored {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, dup := reg.entries[n]; dup {
			r.log.Warn().Str("rule", n).Msg("a stored rule has the name of a rule of the config file: the file's runs")
			continue
		}
		rl, diags := config.ParseRuntimeRule(stored[n], "stored rule "+n, r.ruleList(reg))
		if diags.HasErrors() {
			r.log.Error().Str("rule", n).Str("error", diags.Error()).Msg("stored rule does not parse; not started")
			continue
		}
		reg.entries[n] = &ruleEntry{rule: *rl, source: SourceRuntime, hcl: stored[n], figures: &rule.Figures{}}
	}
	return reg
}

// withRuleFigures puts each rule's figures on its node of a tree snapshot.
func (r *Runtime) withRuleFigures(root *Node) *Node {
	reg := r.rules
	if reg == nil || root == nil {
		return root
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	for _, g := range root.Children {
		if g.Path != GroupRules {
			continue
		}
		for _, n := range g.Children {
			if e, ok := reg.entries[n.Name]; ok {
				s := e.figures.Get()
				n.Rule = &s
			}
		}
	}
	return root
}

// reloadRules applies the file's new rules: the rules added, changed (what they say, not where) or removed are
// stopped and started, the others keep running untouched. A rule of the file with the name of a rule added at
// run time replaces it (the file wins, as at start-up). If the rules added at run time would no longer fit (one
// reads a rule that goes, or a cycle), no rule changes and the reply says why.
func (r *Runtime) reloadRules(next []config.Rule, res *ReloadResult, applied map[string]bool) {
	reg := r.openRules()
	reg.mu.Lock()
	defer reg.mu.Unlock()
	inFile := map[string]config.Rule{}
	for _, rl := range next {
		inFile[rl.Name] = rl
	}
	all := append([]config.Rule(nil), next...)
	for n, e := range reg.entries {
		if _, replaced := inFile[n]; e.source == SourceRuntime && !replaced {
			all = append(all, e.rule)
		}
	}
	if diags := config.CheckRules(all); diags.HasErrors() {
		res.Failed = append(res.Failed, "rules: with the rules added at run time: "+firstLine(diags)+"; no rule changed")
		return
	}
	names := make([]string, 0, len(reg.entries)+len(inFile))
	for n := range reg.entries {
		names = append(names, n)
	}
	for n := range inFile {
		if _, ok := reg.entries[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range names {
		key := GroupRules + "/" + n
		e, running := reg.entries[n]
		rl, wanted := inFile[n]
		switch {
		case running && e.source == SourceRuntime && !wanted:
			continue // a rule added at run time: the file does not name it
		case running && wanted && e.source == SourceConfig && rulesDigest([]config.Rule{e.rule}) == rulesDigest([]config.Rule{rl}):
			e.rule = rl // the same rule, maybe at another line
			continue
		}
		if running {
			if err := r.RemoveActor(GroupRules, n); err != nil && !errors.Is(err, ErrNoChild) {
				res.Failed = append(res.Failed, fmt.Sprintf("%s: remove: %v", key, err))
				continue
			}
			delete(reg.entries, n)
			if e.source == SourceRuntime {
				_ = reg.store.Delete(ctx, n) // the file's rule of that name wins
			}
			if !wanted {
				r.forgetAlerts(ctx, reg, n)
				res.Removed = append(res.Removed, key)
				applied[key] = true
				continue
			}
		}
		ne := &ruleEntry{rule: rl, source: SourceConfig, figures: &rule.Figures{}}
		if err := r.AddActor(GroupRules, r.ruleSpec(ne)); err != nil {
			res.Failed = append(res.Failed, fmt.Sprintf("%s: %v", key, err))
			continue
		}
		reg.entries[n] = ne
		if running {
			res.Changed = append(res.Changed, key)
		} else {
			res.Added = append(res.Added, key)
		}
		applied[key] = true
	}
	r.cfg.Rules = next
}

// rulesDigest is what the file's rules say, for a reload to tell whether they changed (positions left out).
func rulesDigest(rules []config.Rule) string {
	sorted := append([]config.Rule(nil), rules...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	data, err := json.Marshal(sorted)
	if err != nil {
		return err.Error()
	}
	return string(data)
}

// ruleList is every rule of the registry (the caller holds it or runs before the tree starts).
func (r *Runtime) ruleList(reg *ruleRegistry) []config.Rule {
	out := make([]config.Rule, 0, len(reg.entries))
	for _, e := range reg.entries {
		out = append(out, e.rule)
	}
	return out
}

// RuleInfo is one rule in the replies of iot.control.rules.*.
type RuleInfo struct {
	Name     string     `json:"name"`
	Type     string     `json:"type"`
	Source   string     `json:"source"`
	Defined  string     `json:"defined,omitempty"` // file:line of a rule of the config file
	Input    string     `json:"input"`
	Queue    string     `json:"queue"`
	State    string     `json:"state"`
	Restarts int        `json:"restarts"`
	Stats    rule.Stats `json:"stats"`
	HCL      string     `json:"hcl,omitempty"`
}

// RulesReply is the reply of iot.control.rules.* and iot.control.alerts.*.
type RulesReply struct {
	OK          bool         `json:"ok"`
	Error       string       `json:"error,omitempty"`
	Diagnostics []Diagnostic `json:"diagnostics,omitempty"`
	Rule        *RuleInfo    `json:"rule,omitempty"`
	Rules       []RuleInfo   `json:"rules,omitzero"`
	Outputs     []TestOutput `json:"outputs,omitzero"`
	Stats       *rule.Stats  `json:"stats,omitempty"`
	Alerts      []rule.Alert `json:"alerts,omitzero"`
	Missing     []string     `json:"missing,omitempty"` // alerts.list: rules that did not answer
	HCL         string       `json:"hcl,omitempty"`     // the rule block a JSON request was read as
}

// TestOutput is one message a rule would publish, in a rules.test reply.
type TestOutput struct {
	Subject string          `json:"subject"`
	Data    json.RawMessage `json:"data"`
}

func ruleFailure(format string, args ...any) RulesReply {
	return RulesReply{Error: fmt.Sprintf(format, args...)}
}

func (r *Runtime) ruleInfo(e *ruleEntry) RuleInfo {
	info := RuleInfo{Name: e.rule.Name, Type: e.rule.Type, Source: e.source, Input: config.RuleInput(&e.rule),
		Queue: e.rule.Queue, State: StateStopped, Stats: e.figures.Get()}
	if n, ok := r.tree.Get(GroupRules + "/" + e.rule.Name); ok {
		info.State, info.Restarts = n.State, n.Restarts
	}
	if e.source == SourceConfig {
		info.Defined = fmt.Sprintf("%s:%d", e.rule.DefRange.Filename, e.rule.DefRange.Start.Line)
	} else {
		info.HCL = string(e.hcl)
	}
	return info
}

// controlRules answers the rule and alert control subjects; ok is false for another subject.
func (r *Runtime) controlRules(subject string, body []byte) (reply any, ok bool) {
	switch subject {
	case SubjectRulesList:
		return r.listRules(), true
	case SubjectRulesGet:
		return r.getRule(body), true
	case SubjectRulesAdd:
		return r.addRule(body, false), true
	case SubjectRulesUpdate:
		return r.addRule(body, true), true
	case SubjectRulesRemove:
		return r.removeRule(body), true
	case SubjectRulesTest:
		return testRule(body, r.ruleSnapshot()), true
	case SubjectAlertsList:
		return r.listAlerts(), true
	case SubjectAlertsAck:
		return r.ackAlert(body), true
	}
	return nil, false
}

func (r *Runtime) listRules() RulesReply {
	reg := r.openRules()
	reg.mu.Lock()
	defer reg.mu.Unlock()
	out := RulesReply{OK: true, Rules: []RuleInfo{}}
	for _, e := range reg.entries {
		out.Rules = append(out.Rules, r.ruleInfo(e))
	}
	sort.Slice(out.Rules, func(i, j int) bool { return out.Rules[i].Name < out.Rules[j].Name })
	return out
}

// nameRequest reads {"name":"…"}.
func nameRequest(body []byte) (string, error) {
	var req struct {
		Name string `json:"name"`
	}
	if len(body) > maxRuleRequest {
		return "", fmt.Errorf("request of %d bytes: at most %d", len(body), maxRuleRequest)
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return "", fmt.Errorf(`request is not {"name":"…"}: %v`, err)
	}
	if req.Name == "" {
		return "", errors.New(`request lacks "name"`)
	}
	if err := config.ValidToken(req.Name); err != nil {
		return "", fmt.Errorf("name: %w", err)
	}
	return req.Name, nil
}

func (r *Runtime) getRule(body []byte) RulesReply {
	name, err := nameRequest(body)
	if err != nil {
		return ruleFailure("%v", err)
	}
	reg := r.openRules()
	reg.mu.Lock()
	defer reg.mu.Unlock()
	e, ok := reg.entries[name]
	if !ok {
		return ruleFailure("no rule %q", name)
	}
	info := r.ruleInfo(e)
	return RulesReply{OK: true, Rule: &info}
}

func (r *Runtime) ruleSnapshot() []config.Rule {
	reg := r.openRules()
	reg.mu.Lock()
	defer reg.mu.Unlock()
	return r.ruleList(reg)
}

// parseRuleRequest reads the HCL text of one rule block, or JSON turned into it (rules_json.go), validated by
// config.ParseRuntimeRule exactly like a block of the file (env() refused), against the running rules for from
// and cycles. src is the HCL that was read.
func parseRuleRequest(body []byte, running []config.Rule) (rl *config.Rule, src []byte, reply RulesReply) {
	if len(body) > maxRuleRequest {
		return nil, nil, ruleFailure("request of %d bytes: at most %d", len(body), maxRuleRequest)
	}
	src = body
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' {
		var err error
		if src, err = ruleHCL(t); err != nil {
			return nil, nil, ruleFailure("%v", err)
		}
	}
	rl, diags := config.ParseRuntimeRule(src, "request", running)
	if diags.HasErrors() {
		reply := RulesReply{Error: "invalid rule: " + firstLine(diags), Diagnostics: diagnostics(diags)}
		if !bytes.Equal(src, body) {
			reply.HCL = string(src)
		}
		return nil, nil, reply
	}
	return rl, src, RulesReply{OK: true}
}

func (r *Runtime) addRule(body []byte, update bool) RulesReply {
	reg := r.openRules()
	reg.mu.Lock()
	defer reg.mu.Unlock()
	rl, src, reply := parseRuleRequest(body, r.ruleList(reg))
	if rl == nil {
		return reply
	}
	old, exists := reg.entries[rl.Name]
	switch {
	case exists && !update:
		return ruleFailure("rule %q exists (%s); use iot.control.rules.update", rl.Name, old.source)
	case !exists && update:
		return ruleFailure("no rule %q to update; use iot.control.rules.add", rl.Name)
	case exists && old.source == SourceConfig:
		return ruleFailure("rule %q is defined in the config file (%s:%d): change it there and reload", rl.Name,
			old.rule.DefRange.Filename, old.rule.DefRange.Start.Line)
	}
	if exists && old.rule.Type != rl.Type && !config.Chainable(rl) {
		for _, e := range reg.entries {
			if e.rule.From == rl.Name {
				return ruleFailure("rule %q reads %q's output, which a %s rule would not have", e.rule.Name, rl.Name, rl.Type)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := reg.store.Put(ctx, rl.Name, src); err != nil {
		return ruleFailure("store rule %q: %v", rl.Name, err)
	}
	e := &ruleEntry{rule: *rl, source: SourceRuntime, hcl: append([]byte(nil), src...), figures: &rule.Figures{}}
	if exists {
		if err := r.RemoveActor(GroupRules, rl.Name); err != nil {
			return ruleFailure("stop rule %q: %v", rl.Name, err)
		}
	}
	if err := r.AddActor(GroupRules, r.ruleSpec(e)); err != nil {
		delete(reg.entries, rl.Name)
		_ = reg.store.Delete(ctx, rl.Name)
		return ruleFailure("start rule %q: %v", rl.Name, err)
	}
	reg.entries[rl.Name] = e
	r.log.Info().Str("rule", rl.Name).Str("type", rl.Type).Bool("update", update).Msg("rule added through the control plane")
	info := r.ruleInfo(e)
	return RulesReply{OK: true, Rule: &info}
}

func (r *Runtime) removeRule(body []byte) RulesReply {
	name, err := nameRequest(body)
	if err != nil {
		return ruleFailure("%v", err)
	}
	reg := r.openRules()
	reg.mu.Lock()
	defer reg.mu.Unlock()
	e, ok := reg.entries[name]
	if !ok {
		return ruleFailure("no rule %q", name)
	}
	if e.source == SourceConfig {
		return ruleFailure("rule %q is defined in the config file (%s:%d): remove it there and reload", name,
			e.rule.DefRange.Filename, e.rule.DefRange.Start.Line)
	}
	for _, o := range reg.entries {
		if o.rule.From == name {
			return ruleFailure("rule %q reads %q's output: remove it first", o.rule.Name, name)
		}
	}
	if err := r.RemoveActor(GroupRules, name); err != nil {
		return ruleFailure("stop rule %q: %v", name, err)
	}
	delete(reg.entries, name)
	r.mon.actorMetrics().Forget(GroupRules + "/" + name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.forgetAlerts(ctx, reg, name)
	if err := reg.store.Delete(ctx, name); err != nil {
		return ruleFailure("rule %q stopped, but not deleted from %s: %v", name, reg.store, err)
	}
	return RulesReply{OK: true}
}

// testRequest is the body of iot.control.rules.test: a rule block, the points to run it on, and how long to let
// the clock run after them (so `for`, no_data and windows can close).
type testRequest struct {
	HCL     string          `json:"hcl"`
	Points  json.RawMessage `json:"points"`
	Advance string          `json:"advance"`
}

// testRule runs a rule definition on the points of the request and returns what it would publish, without
// installing it (eKuiper's rule test API runs a draft rule on mock data the same way). The points are processed as
// one batch at the gateway's time now, then the clock is advanced in ticks.
func testRule(body []byte, running []config.Rule) RulesReply {
	if len(body) > maxRuleRequest {
		return ruleFailure("request of %d bytes: at most %d", len(body), maxRuleRequest)
	}
	var req testRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return ruleFailure(`request is not {"hcl":"rule …","points":[…],"advance":"10s"}: %v`, err)
	}
	rl, _, reply := parseRuleRequest([]byte(req.HCL), running)
	if rl == nil {
		return reply
	}
	var advance time.Duration
	if req.Advance != "" {
		d, err := time.ParseDuration(req.Advance)
		if err != nil || d < 0 || d > 24*time.Hour {
			return ruleFailure("advance %q: a duration from 0 to 24h", req.Advance)
		}
		advance = d
	}
	var points []isp.Point
	if len(req.Points) > 0 && !bytes.Equal(req.Points, []byte("null")) {
		batch := append(append([]byte(`{"points":`), req.Points...), '}')
		var err error
		if points, err = isp.DecodeBatch(batch); err != nil {
			return ruleFailure("points: %v", err)
		}
	}
	if len(points) > maxTestPoints {
		return ruleFailure("%d points: at most %d", len(points), maxTestPoints)
	}
	now := time.Now()
	for i := range points {
		p := &points[i]
		if err := config.ValidToken(p.DeviceID); err != nil {
			return ruleFailure("point %d: device_id: %v", i, err)
		}
		if err := config.ValidToken(p.Key); err != nil {
			return ruleFailure("point %d: key: %v", i, err)
		}
		if p.Timestamp == 0 {
			p.Timestamp = now.UnixNano()
		}
	}
	rec := &testRecorder{}
	eng := rule.NewEngine(rl, rec)
	eng.Process(points, now)
	// At most 1,000 ticks, however long the advance: a request must not keep the control actor busy for long.
	step := max(rule.TickInterval, advance/1000)
	for t := time.Duration(0); t < advance; {
		t = min(t+step, advance)
		eng.Tick(now.Add(t))
	}
	st := eng.Stats()
	return RulesReply{OK: true, Outputs: rec.out, Stats: &st}
}

type testRecorder struct{ out []TestOutput }

func (t *testRecorder) Publish(subject string, data []byte) error {
	if len(t.out) >= maxTestPoints {
		return errors.New("too many outputs")
	}
	t.out = append(t.out, TestOutput{Subject: subject, Data: append(json.RawMessage(nil), data...)})
	return nil
}

// alertRules are the running alert rules' names.
func (r *Runtime) alertRules() []string {
	reg := r.openRules()
	reg.mu.Lock()
	defer reg.mu.Unlock()
	var out []string
	for n, e := range reg.entries {
		if e.rule.Type == config.RuleAlert {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// askRule sends a request to a rule's actor and waits for its answer.
func (r *Runtime) askRule(name string, msg any) (any, error) {
	pid := r.sys.NewLocalPID(r.root.Id + "/" + GroupRules + "/" + name)
	return r.sys.Root.RequestFuture(pid, msg, 2*time.Second).Result()
}

func (r *Runtime) listAlerts() RulesReply {
	out := RulesReply{OK: true, Alerts: []rule.Alert{}}
	for _, n := range r.alertRules() {
		res, err := r.askRule(n, &rule.ListAlerts{})
		list, ok := res.(*rule.AlertList)
		if err != nil || !ok {
			out.Missing = append(out.Missing, n)
			continue
		}
		out.Alerts = append(out.Alerts, list.Alerts...)
	}
	return out
}

// ackAlert reads {"dedup_key":"…","by":"…"} and acknowledges that alert.
func (r *Runtime) ackAlert(body []byte) RulesReply {
	var req struct {
		Key  string `json:"dedup_key"`
		Rule string `json:"rule"`
		By   string `json:"by"`
	}
	if len(body) > 4<<10 {
		return ruleFailure("request of %d bytes: at most 4096", len(body))
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return ruleFailure(`request is not {"dedup_key":"…","by":"…"}: %v`, err)
	}
	if req.Key == "" {
		return ruleFailure(`request lacks "dedup_key", the alert's de-duplication key (see iot.control.alerts.list)`)
	}
	if len(req.By) > 64 {
		return ruleFailure(`"by" is at most 64 characters`)
	}
	names := r.alertRules()
	if req.Rule != "" {
		names = []string{req.Rule}
	}
	for _, n := range names {
		res, err := r.askRule(n, &rule.AckAlert{Key: req.Key, By: req.By})
		if ack, ok := res.(*rule.AckReply); err == nil && ok && ack.Found {
			return RulesReply{OK: true}
		}
	}
	return ruleFailure("no active alert %q", req.Key)
}

// lazyKV is a deviceStore on a JetStream bucket opened at first use, waiting (bounded by the caller's context)
// for JetStream when the server was not there at start.
type lazyKV struct {
	bus     *Bus
	bucket  string
	gateway string // the keys' first token (kvStore); the alerts' bucket has keys of its own, shared by the gateways
	log     zerolog.Logger
	mu      sync.Mutex
	kv      *kvStore
}

func (l *lazyKV) String() string { return "JetStream bucket " + l.bucket }

func (l *lazyKV) open(ctx context.Context) (*kvStore, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kv != nil {
		return l.kv, nil
	}
	select {
	case <-l.bus.JetStreamReady():
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: JetStream not ready: %w", l, ctx.Err())
	}
	kv, err := l.bus.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: l.bucket, Description: "iotgw " + strings.ToLower(l.bucket), History: 1})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l, err)
	}
	l.kv = &kvStore{kv: kv, gateway: l.gateway, log: l.log}
	return l.kv, nil
}

func (l *lazyKV) Load(ctx context.Context) (map[string][]byte, error) {
	kv, err := l.open(ctx)
	if err != nil {
		return nil, err
	}
	return kv.Load(ctx)
}

func (l *lazyKV) Put(ctx context.Context, id string, data []byte) error {
	kv, err := l.open(ctx)
	if err != nil {
		return err
	}
	return kv.Put(ctx, id, data)
}

func (l *lazyKV) Delete(ctx context.Context, id string) error {
	kv, err := l.open(ctx)
	if err != nil {
		return err
	}
	return kv.Delete(ctx, id)
}

// alertKV keeps alert state in the bucket IOTGW_ALERTS, one entry per active alert, keyed
// {base64url(rule)}.{base64url(dedup key)} so that a rule loads its own with a subject filter.
type alertKV struct {
	lazy lazyKV
	bus  *Bus
	log  zerolog.Logger
	once sync.Once

	streamMu sync.Mutex
	stream   jetstream.Stream // the bucket's stream, for listing a rule's keys
}

func (a *alertKV) kv(ctx context.Context) (jetstream.KeyValue, error) {
	a.once.Do(func() { a.lazy = lazyKV{bus: a.bus, bucket: AlertsBucket, log: a.log} })
	s, err := a.lazy.open(ctx)
	if err != nil {
		return nil, err
	}
	return s.kv, nil
}

func alertKey(rl, key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(rl)) + "." + base64.RawURLEncoding.EncodeToString([]byte(key))
}

func (a *alertKV) Load(ctx context.Context, rl string) ([]rule.Alert, error) {
	kv, err := a.kv(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := a.keys(ctx, rl)
	if err != nil {
		return nil, err
	}
	var out []rule.Alert
	for _, key := range keys {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var al rule.Alert
		if err := json.Unmarshal(e.Value(), &al); err != nil {
			a.log.Error().Str("key", key).Err(err).Msg("stored alert cannot be read; skipped")
			continue
		}
		out = append(out, al)
	}
	return out, nil
}

// keys are the keys a rule has in the bucket, from one STREAM.INFO request with the rule's subjects: kv's
// ListKeysFiltered creates and deletes a consumer for it, which at the start of 200 alert rules on an empty bucket
// was most of the time a gateway took to start (bench/rules_test.go BenchmarkRulesLoaded). A key purged since
// (its marker still has a message) is a key here; Get then finds nothing and Load skips it.
func (a *alertKV) keys(ctx context.Context, rl string) ([]string, error) {
	a.streamMu.Lock()
	st := a.stream
	a.streamMu.Unlock()
	if st == nil {
		s, err := a.bus.JS.Stream(ctx, "KV_"+AlertsBucket)
		if err != nil {
			return nil, err
		}
		a.streamMu.Lock()
		a.stream, st = s, s
		a.streamMu.Unlock()
	}
	prefix := "$KV." + AlertsBucket + "."
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(prefix+base64.RawURLEncoding.EncodeToString([]byte(rl))+".*"))
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(info.State.Subjects))
	for subject := range info.State.Subjects {
		keys = append(keys, strings.TrimPrefix(subject, prefix))
	}
	sort.Strings(keys) // the order of the stored alerts does not depend on a map's
	return keys, nil
}

func (a *alertKV) Put(ctx context.Context, al *rule.Alert) error {
	kv, err := a.kv(ctx)
	if err != nil {
		return err
	}
	data, err := json.Marshal(al)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, alertKey(al.Rule, al.Key), data)
	return err
}

func (a *alertKV) Delete(ctx context.Context, al *rule.Alert) error {
	kv, err := a.kv(ctx)
	if err != nil {
		return err
	}
	err = kv.Purge(ctx, alertKey(al.Rule, al.Key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// alertForgetter is an alert store that can drop every alert of a rule (a rule removed must not bring its alerts
// back if a rule of that name comes again).
type alertForgetter interface {
	forget(ctx context.Context, rule string) error
}

func (r *Runtime) forgetAlerts(ctx context.Context, reg *ruleRegistry, name string) {
	if f, ok := reg.alerts.(alertForgetter); ok {
		if err := f.forget(ctx, name); err != nil {
			r.log.Warn().Err(err).Str("rule", name).Msg("alerts of a removed rule not deleted from the store")
		}
	}
	// The windows it handed on at its stop: the in-memory store's are this process's alone, so nothing else will
	// take them. Those in IOTGW_WINDOWS stay, for the other gateways that share the rule (they read them at the
	// "leave"), and expire with the bucket's TTL.
	if m, ok := reg.windows.(*windowMemory); ok {
		m.forget(name)
	}
}

func (a *alertKV) forget(ctx context.Context, rl string) error {
	list, err := a.Load(ctx, rl)
	if err != nil {
		return err
	}
	for i := range list {
		if err := a.Delete(ctx, &list[i]); err != nil {
			return err
		}
	}
	return nil
}

func (m *alertMemory) forget(_ context.Context, rl string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.alerts, rl)
	return nil
}

// alertMemory keeps alert state without JetStream: across restarts of a rule's actor, not of the gateway.
type alertMemory struct {
	mu     sync.Mutex
	alerts map[string]map[string]rule.Alert
}

func newAlertMemory() *alertMemory { return &alertMemory{alerts: map[string]map[string]rule.Alert{}} }

func (m *alertMemory) Load(_ context.Context, rl string) ([]rule.Alert, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]rule.Alert, 0, len(m.alerts[rl]))
	for _, a := range m.alerts[rl] {
		out = append(out, a)
	}
	return out, nil
}

func (m *alertMemory) Put(_ context.Context, a *rule.Alert) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.alerts[a.Rule] == nil {
		m.alerts[a.Rule] = map[string]rule.Alert{}
	}
	m.alerts[a.Rule][a.Key] = *a
	return nil
}

func (m *alertMemory) Delete(_ context.Context, a *rule.Alert) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.alerts[a.Rule], a.Key)
	return nil
}
