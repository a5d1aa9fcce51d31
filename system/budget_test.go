package system

import (
	"fmt"
	"testing"
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
