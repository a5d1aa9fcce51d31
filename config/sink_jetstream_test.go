package config

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestJetStreamSinkDefaults(t *testing.T) {
	cfg, diags := Parse([]byte("sink \"a\" {\n  type     = \"jetstream\"\n  subjects = [\"iot.alerts.>\"]\n}\n"), "ok.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	s := cfg.Sinks[0].Settings.(*JetStreamSink)
	if s.Stream != DefaultJetStreamSinkStream || s.Age != 24*time.Hour || s.Bytes != 1<<30 || s.Discard != "old" || s.Storage != "file" {
		t.Errorf("defaults %+v", s)
	}
	cfg, diags = Parse([]byte("sink \"a\" {\n  type      = \"jetstream\"\n  stream    = \"ARCHIVE\"\n  subjects  = [\"iot.alerts.>\"]\n"+
		"  max_age   = \"720h\"\n  max_bytes = \"2GB\"\n  discard   = \"new\"\n  storage   = \"memory\"\n}\n"), "ok.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	s = cfg.Sinks[0].Settings.(*JetStreamSink)
	if s.Age != 720*time.Hour || s.Bytes != 2<<30 || s.Discard != "new" || s.Storage != "memory" {
		t.Errorf("settings %+v", s)
	}
}

// TestSettingsBroken: each bad block is reported at its value, with what is wrong.
func TestJetStreamSinkBroken(t *testing.T) {
	block := func(body string) string { return "sink \"a\" {\n  type = \"jetstream\"\n" + body + "}\n" }
	for _, tc := range []struct{ name, src, pos, want string }{
		{"no subjects", block(""), "b.hcl:1:10", `The argument "subjects" is required`},
		{"empty subjects", block("  subjects = []\n"), "b.hcl:3:14", "needs at least one subject"},
		{"everything", block("  subjects = [\">\"]\n"), "b.hcl:3:15", "keeps the gateway's data subjects"},
		{"jetstream api", block("  subjects = [\"$JS.API.>\"]\n"), "b.hcl:3:15", "keeps the gateway's data subjects"},
		{"all of iot", block("  subjects = [\"iot.>\"]\n"), "b.hcl:3:15", "keeps the gateway's data subjects"},
		{"control", block("  subjects = [\"iot.control.>\"]\n"), "b.hcl:3:15", "carries control requests"},
		{"dead letters", block("  subjects = [\"iot.deadletter.x\"]\n"), "b.hcl:3:15", "IOT_DEADLETTER's"},
		{"bad subject", block("  subjects = [\"iot.a..b\"]\n"), "b.hcl:3:15", "empty token"},
		{"second bad subject", block("  subjects = [\"iot.ok\", \"iot.>.x\"]\n"), "b.hcl:3:25", "'>' must be the last token"},
		{"stream with dot", block("  subjects = [\"iot.a\"]\n  stream = \"A.B\"\n"), "b.hcl:4:12", `contains '.'`},
		{"stream path", block("  subjects = [\"iot.a\"]\n  stream = \"../etc\"\n"), "b.hcl:4:12", `contains '.'`},
		{"stream too long", block("  subjects = [\"iot.a\"]\n  stream = \"" + strings.Repeat("S", 65) + "\"\n"), "b.hcl:4:12", "at most 64"},
		{"stream taken", block("  subjects = [\"iot.a\"]\n  stream = \"IOT_DEADLETTER\"\n"), "b.hcl:4:12", "is taken"},
		{"bucket stream", block("  subjects = [\"iot.a\"]\n  stream = \"KV_devices\"\n"), "b.hcl:4:12", "is taken"},
		{"limits of IOT_DATA", block("  subjects = [\"iot.a\"]\n  max_age = \"1h\"\n"), "b.hcl:4:13", "IOT_DATA's limits are set in nats"},
		{"bad max_age", block("  subjects = [\"iot.a\"]\n  stream = \"S\"\n  max_age = \"soon\"\n"), "b.hcl:5:13", `"soon" is not a duration`},
		{"bad max_bytes", block("  subjects = [\"iot.a\"]\n  stream = \"S\"\n  max_bytes = \"1XB\"\n"), "b.hcl:5:15", `unknown unit "XB"`},
		{"zero max_bytes", block("  subjects = [\"iot.a\"]\n  stream = \"S\"\n  max_bytes = \"0\"\n"), "b.hcl:5:15", "must be > 0"},
		{"bad discard", block("  subjects = [\"iot.a\"]\n  stream = \"S\"\n  discard = \"oldest\"\n"), "b.hcl:5:13", `unknown discard policy "oldest"`},
		{"bad storage", block("  subjects = [\"iot.a\"]\n  stream = \"S\"\n  storage = \"tape\"\n"), "b.hcl:5:13", `unknown storage "tape"`},
		{"truncated", "sink \"a\" {\n  type = \"jetstream\"\n  subjects = [\"iot.a\"", "b.hcl:3:14", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := Parse([]byte(tc.src), "b.hcl")
			if !diags.HasErrors() {
				t.Fatalf("no error, want one at %s containing %q", tc.pos, tc.want)
			}
			for _, d := range diags {
				pos := ""
				if d.Subject != nil {
					pos = d.Subject.Filename + ":" + itoa(d.Subject.Start.Line) + ":" + itoa(d.Subject.Start.Column)
				}
				if pos == tc.pos && strings.Contains(d.Summary+": "+d.Detail, tc.want) {
					return
				}
			}
			t.Errorf("got %s\nwant an error at %s containing %q", diags.Error(), tc.pos, tc.want)
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestJetStreamSync(t *testing.T) {
	for _, tc := range []struct {
		src      string
		always   bool
		interval time.Duration
	}{
		{"", false, 2 * time.Minute},
		{`sync = "always"`, true, 0},
		{`sync = "1s"`, false, time.Second},
	} {
		cfg, diags := Parse([]byte("nats {\n  jetstream {\n    "+tc.src+"\n  }\n}\n"), "sync.hcl")
		if diags.HasErrors() {
			t.Fatalf("%s: %s", tc.src, diags.Error())
		}
		if j := cfg.NATS.JetStream; j.SyncAlways != tc.always || j.SyncInterval != tc.interval {
			t.Errorf("%s: got always %v interval %s, want %v %s", tc.src, j.SyncAlways, j.SyncInterval, tc.always, tc.interval)
		}
	}
}
