package system

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// TestPendingBudgetInTree: the subject mailboxes' pending limits are shares of the configured budget, shown per
// mailbox and in total on the root of iot.control.tree; a device adds no subscription; a subscription more
// shrinks every share.
func TestPendingBudgetInTree(t *testing.T) {
	const budgetMsgs, budgetBytes = 10000, 256 << 20
	rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
nats {
  pending_messages = %d
  pending_bytes    = "256MB"
}
device "d1" {
  driver   = "mock"
  interval = "50ms"
  point "x" { signal = "sine" }
}
sink "console" { type = "console" }
`, budgetMsgs)))
	nc := client(t, rt.Bus().URL)
	check := func() *PendingBudget {
		t.Helper()
		root := tree(t, nc)
		b := root.PendingBudget
		if b == nil {
			t.Fatal("the tree's root shows no pending budget")
		}
		if b.Messages != budgetMsgs || b.Bytes != budgetBytes {
			t.Errorf("budget %d messages %d bytes, want %d and %d from the config", b.Messages, b.Bytes, budgetMsgs, budgetBytes)
		}
		var subs, msgs int
		var bytes int64
		for _, n := range flatten(root, nil) {
			if n.Mailbox == nil {
				continue
			}
			if n.Mailbox.PendingLimit != len(n.Subjects)*b.ShareMessages || n.Mailbox.PendingLimitBytes != int64(len(n.Subjects))*b.ShareBytes {
				t.Errorf("%s: pending limit %d messages %d bytes for %d subjects, want %d per subject (%d bytes)", n.Path,
					n.Mailbox.PendingLimit, n.Mailbox.PendingLimitBytes, len(n.Subjects), b.ShareMessages, b.ShareBytes)
			}
			subs += len(n.Subjects)
			msgs += n.Mailbox.PendingLimit
			bytes += n.Mailbox.PendingLimitBytes
		}
		if subs != b.Subscriptions {
			t.Errorf("the mailboxes have %d subscriptions, the budget counts %d", subs, b.Subscriptions)
		}
		if msgs > budgetMsgs || bytes > budgetBytes {
			t.Errorf("the mailboxes' limits add up to %d messages %d bytes, over the budget of %d and %d", msgs, bytes, budgetMsgs, budgetBytes)
		}
		return b
	}
	before := check()
	if r := ask(t, nc, SubjectDevicesAdd, "device \"d2\" {\n  driver = \"mock\"\n  point \"x\" { signal = \"sine\" }\n}\n"); !r.OK {
		t.Fatalf("add d2: %+v", r)
	}
	if after := check(); after.Subscriptions != before.Subscriptions {
		t.Errorf("a device added: %d subscriptions, was %d; want as many (a device does not subscribe)", after.Subscriptions, before.Subscriptions)
	}
	// One more subscription in the budget: every share shrinks, and grows back when it leaves.
	extra, err := rt.Bus().Conn.SubscribeSync("test.extra")
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.budget.add(extra); err != nil {
		t.Fatal(err)
	}
	if got, want := rt.budget.snapshot().ShareMessages, budgetMsgs/(before.Subscriptions+1); got != want {
		t.Errorf("share with one more subscription: got %d messages, want %d", got, want)
	}
	if m, _, _ := extra.PendingLimits(); m != budgetMsgs/(before.Subscriptions+1) {
		t.Errorf("the new subscription's limit: got %d messages, want its share %d", m, budgetMsgs/(before.Subscriptions+1))
	}
	if err := extra.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	rt.budget.remove(extra)
	if got := check(); got.ShareMessages != before.ShareMessages {
		t.Errorf("share after the subscription left: got %d, want %d again", got.ShareMessages, before.ShareMessages)
	}
}

// budgetConn is a client of an embedded nats-server of its own, for the budget's subscriptions.
func budgetConn(tb testing.TB) *nats.Conn {
	tb.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		tb.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("embedded nats-server not ready")
	}
	tb.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// checkBudget: the limits of subs add up to no more than the budget (when its floors allow) and none is under
// its floor.
func checkBudget(t *testing.T, b *pendingBudget, subs map[*nats.Subscription]bool) {
	t.Helper()
	var msgs, bytes int64
	for s := range subs {
		m, n, err := s.PendingLimits()
		if err != nil {
			t.Fatal(err)
		}
		if m < minPendingMsgs || n < minPendingBytes {
			t.Fatalf("%s: limits %d messages %d bytes, under the floor %d and %d", s.Subject, m, n, minPendingMsgs, minPendingBytes)
		}
		msgs += int64(m)
		bytes += int64(n)
	}
	if k := int64(len(subs)); msgs > max(int64(b.msgs), k*minPendingMsgs) || bytes > max(b.bytes, k*minPendingBytes) {
		t.Fatalf("%d subscriptions: limits add up to %d messages %d bytes, over the budget %d and %d", k, msgs, bytes, b.msgs, b.bytes)
	}
}

// TestPendingBudgetManySubscriptions adds 3,000 subscriptions one by one and in groups, removes them in another
// order, and adds again: after each change the limits add up to no more than the budget, each is at least its
// floor, and reading the budget gives every subscription the equal share.
func TestPendingBudgetManySubscriptions(t *testing.T) {
	nc := budgetConn(t)
	b := newPendingBudget(1<<20, 16<<30, zerolog.Nop())
	live := map[*nats.Subscription]bool{}
	var all []*nats.Subscription
	subscribe := func(k int) []*nats.Subscription {
		subs := make([]*nats.Subscription, k)
		for i := range subs {
			s, err := nc.SubscribeSync(fmt.Sprintf("budget.%d", len(all)))
			if err != nil {
				t.Fatal(err)
			}
			subs[i], live[s] = s, true
			all = append(all, s)
		}
		if err := b.add(subs...); err != nil {
			t.Fatal(err)
		}
		return subs
	}
	for range 1000 {
		subscribe(1)
		checkBudget(t, b, live)
	}
	for range 200 {
		subscribe(10)
		checkBudget(t, b, live)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for i, s := range all {
		if i%3 == 0 {
			_ = s.Unsubscribe() // as a mailbox does before it leaves the budget
		}
		b.remove(s)
		delete(live, s)
		if i%7 == 0 {
			checkBudget(t, b, live)
		}
		if i == len(all)/2 {
			subscribe(500)
			checkBudget(t, b, live)
		}
	}
	subscribe(5)
	snap := b.snapshot()
	if snap.Subscriptions != len(live) {
		t.Fatalf("the budget counts %d subscriptions, want %d", snap.Subscriptions, len(live))
	}
	for s := range live {
		if m, n, _ := s.PendingLimits(); m != snap.ShareMessages || int64(n) != snap.ShareBytes {
			t.Errorf("%s: limits %d messages %d bytes after a read, want the equal share %d and %d", s.Subject, m, n, snap.ShareMessages, snap.ShareBytes)
		}
	}
	if snap.ShareMessages != b.msgs/len(live) {
		t.Errorf("share %d messages, want %d", snap.ShareMessages, b.msgs/len(live))
	}
	checkBudget(t, b, live)
}

// BenchmarkBudgetAddRemove: one subscription added to and removed from a budget 1,000 others share (a rule
// starting and stopping among 1,000), per op.
func BenchmarkBudgetAddRemove(b *testing.B) {
	nc := budgetConn(b)
	budget := newPendingBudget(1<<20, 16<<30, zerolog.Nop())
	subs := make([]*nats.Subscription, 1001)
	for i := range subs {
		s, err := nc.SubscribeSync(fmt.Sprintf("budget.%d", i))
		if err != nil {
			b.Fatal(err)
		}
		subs[i] = s
	}
	if err := budget.add(subs[:1000]...); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := budget.add(subs[1000]); err != nil {
			b.Fatal(err)
		}
		budget.remove(subs[1000])
	}
}

// BenchmarkBudgetStartStop1000: 1,000 subscriptions added one by one then removed one by one (1,000 rules
// starting and stopping); ns/op and allocs/op are per add or remove.
func BenchmarkBudgetStartStop1000(b *testing.B) {
	nc := budgetConn(b)
	budget := newPendingBudget(1<<20, 16<<30, zerolog.Nop())
	subs := make([]*nats.Subscription, 1000)
	for i := range subs {
		s, err := nc.SubscribeSync(fmt.Sprintf("budget.%d", i))
		if err != nil {
			b.Fatal(err)
		}
		subs[i] = s
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		s := subs[i%len(subs)]
		if (i/len(subs))%2 == 0 {
			if err := budget.add(s); err != nil {
				b.Fatal(err)
			}
		} else {
			budget.remove(s)
		}
	}
}
