package system

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/iotgw/iotgw/isp"
)

// TestExternalNATSDownAtStart: a gateway whose external server (with JetStream) is not there at start starts
// anyway, is not ready, keeps polling and buffers what it publishes; when the server comes it connects, becomes
// ready, delivers what it buffered (found in the stream, which the server kept from an earlier run) and starts
// the device stored in the JetStream bucket by that earlier run — none is lost to a stand-in store.
func TestExternalNATSDownAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a nats-server process; skipped with -short")
	}
	srv := &natsProcess{t: t, bin: natsServerBinary(t), port: freePort(t), args: []string{"-js", "-sd", t.TempDir()}}
	t.Cleanup(srv.stop)
	src := fmt.Sprintf(`
nats {
  url            = "nats://127.0.0.1:%d"
  reconnect_wait = "100ms"
  jetstream { enabled = true }
}
device "d1" {
  driver   = "mock"
  interval = "50ms"
  point "x" { signal = "ramp" }
}
`, srv.port)

	// An earlier run, with the server there, stores a device added at run time in the bucket.
	srv.start()
	first := New(parseConfig(t, src), WithLogger(testLogger(t)))
	first.cfg.Gateway.DataDir, first.cfg.Gateway.HTTPAddress = t.TempDir(), ""
	if err := first.Start(context.Background()); err != nil {
		t.Fatalf("first start: %v", err)
	}
	if r := ask(t, client(t, first.Bus().URL), SubjectDevicesAdd, `device "stored-1" {
  driver   = "mock"
  interval = "50ms"
  point "p" { signal = "sine" }
}`); !r.OK {
		t.Fatalf("add: %+v", r)
	}
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	srv.stop()

	// The server is down: the gateway starts all the same.
	began := time.Now()
	rt := startRuntime(t, parseConfig(t, src))
	t.Logf("started in %s with the server down", time.Since(began).Round(time.Millisecond))
	if rd := rt.Readiness(); rd.Ready || len(rd.Failed) != 1 || rd.Failed[0] != CheckNATS {
		t.Errorf("readiness with the server down: %+v, want not ready on the nats check alone", rd)
	}
	if _, ok := rt.Tree().Get(GroupDevices + "/stored-1"); ok {
		t.Error("the stored device runs before the bucket could be read")
	}
	// It polls and keeps what it publishes (the data messages have headers, which nats.go alone would refuse): in
	// client mode the confirmed publisher's queue holds it until the first connection (replay.go).
	queued := rt.Bus().confirmed.Load()
	if queued == nil {
		t.Fatal("no queue for what is published before the first connection")
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := queued.depth(); n < 3 {
			return fmt.Errorf("%d messages kept, want polls buffered while the server is down", n)
		}
		return nil
	})

	up := time.Now()
	srv.start()
	checkFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		if rd := rt.Readiness(); !rd.Ready {
			return fmt.Errorf("not ready after the server came: %+v", rd.Failed)
		}
		if n, ok := rt.Tree().Get(GroupDevices + "/stored-1"); !ok || n.State != StateRunning {
			return fmt.Errorf("the stored device is not running: %+v", n)
		}
		return nil
	})
	t.Logf("ready and the stored device running %s after the server came", time.Since(up).Round(time.Millisecond))

	// What was polled while the server was down reached the stream once it came.
	<-rt.Bus().JetStreamReady()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := rt.Bus().JS.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		info, err := stream.Info(ctx)
		if err != nil {
			return err
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
			m, err := stream.GetMsg(ctx, seq)
			if err != nil || m.Subject != "iot.processed.batch.d1" {
				continue
			}
			pts, err := isp.DecodeBatch(m.Data)
			if err != nil || len(pts) == 0 {
				continue
			}
			if ts := time.Unix(0, pts[0].Timestamp); ts.After(began) && ts.Before(up) {
				return nil
			}
		}
		return fmt.Errorf("no batch of d1 polled while the server was down in %s (%d messages)", StreamName, info.State.Msgs)
	})
}
