package backoff

import (
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name   string
		policy Policy
		n      int
		lo, hi time.Duration // inclusive
	}{
		{"first", Policy{Initial: 100 * ms, Max: 5 * time.Second}, 1, 100 * ms, 100 * ms},
		{"doubles", Policy{Initial: 100 * ms, Max: 5 * time.Second}, 4, 800 * ms, 800 * ms},
		{"capped", Policy{Initial: 100 * ms, Max: 5 * time.Second}, 7, 5 * time.Second, 5 * time.Second},
		{"far past the cap", Policy{Initial: 100 * ms, Max: 5 * time.Second}, 5000, 5 * time.Second, 5 * time.Second},
		{"n below 1 is the first", Policy{Initial: 100 * ms, Max: 5 * time.Second}, 0, 100 * ms, 100 * ms},
		{"jittered below the cap", Policy{Initial: 100 * ms, Max: 10 * time.Second, Jitter: 0.2}, 2, 160 * ms, 240 * ms},
		{"jittered at the cap", Policy{Initial: 100 * ms, Max: 10 * time.Second, Jitter: 0.2}, 30, 8 * time.Second, 10 * time.Second},
		{"full jitter far past the cap", Policy{Initial: ms, Max: time.Second, Jitter: 1}, 5000, 0, time.Second},
		{"initial above max", Policy{Initial: time.Minute, Max: time.Second}, 1, time.Second, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i < 200; i++ {
				if got := tc.policy.Delay(tc.n); got < tc.lo || got > tc.hi {
					t.Fatalf("Delay(%d) = %s, want %s..%s", tc.n, got, tc.lo, tc.hi)
				}
			}
		})
	}
}

// TestJitterAtCap: at the cap the delays still spread over [max×(1−jitter), max], so loops that reach the cap
// together do not retry in lockstep.
func TestJitterAtCap(t *testing.T) {
	p := Policy{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Jitter: 0.2}
	seen := map[time.Duration]bool{}
	for i := 0; i < 1000; i++ {
		seen[p.Delay(30)] = true
	}
	if len(seen) < 100 {
		t.Errorf("%d distinct delays in 1000 at the cap, want them spread", len(seen))
	}
}

func TestNextAndReset(t *testing.T) {
	b := Backoff{Policy: Policy{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}}
	want := []time.Duration{5, 10, 20, 20}
	for i, w := range want {
		if got := b.Next(); got != w*time.Millisecond {
			t.Errorf("Next() #%d = %s, want %s", i+1, got, w*time.Millisecond)
		}
	}
	if got := b.Failures(); got != len(want) {
		t.Errorf("Failures() = %d, want %d", got, len(want))
	}
	b.Reset()
	if got := b.Next(); got != 5*time.Millisecond {
		t.Errorf("Next() after Reset = %s, want 5ms", got)
	}
}
