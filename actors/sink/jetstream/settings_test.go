package jetstream

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/config"
)

func TestSettingsDefaults(t *testing.T) {
	cfg, diags := config.Parse([]byte("sink \"a\" {\n  type     = \"jetstream\"\n  subjects = [\"iot.alerts.>\"]\n}\n"), "ok.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	s := cfg.Sinks[0].Settings.(*Settings)
	if s.Stream != DefaultStream || s.maxAge != 24*time.Hour || s.maxBytes != 1<<30 || s.Discard != "old" || s.Storage != "file" {
		t.Errorf("defaults %+v", s)
	}
	cfg, diags = config.Parse([]byte("sink \"a\" {\n  type      = \"jetstream\"\n  stream    = \"ARCHIVE\"\n  subjects  = [\"iot.alerts.>\"]\n"+
		"  max_age   = \"720h\"\n  max_bytes = \"2GB\"\n  discard   = \"new\"\n  storage   = \"memory\"\n}\n"), "ok.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	s = cfg.Sinks[0].Settings.(*Settings)
	if s.maxAge != 720*time.Hour || s.maxBytes != 2<<30 || s.Discard != "new" || s.Storage != "memory" {
		t.Errorf("settings %+v", s)
	}
}

// TestSettingsBroken: each bad block is reported at its value, with what is wrong.
func TestSettingsBroken(t *testing.T) {
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
			_, diags := config.Parse([]byte(tc.src), "b.hcl")
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

func TestSubjectCovers(t *testing.T) {
	for _, tc := range []struct {
		pattern, sub string
		want         bool
	}{
		{"iot.processed.batch.>", "iot.processed.batch.d1", true},
		{"iot.processed.batch.>", "iot.processed.batch.>", true},
		{"iot.processed.batch.>", "iot.processed.>", false},
		{"iot.alerts.*.d1", "iot.alerts.high.d1", true},
		{"iot.alerts.*.d1", "iot.alerts.*.d1", true},
		{"iot.alerts.*", "iot.alerts.>", false},
		{"iot.rules.>", "iot.rules", false},
		{"iot.a", "iot.a", true},
		{"iot.a", "iot.a.b", false},
	} {
		if got := SubjectCovers(tc.pattern, tc.sub); got != tc.want {
			t.Errorf("SubjectCovers(%q, %q) = %v, want %v", tc.pattern, tc.sub, got, tc.want)
		}
	}
}

// FuzzSubjectCovers: a pattern always covers itself, and never panics on anything.
func FuzzSubjectCovers(f *testing.F) {
	f.Add("iot.a.>", "iot.a.b")
	f.Add("*", ">")
	f.Add("", "..")
	f.Fuzz(func(t *testing.T, pattern, sub string) {
		_ = SubjectCovers(pattern, sub)
		if config.ValidSubject(pattern, true) == nil && !SubjectCovers(pattern, pattern) {
			t.Fatalf("%q does not cover itself", pattern)
		}
	})
}
