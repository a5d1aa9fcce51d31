package device

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestKeysStale(t *testing.T) {
	var k Keys
	t0 := time.Unix(100, 0)
	a, b := PointID{"d", "a"}, PointID{"d", "b"}
	k.Good(a, t0)
	k.Good(b, t0)
	if got := k.Stale(t0.Add(time.Second), 2*time.Second); len(got) != 0 {
		t.Fatalf("stale after 1s of 2s: %v", got)
	}
	k.Good(b, t0.Add(2*time.Second))
	if got := k.Stale(t0.Add(3*time.Second), 2*time.Second); len(got) != 1 || got[0] != a {
		t.Fatalf("got %v, want [a] stale", got)
	}
	if got := k.Stale(t0.Add(3500*time.Millisecond), 2*time.Second); len(got) != 0 {
		t.Fatalf("a reported stale twice: %v", got)
	}
	if !k.IsStale(a, t0.Add(3500*time.Millisecond), 2*time.Second) || k.IsStale(b, t0.Add(3*time.Second), 2*time.Second) {
		t.Fatal("IsStale disagrees")
	}
	k.Good(a, t0.Add(5*time.Second))
	if k.IsStale(a, t0.Add(5*time.Second), 2*time.Second) {
		t.Fatal("a good value does not make a fresh again")
	}
}

// TestKeysBounded: past MaxTrackedKeys new keys are counted, not tracked.
func TestKeysBounded(t *testing.T) {
	var k Keys
	now := time.Unix(0, 0)
	for i := 0; i < MaxTrackedKeys+5; i++ {
		k.Good(PointID{"d", fmt.Sprint(i)}, now)
	}
	if len(k.Tracked()) != MaxTrackedKeys || k.Untracked() != 5 {
		t.Fatalf("tracked %d, untracked %d; want %d and 5", len(k.Tracked()), k.Untracked(), MaxTrackedKeys)
	}
}

type capture struct{ subject, data string }

func (c *capture) Publish(subject string, data []byte) error {
	c.subject, c.data = subject, string(data)
	return nil
}

// TestPublishEventBounded: a topic or URL from outside is cut in the event.
func TestPublishEventBounded(t *testing.T) {
	var c capture
	PublishEvent(&c, zerolog.Nop(), "iot.errors.mqtt.d", Event{Device: "d", Kind: "topic", Topic: strings.Repeat("t", 10000), Error: "x"})
	if c.subject != "iot.errors.mqtt.d" || len(c.data) > 600 || !strings.Contains(c.data, `"kind":"topic"`) || !strings.Contains(c.data, `"timestamp":`) {
		t.Fatalf("event %s %.200s (%d bytes)", c.subject, c.data, len(c.data))
	}
}
