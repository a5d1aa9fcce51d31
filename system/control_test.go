package system

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/actors"
	actorsidecar "github.com/iotgw/iotgw/actors/sidecar"
	"github.com/iotgw/iotgw/isp"
	"github.com/iotgw/iotgw/sidecar/modbussim"
	"github.com/nats-io/nats.go"
)

func ask(t *testing.T, nc *nats.Conn, subject string, body string) ControlReply {
	t.Helper()
	m, err := nc.Request(subject, []byte(body), 15*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	var r ControlReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatalf("%s reply %s: %v", subject, m.Data, err)
	}
	return r
}

// TestHotAddDevices adds a Modbus device (against a simulator) and a mock device to a running gateway, removes one,
// and finds the other again after a restart of the gateway on the same data directory.
func TestHotAddDevices(t *testing.T) {
	sim := startSim(t, modbussim.Demo())
	dataDir := t.TempDir()
	// The file store of devices (devices.json): JetStream, on by default, would keep them in a bucket.
	cfg := parseConfig(t, "gateway { point_subjects = false }\nnats {\n  jetstream { enabled = false }\n}")
	start := func() *Runtime {
		cfg.NATS.Port = -1
		cfg.Gateway.HTTPAddress = "127.0.0.1:0"
		cfg.Gateway.DataDir = dataDir
		rt := New(cfg, WithLogger(testLogger(t)))
		if err := rt.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return rt
	}
	rt := start()
	nc := client(t, rt.Bus().URL)
	l := watchBatches(t, nc)

	r := ask(t, nc, SubjectDevicesAdd, fmt.Sprintf(`
device "plc-9" {
  driver   = "modbus"
  address  = %q
  interval = "100ms"
  register "temperature" {
    address = 0
    type    = "float32"
  }
}`, sim.Addr()))
	if !r.OK || r.ID != "plc-9" {
		t.Fatalf("add modbus device: %+v", r)
	}
	added := time.Now()
	l.wait(t, "plc-9", "temperature")
	t.Logf("hot-added Modbus device published %s after the add", time.Since(added).Round(time.Millisecond))

	// JSON, same validation as the HCL.
	r = ask(t, nc, SubjectDevicesAdd, `{"id":"mock-9","driver":"mock","interval":"50ms","point":{"x":{"signal":"ramp"}}}`)
	if !r.OK {
		t.Fatalf("add mock device as JSON: %+v", r)
	}
	l.wait(t, "mock-9", "x")

	list := ask(t, nc, SubjectDevicesList, "")
	ids := map[string]DeviceInfo{}
	for _, d := range list.Devices {
		ids[d.ID] = d
	}
	if d := ids["plc-9"]; d.Source != SourceRuntime || d.Driver != "modbus" || d.State != StateRunning {
		t.Errorf("list: plc-9 %+v", d)
	}
	if g := ask(t, nc, SubjectDevicesGet, `{"id":"mock-9"}`); !g.OK || !strings.Contains(g.Device.HCL, `device "mock-9"`) {
		t.Errorf("get mock-9: %+v", g)
	}

	// Update changes the device: a new point appears.
	r = ask(t, nc, SubjectDevicesUpdate, `{"id":"mock-9","driver":"mock","interval":"50ms","point":{"x":{"signal":"ramp"},"y":{"signal":"sine"}}}`)
	if !r.OK {
		t.Fatalf("update: %+v", r)
	}
	l.wait(t, "mock-9", "y")

	if r := ask(t, nc, SubjectDevicesRemove, `{"id":"mock-9"}`); !r.OK {
		t.Fatalf("remove: %+v", r)
	}
	if _, ok := rt.Tree().Get("devices/mock-9"); ok {
		t.Error("removed device still in the tree")
	}

	// Restart on the same data directory: plc-9 comes back, mock-9 does not.
	if err := rt.Stop(); err != nil {
		t.Fatal(err)
	}
	rt = start()
	defer func() { _ = rt.Stop() }()
	nc2 := client(t, rt.Bus().URL)
	l2 := watchBatches(t, nc2)
	l2.wait(t, "plc-9", "temperature")
	if _, ok := rt.Tree().Get("devices/mock-9"); ok {
		t.Error("a removed device came back after the restart")
	}
	stored, err := os.ReadFile(filepath.Join(dataDir, "devices.json"))
	if err != nil || !strings.Contains(string(stored), "plc-9") || strings.Contains(string(stored), "mock-9") {
		t.Errorf("devices.json: %s (%v)", stored, err)
	}
}

// TestHotAddStoredInJetStream: with JetStream on, added devices are kept in the IOTGW_DEVICES bucket.
func TestHotAddStoredInJetStream(t *testing.T) {
	cfg := parseConfig(t, `nats {
  jetstream { enabled = true }
}`)
	rt := startRuntime(t, cfg)
	nc := client(t, rt.Bus().URL)
	if r := ask(t, nc, SubjectDevicesAdd, `device "js-1" {
  driver = "mock"
  point "p" { signal = "sine" }
}`); !r.OK {
		t.Fatalf("add: %+v", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := rt.Bus().JS.KeyValue(ctx, DevicesBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, kvKey(cfg.Gateway.ID, "js-1"))
	if err != nil || !strings.Contains(string(e.Value()), `device "js-1"`) {
		t.Fatalf("bucket entry: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Gateway.DataDir, "devices.json")); err == nil {
		t.Error("devices.json written although JetStream keeps the devices")
	}
}

// TestDeviceRequestsRejected: malformed, incomplete, duplicate and hostile requests each get their error, and
// nothing changes.
func TestDeviceRequestsRejected(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `
device "d1" {
  driver = "mock"
  point "p" { signal = "sine" }
}`))
	nc := client(t, rt.Bus().URL)
	cases := []struct {
		name, subject, body, want string
	}{
		{"empty", SubjectDevicesAdd, "", "Missing device block"},
		{"not HCL", SubjectDevicesAdd, "hello world", "request"},
		{"malformed JSON", SubjectDevicesAdd, `{"id": "x", `, "want {"},
		{"JSON without id", SubjectDevicesAdd, `{"driver":"mock"}`, `missing "id"`},
		{"unknown driver", SubjectDevicesAdd, `device "x" {
  driver = "profibus"
}`, `unknown driver "profibus"`},
		{"missing points", SubjectDevicesAdd, `{"id":"x","driver":"mock"}`, "at least one point"},
		{"unknown attribute", SubjectDevicesAdd, `{"id":"x","driver":"mock","colour":"red","point":{"p":{"signal":"sine"}}}`, `"colour"`},
		{"bad interval", SubjectDevicesAdd, `{"id":"x","driver":"mock","interval":"often","point":{"p":{"signal":"sine"}}}`, `"often" is not a duration`},
		{"duplicate", SubjectDevicesAdd, `{"id":"d1","driver":"mock","point":{"p":{"signal":"sine"}}}`, "exists"},
		{"id with a dot", SubjectDevicesAdd, `{"id":"a.b","driver":"mock","point":{"p":{"signal":"sine"}}}`, "Invalid device id"},
		{"reserved id", SubjectDevicesAdd, `{"id":"batch","driver":"mock","point":{"p":{"signal":"sine"}}}`, "reserved"},
		{"two devices", SubjectDevicesAdd, "device \"a\" {\n  driver = \"mock\"\n  point \"p\" { signal = \"sine\" }\n}\ndevice \"b\" {\n  driver = \"mock\"\n  point \"p\" { signal = \"sine\" }\n}\n", "More than one device"},
		{"hostile nesting", SubjectDevicesAdd, `device "x" { driver = ` + strings.Repeat("[", 500) + ` }`, "nested too deeply"},
		{"oversized", SubjectDevicesAdd, `device "x" { driver = "` + strings.Repeat("a", 300<<10) + `" }`, "at most"},
		{"update missing", SubjectDevicesUpdate, `{"id":"nope","driver":"mock","point":{"p":{"signal":"sine"}}}`, "no device"},
		{"remove missing", SubjectDevicesRemove, `{"id":"nope"}`, "no device"},
		{"remove malformed", SubjectDevicesRemove, `nope`, `{"id"`},
		{"remove without id", SubjectDevicesRemove, `{}`, `lacks "id"`},
		{"get missing", SubjectDevicesGet, `{"id":"nope"}`, "no device"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := ask(t, nc, tc.subject, tc.body)
			text := r.Error
			for _, d := range r.Diagnostics {
				text += "\n" + d.Pos + ": " + d.Summary + ": " + d.Detail
			}
			if r.OK || !strings.Contains(text, tc.want) {
				t.Errorf("got %+v, want an error mentioning %q", r, tc.want)
			}
		})
	}
	list := ask(t, nc, SubjectDevicesList, "")
	if len(list.Devices) != 1 || list.Devices[0].ID != "d1" {
		t.Errorf("devices after the bad requests: %+v", list.Devices)
	}
	if n, _ := rt.Tree().Get("rules/processor"); n.Restarts != 0 {
		t.Error("the control plane's actors restarted on bad input")
	}
	r := ask(t, nc, SubjectDevicesAdd, `device "ok" {
  driver = "mock"
  point "p" { signal = "sine" }
}`)
	if !r.OK {
		t.Errorf("a good request after the bad ones: %+v", r)
	}
	// Positions point at the request's text.
	r = ask(t, nc, SubjectDevicesAdd, "device \"y\" {\n  driver = \"mock\"\n  interval = \"soon\"\n  point \"p\" { signal = \"sine\" }\n}")
	if len(r.Diagnostics) == 0 || r.Diagnostics[0].Pos != "request:3:14" {
		t.Errorf("diagnostics %+v, want the position request:3:14", r.Diagnostics)
	}
}

// TestFaultInjection injects every kind of fault through iot.control.faults.* and watches the recovery each
// should cause.
func TestFaultInjection(t *testing.T) {
	needPython(t)
	sim := startSim(t, modbussim.Demo())
	rt := startRuntime(t, parseConfig(t, sidecarConfig(t, fmt.Sprintf(`
faults { enabled = true }
supervisor {
  backoff {
    initial = "50ms"
    max     = "200ms"
  }
}
device "m1" {
  driver   = "mock"
  interval = "20ms"
  point "x" { signal = "sine" }
}
device "m2" {
  driver   = "mock"
  interval = "20ms"
  point "x" { signal = "sine" }
}
device "plc" {
  driver   = "modbus"
  address  = %q
  interval = "50ms"
  timeout  = "300ms"
  retries  = 0
  register "temperature" {
    address = 0
    type    = "float32"
  }
}
sink "console" {
  type     = "console"
  subjects = ["iot.processed.batch.m1"]
}
`, sim.Addr()), map[string]string{"py": ""})))
	nc := client(t, rt.Bus().URL)
	l := watchBatches(t, nc)
	l.wait(t, "m1", "x")
	l.wait(t, "plc", "temperature")
	l.wait(t, "py", "temperature")
	inject := func(body string) FaultInfo {
		t.Helper()
		r := ask(t, nc, SubjectFaultsInject, body)
		if !r.OK || r.Fault == nil {
			t.Fatalf("inject %s: %+v", body, r)
		}
		return *r.Fault
	}
	node := func(path string) *Node {
		n, _ := rt.Tree().Get(path)
		return n
	}

	t.Run("crash", func(t *testing.T) {
		inject(`{"kind":"crash","target":"devices/m1"}`)
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if n := node("devices/m1"); n.Restarts != 1 || n.State != StateRunning || !strings.Contains(n.LastError, "crash") {
				return fmt.Errorf("devices/m1: %+v", n)
			}
			return nil
		})
		l.next(t, "m1", 2)
	})
	t.Run("error on a mock device, cleared after its duration", func(t *testing.T) {
		f := inject(`{"kind":"error","target":"devices/m1","duration":"400ms"}`)
		if f.Until == nil {
			t.Errorf("fault %+v has no end", f)
		}
		if n := node("devices/m1"); len(n.Faults) != 1 {
			t.Errorf("tree shows faults %v, want the injected one", n.Faults)
		}
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if q := l.next(t, "m1", 1)["x"].Quality; q != isp.QualityBad {
				return fmt.Errorf("quality %d under the fault", q)
			}
			return nil
		})
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if q := l.next(t, "m1", 1)["x"].Quality; q != isp.QualityGood {
				return fmt.Errorf("quality %d after the fault's duration", q)
			}
			return nil
		})
		if r := ask(t, nc, SubjectFaultsList, ""); len(r.Faults) != 0 {
			t.Errorf("faults still listed after their duration: %+v", r.Faults)
		}
	})
	t.Run("bad quality and error on a Modbus device", func(t *testing.T) {
		events, _ := nc.SubscribeSync("iot.errors.modbus.plc")
		f := inject(`{"kind":"bad_quality","target":"devices/plc"}`)
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if q := l.next(t, "plc", 1)["temperature"].Quality; q != isp.QualityBad {
				return fmt.Errorf("quality %d", q)
			}
			return nil
		})
		ask(t, nc, SubjectFaultsClear, fmt.Sprintf(`{"id":%q}`, f.ID))
		inject(`{"kind":"error","target":"devices/plc"}`)
		// Other events come on the same subject before it: under bad_quality the points were not read
		// successfully, so a staleness event may fire first (after three intervals), on a loaded machine often.
		var seen []string
		for deadline := time.Now().Add(10 * time.Second); ; {
			m, err := events.NextMsg(time.Until(deadline))
			if err != nil {
				t.Errorf("no injected error event (%v); saw %q", err, seen)
				break
			}
			if strings.Contains(string(m.Data), `"kind":"injected"`) {
				break
			}
			seen = append(seen, string(m.Data))
		}
		if r := ask(t, nc, SubjectFaultsClear, `{"target":"devices/plc"}`); r.Cleared == nil || *r.Cleared != 1 {
			t.Errorf("clear by target: %+v", r)
		}
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if q := l.next(t, "plc", 1)["temperature"].Quality; q != isp.QualityGood {
				return fmt.Errorf("quality %d after clear", q)
			}
			return nil
		})
	})
	t.Run("latency and drop on the Modbus connection", func(t *testing.T) {
		// Every transaction waits 500 ms first: the device, polling every 50 ms, gets about 2 polls a second.
		inject(`{"kind":"latency","target":"devices/plc","latency":"500ms"}`)
		rate := func() int {
			l.mu.Lock()
			from := l.count["plc"]
			l.mu.Unlock()
			time.Sleep(time.Second) // counting polls over a second is the measurement itself
			l.mu.Lock()
			defer l.mu.Unlock()
			return l.count["plc"] - from
		}
		l.next(t, "plc", 1)
		if n := rate(); n > 4 {
			t.Errorf("%d polls in a second with 500 ms latency, want at most 4", n)
		}
		ask(t, nc, SubjectFaultsClear, "")
		checkFor(t, 10*time.Second, 100*time.Millisecond, func() error {
			if n := rate(); n < 8 {
				return fmt.Errorf("%d polls a second after clearing the latency", n)
			}
			return nil
		})
		before := sim.Stats().Connections
		f := inject(`{"kind":"drop","target":"devices/plc","duration":"200ms"}`)
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if sim.Stats().Connections < before+2 {
				return fmt.Errorf("connections %d, want new ones after drops", sim.Stats().Connections)
			}
			return nil
		})
		_ = f
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if q := l.next(t, "plc", 1)["temperature"].Quality; q != isp.QualityGood {
				return fmt.Errorf("quality %d after the drops", q)
			}
			return nil
		})
	})
	t.Run("drop and kill a sidecar", func(t *testing.T) {
		// The sidecar may be between connections (a heartbeat missed on a loaded machine): a drop is refused with
		// "not connected" then, which is right; inject it once the sidecar is connected again.
		checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if r := ask(t, nc, SubjectFaultsInject, `{"kind":"drop","target":"sidecars/py"}`); !r.OK {
				if !strings.Contains(r.Error, "not connected") {
					t.Fatalf("inject drop: %+v", r)
				}
				return errors.New(r.Error)
			}
			return nil
		})
		checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			if n := node("sidecars/py"); n.Restarts < 1 || n.State != StateRunning {
				return fmt.Errorf("sidecars/py: %+v", n)
			}
			return nil
		})
		l.next(t, "py", 2)
		pid := sidecarStatus(t, nc, "py")["pid"]
		inject(`{"kind":"kill","target":"sidecars/py"}`)
		checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			if n := node("sidecars/py"); n.Restarts < 2 || n.State != StateRunning {
				return fmt.Errorf("sidecars/py: %+v", n)
			}
			return nil
		})
		l.next(t, "py", 2)
		if p := sidecarStatus(t, nc, "py")["pid"]; p == pid {
			t.Errorf("pid %v after kill, want a new process", p)
		}
	})
	t.Run("latency on a sink", func(t *testing.T) {
		inject(`{"kind":"latency","target":"sinks/console","latency":"50ms","duration":"1s"}`)
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if n := node("sinks/console"); n.Mailbox.Depth < 3 {
				return fmt.Errorf("mailbox depth %d, want messages waiting behind the slow sink", n.Mailbox.Depth)
			}
			return nil
		})
	})
	t.Run("stop", func(t *testing.T) {
		inject(`{"kind":"stop","target":"devices/m2"}`)
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if n := node("devices/m2"); n.State != StateStopped {
				return fmt.Errorf("devices/m2 is %s", n.State)
			}
			return nil
		})
	})
	t.Run("bad requests", func(t *testing.T) {
		for body, want := range map[string]string{
			`{"kind":"melt","target":"devices/m1"}`:                   "unknown fault kind",
			`{"kind":"crash","target":"devices/nope"}`:                "no actor",
			`{"kind":"crash"}`:                                        "target",
			`{"kind":"latency","target":"devices/m1"}`:                "needs \"latency\"",
			`{"kind":"kill","target":"devices/m1"}`:                   "does not support",
			`{"kind":"error","target":"devices/m1","duration":"-1s"}`: "duration",
			`{"kind":"error","target":"devices/m1","probability":2}`:  "probability",
			`not json`: "request is not",
		} {
			if r := ask(t, nc, SubjectFaultsInject, body); r.OK || !strings.Contains(r.Error, want) {
				t.Errorf("inject %s: %+v, want an error mentioning %q", body, r, want)
			}
		}
	})
}

func TestFaultsDisabledByDefault(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `
device "m1" {
  driver = "mock"
  point "x" { signal = "sine" }
}`))
	nc := client(t, rt.Bus().URL)
	if r := ask(t, nc, SubjectFaultsInject, `{"kind":"crash","target":"devices/m1"}`); r.OK || !strings.Contains(r.Error, "disabled") {
		t.Errorf("inject with faults off: %+v", r)
	}
	if n, _ := rt.Tree().Get("devices/m1"); n.Restarts != 0 {
		t.Error("a fault was injected although faults are off")
	}
}

// TestReload: one device changed, one added, one removed, one broken (a simulator whose port is taken): only the
// changed ones restart, the broken one is reported and rolled back, the untouched ones keep running.
func TestReload(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	simPort := freePort(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.hcl")
	write := func(src string) {
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mock := func(id, interval string) string {
		return fmt.Sprintf("device %q {\n  driver = \"mock\"\n  interval = %q\n  point \"x\" { signal = \"sine\" }\n}\n", id, interval)
	}
	write(fmt.Sprintf("gateway { http_address = \"127.0.0.1:0\" }\nnats { port = -1 }\nsimulator \"s\" { listen = \"127.0.0.1:%d\" }\n", simPort) + mock("keep", "50ms") + mock("change", "50ms") + mock("remove", "50ms"))
	cfg, lerr := loadConfig(path)
	if lerr != nil {
		t.Fatal(lerr)
	}
	cfg.Gateway.DataDir = dir
	rt := New(cfg, WithLogger(testLogger(t)), WithConfigPath(path))
	if err := rt.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rt.Stop() }()
	nc := client(t, rt.Bus().URL)
	keepSince := func() time.Time {
		n, _ := rt.Tree().Get("devices/keep")
		return *n.Since
	}
	before := keepSince()

	// A broken file changes nothing.
	write("device \"x\" {\n  driver = \"profibus\"\n}\n")
	r := ask(t, nc, SubjectReload, "")
	if r.OK || len(r.Diagnostics) == 0 || !strings.Contains(r.Diagnostics[0].Summary+r.Diagnostics[0].Detail, "profibus") {
		t.Fatalf("reload of a broken file: %+v", r)
	}

	write(fmt.Sprintf("gateway { http_address = \"127.0.0.1:0\" }\nnats { port = -1 }\nsimulator \"s\" { listen = %q }\n", busy.Addr().String()) + mock("keep", "50ms") + mock("change", "70ms") + mock("added", "50ms"))
	r = ask(t, nc, SubjectReload, "")
	res := r.Reload
	if res == nil {
		t.Fatalf("reload: %+v", r)
	}
	t.Logf("reload: %+v", *res)
	if strings.Join(res.Added, ",") != "devices/added" || strings.Join(res.Changed, ",") != "devices/change" ||
		strings.Join(res.Removed, ",") != "devices/remove" {
		t.Errorf("reload %+v: want added devices/added, changed devices/change, removed devices/remove", *res)
	}
	if len(res.Failed) != 1 || !strings.Contains(res.Failed[0], "endpoints/simulator-s") || !strings.Contains(res.Failed[0], "rolled back") {
		t.Errorf("failed %v, want the simulator on a taken port, rolled back", res.Failed)
	}
	if r.OK {
		t.Error("reply ok although a component failed")
	}
	if after := keepSince(); !after.Equal(before) {
		t.Errorf("devices/keep restarted (running since %s, was %s): it did not change", after, before)
	}
	if _, ok := rt.Tree().Get("devices/remove"); ok {
		t.Error("removed device still runs")
	}
	if n, ok := rt.Tree().Get("endpoints/simulator-s"); !ok || n.State != StateRunning {
		t.Errorf("rolled-back simulator: %+v", n)
	}
	l := watchBatches(t, nc)
	l.wait(t, "added", "x")
	l.wait(t, "change", "x")
}

// TestControlAddressedToOneGateway: two gateways on one server (B in client mode on A's embedded server) both
// answer a plain control request; on iot.control.gw.{gateway}.… only the one addressed answers, a device added
// that way is added to it alone, and an addressed subject that is no request gets an error, not silence.
func TestControlAddressedToOneGateway(t *testing.T) {
	a := startRuntime(t, parseConfig(t, `gateway { id = "gw-a" }`))
	startRuntime(t, parseConfig(t, fmt.Sprintf("gateway { id = \"gw-b\" }\nnats { url = %q }", a.Bus().URL)))
	nc := client(t, a.Bus().URL)
	replies := collect(t, nc, "ctl-test.>")
	gatewaysAt := func(subject string) []string {
		var out []string
		for _, m := range replies.all() {
			if m.Subject == subject {
				var p Pong
				if err := json.Unmarshal(m.Data, &p); err != nil {
					t.Fatalf("reply on %s: %q: %v", subject, m.Data, err)
				}
				out = append(out, p.Gateway)
			}
		}
		return out
	}
	ping := func(subject, reply string) {
		t.Helper()
		if err := nc.PublishRequest(subject, reply, nil); err != nil {
			t.Fatal(err)
		}
	}

	ping(SubjectPing, "ctl-test.plain")
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if got := gatewaysAt("ctl-test.plain"); len(got) != 2 {
			return fmt.Errorf("plain ping answered by %v, want both gateways", got)
		}
		return nil
	})

	// Each gateway answers in the order it got the requests, so once gw-b has answered the request after the one
	// addressed to gw-a (and gw-a the one after that), a wrong answer to an earlier one would be in already.
	ping(actors.GatewayControl("gw-a", SubjectPing), "ctl-test.to-a")
	ping(actors.GatewayControl("gw-b", SubjectPing), "ctl-test.to-b")
	ping(actors.GatewayControl("gw-a", SubjectPing), "ctl-test.to-a-again")
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if len(gatewaysAt("ctl-test.to-b")) == 0 || len(gatewaysAt("ctl-test.to-a-again")) == 0 {
			return fmt.Errorf("addressed pings unanswered: %d replies", replies.n())
		}
		return nil
	})
	for subject, want := range map[string]string{"ctl-test.to-a": "gw-a", "ctl-test.to-b": "gw-b", "ctl-test.to-a-again": "gw-a"} {
		if got := gatewaysAt(subject); len(got) != 1 || got[0] != want {
			t.Errorf("%s answered by %v, want %s alone", subject, got, want)
		}
	}

	dev := `device "only-b" {
  driver   = "mock"
  interval = "1s"
  point "p" { signal = "sine" }
}`
	if r := ask(t, nc, actors.GatewayControl("gw-b", SubjectDevicesAdd), dev); !r.OK {
		t.Fatalf("add on gw-b: %+v", r)
	}
	has := func(gw string) bool {
		r := ask(t, nc, actors.GatewayControl(gw, SubjectDevicesList), "")
		for _, d := range r.Devices {
			if d.ID == "only-b" {
				return true
			}
		}
		return false
	}
	if !has("gw-b") || has("gw-a") {
		t.Errorf("only-b on gw-b: %v, on gw-a: %v; want gw-b alone", has("gw-b"), has("gw-a"))
	}
	// The three share one JetStream, so one bucket of run-time devices: a gateway that starts now loads its own
	// entries, not gw-b's (each gateway's keys begin with its id).
	startRuntime(t, parseConfig(t, fmt.Sprintf("gateway { id = \"gw-c\" }\nnats { url = %q }", a.Bus().URL)))
	if has("gw-c") {
		t.Error("gw-c, started after only-b was added to gw-b, runs only-b too")
	}

	m, err := nc.Request(actors.GatewayControl("gw-a", "iot.control.no.such.request"), nil, 10*time.Second)
	if err != nil {
		t.Fatalf("an addressed unknown subject: %v", err)
	}
	if !strings.Contains(string(m.Data), "unknown control subject iot.control.gw.gw-a.no.such.request") {
		t.Errorf("an addressed unknown subject: %s", m.Data)
	}
	// A sidecar's status addressed to a gateway that runs no such sidecar is answered at once, not left to time out.
	m, err = nc.Request(actors.GatewayControl("gw-a", actorsidecar.StatusSubject("absent")), nil, 10*time.Second)
	if err != nil {
		t.Fatalf("an addressed status of a missing sidecar: %v", err)
	}
	if !strings.Contains(string(m.Data), `"error":"no sidecar \"absent\" on gateway \"gw-a\""`) {
		t.Errorf("an addressed status of a missing sidecar: %s", m.Data)
	}
}
