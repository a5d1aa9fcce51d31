package config

import (
	"fmt"
	"strings"
	"testing"
)

// ruleFile wraps rule blocks in a file; the rules' lines start at 1.
func parseRules(t *testing.T, src string) (*Config, []string) {
	t.Helper()
	cfg, diags := Parse([]byte(src), "rules.hcl")
	var out []string
	for _, d := range diags {
		pos := ""
		if d.Subject != nil {
			pos = fmt.Sprintf("%d:%d", d.Subject.Start.Line, d.Subject.Start.Column)
		}
		out = append(out, pos+" "+d.Summary+": "+d.Detail)
	}
	return cfg, out
}

func TestRuleBlocksDecode(t *testing.T) {
	cfg, diags := parseRules(t, `
rule "hot" {
  type = "alert"
  match {
    devices = ["boiler-*"]
    keys    = ["temperature"]
    tags    = { site = "plant-a" }
  }
  when     = "value > 85"
  deadband = 2
  for      = "5s"
  level    = "critical"
  message  = "{device} is at {value} {tag:unit}"
}
rule "f" {
  type  = "transform"
  value = "value * 1.8 + 32"
  rename = "temperature_f"
  unit  = "°F"
  derive "power" {
    value = "values.voltage * values.current"
    unit  = "W"
  }
}
rule "changes" {
  type     = "filter"
  from     = "f"
  deadband = 0.5
}
rule "avg" {
  type      = "aggregate"
  window    = "hopping"
  size      = "1m"
  hop       = "10s"
  functions = ["avg", "p95", "p99.9"]
  time      = "event"
  lateness  = "2s"
}
rule "out" {
  type    = "forward"
  from    = "changes"
  subject = "plant.{device}.{key}"
}
`)
	if len(diags) > 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	if len(cfg.Rules) != 5 {
		t.Fatalf("got %d rules, want 5", len(cfg.Rules))
	}
	a := cfg.Rules[0]
	if a.Alert == nil || a.Alert.Threshold != 85 || !a.Alert.Above || a.Alert.Deadband != 2 || a.Alert.Level != "critical" {
		t.Errorf("alert: got %+v", a.Alert)
	}
	if !a.Match.Matches("boiler-1", "temperature", func(k string) (string, bool) { return "plant-a", k == "site" }) {
		t.Error("match: boiler-1 temperature site=plant-a does not match")
	}
	if a.Match.Matches("mixer-1", "temperature", func(string) (string, bool) { return "plant-a", true }) {
		t.Error("match: mixer-1 matches boiler-*")
	}
	tr := cfg.Rules[1].Transform
	if tr == nil || tr.Value == nil || tr.Rename != "temperature_f" || len(tr.Derive) != 1 || strings.Join(tr.Derive[0].Needs, ",") != "current,voltage" {
		t.Errorf("transform: got %+v", tr)
	}
	if cfg.Rules[2].From != "f" || RuleInput(&cfg.Rules[2]) != "iot.rules.f.>" {
		t.Errorf("chained filter: from %q input %q", cfg.Rules[2].From, RuleInput(&cfg.Rules[2]))
	}
	ag := cfg.Rules[3].Aggregate
	if ag == nil || ag.Window != "hopping" || !ag.EventTime || ag.Hop.Seconds() != 10 || len(ag.Functions) != 3 {
		t.Errorf("aggregate: got %+v", ag)
	}
	if q, ok := Percentile("p99.9"); !ok || q < 0.9989 || q > 0.9991 {
		t.Errorf("p99.9: got %v %v", q, ok)
	}
}

// TestBadRulesRejectedWithPosition: every mistake is reported at the line and column of the mistake itself,
// inside the expression string where it is one.
func TestBadRulesRejectedWithPosition(t *testing.T) {
	cases := []struct {
		name, src, want string
	}{
		{"syntax", `rule "r" {
  type = "filter"
  when = "value > > 3"
}`, `3:19 Invalid expression in "when": unexpected token Operator(">")`},
		{"unknown field", `rule "r" {
  type = "filter"
  when = "valu > 3"
}`, `3:11 Invalid expression in "when": unknown name valu`},
		{"wrong type", `rule "r" {
  type = "filter"
  when = "value > \"x\""
}`, `3:17 Invalid expression in "when": invalid operation: > (mismatched types float64 and string)`},
		{"when not bool", `rule "r" {
  type = "filter"
  when = "value + 1"
}`, `3:10 Invalid expression in "when": expected bool`},
		{"transform value not a number", `rule "r" {
  type  = "transform"
  value = "device"
}`, `3:11 Invalid expression in "value": expected float64`},
		{"unknown type", `rule "r" {
  type = "alarm"
}`, `2:10 Invalid value for "type": unknown rule type "alarm"`},
		{"setting of another type", `rule "r" {
  type   = "filter"
  when   = "true"
  window = "tumbling"
}`, `4:12 Invalid value for "window": window is not a setting of a filter rule (it belongs to: aggregate)`},
		{"cycle", `rule "a" {
  type = "filter"
  from = "b"
  when = "true"
}
rule "b" {
  type = "transform"
  from = "a"
  unit = "x"
}`, `3:10 Rules read each other in a cycle: a → b → a`},
		{"self cycle", `rule "a" {
  type = "filter"
  from = "a"
  when = "true"
}`, `3:10 Rules read each other in a cycle: a → a`},
		{"from an alert", `rule "a" {
  type = "alert"
  when = "value > 1"
}
rule "b" {
  type = "filter"
  from = "a"
  when = "true"
}`, `7:10 Rule in from has no output to read`},
		{"unknown from", `rule "b" {
  type = "filter"
  from = "nope"
  when = "true"
}`, `3:10 Unknown rule in from`},
		{"forward to control", `rule "f" {
  type    = "forward"
  subject = "iot.control.devices.add"
}`, `3:13 Invalid value for "subject"`},
		{"forward to kv", `rule "f" {
  type    = "forward"
  subject = "$KV.IOTGW_DEVICES.x"
}`, `3:13 Invalid value for "subject"`},
		{"forward placeholder in a token", `rule "f" {
  type    = "forward"
  subject = "out.x{device}"
}`, `placeholders are whole tokens`},
		{"unknown placeholder", `rule "a" {
  type    = "alert"
  when    = "value > 1"
  message = "{devise} hot"
}`, `4:13 Invalid value for "message": unknown placeholder {devise}`},
		{"deadband without threshold", `rule "a" {
  type     = "alert"
  when     = "value > 1 && key == \"t\""
  deadband = 1
}`, `4:14 Invalid value for "deadband": a deadband needs a when of the form`},
		{"env at runtime is fine in file", `rule "a" {
  type    = "alert"
  when    = "value > 1"
  level   = "loud"
}`, `4:13 Invalid value for "level": unknown level "loud"`},
		{"hop missing", `rule "a" {
  type   = "aggregate"
  window = "hopping"
  size   = "1m"
}`, `1:1 Invalid rule "a": a hopping window needs hop from 10ms to size`},
		{"bad percentile", `rule "a" {
  type      = "aggregate"
  size      = "1m"
  functions = ["avg", "p100"]
}`, `4:23 Invalid value for "functions": unknown function "p100"`},
		{"reserved name", `rule "processor" {
  type = "filter"
  when = "true"
}`, `1:6 Reserved rule name`},
		{"duplicate", `rule "a" {
  type = "filter"
  when = "true"
}
rule "a" {
  type = "filter"
  when = "true"
}`, `5:1 Duplicate rule name`},
		{"expression too long", `rule "a" {
  type = "filter"
  when = "` + strings.Repeat("1 + ", 1100) + `1 > 0"
}`, `expression too long`},
		{"hostile size", `rule "a" {
  type = "filter"
  when = "` + strings.Repeat("value+", 600) + `1 > 0"
}`, `Invalid expression in "when"`},
		{"no time zones from the file system", `rule "a" {
  type = "filter"
  when = "date(\"2024-01-01\", \"2006-01-02\", \"../../etc/passwd\") != now()"
}`, `3:11 Invalid expression in "when": unknown name date`},
		{"no unbounded strings", `rule "a" {
  type = "filter"
  when = "len(repeat(\"x\", 1000000000)) > 0"
}`, `Invalid expression in "when": unknown name repeat`},
		{"unknown attribute", `rule "a" {
  type = "filter"
  when = "true"
  wehn = "x"
}`, `4:3 Unsupported argument`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, diags := parseRules(t, tc.src)
			if cfg != nil {
				t.Fatalf("accepted; want %q", tc.want)
			}
			for _, d := range diags {
				if strings.Contains(d, tc.want) {
					return
				}
			}
			t.Errorf("got %q, want one containing %q", diags, tc.want)
		})
	}
}

func TestRuntimeRuleRefusesEnvAndChecksAgainstRunning(t *testing.T) {
	running, diags := parseRules(t, `rule "a" {
  type = "filter"
  from = "b"
  when = "true"
}
rule "b" {
  type = "filter"
  when = "true"
}`)
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	_, d := ParseRuntimeRule([]byte(`rule "x" {
  type = "alert"
  when = "value > 1"
  message = env("SECRET")
}`), "request", running.Rules)
	if !d.HasErrors() || !strings.Contains(d.Error(), "env() is only allowed in the config file") {
		t.Errorf("env: got %v", d)
	}
	_, d = ParseRuntimeRule([]byte(`rule "b" {
  type = "filter"
  from = "a"
  when = "true"
}`), "request", running.Rules)
	if !d.HasErrors() || !strings.Contains(d.Error(), "cycle") || d[0].Subject.Start.Line != 3 {
		t.Errorf("cycle through the running rules: got %v", d)
	}
	r, d := ParseRuntimeRule([]byte(`rule "c" {
  type = "filter"
  from = "a"
  when = "quality == 1"
}`), "request", running.Rules)
	if d.HasErrors() || r == nil || r.Name != "c" {
		t.Errorf("good rule: got %v %v", r, d)
	}
	for _, bad := range []string{"", `rule "a" {}` + "\n" + `rule "b" {}`, `device "d" {}`, "rule \"x\" {\n type = \"filter\"\n when = \"true\"", `rule "a" { type = 1 }`} {
		if r, d := ParseRuntimeRule([]byte(bad), "request", nil); r != nil || !d.HasErrors() {
			t.Errorf("%q: accepted", bad)
		}
	}
}

// FuzzParseRuntimeRule: whatever a control request holds, the parser returns a rule or diagnostics, never panics,
// never accepts env(), and an accepted rule has a type and compiled expressions.
func FuzzParseRuntimeRule(f *testing.F) {
	for _, s := range []string{
		`rule "a" { type = "filter"` + "\n" + `when = "value > 1" }`,
		"rule \"a\" {\n type = \"alert\"\n when = \"value > 85\"\n deadband = 2\n message = \"{device} {value}\"\n}",
		"rule \"a\" {\n type = \"aggregate\"\n window = \"hopping\"\n size = \"1m\"\n hop = \"10s\"\n functions = [\"p95\"]\n}",
		"rule \"a\" {\n type = \"transform\"\n derive \"p\" {\n value = \"values.v * values.i\"\n }\n}",
		"rule \"a\" {\n type = \"forward\"\n subject = \"out.{device}\"\n}",
		"rule \"a\" {\n type = \"alert\"\n when = \"true\"\n message = env(\"HOME\")\n}",
		"rule \"a\" {\n type = \"filter\"\n when = \"tags.x == text && changed() && rate() > delta()\"\n}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		r, diags := ParseRuntimeRule(src, "request", nil)
		if r == nil {
			if !diags.HasErrors() {
				t.Fatal("no rule and no error")
			}
			return
		}
		if diags.HasErrors() {
			t.Fatal("a rule and errors")
		}
		if !isOneOf(r.Type, RuleTypes) {
			t.Fatalf("accepted type %q", r.Type)
		}
		if r.Alert == nil && r.Transform == nil && r.Filter == nil && r.Aggregate == nil && r.Forward == nil {
			t.Fatal("accepted without its settings")
		}
		if r.Forward != nil && r.Forward.Subject != "" && CheckForwardSubject(r.Forward.Subject) != nil {
			t.Fatalf("accepted forward subject %q", r.Forward.Subject)
		}
	})
}
