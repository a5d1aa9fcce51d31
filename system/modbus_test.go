package system

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/iotgw/iotgw/isp"
	"github.com/iotgw/iotgw/sidecar/modbussim"
	"github.com/nats-io/nats.go"
)

// latest keeps the last batch of each device from iot.processed.batch.>.
type latest struct {
	mu     sync.Mutex
	points map[string]map[string]isp.Point // device → key → point
	count  map[string]int
}

func watchBatches(t *testing.T, nc *nats.Conn) *latest {
	t.Helper()
	l := &latest{points: map[string]map[string]isp.Point{}, count: map[string]int{}}
	if _, err := nc.Subscribe("iot.processed.batch.>", func(m *nats.Msg) {
		pts, err := isp.DecodeBatch(m.Data)
		if err != nil {
			t.Errorf("batch %s: %v", m.Data, err)
			return
		}
		dev := strings.TrimPrefix(m.Subject, "iot.processed.batch.")
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.points[dev] == nil {
			l.points[dev] = map[string]isp.Point{}
		}
		for _, p := range pts {
			l.points[dev][p.Key] = p
		}
		l.count[dev]++
	}); err != nil {
		t.Fatal(err)
	}
	return l
}

// waitPoints waits until a device has published every key, and after a new batch arrives returns a copy.
func (l *latest) wait(t *testing.T, dev string, keys ...string) map[string]isp.Point {
	t.Helper()
	var out map[string]isp.Point
	checkFor(t, 15*time.Second, 10*time.Millisecond, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, k := range keys {
			if _, ok := l.points[dev][k]; !ok {
				return fmt.Errorf("%s: no %s yet", dev, k)
			}
		}
		out = map[string]isp.Point{}
		for k, p := range l.points[dev] {
			out[k] = p
		}
		return nil
	})
	return out
}

// next waits for a new batch of dev and returns the latest points.
func (l *latest) next(t *testing.T, dev string, n int) map[string]isp.Point {
	t.Helper()
	l.mu.Lock()
	from := l.count[dev]
	l.mu.Unlock()
	checkFor(t, 15*time.Second, 10*time.Millisecond, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.count[dev] < from+n {
			return fmt.Errorf("%s: %d new batches, want %d", dev, l.count[dev]-from, n)
		}
		return nil
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]isp.Point{}
	for k, p := range l.points[dev] {
		out[k] = p
	}
	return out
}

func num(t *testing.T, p isp.Point) float64 {
	t.Helper()
	f, ok := p.Value.Float()
	if !ok {
		t.Fatalf("point %s: value %v is not a number", p.Key, p.Value)
	}
	return f
}

// TestModbusTypesAgainstPymodbus reads every type in every byte order from Debian's python3-pymodbus, whose values
// are encoded by Python's struct module, not by the gateway.
func TestModbusTypesAgainstPymodbus(t *testing.T) {
	testenv.Pymodbus(t)
	type item struct {
		Address int     `json:"address"`
		Type    string  `json:"type"`
		Order   string  `json:"order"`
		Value   any     `json:"value"`
		want    float64 // numeric expectation
		name    string  // the order as the gateway's config names it
	}
	var spec []item
	addr := 0
	values := map[string]float64{
		"int16": -12345, "uint16": 54321, "int32": -1234567890, "uint32": 3234567890, "float32": 123.456,
		"int64": -1234567890123456, "uint64": 12345678901234567, "float64": -9876.54321,
	}
	widths := map[string]int{"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4, "float64": 4}
	types := []string{"int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64"}
	var regs strings.Builder
	for _, typ := range types {
		orders := []string{"ABCD", "DCBA", "BADC", "CDAB"}
		if widths[typ] == 4 { // and their 64-bit names, the same orders
			orders = append(orders, "ABCDEFGH", "HGFEDCBA", "BADCFEHG", "GHEFCDAB")
		}
		for i, name := range orders {
			v := values[typ]
			spec = append(spec, item{Address: addr, Type: typ, Order: orders[i%4], Value: v, want: v, name: name})
			fmt.Fprintf(&regs, "  register \"%s_%s\" {\n    address = %d\n    type = %q\n    order = %q\n  }\n", typ, strings.ToLower(name), addr, typ, name)
			addr += widths[typ]
		}
	}
	spec = append(spec, item{Address: addr, Type: "string", Order: "ABCD", Value: "PUMP-7"})
	fmt.Fprintf(&regs, "  register \"name\" {\n    address = %d\n    type = \"string\"\n    length = 3\n  }\n", addr)
	fmt.Fprintf(&regs, "  register \"scaled\" {\n    address = 0\n    type = \"int16\"\n    scale = 0.1\n  }\n")
	specJSON, _ := json.Marshal(spec)

	port := startPymodbus(t, string(specJSON))

	rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
gateway { point_subjects = false }
device "py" {
  driver   = "modbus"
  address  = "127.0.0.1:%d"
  interval = "200ms"
  timeout  = "2s"
%s}
`, port, regs.String())))
	nc := client(t, rt.Bus().URL)
	l := watchBatches(t, nc)
	got := l.wait(t, "py", "name", "float64_ghefcdab")
	for _, it := range spec {
		if it.Type == "string" {
			continue
		}
		key := it.Type + "_" + strings.ToLower(it.name)
		p := got[key]
		if p.Quality != isp.QualityGood {
			t.Errorf("%s: quality %d", key, p.Quality)
			continue
		}
		v := num(t, p)
		tol := 0.0
		if it.Type == "float32" {
			tol = 1e-4
		}
		if it.Type == "uint64" || it.Type == "int64" {
			if i, ok := p.Value.Int(); ok && float64(i) == it.want {
				continue
			}
		}
		if math.Abs(v-it.want) > tol {
			t.Errorf("%s: got %v, want %v", key, p.Value, it.want)
		}
	}
	if s, _ := got["name"].Value.Str(); s != "PUMP-7" {
		t.Errorf("string register: got %v, want PUMP-7", got["name"].Value)
	}
	if v := num(t, got["scaled"]); math.Abs(v-(-1234.5)) > 1e-9 {
		t.Errorf("int16 -12345 × 0.1 = %v, want -1234.5 (a scaled integer keeps its fraction)", v)
	}
	if typ := got["scaled"].Type; typ != "float64" {
		t.Errorf("int16 register with scale 0.1: got type %q, want float64, the type of its value", typ)
	}

	// And back: write a new value of every type in every order to pymodbus, then read it again.
	written := map[string]float64{
		"int16": 321, "uint16": 65000, "int32": -7654321, "uint32": 4000000000, "float32": -42.25,
		"int64": -9000000000000, "uint64": 9000000000000, "float64": 3.14159265358979,
	}
	for _, it := range spec {
		if it.Type == "string" {
			continue
		}
		key := it.Type + "_" + strings.ToLower(it.name)
		body, _ := json.Marshal(map[string]any{"key": key, "value": written[it.Type]})
		m, err := nc.Request("iot.control.devices.py.write", body, 5*time.Second)
		if err != nil || !strings.Contains(string(m.Data), `"ok":true`) {
			t.Errorf("write %s: %v %s", key, err, m.Data)
		}
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		got := l.next(t, "py", 1)
		for _, it := range spec {
			if it.Type == "string" {
				continue
			}
			key := it.Type + "_" + strings.ToLower(it.name)
			if v := num(t, got[key]); math.Abs(v-written[it.Type]) > 1e-6*math.Max(1, math.Abs(written[it.Type])) {
				return fmt.Errorf("%s reads %v after writing %v", key, got[key].Value, written[it.Type])
			}
		}
		return nil
	})
}

// startPymodbus runs testdata/pymodbus_server.py (Debian's python3-pymodbus) with the given spec and options on a
// free port until the test ends, and returns the port.
func startPymodbus(t *testing.T, spec string, options ...string) int {
	t.Helper()
	testenv.Pymodbus(t)
	port := freePort(t)
	srv := exec.Command(testenv.Python, append([]string{"../testdata/pymodbus_server.py", strconv.Itoa(port), spec}, options...)...)
	out, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "ready" {
		t.Fatalf("pymodbus server did not start (%q)", sc.Text())
	}
	return port
}

// startSim starts a Modbus simulator for a test, outside the gateway, so the test can count and fault it.
func startSim(t *testing.T, cfg modbussim.Config) *modbussim.Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	srv, err := modbussim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	return srv
}

// TestModbusCoalescingOnTheWire counts the requests the simulator receives for a register map with gaps: small
// gaps are bridged, large ones split, different functions and units never merge.
func TestModbusCoalescingOnTheWire(t *testing.T) {
	srv := startSim(t, modbussim.Config{Units: []modbussim.Unit{{ID: 1}, {ID: 2}}})
	rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
device "m" {
  driver   = "modbus"
  address  = %q
  interval = "100ms"
  max_gap  = 10
  register "a" { address = 0 }          # 0..9 with a gap of 5: one request 0..9
  register "b" { address = 5 }
  register "c" {
    address = 8
    type    = "float32"
  }
  register "d" { address = 100 }        # gap of 90: its own request
  register "e" {
    address = 0
    table   = "input"                   # another function: its own request
  }
  register "f" {
    address = 0
    table   = "coil"
  }
  register "g" {
    address = 40
    table   = "coil"                    # 39 bits apart, within max_bit_gap: merged with f
  }
  register "h" {
    address = 0
    unit_id = 2                         # another unit: its own request
  }
}
`, srv.Addr().String())))
	nc := client(t, rt.Bus().URL)
	l := watchBatches(t, nc)
	l.wait(t, "m", "a", "h")
	before := srv.Stats().TotalRequests()
	l.next(t, "m", 5)
	after := srv.Stats().TotalRequests()
	perPoll := float64(after-before) / 5
	t.Logf("8 registers read with %.1f requests per poll (one per register would be 8)", perPoll)
	// 5 requests per poll: holding 0..9, holding 100, input 0, coils 0..40, unit 2 holding 0. Polls overlapping the
	// counting window may add a partial poll, so allow one request either side per counted poll.
	if perPoll < 4.5 || perPoll > 5.5 {
		t.Errorf("%.1f requests per poll, want 5", perPoll)
	}
}

// TestModbusFaults switches the simulator's fault modes and checks each gives the documented quality and error
// event, and that the device recovers when the fault is cleared — without the actor failing.
func TestModbusFaults(t *testing.T) {
	srv := startSim(t, modbussim.Demo())
	rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
device "boiler" {
  driver      = "modbus"
  address     = %q
  interval    = "50ms"
  timeout     = "150ms"
  retries     = 0
  stale_after = "400ms"
  register "temperature" {
    address = 0
    type    = "float32"
  }
  register "pump" {
    address = 0
    table   = "coil"
  }
}
`, srv.Addr().String())))
	nc := client(t, rt.Bus().URL)
	events, err := nc.SubscribeSync("iot.errors.modbus.boiler")
	if err != nil {
		t.Fatal(err)
	}
	l := watchBatches(t, nc)
	l.wait(t, "boiler", "temperature", "pump")

	cases := []struct {
		name  string
		fault modbussim.Fault
		kind  string // the event's kind
	}{
		{"exception", modbussim.Fault{Kind: modbussim.FaultException, Exception: 4}, "exception"},
		{"delay past the timeout", modbussim.Fault{Kind: modbussim.FaultDelay, Delay: 400 * time.Millisecond}, "timeout"},
		{"no reply", modbussim.Fault{Kind: modbussim.FaultNoReply}, "timeout"},
		{"wrong transaction id", modbussim.Fault{Kind: modbussim.FaultWrongTxID}, "mismatch"},
		{"corrupt", modbussim.Fault{Kind: modbussim.FaultCorrupt}, "invalid_reply"},
		{"dropped connection", modbussim.Fault{Kind: modbussim.FaultDrop}, "disconnected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv.SetFaults(tc.fault)
			// Drain events from before the fault.
			for {
				if _, err := events.NextMsg(10 * time.Millisecond); err != nil {
					break
				}
			}
			checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
				pts := l.next(t, "boiler", 1)
				if pts["temperature"].Quality != isp.QualityBad {
					return fmt.Errorf("temperature quality %d under fault", pts["temperature"].Quality)
				}
				return nil
			})
			m, err := events.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("no event on iot.errors.modbus.boiler: %v", err)
			}
			var ev struct {
				Kind      string   `json:"kind"`
				Error     string   `json:"error"`
				Exception int      `json:"exception"`
				Keys      []string `json:"keys"`
			}
			if err := json.Unmarshal(m.Data, &ev); err != nil {
				t.Fatal(err)
			}
			t.Logf("event: %s", m.Data)
			if tc.kind != "" && ev.Kind != tc.kind {
				t.Errorf("event kind %q, want %q (%s)", ev.Kind, tc.kind, ev.Error)
			}
			if tc.name == "exception" && ev.Exception != 4 {
				t.Errorf("exception code %d, want 4", ev.Exception)
			}
			if len(ev.Keys) == 0 {
				t.Errorf("event names no points: %s", m.Data)
			}

			srv.ClearFaults()
			checkFor(t, 15*time.Second, 10*time.Millisecond, func() error {
				pts := l.next(t, "boiler", 1)
				if pts["temperature"].Quality != isp.QualityGood || pts["pump"].Quality != isp.QualityGood {
					return fmt.Errorf("not recovered: temperature %d, pump %d", pts["temperature"].Quality, pts["pump"].Quality)
				}
				return nil
			})
		})
	}

	// A fault long enough makes the points stale, once, with an event.
	srv.SetFaults(modbussim.Fault{Kind: modbussim.FaultException, Exception: 6})
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		p := l.next(t, "boiler", 1)["temperature"]
		if v, _ := p.Tag("stale"); v != "true" {
			return fmt.Errorf("temperature not reported stale yet")
		}
		return nil
	})
	srv.ClearFaults()
	if n, _ := rt.Tree().Get("devices/boiler"); n.Restarts != 0 || n.State != StateRunning {
		t.Errorf("devices/boiler: %s after %d restarts; a misbehaving device is bad quality, not a failed actor", n.State, n.Restarts)
	}
}

// TestModbusWrites writes registers and coils through iot.control.devices.{id}.write and reads them back from the
// simulator; bad requests get a clear error and change nothing.
func TestModbusWrites(t *testing.T) {
	srv := startSim(t, modbussim.Demo())
	rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
device "plc" {
  driver   = "modbus"
  address  = %q
  interval = "1s"
  register "setpoint" {
    address = 100
    type    = "uint16"
  }
  register "limit" {
    address = 102
    type    = "float32"
  }
  register "scaled" {
    address = 104
    type    = "int16"
    scale   = 0.1
  }
  register "enable" {
    address = 10
    table   = "coil"
  }
  register "flow" {
    address = 0
    table   = "input"
  }
}
`, srv.Addr().String())))
	nc := client(t, rt.Bus().URL)
	write := func(body string) map[string]any {
		t.Helper()
		m, err := nc.Request("iot.control.devices.plc.write", []byte(body), 5*time.Second)
		if err != nil {
			t.Fatalf("write %s: %v", body, err)
		}
		var r map[string]any
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("reply %s: %v", m.Data, err)
		}
		return r
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n, _ := rt.Tree().Get("devices/plc"); n == nil || n.State != StateRunning {
			return errNotYet
		}
		return nil
	})

	if r := write(`{"key":"setpoint","value":1234}`); r["ok"] != true {
		t.Fatalf("write setpoint: %v", r)
	}
	if r := write(`{"key":"limit","value":12.5}`); r["ok"] != true {
		t.Fatalf("write limit: %v", r)
	}
	if r := write(`{"key":"scaled","value":-3.7}`); r["ok"] != true {
		t.Fatalf("write scaled: %v", r)
	}
	if r := write(`{"key":"enable","value":true}`); r["ok"] != true {
		t.Fatalf("write coil: %v", r)
	}
	regs, err := srv.Registers(1, modbussim.Holding, 100, 5)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint16{1234, 0, 0x4148, 0x0000, 0xffdb} // 12.5 = 0x41480000 at 102; -3.7/0.1 = -37 = 0xffdb at 104
	for i, w := range want {
		if regs[i] != w {
			t.Errorf("register %d = %#04x, want %#04x", 100+i, regs[i], w)
		}
	}
	if on, err := srv.Bit(1, modbussim.Coil, 10); err != nil || !on {
		t.Errorf("coil 10 = %v (%v), want on", on, err)
	}

	for body, want := range map[string]string{
		`{"key":"setpoint","value":70000}`: "range",
		`{"key":"setpoint","value":-1}`:    "range",
		`{"key":"setpoint","value":"x"}`:   "",
		`{"key":"flow","value":1}`:         "read-only",
		`{"key":"nope","value":1}`:         `no register "nope"`,
		`{"key":"setpoint"}`:               "missing",
		`not json`:                         "not {",
		`{"key":"setpoint","value":1.5}`:   "",
		strings.Repeat("x", 10000):         "at most",
	} {
		r := write(body)
		e, _ := r["error"].(string)
		if r["ok"] == true || e == "" || !strings.Contains(e, want) {
			t.Errorf("write %.40s: %v, want an error mentioning %q", body, r, want)
		}
	}
	if regs, _ := srv.Registers(1, modbussim.Holding, 100, 1); regs[0] != 1234 {
		t.Errorf("a rejected write changed register 100 to %d", regs[0])
	}
}

// TestModbusDemoInProcess runs a simulator block and polls it, as the out-of-the-box config does.
func TestModbusDemoInProcess(t *testing.T) {
	port := freePort(t)
	rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
simulator "plant" { listen = "127.0.0.1:%d" }
device "boiler" {
  driver   = "modbus"
  address  = "127.0.0.1:%[1]d"
  interval = "100ms"
  register "temperature" {
    address = 0
    type    = "float32"
  }
  register "temperature_cdab" {
    address = 20
    type    = "float32"
    order   = "CDAB"
  }
}
`, port)))
	nc := client(t, rt.Bus().URL)
	l := watchBatches(t, nc)
	pts := l.wait(t, "boiler", "temperature", "temperature_cdab")
	a, b := num(t, pts["temperature"]), num(t, pts["temperature_cdab"])
	// One request reads both, but the simulator evaluates each signal on its own clock reading: allow ~100 ms of sine.
	if a < 20 || a > 90 || math.Abs(a-b) > 0.5 {
		t.Errorf("temperature %v and its CDAB copy %v: want the same value in 20..90", a, b)
	}
	tr := tree(t, nc)
	for _, path := range []string{"endpoints/simulator-plant", fmt.Sprintf("endpoints/modbus-tcp-127_0_0_1_%d", port), "devices/boiler"} {
		if n := find(tr, path); n == nil || n.State != StateRunning {
			t.Errorf("%s: %+v", path, n)
		}
	}
}

// TestModbusRTUOverTCP polls Debian's python3-pymodbus framing Modbus RTU over TCP (as a serial device server does)
// with mode = "rtu-over-tcp": reads of registers and coils, and a write read back.
func TestModbusRTUOverTCP(t *testing.T) {
	port := startPymodbus(t, `{"hr":[17142,59769,65531],"co":[1,0,1]}`, "rtu")
	rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
device "rtu" {
  driver   = "modbus"
  mode     = "rtu-over-tcp"
  address  = "127.0.0.1:%d"
  interval = "100ms"
  timeout  = "1s"
  register "temperature" {
    address = 0
    type    = "float32"
  }
  register "offset" {
    address = 2
    type    = "int16"
  }
  register "pump" {
    address = 0
    table   = "coil"
  }
  register "valve" {
    address = 2
    table   = "coil"
  }
  register "setpoint" {
    address = 10
    type    = "uint16"
  }
}
`, port)))
	nc := client(t, rt.Bus().URL)
	l := watchBatches(t, nc)
	pts := l.wait(t, "rtu", "temperature", "offset", "pump", "valve")
	for key, want := range map[string]float64{"temperature": 123.456, "offset": -5, "pump": 1, "valve": 1} {
		p := pts[key]
		if v := num(t, p); p.Quality != isp.QualityGood || math.Abs(v-want) > 1e-4 {
			t.Errorf("%s = %v (quality %d), want %v", key, p.Value, p.Quality, want)
		}
	}
	m, err := nc.Request("iot.control.devices.rtu.write", []byte(`{"key":"setpoint","value":321}`), 5*time.Second)
	if err != nil || !strings.Contains(string(m.Data), `"ok":true`) {
		t.Fatalf("write over RTU: %v %s", err, m.Data)
	}
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if v := num(t, l.next(t, "rtu", 1)["setpoint"]); v != 321 {
			return fmt.Errorf("setpoint reads %v after writing 321", v)
		}
		return nil
	})
}
