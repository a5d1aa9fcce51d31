package actors

import "testing"

func TestGatewayControl(t *testing.T) {
	for _, tc := range []struct{ in, addressed string }{
		{"iot.control.ping", "iot.control.gw.line-3.ping"},
		{"iot.control.devices.*.write", "iot.control.gw.line-3.devices.*.write"},
		{"iot.control.sidecars.plc.status", "iot.control.gw.line-3.sidecars.plc.status"},
		{"iot.processed.batch.plc", "iot.processed.batch.plc"},
	} {
		got := GatewayControl("line-3", tc.in)
		if got != tc.addressed {
			t.Errorf("GatewayControl(%q) = %q, want %q", tc.in, got, tc.addressed)
		}
		if back := LocalControl("line-3", got); back != tc.in {
			t.Errorf("LocalControl(%q) = %q, want %q", got, back, tc.in)
		}
	}
	for _, s := range []string{"iot.control.gw.line-4.ping", "iot.control.gw.line-3", "iot.control.gw.line-30.ping", "iot.control.ping"} {
		if got := LocalControl("line-3", s); got != s {
			t.Errorf("LocalControl(%q) = %q, want it unchanged", s, got)
		}
	}
}
