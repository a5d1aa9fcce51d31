package system

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

var (
	natsServerOnce sync.Once
	natsServerBin  string
	natsServerErr  error
)

// natsServerBinary builds the nats-server command from the module the gateway embeds, once per test run, so the
// external-server test runs a real, separate server process without anything installed on the machine.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	natsServerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "iotgw-nats-server")
		if err != nil {
			natsServerErr = err
			return
		}
		natsServerBin = filepath.Join(dir, "nats-server")
		cmd := exec.Command("go", "build", "-o", natsServerBin, "github.com/nats-io/nats-server/v2")
		if out, err := cmd.CombinedOutput(); err != nil {
			natsServerErr = fmt.Errorf("go build nats-server: %v\n%s", err, out)
		}
	})
	if natsServerErr != nil {
		t.Fatalf("%v", natsServerErr)
	}
	return natsServerBin
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

// natsProcess is an external nats-server process on a fixed loopback port.
type natsProcess struct {
	t    *testing.T
	bin  string
	port int
	args []string // more nats-server flags: --tls …, -js -sd DIR
	cmd  *exec.Cmd
}

func (p *natsProcess) start() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(p.port)}, p.args...)...)
	if testing.Verbose() {
		p.cmd.Stderr = os.Stderr
	}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start nats-server: %v", err)
	}
	checkFor(p.t, 10*time.Second, 20*time.Millisecond, func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.port), 100*time.Millisecond)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

func (p *natsProcess) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.cmd = nil
}

// TestExternalServerRestart runs the gateway against a separate nats-server process and kills and restarts that
// server mid-stream: the gateway must reconnect by itself and points must flow again.
func TestExternalServerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a nats-server process; skipped with -short")
	}
	srv := &natsProcess{t: t, bin: natsServerBinary(t), port: freePort(t)}
	srv.start()
	t.Cleanup(srv.stop)
	url := fmt.Sprintf("nats://127.0.0.1:%d", srv.port)

	cfg := parseConfig(t, fmt.Sprintf(`
nats {
  url            = %q
  reconnect_wait = "100ms"
  ping_interval  = "1s"
  jetstream { enabled = false } # the server runs without -js
}
device "d1" {
  driver   = "mock"
  interval = "20ms"
  point "x" { signal = "ramp" }
}
`, url))
	rt := startRuntime(t, cfg)
	if rt.Bus().Server != nil {
		t.Fatal("an embedded server started though the config names an external URL")
	}

	var got atomic.Int64
	nc := client(t, url)
	if _, err := nc.Subscribe("iot.processed.batch.d1", func(*nats.Msg) { got.Add(1) }); err != nil {
		t.Fatal(err)
	}
	waitMore := func(what string) {
		t.Helper()
		from := got.Load()
		checkFor(t, 15*time.Second, 20*time.Millisecond, func() error {
			if n := got.Load(); n < from+5 {
				return fmt.Errorf("%s: %d batches, want %d", what, n, from+5)
			}
			return nil
		})
	}
	waitMore("before the restart")

	srv.stop()
	down := time.Now()
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if rt.Bus().Conn.IsConnected() {
			return fmt.Errorf("gateway still thinks it is connected")
		}
		return nil
	})
	srv.start()
	checkFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		if !rt.Bus().Conn.IsConnected() || !nc.IsConnected() {
			return fmt.Errorf("not reconnected yet")
		}
		return nil
	})
	t.Logf("gateway reconnected %s after the server went down", time.Since(down).Round(time.Millisecond))
	waitMore("after the restart")
	if n := rt.Bus().Conn.Stats().Reconnects; n < 1 {
		t.Errorf("reconnects %d, want at least 1", n)
	}
}

func TestEmbeddedPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := parseConfig(t, fmt.Sprintf("nats { port = %d }\ngateway { http_address = \"\" }", l.Addr().(*net.TCPAddr).Port))
	cfg.Gateway.DataDir = t.TempDir()
	start := time.Now()
	err = New(cfg).Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "cannot listen on "+l.Addr().String()) {
		t.Fatalf("start on a taken port: %v, want it named", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s to say the port is taken", took)
	}
}
