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

// TestSidecarConnectionSettings: a sidecar's config block takes the direct Modbus driver's connection settings,
// with its defaults (retries 1; for rtu a serial line of 9600 8N1) and its rules, each error at its line.
func TestSidecarConnectionSettings(t *testing.T) {
	tests := []struct {
		name    string
		mode    string
		body    string // in the config block
		retries int
		serial  *ModbusSerial
		err     string // "s.hcl:LINE: text" when it is an error
	}{
		{name: "tcp defaults", mode: "tcp", retries: 1},
		{name: "rtu defaults", mode: "rtu", retries: 1, serial: &ModbusSerial{BaudRate: 9600, DataBits: 8, Parity: "N", StopBits: 1}},
		{name: "rtu written", mode: "rtu", body: "retries = 0\n    serial {\n      baud_rate = 19200\n      parity = \"E\"\n    }",
			retries: 0, serial: &ModbusSerial{BaudRate: 19200, DataBits: 8, Parity: "E", StopBits: 1}},
		{name: "rtu over tcp", mode: "rtu-over-tcp", body: "retries = 3", retries: 3},
		{name: "retries 11", mode: "tcp", body: "retries = 11", err: "s.hcl:5: retries 11: want 0..10"},
		{name: "serial on tcp", mode: "tcp", body: "serial {\n      baud_rate = 19200\n    }", err: `s.hcl:3: a serial block only applies to mode = "rtu"`},
		{name: "bad parity", mode: "rtu", body: "serial {\n      parity = \"X\"\n    }", err: `s.hcl:6: parity "X": want N, E or O`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := fmt.Sprintf("sidecar \"s\" {\n  address = \"127.0.0.1:50052\"\n  config {\n    mode = %q\n    %s\n  }\n}\n", tc.mode, tc.body)
			cfg, diags := Parse([]byte(src), "s.hcl")
			if tc.err != "" {
				pos, text, _ := strings.Cut(tc.err, ": ")
				if !diags.HasErrors() || !strings.Contains(diags.Error(), text) || !strings.Contains(diags.Error(), pos) {
					t.Fatalf("diagnostics %v, want %q at %s", diags, text, pos)
				}
				return
			}
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			c := cfg.Sidecars[0].Config
			if c.Retries != tc.retries {
				t.Errorf("retries %d, want %d", c.Retries, tc.retries)
			}
			if (c.Serial == nil) != (tc.serial == nil) || c.Serial != nil && *c.Serial != *tc.serial {
				t.Errorf("serial %+v, want %+v", c.Serial, tc.serial)
			}
		})
	}
}
