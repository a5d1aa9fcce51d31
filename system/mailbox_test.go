package system

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/nats-io/nats.go"
)

// slowSink takes a while over every message and panics on the message "crash".
type slowSink struct {
	subject string
	got     *atomic.Int64
	last    *atomic.Int64
}

func (s *slowSink) Inboxes() []actors.Inbox { return []actors.Inbox{{Subject: s.subject}} }

func (s *slowSink) Receive(ctx actor.Context) {
	m, ok := ctx.Message().(*nats.Msg)
	if !ok {
		return
	}
	if string(m.Data) == "crash" {
		panic("crash requested")
	}
	time.Sleep(200 * time.Microsecond)
	n, _ := strconv.Atoi(string(m.Data))
	s.last.Store(int64(n))
	s.got.Add(1)
}

// TestMailboxBackpressureLosesNothing: a burst far larger than a slow actor's mailbox is delivered in full, in
// order; the mailbox stays within its capacity, the waits are counted, and nothing is dropped.
func TestMailboxBackpressureLosesNothing(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, ""))
	var got, last atomic.Int64
	sink := &slowSink{subject: "test.burst", got: &got, last: &last}
	if err := rt.AddActor(GroupSinks, ChildSpec{Name: "slow", Kind: "sink/test", Mailbox: 16, Producer: func() actor.Actor { return sink }}); err != nil {
		t.Fatal(err)
	}
	nc := client(t, rt.Bus().URL)
	const n = 2000
	for i := 1; i <= n; i++ {
		if err := nc.Publish("test.burst", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	var maxDepth int
	checkFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if node, ok := rt.Tree().Get("sinks/slow"); ok {
			maxDepth = max(maxDepth, node.Mailbox.Depth)
		}
		if g := got.Load(); g != n {
			return fmt.Errorf("%d of %d delivered", g, n)
		}
		return nil
	})
	if last.Load() != n {
		t.Errorf("last message processed %d, want %d (in order)", last.Load(), n)
	}
	node, _ := rt.Tree().Get("sinks/slow")
	st := node.Mailbox
	t.Logf("mailbox: %+v, deepest seen %d", *st, maxDepth)
	if st.Capacity != 16 || maxDepth > 16 {
		t.Errorf("capacity %d, deepest %d: want 16 and never more", st.Capacity, maxDepth)
	}
	if st.Delivered != n || st.Dropped != 0 {
		t.Errorf("delivered %d dropped %d, want %d and 0", st.Delivered, st.Dropped, n)
	}
	if st.Blocked == 0 {
		t.Errorf("no delivery waited, though %d messages met a mailbox of 16", n)
	}
}

// TestSubscriptionSurvivesRestart: messages published while an actor restarts wait in its mailbox and reach the
// new incarnation; the subscription is not re-made (no gap).
func TestSubscriptionSurvivesRestart(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `
supervisor {
  backoff {
    initial = "300ms"
    max     = "300ms"
    jitter  = 0
  }
}`))
	var got, last atomic.Int64
	if err := rt.AddActor(GroupSinks, ChildSpec{Name: "s", Kind: "sink/test", Producer: func() actor.Actor {
		return &slowSink{subject: "test.restart", got: &got, last: &last}
	}}); err != nil {
		t.Fatal(err)
	}
	nc := client(t, rt.Bus().URL)
	if err := nc.Publish("test.restart", []byte("crash")); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n, _ := rt.Tree().Get("sinks/s"); n.State != StateRestarting {
			return fmt.Errorf("state %s", n.State)
		}
		return nil
	})
	// The actor is waiting out its backoff now.
	for i := 1; i <= 50; i++ {
		if err := nc.Publish("test.restart", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if g := got.Load(); g != 50 {
			return fmt.Errorf("%d of 50 delivered after the restart", g)
		}
		return nil
	})
	if n, _ := rt.Tree().Get("sinks/s"); n.Restarts != 1 || n.State != StateRunning {
		t.Errorf("sinks/s: %d restarts, state %s; want 1, running", n.Restarts, n.State)
	}
}

func TestAddAndRemoveActor(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, ""))
	var got, last atomic.Int64
	spec := ChildSpec{Name: "x", Kind: "sink/test", Producer: func() actor.Actor {
		return &slowSink{subject: "test.add", got: &got, last: &last}
	}}
	if err := rt.AddActor(GroupSinks, spec); err != nil {
		t.Fatal(err)
	}
	if err := rt.AddActor(GroupSinks, spec); err == nil {
		t.Error("adding the same name twice succeeded")
	}
	if err := rt.RemoveActor(GroupSinks, "x"); err != nil {
		t.Fatal(err)
	}
	if _, ok := rt.Tree().Get("sinks/x"); ok {
		t.Error("removed actor still in the tree")
	}
	if err := rt.RemoveActor(GroupSinks, "x"); err == nil {
		t.Error("removing a missing actor succeeded")
	}
	if err := rt.AddActor(GroupSinks, spec); err != nil {
		t.Errorf("adding it back: %v", err)
	}
}
