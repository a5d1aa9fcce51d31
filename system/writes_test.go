package system

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/actors/device"
	"github.com/iotgw/iotgw/sidecar/modbussim"
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

// TestWriteSubscriptionsDoNotGrowPerDevice: the gateway holds as many subscriptions with ten Modbus devices as
// with one (the control actor's wildcard routes every write), and a write to any of them still arrives.
func TestWriteSubscriptionsDoNotGrowPerDevice(t *testing.T) {
	srv := startSim(t, modbussim.Demo())
	devices := func(n int) string {
		var b strings.Builder
		b.WriteString("gateway { point_subjects = false }\n")
		for i := range n {
			fmt.Fprintf(&b, "device \"plc-%d\" {\n  driver   = \"modbus\"\n  address  = %q\n  interval = \"1s\"\n  register \"setpoint\" {\n    address = %d\n    type    = \"uint16\"\n  }\n}\n", i, srv.Addr(), 100+i)
		}
		return b.String()
	}
	subs := map[int]int{}
	for _, n := range []int{1, 10} {
		rt := startRuntime(t, parseConfig(t, devices(n)))
		nc := client(t, rt.Bus().URL)
		id := fmt.Sprintf("plc-%d", n-1)
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if node, _ := rt.Tree().Get("devices/" + id); node == nil || node.State != StateRunning {
				return errNotYet
			}
			// JetStream is on by default: the processing stage's first acknowledged publish opens the reply
			// subscription of its acknowledgements; count once it has, in both runs.
			if info, err := rt.Bus().JS.Stream(t.Context(), StreamName); err != nil || info.CachedInfo().State.Msgs == 0 {
				return errNotYet
			}
			return nil
		})
		subs[n] = rt.Bus().Conn.NumSubscriptions()
		m, err := nc.Request(device.WriteSubject(id), []byte(`{"key":"setpoint","value":42}`), 5*time.Second)
		if err != nil {
			t.Fatalf("write to %s: %v", id, err)
		}
		var r device.WriteReply
		if err := json.Unmarshal(m.Data, &r); err != nil || !r.OK {
			t.Errorf("write to %s: got %s, want ok", id, m.Data)
		}
		if node, _ := rt.Tree().Get("devices/" + id); len(node.Subjects) != 0 {
			t.Errorf("devices/%s listens on %v, want no subject of its own", id, node.Subjects)
		}
		if err := rt.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	if subs[10] != subs[1] {
		t.Errorf("got %d subscriptions with 10 devices, %d with 1; want as many", subs[10], subs[1])
	}
}
