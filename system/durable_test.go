package system

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// probe is a test-only sink with a durable inbox: it records what it accepts (acks), in order, and lets the test
// decide the fate of each delivery.
type probe struct {
	subjects []string
	durable  actors.Durable
	rec      *record
}

// record is what a probe accepted, shared by its incarnations.
type record struct {
	mu       sync.Mutex
	accepted []string // the bodies acked, in order
	seen     map[string]int
	// decide returns "ack", "nak", "term", "ignore", "crash", "keep" (hold it unsettled), "nakall" (Nak the
	// kept ones and this one, in order: a sink whose batch failed) or "ack4" (keep it, and Ack the kept ones
	// once there are 4: a sink that acks at its sync) for a delivery (nil: ack).
	decide func(d *actors.Delivery, seen int) string
	kept   []*actors.Delivery
	// ackAtStop: at Stopping the probe acks what it kept, and records any error of those acks in stopErr.
	ackAtStop bool
	stopErr   error
}

func (r *record) stopAcks() {
	r.mu.Lock()
	kept := r.kept
	r.kept = nil
	r.mu.Unlock()
	for _, k := range kept {
		err := k.Ack()
		r.mu.Lock()
		if err != nil && r.stopErr == nil {
			r.stopErr = err
		}
		if err == nil {
			r.accepted = append(r.accepted, string(k.Msg.Data))
		}
		r.mu.Unlock()
	}
}

func newRecord() *record { return &record{seen: map[string]int{}} }

func (r *record) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.accepted...)
}

func (p *probe) Inboxes() []actors.Inbox {
	in := make([]actors.Inbox, len(p.subjects))
	for i, s := range p.subjects {
		d := p.durable
		in[i] = actors.Inbox{Subject: s, Durable: &d}
	}
	return in
}

func (p *probe) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*actor.Stopping); ok && p.rec.ackAtStop {
		p.rec.stopAcks() // a sink that syncs at its stop and acks what the sync covered
		return
	}
	d, ok := ctx.Message().(*actors.Delivery)
	if !ok {
		return
	}
	r := p.rec
	r.mu.Lock()
	body := string(d.Msg.Data)
	r.seen[body]++
	what := "ack"
	if r.decide != nil {
		what = r.decide(d, r.seen[body])
	}
	if what == "ack" {
		r.accepted = append(r.accepted, body)
	}
	r.mu.Unlock()
	var err error
	switch what {
	case "ack":
		err = d.Ack()
	case "nak":
		err = d.Nak(50 * time.Millisecond)
	case "term":
		err = d.Term("refused by the probe")
	case "crash":
		panic("probe crash on " + body)
	case "keep":
		r.mu.Lock()
		r.kept = append(r.kept, d)
		r.mu.Unlock()
	case "ack4":
		r.mu.Lock()
		r.kept = append(r.kept, d)
		var kept []*actors.Delivery
		if len(r.kept) == 4 {
			kept, r.kept = r.kept, nil
			for _, k := range kept {
				r.accepted = append(r.accepted, string(k.Msg.Data))
			}
		}
		r.mu.Unlock()
		for _, k := range kept {
			if err = k.Ack(); err != nil {
				break
			}
		}
	case "nakall":
		r.mu.Lock()
		kept := append(r.kept, d)
		r.kept = nil
		r.mu.Unlock()
		for _, k := range kept {
			if err = k.Nak(50 * time.Millisecond); err != nil {
				break
			}
		}
	}
	if err != nil {
		panic(fmt.Sprintf("settle %s: %v", body, err))
	}
}

func addProbe(t *testing.T, rt *Runtime, name string, p *probe) {
	t.Helper()
	if err := rt.AddActor(GroupSinks, ChildSpec{Name: name, Kind: "sink/probe", Producer: func() actor.Actor {
		return &probe{subjects: p.subjects, durable: p.durable, rec: p.rec}
	}}); err != nil {
		t.Fatalf("add probe %s: %v", name, err)
	}
}

// publishN publishes bodies prefix1 … prefixN on subject, each acknowledged by the stream when js is set.
func publishN(t *testing.T, nc *nats.Conn, subject, prefix string, from, to int) []string {
	t.Helper()
	var out []string
	for i := from; i <= to; i++ {
		body := prefix + strconv.Itoa(i)
		if err := nc.Publish(subject, []byte(body)); err != nil {
			t.Fatal(err)
		}
		out = append(out, body)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return out
}

func waitAccepted(t *testing.T, rec *record, want []string) {
	t.Helper()
	checkFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		got := rec.snapshot()
		if len(got) < len(want) {
			return fmt.Errorf("%d of %d accepted", len(got), len(want))
		}
		return nil
	})
	got := rec.snapshot()
	if len(got) != len(want) {
		t.Fatalf("accepted %d messages, want %d:\n got %v\nwant %v", len(got), len(want), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("accepted[%d] = %s, want %s (order or duplicates):\n got %v\nwant %v", i, got[i], want[i], got, want)
		}
	}
}

var backends = []struct {
	name string
	hcl  string
}{
	{"jetstream", "nats {\n  jetstream { enabled = true }\n}"},
	{"memory", "nats {\n  jetstream { enabled = false }\n}"},
}

// TestDurableInboxOrderedAfterNaks: the probe refuses every message (Nak) the first three times it sees it: a
// target that is down. Everything is accepted in the end, in order, each once, on both backends, and the Naks do
// not count towards max_deliver (2 here: counted, they would send everything to the dead letters).
func TestDurableInboxOrderedAfterNaks(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			rt := startRuntime(t, parseConfig(t, b.hcl))
			rec := newRecord()
			rec.decide = func(_ *actors.Delivery, seen int) string {
				if seen <= 3 {
					return "nak"
				}
				return "ack"
			}
			addProbe(t, rt, "p1", &probe{subjects: []string{"iot.processed.batch.t1"}, rec: rec,
				durable: actors.Durable{Name: "p1", MaxAckPending: 8, MaxDeliver: 2, AckWait: 10 * time.Second}})
			nc := client(t, rt.Bus().URL)
			want := publishN(t, nc, "iot.processed.batch.t1", "m", 1, 40)
			waitAccepted(t, rec, want)
			st := durableStats(t, rt, "sinks/p1")
			if st.DeadLetters != 0 || st.Naked == 0 {
				t.Errorf("stats %+v: want naks counted and no dead letters", st)
			}
		})
	}
}

// TestDurableInboxOutageParks: a target that is down (the probe Naks the first message while down is set) makes
// the inbox park what came after it instead of spinning it: while it lasts, only the Nak'ed message comes again
// (one redelivery per Nak, none of the parked ones), the lag counts every message not written (none reads 0 for
// being held), and the state is holding; once the target is back everything is accepted, in order, each once,
// and nothing is held. On both backends.
func TestDurableInboxOutageParks(t *testing.T) {
	// The outage outlasts AckWait (2 s) more than twice: the parked messages' AckWait is restarted while they
	// wait, so they do not come again (which, once released, would be duplicates).
	const total, window, ackWait = 64, 16, 2 * time.Second
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			rt := startRuntime(t, parseConfig(t, b.hcl))
			rec := newRecord()
			var mu sync.Mutex
			down := true
			rec.decide = func(d *actors.Delivery, seen int) string {
				mu.Lock()
				defer mu.Unlock()
				body := string(d.Msg.Data)
				switch {
				case seen == 1 && (body == "m1" || body == "m2" || body == "m3"):
					return "keep" // a batch being gathered
				case seen == 1 && body == "m4":
					return "nakall" // its write failed: all four handed back, in order
				case down && body != "m1":
					panic(fmt.Sprintf("%s reached the probe while m1 was held", body))
				case down:
					return "nak"
				}
				return "ack4"
			}
			name := "park_" + b.name
			addProbe(t, rt, name, &probe{subjects: []string{"iot.processed.batch.park"}, rec: rec,
				durable: actors.Durable{Name: name, MaxAckPending: window, AckWait: ackWait}})
			nc := client(t, rt.Bus().URL)
			want := publishN(t, nc, "iot.processed.batch.park", "m", 1, total)
			var s SinkInfo
			checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
				rec.mu.Lock()
				naks := rec.seen["m1"]
				rec.mu.Unlock()
				infos := rt.sinkInfos(true)
				if len(infos) != 1 {
					return fmt.Errorf("sinks %+v", infos)
				}
				s = infos[0]
				if naks < 100 || s.Pending+uint64(s.AckPending) != total || s.Held < window-1 || s.Durable[0].State != "holding" {
					return fmt.Errorf("m1 Nak'ed %d times; sink %+v", naks, s)
				}
				return nil
			})
			mu.Lock()
			down = false
			naks := rec.seen["m1"]
			mu.Unlock()
			// Redeliveries: m1's, one per Nak, and m2 to m4 once; the parked ones are not Nak'ed and their AckWait
			// is restarted, so they do not come again (a round of them allowed for a machine that stalls the
			// actor past AckWait: without the restart there would be at least two).
			if s.Redeliveries > uint64(naks)+4+window {
				t.Errorf("%d redeliveries for %d Naks of m1: the parked messages were delivered again", s.Redeliveries, naks)
			}
			waitAccepted(t, rec, want)
			checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
				s = rt.sinkInfos(true)[0]
				if s.Pending != 0 || s.Held != 0 || s.AckPending != 0 || s.Durable[0].State != "consuming" {
					return fmt.Errorf("sink after the outage: %+v", s)
				}
				return nil
			})
		})
	}
}

// TestSinkLastErrorCarriesItsTime: a sink's last error stays shown after it recovered, with the time it happened,
// and the state says it recovered.
func TestSinkLastErrorCarriesItsTime(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, ``))
	rec := newRecord()
	addProbe(t, rt, "p_err", &probe{subjects: []string{"iot.processed.batch.err"}, rec: rec,
		durable: actors.Durable{Name: "p_err"}})
	before := time.Now()
	rt.tree.link(GroupSinks+"/p_err", actors.LinkDisconnected, "target down")
	s := rt.sinkInfos(false)[0]
	if s.State != StateDisconnected || s.LastError != "target down" || s.LastErrorAt == "" {
		t.Fatalf("sink while down: %+v", s)
	}
	at, err := time.Parse(time.RFC3339Nano, s.LastErrorAt)
	if err != nil || at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("last_error_at %q (%v): want the time of the error", s.LastErrorAt, err)
	}
	rt.tree.link(GroupSinks+"/p_err", actors.LinkConnected, "")
	s = rt.sinkInfos(false)[0]
	if s.State != StateRunning || s.LastError != "target down" || s.LastErrorAt == "" {
		t.Errorf("sink after it recovered: %+v; want running, with the last error and its time", s)
	}
}

// durableStats returns the stats of the first durable inbox of the actor at path.
func durableStats(t *testing.T, rt *Runtime, path string) DurableStats {
	t.Helper()
	n, ok := rt.Tree().Get(path)
	if !ok || n.Mailbox == nil || len(n.Mailbox.Durable) == 0 {
		t.Fatalf("%s: no durable inbox in the tree (%+v)", path, n)
	}
	return n.Mailbox.Durable[0]
}

// TestDurableInboxSurvivesRemoval: a durable consumer outlives its actor: what is published while the actor is
// gone is delivered when an actor with the same durable name comes back, and nothing already acked comes again.
func TestDurableInboxSurvivesRemoval(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, ``))
	rec := newRecord()
	p := &probe{subjects: []string{"iot.processed.batch.t2"}, rec: rec, durable: actors.Durable{Name: "p2"}}
	addProbe(t, rt, "p2", p)
	nc := client(t, rt.Bus().URL)
	want := publishN(t, nc, "iot.processed.batch.t2", "a", 1, 20)
	waitAccepted(t, rec, want)
	if err := rt.RemoveActor(GroupSinks, "p2"); err != nil {
		t.Fatal(err)
	}
	want = append(want, publishN(t, nc, "iot.processed.batch.t2", "b", 1, 20)...)
	addProbe(t, rt, "p2", p)
	waitAccepted(t, rec, want)
}

// TestDurableInboxRestartRedeliversInOrder: the probe crashes on a message the first time; after the supervisor
// restarts it, the message comes again before everything after it, on both backends.
func TestDurableInboxRestartRedeliversInOrder(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			rt := startRuntime(t, parseConfig(t, b.hcl))
			rec := newRecord()
			rec.decide = func(d *actors.Delivery, seen int) string {
				if string(d.Msg.Data) == "m7" && seen == 1 {
					return "crash"
				}
				return "ack"
			}
			addProbe(t, rt, "p3", &probe{subjects: []string{"iot.processed.batch.t3"}, rec: rec,
				durable: actors.Durable{Name: "p3", MaxAckPending: 4}})
			nc := client(t, rt.Bus().URL)
			want := publishN(t, nc, "iot.processed.batch.t3", "m", 1, 30)
			defer func() {
				if t.Failed() {
					n, _ := rt.Tree().Get("sinks/p3")
					t.Logf("probe: %+v; mailbox %+v; seen %v", n, n.Mailbox, rec.seen)
				}
			}()
			waitAccepted(t, rec, want)
			if n, _ := rt.Tree().Get("sinks/p3"); n.Restarts < 1 {
				t.Errorf("restarts %d, want the crash to have restarted the probe", n.Restarts)
			}
		})
	}
}

// TestDurableInboxDeadLetters: a Term'ed message and one never settled within AckWait max_deliver times go to
// IOT_DEADLETTER with their reason; the rest is accepted in order.
func TestDurableInboxDeadLetters(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, ``))
	rec := newRecord()
	rec.decide = func(d *actors.Delivery, _ int) string {
		switch string(d.Msg.Data) {
		case "m3":
			return "term"
		case "m5":
			return "ignore"
		}
		return "ack"
	}
	addProbe(t, rt, "p4", &probe{subjects: []string{"iot.processed.batch.t4"}, rec: rec,
		durable: actors.Durable{Name: "p4", MaxAckPending: 16, MaxDeliver: 2, AckWait: 300 * time.Millisecond}})
	nc := client(t, rt.Bus().URL)
	publishN(t, nc, "iot.processed.batch.t4", "m", 1, 8)
	waitAccepted(t, rec, []string{"m1", "m2", "m4", "m6", "m7", "m8"})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := rt.Bus().JS.Stream(ctx, DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		info, err := stream.Info(ctx)
		if err != nil {
			return err
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := stream.GetMsg(ctx, seq)
			if err != nil {
				return err
			}
			if m.Subject != SubjectDeadLetterPrefix+"p4" || m.Header.Get(HeaderDeadSubject) != "iot.processed.batch.t4" {
				return fmt.Errorf("dead letter on %s from %s", m.Subject, m.Header.Get(HeaderDeadSubject))
			}
			reasons[string(m.Data)] = m.Header.Get(HeaderDeadReason)
		}
		if len(reasons) < 2 {
			return fmt.Errorf("dead letters %v, want m3 and m5", reasons)
		}
		return nil
	})
	if reasons["m3"] != "refused by the probe" {
		t.Errorf("m3's reason %q, want the Term's", reasons["m3"])
	}
	if want := "delivered 2 times without being acknowledged (max_deliver 2)"; reasons["m5"] != want {
		t.Errorf("m5's reason %q, want %q", reasons["m5"], want)
	}
	if st := durableStats(t, rt, "sinks/p4"); st.DeadLetters != 2 {
		t.Errorf("dead letters counted %d, want 2", st.DeadLetters)
	}
}

// TestDurableInboxMemoryOverflow: without JetStream, the buffer of a durable inbox is bounded: past it the oldest
// message that is not in flight is dropped and counted, and reported on iot.errors.sinks.dropped; what is in flight
// is kept and delivered again after AckWait.
func TestDurableInboxMemoryOverflow(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `nats {
  jetstream {
    enabled = false
    buffer  = 10
  }
}`))
	rec := newRecord()
	rec.decide = func(*actors.Delivery, int) string { return "ignore" } // a hung target: nothing is settled
	addProbe(t, rt, "p5", &probe{subjects: []string{"iot.processed.batch.t5"}, rec: rec,
		durable: actors.Durable{Name: "p5", MaxAckPending: 2, MaxDeliver: -1, AckWait: time.Second}})
	nc := client(t, rt.Bus().URL)
	events, err := nc.SubscribeSync(SubjectErrorDropped)
	if err != nil {
		t.Fatal(err)
	}
	// Warm-up messages are numbered, one more each try, so that each is told apart from the next.
	warm := 0
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		warm++
		publishN(t, nc, "iot.processed.batch.t5", "warm", warm, warm)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.seen) == 0 {
			return fmt.Errorf("the probe has not seen a message yet")
		}
		return nil
	})
	publishN(t, nc, "iot.processed.batch.t5", "m", 1, 30)
	var st DurableStats
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		st = durableStats(t, rt, "sinks/p5")
		if st.AckPending != 2 || st.Dropped < 20 {
			return fmt.Errorf("ack pending %d, dropped %d: want 2 in flight and at least 20 dropped", st.AckPending, st.Dropped)
		}
		return nil
	})
	if _, err := events.NextMsg(10 * time.Second); err != nil {
		t.Errorf("no event on %s: %v", SubjectErrorDropped, err)
	}
	rec.mu.Lock()
	rec.decide = nil
	rec.mu.Unlock()
	// Kept: the two in flight (warm-up messages, if more than one went out) and the newest that fit.
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		got := rec.snapshot()
		if len(got) < 10 {
			return fmt.Errorf("%d accepted, want the 10 the buffer kept", len(got))
		}
		return nil
	})
	// Order holds for what the probe settles; the two it left unsettled come again only after AckWait, so they may
	// follow newer ones (a sink that neither acks nor naks).
	got := rec.snapshot()
	seen := map[string]bool{}
	for _, g := range got {
		if seen[g] {
			t.Errorf("accepted %s twice: %v", g, got)
		}
		seen[g] = true
	}
	if len(got) != 10 || !seen["m30"] {
		t.Fatalf("accepted %v: want the 10 kept, the newest, m30, among them", got)
	}
	st = durableStats(t, rt, "sinks/p5")
	if published := uint64(31); st.Dropped+10 < published {
		t.Errorf("dropped %d and kept 10 of at least %d published", st.Dropped, published)
	}
}

// TestDurableInboxSettledAtStop: a sink that settles at its stop what it was delivered (the file sink acks what its
// last sync covered) loses nothing and has nothing counted as lost, on both backends: the mailbox is closed after
// the actor's Stopping, not before (a gateway stopped with 488 such deliveries reported them dropped while they
// were in the file).
func TestDurableInboxSettledAtStop(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			var logs syncBuffer
			rt := startRuntime(t, parseConfig(t, b.hcl), WithLogger(zerolog.New(&logs)))
			rec := newRecord()
			rec.ackAtStop = true
			rec.decide = func(*actors.Delivery, int) string { return "keep" }
			addProbe(t, rt, "p11", &probe{subjects: []string{"iot.processed.batch.t11"}, rec: rec,
				durable: actors.Durable{Name: "p11", MaxAckPending: 100}})
			nc := client(t, rt.Bus().URL)
			want := publishN(t, nc, "iot.processed.batch.t11", "m", 1, 20)
			checkFor(t, 20*time.Second, 10*time.Millisecond, func() error {
				rec.mu.Lock()
				defer rec.mu.Unlock()
				if len(rec.kept) < len(want) {
					return fmt.Errorf("%d of %d delivered", len(rec.kept), len(want))
				}
				return nil
			})
			if st := durableStats(t, rt, "sinks/p11"); st.AckPending != len(want) || st.Dropped != 0 {
				t.Fatalf("before the stop: %d unsettled, %d dropped; want %d, 0", st.AckPending, st.Dropped, len(want))
			}
			if err := rt.Stop(); err != nil {
				t.Fatal(err)
			}
			rec.mu.Lock()
			stopErr := rec.stopErr
			rec.mu.Unlock()
			if stopErr != nil {
				t.Errorf("an ack at the stop failed: %v", stopErr)
			}
			if got := rec.snapshot(); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("accepted at the stop %v, want %v", got, want)
			}
			if strings.Contains(logs.String(), "unsettled messages") {
				t.Errorf("the stop reported messages lost that the sink had settled:\n%s", logs.String())
			}
		})
	}
}

// TestSinksControl: iot.control.sinks.list and .get show a sink's lag and state while its target is down (every
// delivery Nak'ed), and its acknowledged count, last delivery and an empty lag once it is back; /metrics has the
// same figures.
func TestSinksControl(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, ``))
	rec := newRecord()
	var down sync.Mutex
	targetDown := true
	rec.decide = func(*actors.Delivery, int) string {
		down.Lock()
		defer down.Unlock()
		if targetDown {
			return "nak"
		}
		return "ack"
	}
	addProbe(t, rt, "p6", &probe{subjects: []string{"iot.processed.batch.t6"}, rec: rec,
		durable: actors.Durable{Name: "p6", MaxAckPending: 4}})
	nc := client(t, rt.Bus().URL)
	want := publishN(t, nc, "iot.processed.batch.t6", "m", 1, 50)

	var s *SinkInfo
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		r := ask(t, nc, SubjectSinksGet, `{"name":"p6"}`)
		if !r.OK || r.Sink == nil {
			return fmt.Errorf("sinks.get: %+v", r)
		}
		s = r.Sink
		if s.Pending+uint64(s.AckPending) < 40 || len(s.Durable) != 1 || s.Durable[0].Naked == 0 {
			return fmt.Errorf("sink while its target is down: %+v", s)
		}
		return nil
	})
	if s.Type != "probe" || s.State != StateRunning || s.Acked != 0 || len(s.Durable) != 1 || s.Durable[0].Backend != "jetstream" || s.Durable[0].Stream != StreamName {
		t.Errorf("sink while its target is down: %+v", s)
	}
	down.Lock()
	targetDown = false
	down.Unlock()
	waitAccepted(t, rec, want)
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		r := ask(t, nc, SubjectSinksList, "")
		if !r.OK || len(r.Sinks) != 1 {
			return fmt.Errorf("sinks.list: %+v", r)
		}
		s = &r.Sinks[0]
		if s.Name != "p6" || s.Pending != 0 || s.AckPending != 0 || s.Acked != 50 || s.LastDelivered == "" || s.Redeliveries == 0 {
			return fmt.Errorf("sink once its target is back: %+v", s)
		}
		return nil
	})
	if got := counterValue(t, rt.Gatherer(), "iotgw_sink_acked_total", map[string]string{"sink": "p6"}); got != 50 {
		t.Errorf("iotgw_sink_acked_total %v, want 50", got)
	}
}

// TestSinksGetBadRequests: malformed, truncated, oversized and hostile requests get a clear error; the control
// actor keeps answering.
func TestSinksGetBadRequests(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `sink "out" {
  type = "console"
}`))
	nc := client(t, rt.Bus().URL)
	for _, tc := range []struct{ name, body, want string }{
		{"empty", ``, `request is not {"name":"…"}`},
		{"truncated", `{"name":"ou`, `request is not {"name":"…"}`},
		{"not an object", `["out"]`, `request is not {"name":"…"}`},
		{"no name", `{}`, `request lacks "name"`},
		{"wildcard", `{"name":">"}`, `sink name:`},
		{"dotted", `{"name":"a.b"}`, `sink name:`},
		{"path", `{"name":"../../etc"}`, `sink name:`},
		{"oversized", `{"name":"` + strings.Repeat("x", 5000) + `"}`, `at most 4096`},
		{"unknown", `{"name":"nope"}`, `no sink "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ask(t, nc, SubjectSinksGet, tc.body)
			if r.OK || !strings.Contains(r.Error, tc.want) {
				t.Errorf("got %+v, want an error containing %q", r, tc.want)
			}
		})
	}
	r := ask(t, nc, SubjectSinksGet, `{"name":"out"}`)
	if !r.OK || r.Sink == nil || r.Sink.Type != "console" || len(r.Sink.Durable) != 0 {
		t.Errorf("sinks.get out after the bad requests: %+v", r)
	}
}

// FuzzSinksGetRequest: whatever the body, getSink answers (an error or a sink), never panics.
func FuzzSinksGetRequest(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"name":"out"}`, `{"name":">"}`, `{"name":1}`, `{"name":"a\u0000b"}`, `[`, `null`} {
		f.Add([]byte(s))
	}
	rt := New(config.Default())
	rt.tree.add(GroupSinks+"/out", "sink/console", nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		r := rt.getSink(body)
		if r.OK == (r.Error != "") {
			t.Fatalf("reply %+v: ok and error disagree", r)
		}
		if r.OK && (r.Sink == nil || r.Sink.Name != "out") {
			t.Fatalf("reply %+v for %q", r, body)
		}
	})
}

// TestDurableInboxSurvivesGatewayRestart: the consumer is kept by the JetStream store under data_dir: a gateway
// started again on it delivers what was published while the sink was not running, and not what it had acked. A
// message that was delivered and not acked when the gateway stopped comes again first (the consumer is recreated
// at its ack floor).
func TestDurableInboxSurvivesGatewayRestart(t *testing.T) {
	dataDir := t.TempDir()
	start := func() *Runtime {
		cfg := parseConfig(t, ``)
		cfg.NATS.Port, cfg.Gateway.HTTPAddress, cfg.Gateway.DataDir = -1, "", dataDir
		rt := New(cfg, WithLogger(testLogger(t)))
		if err := rt.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return rt
	}
	rec := newRecord()
	rec.decide = func(d *actors.Delivery, _ int) string {
		if string(d.Msg.Data) == "a10" {
			return "ignore" // in flight when the gateway stops
		}
		return "ack"
	}
	p := &probe{subjects: []string{"iot.processed.batch.t8"}, rec: rec, durable: actors.Durable{Name: "p8"}}
	rt := start()
	addProbe(t, rt, "p8", p)
	nc := client(t, rt.Bus().URL)
	want := publishN(t, nc, "iot.processed.batch.t8", "a", 1, 10)
	waitAccepted(t, rec, want[:9])
	if err := rt.Stop(); err != nil {
		t.Fatal(err)
	}

	rec.mu.Lock()
	rec.decide = nil
	rec.mu.Unlock()
	rt = start()
	defer func() { _ = rt.Stop() }()
	nc = client(t, rt.Bus().URL)
	want = append(want, publishN(t, nc, "iot.processed.batch.t8", "b", 1, 10)...)
	addProbe(t, rt, "p8", p)
	waitAccepted(t, rec, want)
}

// TestDeadLetterOfHostileMessages: a message that forges the dead-letter headers, one without headers and a large
// one are Term'ed: each dead letter carries the true reason and the body as it was, and the sink goes on.
func TestDeadLetterOfHostileMessages(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, ``))
	rec := newRecord()
	rec.decide = func(d *actors.Delivery, _ int) string {
		if strings.HasPrefix(string(d.Msg.Data), "bad") {
			return "term"
		}
		return "ack"
	}
	addProbe(t, rt, "p9", &probe{subjects: []string{"iot.processed.batch.t9"}, rec: rec, durable: actors.Durable{Name: "p9"}})
	nc := client(t, rt.Bus().URL)
	forged := &nats.Msg{Subject: "iot.processed.batch.t9", Data: []byte("bad-forged"), Header: nats.Header{}}
	forged.Header.Set(HeaderDeadReason, "forged reason")
	forged.Header.Set(HeaderDeadSeq, "999999")
	forged.Header.Set("Nats-Msg-Id", "forged-id")
	big := "bad-big-" + strings.Repeat("x", 1<<20)
	for _, m := range []*nats.Msg{forged, {Subject: "iot.processed.batch.t9", Data: []byte("bad-bare")}, {Subject: "iot.processed.batch.t9", Data: []byte(big)}} {
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	waitAccepted(t, rec, publishN(t, nc, "iot.processed.batch.t9", "ok", 1, 3))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := rt.Bus().JS.Stream(ctx, DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*jetstream.RawStreamMsg{}
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		info, err := stream.Info(ctx)
		if err != nil {
			return err
		}
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := stream.GetMsg(ctx, seq)
			if err != nil {
				return err
			}
			got[string(m.Data[:min(len(m.Data), 10)])] = m
		}
		if len(got) != 3 {
			return fmt.Errorf("%d dead letters, want 3", len(got))
		}
		return nil
	})
	for key, m := range got {
		if r := m.Header.Get(HeaderDeadReason); r != "refused by the probe" {
			t.Errorf("%s: reason %q, want the Term's", key, r)
		}
		if seq := m.Header.Get(HeaderDeadSeq); seq == "999999" {
			t.Errorf("%s: the forged sequence survived", key)
		}
	}
	if m := got["bad-big-xx"]; m == nil || string(m.Data) != big {
		t.Errorf("the large dead letter is not the message as it was")
	}
}

// TestDurableInboxWaitsForJetStream: in client mode with the server down at start, a durable inbox waits (state
// "waiting") instead of failing its actor, and consumes once the server and its stream are there.
func TestDurableInboxWaitsForJetStream(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a nats-server process; skipped with -short")
	}
	srv := &natsProcess{t: t, bin: natsServerBinary(t), port: freePort(t), args: []string{"-js", "-sd", t.TempDir()}}
	t.Cleanup(srv.stop)
	rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
nats {
  url            = "nats://127.0.0.1:%d"
  reconnect_wait = "100ms"
}
`, srv.port)))
	rec := newRecord()
	addProbe(t, rt, "p10", &probe{subjects: []string{"iot.processed.batch.t10"}, rec: rec, durable: actors.Durable{Name: "p10"}})
	if st := durableStats(t, rt, "sinks/p10"); st.State != "waiting" || st.Backend != "jetstream" {
		t.Errorf("before the server: %+v, want waiting for JetStream", st)
	}
	srv.start()
	<-rt.Bus().JetStreamReady()
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if st := durableStats(t, rt, "sinks/p10"); st.State != "consuming" {
			return fmt.Errorf("durable inbox %+v", st)
		}
		return nil
	})
	nc := client(t, rt.Bus().URL)
	waitAccepted(t, rec, publishN(t, nc, "iot.processed.batch.t10", "m", 1, 10))
}

// TestDurableInboxWithoutStream: a durable inbox on a subject no stream keeps fails its actor with the reason (a
// configuration error, not something to wait out), and the gateway runs on.
func TestDurableInboxWithoutStream(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `supervisor { max_restarts = 0 }`))
	err := rt.AddActor(GroupSinks, ChildSpec{Name: "p11", Kind: "sink/probe", Producer: func() actor.Actor {
		return &probe{subjects: []string{"test.nostream"}, rec: newRecord(), durable: actors.Durable{Name: "p11"}}
	}})
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		n, ok := rt.Tree().Get("sinks/p11")
		if !ok || n.State != StateFailed {
			return fmt.Errorf("sinks/p11: %+v (add: %v), want failed", n, err)
		}
		if want := `subject "test.nostream": no JetStream stream holds the subject`; !strings.Contains(n.LastError, want) {
			return fmt.Errorf("last error %q, want %q", n.LastError, want)
		}
		return nil
	})
	if r := ask(t, client(t, rt.Bus().URL), SubjectPing, ""); r.Error != "" {
		t.Errorf("ping after the failure: %+v", r)
	}
}

// TestSinksOfTwoGatewaysOnOneJetStream: two gateways on one server (B in client mode on A's) share IOT_DATA and a
// sink's consumer by its name, as the README's Durability says: two sinks named alike take each message once between
// them, in order each; sinks of other names each take every message.
func TestSinksOfTwoGatewaysOnOneJetStream(t *testing.T) {
	a := startRuntime(t, parseConfig(t, `gateway { id = "gw-a" }`))
	b := startRuntime(t, parseConfig(t, fmt.Sprintf("gateway { id = \"gw-b\" }\nnats { url = %q }", a.Bus().URL)))
	subjects := []string{"iot.processed.batch.shared"}
	sharedA, sharedB, ownA, ownB := newRecord(), newRecord(), newRecord(), newRecord()
	addProbe(t, a, "site", &probe{subjects: subjects, rec: sharedA, durable: actors.Durable{Name: "site"}})
	addProbe(t, b, "site", &probe{subjects: subjects, rec: sharedB, durable: actors.Durable{Name: "site"}})
	addProbe(t, a, "own-a", &probe{subjects: subjects, rec: ownA, durable: actors.Durable{Name: "own-a"}})
	addProbe(t, b, "own-b", &probe{subjects: subjects, rec: ownB, durable: actors.Durable{Name: "own-b"}})
	nc := client(t, a.Bus().URL)
	want := publishN(t, nc, "iot.processed.batch.shared", "m", 1, 200)
	waitAccepted(t, ownA, want)
	waitAccepted(t, ownB, want)
	checkFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if n := len(sharedA.snapshot()) + len(sharedB.snapshot()); n < len(want) {
			return fmt.Errorf("the two %q sinks took %d of %d", "site", n, len(want))
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // a second copy of any message would come now
	index := map[string]int{}
	for i, m := range want {
		index[m] = i
	}
	seen := map[string]bool{}
	for gw, rec := range map[string]*record{"gw-a": sharedA, "gw-b": sharedB} {
		last := -1
		for _, m := range rec.snapshot() {
			if seen[m] {
				t.Errorf("%s: %s taken twice", gw, m)
			}
			seen[m] = true
			if index[m] <= last {
				t.Errorf("%s: %s after a later message", gw, m)
			}
			last = index[m]
		}
	}
	if len(seen) != len(want) {
		t.Errorf("the two %q sinks took %d distinct messages, want %d", "site", len(seen), len(want))
	}
	t.Logf("the shared consumer gave gw-a %d and gw-b %d of %d", len(sharedA.snapshot()), len(sharedB.snapshot()), len(want))
}
