package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The mqtt sink's broker and subscriber: Debian's mosquitto, started on a free loopback port with a config file
// the test writes, persistence on (so a subscriber's persistent session outlives a restart of the broker), and
// Debian's mosquitto_sub as the real client that reads what the sink published. (The mqtt device driver's tests
// have a helper of their own for publishing into a broker; this one is for reading out of one.)

// SinkBroker is a mosquitto the test started; Stop and Start stop and start it again on the same port.
type SinkBroker struct {
	Port int
	t    testing.TB
	dir  string
	conf string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// MosquittoSink starts a mosquitto for a sink test; extra is appended to its listener's config (password_file,
// certfile, …; anonymous clients are allowed unless extra says allow_anonymous itself). It is stopped when the test ends. Without mosquitto (and mosquitto_sub) the test skips naming the
// Debian packages, or fails with CI set.
func MosquittoSink(t testing.TB, extra string) *SinkBroker {
	t.Helper()
	Program(t, MosquittoBinary, "mosquitto")
	Program(t, MosquittoSub, "mosquitto-clients")
	b := &SinkBroker{t: t, dir: t.TempDir()}
	b.conf = filepath.Join(b.dir, "mosquitto.conf")
	t.Cleanup(b.Stop)
	anonymous := "allow_anonymous true\n"
	if strings.Contains(extra, "allow_anonymous") {
		anonymous = ""
	}
	if os.Geteuid() == 0 {
		// mosquitto started by root drops to the user mosquitto, which cannot write the test's directory.
		anonymous = "user root\n" + anonymous
	}
	onFreePorts(t, 1, func(p []int) error {
		b.Port = p[0]
		conf := fmt.Sprintf("per_listener_settings true\npersistence true\npersistence_location %s/\nautosave_interval 1\n"+
			"listener %d 127.0.0.1\n%smax_queued_messages 0\nmax_inflight_messages 0\n%s\n", b.dir, b.Port, anonymous, extra)
		if err := os.WriteFile(b.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		return b.start()
	})
	return b
}

// URL is the broker's tcp:// URL.
func (b *SinkBroker) URL() string { return "tcp://127.0.0.1:" + strconv.Itoa(b.Port) }

// Start starts the broker again (after Stop) and waits until it takes connections.
func (b *SinkBroker) Start() {
	b.t.Helper()
	if err := b.start(); err != nil {
		b.t.Fatal(err)
	}
}

func (b *SinkBroker) start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil {
		return nil
	}
	var err error
	b.cmd, b.exited, err = runMosquitto(b.t, b.conf, "127.0.0.1:"+strconv.Itoa(b.Port))
	return err
}

// Stop stops the broker (SIGTERM: it writes its persistence file) and waits for it.
func (b *SinkBroker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(15 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.exited
	}
	b.cmd = nil
}

// Subscriber is a mosquitto_sub reading topic, each message a line "topic payload".
type Subscriber struct {
	mu     sync.Mutex
	lines  []string
	probe  string
	probes int
	cmd    *exec.Cmd
}

// Subscribe starts mosquitto_sub on topic with a persistent session (client id id, QoS qos), so it reconnects
// after a restart of the broker and gets what was published meanwhile; args are passed on (-u, -P, --cafile…).
// It waits until the subscription is in place: a probe published on probeTopic (which topic must match) arrives;
// the probes are left out of Lines.
func (b *SinkBroker) Subscribe(t testing.TB, topic, probeTopic, id string, qos int, args ...string) *Subscriber {
	t.Helper()
	sub := Program(t, MosquittoSub, "mosquitto-clients")
	all := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(b.Port), "-t", topic, "-q", strconv.Itoa(qos),
		"-v", "-i", id, "-c"}, args...)
	cmd := exec.Command(sub, all...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &prefixWriter{t: t, prefix: "mosquitto_sub: "}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto_sub: %v", err)
	}
	s := &Subscriber{cmd: cmd, probe: probeTopic + " "}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			if strings.HasPrefix(line, s.probe) {
				s.probes++
			} else {
				s.lines = append(s.lines, line)
			}
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-read
		_ = cmd.Wait()
	})
	// mosquitto_sub prints nothing when it has subscribed: publish probes until one comes back.
	pub := Program(t, MosquittoPub, "mosquitto-clients")
	deadline := time.Now().Add(30 * time.Second)
	for {
		pa := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(b.Port), "-t", probeTopic, "-m", "probe", "-q", "1"}, args...)
		if out, err := exec.Command(pub, pa...).CombinedOutput(); err != nil {
			t.Logf("mosquitto_pub probe: %v: %s", err, out)
		}
		s.mu.Lock()
		got := s.probes
		s.mu.Unlock()
		if got > 0 {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto_sub on %q: no probe came back in 30s", topic)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Retained reads the retained messages of filter as a new subscriber sees them: n lines "topic payload".
func (b *SinkBroker) Retained(t testing.TB, filter string, n int, args ...string) []string {
	t.Helper()
	sub := Program(t, MosquittoSub, "mosquitto-clients")
	all := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(b.Port), "-t", filter, "-v", "-C", strconv.Itoa(n),
		"-W", "20", "--retained-only"}, args...)
	out, err := exec.Command(sub, all...).Output()
	if err != nil {
		t.Fatalf("mosquitto_sub --retained-only %s: %v: %s", filter, err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// Lines returns every line read so far.
func (s *Subscriber) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// WaitLines waits until at least n lines arrived, for at most d, and returns the lines.
func (s *Subscriber) WaitLines(t testing.TB, n int, d time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		l := s.Lines()
		if len(l) >= n || time.Now().After(deadline) {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
}
