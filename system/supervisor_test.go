package system

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

const panicConfig = `
supervisor {
  strategy     = "one_for_one"
  max_restarts = 4
  within       = "1m"
  backoff {
    initial = "100ms"
    max     = "400ms"
    jitter  = 0
  }
}
device "bad" {
  driver     = "mock"
  interval   = "500ms"
  fail_after = 2
  point "x" { signal = "constant" }
}
device "good" {
  driver   = "mock"
  interval = "50ms"
  point "y" { signal = "ramp" }
}
sink "console" {
  type     = "console"
  subjects = ["iot.processed.batch.>"]
}
`

type arrival struct {
	at time.Time
	ev SupervisorEvent
}

// TestPanickingDeviceBacksOffThenFails makes a device panic on every first poll. It must restart after delays that
// double up to the cap, its sibling must keep publishing throughout, and after max_restarts it must be stopped,
// reported failed in the tree and on iot.errors.supervisor.bad, with the gateway still running.
func TestPanickingDeviceBacksOffThenFails(t *testing.T) {
	cfg := parseConfig(t, panicConfig)
	var out syncBuffer
	rt := startRuntime(t, cfg, WithStdout(&out))
	nc := client(t, rt.Bus().URL)

	var mu sync.Mutex
	var events []arrival
	var good []time.Time
	sub, err := nc.Subscribe("iot.errors.supervisor.bad", func(m *nats.Msg) {
		var ev SupervisorEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Errorf("event %q: %v", m.Data, err)
			return
		}
		mu.Lock()
		events = append(events, arrival{time.Now(), ev})
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	gsub, err := nc.Subscribe("iot.processed.batch.good", func(*nats.Msg) {
		mu.Lock()
		good = append(good, time.Now())
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer gsub.Unsubscribe()

	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if n := len(events); n == 0 || events[n-1].ev.Event != "failed" {
			return fmt.Errorf("%d supervisor events so far, no failed event", n)
		}
		return nil
	})
	mu.Lock()
	evs := append([]arrival(nil), events...)
	mu.Unlock()

	// The device fails on its second poll, half a second after it starts: the test has subscribed by then and
	// sees every event.
	wantBackoff := map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 4: 400 * time.Millisecond}
	var restarts []arrival
	for _, a := range evs {
		if a.ev.Event == "restarting" {
			restarts = append(restarts, a)
		}
	}
	if len(restarts) != 4 {
		t.Fatalf("saw %d restart events, want 4: %+v", len(restarts), evs)
	}
	for _, a := range restarts {
		want, ok := wantBackoff[a.ev.Restarts]
		if !ok {
			t.Errorf("restart event with restarts=%d, want 1..4", a.ev.Restarts)
			continue
		}
		if got := time.Duration(a.ev.BackoffMS) * time.Millisecond; got != want {
			t.Errorf("restart %d: backoff %s, want %s", a.ev.Restarts, got, want)
		}
	}
	// Measured: a restarted device polls at once and fails on its second poll, one interval later, so each gap
	// between failure events is the backoff plus 500ms, never less.
	for i := 1; i < len(evs); i++ {
		prev, cur := evs[i-1], evs[i]
		if prev.ev.Event != "restarting" {
			continue
		}
		// The gateway's own stamps, not the arrival times here: delivery to the test's subscriber may lag on a
		// loaded machine, and a late "restarting" would shorten the gap it measures.
		gap := time.Duration(cur.ev.Timestamp - prev.ev.Timestamp)
		backoff := time.Duration(prev.ev.BackoffMS) * time.Millisecond
		t.Logf("restart %d: backoff %s, measured gap to next failure %s (backoff + 500ms interval)", prev.ev.Restarts, backoff, gap.Round(time.Millisecond))
		if gap < backoff+500*time.Millisecond-10*time.Millisecond { // timer granularity only
			t.Errorf("restart %d: next failure after %s, before its backoff %s", prev.ev.Restarts, gap, backoff)
		}
	}
	last := evs[len(evs)-1].ev
	if last.Event != "failed" || last.Actor != "devices/bad" || last.Restarts != 4 || last.Failures != 5 {
		t.Errorf("final event %+v, want failed devices/bad after 4 restarts and 5 failures", last)
	}
	if !strings.Contains(last.Error, "fail_after") {
		t.Errorf("final event error %q, want the panic's message", last.Error)
	}

	// The sibling published all along: no gap much longer than its interval while "bad" was failing.
	mu.Lock()
	g := append([]time.Time(nil), good...)
	mu.Unlock()
	first, end := evs[0].at, evs[len(evs)-1].at
	var during int
	var maxGap time.Duration
	for i, at := range g {
		if at.After(first) && at.Before(end) {
			during++
		}
		if i > 0 && at.After(first) && at.Before(end.Add(100*time.Millisecond)) {
			maxGap = max(maxGap, at.Sub(g[i-1]))
		}
	}
	t.Logf("sibling: %d batches while the other device failed for %s, largest gap %s", during, end.Sub(first).Round(time.Millisecond), maxGap)
	if wantMin := int(end.Sub(first)/(50*time.Millisecond)) / 2; during < wantMin {
		t.Errorf("sibling published %d batches during %s, want at least %d", during, end.Sub(first), wantMin)
	}
	if maxGap > 500*time.Millisecond {
		t.Errorf("sibling went silent for %s while the other device restarted", maxGap)
	}

	// The tree says it too, and the gateway still answers.
	tr := tree(t, nc)
	bad, goodNode := find(tr, "devices/bad"), find(tr, "devices/good")
	if bad == nil || goodNode == nil {
		t.Fatalf("tree lacks the devices: %+v", tr)
	}
	if bad.State != StateFailed || bad.Restarts != 4 || !strings.Contains(bad.LastError, "fail_after") {
		t.Errorf("devices/bad: state %s, restarts %d, last error %q; want failed, 4, the panic", bad.State, bad.Restarts, bad.LastError)
	}
	if goodNode.State != StateRunning || goodNode.Restarts != 0 {
		t.Errorf("devices/good: state %s, restarts %d; want running, 0", goodNode.State, goodNode.Restarts)
	}
	if _, err := nc.Request(SubjectPing, nil, 2*time.Second); err != nil {
		t.Errorf("ping after the failure: %v", err)
	}
}

// TestWorkerPanicRestartsActor panics inside a goroutine the device actor owns. protoactor would let that kill the
// process; the runtime must turn it into a failure of the actor, which restarts.
func TestWorkerPanicRestartsActor(t *testing.T) {
	cfg := parseConfig(t, `
supervisor {
  max_restarts = 100
  backoff {
    initial = "10ms"
    max     = "20ms"
  }
}
device "w" {
  driver     = "mock"
  interval   = "10ms"
  fail_after = 3
  fail_mode  = "worker"
  point "x" { signal = "sine" }
}
`)
	rt := startRuntime(t, cfg)
	nc := client(t, rt.Bus().URL)
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		n := find(tree(t, nc), "devices/w")
		if n == nil || n.Restarts < 2 {
			return fmt.Errorf("devices/w: %+v, want 2 restarts", n)
		}
		if !strings.Contains(n.LastError, "worker") || !strings.Contains(n.LastError, "panicked") {
			return fmt.Errorf("devices/w last error %q, want the worker's panic", n.LastError)
		}
		return nil
	})
	// Between failures the device runs and publishes.
	sub, err := nc.SubscribeSync("iot.processed.batch.w")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Errorf("no data from the restarting device: %v", err)
	}
}

func TestAllForOneRestartsSiblings(t *testing.T) {
	cfg := parseConfig(t, `
supervisor {
  strategy     = "all_for_one"
  max_restarts = 1
  backoff {
    initial = "10ms"
    max     = "10ms"
  }
}
device "a" {
  driver     = "mock"
  interval   = "10ms"
  fail_after = 5
  point "x" { signal = "sine" }
}
device "b" {
  driver   = "mock"
  interval = "10ms"
  point "x" { signal = "sine" }
}
`)
	rt := startRuntime(t, cfg)
	nc := client(t, rt.Bus().URL)
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		tr := tree(t, nc)
		a, b := find(tr, "devices/a"), find(tr, "devices/b")
		if a.State != StateFailed {
			return fmt.Errorf("devices/a is %s, want failed", a.State)
		}
		if b.Restarts != 1 || b.State != StateRunning {
			return fmt.Errorf("devices/b: state %s restarts %d, want running after 1 restart with its sibling", b.State, b.Restarts)
		}
		return nil
	})
}

func TestBackoffDoublesToCap(t *testing.T) {
	s := &supervisor{}
	s.policy.Backoff.Initial = 100 * time.Millisecond
	s.policy.Backoff.Max = time.Second
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := s.backoff(i + 1); got != w*time.Millisecond {
			t.Errorf("backoff(%d) = %s, want %s", i+1, got, w*time.Millisecond)
		}
	}
	s.policy.Backoff.Jitter = 0.2
	for i := 0; i < 1000; i++ {
		if got := s.backoff(2); got < 160*time.Millisecond || got > 240*time.Millisecond {
			t.Fatalf("backoff(2) with jitter 0.2 = %s, want 160ms..240ms", got)
		}
	}
	if got := s.backoff(100); got < 800*time.Millisecond || got > time.Second {
		t.Errorf("backoff(100) = %s, want 800ms..1s: the cap, jittered below it", got)
	}
}
