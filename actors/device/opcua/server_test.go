package opcua_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/iotgw/iotgw/isp"
	"github.com/iotgw/iotgw/system"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// uaServer is the node-opcua test server (testdata/server/server.js) running as its own process on a loopback
// port, with its PKI in a folder of the test, so a restart on the same port presents the same certificate.
type uaServer struct {
	t        *testing.T
	node     string
	script   string
	port     int
	pki      string
	args     []string
	cmd      *exec.Cmd
	done     chan struct{}
	CertFile string // the server's certificate (PEM)
}

// startServer starts the test server on a free port.
func startServer(t *testing.T, args ...string) *uaServer {
	t.Helper()
	node, script := testenv.NodeOPCUA(t)
	s := &uaServer{t: t, node: node, script: script, port: freePort(t), pki: t.TempDir(), args: args}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *uaServer) Endpoint() string { return fmt.Sprintf("opc.tcp://127.0.0.1:%d", s.port) }

func (s *uaServer) start() {
	s.t.Helper()
	args := append([]string{s.script, "--port", fmt.Sprint(s.port), "--pki", s.pki}, s.args...)
	cmd := exec.Command(s.node, args...)
	cmd.Stdin = strings.NewReader("")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start the OPC UA server: %v", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	lines := make(chan string, 1)
	go func() { // reads the server's stdout until it exits; the test's process, not an actor's
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "listening" {
				select {
				case lines <- f[2]:
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(s.done)
	}()
	select {
	case cert := <-lines:
		s.CertFile = cert
	case <-s.done:
		s.t.Fatalf("the OPC UA server exited before listening: %s", stderr.String())
	case <-time.After(60 * time.Second):
		s.kill()
		s.t.Fatalf("the OPC UA server did not listen within 60s: %s", stderr.String())
	}
}

// kill stops the server at once (SIGKILL: a crash, not a shutdown that would tell its clients).
func (s *uaServer) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// restart kills the server and starts it again on the same port with the same certificate.
func (s *uaServer) restart() {
	s.kill()
	// The port is free again once the process is gone; the server binds it with SO_REUSEADDR.
	s.start()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// gateway starts a runtime on cfg's HCL (embedded NATS on a free port, data_dir in the test) and returns it with
// a client connection.
func gateway(t *testing.T, src string) (*system.Runtime, *nats.Conn) {
	t.Helper()
	rt, nc, _ := gatewayDir(t, src)
	return rt, nc
}

// gatewayDir is gateway, also returning the gateway's data_dir.
func gatewayDir(t *testing.T, src string) (*system.Runtime, *nats.Conn, string) {
	t.Helper()
	cfg, diags := config.Parse([]byte(src), "test.hcl")
	if diags.HasErrors() {
		t.Fatalf("config: %s", diags.Error())
	}
	cfg.NATS.Port = -1
	cfg.Gateway.HTTPAddress = ""
	dir := t.TempDir()
	cfg.Gateway.DataDir = dir
	log := zerolog.Nop()
	if testing.Verbose() {
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, NoColor: true}).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	}
	rt := system.New(cfg, system.WithLogger(log), system.WithStdout(io.Discard))
	if err := rt.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := rt.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	nc, err := nats.Connect(rt.Bus().URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return rt, nc, dir
}

// recorder keeps what a device publishes: its points (raw batches) and its events.
type recorder struct {
	mu     sync.Mutex
	points []isp.Point
	events []map[string]any
}

func record(t *testing.T, nc *nats.Conn, device string) *recorder {
	t.Helper()
	r := &recorder{}
	if _, err := nc.Subscribe("iot.raw.opcua."+device, func(m *nats.Msg) {
		pts, err := isp.DecodeBatch(m.Data)
		if err != nil {
			t.Errorf("raw batch %s: %v", m.Data, err)
			return
		}
		r.mu.Lock()
		r.points = append(r.points, pts...)
		r.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe("iot.errors.opcua."+device, func(m *nats.Msg) {
		var ev map[string]any
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Errorf("event %s: %v", m.Data, err)
			return
		}
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

// of returns the points of key recorded so far.
func (r *recorder) of(key string) []isp.Point {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []isp.Point
	for _, p := range r.points {
		if p.Key == key {
			out = append(out, p)
		}
	}
	return out
}

// count returns how many points of key were recorded so far.
func (r *recorder) count(key string) int { return len(r.of(key)) }

// event returns the first event of kind whose error contains text, and whether there is one.
func (r *recorder) event(kind, text string) (map[string]any, bool) {
	evs := r.eventsOf(kind, text)
	if len(evs) == 0 {
		return nil, false
	}
	return evs[0], true
}

func (r *recorder) eventsOf(kind, text string) []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
	for _, ev := range r.events {
		if ev["kind"] == kind && strings.Contains(fmt.Sprint(ev["error"]), text) {
			out = append(out, ev)
		}
	}
	return out
}

func (r *recorder) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, _ := json.Marshal(r.events)
	return fmt.Sprintf("%d points; events %s", len(r.points), data)
}

// waitFor polls f until it returns nil, failing the test after total (generous: the machine is shared).
func waitFor(t *testing.T, total time.Duration, f func() error) {
	t.Helper()
	// The wait is a guard against a hang, not a bound on speed: never shorter than hangFloor, so a test that asks
	// for a few seconds cannot fail on a loaded machine (go test -race ./... on two shared cores) only for being slow.
	total = max(total, hangFloor)
	deadline := time.Now().Add(total)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("condition not met after %s: %v", total, err)
}

// request sends a control request and decodes its reply.
func request(t *testing.T, nc *nats.Conn, subject, body string, reply any) {
	t.Helper()
	m, err := nc.Request(subject, []byte(body), 30*time.Second)
	if err != nil {
		t.Fatalf("request %s %s: %v", subject, body, err)
	}
	if err := json.Unmarshal(m.Data, reply); err != nil {
		t.Fatalf("reply %s: %v", m.Data, err)
	}
}

// writeFile writes a file in the test's folder and returns its path.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// hangFloor is the shortest wait of a polling helper (a failure waits this long; a success returns at once).
const hangFloor = 30 * time.Second
