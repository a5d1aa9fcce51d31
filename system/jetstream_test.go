package system

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
	if got := stream.CachedInfo().Config.PersistMode; got != jetstream.DefaultPersistMode {
		t.Errorf("stream persist mode %s, want default (each message written before its ack)", got)
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

// TestJetStreamPersistAsync: persist_mode = "async" gives IOT_DATA nats-server's async persist mode, and what was
// acknowledged before a clean stop is in the stream after a start on the same store (the server flushes its
// write cache at shutdown; only a crash loses the last milliseconds).
func TestJetStreamPersistAsync(t *testing.T) {
	src := `
nats {
  jetstream {
    persist_mode = "async"
    max_file     = "256MB"
  }
}
`
	dir := t.TempDir()
	start := func() *Runtime {
		cfg := parseConfig(t, src)
		cfg.NATS.Port, cfg.Gateway.HTTPAddress, cfg.Gateway.DataDir = -1, "", dir
		rt := New(cfg, WithLogger(testLogger(t)), WithStdout(io.Discard))
		if err := rt.Start(context.Background()); err != nil {
			t.Fatalf("start: %v", err)
		}
		return rt
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt := start()
	stream, err := rt.Bus().JS.Stream(ctx, StreamName)
	if err != nil {
		_ = rt.Stop()
		t.Fatalf("stream %s: %v", StreamName, err)
	}
	if got := stream.CachedInfo().Config.PersistMode; got != jetstream.AsyncPersistMode {
		t.Errorf("stream persist mode %s, want async from the config", got)
	}
	const n = 2000
	for i := range n {
		if _, err := rt.Bus().JS.PublishAsync("iot.processed.batch.d1", []byte(fmt.Sprintf(`{"points":[{"device_id":"d1","key":"x","value":%d}]}`, i))); err != nil {
			_ = rt.Stop()
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	select {
	case <-rt.Bus().JS.PublishAsyncComplete():
	case <-ctx.Done():
		_ = rt.Stop()
		t.Fatalf("%d publishes not acknowledged", rt.Bus().JS.PublishAsyncPending())
	}
	if err := rt.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	rt = start()
	stream, err = rt.Bus().JS.Stream(ctx, StreamName)
	if err != nil {
		_ = rt.Stop()
		t.Fatalf("stream %s after the restart: %v", StreamName, err)
	}
	if got := stream.CachedInfo().State.Msgs; got != n {
		t.Errorf("%d messages in %s after a clean stop and start, want the %d acknowledged", got, StreamName, n)
	}
	if err := rt.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	// The mode is the stream's for good: a start with the other one fails and says why, and keeps the data.
	cfg := parseConfig(t, strings.Replace(src, `"async"`, `"default"`, 1))
	cfg.NATS.Port, cfg.Gateway.HTTPAddress, cfg.Gateway.DataDir = -1, "", dir
	other := New(cfg, WithLogger(testLogger(t)), WithStdout(io.Discard))
	if err := other.Start(context.Background()); err == nil {
		_ = other.Stop()
		t.Fatal("started with persist_mode default on a stream created async, want the stream's setup refused")
	} else if !strings.Contains(err.Error(), "persist mode") {
		t.Errorf("start: %v, want an error about the persist mode", err)
	}
}
