// Package backoff is the gateway's one retry delay: capped exponential growth, with jitter that still varies the
// delay at the cap. The supervisor's restarts, reconnects to a Modbus endpoint, the accept loops of the ISP server
// and of the Modbus simulator, and the waits for a sidecar's port or a server's JetStream all take their delays
// from it, so "capped backoff" means one thing wherever the README says it.
//
// Why a package of its own under internal/: every layer needs it (isp, sidecar, actors, system), and it belongs to
// none of them: not to the ISP protocol, not to the config schema. A leaf below all of DESIGN.md's table breaks no
// arrow. It must never import another package of this project, and it keeps no state but a Backoff's count.
package backoff

import (
	"math"
	"math/rand/v2"
	"time"
)

// Policy is how the delays grow: the delay before attempt n (1-based) is Initial × 2^(n-1), varied by ±Jitter (a
// fraction from 0 to 1), at most Max. A zero Jitter gives the same delays every time.
type Policy struct {
	Initial time.Duration
	Max     time.Duration
	Jitter  float64
}

// Delay is the delay before attempt n; n below 1 counts as 1. Where the varied delay would pass the cap it is
// drawn again below it, within [Max×(1−Jitter), Max]: peers that fail together (one server away for all of
// them) must not retry in lockstep once they all reach the cap.
func (p Policy) Delay(n int) time.Duration {
	n = max(n, 1)
	d := float64(p.Initial) * math.Pow(2, float64(n-1))
	if p.Jitter > 0 {
		d *= 1 + p.Jitter*(2*rand.Float64()-1)
	}
	if d > float64(p.Max) || math.IsNaN(d) { // NaN: an infinite delay times a jitter factor of 0
		d = float64(p.Max) * (1 - p.Jitter*rand.Float64())
	}
	return time.Duration(d)
}

// Backoff counts the failures in a row of one retrying loop and hands out the delay for each. The zero value
// with a Policy set is ready; it is not safe for concurrent use (it belongs to the loop that retries).
type Backoff struct {
	Policy
	n int
}

// Next counts one more failure and returns the delay to wait before the next attempt: Initial after the first
// failure, then doubling up to Max.
func (b *Backoff) Next() time.Duration {
	if b.n < math.MaxInt32 {
		b.n++
	}
	return b.Delay(b.n)
}

// Reset forgets the failures after a success: the next failure waits Initial again.
func (b *Backoff) Reset() { b.n = 0 }

// Failures is the number of failures since the last Reset.
func (b *Backoff) Failures() int { return b.n }
