package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/nats-io/nats.go"
)

// gone says whether pid has exited: no such process, or a zombie nobody has reaped yet (an orphan's new parent
// may be slow to, or, as PID 1 in some containers, never reap).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return os.IsNotExist(err)
	}
	// pid (comm) state …: the state follows the last ')'.
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
	return strings.HasPrefix(strings.TrimSpace(rest), "Z")
}

// TestLaunchedSidecarDiesWithGateway: a sidecar the gateway launched does not outlive a kill -9 of the gateway:
// its process is gone and its port free within a deadline (Linux: Pdeathsig).
func TestLaunchedSidecarDiesWithGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the gateway as a process; skipped with -short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("a sidecar dies with its gateway on Linux only (Pdeathsig)")
	}
	testenv.Python3(t) // the launched sidecar is the Python one of system/testdata
	plugins, err := filepath.Abs("system/testdata/plugins")
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	g := startGatewayProcess(t, fmt.Sprintf(`
gateway {
  plugins_dir  = %q
  http_address = ""
}
nats { port = -1 }
sidecar "py" {
  plugin = "pysim"
  port   = %d
  config {
    mode     = "tcp"
    address  = "127.0.0.1:5020"
    interval = "100ms"
    register "temperature" { address = 0 }
  }
}
`, plugins, port))
	nc, err := nats.Connect(g.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var pid int
	deadline := time.Now().Add(20 * time.Second)
	for pid == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sidecar did not connect")
		}
		if msg, err := nc.Request("iot.control.sidecars.py.status", nil, 2*time.Second); err == nil {
			var st map[string]any
			if json.Unmarshal(msg.Data, &st) == nil && st["error"] == nil {
				p, _ := st["pid"].(float64)
				pid = int(p)
			}
		}
		if pid == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Cleanup(func() { _ = syscall.Kill(-pid, syscall.SIGKILL) }) // when the test fails, leave nothing behind

	if err := g.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = g.cmd.Wait()
	killed := time.Now()
	// The process is gone and its port free: a thread group's leader is a zombie before its last thread has
	// exited and closed the socket, so wait for both.
	portFree := func() bool {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			return false
		}
		l.Close()
		return true
	}
	for !gone(pid) || !portFree() {
		if time.Since(killed) > 5*time.Second {
			t.Fatalf("sidecar pid %d still running (or its port %d taken) %s after the gateway's SIGKILL", pid, port, time.Since(killed).Round(time.Millisecond))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("sidecar gone and its port free %s after the gateway's SIGKILL", time.Since(killed).Round(time.Millisecond))
}
