package actors

import (
	"math/rand/v2"

	"github.com/nats-io/nats.go"
)

// NewTraceID returns the trace id of a new batch: 8 random bytes as 16 lower-case hex digits, like a W3C span
// id. It is made where a batch is born (a poll, a mock tick, a sidecar's DATA frame) and travels unchanged in the
// Iot-Trace-Id header of every message made from that batch, so one poll can be followed through the bus.
//
// math/rand/v2's generator is enough: a trace id must be unlikely to repeat, not unpredictable. It costs one
// allocation (the string) per batch, not per point.
func NewTraceID() string {
	const hex = "0123456789abcdef"
	var b [16]byte
	u := rand.Uint64()
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = hex[u&0xf]
		u >>= 4
	}
	return string(b[:])
}

// SetHeader sets header key to value, reusing the header's slice when it has one value already (nats.Header.Set
// allocates a new slice every time), for messages reused on the hot path.
func SetHeader(h nats.Header, key, value string) {
	if v := h[key]; len(v) == 1 {
		v[0] = value
		return
	}
	h[key] = []string{value}
}
