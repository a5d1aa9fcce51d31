package system

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
)

// httpConfig has a device that works and a sink with a subject mailbox.
const httpConfig = `
gateway { id = "gw-http" }
supervisor {
  max_restarts = 1
  within       = "1m"
  backoff {
    initial = "20ms"
    max     = "50ms"
    jitter  = 0
  }
}
device "d1" {
  driver   = "mock"
  interval = "20ms"
  point "x" { signal = "ramp" }
}
sink "console" {
  type     = "console"
  subjects = ["iot.processed.batch.>"]
}
`

// failingDevice fails for good: one restart is allowed, and it panics on its first poll every time. Tests with it
// wait until it has failed before they stop the gateway (a stop while it is between its panic and its restart
// waits out the stop budget).
const failingDevice = `
device "bad" {
  driver     = "mock"
  interval   = "20ms"
  fail_after = 1
  point "y" { signal = "constant" }
}
`

// startHTTPRuntime starts a gateway whose HTTP server listens on a random loopback port.
func startHTTPRuntime(t *testing.T, src string, opts ...Option) *Runtime {
	t.Helper()
	cfg := parseConfig(t, src)
	cfg.Gateway.HTTPAddress = "127.0.0.1:0"
	rt := startRuntime(t, cfg, opts...)
	if rt.HTTPAddr() == "" {
		t.Fatal("HTTPAddr is empty though the HTTP server is enabled")
	}
	return rt
}

// httpClient is a client of its own, so its connections are not confused with other tests' and are closed at the
// end (a kept-alive connection is a goroutine on each side).
func httpClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func httpDo(t *testing.T, c *http.Client, method, url string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, string(body), resp.Header
}

// sample is one series of a scrape.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape GETs /metrics and parses it with Prometheus's own text parser, as a Prometheus server would.
func scrape(t *testing.T, c *http.Client, rt *Runtime) []sample {
	t.Helper()
	resp, err := c.Get("http://" + rt.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %d", resp.StatusCode)
	}
	var p expfmt.TextParser
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape: parse: %v", err)
	}
	var out []sample
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			s := sample{name: name, labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Gauge != nil:
				s.value = m.GetGauge().GetValue()
			case m.Counter != nil:
				s.value = m.GetCounter().GetValue()
			case m.Untyped != nil:
				s.value = m.GetUntyped().GetValue()
			case m.Histogram != nil:
				s.value = float64(m.GetHistogram().GetSampleCount())
			case m.Summary != nil:
				s.value = float64(m.GetSummary().GetSampleCount())
			}
			out = append(out, s)
		}
	}
	return out
}

// value finds the series name{labels…}; labels given as "k", "v" pairs need only be a subset of the series'.
func value(samples []sample, name string, kv ...string) (float64, error) {
outer:
	for _, s := range samples {
		if s.name != name {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if s.labels[kv[i]] != kv[i+1] {
				continue outer
			}
		}
		return s.value, nil
	}
	return 0, fmt.Errorf("no series %s%v in the scrape", name, kv)
}

// want checks name{labels} == v.
func want(samples []sample, v float64, name string, kv ...string) error {
	got, err := value(samples, name, kv...)
	if err != nil {
		return err
	}
	if got != v {
		return fmt.Errorf("%s%v = %v, want %v", name, kv, got, v)
	}
	return nil
}

func TestHTTPMetricsScrape(t *testing.T) {
	rt := startHTTPRuntime(t, httpConfig+failingDevice)
	c := httpClient(t)

	// The actors' own metrics are on the same registry as the runtime's.
	rt.mon.metrics.PointsIn("devices/d1", 3)
	rt.mon.metrics.ModbusRequest("m1", 3, 2*time.Millisecond, nil)

	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		s := scrape(t, c, rt)
		for _, err := range []error{
			want(s, 1, "iotgw_actor_up", "actor", "devices/d1", "kind", "device/mock"),
			want(s, 1, "iotgw_actor_up", "actor", "root", "kind", "supervisor"),
			want(s, 0, "iotgw_actor_failed", "actor", "devices/d1"),
			want(s, 0, "iotgw_actor_restarts_total", "actor", "devices/d1"),
			want(s, 1, "iotgw_nats_connected"),
			want(s, 1, "iotgw_info", "gateway", "gw-http", "version", Version),
			want(s, 10000, "iotgw_mailbox_capacity", "actor", "sinks/console"),
			want(s, 0, "iotgw_mailbox_dropped_total", "actor", "sinks/console"),
			want(s, 3, "iotgw_points_in_total", "actor", "devices/d1"),
			want(s, 1, "iotgw_modbus_request_seconds", "device", "m1", "function", "3"), // the sample count
			// devices/bad fails on its first poll, is restarted once, fails again and is stopped for good.
			want(s, 1, "iotgw_actor_failed", "actor", "devices/bad"),
			want(s, 0, "iotgw_actor_up", "actor", "devices/bad"),
			want(s, 1, "iotgw_actor_restarts_total", "actor", "devices/bad", "kind", "device/mock"),
		} {
			if err != nil {
				return err
			}
		}
		for _, name := range []string{"iotgw_mailbox_depth", "iotgw_mailbox_pending", "iotgw_mailbox_blocked_total"} {
			if _, err := value(s, name, "actor", "sinks/console"); err != nil {
				return err
			}
		}
		if v, err := value(s, "iotgw_mailbox_delivered_total", "actor", "sinks/console"); err != nil || v == 0 {
			return fmt.Errorf("sinks/console delivered %v (%v), want some", v, err)
		}
		for _, name := range []string{"iotgw_nats_in_msgs_total", "iotgw_nats_out_msgs_total", "iotgw_nats_in_bytes_total", "iotgw_nats_out_bytes_total"} {
			if v, err := value(s, name); err != nil || v == 0 {
				return fmt.Errorf("%s = %v (%v), want > 0", name, v, err)
			}
		}
		if err := want(s, 0, "iotgw_nats_reconnects_total"); err != nil {
			return err
		}
		// The Go runtime and process collectors.
		for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
			if _, err := value(s, name); err != nil {
				return err
			}
		}
		return nil
	})

	// A failed device does not make the gateway unready.
	if code, body, _ := httpDo(t, c, http.MethodGet, "http://"+rt.HTTPAddr()+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with a failed device: %d %s, want 200", code, body)
	}
}

// TestMetricsRegistryPerRuntime: two gateways in one process each have their own registry and their own figures.
func TestMetricsRegistryPerRuntime(t *testing.T) {
	a := startHTTPRuntime(t, httpConfig)
	b := startHTTPRuntime(t, `
gateway { id = "gw-other" }
device "d2" {
  driver   = "mock"
  interval = "50ms"
  point "x" { signal = "ramp" }
}
`)
	c := httpClient(t)
	a.mon.metrics.PointsOut("sinks/console", 5)
	sb := scrape(t, c, b)
	if err := want(sb, 1, "iotgw_info", "gateway", "gw-other", "version", Version); err != nil {
		t.Error(err)
	}
	if _, err := value(sb, "iotgw_actor_up", "actor", "devices/d1"); err == nil {
		t.Error("gateway b shows gateway a's device")
	}
	if _, err := value(sb, "iotgw_points_out_total", "actor", "sinks/console"); err == nil {
		t.Error("gateway b shows gateway a's points")
	}
	if err := want(scrape(t, c, a), 5, "iotgw_points_out_total", "actor", "sinks/console"); err != nil {
		t.Error(err)
	}
}

func TestHTTPEndpoints(t *testing.T) {
	rt := startHTTPRuntime(t, httpConfig)
	c := httpClient(t)
	base := "http://" + rt.HTTPAddr()
	tests := []struct {
		name, method, path string
		code               int
		body               string // a substring of the body
	}{
		{"healthz", http.MethodGet, "/healthz", http.StatusOK, "ok"},
		{"healthz HEAD", http.MethodHead, "/healthz", http.StatusOK, ""},
		{"readyz", http.MethodGet, "/readyz", http.StatusOK, `"ready":true`},
		{"metrics", http.MethodGet, "/metrics", http.StatusOK, "# TYPE iotgw_actor_up gauge"},
		{"index", http.MethodGet, "/", http.StatusOK, "/readyz"},
		{"unknown path", http.MethodGet, "/nope", http.StatusNotFound, ""},
		{"unknown below a known one", http.MethodGet, "/healthz/x", http.StatusNotFound, ""},
		{"wrong method", http.MethodPost, "/healthz", http.StatusMethodNotAllowed, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := httpDo(t, c, tc.method, base+tc.path)
			if code != tc.code {
				t.Errorf("%s %s: got %d, want %d (body %q)", tc.method, tc.path, code, tc.code, body)
			}
			if !strings.Contains(body, tc.body) {
				t.Errorf("%s %s: body %q, want it to contain %q", tc.method, tc.path, body, tc.body)
			}
		})
	}

	// /readyz names every check.
	_, body, hdr := httpDo(t, c, http.MethodGet, base+"/readyz")
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("/readyz Content-Type %q, want application/json", ct)
	}
	var rd Readiness
	if err := json.Unmarshal([]byte(body), &rd); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	var names []string
	for name, ch := range rd.Checks {
		names = append(names, name)
		if !ch.OK {
			t.Errorf("check %s failed: %s", name, ch.Detail)
		}
	}
	sort.Strings(names)
	if got, want := strings.Join(names, ","), "devices,endpoints,nats,root,rules,rules/processor,sidecars,sinks,sinks/console"; got != want {
		t.Errorf("checks %s, want %s", got, want)
	}
}

// TestHTTPPortInUse: a gateway whose HTTP address is taken does not start, says which address, and leaves
// nothing running (its NATS server is down again).
func TestHTTPPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()

	cfg := parseConfig(t, httpConfig)
	cfg.NATS.Port = -1
	cfg.Gateway.DataDir = t.TempDir()
	cfg.Gateway.HTTPAddress = addr
	rt := New(cfg, WithLogger(testLogger(t)), WithStdout(io.Discard))
	err = rt.Start(context.Background())
	if err == nil {
		_ = rt.Stop()
		t.Fatal("Start succeeded with the HTTP port in use")
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q does not name the address %s", err, addr)
	}
	t.Logf("error: %v", err)
	if !rt.Bus().Conn.IsClosed() || rt.Bus().Server.Running() {
		t.Error("the bus is still up after the failed Start")
	}
	if err := rt.Stop(); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Stop after a failed Start: %v, want ErrNotStarted", err)
	}
}

func TestHTTPDisabled(t *testing.T) {
	cfg := parseConfig(t, httpConfig)
	cfg.Gateway.HTTPAddress = ""
	rt := startRuntime(t, cfg)
	if a := rt.HTTPAddr(); a != "" {
		t.Errorf("HTTPAddr %q with the server disabled, want \"\"", a)
	}
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if rd := rt.Readiness(); !rd.Ready {
			return fmt.Errorf("not ready: %v", rd.Failed)
		}
		return nil
	})
}

// TestReadyzFollowsNATS runs the gateway against a nats-server process, kills it and starts it again: /readyz
// must say 503 naming the NATS check while the server is down, and 200 once the gateway has reconnected.
func TestReadyzFollowsNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a nats-server process; skipped with -short")
	}
	srv := &natsProcess{t: t, bin: natsServerBinary(t), port: freePort(t)}
	srv.start()
	t.Cleanup(srv.stop)
	rt := startHTTPRuntime(t, fmt.Sprintf(`
nats {
  url            = "nats://127.0.0.1:%d"
  reconnect_wait = "100ms"
  ping_interval  = "1s"
  jetstream { enabled = false } # the server runs without -js
}
device "d1" {
  driver   = "mock"
  interval = "50ms"
  point "x" { signal = "ramp" }
}
`, srv.port))
	c := httpClient(t)
	url := "http://" + rt.HTTPAddr() + "/readyz"
	ready := func(wantCode int) func() error {
		return func() error {
			code, body, _ := httpDo(t, c, http.MethodGet, url)
			if code != wantCode {
				return fmt.Errorf("/readyz %d %s, want %d", code, body, wantCode)
			}
			return nil
		}
	}
	checkFor(t, 5*time.Second, 20*time.Millisecond, ready(http.StatusOK))

	srv.stop()
	checkFor(t, 5*time.Second, 20*time.Millisecond, ready(http.StatusServiceUnavailable))
	code, body, _ := httpDo(t, c, http.MethodGet, url)
	var rd Readiness
	if err := json.Unmarshal([]byte(body), &rd); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	if code != http.StatusServiceUnavailable || rd.Ready || len(rd.Failed) != 1 || rd.Failed[0] != CheckNATS || rd.Checks[CheckNATS].OK {
		t.Errorf("/readyz with NATS down: %d %s, want 503 failing only the nats check", code, body)
	}
	t.Logf("NATS down: %s", body)
	s := scrape(t, c, rt)
	if err := want(s, 0, "iotgw_nats_connected"); err != nil {
		t.Error(err)
	}

	srv.start()
	checkFor(t, 15*time.Second, 20*time.Millisecond, ready(http.StatusOK))
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		return want(scrape(t, c, rt), 1, "iotgw_nats_reconnects_total")
	})
}

func TestHealthAndPerformanceOnBus(t *testing.T) {
	rt := startHTTPRuntime(t, httpConfig+failingDevice, withMetricsInterval(50*time.Millisecond))
	nc := client(t, rt.Bus().URL)
	health, err := nc.SubscribeSync(SubjectMetricsHealth + ".gw-http")
	if err != nil {
		t.Fatal(err)
	}
	perf, err := nc.SubscribeSync(SubjectMetricsPerformance + ".gw-http")
	if err != nil {
		t.Fatal(err)
	}

	// Reports until devices/bad has failed for good, so the counts are settled.
	var h HealthReport
	checkFor(t, 10*time.Second, time.Millisecond, func() error {
		msg, err := health.NextMsg(5 * time.Second)
		if err != nil {
			return err
		}
		h = HealthReport{}
		if err := json.Unmarshal(msg.Data, &h); err != nil {
			t.Fatalf("health report %q: %v", msg.Data, err)
		}
		if h.Actors.Failed != 1 {
			return fmt.Errorf("health report: %d failed actors, want 1", h.Actors.Failed)
		}
		return nil
	})
	if h.Gateway != "gw-http" || !h.Ready || h.Timestamp == 0 || !h.NATS.Connected || !h.NATS.Embedded || h.NATS.Status != "CONNECTED" {
		t.Errorf("health report %+v", h)
	}
	if len(h.Checks) != 9 || !h.Checks[CheckNATS].OK || !h.Checks[GroupDevices].OK || !h.Checks["rules/processor"].OK {
		t.Errorf("health checks %+v, want nats, 6 supervisors, the processor and the sink, all ok", h.Checks)
	}
	// root, control, sinks, sinks/console, rules, rules/processor, sidecars, devices, devices/d1 run.
	if h.Actors.Running < 9 || h.Actors.Restarting != 0 || h.Actors.Total != h.Actors.Running+h.Actors.Failed {
		t.Errorf("health actors %+v", h.Actors)
	}

	// The raw JSON, to check the field names operators see. Reports queued since the subscription may predate the
	// sink's first delivery (a loaded machine): take the first one that shows it.
	type report struct {
		Gateway string `json:"gateway"`
		Actors  []struct {
			Path     string         `json:"path"`
			Restarts *int           `json:"restarts"`
			Mailbox  map[string]int `json:"mailbox"`
		} `json:"actors"`
		NATS      map[string]uint64 `json:"nats"`
		Timestamp int64             `json:"timestamp"`
	}
	var raw report
	var data []byte
	checkFor(t, 10*time.Second, time.Millisecond, func() error {
		m, err := perf.NextMsg(5 * time.Second)
		if err != nil {
			return err
		}
		raw, data = report{}, m.Data
		if err := json.Unmarshal(m.Data, &raw); err != nil {
			t.Fatalf("performance report %q: %v", m.Data, err)
		}
		for _, a := range raw.Actors {
			if a.Path == "sinks/console" && a.Mailbox["delivered"] > 0 {
				return nil
			}
		}
		return errors.New("no performance report yet after the console sink's first delivery")
	})
	msg := struct{ Data []byte }{data}
	if raw.Gateway != "gw-http" || raw.Timestamp == 0 {
		t.Errorf("performance report %s", msg.Data)
	}
	for _, k := range []string{"in_msgs", "out_msgs", "in_bytes", "out_bytes"} {
		if raw.NATS[k] == 0 {
			t.Errorf("performance nats.%s = 0 in %s", k, msg.Data)
		}
	}
	byPath := map[string]int{}
	for i, a := range raw.Actors {
		if a.Restarts == nil {
			t.Errorf("actor %s without restarts", a.Path)
		}
		byPath[a.Path] = i
	}
	for _, p := range []string{"root", "devices/d1", "devices/bad", "sinks/console"} {
		if _, ok := byPath[p]; !ok {
			t.Errorf("performance report lacks %s: %s", p, msg.Data)
		}
	}
	if i, ok := byPath["sinks/console"]; ok {
		mb := raw.Actors[i].Mailbox
		if mb["capacity"] != 10000 || mb["delivered"] == 0 {
			t.Errorf("sinks/console mailbox %v, want capacity 10000 and some delivered", mb)
		}
	}
	if i, ok := byPath["devices/bad"]; ok && *raw.Actors[i].Restarts != 1 {
		t.Errorf("devices/bad restarts %d, want 1", *raw.Actors[i].Restarts)
	}
}

// TestHTTPStopLeavesNothingBehind: the HTTP server (with a kept-alive client connection), the publisher and the
// runtime's goroutines are all gone after Stop.
func TestHTTPStopLeavesNothingBehind(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := parseConfig(t, httpConfig)
	cfg.NATS.Port = -1
	cfg.Gateway.DataDir = t.TempDir()
	cfg.Gateway.HTTPAddress = "127.0.0.1:0"
	rt := New(cfg, WithLogger(testLogger(t)), WithStdout(io.Discard), withMetricsInterval(10*time.Millisecond))
	if err := rt.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for _, p := range []string{"/metrics", "/readyz", "/healthz"} {
		if code, body, _ := httpDo(t, c, http.MethodGet, "http://"+rt.HTTPAddr()+p); code != http.StatusOK {
			t.Fatalf("%s: %d %s", p, code, body)
		}
	}
	addr := rt.HTTPAddr()
	start := time.Now()
	if err := rt.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stop took %s, want under 5s", took)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Errorf("%s still accepts connections after Stop", addr)
	}
	if a := rt.HTTPAddr(); a != "" {
		t.Errorf("HTTPAddr %q after Stop, want \"\"", a)
	}
	// The server closed the idle kept-alive connection, so the client's goroutines for it end too.
	checkFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		if n := runtime.NumGoroutine(); n > before+2 {
			buf := make([]byte, 1<<20)
			return fmt.Errorf("%d goroutines after stop, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		return nil
	})
	tr.CloseIdleConnections()
}
