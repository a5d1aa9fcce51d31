package system

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// peerLog records what the test peers did, for the assertions.
type peerLog struct {
	mu       sync.Mutex
	starts   int
	delays   []time.Duration // ReconnectAfter's arguments, in order
	startAt  []time.Time     // each incarnation's Started
	connects []time.Time     // each attempt to reach the peer
}

func (l *peerLog) note(f func(l *peerLog)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(l)
}

// peerActor stands for an actor that talks to a peer (a sidecar, a Modbus endpoint): while up is false, its
// connect fails with a peer failure. It answers requests on test.peer.{name} while it runs.
type peerActor struct {
	name    string
	env     actors.Env
	up      *atomic.Bool
	log     *peerLog
	workers actors.Workers
}

func (p *peerActor) Inboxes() []actors.Inbox { return []actors.Inbox{{Subject: "test.peer." + p.name}} }

func (p *peerActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.log.note(func(l *peerLog) { l.starts++; l.startAt = append(l.startAt, time.Now()) })
		p.workers.Go(ctx, "connect", func(done <-chan struct{}, _ func(any)) error { return p.connect(done, 0) })
	case *actor.Stopping, *actor.Restarting:
		p.workers.Stop()
	case *nats.Msg:
		state := "not connected"
		if p.up.Load() {
			state = "connected"
		}
		_ = m.Respond([]byte(state))
	}
}

// connect waits delay, then reaches the peer: a peer failure when it is down, else it reports the link up and
// holds the connection until the actor stops.
func (p *peerActor) connect(done <-chan struct{}, delay time.Duration) error {
	if delay > 0 {
		select {
		case <-done:
			return nil
		case <-time.After(delay):
		}
	}
	p.log.note(func(l *peerLog) { l.connects = append(l.connects, time.Now()) })
	if !p.up.Load() {
		return actors.PeerFailure(errors.New("dial tcp 127.0.0.1:1: connect: connection refused"))
	}
	p.env.Link(actors.LinkConnected, "")
	<-done
	return nil
}

// reconnPeer is a peerActor that waits out its backoff itself (actors.Reconnector), so it keeps answering.
type reconnPeer struct {
	peerActor
	delay time.Duration
}

var _ actors.Reconnector = (*reconnPeer)(nil)

func (p *reconnPeer) ReconnectAfter(d time.Duration) {
	p.delay = d
	p.log.note(func(l *peerLog) { l.delays = append(l.delays, d) })
}

func (p *reconnPeer) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*actor.Started); ok {
		p.log.note(func(l *peerLog) { l.starts++; l.startAt = append(l.startAt, time.Now()) })
		delay := p.delay
		p.workers.Go(ctx, "connect", func(done <-chan struct{}, _ func(any)) error { return p.connect(done, delay) })
		return
	}
	p.peerActor.Receive(ctx)
}

// supervisorEvents collects iot.errors.supervisor.{name}.
func supervisorEvents(t *testing.T, nc *nats.Conn, name string) func() []SupervisorEvent {
	t.Helper()
	var mu sync.Mutex
	var evs []SupervisorEvent
	sub, err := nc.Subscribe("iot.errors.supervisor."+name, func(m *nats.Msg) {
		var ev SupervisorEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Errorf("event %q: %v", m.Data, err)
			return
		}
		mu.Lock()
		evs = append(evs, ev)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return func() []SupervisorEvent {
		mu.Lock()
		defer mu.Unlock()
		return append([]SupervisorEvent(nil), evs...)
	}
}

const peerSupervisor = `
supervisor {
  max_restarts = 2
  within       = "1m"
  backoff {
    initial = "20ms"
    max     = "80ms"
    jitter  = 0
  }
}
`

// TestPeerFailureRetriesForEver: an actor whose peer is away fails with actors.PeerFailure far more often than
// max_restarts allows; it is retried at the capped backoff, never marked failed, shown disconnected in the tree,
// the metrics and the readiness details (the gateway stays ready), and runs again when the peer is back.
func TestPeerFailureRetriesForEver(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, peerSupervisor))
	nc := client(t, rt.Bus().URL)
	events := supervisorEvents(t, nc, "peer")
	var up atomic.Bool
	plog := &peerLog{}
	env := rt.env(GroupSidecars + "/peer")
	if err := rt.AddActor(GroupSidecars, ChildSpec{Name: "peer", Kind: "sidecar/test", Producer: func() actor.Actor {
		return &peerActor{name: "peer", env: env, up: &up, log: plog}
	}}); err != nil {
		t.Fatal(err)
	}
	c := httpClient(t)
	sawDisconnected := false
	checkFor(t, 20*time.Second, 5*time.Millisecond, func() error {
		n, _ := rt.Tree().Get("sidecars/peer")
		if n.State == StateFailed {
			t.Fatalf("sidecars/peer failed for good after %d restarts: a peer failure counted against max_restarts", n.Restarts)
		}
		if n.State == "disconnected" {
			sawDisconnected = true
		}
		if n.Restarts < 10 || !sawDisconnected {
			return fmt.Errorf("sidecars/peer: state %s, %d restarts (seen disconnected: %v)", n.State, n.Restarts, sawDisconnected)
		}
		return nil
	})
	n, _ := rt.Tree().Get("sidecars/peer")
	if !strings.Contains(n.LastError, "connection refused") {
		t.Errorf("last error %q, want the peer's error", n.LastError)
	}
	var evs []SupervisorEvent
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if evs = events(); len(evs) < 10 {
			return fmt.Errorf("%d supervisor events", len(evs))
		}
		return nil
	})
	if evs[0].Event != "disconnected" || evs[len(evs)-1].Event != "retrying" {
		t.Fatalf("events %+v, want disconnected first, then retrying", evs)
	}
	for _, ev := range evs {
		if ev.Event == "failed" || ev.BackoffMS > 80 || ev.BackoffMS < 20 {
			t.Errorf("event %+v: want no failed event and a backoff of 20..80 ms", ev)
		}
	}
	// Disconnected is shown while it waits; readiness names it and stays ready.
	checkFor(t, 5*time.Second, time.Millisecond, func() error {
		rd := rt.Readiness()
		if !rd.Ready {
			return fmt.Errorf("not ready with a peer away: %+v", rd)
		}
		if d := rd.Checks[GroupSidecars].Detail; !strings.Contains(d, "sidecars/peer") {
			return fmt.Errorf("sidecars check detail %q does not name the disconnected actor", d)
		}
		if err := want(scrape(t, c, rt), 1, "iotgw_actor_disconnected", "actor", "sidecars/peer"); err != nil {
			return err
		}
		return nil
	})

	up.Store(true)
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		n, _ := rt.Tree().Get("sidecars/peer")
		if n.State != StateRunning {
			return fmt.Errorf("sidecars/peer is %s after the peer came back", n.State)
		}
		return want(scrape(t, c, rt), 0, "iotgw_actor_disconnected", "actor", "sidecars/peer")
	})
	if d := rt.Readiness().Checks[GroupSidecars].Detail; strings.Contains(d, "sidecars/peer") {
		t.Errorf("sidecars check detail %q still names the reconnected actor", d)
	}
}

// TestReconnectorStaysResponsive: after a peer failure an actors.Reconnector is restarted at once and told the
// backoff, so it answers requests while its peer is away (instead of letting them time out behind a suspended
// mailbox), does not reach its peer before the delay, and shows disconnected until it reports the link up.
func TestReconnectorStaysResponsive(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `
supervisor {
  max_restarts = 1
  backoff {
    initial = "400ms"
    max     = "400ms"
    jitter  = 0
  }
}`))
	nc := client(t, rt.Bus().URL)
	var up atomic.Bool
	plog := &peerLog{}
	env := rt.env(GroupSidecars + "/rc")
	if err := rt.AddActor(GroupSidecars, ChildSpec{Name: "rc", Kind: "sidecar/test", Producer: func() actor.Actor {
		return &reconnPeer{peerActor: peerActor{name: "rc", env: env, up: &up, log: plog}}
	}}); err != nil {
		t.Fatal(err)
	}
	// Ten requests over about two backoffs: every one is answered at once, though the actor keeps failing.
	for i := 0; i < 10; i++ {
		m, err := nc.Request("test.peer.rc", nil, 250*time.Millisecond)
		if err != nil {
			t.Fatalf("request %d while the peer is away: %v (the mailbox is not responsive)", i, err)
		}
		if string(m.Data) != "not connected" {
			t.Errorf("reply %q, want not connected", m.Data)
		}
		time.Sleep(80 * time.Millisecond) // pacing the requests, not an assertion
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		n, _ := rt.Tree().Get("sidecars/rc")
		if n.State != "disconnected" || n.Restarts < 3 {
			return fmt.Errorf("sidecars/rc: state %s, %d restarts; want disconnected, past max_restarts 1", n.State, n.Restarts)
		}
		return nil
	})
	plog.mu.Lock()
	for i, d := range plog.delays {
		if d != 400*time.Millisecond {
			t.Errorf("ReconnectAfter #%d: %s, want the backoff 400ms", i+1, d)
		}
	}
	// Every incarnation after the first was told its delay and kept to it.
	for i := 1; i < len(plog.startAt) && i < len(plog.connects); i++ {
		if gap := plog.connects[i].Sub(plog.startAt[i]); gap < 400*time.Millisecond-10*time.Millisecond {
			t.Errorf("incarnation %d reached its peer %s after starting, before its 400ms backoff", i+1, gap)
		}
	}
	if len(plog.delays) < 2 {
		t.Errorf("ReconnectAfter called %d times, want one per restart", len(plog.delays))
	}
	plog.mu.Unlock()

	up.Store(true)
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n, _ := rt.Tree().Get("sidecars/rc"); n.State != StateRunning {
			return fmt.Errorf("sidecars/rc is %s after it reported the link up", n.State)
		}
		return nil
	})
}

// linkActor reports the link state it is told on test.link.{name}: "down" or "up".
type linkActor struct {
	name string
	env  actors.Env
}

func (a *linkActor) Inboxes() []actors.Inbox { return []actors.Inbox{{Subject: "test.link." + a.name}} }

func (a *linkActor) Receive(ctx actor.Context) {
	m, ok := ctx.Message().(*nats.Msg)
	if !ok {
		return
	}
	if string(m.Data) == "down" {
		a.env.Link(actors.LinkDisconnected, "modbus: connection down: dial tcp: connection refused")
	} else {
		a.env.Link(actors.LinkConnected, "")
	}
	_ = m.Respond([]byte("ok"))
}

// TestLinkStateShows: an actor that stays alive while its peer is away reports it with Env.Link; the tree, the
// metrics and the readiness details show it, and the gateway stays ready.
func TestLinkStateShows(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, ""))
	nc := client(t, rt.Bus().URL)
	env := rt.env(GroupDevices + "/linky")
	if err := rt.AddActor(GroupDevices, ChildSpec{Name: "linky", Kind: "modbus/transport", Producer: func() actor.Actor {
		return &linkActor{name: "linky", env: env}
	}}); err != nil {
		t.Fatal(err)
	}
	c := httpClient(t)
	if _, err := nc.Request("test.link.linky", []byte("down"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	n := find(tree(t, nc), "devices/linky")
	if n == nil || n.State != "disconnected" || !strings.Contains(n.LastError, "connection refused") {
		t.Fatalf("devices/linky after Link(disconnected): %+v", n)
	}
	if err := want(scrape(t, c, rt), 1, "iotgw_actor_disconnected", "actor", "devices/linky"); err != nil {
		t.Error(err)
	}
	rd := rt.Readiness()
	if !rd.Ready || !rd.Checks[GroupDevices].OK || !strings.Contains(rd.Checks[GroupDevices].Detail, "devices/linky") {
		t.Errorf("readiness %+v: want ready, the devices check naming devices/linky", rd)
	}
	if _, err := nc.Request("test.link.linky", []byte("up"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := find(tree(t, nc), "devices/linky"); n.State != StateRunning {
		t.Errorf("devices/linky after Link(connected): %s, want running", n.State)
	}
	if err := want(scrape(t, c, rt), 0, "iotgw_actor_disconnected", "actor", "devices/linky"); err != nil {
		t.Error(err)
	}
}

const restartConfig = `
faults { enabled = true }
supervisor {
  max_restarts = 1
  within       = "1m"
  backoff {
    initial = "20ms"
    max     = "50ms"
    jitter  = 0
  }
}
device "m" {
  driver   = "mock"
  interval = "20ms"
  point "x" { signal = "ramp" }
}
`

// TestManualRestart: iot.control.actors.restart brings back a failed actor and a stopped one, and refuses what it
// cannot restart with a clear error.
func TestManualRestart(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, restartConfig+failingDevice))
	nc := client(t, rt.Bus().URL)
	events := supervisorEvents(t, nc, "bad")
	l := watchBatches(t, nc)
	// failedSince counts the failed events stamped at or after since. The subscription may start after the
	// device's first failure (it panics on its first poll), so the first wait is on the tree, not on an event, and
	// the proof of the manual restart is a failed event stamped after the request.
	failedSince := func(since time.Time) int {
		n := 0
		for _, ev := range events() {
			if ev.Event == "failed" && ev.Timestamp >= since.UnixNano() {
				n++
			}
		}
		return n
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n, _ := rt.Tree().Get("devices/bad"); n.State != StateFailed {
			return fmt.Errorf("devices/bad is %s", n.State)
		}
		return nil
	})
	asked := time.Now()
	if r := ask(t, nc, "iot.control.actors.restart", `{"path":"devices/bad"}`); !r.OK {
		t.Fatalf("restart a failed device: %+v", r)
	}
	// It runs again, so it fails again (it panics on its first poll): a failed event after the request proves it.
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := failedSince(asked); n != 1 {
			return fmt.Errorf("%d failed events since the manual restart, want 1", n)
		}
		return nil
	})

	if r := ask(t, nc, SubjectFaultsInject, `{"kind":"stop","target":"devices/m"}`); !r.OK {
		t.Fatalf("stop: %+v", r)
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n, _ := rt.Tree().Get("devices/m"); n.State != StateStopped {
			return fmt.Errorf("devices/m is %s", n.State)
		}
		return nil
	})
	if r := ask(t, nc, "iot.control.actors.restart", `{"path":"/devices/m"}`); !r.OK {
		t.Fatalf("restart a stopped device: %+v", r)
	}
	if n, _ := rt.Tree().Get("devices/m"); n.State != StateRunning {
		t.Errorf("devices/m is %s once the restart was answered, want running", n.State)
	}
	l.next(t, "m", 2)

	for body, want := range map[string]string{
		`{"path":"devices/nope"}`:          `no actor "devices/nope"`,
		`{"path":"control"}`:               "control",
		`{"path":"root"}`:                  "root",
		`{}`:                               `"path"`,
		`not json`:                         "request is not",
		`{"path":"devices/m"`:              "request is not", // truncated
		`{"path":"devices/m\u202e\u0000"}`: "no actor",
		`{"path":"` + strings.Repeat("a", 5000) + `"}`: "at most 4096", // oversized
	} {
		if r := ask(t, nc, "iot.control.actors.restart", body); r.OK || !strings.Contains(r.Error, want) {
			t.Errorf("restart %s: %+v, want an error mentioning %q", body, r, want)
		}
	}
	if _, err := nc.Request(SubjectPing, nil, 2*time.Second); err != nil {
		t.Errorf("ping after the restarts: %v", err)
	}
}

// reloadRuntime writes a config file and starts a gateway from it, with reload.
func reloadRuntime(t *testing.T, src string) (*Runtime, func(string)) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.hcl")
	write := func(src string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(src)
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return startRuntime(t, cfg, WithConfigPath(path)), write
}

// rawReload asks for a reload and returns the reply's reload object as a map, to read fields by name.
func rawReload(t *testing.T, nc *nats.Conn) (bool, map[string][]string, string) {
	t.Helper()
	m, err := nc.Request(SubjectReload, nil, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		OK     bool                `json:"ok"`
		Error  string              `json:"error"`
		Reload map[string][]string `json:"reload"`
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatalf("reload reply %s: %v", m.Data, err)
	}
	return r.OK, r.Reload, string(m.Data)
}

const gatewayForReload = "gateway { http_address = \"127.0.0.1:0\" }\nnats { port = -1 }\n"

// TestReloadRestartsFailedAndStopped: an unchanged reload brings back actors that failed or were stopped (a
// device, the processor), and says so under "restarted".
func TestReloadRestartsFailedAndStopped(t *testing.T) {
	rt, _ := reloadRuntime(t, gatewayForReload+restartConfig+failingDevice)
	nc := client(t, rt.Bus().URL)
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n, _ := rt.Tree().Get("devices/bad"); n.State != StateFailed {
			return fmt.Errorf("devices/bad is %s", n.State)
		}
		return nil
	})
	for _, target := range []string{"devices/m", "rules/processor"} {
		if r := ask(t, nc, SubjectFaultsInject, fmt.Sprintf(`{"kind":"stop","target":%q}`, target)); !r.OK {
			t.Fatalf("stop %s: %+v", target, r)
		}
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		for _, p := range []string{"devices/m", "rules/processor"} {
			if n, _ := rt.Tree().Get(p); n.State != StateStopped {
				return fmt.Errorf("%s is %s", p, n.State)
			}
		}
		return nil
	})
	ok, res, raw := rawReload(t, nc)
	if !ok {
		t.Fatalf("reload: %s", raw)
	}
	got := strings.Join(res["restarted"], ",")
	if got != "devices/bad,devices/m,rules/processor" {
		t.Errorf("restarted %q, want devices/bad,devices/m,rules/processor (%s)", got, raw)
	}
	if len(res["added"])+len(res["changed"])+len(res["removed"]) != 0 {
		t.Errorf("an unchanged reload changed components: %s", raw)
	}
	for _, p := range []string{"devices/m", "rules/processor"} {
		if n, _ := rt.Tree().Get(p); n.State != StateRunning {
			t.Errorf("%s is %s after the reload, want running", p, n.State)
		}
	}
	l := watchBatches(t, nc)
	l.next(t, "m", 2) // processed again: the processor runs
}

// TestUpdateThenReload (defect 3): after a run-time update of a device from the file, reloads of the unchanged
// file are ok and change nothing: the update stays in force until the file's block changes.
func TestUpdateThenReload(t *testing.T) {
	mixer := "device \"mixer-1\" {\n  driver   = \"mock\"\n  interval = \"20ms\"\n  point \"x\" { signal = \"ramp\" }\n}\n"
	rt, write := reloadRuntime(t, gatewayForReload+mixer)
	nc := client(t, rt.Bus().URL)
	l := watchBatches(t, nc)
	l.wait(t, "mixer-1", "x")
	if r := ask(t, nc, SubjectDevicesUpdate, `{"id":"mixer-1","driver":"mock","interval":"20ms","point":{"x":{"signal":"ramp"},"y":{"signal":"sine"}}}`); !r.OK {
		t.Fatalf("update: %+v", r)
	}
	l.wait(t, "mixer-1", "y")
	since := func() time.Time {
		t.Helper()
		n, ok := rt.Tree().Get("devices/mixer-1")
		if !ok || n.State != StateRunning || n.Since == nil {
			t.Fatalf("devices/mixer-1: %+v, want it running", n)
		}
		return *n.Since
	}
	before := since()
	for i := 1; i <= 3; i++ {
		ok, res, raw := rawReload(t, nc)
		if !ok || len(res["added"])+len(res["changed"])+len(res["removed"])+len(res["failed"]) != 0 {
			t.Fatalf("reload %d of the unchanged file: %s, want ok and nothing changed", i, raw)
		}
		if s := since(); !s.Equal(before) {
			t.Errorf("reload %d restarted devices/mixer-1 (running since %s, was %s)", i, s, before)
		}
	}
	// The update is still what runs.
	l.mu.Lock()
	delete(l.points["mixer-1"], "y")
	l.mu.Unlock()
	l.wait(t, "mixer-1", "y")
	// A change of the block in the file wins over the update.
	write(gatewayForReload + strings.Replace(mixer, `point "x"`, `point "z"`, 1))
	ok, res, raw := rawReload(t, nc)
	if !ok || strings.Join(res["changed"], ",") != "devices/mixer-1" {
		t.Fatalf("reload of the changed block: %s, want devices/mixer-1 changed", raw)
	}
	l.wait(t, "mixer-1", "z")
}

// TestGroupCrashKeepsRuntimeDevices (defect 5): a crash of the devices supervisor restarts it with the devices it
// had: the ones added at run time come back, the one removed at run time does not.
func TestGroupCrashKeepsRuntimeDevices(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, restartConfig+`
device "file-2" {
  driver   = "mock"
  interval = "20ms"
  point "x" { signal = "ramp" }
}`))
	nc := client(t, rt.Bus().URL)
	l := watchBatches(t, nc)
	if r := ask(t, nc, SubjectDevicesAdd, `{"id":"rt-1","driver":"mock","interval":"20ms","point":{"x":{"signal":"ramp"}}}`); !r.OK {
		t.Fatalf("add: %+v", r)
	}
	if r := ask(t, nc, SubjectDevicesRemove, `{"id":"file-2"}`); !r.OK {
		t.Fatalf("remove: %+v", r)
	}
	l.wait(t, "rt-1", "x")
	if r := ask(t, nc, SubjectFaultsInject, `{"kind":"crash","target":"devices"}`); !r.OK {
		t.Fatalf("crash devices: %+v", r)
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n, _ := rt.Tree().Get("devices"); n.Restarts != 1 || n.State != StateRunning {
			return fmt.Errorf("devices: %+v", n)
		}
		for _, p := range []string{"devices/m", "devices/rt-1"} {
			if n, ok := rt.Tree().Get(p); !ok || n.State != StateRunning {
				return fmt.Errorf("%s after the group restart: %+v", p, n)
			}
		}
		return nil
	})
	if _, ok := rt.Tree().Get("devices/file-2"); ok {
		t.Error("devices/file-2, removed at run time, came back with the group restart")
	}
	l.next(t, "rt-1", 2)
}

// TestModbusTransportsDoNotLeak (defect 4): 200 add/remove cycles of Modbus devices on distinct addresses leave no
// transport actor, and the goroutines come back to where they were. An update that moves a device to another
// endpoint leaves no transport behind either.
func TestModbusTransportsDoNotLeak(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, "gateway { point_subjects = false }\n"))
	nc := client(t, rt.Bus().URL)
	dev := func(id string, i int) string {
		// 127.0.0.0/8 is loopback on Linux: nothing listens on port 1 there, so each connect is refused at once.
		return fmt.Sprintf(`device %q {
  driver   = "modbus"
  address  = "127.0.%d.%d:1"
  interval = "200ms"
  timeout  = "100ms"
  retries  = 0
  register "r" {
    address = 0
    type    = "uint16"
  }
}`, id, 1+i/250, 1+i%250)
	}
	transports := func() []string {
		var out []string
		for _, n := range flatten(rt.Tree().Snapshot(), nil) {
			if strings.HasPrefix(n.Name, "modbus-") {
				out = append(out, n.Path)
			}
		}
		return out
	}
	cycle := func(i int) {
		t.Helper()
		id := fmt.Sprintf("leak-%d", i)
		if r := ask(t, nc, SubjectDevicesAdd, dev(id, i)); !r.OK {
			t.Fatalf("add %s: %+v", id, r)
		}
		if r := ask(t, nc, SubjectDevicesRemove, fmt.Sprintf(`{"id":%q}`, id)); !r.OK {
			t.Fatalf("remove %s: %+v", id, r)
		}
	}
	cycle(0)                           // the first cycle starts what stays for the gateway's life (timers of the NATS client, protoactor's)
	time.Sleep(100 * time.Millisecond) // settling before the baseline is read, not an assertion
	base := runtime.NumGoroutine()
	start := time.Now()
	for i := 1; i <= 200; i++ {
		cycle(i)
	}
	t.Logf("200 add/remove cycles in %s", time.Since(start).Round(time.Millisecond))
	if tr := transports(); len(tr) != 0 {
		t.Errorf("%d transport actors left after the cycles: %v", len(tr), tr[:min(len(tr), 5)])
	}
	// Each leaked transport would keep its wire goroutine (and a device its ticker): 200 cycles leaking even one
	// goroutine in ten would be 20. The tolerance of 5 covers goroutines that come and go on their own schedule
	// (the NATS client's and server's, a connection being torn down) and hides no leak of that size.
	const tolerance = 5
	var now int
	checkFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		if now = runtime.NumGoroutine(); now > base+tolerance {
			return fmt.Errorf("goroutines %d, baseline %d (+%d)", now, base, tolerance)
		}
		return nil
	})
	t.Logf("goroutines: %d before the cycles, %d after", base, now)

	// An update to another endpoint: the old endpoint's transport goes.
	if r := ask(t, nc, SubjectDevicesAdd, dev("moving", 300)); !r.OK {
		t.Fatalf("add: %+v", r)
	}
	if r := ask(t, nc, SubjectDevicesUpdate, dev("moving", 301)); !r.OK {
		t.Fatalf("update: %+v", r)
	}
	if tr := transports(); len(tr) != 1 || !strings.Contains(tr[0], "127_0_2_52") {
		t.Errorf("transports after the update %v, want only the new endpoint's (127.0.2.52)", tr)
	}
	if r := ask(t, nc, SubjectDevicesRemove, `{"id":"moving"}`); !r.OK {
		t.Fatalf("remove: %+v", r)
	}
	if tr := transports(); len(tr) != 0 {
		t.Errorf("transports after removing the last device: %v", tr)
	}
}

// TestReadinessCoversStages (defect 6): a stopped processor or sink means nothing reaches the bus's processed
// subjects or the sink: /readyz says 503 naming the stage, and a manual restart brings it back.
func TestReadinessCoversStages(t *testing.T) {
	rt := startHTTPRuntime(t, restartConfig+`
sink "console" {
  type     = "console"
  subjects = ["iot.processed.batch.>"]
}`)
	nc := client(t, rt.Bus().URL)
	c := httpClient(t)
	url := "http://" + rt.HTTPAddr() + "/readyz"
	readyz := func(code int, failed string) func() error {
		return func() error {
			got, body, _ := httpDo(t, c, http.MethodGet, url)
			if got != code {
				return fmt.Errorf("/readyz %d %s, want %d", got, body, code)
			}
			var rd Readiness
			if err := json.Unmarshal([]byte(body), &rd); err != nil {
				return err
			}
			if strings.Join(rd.Failed, ",") != failed {
				return fmt.Errorf("/readyz failed %v, want %q", rd.Failed, failed)
			}
			return nil
		}
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, readyz(http.StatusOK, ""))
	for _, stage := range []string{"rules/processor", "sinks/console"} {
		if r := ask(t, nc, SubjectFaultsInject, fmt.Sprintf(`{"kind":"stop","target":%q}`, stage)); !r.OK {
			t.Fatalf("stop %s: %+v", stage, r)
		}
		checkFor(t, 5*time.Second, 10*time.Millisecond, readyz(http.StatusServiceUnavailable, stage))
		if r := ask(t, nc, "iot.control.actors.restart", fmt.Sprintf(`{"path":%q}`, stage)); !r.OK {
			t.Fatalf("restart %s: %+v", stage, r)
		}
		checkFor(t, 5*time.Second, 10*time.Millisecond, readyz(http.StatusOK, ""))
	}
}

// TestFaultsCannotCutControlPlane (defect 7): faults on the control actor or the root are refused with a clear
// error, at once, and the control plane keeps answering.
func TestFaultsCannotCutControlPlane(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, restartConfig))
	nc := client(t, rt.Bus().URL)
	for _, body := range []string{
		`{"kind":"stop","target":"control"}`,
		`{"kind":"crash","target":"control"}`,
		`{"kind":"latency","target":"control","latency":"1s"}`,
		`{"kind":"stop","target":"root"}`,
	} {
		start := time.Now()
		r := ask(t, nc, SubjectFaultsInject, body)
		if r.OK || !strings.Contains(r.Error, "control plane") {
			t.Errorf("inject %s: %+v, want a refusal naming the control plane", body, r)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("inject %s answered after %s, want at once", body, took)
		}
		if _, err := nc.Request(SubjectPing, nil, 2*time.Second); err != nil {
			t.Fatalf("ping after %s: %v", body, err)
		}
	}
	if n, _ := rt.Tree().Get("control"); n.State != StateRunning || n.Restarts != 0 {
		t.Errorf("control: %+v, want running, never restarted", n)
	}
}

// TestBackoffJitterAtCap (defect 10): at the cap the delay is still jittered, within [max×(1−jitter), max], so
// actors failing together do not restart in lockstep.
func TestBackoffJitterAtCap(t *testing.T) {
	s := &supervisor{}
	s.policy.Backoff.Initial = 100 * time.Millisecond
	s.policy.Backoff.Max = 10 * time.Second
	s.policy.Backoff.Jitter = 0.2
	seen := map[time.Duration]bool{}
	for i := 0; i < 1000; i++ {
		d := s.backoff(30)
		if d < 8*time.Second || d > 10*time.Second {
			t.Fatalf("backoff(30) = %s, want 8s..10s", d)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Errorf("%d distinct delays in 1000 at the cap, want them spread", len(seen))
	}
}

// TestFaultRepliesAndLogs: faults.list and .clear always carry their list and count, a stop on a stopped actor
// says so, and the logs carry units and no empty fields.
func TestFaultRepliesAndLogs(t *testing.T) {
	var logs syncBuffer
	rt := startRuntime(t, parseConfig(t, restartConfig), WithLogger(zerolog.New(&logs)))
	nc := client(t, rt.Bus().URL)
	rawAsk := func(subject, body string) string {
		m, err := nc.Request(subject, []byte(body), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return string(m.Data)
	}
	if got := rawAsk(SubjectFaultsList, ""); !strings.Contains(got, `"faults":[]`) {
		t.Errorf("faults.list with none: %s, want \"faults\":[]", got)
	}
	if got := rawAsk(SubjectFaultsClear, ""); !strings.Contains(got, `"cleared":0`) {
		t.Errorf("faults.clear with none: %s, want \"cleared\":0", got)
	}
	if got := rawAsk(SubjectPing, ""); strings.Contains(got, "faults") || strings.Contains(got, "cleared") {
		t.Errorf("ping reply %s carries fault fields", got)
	}
	if r := ask(t, nc, SubjectFaultsInject, `{"kind":"crash","target":"devices/m"}`); !r.OK {
		t.Fatalf("crash: %+v", r)
	}
	if r := ask(t, nc, SubjectFaultsInject, `{"kind":"stop","target":"devices/m"}`); !r.OK {
		t.Fatalf("stop: %+v", r)
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n, _ := rt.Tree().Get("devices/m"); n.State != StateStopped {
			return fmt.Errorf("devices/m is %s", n.State)
		}
		return nil
	})
	r := ask(t, nc, SubjectFaultsInject, `{"kind":"stop","target":"devices/m"}`)
	if r.OK || r.Error != "actor devices/m is not running (stopped)" {
		t.Errorf("stop on a stopped actor: %+v, want \"actor devices/m is not running (stopped)\"", r)
	}
	var injected, restarting map[string]any
	for _, line := range lines(logs.String()) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		switch m["message"] {
		case "fault injected":
			if injected == nil {
				injected = m
			}
		case "actor failed; restarting after backoff":
			restarting = m
		}
	}
	if injected == nil || restarting == nil {
		t.Fatalf("log lines missing (fault injected: %v, restarting: %v)", injected, restarting)
	}
	for _, k := range []string{"probability", "duration", "latency"} {
		if _, ok := injected[k]; ok {
			t.Errorf("fault injected log %v has the unset field %q", injected, k)
		}
	}
	if _, ok := restarting["backoff"]; ok {
		t.Errorf("restart log %v has a backoff without a unit", restarting)
	}
	if v, ok := restarting["backoff_ms"].(float64); !ok || v != 20 {
		t.Errorf("restart log %v: backoff_ms %v, want 20", restarting, restarting["backoff_ms"])
	}
}

// hastyPeer is a Reconnector that does not keep to its delay: it reaches its peer at once.
type hastyPeer struct{ reconnPeer }

func (p *hastyPeer) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*actor.Started); ok {
		p.delay = 0
	}
	p.reconnPeer.Receive(ctx)
}

// TestHastyReconnectorDoesNotSpin: a Reconnector that ignores its delay and fails again at once is made to wait
// its backoff suspended, so it cannot restart in a tight loop.
func TestHastyReconnectorDoesNotSpin(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `
supervisor {
  backoff {
    initial = "200ms"
    max     = "200ms"
    jitter  = 0
  }
}`))
	var up atomic.Bool
	plog := &peerLog{}
	env := rt.env(GroupSidecars + "/hasty")
	start := time.Now()
	if err := rt.AddActor(GroupSidecars, ChildSpec{Name: "hasty", Kind: "sidecar/test", Producer: func() actor.Actor {
		return &hastyPeer{reconnPeer{peerActor: peerActor{name: "hasty", env: env, up: &up, log: plog}}}
	}}); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if n, _ := rt.Tree().Get("sidecars/hasty"); n.Restarts < 6 {
			return fmt.Errorf("%d restarts", n.Restarts)
		}
		return nil
	})
	// Every other restart waits the 200ms backoff suspended: six restarts take at least 400ms (a spin: microseconds).
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Errorf("6 restarts in %s: the Reconnector restarts in a loop", took)
	}
}

// TestUpdateSerialSettingsRebuildsTransport: a device updated to other serial settings on its own endpoint gets a
// transport built with them; an update that leaves them alone keeps the running transport.
func TestUpdateSerialSettingsRebuildsTransport(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, ""))
	nc := client(t, rt.Bus().URL)
	dev := func(baud int, interval string) string {
		return fmt.Sprintf(`device "line-1" {
  driver   = "modbus"
  mode     = "rtu"
  address  = "/dev/iotgw-test-no-such-port"
  interval = %q
  serial { baud_rate = %d }
  register "r" {
    address = 0
    type    = "uint16"
  }
}`, interval, baud)
	}
	const transport = "endpoints/modbus-rtu-_dev_iotgw-test-no-such-port"
	order := func() int {
		t.Helper()
		rt.Tree().mu.Lock()
		defer rt.Tree().mu.Unlock()
		e, ok := rt.Tree().nodes[transport]
		if !ok {
			t.Fatalf("no %s in the tree", transport)
		}
		return e.order // a new actor under that name registers again, with a new order
	}
	if r := ask(t, nc, SubjectDevicesAdd, dev(9600, "1s")); !r.OK {
		t.Fatalf("add: %+v", r)
	}
	first := order()
	if r := ask(t, nc, SubjectDevicesUpdate, dev(9600, "2s")); !r.OK {
		t.Fatalf("update: %+v", r)
	}
	if o := order(); o != first {
		t.Errorf("an update that kept the serial settings rebuilt the transport")
	}
	if r := ask(t, nc, SubjectDevicesUpdate, dev(19200, "2s")); !r.OK {
		t.Fatalf("update: %+v", r)
	}
	if o := order(); o == first {
		t.Errorf("an update to 19200 baud kept the transport built for 9600")
	}
}
