package file

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/config"
)

func parseSink(t *testing.T, body string) (*Settings, string) {
	t.Helper()
	src := "sink \"files\" {\n  type = \"file\"\n" + body + "\n}\n"
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
	s, errs := parseSink(t, "")
	if errs != "" {
		t.Fatalf("defaults refused: %s", errs)
	}
	if s.Path != "{data_dir}/points/{date}/{device}.jsonl" || s.Format != FormatJSONL || s.Sync != SyncInterval ||
		s.SyncInterval != time.Second || s.RotateSize != 64<<20 || s.RotateAge != 24*time.Hour || s.MaxFiles != 10 ||
		!s.Compress || s.Retry != time.Second || s.tmpl == nil {
		t.Fatalf("got %+v, want the documented defaults", s)
	}
}

func TestSettingsAccepts(t *testing.T) {
	s, errs := parseSink(t, `
  subjects      = ["iot.processed.batch.>", "iot.alerts.>"]
  path          = "/var/lib/iotgw/{sink}/{date}/{hour}/{device}.lp"
  format        = "influx"
  rotate_size   = "0"
  rotate_age    = "0s"
  max_files     = 3
  compress      = false
  sync          = "always"
  sync_interval = "10ms"
`)
	if errs != "" {
		t.Fatalf("refused: %s", errs)
	}
	if s.RotateSize != 0 || s.RotateAge != 0 || s.Compress || s.Sync != SyncAlways || len(s.Subjects) != 2 {
		t.Fatalf("got %+v", s)
	}
}

// Every bad value is reported at its attribute (file:line:column), with what was wrong.
func TestSettingsRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, body, want, at string
	}{
		{"no subjects", `subjects = []`, "at least one subject", "gw.hcl:3,14"},
		{"bad subject", `subjects = ["iot..x"]`, "empty token", "gw.hcl:3,15"},
		{"empty path", `path = ""`, "empty", "gw.hcl:3,10"},
		{"dotdot", `path = "{data_dir}/../etc/{device}.jsonl"`, `".." element`, "gw.hcl:3,10"},
		{"dotdot at end", `path = "/tmp/{device}/.."`, `".." element`, "gw.hcl:3,10"},
		{"dir only", `path = "/tmp/{device}/"`, "file name", "gw.hcl:3,10"},
		{"unknown placeholder", `path = "/tmp/{user}.jsonl"`, "unknown placeholder {user}", "gw.hcl:3,10"},
		{"unclosed", `path = "/tmp/{device.jsonl"`, "without its '}'", "gw.hcl:3,10"},
		{"nested", `path = "/tmp/{dev{device}}.jsonl"`, "without its '}'", "gw.hcl:3,10"},
		{"stray close", `path = "/tmp/device}.jsonl"`, "without its '{'", "gw.hcl:3,10"},
		{"data_dir inside", `path = "/tmp/{data_dir}/x.jsonl"`, "may only start", "gw.hcl:3,10"},
		{"control char", `path = "/tmp/a\nb.jsonl"`, "control character", "gw.hcl:3,10"},
		{"oversized path", `path = "/tmp/` + strings.Repeat("a", MaxTemplateLen) + `.jsonl"`, "at most 1024", "gw.hcl:3,10"},
		{"format", `format = "parquet"`, `unknown format "parquet"`, "gw.hcl:3,12"},
		{"size text", `rotate_size = "lots"`, "whole number of bytes", "gw.hcl:3,17"},
		{"size tiny", `rotate_size = "10"`, "too small", "gw.hcl:3,17"},
		{"age text", `rotate_age = "a day"`, "not a duration", "gw.hcl:3,16"},
		{"age tiny", `rotate_age = "1ms"`, "too short", "gw.hcl:3,16"},
		{"max files zero", `max_files = 0`, "from 1 to", "gw.hcl:3,15"},
		{"max files huge", `max_files = 100000000`, "from 1 to", "gw.hcl:3,15"},
		{"sync mode", `sync = "sometimes"`, `unknown sync mode "sometimes"`, "gw.hcl:3,10"},
		{"sync interval", `sync_interval = "0s"`, "too short", "gw.hcl:3,19"},
		{"negative interval", `sync_interval = "-1s"`, "negative", "gw.hcl:3,19"},
		{"open files", `max_open_files = 0`, "from 1 to", "gw.hcl:3,20"},
		{"idle", `idle_timeout = "1ms"`, "too short", "gw.hcl:3,18"},
		{"ack pending", `max_ack_pending = -5`, "from 1 to", "gw.hcl:3,21"},
		{"retry", `retry = "2h"`, "out of range", "gw.hcl:3,11"},
		{"wrong type", `max_files = "ten"`, "number is required", "gw.hcl:3,16"},
		{"unknown attribute", `rotate = true`, "not expected here", "gw.hcl:3,3"},
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
