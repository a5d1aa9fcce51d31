package system

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
)

// needPython returns a python3 that runs the standard-library sidecar; without one the test skips, and fails when
// CI is set (CI installs it).
func needPython(t *testing.T) {
	t.Helper()
	testenv.Python3(t)
}

func pluginsDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("testdata/plugins")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// sidecarConfig is a gateway with Python sidecars launched as plugins, each with its own environment.
func sidecarConfig(t *testing.T, extra string, sidecars map[string]string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "gateway {\n  plugins_dir = %q\n  point_subjects = false\n}\n%s\n", pluginsDir(t), extra)
	for name, env := range sidecars {
		fmt.Fprintf(&b, `
sidecar %q {
  plugin                = "pysim"
  port                  = %d
  heartbeat_interval    = "200ms"
  max_missed_heartbeats = 3
  request_timeout       = "2s"
  max_line_size         = "64KB"
  env                   = { %s }
  config {
    mode     = "tcp"
    address  = "127.0.0.1:5020"
    interval = "50ms"
    register "temperature" {
      address = 0
      type    = "float32"
      unit    = "C"
    }
    register "running" {
      address  = 1
      function = 1
      type     = "bool"
    }
  }
}
`, name, freePort(t), env)
	}
	return b.String()
}

// counter counts batches per device on iot.processed.batch.>.
type counter struct {
	mu sync.Mutex
	n  map[string]int
	at map[string]time.Time
}

func countBatches(t *testing.T, nc *nats.Conn) *counter {
	t.Helper()
	c := &counter{n: map[string]int{}, at: map[string]time.Time{}}
	if _, err := nc.Subscribe("iot.processed.batch.>", func(m *nats.Msg) {
		dev := strings.TrimPrefix(m.Subject, "iot.processed.batch.")
		c.mu.Lock()
		c.n[dev]++
		c.at[dev] = time.Now()
		c.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *counter) get(dev string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[dev]
}

func (c *counter) waitMore(t *testing.T, dev string, more int, within time.Duration) {
	t.Helper()
	from := c.get(dev)
	checkFor(t, within, 10*time.Millisecond, func() error {
		if n := c.get(dev); n < from+more {
			return fmt.Errorf("%s: %d batches, want %d", dev, n, from+more)
		}
		return nil
	})
}

func sidecarStatus(t *testing.T, nc *nats.Conn, name string) map[string]any {
	t.Helper()
	msg, err := nc.Request("iot.control.sidecars."+name+".status", nil, 5*time.Second)
	if err != nil {
		t.Fatalf("status of %s: %v", name, err)
	}
	var out map[string]any
	if err := json.Unmarshal(msg.Data, &out); err != nil {
		t.Fatalf("status reply %s: %v", msg.Data, err)
	}
	return out
}

// TestPythonSidecarInterop runs a sidecar written from the seed document alone, in Python with the standard
// library, as a plugin: CONFIG is accepted, its DATA arrives on the bus as processed points, STATUS is answered.
func TestPythonSidecarInterop(t *testing.T) {
	needPython(t)
	rt := startRuntime(t, parseConfig(t, sidecarConfig(t, "", map[string]string{"py": ""})))
	nc := client(t, rt.Bus().URL)
	metrics, err := nc.SubscribeSync("iot.metrics.performance.sidecar.py")
	if err != nil {
		t.Fatal(err)
	}

	sub, err := nc.SubscribeSync("iot.processed.batch.py")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatalf("no data from the Python sidecar: %v", err)
	}
	// METRICS (the sidecar's own counters, every half second) are published for it.
	if m, err := metrics.NextMsg(5 * time.Second); err != nil {
		t.Errorf("no sidecar metrics on iot.metrics.performance.sidecar.py: %v", err)
	} else if !strings.Contains(string(m.Data), `"registers":2`) || !strings.Contains(string(m.Data), `"sidecar":"py"`) {
		t.Errorf("metrics %s, want the sidecar's counters under its name", m.Data)
	}
	msg, err = sub.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatalf("no data from the Python sidecar: %v", err)
	}
	pts, err := isp.DecodeBatch(msg.Data)
	if err != nil || len(pts) != 2 {
		t.Fatalf("batch %s: %v, want 2 points", msg.Data, err)
	}
	for _, p := range pts {
		if p.DeviceID != "py" || p.Source != "py" || p.Quality != 1 {
			t.Errorf("point %+v: want device and source py (the sidecar's name), good quality", p)
		}
	}
	if u, _ := pts[0].Tag("unit"); pts[0].Key != "temperature" || u != "C" {
		t.Errorf("first point %+v, want temperature with its unit tag from the CONFIG", pts[0])
	}

	st := sidecarStatus(t, nc, "py")
	resp, _ := st["response"].(map[string]any)
	if resp["success"] != true || resp["language"] != "python" || resp["registers"] != 2.0 || resp["configured"] != true {
		t.Errorf("status %v: want the sidecar's own STATUS reply (configured, 2 registers)", st)
	}
	if pid, _ := st["pid"].(float64); pid == 0 {
		t.Errorf("status %v lacks the launched process's pid", st)
	}
	if n, _ := rt.Tree().Get("sidecars/py"); n.State != StateRunning || n.Restarts != 0 {
		t.Errorf("sidecars/py: %s with %d restarts", n.State, n.Restarts)
	}
}

// TestSidecarKilledIsRelaunched: kill -9 of a launched sidecar → the actor fails, the supervisor restarts it, it
// relaunches the process and reconnects, and data flows again.
func TestSidecarKilledIsRelaunched(t *testing.T) {
	needPython(t)
	rt := startRuntime(t, parseConfig(t, sidecarConfig(t, `
supervisor {
  backoff {
    initial = "100ms"
    max     = "1s"
  }
}`, map[string]string{"py": ""})))
	nc := client(t, rt.Bus().URL)
	c := countBatches(t, nc)
	c.waitMore(t, "py", 3, 15*time.Second)

	pid := int(sidecarStatus(t, nc, "py")["pid"].(float64))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if n, _ := rt.Tree().Get("sidecars/py"); n.Restarts < 1 {
			return fmt.Errorf("not restarted yet")
		}
		return nil
	})
	c.waitMore(t, "py", 3, 15*time.Second)
	t.Logf("recovery after kill -9: data flowing again %s after the kill", time.Since(killed).Round(time.Millisecond))
	n, _ := rt.Tree().Get("sidecars/py")
	if !strings.Contains(n.LastError, "process exited") && !strings.Contains(n.LastError, "connection lost") {
		t.Errorf("last error %q, want the process exit or the lost connection", n.LastError)
	}
	newPid := int(sidecarStatus(t, nc, "py")["pid"].(float64))
	if newPid == pid || newPid == 0 {
		t.Errorf("pid after relaunch %d, before %d: want a new process", newPid, pid)
	}
}

// TestSidecarFaults: a silent sidecar is declared dead and reconnected; one that sends garbage, an oversized line
// and an unknown type has each reported and keeps its connection; one that never answers CONFIG times out and is
// retried with backoff; a well-behaved sidecar beside them is not affected.
func TestSidecarFaults(t *testing.T) {
	needPython(t)
	rt := startRuntime(t, parseConfig(t, sidecarConfig(t, `
supervisor {
  max_restarts = 100
  backoff {
    initial = "100ms"
    max     = "400ms"
  }
}`, map[string]string{
		"good":     "",
		"garbage":  `PYSIM_GARBAGE = "1"`,
		"silent":   `PYSIM_SILENT = "1"`,
		"noconfig": `PYSIM_NO_CONFIG_REPLY = "1", HEARTBEAT_S = "0.1"`,
		"half":     `PYSIM_HALF_LINE = "1"`,
	})))
	nc := client(t, rt.Bus().URL)
	halfErrs, err := nc.SubscribeSync("iot.errors.isp.half")
	if err != nil {
		t.Fatal(err)
	}
	errs, err := nc.SubscribeSync("iot.errors.isp.garbage")
	if err != nil {
		t.Fatal(err)
	}
	c := countBatches(t, nc)

	// Garbage: three bad lines reported, none of them fatal.
	var reported []string
	for len(reported) < 3 {
		m, err := errs.NextMsg(15 * time.Second)
		if err != nil {
			t.Fatalf("bad lines reported so far %v: %v", reported, err)
		}
		reported = append(reported, string(m.Data))
	}
	all := strings.Join(reported, "\n")
	for _, want := range []string{"not JSON", "longer than", "FROBNICATE"} {
		if !strings.Contains(strings.ToLower(all), strings.ToLower(want)) {
			t.Errorf("bad-line events lack %q:\n%s", want, all)
		}
	}
	c.waitMore(t, "garbage", 3, 10*time.Second)

	// Half a line, then the sidecar hangs up: the fragment is reported, the connection is re-established.
	if m, err := halfErrs.NextMsg(15 * time.Second); err != nil {
		t.Errorf("half line not reported: %v", err)
	} else if !strings.Contains(string(m.Data), "not JSON") {
		t.Errorf("half-line event %s, want it reported as a line that is not JSON", m.Data)
	}

	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		silent, _ := rt.Tree().Get("sidecars/silent")
		noconfig, _ := rt.Tree().Get("sidecars/noconfig")
		if silent.Restarts < 1 || !strings.Contains(silent.LastError, "silent") {
			return fmt.Errorf("silent sidecar: %d restarts, last error %q", silent.Restarts, silent.LastError)
		}
		if half, _ := rt.Tree().Get("sidecars/half"); half.Restarts < 1 {
			return fmt.Errorf("sidecar that hung up mid-line: %d restarts", half.Restarts)
		}
		if noconfig.Restarts < 2 || !strings.Contains(noconfig.LastError, "CONFIG") || !strings.Contains(noconfig.LastError, "timed out") {
			return fmt.Errorf("sidecar that never answers CONFIG: %d restarts, last error %q", noconfig.Restarts, noconfig.LastError)
		}
		return nil
	})
	for _, name := range []string{"good", "garbage"} {
		n, _ := rt.Tree().Get("sidecars/" + name)
		if n.Restarts != 0 || n.State != StateRunning {
			t.Errorf("sidecars/%s: %s after %d restarts; want running, never restarted", name, n.State, n.Restarts)
		}
	}
	c.waitMore(t, "good", 5, 10*time.Second)
}
