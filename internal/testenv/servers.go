package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Program returns the path of an external program the tests start (path, or found on PATH), or skips the test
// naming the Debian package that has it; with CI set it fails instead.
func Program(t testing.TB, path, debianPackage string) string {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if p, err := exec.LookPath(filepath.Base(path)); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found: install Debian's %s", path, debianPackage)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set: a missing test server fails the run)", msg)
	}
	t.Skip(msg)
	return ""
}

// FreePort returns a TCP port free on loopback right now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitFor polls cond until it holds or a generous deadline passes (tests run on a loaded machine).
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Server is an external server process a test started: Stop ends it (SIGTERM, then SIGKILL after a bound),
// Start runs it again with the same arguments, on the same ports and data. It is stopped when the test ends.
type Server struct {
	t    testing.TB
	name string
	args []string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	// Addr is host:port of the server's client port.
	Addr string
}

func newServer(t testing.TB, name string, args []string, log, addr string) *Server {
	s := &Server{t: t, name: name, args: args, log: log, Addr: addr}
	t.Cleanup(s.Stop)
	s.Start()
	return s
}

// Start runs the server and waits until its port answers.
func (s *Server) Start() {
	s.t.Helper()
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(s.args[0], s.args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.t.Fatalf("start %s: %v", s.name, err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	done := s.done
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	WaitFor(s.t, s.name+" on "+s.Addr, 60*time.Second, func() bool {
		select {
		case <-done:
			out, _ := os.ReadFile(s.log)
			s.t.Fatalf("%s exited at start:\n%s", s.name, out)
		default:
		}
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// Stop ends the server and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	s.cmd = nil
}

// Redis starts Debian's redis-server on a free loopback port with a config file in a temporary directory:
// append-only file fsynced at every write, so what it answered for survives Stop and Start.
func Redis(t testing.TB) *Server {
	t.Helper()
	bin := Program(t, "/usr/bin/redis-server", "redis-server")
	dir := t.TempDir()
	port := FreePort(t)
	conf := fmt.Sprintf("bind 127.0.0.1\nport %d\ndir %s\nappendonly yes\nappendfsync always\nsave \"\"\n"+
		"daemonize no\nprotected-mode yes\nlogfile \"\"\n", port, dir)
	path := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return newServer(t, "redis-server", []string{bin, path}, filepath.Join(dir, "redis.log"), fmt.Sprintf("127.0.0.1:%d", port))
}

// Influxd starts Debian's influxd (InfluxDB 1.x) on free loopback ports with a config file it writes: its own
// directories, reporting and the monitor store off. Addr is the HTTP API's host:port.
func Influxd(t testing.TB) *Server {
	t.Helper()
	bin := Program(t, "/usr/bin/influxd", "influxdb")
	dir := t.TempDir()
	httpPort, bindPort := FreePort(t), FreePort(t)
	conf := strings.NewReplacer("DIR", dir).Replace(fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:%d"
[meta]
  dir = "DIR/meta"
[data]
  dir = "DIR/data"
  wal-dir = "DIR/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:%d"
  log-enabled = false
[continuous_queries]
  enabled = false
`, bindPort, httpPort))
	path := filepath.Join(dir, "influxdb.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return newServer(t, "influxd", []string{bin, "-config", path}, filepath.Join(dir, "influxd.log"), fmt.Sprintf("127.0.0.1:%d", httpPort))
}

// CPU is the CPU time (user and system) the server's current process has used, from /proc; 0 where there is none.
func (s *Server) CPU() time.Duration {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The fields after the command's closing parenthesis: state is field 3, utime 14 and stime 15.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
}
