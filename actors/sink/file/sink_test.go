package file

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// acker is the test's runtime side of a durable inbox: it records how each delivery was settled, and, at the
// moment of an Ack, what the file held then (a sink must ack only what is in its file).
type acker struct {
	mu     sync.Mutex
	events []string // "ack 3", "nak 4", "term 5: reason"
	atAck  map[uint64]string
	file   string // read at each Ack
}

func (a *acker) Ack(d *actors.Delivery) error {
	data, _ := os.ReadFile(a.file)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, fmt.Sprintf("ack %d", d.Seq))
	a.atAck[d.Seq] = string(data)
	return nil
}

func (a *acker) Nak(d *actors.Delivery, _ time.Duration) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, fmt.Sprintf("nak %d", d.Seq))
	return nil
}

func (a *acker) Term(d *actors.Delivery, reason string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, fmt.Sprintf("term %d: %s", d.Seq, reason))
	return nil
}

func (a *acker) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.events...)
}

func (a *acker) fileAt(seq uint64) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.atAck[seq]
	return s, ok
}

// waitFor polls cond until it holds, failing after a deadline generous enough for a loaded machine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type harness struct {
	t     *testing.T
	sys   *actor.ActorSystem
	pid   *actor.PID
	ack   *acker
	links *testenv.LinkLog
	dir   string
	file  string // the file of device plc-1
}

func startSink(t *testing.T, edit func(s *Settings)) *harness {
	t.Helper()
	dir := t.TempDir()
	s := testSettings(t, func(s *Settings) {
		s.Path = "{data_dir}/points/{device}.jsonl"
		if edit != nil {
			edit(s)
		}
	})
	h := &harness{t: t, sys: actor.NewActorSystem(), links: &testenv.LinkLog{}, dir: dir,
		file: filepath.Join(dir, "points", "plc-1.jsonl")}
	h.ack = &acker{atAck: map[uint64]string{}, file: h.file}
	env := actors.Env{Log: zerolog.Nop(), DataDir: dir, LinkState: h.links.Record}
	h.pid = h.sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return newSink("files", s, env, time.Now) }))
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.pid != nil {
		// Poison, not Stop: it comes after what is in the mailbox, as the runtime drains a subscription first.
		if err := h.sys.Root.PoisonFuture(h.pid).Wait(); err != nil {
			h.t.Errorf("stop: %v", err)
		}
		h.pid = nil
	}
}

// batch is delivery seq: a batch of plc-1 with points counting from seq*10.
func (h *harness) batch(seq uint64) *actors.Delivery {
	pts := make([]isp.Point, 3)
	for i := range pts {
		pts[i] = isp.Point{DeviceID: "plc-1", Key: fmt.Sprintf("k%d", i), Value: isp.Int(int64(seq*10) + int64(i)), Quality: 1, Timestamp: 1700000000000000000}
	}
	return h.raw(seq, "iot.processed.batch.plc-1", isp.AppendBatch(nil, pts))
}

func (h *harness) raw(seq uint64, subject string, data []byte) *actors.Delivery {
	return &actors.Delivery{Msg: &nats.Msg{Subject: subject, Data: data}, Seq: seq, NumDelivered: 1, Acker: h.ack}
}

func (h *harness) send(d *actors.Delivery) { h.sys.Root.Send(h.pid, d) }

func (h *harness) waitEvents(n int) []string {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(h.ack.list()) < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %d settled deliveries; got %v", n, h.ack.list())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return h.ack.list()
}

// lastLine is the line of the last point of delivery seq.
func lastLine(seq uint64) string {
	return fmt.Sprintf(`{"device_id":"plc-1","key":"k2","value":%d,`, seq*10+2)
}

func counters(t *testing.T, file string) []int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		p, err := isp.DecodePoint([]byte(l))
		if err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		v, _ := p.Value.Int()
		out = append(out, int(v))
	}
	return out
}

func TestAlwaysAcksEachDeliveryOnceInTheFile(t *testing.T) {
	for _, mode := range []string{SyncAlways, SyncNever} {
		t.Run(mode, func(t *testing.T) {
			h := startSink(t, func(s *Settings) { s.Sync = mode })
			for seq := uint64(1); seq <= 20; seq++ {
				h.send(h.batch(seq))
			}
			ev := h.waitEvents(20)
			for i, e := range ev {
				if e != fmt.Sprintf("ack %d", i+1) {
					t.Fatalf("event %d: got %q, want ack %d (all: %v)", i, e, i+1, ev)
				}
				at, _ := h.ack.fileAt(uint64(i + 1))
				if !strings.Contains(at, lastLine(uint64(i+1))) {
					t.Fatalf("delivery %d was acked before its points were in the file", i+1)
				}
			}
		})
	}
}

// With sync interval the acks wait for the sync that covers them: here the interval is an hour, so the sync is
// the one at half of max_ack_pending, and the first delivery's ack comes after the fourth was written.
func TestIntervalAcksAfterTheSyncThatCoversThem(t *testing.T) {
	h := startSink(t, func(s *Settings) { s.SyncInterval = time.Hour; s.MaxAckPending = 8 })
	for seq := uint64(1); seq <= 4; seq++ {
		h.send(h.batch(seq))
	}
	ev := h.waitEvents(4)
	if strings.Join(ev, ",") != "ack 1,ack 2,ack 3,ack 4" {
		t.Fatalf("got %v", ev)
	}
	if at, _ := h.ack.fileAt(1); !strings.Contains(at, lastLine(4)) {
		t.Fatalf("delivery 1 was acked before the sync that covered delivery 4: the acks are not batched")
	}
	h.send(h.batch(5)) // pending at the stop: synced and acked then, not lost nor left unsettled
	h.stop()
	ev = h.ack.list()
	if len(ev) != 5 || ev[4] != "ack 5" {
		t.Fatalf("got %v, want delivery 5 acked at the stop", ev)
	}
	if got := counters(t, h.file); len(got) != 15 {
		t.Fatalf("got %d points in the file, want 15", len(got))
	}
}

// Messages that can never be written are terminated (to the dead letters, with the reason), and leave nothing.
func TestRefusedMessagesAreTerminated(t *testing.T) {
	h := startSink(t, func(s *Settings) { s.Sync = SyncAlways })
	hostile := isp.AppendBatch(nil, []isp.Point{
		{DeviceID: "plc-1", Key: "ok", Value: isp.Int(1)},
		{DeviceID: "../../etc", Key: "evil", Value: isp.Int(2)},
	})
	good := h.batch(9)
	for i, data := range [][]byte{
		[]byte("not json"),
		[]byte(`{"points":[{"device_id":"plc-1","key":"a","value":1}`), // truncated
		[]byte(`{"device_id":"plc-1","key":"a","value":1}`),            // a point on a batch subject
		[]byte(strings.Repeat("[", 100000)),                            // hostile nesting
		hostile,
		{},
	} {
		h.send(h.raw(uint64(i+1), "iot.processed.batch.plc-1", data))
	}
	h.send(h.raw(7, "iot.processed.plc-1.temp", []byte(`{"key":"temp","value":1}`))) // device from the subject
	h.send(h.raw(8, "iot.processed.batch.x", []byte(`{"points":[{"key":"temp","value":1}]}`)))
	h.send(h.raw(9, good.Msg.Subject, good.Msg.Data))
	ev := h.waitEvents(9)
	for i := 0; i < 6; i++ {
		if !strings.HasPrefix(ev[i], fmt.Sprintf("term %d: ", i+1)) {
			t.Fatalf("event %d: got %q, want a term (all: %v)", i, ev[i], ev)
		}
	}
	if !strings.Contains(ev[4], "unsafe file path") {
		t.Fatalf("got %q, want the path named as the reason", ev[4])
	}
	if ev[6] != "ack 7" || ev[7] != "ack 8" || ev[8] != "ack 9" {
		t.Fatalf("got %v", ev[6:])
	}
	if got := counters(t, h.file); len(got) != 4 || got[0] != 1 || got[1] != 90 {
		t.Fatalf("got %v in the file: the hostile batch left its good point behind, or a good one is missing", got)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "points", "x.jsonl")); err != nil {
		t.Fatalf("the point without device_id did not go to its subject's device: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(h.dir)); len(entries) > 0 {
		for _, e := range entries {
			if e.Name() == "etc" {
				t.Fatal("the hostile device id escaped the directory")
			}
		}
	}
}

// The target down: deliveries are handed back, and once they come again (in order: the durable inbox holds every
// later delivery back until the first handed back has come again, system/durable.go, TestDurableInboxOutageParks)
// the file ends with every point once, in order; the link state shows the outage.
func TestTargetDownHandsBackInOrder(t *testing.T) {
	h := startSink(t, func(s *Settings) { s.Sync = SyncAlways })
	for seq := uint64(1); seq <= 3; seq++ {
		h.send(h.batch(seq))
	}
	h.waitEvents(3)
	sub := filepath.Join(h.dir, "points")
	if err := os.Rename(sub, sub+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sub, nil, 0o640); err != nil { // chmod would not stop root: a file in the way does
		t.Fatal(err)
	}
	for seq := uint64(4); seq <= 6; seq++ {
		h.send(h.batch(seq))
	}
	ev := h.waitEvents(6)
	if strings.Join(ev[3:], ",") != "nak 4,nak 5,nak 6" {
		t.Fatalf("got %v, want 4 to 6 handed back", ev)
	}
	waitFor(t, "the sink reported down", func() bool { return h.links.Last() == actors.LinkDisconnected })
	os.Remove(sub)
	if err := os.Rename(sub+".away", sub); err != nil {
		t.Fatal(err)
	}
	h.send(h.batch(4))
	h.send(h.batch(5))
	h.send(h.batch(6))
	ev = h.waitEvents(9)
	if strings.Join(ev[6:], ",") != "ack 4,ack 5,ack 6" {
		t.Fatalf("got %v", ev)
	}
	waitFor(t, "the sink reported up", func() bool { return h.links.Last() == actors.LinkConnected })
	got := counters(t, h.file)
	var want []int
	for seq := 1; seq <= 6; seq++ {
		want = append(want, seq*10, seq*10+1, seq*10+2)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v in the file, want %v", got, want)
	}
}

// Without a durable inbox (a plain message), the sink still writes; there is nobody to ack to.
func TestPlainMessagesAreWritten(t *testing.T) {
	h := startSink(t, func(s *Settings) { s.Sync = SyncNever })
	d := h.batch(1)
	h.sys.Root.Send(h.pid, d.Msg)
	waitFor(t, "the plain message in the file", func() bool {
		data, _ := os.ReadFile(h.file)
		return strings.Contains(string(data), lastLine(1))
	})
}

// The sink's own path, from a batch on the bus to lines in the file's buffer, allocates nothing per point once
// warm: decoding reuses its points, paths and lines are appended into buffers of the sink.
func TestWriteAllocatesNothingPerPoint(t *testing.T) {
	s := testSettings(t, func(s *Settings) { s.Path = "{data_dir}/points/{date}/{device}.jsonl" })
	k := newSink("files", s, actors.Env{Log: zerolog.Nop(), DataDir: t.TempDir()}, time.Now)
	k.base = s.tmpl.base(k.bind)
	k.w = newWriter(s, time.Now, nil)
	defer k.w.closeAll()
	pts := make([]isp.Point, 30)
	for i := range pts {
		pts[i] = isp.Point{DeviceID: "plc-1", Key: fmt.Sprintf("reg%d", i), Value: isp.Float(20.5), Type: "float32",
			Quality: 1, Timestamp: time.Now().UnixNano(), Tags: []isp.Tag{{Key: "unit", Value: "C"}}, Source: "modbus"}
	}
	msg := &nats.Msg{Subject: "iot.processed.batch.plc-1", Data: isp.AppendBatch(nil, pts)}
	write := func() {
		if _, err := k.write(msg); err != nil {
			t.Fatal(err)
		}
	}
	write()
	if n := testing.AllocsPerRun(200, write); n > 0.5 {
		t.Fatalf("%v allocations per batch of 30, want none", n)
	}
}

// A sync that fails for one file only (its directory went away between two files of the sync): the deliveries
// that wrote only to the files that made it are acknowledged, the others handed back, and the failed file keeps
// nothing of them.
func TestPartialSyncFailureSettlesPerFile(t *testing.T) {
	h := startSink(t, func(s *Settings) {
		s.Path = "{data_dir}/{device}/points.jsonl"
		s.SyncInterval = time.Hour
		s.MaxAckPending = 8 // the sync at 4 pending is the one that fails
	})
	delivery := func(seq uint64, dev string) *actors.Delivery {
		pts := []isp.Point{{DeviceID: dev, Key: "n", Value: isp.Int(int64(seq)), Quality: 1, Timestamp: 1700000000000000000}}
		return h.raw(seq, "iot.processed.batch."+dev, isp.AppendBatch(nil, pts))
	}
	h.send(delivery(1, "plc-1"))
	h.send(delivery(2, "plc-2"))
	h.send(delivery(3, "plc-1"))
	waitFor(t, "the files open", func() bool {
		_, err := os.Stat(filepath.Join(h.dir, "plc-2", "points.jsonl"))
		return err == nil
	})
	away := filepath.Join(h.dir, "plc-2.away")
	if err := os.Rename(filepath.Join(h.dir, "plc-2"), away); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.dir, "plc-2"), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	h.send(delivery(4, "plc-2"))
	ev := h.waitEvents(4)
	if strings.Join(ev, ",") != "ack 1,nak 2,ack 3,nak 4" {
		t.Fatalf("got %v, want plc-1's deliveries acked and plc-2's handed back", ev)
	}
	if got, _ := os.ReadFile(filepath.Join(away, "points.jsonl")); len(got) != 0 {
		t.Fatalf("the failed file kept %q, want nothing of the deliveries handed back", got)
	}
	if got := counters(t, filepath.Join(h.dir, "plc-1", "points.jsonl")); fmt.Sprint(got) != "[1 3]" {
		t.Fatalf("plc-1's file holds %v, want [1 3]", got)
	}
}

// A rule's output (iot.rules.{rule}.{device}) and a batch on a forward rule's own subject are batches too: written
// point by point like the processor's, where the sink once refused them as malformed points.
func TestRuleOutputBatchesAreWritten(t *testing.T) {
	h := startSink(t, func(s *Settings) { s.Sync = SyncAlways })
	b := h.batch(1)
	h.send(h.raw(1, "iot.rules.hot.plc-1", b.Msg.Data))
	h.send(h.raw(2, "plant.plc-1", h.batch(2).Msg.Data))
	waitFor(t, "both deliveries acknowledged", func() bool { return len(h.ack.list()) == 2 })
	for _, a := range h.ack.list() {
		if !strings.HasPrefix(a, "ack") {
			t.Fatalf("settled %v, want two acks", h.ack.list())
		}
	}
	data, err := os.ReadFile(h.file)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(data), "\n"); got != 6 || !strings.Contains(string(data), lastLine(1)) || !strings.Contains(string(data), lastLine(2)) {
		t.Fatalf("the file holds %d lines, want the 6 points:\n%s", got, data)
	}
}
