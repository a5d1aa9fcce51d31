package system

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/actors/device"
)

// TestWriteWithoutWritableDeviceAnswers: a write to a mock device, to an unknown id or to a device that failed for
// good is answered with an error at once (it used to get no reply, so the requester waited out its timeout).
func TestWriteWithoutWritableDeviceAnswers(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `
gateway { point_subjects = false }
supervisor { max_restarts = 0 }
device "m1" {
  driver   = "mock"
  interval = "50ms"
  point "p" { signal = "sine" }
}
device "crashy" {
  driver     = "mock"
  interval   = "20ms"
  fail_after = 1
  point "p" { signal = "sine" }
}
`))
	nc := client(t, rt.Bus().URL)
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n, ok := rt.Tree().Get("devices/crashy"); !ok || n.State != StateFailed {
			return errNotYet
		}
		if n, ok := rt.Tree().Get("devices/m1"); !ok || n.State != StateRunning {
			return errNotYet
		}
		return nil
	})
	for _, tc := range []struct{ id, want string }{
		{"m1", "driver mock does not support writes"},
		{"nope", `no device "nope"`},
		{"crashy", `device "crashy" is failed: nothing takes its writes`},
	} {
		t.Run(tc.id, func(t *testing.T) {
			start := time.Now()
			// The timeout only bounds a failure: the answer comes in milliseconds.
			m, err := nc.Request(device.WriteSubject(tc.id), []byte(`{"key":"p","value":1}`), 5*time.Second)
			if err != nil {
				t.Fatalf("write to %s: %v, want an error reply", tc.id, err)
			}
			t.Logf("answered in %s", time.Since(start).Round(time.Microsecond))
			var r device.WriteReply
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatalf("reply %s: %v", m.Data, err)
			}
			if r.OK || r.Device != tc.id || !strings.Contains(r.Error, tc.want) {
				t.Errorf("got %s, want ok false, device %s, error %q", m.Data, tc.id, tc.want)
			}
		})
	}
}

func TestWriteTarget(t *testing.T) {
	for subject, want := range map[string]string{
		"iot.control.devices.plc-1.write": "plc-1",
		"iot.control.devices.write":       "",
		"iot.control.devices..write":      "",
		"iot.control.devices.list":        "",
		"iot.control.ping":                "",
	} {
		if got, ok := writeTarget(subject); got != want || ok != (want != "") {
			t.Errorf("writeTarget(%q): got %q, %v; want %q", subject, got, ok, want)
		}
	}
}
