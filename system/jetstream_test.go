package system

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestJetStreamStream: with JetStream on, the embedded server keeps processed data in the seed's IOT_DATA stream.
func TestJetStreamStream(t *testing.T) {
	cfg := parseConfig(t, `
nats {
  jetstream {
    enabled    = true
    max_memory = "64MB"
    max_file   = "256MB"
    max_age    = "1h"
  }
}
device "d1" {
  driver   = "mock"
  interval = "20ms"
  point "x" { signal = "sine" }
}
`)
	rt := startRuntime(t, cfg)
	if rt.Bus().JS == nil {
		t.Fatal("no JetStream context though JetStream is enabled")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := rt.Bus().JS.Stream(ctx, StreamName)
	if err != nil {
		t.Fatalf("stream %s: %v", StreamName, err)
	}
	if got := stream.CachedInfo().Config.MaxAge; got != time.Hour {
		t.Errorf("stream max age %s, want 1h from the config", got)
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		info, err := stream.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs < 5 {
			return fmt.Errorf("%d messages in %s, want processed data kept", info.State.Msgs, StreamName)
		}
		return nil
	})
}
