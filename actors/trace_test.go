package actors

import (
	"testing"

	"github.com/nats-io/nats.go"
)

func TestNewTraceID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewTraceID()
		if len(id) != 16 {
			t.Fatalf("trace id %q: got %d characters, want 16", id, len(id))
		}
		for _, c := range id {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				t.Fatalf("trace id %q: not lower-case hex", id)
			}
		}
		if seen[id] {
			t.Fatalf("trace id %q made twice in 1000", id)
		}
		seen[id] = true
	}
}

// BenchmarkTraceID measures what a batch pays for its trace id: one allocation, the string.
func BenchmarkTraceID(b *testing.B) {
	h := nats.Header{}
	b.ReportAllocs()
	for b.Loop() {
		SetHeader(h, HeaderTraceID, NewTraceID())
	}
}
