package system

import "testing"

func TestBrowseTarget(t *testing.T) {
	for subject, want := range map[string]string{
		"iot.control.devices.plc-1.browse": "plc-1",
		"iot.control.devices.browse":       "",
		"iot.control.devices..browse":      "",
		"iot.control.devices.a.b.browse":   "",
		"iot.control.devices.plc-1.write":  "",
		"iot.control.ping":                 "",
	} {
		if got, ok := browseTarget(subject); got != want || ok != (want != "") {
			t.Errorf("browseTarget(%q): got %q, %v; want %q", subject, got, ok, want)
		}
	}
}
