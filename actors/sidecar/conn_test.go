package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// startNATS runs a NATS server in the test and connects to it.
func startNATS(t *testing.T) *nats.Conn {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// handler is an in-Go sidecar's behaviour.
type handler struct{ reject bool }

func (h handler) Configure(context.Context, isp.ConfigPayload) error {
	if h.reject {
		return errors.New("no such register map")
	}
	return nil
}

func (handler) Status(context.Context) any { return map[string]any{"configured": true} }

func startSidecar(t *testing.T, h handler) *isp.Server {
	t.Helper()
	srv := isp.NewServer(isp.ServerConfig{Address: "127.0.0.1:0", HeartbeatInterval: 100 * time.Millisecond}, h)
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	return srv
}

func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func sidecarBlock(name string) config.Sidecar {
	return config.Sidecar{
		Name: name, DialTimeout: time.Second, RequestTimeout: 300 * time.Millisecond,
		HeartbeatInterval: 100 * time.Millisecond, MaxMissedHeartbeats: 3, MaxLineSize: 1 << 20,
		Config: config.SidecarConfig{Mode: "tcp", Address: "127.0.0.1:502", Timeout: time.Second, Interval: time.Second},
	}
}

// plugin writes a plugin whose entry is a shell script, listening nowhere.
func plugin(t *testing.T, script string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fake.sh"), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	m := `{"name":"fake","version":"1","type":"adapter","mode":"isp-sidecar","entry":"fake.sh","isp_port":50052}`
	if err := os.WriteFile(filepath.Join(dir, "fake-isp.json"), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestWorkerFailuresClassified: what the connect worker returns is a peer failure when the peer is away (retried
// for ever by the supervisor) and a plain failure when retrying cannot help (counted against max_restarts).
func TestWorkerFailuresClassified(t *testing.T) {
	nc := startNATS(t)
	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers CONFIG
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port

	tests := []struct {
		name    string
		block   func(sc *config.Sidecar) string // returns the plugins dir
		stop    func()                          // run once connected: ends the connection
		peer    bool
		mention string
	}{
		{name: "refused", block: func(sc *config.Sidecar) string { sc.Address = closedPort(t); return "" }, peer: true, mention: "refused"},
		{name: "CONFIG timeout", block: func(sc *config.Sidecar) string {
			sc.Address, sc.HeartbeatInterval = silent.Addr().String(), time.Second // no answer within request_timeout, before any silence limit
			return ""
		}, peer: true, mention: "timed out"},
		{name: "heartbeat lost", block: func(sc *config.Sidecar) string {
			sc.Address, sc.RequestTimeout = silent.Addr().String(), 5*time.Second
			return ""
		}, peer: true, mention: "silent"},
		{name: "CONFIG rejected", block: func(sc *config.Sidecar) string {
			sc.Address = startSidecar(t, handler{reject: true}).Addr().String()
			return ""
		}, peer: false, mention: "no such register map"},
		{name: "connection lost", block: func(sc *config.Sidecar) string {
			srv := startSidecar(t, handler{})
			sc.Address = srv.Addr().String()
			return ""
		}, peer: true, mention: "connection lost"},
		{name: "process exited", block: func(sc *config.Sidecar) string { sc.Plugin, sc.Port = "fake", freePort(t); return plugin(t, "exit 3") }, peer: true, mention: "exited"},
		{name: "port taken", block: func(sc *config.Sidecar) string { sc.Plugin, sc.Port = "fake", takenPort; return plugin(t, "sleep 30") }, peer: true, mention: strconv.Itoa(takenPort)},
		{name: "plugin missing", block: func(sc *config.Sidecar) string { sc.Plugin = "nope"; return t.TempDir() }, peer: false, mention: "nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := sidecarBlock("sc")
			dir := tc.block(&sc)
			c := NewConn(sc, dir, actors.Env{Bus: nc, Log: zerolog.Nop()})().(*conn)
			done := make(chan struct{})
			var once sync.Once
			send := func(msg any) {
				if _, ok := msg.(*connected); ok && tc.name == "connection lost" {
					once.Do(func() {
						c.mu.Lock()
						client := c.client
						c.mu.Unlock()
						go func() { _ = client.Close() }() // as a sidecar that hangs up
					})
				}
			}
			errc := make(chan error, 1)
			go func() { errc <- c.run(done, send) }()
			var err error
			select {
			case err = <-errc:
			case <-time.After(20 * time.Second):
				close(done)
				t.Fatal("the connect worker did not return")
			}
			c.release()
			if err == nil {
				t.Fatal("no error")
			}
			if got := actors.IsPeerFailure(err); got != tc.peer {
				t.Errorf("IsPeerFailure(%v) = %v, want %v", err, got, tc.peer)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not mention %q", err, tc.mention)
			}
			if got := actors.IsPeerFailure(&actors.WorkerFailed{Worker: "connect", Err: err}); got != tc.peer {
				t.Errorf("as a *WorkerFailed: peer failure %v, want %v", got, tc.peer)
			}
		})
	}
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

// TestReconnectAfter: an incarnation told to wait (as the supervisor does after a peer failure) does not dial
// before the delay, answers its status request at once with "not connected" and why meanwhile, then connects and
// reports the link connected; its status then carries the sidecar's reply and snake_case counters.
func TestReconnectAfter(t *testing.T) {
	nc := startNATS(t)
	srv := startSidecar(t, handler{})
	sc := sidecarBlock("late")
	sc.Address = srv.Addr().String()
	var l testenv.LinkLog
	producer := NewConn(sc, "", actors.Env{Bus: nc, Log: zerolog.Nop(), LinkState: l.Record})
	// An earlier incarnation failed: the history is shared by the producer's incarnations.
	first := producer().(*conn)
	first.hist.set(actors.PeerFailure(fmt.Errorf("sidecar late: %w", ErrConnectionLost)))

	const delay = 1500 * time.Millisecond
	sys := actor.NewActorSystem()
	t.Cleanup(sys.Shutdown)
	spawned := time.Now()
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		c := producer().(*conn)
		c.ReconnectAfter(delay)
		return c
	}))
	t.Cleanup(func() { _ = sys.Root.PoisonFuture(pid).Wait() })
	sub, err := nc.Subscribe(StatusSubject("late"), func(m *nats.Msg) { sys.Root.Send(pid, m) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	status := func() (map[string]any, time.Duration) {
		t.Helper()
		asked := time.Now()
		msg, err := nc.Request(StatusSubject("late"), nil, 5*time.Second)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		var out map[string]any
		if err := json.Unmarshal(msg.Data, &out); err != nil {
			t.Fatal(err)
		}
		return out, time.Since(asked)
	}
	st, took := status()
	if st["error"] != "not connected" || st["state"] != StateWaiting || !strings.Contains(fmt.Sprint(st["last_error"]), "connection lost") {
		t.Errorf("status while waiting: %v, want not connected, waiting, with the last error", st)
	}
	if ms, _ := st["retry_in_ms"].(float64); ms <= 0 || ms > float64(delay.Milliseconds()) {
		t.Errorf("retry_in_ms %v, want the time left of %s", st["retry_in_ms"], delay)
	}
	if took > sc.RequestTimeout {
		t.Errorf("status took %s while not connected, want an answer at once", took)
	}
	if got := l.Last(); got != actors.LinkDisconnected {
		t.Errorf("link %q while waiting, want disconnected", got)
	}
	checkFor(t, delay+10*time.Second, 5*time.Millisecond, func() error {
		if srv.Metrics().ConnectionsTotal == 0 {
			return errors.New("not connected yet")
		}
		return nil
	})
	if since := time.Since(spawned); since < delay {
		t.Errorf("dialled %s after start, before the %s delay", since, delay)
	}
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if l.Last() != actors.LinkConnected {
			return fmt.Errorf("link states %v", l.States())
		}
		return nil
	})
	st, _ = status()
	stats, _ := st["stats"].(map[string]any)
	if _, ok := stats["messages_in"]; !ok || st["error"] != nil {
		t.Errorf("status when connected: %v, want the counters in snake_case", st)
	}
	if resp, _ := st["response"].(map[string]any); resp["configured"] != true {
		t.Errorf("status response %v, want the sidecar's STATUS reply", st["response"])
	}
}

// TestConfigPayloadConnectionSettings: the sidecar block's Modbus connection settings travel in CONFIG, and a
// CONFIG without them is the seed's.
func TestConfigPayloadConnectionSettings(t *testing.T) {
	c := config.SidecarConfig{Mode: "rtu", Address: "/dev/ttyUSB0", Timeout: time.Second, Interval: time.Second, Retries: 2,
		Serial: &config.ModbusSerial{BaudRate: 19200, DataBits: 8, Parity: "E", StopBits: 1}}
	data, err := json.Marshal(configPayload(c))
	if err != nil {
		t.Fatal(err)
	}
	if want := `"retries":2,"serial":{"baud_rate":19200,"data_bits":8,"parity":"E","stop_bits":1}`; !strings.Contains(string(data), want) {
		t.Errorf("CONFIG %s, want it to hold %s", data, want)
	}
	c.Mode, c.Retries, c.Serial = "tcp", 0, nil
	if data, _ := json.Marshal(configPayload(c)); strings.Contains(string(data), "retries") || strings.Contains(string(data), "serial") {
		t.Errorf("CONFIG %s, want neither retries nor serial", data)
	}
}

// hangFloor is the shortest wait of a polling helper (a failure waits this long; a success returns at once).
const hangFloor = 30 * time.Second
