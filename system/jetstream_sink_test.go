package system

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/actors"
)

// TestJetStreamSink: the seed's JetStream sink, three ways. By default its subjects go into IOT_DATA (no second
// copy); a stream of its own captures a subject no stream keeps and sources from IOT_DATA, with its own limits,
// the subjects IOT_DATA keeps; a durable inbox then reads the sink's stream like IOT_DATA.
func TestJetStreamSink(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `
gateway { point_subjects = false }
device "d1" {
  driver   = "mock"
  interval = "50ms"
  point "x" { signal = "sine" }
}
sink "alerts" {
  type     = "jetstream"
  subjects = ["iot.alerts.>"]
}
sink "archive" {
  type      = "jetstream"
  stream    = "ARCHIVE"
  subjects  = ["iot.processed.batch.d1", "iot.aggregated.>"]
  max_age   = "1h"
  max_bytes = "16MB"
}
`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := rt.Bus().JS
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, s := range []string{"sinks/alerts", "sinks/archive"} {
			if n, ok := rt.Tree().Get(s); !ok || n.State != StateRunning {
				return fmt.Errorf("%s: %+v", s, n)
			}
		}
		data, err := js.Stream(ctx, StreamName)
		if err != nil {
			return err
		}
		if subs := data.CachedInfo().Config.Subjects; !slices.Contains(subs, "iot.alerts.>") {
			return fmt.Errorf("IOT_DATA subjects %v: want the alerts sink's added", subs)
		}
		if _, err := js.Stream(ctx, "ARCHIVE"); err != nil {
			return err
		}
		return nil
	})
	archive, err := js.Stream(ctx, "ARCHIVE")
	if err != nil {
		t.Fatal(err)
	}
	cfg := archive.CachedInfo().Config
	if cfg.MaxAge != time.Hour || cfg.MaxBytes != 16<<20 || !slices.Equal(cfg.Subjects, []string{"iot.aggregated.>"}) ||
		len(cfg.Sources) != 1 || cfg.Sources[0].Name != StreamName || cfg.Sources[0].FilterSubject != "iot.processed.batch.d1" {
		t.Errorf("ARCHIVE config: subjects %v, sources %+v, max age %s, max bytes %d", cfg.Subjects, cfg.Sources, cfg.MaxAge, cfg.MaxBytes)
	}

	nc := client(t, rt.Bus().URL)
	if err := nc.Publish("iot.alerts.high.d1", []byte(`{"alert":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("iot.aggregated.d1.x", []byte(`{"avg":1}`)); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if _, err := rt.Bus().JS.Stream(ctx, StreamName); err != nil {
			return err
		}
		data, _ := js.Stream(ctx, StreamName)
		if _, err := data.GetLastMsgForSubject(ctx, "iot.alerts.high.d1"); err != nil {
			return fmt.Errorf("alert in IOT_DATA: %w", err)
		}
		if _, err := archive.GetLastMsgForSubject(ctx, "iot.aggregated.d1.x"); err != nil {
			return fmt.Errorf("aggregate in ARCHIVE: %w", err)
		}
		if _, err := archive.GetLastMsgForSubject(ctx, "iot.processed.batch.d1"); err != nil {
			return fmt.Errorf("d1's batches sourced into ARCHIVE: %w", err)
		}
		return nil
	})

	// A durable inbox on the sink's own stream.
	rec := newRecord()
	addProbe(t, rt, "p7", &probe{subjects: []string{"iot.aggregated.>"}, rec: rec, durable: actors.Durable{Name: "p7"}})
	want := append([]string{`{"avg":1}`}, publishN(t, nc, "iot.aggregated.d1.x", "a", 1, 5)...)
	waitAccepted(t, rec, want)
	if st := durableStats(t, rt, "sinks/p7"); st.Stream != "ARCHIVE" {
		t.Errorf("probe reads %q, want ARCHIVE", st.Stream)
	}
}

// TestJetStreamSinkNeedsJetStream: on a gateway with JetStream off the sink fails with the reason, and the
// gateway runs on.
func TestJetStreamSinkNeedsJetStream(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `
nats {
  jetstream { enabled = false }
}
supervisor { max_restarts = 0 }
sink "alerts" {
  type     = "jetstream"
  subjects = ["iot.alerts.>"]
}
`))
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		n, ok := rt.Tree().Get("sinks/alerts")
		if !ok || n.State != StateFailed {
			return fmt.Errorf("sinks/alerts: %+v, want failed", n)
		}
		if want := "the jetstream sink needs JetStream"; !strings.Contains(n.LastError, want) {
			return fmt.Errorf("last error %q, want %q", n.LastError, want)
		}
		return nil
	})
}
