package system

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/sidecar/modbussim"
)

// TestEveryKindHasSchemaAndActor: every kind config decodes has an actor, and every kind with an actor has its
// schema in config. A kind registered by halves (config.RegisterDriver called directly) fails here.
func TestEveryKindHasSchemaAndActor(t *testing.T) {
	for _, tc := range []struct {
		name          string
		schema, actor []string
	}{
		{"drivers", config.Drivers(), actors.Drivers()},
		{"sink types", config.SinkTypes(), actors.SinkTypes()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.schema) == 0 {
				t.Fatal("got no kinds registered, want the built-in ones (is actors/all imported?)")
			}
			if got, want := strings.Join(tc.actor, ","), strings.Join(tc.schema, ","); got != want {
				t.Errorf("got kinds with an actor %s, want those with a schema %s", got, want)
			}
		})
	}
	for _, name := range actors.Drivers() {
		k, _ := actors.Driver(name)
		_, endpoints := k.Settings().(config.EndpointSettings)
		if endpoints != (k.NewEndpoint != nil) {
			t.Errorf("driver %s: settings declare endpoints %v, endpoint actor %v", name, endpoints, k.NewEndpoint != nil)
		}
	}
}

// endpointPaths lists the endpoint actors in the tree (not the simulators).
func endpointPaths(rt *Runtime) []string {
	var out []string
	for _, n := range flatten(rt.Tree().Snapshot(), nil) {
		if strings.HasPrefix(n.Path, GroupEndpoints+"/") && strings.HasPrefix(n.Kind, kindEndpoint) {
			out = append(out, n.Path)
		}
	}
	return out
}

func rtuDevice(id string, baud int) string {
	return fmt.Sprintf(`device %q {
  driver  = "modbus"
  mode    = "rtu"
  address = "/dev/iotgw-test-no-such-port"
  serial { baud_rate = %d }
  register "r" { address = 0 }
}`, id, baud)
}

// TestEndpointConflictAtRunTime: a device added or updated at run time onto a serial line another device uses
// with other settings is refused, naming that device; nothing changes.
func TestEndpointConflictAtRunTime(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, ""))
	nc := client(t, rt.Bus().URL)
	if r := ask(t, nc, SubjectDevicesAdd, rtuDevice("a", 9600)); !r.OK {
		t.Fatalf("add a: %+v", r)
	}
	if r := ask(t, nc, SubjectDevicesAdd, rtuDevice("b", 19200)); r.OK || !strings.Contains(r.Error, `device "a"`) ||
		!strings.Contains(r.Error, "9600") || !strings.Contains(r.Error, "19200") {
		t.Errorf("add b at 19200 baud beside a at 9600: got %+v, want an error naming a and both speeds", r)
	}
	if _, ok := rt.Tree().Get("devices/b"); ok {
		t.Error("the refused device runs")
	}
	if r := ask(t, nc, SubjectDevicesAdd, rtuDevice("b", 9600)); !r.OK {
		t.Fatalf("add b at the line's speed: %+v", r)
	}
	if r := ask(t, nc, SubjectDevicesUpdate, rtuDevice("b", 19200)); r.OK || !strings.Contains(r.Error, `device "a"`) {
		t.Errorf("update b to 19200 baud: got %+v, want an error naming a", r)
	}
	if got := endpointPaths(rt); len(got) != 1 {
		t.Errorf("got endpoints %v, want the one serial line", got)
	}
}

// TestEndpointsCounted: an endpoint runs while a device uses it: two devices on one address share one endpoint,
// removing one leaves it, removing the other stops it.
func TestEndpointsCounted(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, ""))
	nc := client(t, rt.Bus().URL)
	dev := func(id string) string {
		return fmt.Sprintf(`device %q {
  driver   = "modbus"
  address  = "127.0.0.1:1"
  interval = "200ms"
  timeout  = "100ms"
  register "r" { address = 0 }
}`, id)
	}
	const want = "endpoints/modbus-tcp-127_0_0_1_1"
	for _, id := range []string{"d1", "d2"} {
		if r := ask(t, nc, SubjectDevicesAdd, dev(id)); !r.OK {
			t.Fatalf("add %s: %+v", id, r)
		}
	}
	if got := endpointPaths(rt); len(got) != 1 || got[0] != want {
		t.Fatalf("got endpoints %v with two devices, want [%s]", got, want)
	}
	if r := ask(t, nc, SubjectDevicesRemove, `{"id":"d1"}`); !r.OK {
		t.Fatalf("remove d1: %+v", r)
	}
	if got := endpointPaths(rt); len(got) != 1 || got[0] != want {
		t.Errorf("got endpoints %v with d2 left, want [%s]", got, want)
	}
	if r := ask(t, nc, SubjectDevicesRemove, `{"id":"d2"}`); !r.OK {
		t.Fatalf("remove d2: %+v", r)
	}
	if got := endpointPaths(rt); len(got) != 0 {
		t.Errorf("got endpoints %v with no device left, want none", got)
	}
}

// TestEndpointChangeOnUpdate: a device updated to another address polls the new one (the new endpoint is
// started, not swallowed as existing), and the old endpoint, used by nobody now, is gone.
func TestEndpointChangeOnUpdate(t *testing.T) {
	sim := func(v float64) *modbussim.Server {
		return startSim(t, modbussim.Config{Units: []modbussim.Unit{{ID: 1, Signals: []modbussim.Signal{{Address: 0, Value: v}}}}})
	}
	a, b := sim(11), sim(22)
	rt := startRuntime(t, parseConfig(t, "gateway { point_subjects = false }\n"))
	nc := client(t, rt.Bus().URL)
	dev := func(addr string) string {
		return fmt.Sprintf(`device "plc" {
  driver   = "modbus"
  address  = %q
  interval = "50ms"
  register "r" { address = 0 }
}`, addr)
	}
	l := watchBatches(t, nc)
	if r := ask(t, nc, SubjectDevicesAdd, dev(a.Addr().String())); !r.OK {
		t.Fatalf("add: %+v", r)
	}
	if v := num(t, l.wait(t, "plc", "r")["r"]); v != 11 {
		t.Fatalf("got r = %v from the first address, want 11", v)
	}
	if r := ask(t, nc, SubjectDevicesUpdate, dev(b.Addr().String())); !r.OK {
		t.Fatalf("update: %+v", r)
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if v := num(t, l.next(t, "plc", 1)["r"]); v != 22 {
			return fmt.Errorf("got r = %v after the update, want 22 from the new address", v)
		}
		return nil
	})
	key := func(addr string) string {
		ep, _ := (&config.ModbusDevice{Mode: "tcp", Address: addr}).Endpoint()
		return GroupEndpoints + "/" + ep.Key
	}
	if got := endpointPaths(rt); len(got) != 1 || got[0] != key(b.Addr().String()) {
		t.Errorf("got endpoints %v after the update, want only %s", got, key(b.Addr().String()))
	}
}
