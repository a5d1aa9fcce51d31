package redis

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/config"
)

func parseSink(t *testing.T, body string) (*Settings, string) {
	t.Helper()
	src := "sink \"latest\" {\n  type = \"redis\"\n" + body + "\n}\n"
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
	s, errs := parseSink(t, `  address = "127.0.0.1:6379"`)
	if errs != "" {
		t.Fatalf("defaults refused: %s", errs)
	}
	o := s.opts
	if s.HashPrefix != "iot:latest:" || s.StreamPrefix != "" || s.ChannelPrefix != "" || s.StreamMaxLen != 100_000 ||
		o.BatchSize != 1000 || o.FlushInterval != 100*time.Millisecond || o.MaxAckPending != 4096 ||
		o.Retry != 500*time.Millisecond || o.MaxRetry != 30*time.Second || o.Timeout != 5*time.Second ||
		len(o.Subjects) != 1 || o.Subjects[0] != "iot.processed.batch.>" {
		t.Fatalf("got %+v, want the documented defaults", s)
	}
}

// Every bad value is reported at its attribute (file:line:column), with what was wrong.
func TestSettingsRefuses(t *testing.T) {
	const addr = `address = "127.0.0.1:6379"` + "\n  "
	for _, tc := range []struct {
		name, body, want, at string
	}{
		{"no address", `db = 1`, `"address" is required`, "gw.hcl:1,"},
		{"empty address", `address = ""`, "address is empty", "gw.hcl:3,13"},
		{"no port", `address = "localhost"`, "not host:port", "gw.hcl:3,13"},
		{"no host", `address = ":6379"`, "not host:port", "gw.hcl:3,13"},
		{"negative db", addr + `db = -1`, "database number", "gw.hcl:4,8"},
		{"huge db", addr + `db = 99999999`, "database number", "gw.hcl:4,8"},
		{"nothing to write", addr + `hash_prefix = ""`, "writes nothing", "gw.hcl:4,17"},
		{"CRLF in prefix", addr + `hash_prefix = "a\r\nFLUSHALL"`, "line breaks", "gw.hcl:4,17"},
		{"NUL in prefix", addr + `channel_prefix = "a\u0000"`, "without NUL", "gw.hcl:4,20"},
		{"oversized prefix", addr + `stream_prefix = "` + strings.Repeat("p", 300) + `"`, "at most 256", "gw.hcl:4,19"},
		{"stream len", addr + `stream_max_len = 0`, "at least 1", "gw.hcl:4,20"},
		{"stream entry", addr + `stream_entry = "poll"`, `stream_entry is "poll"`, "gw.hcl:4,18"},
		{"no subjects", addr + `subjects = []`, "at least one subject", "gw.hcl:4,14"},
		{"bad subject", addr + `subjects = ["iot..x"]`, "empty token", "gw.hcl:4,15"},
		{"batch zero", addr + `batch_size = 0`, "from 1 to", "gw.hcl:4,16"},
		{"batch huge", addr + `batch_size = 1000000000`, "from 1 to", "gw.hcl:4,16"},
		{"ack pending", addr + `max_ack_pending = -1`, "from 1 to", "gw.hcl:4,21"},
		{"interval text", addr + `flush_interval = "soon"`, "not a duration", "gw.hcl:4,20"},
		{"interval zero", addr + `flush_interval = "0s"`, "out of range", "gw.hcl:4,20"},
		{"retry negative", addr + `retry = "-1s"`, "negative", "gw.hcl:4,11"},
		{"max retry below retry", addr + `retry = "10s"` + "\n  " + `max_retry = "1s"`, "out of range", "gw.hcl:5,15"},
		{"timeout", addr + `timeout = "1h"`, "out of range", "gw.hcl:4,13"},
		{"wrong type", addr + `db = "zero"`, "number is required", "gw.hcl:4,9"},
		{"unknown attribute", addr + `tls = true`, "not expected here", "gw.hcl:4,3"},
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
