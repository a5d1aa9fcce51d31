package system

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iotgw/iotgw/internal/testca"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// hubProcess is a hub: a separate nats-server process with JetStream in domain "hub" and a leafnode listener,
// both on free loopback ports, its store in a directory that survives its restarts.
type hubProcess struct {
	*natsProcess
	leafPort int
}

func newHub(t *testing.T, leafnodes ...string) *hubProcess {
	t.Helper()
	dir := t.TempDir()
	h := &hubProcess{leafPort: freePort(t)}
	conf := filepath.Join(dir, "hub.conf")
	src := fmt.Sprintf("server_name: hub\njetstream {\n  store_dir: %q\n  domain: hub\n}\nleafnodes {\n  listen: \"127.0.0.1:%d\"\n%s\n}\n",
		filepath.Join(dir, "js"), h.leafPort, strings.Join(leafnodes, "\n"))
	if err := os.WriteFile(conf, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	h.natsProcess = &natsProcess{t: t, bin: natsServerBinary(t), port: freePort(t), args: []string{"-c", conf}}
	t.Cleanup(h.stop)
	return h
}

func (h *hubProcess) leafURL() string { return fmt.Sprintf("nats-leaf://127.0.0.1:%d", h.leafPort) }
func (h *hubProcess) url() string     { return fmt.Sprintf("nats://127.0.0.1:%d", h.port) }

// readmeHubStream is the hub stream configuration the README prints (after <!-- hub-stream -->), for gateway
// gw1: what operators copy is what the tests run.
func readmeHubStream(t *testing.T) []byte {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "<!-- hub-stream -->\n```json\n")
	if !ok {
		t.Fatal("README has no hub-stream block")
	}
	js, _, ok := strings.Cut(rest, "\n```")
	if !ok {
		t.Fatal("README's hub-stream block is not closed")
	}
	return []byte(js)
}

// jsOf connects a client to url and returns its JetStream context; the client reconnects forever.
func jsOf(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(client(t, url))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// createHubStream makes the hub's stream HUB_gw1 with the README's JetStream API call.
func createHubStream(t *testing.T, hubURL string) {
	t.Helper()
	nc := client(t, hubURL)
	cfg := readmeHubStream(t)
	checkFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		m, err := nc.Request("$JS.API.STREAM.CREATE.HUB_gw1", cfg, 5*time.Second)
		if err != nil {
			return err
		}
		var resp struct {
			Error *struct {
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			return fmt.Errorf("stream create reply %q: %w", m.Data, err)
		}
		if resp.Error != nil {
			return fmt.Errorf("stream create: %s", resp.Error.Description)
		}
		return nil
	})
}

// leafConfig is a gateway with one mock device polled every interval, JetStream on and the hub as its uplink.
func leafConfig(hub *hubProcess, extra string) string {
	return fmt.Sprintf(`
gateway {
  id           = "gw1"
  http_address = ""
}
nats {
  jetstream { enabled = true }
  leafnode {
    url            = %q
    reconnect_wait = "200ms"
    %s
  }
}
device "d1" {
  driver   = "mock"
  interval = "100ms"
  point "x" { signal = "ramp" }
  point "y" { signal = "sine" }
}
`, hub.leafURL(), extra)
}

// streamMsgs reads messages first..last of a stream.
func streamMsgs(ctx context.Context, js jetstream.JetStream, name string, first, last uint64) ([]*jetstream.RawStreamMsg, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	out := make([]*jetstream.RawStreamMsg, 0, last-first+1)
	for seq := first; seq <= last; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			return nil, fmt.Errorf("%s seq %d: %w", name, seq, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// sourcedComparison is what checkSourced found.
type sourcedComparison struct {
	messages, points int
	during           int           // gateway messages stored while the hub was away (between down and up)
	caughtUp         time.Duration // from up until the hub had them all
}

// checkSourced waits until the hub's stream holds every message the gateway's IOT_DATA had when it was called,
// then compares them one by one: the same subject and body, in the same order, each the next sequence of
// IOT_DATA (the Nats-Stream-Source header), none missing, none twice.
func checkSourced(t *testing.T, gwJS, hubJS jetstream.JetStream, gw string, down, up time.Time) sourcedComparison {
	t.Helper()
	// Generous: a hub that restarts before the link is up takes about 40 s to resume sourcing (README "Uplink").
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Second)
	defer cancel()
	var last uint64
	checkFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		s, err := gwJS.Stream(ctx, StreamName)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.FirstSeq != 1 {
			return fmt.Errorf("gateway %s starts at %d: something was discarded", StreamName, info.State.FirstSeq)
		}
		last = info.State.LastSeq
		return nil
	})
	checkFor(t, sourceWait, 200*time.Millisecond, func() error {
		s, err := hubJS.Stream(ctx, "HUB_"+gw)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs < last {
			return fmt.Errorf("the hub has %d of the gateway's first %d messages", info.State.Msgs, last)
		}
		return nil
	})
	caughtUp := time.Since(up)
	want, err := streamMsgs(ctx, gwJS, StreamName, 1, last)
	if err != nil {
		t.Fatal(err)
	}
	got, err := streamMsgs(ctx, hubJS, "HUB_"+gw, 1, last)
	if err != nil {
		t.Fatal(err)
	}
	var c sourcedComparison
	for i := range want {
		g, w := got[i], want[i]
		fields := strings.Fields(g.Header.Get("Nats-Stream-Source"))
		if len(fields) < 2 {
			t.Fatalf("hub message %d has no source header: %v", i+1, g.Header)
		}
		origin, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil || origin != w.Sequence {
			t.Fatalf("hub message %d comes from %s seq %s, want %d: a gap, a duplicate or out of order", i+1, StreamName, fields[1], w.Sequence)
		}
		if g.Subject != w.Subject || string(g.Data) != string(w.Data) {
			t.Fatalf("hub message %d is %s %q, want %s %q", i+1, g.Subject, g.Data, w.Subject, w.Data)
		}
		if pts, err := isp.DecodeBatch(w.Data); err == nil {
			c.points += len(pts)
		}
		if !down.IsZero() && w.Time.After(down) && w.Time.Before(up) {
			c.during++
		}
	}
	c.messages, c.caughtUp = len(want), caughtUp
	return c
}

func waitUplink(t *testing.T, b *Bus, connected bool) UplinkState {
	t.Helper()
	var s UplinkState
	checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		var ok bool
		if s, ok = b.Uplink(); !ok {
			return errors.New("no uplink")
		}
		if s.Connected != connected {
			return fmt.Errorf("uplink connected %v, want %v", s.Connected, connected)
		}
		return nil
	})
	return s
}

// sourceWait bounds a wait for the hub to source: generous, since a hub whose stream was made, or which started,
// before the link was up waits 30 s for its lost consumer request and retries after 5 s or more (README
// "Uplink"), and the machine may be loaded.
const sourceWait = 150 * time.Second

// uplinkOutage is how long the hub is away: the 15 s.
const uplinkOutage = 15 * time.Second

// TestUplinkHubOutage: the gateway is a leaf of a hub whose stream sources its IOT_DATA; the hub is killed for
// 15 s while the device polls and started again. The gateway stays ready throughout and shows the link down;
// afterwards the hub's stream holds every message of IOT_DATA, in order, none lost, none twice — those of the
// outage included.
func TestUplinkHubOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub nats-server process and a 15 s outage; skipped with -short")
	}
	t.Parallel() // mostly waiting on an outage (33 s of CPU in 95 s for the six): overlaps the others, 2 min less CI
	hub := newHub(t)
	hub.start()
	hubJS := jsOf(t, hub.url())

	rt := startRuntime(t, parseConfig(t, leafConfig(hub, "")))
	gwJS := rt.Bus().JS
	waitUplink(t, rt.Bus(), true)
	createHubStream(t, hub.url()) // once the link is up: the hub's first request then gets through
	checkFor(t, sourceWait, 100*time.Millisecond, func() error {
		if s, _ := rt.Bus().Uplink(); !s.Known || s.Delivered < 5 {
			return fmt.Errorf("the hub has not sourced 5 messages yet: %+v", s)
		}
		return nil
	})

	hub.stop()
	down := time.Now()
	s := waitUplink(t, rt.Bus(), false)
	rd := rt.Readiness()
	if !rd.Ready || !rd.Checks[CheckUplink].OK || !strings.Contains(rd.Checks[CheckUplink].Detail, "hub not connected since") {
		t.Errorf("readiness with the hub down: %+v, want ready with the uplink's state in its detail", rd)
	}
	if s.Disconnects != 1 {
		t.Errorf("disconnects %d, want 1", s.Disconnects)
	}
	time.Sleep(uplinkOutage - time.Since(down)) // the outage itself; nothing is asserted on its timing
	during, _ := rt.Bus().Uplink()
	hub.start()
	up := time.Now()
	s = waitUplink(t, rt.Bus(), true)
	t.Logf("link back %s after the hub started; the hub was %d messages behind during the outage",
		time.Since(up).Round(time.Millisecond), during.Behind)
	if during.Behind == 0 {
		t.Errorf("the uplink showed the hub 0 messages behind after %s away", uplinkOutage)
	}

	c := checkSourced(t, gwJS, hubJS, "gw1", down, up)
	t.Logf("the hub has all %d messages (%d points) of %s in order, %d of them produced during the %s outage; caught up %s after it started",
		c.messages, c.points, StreamName, c.during, uplinkOutage, c.caughtUp.Round(time.Millisecond))
	if c.during < 10 {
		t.Errorf("%d messages produced during the outage, want the device's polls of %s", c.during, uplinkOutage)
	}
	checkFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		s, _ := rt.Bus().Uplink()
		if s.Connects != 2 || s.Discarded != 0 || len(s.HubStreams) != 1 || s.HubStreams[0] != "HUB_gw1" {
			return fmt.Errorf("uplink state %+v, want 2 connects, nothing discarded, hub stream HUB_gw1", s)
		}
		return nil
	})
}

// TestUplinkHubDownAtStart: the hub is not there when the gateway starts: the gateway starts and is ready, its
// uplink "not reached yet"; when the hub comes (its stream made only then), the stream sources everything from
// the first message on.
func TestUplinkHubDownAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub nats-server process; skipped with -short")
	}
	hub := newHub(t)
	down := time.Now()
	rt := startRuntime(t, parseConfig(t, leafConfig(hub, "")))
	rd := rt.Readiness()
	if !rd.Ready || !strings.Contains(rd.Checks[CheckUplink].Detail, "hub not reached yet") {
		t.Errorf("readiness with the hub never reached: %+v, want ready, the uplink not reached yet", rd)
	}
	gwJS := rt.Bus().JS
	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		info, err := mustStream(t, gwJS).Info(context.Background())
		if err != nil {
			return err
		}
		if info.State.Msgs < 20 {
			return fmt.Errorf("%d messages in %s, want 20 before the hub comes", info.State.Msgs, StreamName)
		}
		return nil
	})
	hub.start()
	up := time.Now()
	hubJS := jsOf(t, hub.url())
	createHubStream(t, hub.url())
	waitUplink(t, rt.Bus(), true)
	c := checkSourced(t, gwJS, hubJS, "gw1", down, up)
	t.Logf("the hub has all %d messages (%d points), %d of them from before it was there; caught up %s after it started",
		c.messages, c.points, c.during, c.caughtUp.Round(time.Millisecond))
	if c.during < 20 {
		t.Errorf("%d messages from before the hub came, want 20", c.during)
	}
}

func mustStream(t *testing.T, js jetstream.JetStream) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	gatewayBinOnce sync.Once
	gatewayBin     string
	gatewayBinErr  error
)

// gatewayBinary builds the iotgw command once per test run, for tests that kill it with SIGKILL.
func gatewayBinary(t *testing.T) string {
	t.Helper()
	gatewayBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "iotgw-bin")
		if err != nil {
			gatewayBinErr = err
			return
		}
		gatewayBin = filepath.Join(dir, "iotgw")
		if out, err := exec.Command("go", "build", "-o", gatewayBin, "github.com/iotgw/iotgw").CombinedOutput(); err != nil {
			gatewayBinErr = fmt.Errorf("go build iotgw: %v\n%s", err, out)
		}
	})
	if gatewayBinErr != nil {
		t.Fatal(gatewayBinErr)
	}
	return gatewayBin
}

// gatewayCmd is `iotgw run` as a process on a config file; kill sends SIGKILL.
type gatewayCmd struct {
	t    *testing.T
	bin  string
	path string
	cmd  *exec.Cmd
}

func (g *gatewayCmd) start() {
	g.t.Helper()
	g.cmd = exec.Command(g.bin, "run", "-config", g.path)
	g.cmd.Dir = filepath.Dir(g.path)
	if testing.Verbose() {
		g.cmd.Stderr = os.Stderr
	}
	if err := g.cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gatewayCmd) kill() {
	if g.cmd == nil || g.cmd.Process == nil {
		return
	}
	_ = g.cmd.Process.Signal(syscall.SIGKILL)
	_ = g.cmd.Wait()
	g.cmd = nil
}

// TestUplinkGatewayKilledDuringOutage: the hub goes away, then the gateway is killed with SIGKILL and started
// again while the hub is still away; when the hub is back its stream holds every message IOT_DATA kept across
// the kill, in order, none lost, none twice.
func TestUplinkGatewayKilledDuringOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gateway and a hub as processes; skipped with -short")
	}
	t.Parallel() // mostly waiting on an outage (33 s of CPU in 95 s for the six): overlaps the others, 2 min less CI
	bin := gatewayBinary(t)
	hub := newHub(t)
	hub.start()
	hubJS := jsOf(t, hub.url())
	createHubStream(t, hub.url())

	dir := t.TempDir()
	port := freePort(t)
	src := strings.Replace(leafConfig(hub, ""), "gateway {\n", fmt.Sprintf("gateway {\n  data_dir = %q\n", filepath.Join(dir, "data")), 1)
	src = strings.Replace(src, "nats {\n", fmt.Sprintf("nats {\n  port = %d\n", port), 1)
	path := filepath.Join(dir, "gateway.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	gw := &gatewayCmd{t: t, bin: bin, path: path}
	gw.start()
	t.Cleanup(gw.kill)
	gwURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		nc, err := nats.Connect(gwURL)
		if err != nil {
			return err
		}
		nc.Close()
		return nil
	})
	gwJS := jsOf(t, gwURL)
	count := func(js jetstream.JetStream, name string) (uint64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, name)
		if err != nil {
			return 0, err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return 0, err
		}
		return info.State.Msgs, nil
	}
	atLeast := func(js jetstream.JetStream, name string, n uint64) func() error {
		return func() error {
			got, err := count(js, name)
			if err == nil && got < n {
				err = fmt.Errorf("%s has %d messages, want %d", name, got, n)
			}
			return err
		}
	}
	checkFor(t, sourceWait, 100*time.Millisecond, atLeast(hubJS, "HUB_gw1", 5))

	hub.stop()
	down := time.Now()
	before, err := count(gwJS, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 30*time.Second, 100*time.Millisecond, atLeast(gwJS, StreamName, before+20))
	gw.kill()
	killed, err := count(hubJS, "HUB_gw1") // the hub is down: this fails, and says so
	if err == nil {
		t.Fatalf("the hub answered while stopped (%d messages)", killed)
	}
	gw.start()
	checkFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		n, err := count(gwJS, StreamName)
		if err == nil && n < before+40 {
			err = fmt.Errorf("%s has %d messages after the restart, want %d", StreamName, n, before+40)
		}
		return err
	})
	hub.start()
	up := time.Now()
	c := checkSourced(t, gwJS, hubJS, "gw1", down, up)
	t.Logf("after a SIGKILL of the gateway during the outage the hub has all %d messages (%d points) in order, %d from the outage; caught up %s after it started",
		c.messages, c.points, c.during, c.caughtUp.Round(time.Millisecond))
}

// TestUplinkPermissions: across the link the hub may source IOT_DATA and nothing else it has no business with:
// without allow_control it cannot reach iot.control.>, it sees none of the gateway's iot traffic (control
// requests, live data), it cannot publish into the gateway's data or stream, nor delete, purge or read the
// stream and bucket through the JetStream API; with allow_control = true its control requests are answered.
func TestUplinkPermissions(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub nats-server process; skipped with -short")
	}
	t.Run("default", func(t *testing.T) {
		hub := newHub(t)
		hub.start()
		rt := startRuntime(t, parseConfig(t, leafConfig(hub, "")))
		waitUplink(t, rt.Bus(), true)
		createHubStream(t, hub.url()) // once the link is up: the hub's first request then gets through
		hubNC := client(t, hub.url())
		local := client(t, rt.Bus().URL)

		for _, subj := range []string{SubjectTree, "$JS.gw1.API.STREAM.DELETE." + StreamName, "$JS.gw1.API.STREAM.PURGE." + StreamName,
			"$JS.gw1.API.DIRECT.GET.KV_" + DevicesBucket, "$JS.gw1.API.INFO", "$JS.gw1.API.CONSUMER.CREATE.KV_" + DevicesBucket,
			"$JS.gw1.API.CONSUMER.MSG.NEXT." + StreamName + ".any"} {
			if m, err := hubNC.Request(subj, []byte(`{}`), 2*time.Second); err == nil {
				t.Errorf("the hub's request on %s was answered across the link: %s", subj, m.Data)
			} else if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout) {
				t.Errorf("request %s from the hub: %v, want no responders or a timeout", subj, err)
			}
		}
		// The hub's publishes into the gateway's data subjects stay on the hub.
		if err := hubNC.Publish("iot.processed.batch.intruder", []byte(`{"points":[{"device_id":"intruder","key":"k","value":1}]}`)); err != nil {
			t.Fatal(err)
		}
		if err := hubNC.Flush(); err != nil {
			t.Fatal(err)
		}
		// The gateway's control traffic is not shown to the hub, and neither is its live data: the hub's data is
		// its sourced stream (iot.> is closed both ways, see leafDenyImports).
		spy, err := hubNC.SubscribeSync("iot.>")
		if err != nil {
			t.Fatal(err)
		}
		if err := hubNC.Flush(); err != nil {
			t.Fatal(err)
		}
		// A local control request, which the hub must not see either.
		if _, err := local.Request(SubjectTree, nil, 5*time.Second); err != nil {
			t.Fatalf("local tree request: %v", err)
		}
		// The link carries on for a while after those: sourcing goes on and proves the link is up.
		from, _ := rt.Bus().Uplink()
		checkFor(t, sourceWait, 100*time.Millisecond, func() error {
			if s, _ := rt.Bus().Uplink(); s.Delivered < from.Delivered+10 {
				return fmt.Errorf("the hub sourced %d, want %d", s.Delivered, from.Delivered+10)
			}
			return nil
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		info, err := mustStream(t, rt.Bus().JS).Info(ctx, jetstream.WithSubjectFilter("iot.processed.batch.>"))
		if err != nil {
			t.Fatalf("the gateway's stream after the hub's requests: %v", err)
		}
		if info.State.FirstSeq != 1 {
			t.Errorf("the gateway's stream starts at %d: it was purged", info.State.FirstSeq)
		}
		for subj := range info.State.Subjects {
			if subj != "iot.processed.batch.d1" {
				t.Errorf("the gateway's stream holds %s, published on the hub", subj)
			}
		}
		if m, err := spy.NextMsg(100 * time.Millisecond); err == nil {
			t.Errorf("the hub saw the gateway's traffic on %s: %s", m.Subject, m.Data)
		}
	})
	t.Run("allow_control", func(t *testing.T) {
		hub := newHub(t)
		hub.start()
		rt := startRuntime(t, parseConfig(t, leafConfig(hub, "allow_control = true")))
		waitUplink(t, rt.Bus(), true)
		hubNC := client(t, hub.url())
		checkFor(t, 20*time.Second, 100*time.Millisecond, func() error {
			_, err := hubNC.Request(SubjectTree, nil, 2*time.Second)
			return err
		})
		if n := tree(t, hubNC); find(n, GroupDevices+"/d1") == nil {
			t.Errorf("the tree the hub got lacks devices/d1: %+v", n)
		}
	})
}

// TestUplinkDiscardCounted: an outage longer than IOT_DATA keeps data (max_age = 2s here) loses what the limit
// discarded before the hub got it — the one loss of the uplink. The gateway counts it exactly: the messages the
// hub's stream lacks (gaps in the source sequence) are the uplink's discarded count, and the same count was
// reported on iot.errors.uplink.discarded.{gateway}.
func TestUplinkDiscardCounted(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub nats-server process; skipped with -short")
	}
	t.Parallel() // mostly waiting on an outage (33 s of CPU in 95 s for the six): overlaps the others, 2 min less CI
	hub := newHub(t)
	hub.start()
	hubJS := jsOf(t, hub.url())
	src := strings.Replace(leafConfig(hub, ""), "jetstream { enabled = true }", "jetstream {\n    enabled = true\n    max_age = \"2s\"\n  }", 1)
	rt := startRuntime(t, parseConfig(t, src))
	reports, err := client(t, rt.Bus().URL).SubscribeSync(SubjectUplinkDiscarded + ".gw1")
	if err != nil {
		t.Fatal(err)
	}
	waitUplink(t, rt.Bus(), true)
	createHubStream(t, hub.url()) // once the link is up: the hub's first request then gets through
	checkFor(t, sourceWait, 100*time.Millisecond, func() error {
		if s, _ := rt.Bus().Uplink(); !s.Known || s.Delivered < 5 {
			return fmt.Errorf("the hub has not sourced 5 messages yet: %+v", s)
		}
		return nil
	})
	hub.stop()
	waitUplink(t, rt.Bus(), false)
	// Away long enough for max_age to discard what the hub had not got.
	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if s, _ := rt.Bus().Uplink(); s.Discarded < 10 {
			return fmt.Errorf("%d discarded before the hub got them, want 10", s.Discarded)
		}
		return nil
	})
	hub.start()
	up := time.Now()
	waitUplink(t, rt.Bus(), true)

	// The hub catches up with what is left; its stream then shows the gap.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Second)
	defer cancel()
	var missing, got uint64
	var s UplinkState
	checkFor(t, sourceWait, 200*time.Millisecond, func() error {
		s, _ = rt.Bus().Uplink()
		hs, err := hubJS.Stream(ctx, "HUB_gw1")
		if err != nil {
			return err
		}
		info, err := hs.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs == 0 {
			return errors.New("the hub's stream is empty")
		}
		msgs, err := streamMsgs(ctx, hubJS, "HUB_gw1", info.State.FirstSeq, info.State.LastSeq)
		if err != nil {
			return err
		}
		missing, got = 0, uint64(len(msgs))
		var prev uint64 // gaps within the hub's stream: before its first message the hub's stream did not exist
		for i, m := range msgs {
			fields := strings.Fields(m.Header.Get("Nats-Stream-Source"))
			if len(fields) < 2 {
				return fmt.Errorf("hub message %d has no source header", m.Sequence)
			}
			origin, err := strconv.ParseUint(fields[1], 10, 64)
			if err != nil || origin <= prev && i > 0 {
				return fmt.Errorf("hub message %d: origin %s after %d: out of order or twice", m.Sequence, fields[1], prev)
			}
			if i == 0 {
				prev = origin - 1
			}
			missing += origin - prev - 1
			prev = origin
		}
		if s.Behind > 5 {
			return fmt.Errorf("the hub is still %d behind", s.Behind)
		}
		return nil
	})
	t.Logf("the hub caught up %s after it started: it has %d messages; %d are missing from its source sequence; the gateway counted %d discarded before delivery",
		time.Since(up).Round(time.Millisecond), got, missing, s.Discarded)
	if missing != s.Discarded {
		t.Errorf("the hub lacks %d messages, the gateway counted %d", missing, s.Discarded)
	}
	var reported uint64
	for {
		m, err := reports.NextMsg(time.Second)
		if err != nil {
			break
		}
		var r UplinkDiscarded
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("report %q: %v", m.Data, err)
		}
		reported += r.Count
		if r.Total != reported || r.ToSeq-r.FromSeq+1 < r.Count {
			t.Errorf("report %+v does not add up (reported so far %d)", r, reported)
		}
	}
	if reported != s.Discarded {
		t.Errorf("reported %d discarded on %s, counted %d", reported, SubjectUplinkDiscarded, s.Discarded)
	}
}

func TestSeqRanges(t *testing.T) {
	var r seqRanges
	for _, tc := range []struct {
		lo, hi, want uint64
	}{
		{10, 19, 10}, {15, 25, 6}, {1, 5, 5}, {6, 9, 4}, {1, 25, 0}, {30, 30, 1}, {27, 29, 3}, {26, 26, 1}, {5, 4, 0},
	} {
		if got := r.add(tc.lo, tc.hi); got != tc.want {
			t.Errorf("add(%d, %d) = %d, want %d (set %v)", tc.lo, tc.hi, got, tc.want, r)
		}
	}
	if len(r) != 1 || r[0] != [2]uint64{1, 30} {
		t.Errorf("got %v, want [[1 30]]", r)
	}
	for i := uint64(0); i < 2*maxSeqRanges; i++ {
		r.add(100+3*i, 100+3*i)
	}
	if len(r) != maxSeqRanges {
		t.Errorf("%d ranges kept, want at most %d", len(r), maxSeqRanges)
	}
}

// TestUplinkTLSAndPassword: a hub whose leafnode listener requires TLS with client certificates and a user and
// password: the gateway's tls block and env() password get it in, and the hub sources through that link; with a
// wrong password the link never comes up and the gateway is ready all the same.
func TestUplinkTLSAndPassword(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub nats-server process; skipped with -short")
	}
	ca := testca.New(t, "hub")
	hubPair, gwPair := ca.Server("hub"), ca.Client("gw1")
	leaf := fmt.Sprintf("tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }\n"+
		"authorization { users = [ { user: gw1, password: \"right-password-1234\" } ] }", hubPair.Cert, hubPair.Key, ca.CAFile)
	gwConfig := func(hub *hubProcess) string {
		return strings.Replace(leafConfig(hub, fmt.Sprintf("user = \"gw1\"\n    password = env(\"IOTGW_TEST_HUB_PASSWORD\")\n"+
			"    tls {\n      ca   = %q\n      cert = %q\n      key  = %q\n    }", ca.CAFile, gwPair.Cert, gwPair.Key)),
			"nats-leaf://", "tls://", 1)
	}
	t.Run("right", func(t *testing.T) {
		hub := newHub(t, leaf)
		hub.start()
		t.Setenv("IOTGW_TEST_HUB_PASSWORD", "right-password-1234")
		rt := startRuntime(t, parseConfig(t, gwConfig(hub)))
		waitUplink(t, rt.Bus(), true)
		createHubStream(t, hub.url()) // once the link is up: the hub's first request then gets through
		checkFor(t, sourceWait, 100*time.Millisecond, func() error {
			if s, _ := rt.Bus().Uplink(); !s.Known || s.Delivered < 5 {
				return fmt.Errorf("the hub has not sourced 5 messages over TLS yet: %+v", s)
			}
			return nil
		})
	})
	t.Run("wrong password", func(t *testing.T) {
		hub := newHub(t, leaf)
		hub.start()
		t.Setenv("IOTGW_TEST_HUB_PASSWORD", "wrong-password-1234")
		rt := startRuntime(t, parseConfig(t, gwConfig(hub)))
		time.Sleep(3 * time.Second) // long enough for several attempts at reconnect_wait 200ms
		if s, _ := rt.Bus().Uplink(); s.Connected || s.Connects != 0 {
			t.Errorf("uplink %+v with a wrong password, want never connected", s)
		}
		if rd := rt.Readiness(); !rd.Ready {
			t.Errorf("readiness %+v, want ready without the hub", rd)
		}
	})
}

// linkCutter is a TCP relay on a loopback port in front of the hub's leafnode listener, which the test cuts (every
// connection closed, new ones refused) and restores: a WAN outage with both servers running, as on a plant.
type linkCutter struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newLinkCutter(t *testing.T, target string) *linkCutter {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &linkCutter{l: l, target: target}
	c.wg.Add(1)
	go c.accept()
	t.Cleanup(func() {
		_ = l.Close()
		c.cut()
		c.wg.Wait()
	})
	return c
}

func (c *linkCutter) url() string { return "nats-leaf://" + c.l.Addr().String() }

func (c *linkCutter) accept() {
	defer c.wg.Done()
	for {
		in, err := c.l.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.down {
			c.mu.Unlock()
			_ = in.Close()
			continue
		}
		out, err := net.Dial("tcp", c.target)
		if err != nil {
			c.mu.Unlock()
			_ = in.Close()
			continue
		}
		c.conns = append(c.conns, in, out)
		c.wg.Add(2)
		go c.pipe(in, out)
		go c.pipe(out, in)
		c.mu.Unlock()
	}
}

func (c *linkCutter) pipe(dst, src net.Conn) {
	defer c.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
}

// cut closes every relayed connection and refuses new ones until restore.
func (c *linkCutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = true
	for _, conn := range c.conns {
		_ = conn.Close()
	}
	c.conns = nil
}

func (c *linkCutter) restore() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = false
}

// TestUplinkLinkCut: the WAN between gateway and hub is cut for 15 s while both run, then restored: the hub's
// stream ends with every message of IOT_DATA in order, none lost, none twice.
func TestUplinkLinkCut(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub nats-server process and a 15 s outage; skipped with -short")
	}
	t.Parallel() // mostly waiting on an outage (33 s of CPU in 95 s for the six): overlaps the others, 2 min less CI
	// The hub must not advertise its leafnode listener, or the gateway would reconnect to it directly, around
	// the relay (nats-server adds the URLs a hub advertises to those it tries).
	hub := newHub(t, "no_advertise: true")
	hub.start()
	hubJS := jsOf(t, hub.url())
	wan := newLinkCutter(t, fmt.Sprintf("127.0.0.1:%d", hub.leafPort))
	rt := startRuntime(t, parseConfig(t, strings.Replace(leafConfig(hub, ""), hub.leafURL(), wan.url(), 1)))
	waitUplink(t, rt.Bus(), true)
	createHubStream(t, hub.url()) // once the link is up: the hub's first request then gets through
	checkFor(t, sourceWait, 100*time.Millisecond, func() error {
		if s, _ := rt.Bus().Uplink(); !s.Known || s.Delivered < 5 {
			return fmt.Errorf("the hub has not sourced 5 messages yet: %+v", s)
		}
		return nil
	})
	wan.cut()
	down := time.Now()
	waitUplink(t, rt.Bus(), false)
	time.Sleep(uplinkOutage - time.Since(down)) // the outage itself; nothing is asserted on its timing
	during, _ := rt.Bus().Uplink()
	if during.Connected || during.Disconnects != 1 || during.Behind == 0 {
		t.Errorf("uplink %+v during the cut, want down since the cut, the hub behind", during)
	}
	// The same state in the tree's root, the health report and /metrics.
	if n := tree(t, client(t, rt.Bus().URL)); n.Uplink == nil || n.Uplink.Connected || n.Uplink.Disconnects != 1 {
		t.Errorf("tree root uplink %+v, want down once", n.Uplink)
	}
	if h := rt.healthReport(); h.Uplink == nil || h.Uplink.Connected || !h.Ready || !h.Checks[CheckUplink].OK {
		t.Errorf("health %+v, want ready with the uplink down", h)
	}
	mfs, err := rt.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	metrics := map[string]float64{}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "iotgw_uplink_") && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			metrics[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	if metrics["iotgw_uplink_connected"] != 0 || metrics["iotgw_uplink_disconnects_total"] != 1 || metrics["iotgw_uplink_connects_total"] != 1 ||
		metrics["iotgw_uplink_behind_messages"] < 1 || metrics["iotgw_uplink_discarded_total"] != 0 || metrics["iotgw_uplink_state_since_seconds"] < float64(down.Unix()) {
		t.Errorf("uplink metrics during the cut: %v", metrics)
	}
	wan.restore()
	up := time.Now()
	s := waitUplink(t, rt.Bus(), true)
	t.Logf("link back %s after the WAN was restored (%d connects, %d disconnects)", time.Since(up).Round(time.Millisecond), s.Connects, s.Disconnects)
	c := checkSourced(t, rt.Bus().JS, hubJS, "gw1", down, up)
	t.Logf("the hub has all %d messages (%d points) in order, %d from the %s cut; caught up %s after the WAN was restored",
		c.messages, c.points, c.during, uplinkOutage, c.caughtUp.Round(time.Millisecond))
	if c.during < 10 {
		t.Errorf("%d messages produced during the cut, want the device's polls of %s", c.during, uplinkOutage)
	}
}

// operatorHub makes the JWTs of an operator-mode hub (an operator, an account IOT with JetStream, a user of it)
// and returns the hub's extra configuration and the user's .creds file: what `nsc` would make.
func operatorHub(t *testing.T) (conf, creds string) {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opPub, err := okp.PublicKey()
	must(err)
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "test-operator"
	opJWT, err := oc.Encode(okp)
	must(err)
	skp, err := nkeys.CreateAccount() // the system account JetStream needs in operator mode
	must(err)
	sysPub, err := skp.PublicKey()
	must(err)
	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = "SYS"
	sysJWT, err := sc.Encode(okp)
	must(err)
	akp, err := nkeys.CreateAccount()
	must(err)
	accPub, err := akp.PublicKey()
	must(err)
	ac := jwt.NewAccountClaims(accPub)
	ac.Name = "IOT"
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT, err := ac.Encode(okp)
	must(err)
	ukp, err := nkeys.CreateUser()
	must(err)
	userPub, err := ukp.PublicKey()
	must(err)
	uc := jwt.NewUserClaims(userPub)
	uc.Name = "gw1"
	userJWT, err := uc.Encode(akp)
	must(err)
	seed, err := ukp.Seed()
	must(err)
	file, err := jwt.FormatUserConfig(userJWT, seed)
	must(err)
	creds = filepath.Join(dir, "gw1.creds")
	must(os.WriteFile(creds, file, 0o600))
	opFile := filepath.Join(dir, "operator.jwt")
	must(os.WriteFile(opFile, []byte(opJWT), 0o600))
	return fmt.Sprintf("operator: %q\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: %q\n  %s: %q\n}\n",
		opFile, sysPub, sysPub, sysJWT, accPub, accJWT), creds
}

// TestUplinkCredentials: a hub in operator mode (JWTs, as nsc makes them) takes the gateway by its .creds file,
// binds the link to the user's account, and its stream in that account sources IOT_DATA.
func TestUplinkCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub nats-server process; skipped with -short")
	}
	conf, creds := operatorHub(t)
	hub := newHub(t)
	// The operator's settings, then the hub's own file (an include is relative to the including file).
	opConf := filepath.Join(filepath.Dir(hub.args[1]), "operator.conf")
	if err := os.WriteFile(opConf, []byte(conf+"include \"hub.conf\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hub.args = []string{"-c", opConf}
	hub.start()
	if _, err := nats.Connect(hub.url(), nats.NoReconnect()); err == nil {
		t.Fatal("the hub let a client in without credentials: the test proves nothing")
	}
	nc, err := nats.Connect(hub.url(), nats.UserCredentials(creds), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cfg := readmeHubStream(t)
	checkFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		m, err := nc.Request("$JS.API.STREAM.CREATE.HUB_gw1", cfg, 5*time.Second)
		if err == nil && strings.Contains(string(m.Data), `"error"`) {
			err = fmt.Errorf("stream create: %s", m.Data)
		}
		return err
	})
	rt := startRuntime(t, parseConfig(t, leafConfig(hub, fmt.Sprintf("credentials = %q", creds))))
	waitUplink(t, rt.Bus(), true)
	checkFor(t, sourceWait, 100*time.Millisecond, func() error {
		if s, _ := rt.Bus().Uplink(); !s.Known || s.Delivered < 5 {
			return fmt.Errorf("the hub has not sourced 5 messages with the gateway's credentials yet: %+v", s)
		}
		return nil
	})
}

// TestUplinkTwoGateways: two gateways with the same device id are leaves of one hub account, each in its domain;
// each hub stream sources its own gateway, and neither gateway's stream takes in the other's data, though both
// publish on iot.processed.batch.d1.
func TestUplinkTwoGateways(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub nats-server process; skipped with -short")
	}
	t.Parallel() // mostly waiting on an outage (33 s of CPU in 95 s for the six): overlaps the others, 2 min less CI
	hub := newHub(t)
	hub.start()
	nc := client(t, hub.url())
	for _, gw := range []string{"gwA", "gwB"} {
		cfg := strings.ReplaceAll(string(readmeHubStream(t)), "gw1", gw)
		checkFor(t, 20*time.Second, 100*time.Millisecond, func() error {
			m, err := nc.Request("$JS.API.STREAM.CREATE.HUB_"+gw, []byte(cfg), 5*time.Second)
			if err == nil && strings.Contains(string(m.Data), `"error"`) {
				err = fmt.Errorf("stream create: %s", m.Data)
			}
			return err
		})
	}
	runtimes := map[string]*Runtime{}
	for _, gw := range []string{"gwA", "gwB"} {
		src := strings.Replace(leafConfig(hub, ""), `id           = "gw1"`, fmt.Sprintf("id           = %q", gw), 1)
		src = strings.Replace(src, `point "x" { signal = "ramp" }`, fmt.Sprintf(`point "from_%s" { signal = "ramp" }`, gw), 1)
		runtimes[gw] = startRuntime(t, parseConfig(t, src))
	}
	hubJS := jsOf(t, hub.url())
	ctx, cancel := context.WithTimeout(context.Background(), 3*sourceWait)
	defer cancel()
	keys := func(js jetstream.JetStream, stream string) (map[string]int, error) {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return nil, err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return nil, err
		}
		if info.State.Msgs < 20 {
			return nil, fmt.Errorf("%s has %d messages, want 20", stream, info.State.Msgs)
		}
		msgs, err := streamMsgs(ctx, js, stream, info.State.FirstSeq, info.State.LastSeq)
		if err != nil {
			return nil, err
		}
		seen := map[string]int{}
		for _, m := range msgs {
			pts, err := isp.DecodeBatch(m.Data)
			if err != nil {
				return nil, fmt.Errorf("%s seq %d: %w", stream, m.Sequence, err)
			}
			for _, p := range pts {
				seen[p.Key]++
			}
		}
		return seen, nil
	}
	for gw, rt := range runtimes {
		other := map[string]string{"gwA": "gwB", "gwB": "gwA"}[gw]
		for _, where := range []struct {
			js     jetstream.JetStream
			stream string
		}{{rt.Bus().JS, StreamName}, {hubJS, "HUB_" + gw}} {
			var seen map[string]int
			checkFor(t, sourceWait, 200*time.Millisecond, func() error {
				var err error
				seen, err = keys(where.js, where.stream)
				return err
			})
			if seen["from_"+gw] == 0 || seen["from_"+other] != 0 {
				t.Errorf("%s of %s holds points %v, want only from_%s", where.stream, gw, seen, gw)
			}
		}
	}
}

// TestUplinkWithUsers: with users on the embedded server (authorization), the leaf link, which the gateway's
// server solicits itself and which logs in on the hub's side only, still carries the hub's sourcing.
func TestUplinkWithUsers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub nats-server process; skipped with -short")
	}
	hub := newHub(t)
	hub.start()
	src := strings.Replace(leafConfig(hub, ""), "nats {\n", "nats {\n  authorization {\n    user \"reader\" { password = \"reader-secret-1\" }\n  }\n", 1)
	rt := startRuntime(t, parseConfig(t, src))
	waitUplink(t, rt.Bus(), true)
	createHubStream(t, hub.url())
	checkFor(t, sourceWait, 100*time.Millisecond, func() error {
		if s, _ := rt.Bus().Uplink(); !s.Known || s.Delivered < 5 {
			return fmt.Errorf("the hub has not sourced 5 messages from a gateway with users yet: %+v", s)
		}
		return nil
	})
	if _, err := nats.Connect(rt.Bus().URL, nats.NoReconnect()); err == nil {
		t.Error("the gateway's server let a client in without a user: the test proves nothing")
	}
}
