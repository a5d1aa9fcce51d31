package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestStartServerTriesAgainOnATakenPort plays the race that made influxd fail at start in CI: another process
// takes the port FreePort found between the pick and the server's bind. The first attempt's port is taken by a
// listener of the test before redis-server starts on it; redis-server exits ("Address already in use"), and
// startServer starts it on a second port, where it answers.
func TestStartServerTriesAgainOnATakenPort(t *testing.T) {
	bin := Program(t, "/usr/bin/redis-server", "redis-server")
	dir := t.TempDir()
	var attempts []int
	srv := startServer(t, "redis-server", 1, func(p []int) ([]string, string, string) {
		attempts = append(attempts, p[0])
		if len(attempts) == 1 {
			// Bound, not listening: the port is taken, and a connection to it is refused (a listener would
			// answer the start's readiness check in the server's place).
			fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { syscall.Close(fd) })
			if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: p[0], Addr: [4]byte{127, 0, 0, 1}}); err != nil {
				t.Fatal(err)
			}
		}
		conf := filepath.Join(dir, "redis.conf")
		text := fmt.Sprintf("bind 127.0.0.1\nport %d\ndir %s\nsave \"\"\ndaemonize no\nlogfile \"\"\n", p[0], dir)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return []string{bin, conf}, filepath.Join(dir, "redis.log"), fmt.Sprintf("127.0.0.1:%d", p[0])
	})
	if len(attempts) != 2 || attempts[0] == attempts[1] {
		t.Fatalf("attempts on ports %v, want two on different ports", attempts)
	}
	c, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "+PONG\r\n" {
		t.Fatalf("redis-server on %s answered %q, %v", srv.Addr, buf[:n], err)
	}
}
