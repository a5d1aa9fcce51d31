package system

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestBareConsolePrintsEachPointOnce: a console sink without subjects, with per-point subjects on (the default),
// prints every point of a poll once, not once from its batch and again from its own subject.
func TestBareConsolePrintsEachPointOnce(t *testing.T) {
	var out syncBuffer
	startRuntime(t, parseConfig(t, `
device "d1" {
  driver   = "mock"
  interval = "20ms"
  point "a" { signal = "sine" }
  point "b" { signal = "ramp" }
}
sink "console" {
  type   = "console"
  format = "json"
}
`), WithStdout(&out))
	var seen map[string]int
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		seen = map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var p struct {
				Device    string `json:"device_id"`
				Key       string `json:"key"`
				Timestamp int64  `json:"timestamp"`
			}
			if err := json.Unmarshal([]byte(line), &p); err != nil {
				continue // the last line may be half written
			}
			seen[fmt.Sprintf("%s/%s@%d", p.Device, p.Key, p.Timestamp)]++
		}
		if len(seen) < 10 {
			return fmt.Errorf("%d points printed, want 10", len(seen))
		}
		return nil
	})
	for point, n := range seen {
		if n != 1 {
			t.Errorf("point %s printed %d times, want 1", point, n)
		}
	}
}

// TestStreamKeepsBatches: with per-point subjects on, the IOT_DATA stream keeps one message per batch, none per
// point.
func TestStreamKeepsBatches(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `
gateway { point_subjects = true }
nats {
  jetstream { enabled = true }
}
device "d1" {
  driver   = "mock"
  interval = "20ms"
  point "a" { signal = "sine" }
  point "b" { signal = "ramp" }
  point "c" { signal = "ramp" }
}
`))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	stream, err := rt.Bus().JS.Stream(ctx, StreamName)
	if err != nil {
		t.Fatalf("stream %s: %v", StreamName, err)
	}
	var subjects map[string]uint64
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(">"))
		if err != nil {
			return err
		}
		subjects = info.State.Subjects
		if subjects["iot.processed.batch.d1"] < 5 {
			return fmt.Errorf("stream subjects %v, want 5 batches of d1", subjects)
		}
		return nil
	})
	for subject, n := range subjects {
		if subject != "iot.processed.batch.d1" {
			t.Errorf("stream keeps %d messages on %s, want only the batches", n, subject)
		}
	}
}
