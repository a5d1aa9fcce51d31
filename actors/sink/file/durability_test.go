package file

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The durability tests run the real gateway: `iotgw run` built from this module into a temporary directory, with
// its embedded NATS server and JetStream on a free loopback port, mock devices whose "n" point counts by one at
// every poll (signal counter), and the file sink. They kill it, or take its directory away, and count.

var gatewayBuild struct {
	once sync.Once
	bin  string
	err  error
}

// gatewayBinary builds iotgw once per test run.
func gatewayBinary(t *testing.T) string {
	t.Helper()
	gatewayBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "iotgw-file-sink")
		if err != nil {
			gatewayBuild.err = err
			return
		}
		gatewayBuild.bin = filepath.Join(dir, "iotgw")
		out, err := exec.Command("go", "build", "-o", gatewayBuild.bin, "github.com/iotgw/iotgw").CombinedOutput()
		if err != nil {
			gatewayBuild.err = fmt.Errorf("go build iotgw: %v\n%s", err, out)
		}
	})
	if gatewayBuild.err != nil {
		t.Fatal(gatewayBuild.err)
	}
	return gatewayBuild.bin
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

const devices = 4

// gatewayConfig: devices d0..d3 polling 10 points every 20 ms (the first, "n", a counter), the file sink.
func gatewayConfig(dataDir string, port int, sync string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, `
gateway {
  data_dir       = %q
  http_address   = ""
  point_subjects = false
}
nats {
  port = %d
  jetstream { enabled = true }
}
sink "files" {
  type            = "file"
  path            = "{data_dir}/points/{date}/{device}.jsonl"
  sync            = %q
  sync_interval   = "200ms"
  max_ack_pending = 1024
  retry           = "250ms"
}
`, dataDir, port, sync)
	for d := range devices {
		fmt.Fprintf(&sb, "device \"d%d\" {\n  driver   = \"mock\"\n  interval = \"20ms\"\n", d)
		sb.WriteString("  point \"n\" {\n    signal = \"counter\"\n    type   = \"int64\"\n  }\n")
		for k := 1; k < 10; k++ {
			fmt.Fprintf(&sb, "  point \"v%d\" { signal = \"sine\" }\n", k)
		}
		sb.WriteString("}\n")
	}
	return sb.String()
}

// gateway is one `iotgw run` process.
type gateway struct {
	t    *testing.T
	cmd  *exec.Cmd
	done chan struct{}
	url  string
}

func startGateway(t *testing.T, bin, cfgPath string, port int, logName string) *gateway {
	t.Helper()
	logf, err := os.Create(filepath.Join(filepath.Dir(cfgPath), logName))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-config", cfgPath, "-log-format", "json")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &gateway{t: t, cmd: cmd, done: make(chan struct{}), url: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	go func() { _ = cmd.Wait(); logf.Close(); close(g.done) }()
	t.Cleanup(func() { g.kill() })
	return g
}

func (g *gateway) kill() {
	select {
	case <-g.done:
		return
	default:
	}
	_ = g.cmd.Process.Signal(syscall.SIGKILL)
	<-g.done
}

func (g *gateway) stop() {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(30 * time.Second):
		g.t.Error("the gateway did not stop on SIGTERM")
		g.kill()
	}
}

// connect waits for the gateway's server and its stream.
func (g *gateway) connect() (*nats.Conn, jetstream.JetStream) {
	g.t.Helper()
	var nc *nats.Conn
	waitFor(g.t, "the gateway's NATS server", func() bool {
		var err error
		nc, err = nats.Connect(g.url, nats.Timeout(time.Second))
		return err == nil
	})
	g.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		g.t.Fatal(err)
	}
	waitFor(g.t, "the IOT_DATA stream", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.Stream(ctx, "IOT_DATA")
		return err == nil
	})
	return nc, js
}

// sinkInfo asks iot.control.sinks.get for the file sink.
type sinkInfo struct {
	State     string `json:"state"`
	Pending   uint64 `json:"pending"`
	Acked     uint64 `json:"acked"`
	LastError string `json:"last_error"`
	Durable   []struct {
		State   string `json:"state"`
		Pending uint64 `json:"pending"`
	} `json:"durable"`
}

func getSink(t *testing.T, nc *nats.Conn) (sinkInfo, error) {
	t.Helper()
	msg, err := nc.Request("iot.control.sinks.get", []byte(`{"name":"files"}`), 5*time.Second)
	if err != nil {
		return sinkInfo{}, err
	}
	var reply struct {
		OK    bool       `json:"ok"`
		Error string     `json:"error"`
		Sinks []sinkInfo `json:"sinks"`
		Sink  *sinkInfo  `json:"sink"`
	}
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return sinkInfo{}, fmt.Errorf("%v in %s", err, msg.Data)
	}
	switch {
	case !reply.OK:
		return sinkInfo{}, fmt.Errorf("sinks.get: %s", reply.Error)
	case reply.Sink != nil:
		return *reply.Sink, nil
	case len(reply.Sinks) == 1:
		return reply.Sinks[0], nil
	}
	return sinkInfo{}, fmt.Errorf("sinks.get: no sink in %s", msg.Data)
}

// poll is one poll of a device as the counter and the timestamp identify it.
type poll struct {
	ts int64
	n  int64
}

// filePolls reads every file of the sink (the dates in order) and returns each device's polls in file order.
func filePolls(t *testing.T, dataDir string) map[string][]poll {
	t.Helper()
	out := map[string][]poll{}
	files, _ := filepath.Glob(filepath.Join(dataDir, "points", "*", "*.jsonl"))
	sort.Strings(files) // {date}/ sorts by date
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p, err := isp.DecodePoint(sc.Bytes())
			if err != nil {
				fh.Close()
				t.Fatalf("%s: a line that is not a point: %q: %v", f, sc.Text(), err)
			}
			if p.Key != "n" {
				continue
			}
			n, _ := p.Value.Int()
			out[p.DeviceID] = append(out[p.DeviceID], poll{p.Timestamp, n})
		}
		fh.Close()
	}
	return out
}

// streamPolls reads IOT_DATA's batches up to its last sequence now: what the stream acknowledged.
func streamPolls(t *testing.T, js jetstream.JetStream) map[string][]poll {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, "IOT_DATA")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := info.State.LastSeq
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"iot.processed.batch.>"}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]poll{}
	var dec isp.Decoder
	var pts []isp.Point
	for {
		msg, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if pts, err = dec.DecodeBatch(msg.Data(), pts[:0]); err != nil {
			t.Fatalf("stream message %d: %v", meta.Sequence.Stream, err)
		}
		for _, p := range pts {
			if p.Key == "n" {
				n, _ := p.Value.Int()
				out[p.DeviceID] = append(out[p.DeviceID], poll{p.Timestamp, n})
			}
		}
		if meta.Sequence.Stream >= last {
			return out
		}
	}
}

// tally compares a device's polls in the file with the stream's: every stream poll must be in the file, in the
// stream's order; a poll in the file twice is a duplicate; a counter that skips within one run of the gateway
// (it starts again from 0 at each start) is a gap.
type tally struct {
	missing, dups, gaps, outOfOrder, resets int
	dupPolls                                []poll // the second copies, in file order
}

func count(stream, file []poll) tally {
	var tl tally
	seen := map[poll]bool{}
	var unique []poll
	for _, p := range file {
		if seen[p] {
			tl.dups++
			tl.dupPolls = append(tl.dupPolls, p)
			continue
		}
		seen[p] = true
		unique = append(unique, p)
	}
	for i := 1; i < len(unique); i++ {
		switch prev, cur := unique[i-1], unique[i]; {
		case cur.n == 0:
			tl.resets++
		case cur.n != prev.n+1:
			tl.gaps++
		case cur.ts < prev.ts:
			tl.outOfOrder++
		}
	}
	pos := map[poll]int{}
	for i, p := range unique {
		pos[p] = i
	}
	last := -1
	for _, p := range stream {
		i, ok := pos[p]
		switch {
		case !ok:
			tl.missing++
		case i < last:
			tl.outOfOrder++
		default:
			last = i
		}
	}
	return tl
}

// waitFile waits until every poll of stream is in the file, and returns the file's polls.
func waitFile(t *testing.T, dataDir string, stream map[string][]poll) map[string][]poll {
	t.Helper()
	var file map[string][]poll
	deadline := time.Now().Add(2 * time.Minute)
	for {
		file = filePolls(t, dataDir)
		missing := 0
		for d := range devices {
			dev := fmt.Sprintf("d%d", d)
			missing += count(stream[dev], file[dev]).missing
		}
		if missing == 0 {
			return file
		}
		if time.Now().After(deadline) {
			t.Fatalf("after two minutes, %d polls the stream holds are still not in the file", missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kill -9 under load, sync always: every poll the stream acknowledged before the kill is in the file afterwards,
// in order, once — or twice only within the duplicate window: the deliveries written whose acks the killed server
// had not recorded yet, which come again at the start. They must be the last polls written before the kill, each
// again once, and at most a second of polls (50 per device at one every 20 ms).
func TestKill9UnderLoadLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gateway: not in -short")
	}
	bin := gatewayBinary(t)
	dir := t.TempDir()
	port := freePort(t)
	cfgPath := filepath.Join(dir, "gw.hcl")
	if err := os.WriteFile(cfgPath, []byte(gatewayConfig(filepath.Join(dir, "data"), port, SyncAlways)), 0o640); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, bin, cfgPath, port, "run1.log")
	g.connect()
	waitFor(t, "polls in the file", func() bool {
		f := filePolls(t, filepath.Join(dir, "data"))
		for d := range devices {
			if len(f[fmt.Sprintf("d%d", d)]) < 150 {
				return false
			}
		}
		return true
	})
	g.kill() // SIGKILL while the devices poll and the sink writes
	before := filePolls(t, filepath.Join(dir, "data"))

	g = startGateway(t, bin, cfgPath, port, "run2.log")
	_, js := g.connect()
	stream := streamPolls(t, js) // what the stream acknowledged, before the kill and since
	file := waitFile(t, filepath.Join(dir, "data"), stream)
	g.stop()

	for d := range devices {
		dev := fmt.Sprintf("d%d", d)
		tl := count(stream[dev], file[dev])
		t.Logf("%s: %d polls in the stream, %d in the file before the kill, %d after; missing %d, duplicates %d, gaps %d, out of order %d, restarts %d",
			dev, len(stream[dev]), len(before[dev]), len(file[dev]), tl.missing, tl.dups, tl.gaps, tl.outOfOrder, tl.resets)
		if tl.missing != 0 || tl.gaps != 0 || tl.outOfOrder != 0 {
			t.Errorf("%s: %d acknowledged polls missing, %d gaps in the counter, %d out of order; want none", dev, tl.missing, tl.gaps, tl.outOfOrder)
		}
		if tl.resets != 1 {
			t.Errorf("%s: the counter started again %d times, want once (one restart)", dev, tl.resets)
		}
		if tl.dups > 50 {
			t.Errorf("%s: %d duplicates, more than a second of polls", dev, tl.dups)
		}
		// The duplicates are a redelivery of what was in flight at the kill: the last polls of the first run.
		b := before[dev]
		if len(tl.dupPolls) > len(b) || fmt.Sprint(tl.dupPolls) != fmt.Sprint(b[len(b)-len(tl.dupPolls):]) {
			t.Errorf("%s: the duplicates %v are not the last polls written before the kill", dev, tl.dupPolls)
		}
	}
}

// The target down for 30 s while the devices publish: the sink's directory replaced by a regular file (tests run
// as root, and chmod does not stop root: a file where the directory was stops anyone), then put back. Every poll
// arrives, in order, once; while it lasts the sink shows the outage through iot.control.sinks.get (its consumer
// holding, the lag growing, the error), and after it the lag goes back to nothing.
func TestTargetDownThirtySecondsLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gateway for a minute: not in -short")
	}
	bin := gatewayBinary(t)
	dir := t.TempDir()
	port := freePort(t)
	cfgPath := filepath.Join(dir, "gw.hcl")
	dataDir := filepath.Join(dir, "data")
	if err := os.WriteFile(cfgPath, []byte(gatewayConfig(dataDir, port, SyncInterval)), 0o640); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, bin, cfgPath, port, "run.log")
	nc, js := g.connect()
	waitFor(t, "polls in the file", func() bool { return len(filePolls(t, dataDir)["d0"]) > 50 })

	points := filepath.Join(dataDir, "points")
	if err := os.Rename(points, points+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(points, []byte("not a directory"), 0o640); err != nil {
		t.Fatal(err)
	}
	outage := time.Now()
	var during sinkInfo
	waitFor(t, "the sink to show the outage", func() bool {
		s, err := getSink(t, nc)
		during = s
		return err == nil && s.LastError != "" && s.Pending > 0 && len(s.Durable) > 0 && s.Durable[0].State == "holding"
	})
	var lagMax uint64
	for time.Since(outage) < 30*time.Second {
		if s, err := getSink(t, nc); err == nil {
			if s.Pending < lagMax {
				t.Errorf("the lag fell from %d to %d while the directory was away", lagMax, s.Pending)
			}
			lagMax = max(lagMax, s.Pending)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("during the outage: %+v; the lag grew to %d messages", during, lagMax)
	if err := os.Remove(points); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(points+".away", points); err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	var after sinkInfo
	waitFor(t, "the sink to catch up", func() bool {
		var err error
		after, err = getSink(t, nc)
		return err == nil && after.Pending == 0
	})
	t.Logf("caught up %s after the directory came back: %+v", time.Since(restored).Round(time.Millisecond), after)
	stream := streamPolls(t, js)
	file := waitFile(t, dataDir, stream)
	g.stop()
	for d := range devices {
		dev := fmt.Sprintf("d%d", d)
		tl := count(stream[dev], file[dev])
		t.Logf("%s: %d polls in the stream, %d in the file; missing %d, duplicates %d, gaps %d, out of order %d",
			dev, len(stream[dev]), len(file[dev]), tl.missing, tl.dups, tl.gaps, tl.outOfOrder)
		if tl.missing != 0 || tl.gaps != 0 || tl.outOfOrder != 0 || tl.dups != 0 || tl.resets != 0 {
			t.Errorf("%s: got %+v, want every poll once, in order", dev, tl)
		}
	}
}
