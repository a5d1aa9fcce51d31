package system

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/iotgw/actors/rule"
	"github.com/iotgw/iotgw/config"
	"github.com/nats-io/nats.go"
)

// collect subscribes to subject and keeps every message body.
type collected struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func collect(t *testing.T, nc *nats.Conn, subject string) *collected {
	t.Helper()
	c := &collected{}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		c.mu.Lock()
		c.msgs = append(c.msgs, m)
		c.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return c
}

func (c *collected) all() []*nats.Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*nats.Msg(nil), c.msgs...)
}

func (c *collected) n() int { return len(c.all()) }

func request(t *testing.T, nc *nats.Conn, subject string, body string) RulesReply {
	t.Helper()
	msg, err := nc.Request(subject, []byte(body), 10*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	var r RulesReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		t.Fatalf("reply %s: %q: %v", subject, msg.Data, err)
	}
	return r
}

func publishBatch(t *testing.T, nc *nats.Conn, device string, points ...string) {
	t.Helper()
	body := `{"points":[` + strings.Join(points, ",") + `]}`
	if err := nc.Publish("iot.processed.batch."+device, []byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func point(device, key string, v float64) string {
	return fmt.Sprintf(`{"device_id":%q,"key":%q,"value":%v,"type":"float64","quality":1,"timestamp":%d}`, device, key, v, time.Now().UnixNano())
}

// TestRulesRunOnTheBus: a mock device's points go through the processor to a chain of rules of the config file
// (transform → filter) and out on iot.rules.{rule}.{device}, and the rules show in the tree and rules.list.
func TestRulesRunOnTheBus(t *testing.T) {
	cfg := parseConfig(t, `
device "d1" {
  driver   = "mock"
  interval = "50ms"
  point "temp" {
    signal = "constant"
    value  = 20
  }
}
rule "to_f" {
  type   = "transform"
  match { keys = ["temp"] }
  value  = "value * 1.8 + 32"
  rename = "temp_f"
}
rule "warm" {
  type = "filter"
  from = "to_f"
  when = "value > 60"
}
`)
	rt := startRuntime(t, cfg)
	nc := client(t, rt.Bus().URL)
	out := collect(t, nc, "iot.rules.warm.>")
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if out.n() == 0 {
			return errNotYet
		}
		return nil
	})
	m := out.all()[0]
	if m.Subject != "iot.rules.warm.d1" || !strings.Contains(string(m.Data), `"key":"temp_f","value":68,"type":"float64"`) {
		t.Errorf("got %s %s", m.Subject, m.Data)
	}
	if m.Header.Get("Iot-Trace-Id") == "" {
		t.Error("the rule's output lost the batch's trace id")
	}
	if n := find(tree(t, nc), "rules/warm"); n == nil || n.State != StateRunning || len(n.Subjects) != 1 || n.Subjects[0] != "iot.rules.to_f.> (queue iotgw.rules.warm)" {
		t.Errorf("tree: got %+v", n)
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := find(tree(t, nc), "rules/warm"); n == nil || n.Rule == nil || n.Rule.In == 0 || n.Rule.Out == 0 {
			return fmt.Errorf("rule figures in the tree: %+v", n)
		}
		return nil
	})
	list := request(t, nc, SubjectRulesList, "")
	if !list.OK || len(list.Rules) != 2 || list.Rules[1].Name != "warm" || list.Rules[1].Queue != "iotgw.rules.warm" {
		t.Fatalf("rules.list: got %+v", list)
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		st := request(t, nc, SubjectRulesGet, `{"name":"to_f"}`).Rule.Stats
		if st.In == 0 || st.Out == 0 || st.In != st.Out {
			return fmt.Errorf("to_f stats %+v", st)
		}
		return nil
	})
	// The same figures on /metrics.
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		var matched, in float64
		for _, s := range scrape(t, &http.Client{Timeout: 5 * time.Second}, rt) {
			switch {
			case s.name == "iotgw_rule_matched_total" && s.labels["rule"] == "warm" && s.labels["type"] == "filter":
				matched = s.value
			case s.name == "iotgw_points_in_total" && s.labels["actor"] == "rules/warm":
				in = s.value
			}
		}
		if matched == 0 || in == 0 {
			return fmt.Errorf("metrics: matched %v, in %v", matched, in)
		}
		return nil
	})
}

// TestRuleExpressionErrorOnTheBus: a point that makes the expression fail goes to iot.errors.rules with the
// rule and the point; the rule goes on with the next one.
func TestRuleExpressionErrorOnTheBus(t *testing.T) {
	cfg := parseConfig(t, `
rule "num" {
  type = "filter"
  when = "int(text) > 1"
}
`)
	rt := startRuntime(t, cfg)
	nc := client(t, rt.Bus().URL)
	errs := collect(t, nc, "iot.errors.rules")
	out := collect(t, nc, "iot.rules.num.>")
	publishBatch(t, nc, "d1", `{"device_id":"d1","key":"s","value":"x","quality":1,"timestamp":1}`, point("d1", "n", 5))
	publishBatch(t, nc, "d1", `{"points":`) // not a batch
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if errs.n() < 2 || out.n() < 1 {
			return fmt.Errorf("%d errors, %d outputs", errs.n(), out.n())
		}
		return nil
	})
	var ev rule.ErrorEvent
	if err := json.Unmarshal(errs.all()[0].Data, &ev); err != nil || ev.Rule != "num" || !strings.Contains(string(ev.Point), `"value":"x"`) {
		t.Errorf("error event: %s", errs.all()[0].Data)
	}
	if !strings.Contains(string(errs.all()[1].Data), `"rule":"num"`) {
		t.Errorf("decode error event: %s", errs.all()[1].Data)
	}
	if n := find(tree(t, nc), "rules/num"); n == nil || n.State != StateRunning || n.Restarts != 0 {
		t.Errorf("the rule after bad input: %+v", n)
	}
}

// TestRulesControl: add, get, update, test and remove through iot.control.rules.*, validated like the file.
func TestRulesControl(t *testing.T) {
	cfg := parseConfig(t, `
rule "base" {
  type = "filter"
  when = "quality == 1"
}
`)
	rt := startRuntime(t, cfg)
	nc := client(t, rt.Bus().URL)

	bad := []struct{ name, body, pos, want string }{
		{"syntax", "rule \"x\" {\n  type = \"filter\"\n  when = \"value >\"\n}", "request:3:", "Invalid expression"},
		{"unknown field", "rule \"x\" {\n  type = \"filter\"\n  when = \"valu > 1\"\n}", "request:3:11", "unknown name valu"},
		{"wrong type", "rule \"x\" {\n  type = \"filter\"\n  when = \"device > 1\"\n}", "request:3:", "mismatched types"},
		{"name of a file rule", "rule \"base\" {\n  type = \"filter\"\n  when = \"true\"\n}", "", "exists (config)"},
		{"unknown from", "rule \"x\" {\n  type = \"filter\"\n  from = \"y\"\n  when = \"true\"\n}", "request:3:10", "No rule is named"},
		{"env", "rule \"x\" {\n  type = \"alert\"\n  when = \"true\"\n  message = env(\"HOME\")\n}", "request:4:", "env() is only allowed"},
		{"forward to control", "rule \"x\" {\n  type = \"forward\"\n  subject = \"iot.control.reload\"\n}", "request:3:", "may not publish"},
		{"forward to JetStream", "rule \"x\" {\n  type = \"forward\"\n  subject = \"$JS.API.STREAM.DELETE.IOT_DATA\"\n}", "request:3:", "may not publish"},
		{"not hcl", `rule x`, "request:1:", ""},
		{"json without a name", `{"rule":1}`, "", `missing "name"`},
		{"oversized", strings.Repeat("#", maxRuleRequest+1), "", "at most"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			r := request(t, nc, SubjectRulesAdd, tc.body)
			if r.OK {
				t.Fatalf("accepted")
			}
			text := r.Error
			for _, d := range r.Diagnostics {
				text += " | " + d.Pos + " " + d.Summary + ": " + d.Detail
			}
			if !strings.Contains(text, tc.pos) || !strings.Contains(text, tc.want) {
				t.Errorf("got %q, want %q at %q", text, tc.want, tc.pos)
			}
		})
	}

	// JSON is the same block: {"name", "type", …, "match": {…}, "derive": {"key": {…}}}.
	js := request(t, nc, SubjectRulesAdd, `{"name":"j","type":"filter","when":"valu > 1","match":{"keys":["t"]}}`)
	if js.OK || !strings.Contains(js.HCL, `rule "j" {`) || len(js.Diagnostics) == 0 || !strings.HasPrefix(js.Diagnostics[0].Pos, "request:") {
		t.Errorf("bad JSON rule: %+v", js)
	}
	if r := request(t, nc, SubjectRulesAdd, `{"type":"filter"}`); r.OK || !strings.Contains(r.Error, `missing "name"`) {
		t.Errorf("JSON rule without a name: %+v", r)
	}
	js = request(t, nc, SubjectRulesAdd, `{"name":"j","type":"transform","match":{"devices":["m1"]},"derive":{"p":{"value":"values.v * values.i","unit":"W"}}}`)
	if !js.OK || !strings.Contains(js.Rule.HCL, `derive "p" {`) {
		t.Errorf("JSON rule: %+v", js)
	}
	if r := request(t, nc, SubjectRulesRemove, `{"name":"j"}`); !r.OK {
		t.Errorf("remove j: %+v", r)
	}
	add := request(t, nc, SubjectRulesAdd, "rule \"hot\" {\n  type = \"filter\"\n  from = \"base\"\n  when = \"value > 50\"\n}")
	if !add.OK || add.Rule == nil || add.Rule.Source != SourceRuntime {
		t.Fatalf("add: %+v", add)
	}
	cyc := request(t, nc, SubjectRulesAdd, "rule \"c2\" {\n  type = \"filter\"\n  from = \"c2\"\n  when = \"true\"\n}")
	if cyc.OK || len(cyc.Diagnostics) == 0 || cyc.Diagnostics[0].Pos != "request:3:10" || !strings.Contains(cyc.Diagnostics[0].Summary, "cycle") {
		t.Errorf("cycle: %+v", cyc)
	}
	out := collect(t, nc, "iot.rules.hot.>")
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		publishBatch(t, nc, "d1", point("d1", "t", 40), point("d1", "t", 60))
		if out.n() == 0 {
			return errNotYet
		}
		return nil
	})
	if got := string(out.all()[0].Data); !strings.Contains(got, `"value":60`) || strings.Contains(got, `"value":40`) {
		t.Errorf("hot output: %s", got)
	}
	if r := request(t, nc, SubjectRulesRemove, `{"name":"base"}`); r.OK || !strings.Contains(r.Error, "config file") {
		t.Errorf("remove a file rule: %+v", r)
	}
	upd := request(t, nc, SubjectRulesUpdate, "rule \"hot\" {\n  type = \"filter\"\n  from = \"base\"\n  when = \"value > 70\"\n}")
	if !upd.OK {
		t.Fatalf("update: %+v", upd)
	}
	get := request(t, nc, SubjectRulesGet, `{"name":"hot"}`)
	if !get.OK || !strings.Contains(get.Rule.HCL, "value > 70") {
		t.Errorf("get: %+v", get)
	}
	for _, body := range []string{``, `{`, `{"name":""}`, `{"name":"a.b"}`, `{"name":"nope"}`} {
		if r := request(t, nc, SubjectRulesGet, body); r.OK {
			t.Errorf("get %q: accepted", body)
		}
	}
	if r := request(t, nc, SubjectRulesRemove, `{"name":"hot"}`); !r.OK {
		t.Errorf("remove: %+v", r)
	}
	if n := find(tree(t, nc), "rules/hot"); n != nil {
		t.Errorf("removed rule still in the tree: %+v", n)
	}
}

// TestRulesTest: iot.control.rules.test runs a definition on the request's points and says what it would emit,
// without installing it.
func TestRulesTest(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, ``))
	nc := client(t, rt.Bus().URL)
	req := func(hcl, points, advance string) string {
		b, _ := json.Marshal(map[string]any{"hcl": hcl, "points": json.RawMessage(points), "advance": advance})
		return string(b)
	}
	r := request(t, nc, SubjectRulesTest, req("rule \"t\" {\n  type = \"alert\"\n  when = \"value > 85\"\n  for = \"1s\"\n}",
		`[{"device_id":"d1","key":"temp","value":90}]`, "2s"))
	if !r.OK || len(r.Outputs) != 2 || r.Outputs[0].Subject != "iot.alerts.warning.d1" ||
		!strings.Contains(string(r.Outputs[0].Data), `"event":"pending"`) || !strings.Contains(string(r.Outputs[1].Data), `"event":"firing"`) {
		t.Errorf("test alert: %+v", r)
	}
	r = request(t, nc, SubjectRulesTest, req("rule \"a\" {\n  type = \"aggregate\"\n  window = \"count\"\n  count = 2\n  functions = [\"avg\"]\n}",
		`[{"device_id":"d1","key":"k","value":1,"timestamp":1},{"device_id":"d1","key":"k","value":3,"timestamp":2}]`, ""))
	if !r.OK || len(r.Outputs) != 1 || r.Outputs[0].Subject != "iot.aggregated.d1.k" || !strings.Contains(string(r.Outputs[0].Data), `"values":{"avg":2}`) {
		t.Errorf("test aggregate: %+v", r)
	}
	if n := find(tree(t, nc), "rules/t"); n != nil {
		t.Error("rules.test installed the rule")
	}
	for name, body := range map[string]string{
		"not json":    `rule "x" {}`,
		"bad rule":    req("rule \"x\" {\n  type = \"filter\"\n  when = \"nope\"\n}", `[]`, ""),
		"bad points":  req("rule \"x\" {\n  type = \"filter\"\n  when = \"true\"\n}", `[{"key":1}]`, ""),
		"bad device":  req("rule \"x\" {\n  type = \"filter\"\n  when = \"true\"\n}", `[{"device_id":"a.b","key":"k","value":1}]`, ""),
		"bad advance": req("rule \"x\" {\n  type = \"filter\"\n  when = \"true\"\n}", `[]`, "1y"),
		"truncated":   req("rule \"x\" {\n  type = \"filter\"\n  when = \"true\"\n}", `[]`, "")[:30],
	} {
		if r := request(t, nc, SubjectRulesTest, body); r.OK || r.Error == "" {
			t.Errorf("%s: got %+v", name, r)
		}
	}
}

// TestFiringAlertSurvivesAGatewayRestart: with JetStream on, a firing alert is in the IOTGW_ALERTS bucket; the
// next gateway on the same store neither fires it again (a point still above the threshold says nothing) nor
// forgets it (it is listed, can be acked, and resolves when the value falls).
func TestFiringAlertSurvivesAGatewayRestart(t *testing.T) {
	store := t.TempDir()
	src := fmt.Sprintf(`
nats {
  jetstream {
    enabled   = true
    store_dir = %q
  }
}
rule "hot" {
  type = "alert"
  when = "value > 85"
}
`, store)
	rt := startRuntime(t, parseConfig(t, src))
	nc := client(t, rt.Bus().URL)
	events := collect(t, nc, "iot.alerts.>")
	publishBatch(t, nc, "d1", point("d1", "t", 90))
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if events.n() != 1 {
			return fmt.Errorf("%d events", events.n())
		}
		return nil
	})
	// The state is stored by the rule's worker: wait for it in the bucket before the restart.
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		kv, err := rt.Bus().JS.KeyValue(t.Context(), AlertsBucket)
		if err != nil {
			return err
		}
		keys, err := kv.ListKeys(t.Context())
		if err != nil {
			return err
		}
		n := 0
		for range keys.Keys() {
			n++
		}
		if n != 1 {
			return fmt.Errorf("%d stored alerts", n)
		}
		return nil
	})
	nc.Close()
	if err := rt.Stop(); err != nil {
		t.Fatal(err)
	}

	rt2 := startRuntime(t, parseConfig(t, src))
	nc2 := client(t, rt2.Bus().URL)
	events2 := collect(t, nc2, "iot.alerts.>")
	list := request(t, nc2, SubjectAlertsList, "")
	if !list.OK || len(list.Alerts) != 1 || list.Alerts[0].Key != "hot:d1:t:when" || list.Alerts[0].State != rule.StateFiring {
		t.Fatalf("alerts.list after the restart: %+v", list)
	}
	publishBatch(t, nc2, "d1", point("d1", "t", 95)) // still above: not fired again
	if r := request(t, nc2, SubjectAlertsAck, `{"dedup_key":"hot:d1:t:when","by":"operator"}`); !r.OK {
		t.Fatalf("ack: %+v", r)
	}
	if r := request(t, nc2, SubjectAlertsAck, `{"dedup_key":"nope"}`); r.OK {
		t.Error("ack of an unknown alert accepted")
	}
	for _, body := range []string{``, `{`, `{"dedup_key":""}`, `{"dedup_key":"k","by":"` + strings.Repeat("x", 100) + `"}`} {
		if r := request(t, nc2, SubjectAlertsAck, body); r.OK {
			t.Errorf("ack %q accepted", body)
		}
	}
	publishBatch(t, nc2, "d1", point("d1", "t", 70))
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if events2.n() < 2 {
			return fmt.Errorf("%d events", events2.n())
		}
		return nil
	})
	var got []string
	for _, m := range events2.all() {
		var a rule.Alert
		if err := json.Unmarshal(m.Data, &a); err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Subject+" "+a.Event)
	}
	want := []string{"iot.alerts.warning.d1 acknowledged", "iot.alerts.warning.d1 resolved"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("events after the restart: got %q, want %q", got, want)
	}
	if list := request(t, nc2, SubjectAlertsList, ""); len(list.Alerts) != 0 {
		t.Errorf("resolved alert still listed: %+v", list.Alerts)
	}
}

// TestPartitionedRuleTwoGateways: two gateways on one NATS server share a rule partitioned by device: each point
// is processed by exactly one of them (counted), each device by the same one, and when one leaves the other takes
// its devices with nothing lost or doubled.
func TestPartitionedRuleTwoGateways(t *testing.T) {
	const ruleSrc = `
rule "share" {
  type      = "filter"
  partition = "device"
  when      = "true"
}
`
	cfgA := parseConfig(t, `gateway { id = "gw-a" }`+ruleSrc)
	a := startRuntime(t, cfgA)
	cfgB := parseConfig(t, fmt.Sprintf(`gateway { id = "gw-b" }
nats { url = %q }`, a.Bus().URL)+ruleSrc)
	b := startRuntime(t, cfgB)
	members := func(rt *Runtime) int { return rt.rules.entries["share"].figures.Get().Members }
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if members(a) != 2 || members(b) != 2 {
			return fmt.Errorf("members: a %d, b %d", members(a), members(b))
		}
		return nil
	})
	nc := client(t, a.Bus().URL)
	out := collect(t, nc, "iot.rules.share.>")

	send := func(from, n int) {
		for i := from; i < from+n; i++ {
			dev := fmt.Sprintf("dev-%d", i%20)
			publishBatch(t, nc, dev, fmt.Sprintf(`{"device_id":%q,"key":"seq","value":%d,"quality":1,"timestamp":1}`, dev, i))
		}
	}
	// count waits for want outputs after the first skip, then checks each seq came once and each device from one
	// gateway; it returns the gateways by device.
	count := func(skip, from, want int) map[string]string {
		t.Helper()
		checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			if n := out.n() - skip; n < want {
				return fmt.Errorf("%d of %d outputs", n, want)
			}
			return nil
		})
		time.Sleep(200 * time.Millisecond) // a duplicate would come now
		msgs := out.all()[skip:]
		if len(msgs) != want {
			t.Fatalf("got %d outputs, want %d: a point was processed twice", len(msgs), want)
		}
		seen := map[int]bool{}
		owner := map[string]string{}
		for _, m := range msgs {
			var body struct {
				Points []struct {
					Device string `json:"device_id"`
					Value  int    `json:"value"`
				} `json:"points"`
			}
			if err := json.Unmarshal(m.Data, &body); err != nil || len(body.Points) != 1 {
				t.Fatalf("output %s: %v", m.Data, err)
			}
			p := body.Points[0]
			if seen[p.Value] {
				t.Errorf("seq %d processed twice", p.Value)
			}
			seen[p.Value] = true
			gw := m.Header.Get(rule.HeaderGateway)
			if o, ok := owner[p.Device]; ok && o != gw {
				t.Errorf("device %s processed by %s and %s", p.Device, o, gw)
			}
			owner[p.Device] = gw
		}
		for i := from; i < from+want; i++ {
			if !seen[i] {
				t.Errorf("seq %d not processed", i)
			}
		}
		return owner
	}
	send(0, 1000)
	owners := count(0, 0, 1000)
	byGateway := map[string]int{}
	for _, gw := range owners {
		byGateway[gw]++
	}
	if len(owners) != 20 || byGateway["gw-a"] == 0 || byGateway["gw-b"] == 0 {
		t.Errorf("devices by gateway: %v (want the 20 devices shared by both)", byGateway)
	}
	t.Logf("devices by gateway: %v", byGateway)

	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if members(a) != 1 {
			return fmt.Errorf("members of a: %d", members(a))
		}
		return nil
	})
	send(1000, 200)
	for dev, gw := range count(1000, 1000, 200) {
		if gw != "gw-a" {
			t.Errorf("after gw-b left, %s went to %s", dev, gw)
		}
	}
}

// TestReloadRules: a reload starts the rules added to the file, restarts the changed ones, stops the removed ones
// and leaves the others (and a rule added at run time) running untouched; a change of position is no change; a
// file whose rules would break a rule added at run time changes no rule.
func TestReloadRules(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gw.hcl")
	write := func(src string) {
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const keep = "rule \"keep\" {\n  type = \"filter\"\n  when = \"value > 1\"\n}\n"
	const change = "rule \"change\" {\n  type = \"filter\"\n  when = \"value > 1\"\n}\n"
	const gone = "rule \"gone\" {\n  type = \"filter\"\n  when = \"true\"\n}\n"
	write(keep + change + gone)
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	rt := startRuntime(t, cfg, WithConfigPath(path))
	nc := client(t, rt.Bus().URL)
	if r := request(t, nc, SubjectRulesAdd, "rule \"mine\" {\n  type = \"filter\"\n  from = \"keep\"\n  when = \"true\"\n}"); !r.OK {
		t.Fatalf("add: %+v", r)
	}
	since := func(path string) string {
		n := find(tree(t, nc), path)
		if n == nil || n.Since == nil {
			return ""
		}
		return n.Since.String()
	}
	keepSince, mineSince := since("rules/keep"), since("rules/mine")

	write("# moved\n" + keep + strings.Replace(change, "value > 1", "value > 2", 1) + "rule \"new\" {\n  type = \"forward\"\n}\n")
	res := rt.Reload()
	if !res.OK || fmt.Sprint(res.Reload.Added, res.Reload.Changed, res.Reload.Removed) != "[rules/new] [rules/change] [rules/gone]" {
		t.Fatalf("reload: %+v %+v", res, res.Reload)
	}
	if since("rules/keep") != keepSince || since("rules/mine") != mineSince {
		t.Error("an unchanged rule was restarted")
	}
	if get := request(t, nc, SubjectRulesGet, `{"name":"change"}`); !get.OK || get.Rule.State != StateRunning {
		t.Errorf("changed rule: %+v", get)
	}
	if find(tree(t, nc), "rules/gone") != nil || find(tree(t, nc), "rules/new") == nil {
		t.Error("removed or added rule not so in the tree")
	}
	write("rule \"other\" {\n  type = \"filter\"\n  when = \"true\"\n}\n") // mine reads keep, which would go
	if res := rt.Reload(); res.OK || !strings.Contains(strings.Join(res.Reload.Failed, ";"), "no rule changed") {
		t.Errorf("reload that breaks a run-time rule: %+v", res)
	}
	if find(tree(t, nc), "rules/keep") == nil || find(tree(t, nc), "rules/other") != nil {
		t.Error("a refused reload changed rules")
	}
}

// FuzzRulesTestRequest: whatever body iot.control.rules.test gets, it answers ok or an error, never panics, and a
// rule it ran published nowhere but its own subjects.
func FuzzRulesTestRequest(f *testing.F) {
	f.Add([]byte(`{"hcl":"rule \"t\" {\n type = \"alert\"\n when = \"value > 1\"\n for = \"1s\"\n}","points":[{"device_id":"d","key":"k","value":2}],"advance":"2s"}`))
	f.Add([]byte(`{"hcl":"rule \"a\" {\n type = \"aggregate\"\n window = \"count\"\n count = 1\n}","points":[{"device_id":"d","key":"k","value":2}]}`))
	f.Add([]byte(`{"hcl":"rule \"f\" {\n type = \"forward\"\n subject = \"x.{device}.{key}\"\n}","points":[{"device_id":"d","key":"k","value":"s"}]}`))
	f.Add([]byte(`{"hcl":"","points":null}`))
	f.Add([]byte(`{"points":[{"key":"k","value":1e309}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r := testRule(body, nil)
		if !r.OK && r.Error == "" {
			t.Fatal("neither ok nor an error")
		}
		for _, o := range r.Outputs {
			if strings.HasPrefix(o.Subject, "iot.control.") || strings.HasPrefix(o.Subject, "$") || strings.HasPrefix(o.Subject, "_INBOX.") {
				t.Fatalf("published on %s", o.Subject)
			}
		}
	})
}

// TestRuleCrashInTheMiddleOfAFiringAlert: an alert rule's actor crashes (a fault: its panic is the supervisor's)
// while an alert fires; the supervisor restarts it, and the new incarnation has the alert from the store: not
// fired again, and resolved when it clears. A rule added at run time is there again after a gateway restart.
func TestRuleCrashInTheMiddleOfAFiringAlert(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `
faults { enabled = true }
rule "hot" {
  type = "alert"
  when = "value > 85"
}
`))
	nc := client(t, rt.Bus().URL)
	events := collect(t, nc, "iot.alerts.>")
	publishBatch(t, nc, "d1", point("d1", "t", 90))
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if events.n() != 1 {
			return fmt.Errorf("%d events", events.n())
		}
		return nil
	})
	msg, err := nc.Request(SubjectFaultsInject, []byte(`{"kind":"crash","target":"rules/hot"}`), 5*time.Second)
	if err != nil || !strings.Contains(string(msg.Data), `"ok":true`) {
		t.Fatalf("inject crash: %v %s", err, msg.Data)
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := find(tree(t, nc), "rules/hot"); n == nil || n.Restarts < 1 || n.State != StateRunning {
			return fmt.Errorf("rules/hot after the crash: %+v", n)
		}
		return nil
	})
	publishBatch(t, nc, "d1", point("d1", "t", 95)) // still above: not fired again
	publishBatch(t, nc, "d1", point("d1", "t", 70))
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if events.n() < 2 {
			return fmt.Errorf("%d events", events.n())
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond)
	var got []string
	for _, m := range events.all() {
		var a rule.Alert
		_ = json.Unmarshal(m.Data, &a)
		got = append(got, a.Event)
	}
	if strings.Join(got, ",") != "firing,resolved" {
		t.Errorf("events: got %q, want firing then resolved", got)
	}
}

// TestRuntimeRuleStoredAcrossRestarts: a rule added at run time is stored (rules.json without JetStream) and runs
// again after a restart of the gateway.
func TestRuntimeRuleStoredAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	start := func() *Runtime {
		cfg := parseConfig(t, ``)
		cfg.NATS.Port = -1
		cfg.Gateway.HTTPAddress = ""
		cfg.Gateway.DataDir = dir
		rt := New(cfg, WithLogger(testLogger(t)))
		if err := rt.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		return rt
	}
	rt := start()
	nc := client(t, rt.Bus().URL)
	if r := request(t, nc, SubjectRulesAdd, "rule \"kept\" {\n  type = \"filter\"\n  when = \"value > 1\"\n}"); !r.OK {
		t.Fatalf("add: %+v", r)
	}
	nc.Close()
	if err := rt.Stop(); err != nil {
		t.Fatal(err)
	}
	rt2 := start()
	defer func() { _ = rt2.Stop() }()
	nc2 := client(t, rt2.Bus().URL)
	get := request(t, nc2, SubjectRulesGet, `{"name":"kept"}`)
	if !get.OK || get.Rule.Source != SourceRuntime || get.Rule.State != StateRunning {
		t.Errorf("after the restart: %+v", get)
	}
}

// FuzzRuleRequest: an add or update body, HCL or JSON, gives a rule or an error, never a panic, and a JSON body's
// rule is the block it was turned into.
func FuzzRuleRequest(f *testing.F) {
	f.Add([]byte(`{"name":"j","type":"filter","when":"value > 1","match":{"keys":["t"]}}`))
	f.Add([]byte(`{"name":"j","type":"transform","derive":{"p":{"value":"values.v * values.i"}}}`))
	f.Add([]byte(`{"name":"j","type":"alert","when":"true","message":"${env(\"HOME\")}"}`))
	f.Add([]byte("rule \"h\" {\n type = \"forward\"\n subject = \"out.{device}\"\n}"))
	f.Add([]byte(`{"name":"a.b","type":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		rl, src, reply := parseRuleRequest(body, nil)
		if rl == nil {
			if reply.OK || reply.Error == "" {
				t.Fatalf("no rule and no error: %+v", reply)
			}
			return
		}
		if again, diags := config.ParseRuntimeRule(src, "request", nil); diags.HasErrors() || again.Name != rl.Name {
			t.Fatalf("the HCL read does not give the rule again: %v", diags)
		}
	})
}

// TestAlertStateMovesWithTheDevice: two gateways share an alert rule and one JetStream (the second is a client of
// the first's server); when the gateway that owns a device with a firing alert leaves, the other takes the device
// and its alert from the shared IOTGW_ALERTS bucket: not fired again, resolved when it clears.
func TestAlertStateMovesWithTheDevice(t *testing.T) {
	const ruleSrc = `
rule "hot" {
  type = "alert"
  when = "value > 85"
}
`
	js := fmt.Sprintf("jetstream {\n enabled = true\n store_dir = %q\n}", t.TempDir())
	a := startRuntime(t, parseConfig(t, `gateway { id = "gw-a" }
nats {
`+js+`
}`+ruleSrc))
	b := startRuntime(t, parseConfig(t, fmt.Sprintf(`gateway { id = "gw-b" }
nats {
  url = %q
  jetstream { enabled = true }
}`, a.Bus().URL)+ruleSrc))
	members := func(rt *Runtime) int { return rt.rules.entries["hot"].figures.Get().Members }
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if members(a) != 2 || members(b) != 2 {
			return fmt.Errorf("members: a %d, b %d", members(a), members(b))
		}
		return nil
	})
	nc := client(t, a.Bus().URL)
	events := collect(t, nc, "iot.alerts.>")
	for i := range 10 {
		dev := fmt.Sprintf("dev-%d", i)
		publishBatch(t, nc, dev, point(dev, "t", 90))
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if events.n() != 10 {
			return fmt.Errorf("%d events", events.n())
		}
		return nil
	})
	var moved string
	for _, m := range events.all() {
		var al rule.Alert
		_ = json.Unmarshal(m.Data, &al)
		if m.Header.Get(rule.HeaderGateway) == "gw-b" {
			moved = al.Device
		}
	}
	if moved == "" {
		t.Fatalf("gw-b owns none of the 10 devices: a %+v, b %+v", a.rules.entries["hot"].figures.Get(), b.rules.entries["hot"].figures.Get())
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error { // every alert stored
		kv, err := a.Bus().JS.KeyValue(t.Context(), AlertsBucket)
		if err != nil {
			return err
		}
		keys, err := kv.ListKeys(t.Context())
		if err != nil {
			return err
		}
		n := 0
		for range keys.Keys() {
			n++
		}
		if n != 10 {
			return fmt.Errorf("%d stored alerts", n)
		}
		return nil
	})
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if members(a) != 1 {
			return fmt.Errorf("members of a: %d", members(a))
		}
		return nil
	})
	skip := events.n()
	publishBatch(t, nc, moved, point(moved, "t", 95)) // still firing: not again
	publishBatch(t, nc, moved, point(moved, "t", 70))
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if events.n() < skip+1 {
			return errNotYet
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond)
	var got []string
	for _, m := range events.all()[skip:] {
		var al rule.Alert
		_ = json.Unmarshal(m.Data, &al)
		got = append(got, m.Header.Get(rule.HeaderGateway)+" "+al.Device+" "+al.Event)
	}
	if want := "gw-a " + moved + " resolved"; strings.Join(got, ",") != want {
		t.Errorf("after gw-b left: got %q, want %q", got, want)
	}
}

// TestWindowsMoveWithTheDevice: two gateways share an aggregate rule (partitioned by device) and one JetStream
// (the second is a client of the first's server). A device's window is open on gw-b with five points when gw-b
// goes: stopped, it hands the open window on through IOTGW_WINDOWS and gw-a emits the window with all eight
// points; crashed (its connection cut: no "leave", no handoff), gw-a takes the device once gw-b is dropped and
// the window holds the three points after that, which is what the README promises a crash loses: the open
// windows of the dead gateway's devices.
func TestWindowsMoveWithTheDevice(t *testing.T) {
	for _, tc := range []struct {
		name  string
		crash bool
		want  int
	}{{"clean stop", false, 8}, {"crash", true, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			// Event time with timestamps two days ahead: windows close only on the points this test sends.
			const ruleSrc = `
rule "win" {
  type      = "aggregate"
  window    = "tumbling"
  size      = "1h"
  time      = "event"
  functions = ["count", "sum"]
}
`
			js := fmt.Sprintf("jetstream {\n enabled = true\n store_dir = %q\n}", t.TempDir())
			a := startRuntime(t, parseConfig(t, `gateway { id = "gw-a" }
nats {
`+js+`
}`+ruleSrc))
			b := startRuntime(t, parseConfig(t, fmt.Sprintf(`gateway { id = "gw-b" }
nats {
  url = %q
  jetstream { enabled = true }
}`, a.Bus().URL)+ruleSrc))
			figures := func(rt *Runtime) rule.Stats { return rt.rules.entries["win"].figures.Get() }
			checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
				if figures(a).Members != 2 || figures(b).Members != 2 {
					return fmt.Errorf("members: a %d, b %d", figures(a).Members, figures(b).Members)
				}
				return nil
			})
			nc := client(t, a.Bus().URL)
			out := collect(t, nc, "iot.aggregated.>")
			t0 := time.Now().Add(48 * time.Hour).Truncate(time.Hour).UnixNano()
			hour := int64(time.Hour)
			send := func(dev string, ts int64, v int) {
				publishBatch(t, nc, dev, fmt.Sprintf(`{"device_id":%q,"key":"n","value":%d,"quality":1,"timestamp":%d}`, dev, v, ts))
			}
			type result struct {
				gateway, device string
				start           int64
				count, sum      int
			}
			results := func() []result {
				var rs []result
				for _, m := range out.all() {
					var body struct {
						Device string             `json:"device_id"`
						Start  int64              `json:"start"`
						Values map[string]float64 `json:"values"`
					}
					if err := json.Unmarshal(m.Data, &body); err != nil {
						t.Fatalf("output %s: %v", m.Data, err)
					}
					rs = append(rs, result{m.Header.Get(rule.HeaderGateway), body.Device, body.Start, int(body.Values["count"]), int(body.Values["sum"])})
				}
				return rs
			}
			// The first hour's window of 10 devices, closed by a point in the second hour: who owns which.
			for i := range 10 {
				dev := fmt.Sprintf("dev-%d", i)
				send(dev, t0+1, 1)
				send(dev, t0+hour+1, 1)
			}
			checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
				if n := out.n(); n < 10 {
					return fmt.Errorf("%d of 10 windows", n)
				}
				return nil
			})
			moved := ""
			for _, r := range results() {
				if r.gateway == "gw-b" {
					moved = r.device
				}
			}
			if moved == "" {
				t.Fatalf("gw-b owns none of the 10 devices: %+v", results())
			}
			// Four more points in the moved device's second-hour window on gw-b (it has five), then gw-b goes.
			before := figures(b).Matched
			for i := 2; i <= 5; i++ {
				send(moved, t0+hour+int64(i), 1)
			}
			checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
				if got := figures(b).Matched - before; got != 4 {
					return fmt.Errorf("gw-b took %d of 4 points", got)
				}
				return nil
			})
			if tc.crash {
				b.Bus().Conn.Close() // gone from the bus at once, as at a power cut: no handoff, no "leave"
			} else if err := b.Stop(); err != nil {
				t.Fatal(err)
			}
			checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
				if figures(a).Members != 1 {
					return fmt.Errorf("members of a: %d", figures(a).Members)
				}
				return nil
			})
			skip := out.n()
			for i := 6; i <= 8; i++ {
				send(moved, t0+hour+int64(i), 1)
			}
			send(moved, t0+2*hour+1, 1) // closes the second hour
			checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
				if out.n() <= skip {
					return errNotYet
				}
				return nil
			})
			time.Sleep(200 * time.Millisecond) // a second result for the window would come now
			var got []result
			for _, r := range results()[skip:] {
				if r.device == moved {
					got = append(got, r)
				}
			}
			want := result{"gw-a", moved, t0 + hour, tc.want, tc.want}
			if len(got) != 1 || got[0] != want {
				t.Errorf("second-hour window of %s: got %+v, want %+v", moved, got, want)
			}
		})
	}
}

// TestRuleSkipsBatchesOfUnmatchedDevices: a batch whose subject names a device the rule's match excludes is
// counted and not decoded (its points are not even "in"); a matched device's batch runs as before.
func TestRuleSkipsBatchesOfUnmatchedDevices(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `
rule "only-d1" {
  type = "filter"
  when = "true"
  match { devices = ["d1"] }
}
`))
	nc := client(t, rt.Bus().URL)
	out := collect(t, nc, "iot.rules.only-d1.>")
	publishBatch(t, nc, "d2", point("d2", "t", 1), point("d2", "t", 2))
	publishBatch(t, nc, "d2", `not a batch`) // not decoded, so no error either
	publishBatch(t, nc, "d1", point("d1", "t", 3))
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if s := rt.rules.entries["only-d1"].figures.Get(); out.n() < 1 || s.Out < 1 {
			return errNotYet // the figures are set after the output is published
		}
		return nil
	})
	s := rt.rules.entries["only-d1"].figures.Get()
	if s.Skipped != 2 || s.In != 1 || s.Out != 1 || s.Errors != 0 {
		t.Errorf("figures: got skipped %d, in %d, out %d, errors %d; want 2, 1, 1, 0", s.Skipped, s.In, s.Out, s.Errors)
	}
	if got := out.all(); len(got) != 1 || got[0].Subject != "iot.rules.only-d1.d1" {
		t.Errorf("outputs: %v", got)
	}
}

// TestWindowsMoveToAJoiningGateway: gw-a runs an aggregate alone with ten devices' windows open; gw-b joins (on
// gw-a's server and JetStream) and takes some of the devices: gw-a hands their open windows on ("handoff"), and
// every window is emitted once, by the device's new owner, with all five of its points.
func TestWindowsMoveToAJoiningGateway(t *testing.T) {
	const ruleSrc = `
rule "win" {
  type      = "aggregate"
  window    = "tumbling"
  size      = "1h"
  time      = "event"
  functions = ["count"]
}
`
	js := fmt.Sprintf("jetstream {\n enabled = true\n store_dir = %q\n}", t.TempDir())
	a := startRuntime(t, parseConfig(t, `gateway { id = "gw-a" }
nats {
`+js+`
}`+ruleSrc))
	figures := func(rt *Runtime) rule.Stats { return rt.rules.entries["win"].figures.Get() }
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if figures(a).Members != 1 {
			return fmt.Errorf("members of a: %d", figures(a).Members)
		}
		return nil
	})
	nc := client(t, a.Bus().URL)
	out := collect(t, nc, "iot.aggregated.>")
	t0 := time.Now().Add(48 * time.Hour).Truncate(time.Hour).UnixNano()
	send := func(dev string, ts int64) {
		publishBatch(t, nc, dev, fmt.Sprintf(`{"device_id":%q,"key":"n","value":1,"quality":1,"timestamp":%d}`, dev, ts))
	}
	for i := range 10 {
		for s := int64(1); s <= 3; s++ {
			send(fmt.Sprintf("dev-%d", i), t0+s)
		}
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := figures(a).Matched; got != 30 {
			return fmt.Errorf("gw-a took %d of 30 points", got)
		}
		return nil
	})
	b := startRuntime(t, parseConfig(t, fmt.Sprintf(`gateway { id = "gw-b" }
nats {
  url = %q
  jetstream { enabled = true }
}`, a.Bus().URL)+ruleSrc))
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if figures(a).Members != 2 || figures(b).Members != 2 {
			return fmt.Errorf("members: a %d, b %d", figures(a).Members, figures(b).Members)
		}
		return nil
	})
	for i := range 10 {
		for s := int64(4); s <= 5; s++ {
			send(fmt.Sprintf("dev-%d", i), t0+s)
		}
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := figures(a).Matched + figures(b).Matched; got != 50 {
			return fmt.Errorf("%d of 50 points taken", got)
		}
		return nil
	})
	for i := range 10 {
		send(fmt.Sprintf("dev-%d", i), t0+int64(time.Hour)+1) // closes the first hour
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := out.n(); n < 10 {
			return fmt.Errorf("%d of 10 windows", n)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // a second result for a window would come now
	byGateway := map[string]int{}
	seen := map[string]bool{}
	for _, m := range out.all() {
		var body struct {
			Device string             `json:"device_id"`
			Values map[string]float64 `json:"values"`
		}
		if err := json.Unmarshal(m.Data, &body); err != nil {
			t.Fatalf("output %s: %v", m.Data, err)
		}
		gw := m.Header.Get(rule.HeaderGateway)
		if seen[body.Device] {
			t.Errorf("%s: a second window, from %s", body.Device, gw)
		}
		seen[body.Device] = true
		byGateway[gw]++
		if body.Values["count"] != 5 {
			t.Errorf("%s (from %s): count %v, want 5", body.Device, gw, body.Values["count"])
		}
	}
	if byGateway["gw-b"] == 0 {
		t.Errorf("gw-b took none of the 10 devices: %v", byGateway)
	}
	t.Logf("windows by gateway: %v", byGateway)
}
