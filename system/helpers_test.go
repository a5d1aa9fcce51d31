package system

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/iotgw/config"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// syncBuffer is an io.Writer the console sink writes to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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

// checkFor polls f until it returns nil or the deadline passes (nats-server's checkFor).
func checkFor(t *testing.T, total, sleep time.Duration, f func() error) {
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
		time.Sleep(sleep)
	}
	t.Fatalf("condition not met after %s: %v", total, err)
}

// parseConfig parses an HCL config for a test, failing the test on any diagnostic.
func parseConfig(t *testing.T, src string) *config.Config {
	t.Helper()
	cfg, diags := config.Parse([]byte(src), "test.hcl")
	if diags.HasErrors() {
		t.Fatalf("config: %s", diags.Error())
	}
	return cfg
}

// testLogger writes the runtime's logs to the test log when -v is given.
func testLogger(t *testing.T) zerolog.Logger {
	if !testing.Verbose() {
		return zerolog.Nop()
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, NoColor: true}).Level(zerolog.DebugLevel).With().Timestamp().Logger()
}

// startRuntime starts a gateway on a random embedded port and stops it at the end of the test.
func startRuntime(t *testing.T, cfg *config.Config, opts ...Option) *Runtime {
	t.Helper()
	if cfg.NATS.URL == "embedded" {
		cfg.NATS.Port = -1
	}
	if cfg.Gateway.HTTPAddress == "127.0.0.1:8080" { // the default: tests run in parallel packages
		cfg.Gateway.HTTPAddress = "127.0.0.1:0"
	}
	cfg.Gateway.DataDir = t.TempDir()
	rt := New(cfg, append([]Option{WithLogger(testLogger(t)), WithStdout(io.Discard)}, opts...)...)
	if err := rt.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := rt.Stop(); err != nil && err != ErrNotStarted {
			t.Errorf("stop: %v", err)
		}
	})
	return rt
}

// client connects a separate NATS client to the runtime's bus, as an operator's `nats sub` would.
func client(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// tree asks the gateway for its supervision tree over the control subject.
func tree(t *testing.T, nc *nats.Conn) *Node {
	t.Helper()
	msg, err := nc.Request(SubjectTree, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", SubjectTree, err)
	}
	var n Node
	if err := json.Unmarshal(msg.Data, &n); err != nil {
		t.Fatalf("tree reply %q: %v", msg.Data, err)
	}
	return &n
}

// find returns the node at path in a tree snapshot.
func find(n *Node, path string) *Node {
	if n == nil {
		return nil
	}
	if n.Path == path {
		return n
	}
	for _, c := range n.Children {
		if f := find(c, path); f != nil {
			return f
		}
	}
	return nil
}

func lines(s string) []string {
	return strings.Split(strings.TrimSpace(s), "\n")
}

var errNotYet = errors.New("not yet")

func loadConfig(path string) (*config.Config, error) { return config.Load(path) }

// hangFloor is the shortest wait of a polling helper (a failure waits this long; a success returns at once).
const hangFloor = 30 * time.Second
