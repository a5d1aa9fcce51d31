package influxdb

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/config"
)

func parseSink(t *testing.T, body string) (*Settings, string) {
	t.Helper()
	src := "sink \"tsdb\" {\n  type = \"influxdb\"\n" + body + "\n}\n"
	cfg, diags := config.Parse([]byte(src), "gw.hcl")
	if diags.HasErrors() {
		var sb strings.Builder
		for _, d := range diags {
			fmt.Fprintf(&sb, "%s: %s; %s\n", d.Subject, d.Summary, d.Detail)
		}
		return nil, sb.String()
	}
	return cfg.Sinks[0].Settings.(*Settings), ""
}

func TestSettingsDefaults(t *testing.T) {
	s, errs := parseSink(t, `  url = "http://127.0.0.1:8086"`+"\n"+`  database = "iot"`)
	if errs != "" {
		t.Fatalf("defaults refused: %s", errs)
	}
	o := s.opts
	if s.v2 || !s.Gzip || s.measurement.expand("d", "k") != "d" || s.field.expand("d", "k") != "k" ||
		o.BatchSize != 5000 || o.FlushInterval != time.Second || o.Retry != time.Second || o.MaxRetry != 30*time.Second ||
		o.Timeout != 10*time.Second {
		t.Fatalf("got %+v, want the documented defaults", s)
	}
	s, errs = parseSink(t, `  url = "https://eu.example.com/"`+"\n"+`  org = "o"`+"\n"+`  bucket = "b"`+"\n"+`  token = "t"`+
		"\n"+`  measurement = "plant"`+"\n"+`  field = "{device}.{key}"`)
	if errs != "" || !s.v2 || s.field.expand("d1", "t") != "d1.t" || s.measurement.expand("d1", "t") != "plant" {
		t.Fatalf("2.x refused or wrong: %s %+v", errs, s)
	}
}

// Every bad value is reported at its attribute (file:line:column), with what was wrong.
func TestSettingsRefuses(t *testing.T) {
	const v1 = `url = "http://127.0.0.1:8086"` + "\n  " + `database = "iot"` + "\n  "
	for _, tc := range []struct {
		name, body, want, at string
	}{
		{"no url", `database = "iot"`, `"url" is required`, "gw.hcl:1,"},
		{"scheme", `url = "ftp://x"` + "\n  " + `database = "iot"`, "not an http", "gw.hcl:3,9"},
		{"no host", `url = "http://"` + "\n  " + `database = "iot"`, "not an http", "gw.hcl:3,9"},
		{"query", `url = "http://h:8086/?db=x"` + "\n  " + `database = "iot"`, "base URL only", "gw.hcl:3,9"},
		{"credentials in url", `url = "http://u:p@h:8086"` + "\n  " + `database = "iot"`, "base URL only", "gw.hcl:3,9"},
		{"garbage url", `url = "http://[::1"` + "\n  " + `database = "iot"`, "not an http", "gw.hcl:3,9"},
		{"no database", `url = "http://h:8086"`, "Name the database", "gw.hcl:1,"},
		{"2.x without token", `url = "http://h:8086"` + "\n  " + `org = "o"` + "\n  " + `bucket = "b"`, "needs token", "gw.hcl:1,"},
		{"1.x and 2.x", v1 + `org = "o"` + "\n  " + `bucket = "b"` + "\n  " + `token = "t"`, "database is for InfluxDB 1.x", "gw.hcl:4,14"},
		{"user without password", v1 + `username = "u"`, "go together", "gw.hcl:1,"},
		{"unknown placeholder", v1 + `measurement = "{dev}"`, "unknown placeholder {dev}", "gw.hcl:5,17"},
		{"unclosed", v1 + `field = "{key"`, "without its '}'", "gw.hcl:5,11"},
		{"empty field", v1 + `field = ""`, "empty", "gw.hcl:5,11"},
		{"tag with newline", v1 + `device_tag = "a\nb"`, "line break", "gw.hcl:5,16"},
		{"tag trailing backslash", v1 + `key_tag = "k\\"`, "backslash", "gw.hcl:5,13"},
		{"batch zero", v1 + `batch_size = 0`, "from 1 to", "gw.hcl:5,16"},
		{"interval", v1 + `flush_interval = "2h"`, "out of range", "gw.hcl:5,20"},
		{"wrong type", v1 + `gzip = "yes"`, "bool", "gw.hcl:5,11"},
		{"unknown attribute", v1 + `precision = "s"`, "not expected here", "gw.hcl:5,3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := parseSink(t, "  "+tc.body)
			if !strings.Contains(errs, tc.want) {
				t.Fatalf("got %q, want an error with %q", errs, tc.want)
			}
			if !strings.Contains(errs, tc.at) {
				t.Fatalf("got %q, want it at %s", errs, tc.at)
			}
		})
	}
}

// FuzzTemplate: a measurement or field template parses or is refused; one that parses expands every placeholder
// and keeps every literal.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"{device}", "{key}", "plant_{device}.{key}", "{", "}", "{dev}", "a{device}{key}b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := parseTemplate(s)
		if err != nil {
			if tm != nil {
				t.Fatalf("%q: template %v with error %v", s, tm, err)
			}
			return
		}
		if strings.ContainsRune(s, 0) {
			return // NUL marks the placeholders in this check, so it may not be part of a literal here
		}
		got := tm.expand("\x00D\x00", "\x00K\x00")
		back := strings.NewReplacer("\x00D\x00", "{device}", "\x00K\x00", "{key}").Replace(got)
		if back != s {
			t.Fatalf("%q expands to %q, which reads back as %q", s, got, back)
		}
	})
}
