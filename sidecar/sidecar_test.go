package sidecar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestMain lets the test binary act as a sidecar program: with IOTGW_FAKE_SIDECAR set it prints a line, listens on
// ISP_PORT (or exits at once with "exit") and waits.
func TestMain(m *testing.M) {
	switch os.Getenv("IOTGW_FAKE_SIDECAR") {
	case "":
		os.Exit(m.Run())
	case "exit":
		fmt.Println("giving up")
		os.Exit(3)
	default:
		fmt.Println("fake sidecar starting, LOG_LEVEL=" + os.Getenv("LOG_LEVEL"))
		fmt.Fprintln(os.Stderr, "a line on stderr")
		l, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("ISP_PORT"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for {
			c, err := l.Accept()
			if err != nil {
				os.Exit(0)
			}
			c.Close()
		}
	}
}

func writeManifest(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name+ManifestSuffix)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestManifests(t *testing.T) {
	dir := t.TempDir()
	writeManifest(t, dir, "my-sidecar", `{"name":"my-sidecar","version":"1.0.0","type":"adapter","mode":"isp-sidecar",
		"entry":"my-sidecar/my-sidecar.exe","description":"设备适配器（ISP Sidecar模式）","isp_port":50052}`)
	m, err := FindPlugin(dir, "my-sidecar")
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := m.Executable()
	if m.ISPPort != 50052 || exe != filepath.Join(dir, "my-sidecar", "my-sidecar.exe") {
		t.Errorf("manifest %+v, executable %s", m, exe)
	}

	cases := []struct{ name, body, want string }{
		{"not JSON", `{"name":`, "unexpected EOF"},
		{"wrong mode", `{"name":"x","mode":"native","entry":"x","isp_port":1}`, `mode "native"`},
		{"no entry", `{"name":"x","mode":"isp-sidecar","isp_port":1}`, "entry: missing"},
		{"port 0", `{"name":"x","mode":"isp-sidecar","entry":"x","isp_port":0}`, "isp_port 0"},
		{"port too big", `{"name":"x","mode":"isp-sidecar","entry":"x","isp_port":70000}`, "isp_port 70000"},
		{"bad name", `{"name":"a/../b","mode":"isp-sidecar","entry":"x","isp_port":1}`, `name "a/../b"`},
		{"unknown field", `{"name":"x","mode":"isp-sidecar","entry":"x","isp_port":1,"evil":true}`, `unknown field "evil"`},
		{"wrong type", `{"name":"x","mode":"isp-sidecar","entry":"x","isp_port":"50052"}`, "isp_port"},
		{"huge", `{"name":"` + strings.Repeat("a", 100<<10) + `"}`, "larger than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeManifest(t, t.TempDir(), "x", tc.body)
			_, err := LoadManifest(path)
			if err == nil || !errors.Is(err, ErrBadManifest) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrBadManifest mentioning %q", err, tc.want)
			}
		})
	}

	if _, err := FindPlugin(dir, "nope"); !errors.Is(err, ErrNoPlugin) || !strings.Contains(err.Error(), "my-sidecar") {
		t.Errorf("missing plugin: %v, want ErrNoPlugin listing the known ones", err)
	}
	writeManifest(t, dir, "other", `{"name":"not-other","mode":"isp-sidecar","entry":"x","isp_port":1}`)
	if _, err := FindPlugin(dir, "other"); !errors.Is(err, ErrBadManifest) {
		t.Errorf("manifest naming another plugin: %v", err)
	}
}

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
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

func selfManifest(t *testing.T, mode string) *Manifest {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("IOTGW_FAKE_SIDECAR", mode)
	return &Manifest{Name: "fake", Mode: ModeISPSidecar, Entry: exe, ISPPort: freePort(t), Dir: t.TempDir()}
}

func TestLaunchWaitStop(t *testing.T) {
	var logs lockedBuffer
	p, err := Launch(selfManifest(t, "listen"), LaunchOptions{LogLevel: "debug", Log: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitPort(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Stop returned before the process exited")
	}
	out := logs.String()
	for _, want := range []string{`"plugin":"fake"`, "LOG_LEVEL=debug", `"stream":"stderr"`, "a line on stderr"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
}

func TestLaunchExitBeforeListening(t *testing.T) {
	p, err := Launch(selfManifest(t, "exit"), LaunchOptions{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitPort(context.Background())
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("got %v, want ErrExited with the exit status", err)
	}
}

func TestKill(t *testing.T) {
	p, err := Launch(selfManifest(t, "listen"), LaunchOptions{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitPort(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
		if p.Err() == nil || !strings.Contains(p.Err().Error(), "killed") {
			t.Errorf("exit %v, want killed", p.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("killed process did not exit")
	}
}

func TestLaunchMissingEntry(t *testing.T) {
	m := &Manifest{Name: "ghost", Mode: ModeISPSidecar, Entry: "nope/ghost", ISPPort: 1, Dir: t.TempDir()}
	if _, err := Launch(m, LaunchOptions{}); err == nil || !strings.Contains(err.Error(), "ghost") {
		t.Errorf("got %v, want an error naming the plugin", err)
	}
}
