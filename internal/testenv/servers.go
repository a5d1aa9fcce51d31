package testenv

import (
	"errors"
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

// FreePort returns a TCP port free on loopback right now. Another process may take it before the caller binds
// it: a server the tests start takes its ports through onFreePorts, which tries again on new ones.
func FreePort(t testing.TB) int {
	t.Helper()
	return freePorts(t, 1)[0]
}

// freePorts returns n distinct ports free on loopback right now (all held open until each is found, so none is
// given twice).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// errExitedAtStart: a server ended before its port answered. On a first start the usual cause is a port that
// freePorts found free and another process took before the server bound it ("address already in use").
var errExitedAtStart = errors.New("exited before it listened")

// onFreePorts calls start with n ports free a moment ago. When start fails with errExitedAtStart, it logs why and
// tries again on new ports, three attempts in all; any other error, or the third, fails the test. start writes
// the server's config for the ports it is given and starts it (Redis, Influxd, Gateway, both mosquittos).
func onFreePorts(t testing.TB, n int, start func(ports []int) error) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		err := start(freePorts(t, n))
		if err == nil {
			return
		}
		if !errors.Is(err, errExitedAtStart) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("attempt %d: %v\n(trying again on other ports)", attempt, err)
	}
}

// awaitListening waits until addr takes TCP connections. It returns an error wrapping errExitedAtStart when
// exited is closed first, and another when timeout passes.
func awaitListening(addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%w on %s", errExitedAtStart, addr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s after %s: %v", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
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

// startServer starts a Server of name on n free ports: configure writes its config for the ports and returns its
// command line, log file and client address. It is stopped when the test ends.
func startServer(t testing.TB, name string, n int, configure func(ports []int) (args []string, log, addr string)) *Server {
	t.Helper()
	var s *Server
	onFreePorts(t, n, func(ports []int) error {
		args, log, addr := configure(ports)
		_ = os.Remove(log) // the log of an attempt that failed is in the test's log already
		s = &Server{t: t, name: name, args: args, log: log, Addr: addr}
		t.Cleanup(s.Stop)
		return s.start()
	})
	return s
}

// Start runs the server again (after Stop), on the same ports and data, and waits until its port answers.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *Server) start() error {
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.args[0], s.args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %v", s.name, err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	done := s.done
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	if err := awaitListening(s.Addr, done, 60*time.Second); err != nil {
		if errors.Is(err, errExitedAtStart) {
			<-done // its log is closed
			out, _ := os.ReadFile(s.log)
			s.cmd = nil
			return fmt.Errorf("%s %w:\n%s", s.name, err, out)
		}
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return nil
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
	return startServer(t, "redis-server", 1, func(p []int) ([]string, string, string) {
		conf := fmt.Sprintf("bind 127.0.0.1\nport %d\ndir %s\nappendonly yes\nappendfsync always\nsave \"\"\n"+
			"daemonize no\nprotected-mode yes\nlogfile \"\"\n", p[0], dir)
		path := filepath.Join(dir, "redis.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		return []string{bin, path}, filepath.Join(dir, "redis.log"), fmt.Sprintf("127.0.0.1:%d", p[0])
	})
}

// Influxd starts Debian's influxd (InfluxDB 1.x) on free loopback ports with a config file it writes: its own
// directories, reporting and the monitor store off. Addr is the HTTP API's host:port.
func Influxd(t testing.TB) *Server {
	t.Helper()
	bin := Program(t, "/usr/bin/influxd", "influxdb")
	dir := t.TempDir()
	return startServer(t, "influxd", 2, func(p []int) ([]string, string, string) {
		httpPort, bindPort := p[0], p[1]
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
		return []string{bin, "-config", path}, filepath.Join(dir, "influxd.log"), fmt.Sprintf("127.0.0.1:%d", httpPort)
	})
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
