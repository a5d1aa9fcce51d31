package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Debian's programs of the MQTT tests.
const (
	MosquittoBinary = "/usr/sbin/mosquitto"
	MosquittoPub    = "/usr/bin/mosquitto_pub"
	MosquittoSub    = "/usr/bin/mosquitto_sub"
)

// MosquittoBroker is Debian's broker, started by a test on a free loopback port with a config file the test writes,
// and stopped when the test ends.
type MosquittoBroker struct {
	t      testing.TB
	dir    string
	conf   string
	Port   int
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	// Starts counts the broker's starts (1 after Mosquitto, 2 after a Restart).
	Starts int
}

// Addr is host:port of the broker's listener.
func (m *MosquittoBroker) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.Port)) }

// URL is the broker's tcp:// URL.
func (m *MosquittoBroker) URL() string { return "tcp://" + m.Addr() }

// Mosquitto starts Debian's mosquitto on a free loopback port; extra is appended to its config file (after
// "listener {port} 127.0.0.1", "allow_anonymous true", no persistence). Without it the test is skipped naming
// Debian's mosquitto package, or fails with CI set.
func Mosquitto(t testing.TB, extra string) *MosquittoBroker {
	t.Helper()
	Program(t, MosquittoBinary, "mosquitto")
	dir := t.TempDir()
	m := &MosquittoBroker{t: t, dir: dir, conf: filepath.Join(dir, "mosquitto.conf")}
	t.Cleanup(m.Stop)
	onFreePorts(t, 1, func(p []int) error {
		m.Port = p[0]
		text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n", m.Port)
		if os.Geteuid() == 0 {
			// Started as root, mosquitto drops to the user mosquitto, who cannot read the test's files (the
			// password file, the certificates in t.TempDir()): stay the user that started it.
			text += "user root\n"
		}
		text += extra + "\n"
		if err := os.WriteFile(m.conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		m.Starts = 0 // an attempt that failed does not count
		return m.start()
	})
	return m
}

// start runs the broker and waits until it listens (runMosquitto).
func (m *MosquittoBroker) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Starts++
	var err error
	m.cmd, m.exited, err = runMosquitto(m.t, m.conf, m.Addr())
	return err
}

// runMosquitto starts Debian's mosquitto on config file conf, its output in the test's log, and waits until addr
// takes connections. The process is reaped when it ends (exited is closed then). On an error the command is nil
// unless the broker is still running (it did not listen in time: the caller's Stop ends it); an error wraps
// errExitedAtStart when it ended first.
func runMosquitto(t testing.TB, conf, addr string) (*exec.Cmd, chan struct{}, error) {
	cmd := exec.Command(MosquittoBinary, "-c", conf)
	cmd.Stderr = &prefixWriter{t: t, prefix: "mosquitto: "}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start mosquitto: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	if err := awaitListening(addr, exited, 30*time.Second); err != nil {
		if errors.Is(err, errExitedAtStart) {
			cmd = nil
		}
		return cmd, exited, fmt.Errorf("mosquitto: %w", err)
	}
	return cmd, exited, nil
}

// Stop kills the broker and waits for it to exit (nothing happens when it is not running).
func (m *MosquittoBroker) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	<-m.exited
	m.cmd = nil
}

// Restart stops the broker and starts it again on the same port: without persistence it forgets every session
// and subscription, as a broker restarted after a crash does.
func (m *MosquittoBroker) Restart() {
	m.t.Helper()
	m.Stop()
	if err := m.start(); err != nil {
		m.t.Fatal(err)
	}
}

// Publish publishes payload on topic with Debian's mosquitto_pub (a real client, independent of the gateway's);
// a nil payload is a zero-length message.
func (m *MosquittoBroker) Publish(t testing.TB, topic string, payload []byte, args ...string) {
	t.Helper()
	Program(t, MosquittoPub, "mosquitto-clients")
	full := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(m.Port), "-t", topic}
	if payload == nil {
		full = append(full, "-n") // a zero-length message
	} else {
		full = append(full, "-s") // the message from stdin: any size, any bytes
	}
	cmd := exec.Command(MosquittoPub, append(full, args...)...)
	cmd.Stdin = bytes.NewReader(payload)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub -t %s: %v: %s", topic, err, out)
	}
}

// PublishLines publishes each line as one message on topic, all from one mosquitto_pub -l (one connection, as
// fast as it goes).
func (m *MosquittoBroker) PublishLines(t testing.TB, topic string, lines []string, args ...string) {
	t.Helper()
	Program(t, MosquittoPub, "mosquitto-clients")
	full := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(m.Port), "-t", topic, "-l"}, args...)
	cmd := exec.Command(MosquittoPub, full...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub -l -t %s: %v: %s", topic, err, out)
	}
}

// prefixWriter logs a program's output into the test log, line by line.
type prefixWriter struct {
	t      testing.TB
	prefix string
	mu     sync.Mutex
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if line != "" {
			w.t.Log(w.prefix + line)
		}
	}
	return len(p), nil
}
