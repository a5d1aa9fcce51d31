package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSidecarStaleAfter: stale_after as written ("0s" turns the check off), else 3 × config.interval when the
// config block sets one, else the lenient default; a negative or malformed value is an error at its line.
func TestSidecarStaleAfter(t *testing.T) {
	tests := []struct {
		name     string
		attr     string // in the sidecar block
		interval string // in its config block
		want     time.Duration
		err      string
	}{
		{name: "written", attr: `stale_after = "7s"`, interval: `interval = "1s"`, want: 7 * time.Second},
		{name: "off", attr: `stale_after = "0s"`, interval: `interval = "1s"`, want: 0},
		{name: "from the interval", interval: `interval = "500ms"`, want: 1500 * time.Millisecond},
		{name: "no interval", want: DefaultSidecarStaleAfter},
		{name: "negative", attr: `stale_after = "-1s"`, err: "negative"},
		{name: "malformed", attr: `stale_after = "soon"`, err: "not a duration"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := fmt.Sprintf("sidecar \"s\" {\n  address = \"127.0.0.1:50052\"\n  %s\n  config {\n    mode = \"tcp\"\n    %s\n  }\n}\n", tc.attr, tc.interval)
			cfg, diags := Parse([]byte(src), "s.hcl")
			if tc.err != "" {
				if !diags.HasErrors() || !strings.Contains(diags.Error(), tc.err) || !strings.Contains(diags.Error(), "s.hcl:3") {
					t.Fatalf("diagnostics %v, want %q at line 3", diags, tc.err)
				}
				return
			}
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			if got := cfg.Sidecars[0].StaleAfter; got != tc.want {
				t.Errorf("stale_after %s, want %s", got, tc.want)
			}
		})
	}
}
