package bench

import (
	"context"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
	"github.com/iotgw/iotgw/system"
)

// nullSidecar is a Go sidecar (isp.Server) that accepts any CONFIG; the benchmark drives its DATA frames.
type nullSidecar struct{ configured chan struct{} }

func (n *nullSidecar) Configure(context.Context, isp.ConfigPayload) error {
	select {
	case n.configured <- struct{}{}:
	default:
	}
	return nil
}

func (n *nullSidecar) Status(context.Context) any { return map[string]any{"state": "benchmark"} }

// sidecarRun sends DATA frames of batchSize points from a sidecar over ISP (TCP loopback) through the gateway's
// sidecar connection actor, the bus and the processor, to a counting sink actor on iot.processed.batch.{sidecar}.
func sidecarRun(tb testing.TB, name string, n, batchSize int) result {
	h := &nullSidecar{configured: make(chan struct{}, 1)}
	srv := isp.NewServer(isp.ServerConfig{Address: "127.0.0.1:0", Name: "bench"}, h)
	if err := srv.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = srv.Stop() }()

	cfg := config.Default()
	// The path without durability, as measured before JetStream was on by default (issue 11): the JetStream
	// comparison is a benchmark of its own.
	cfg.NATS.JetStream.Enabled = false
	cfg.NATS.Port = -1
	cfg.Gateway.HTTPAddress = "" // measured: the gateway's data path, not its HTTP server
	cfg.Gateway.DataDir = tb.TempDir()
	cfg.Gateway.PointSubjects = false
	cfg.Sidecars = []config.Sidecar{{
		Name: "sc", Address: srv.Addr().String(), DialTimeout: 5 * time.Second, RequestTimeout: 10 * time.Second,
		HeartbeatInterval: 15 * time.Second, MaxMissedHeartbeats: 3, MaxLineSize: 1 << 20,
		StaleAfter: 3 * time.Second, // the default for this interval: the liveness check is on the measured path
		Config:     config.SidecarConfig{Mode: "tcp", Interval: time.Second},
	}}
	rt := system.New(cfg)
	if err := rt.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = rt.Stop() }()
	select {
	case <-h.configured:
	case <-time.After(10 * time.Second):
		tb.Fatal("the gateway did not configure the sidecar")
	}

	points := max(n, batchSize) / batchSize * batchSize
	f := newFlow(points)
	c := &counter{subject: "iot.processed.batch.sc", batches: true, f: f, batch: batchSize}
	if err := rt.AddActor(system.GroupSinks, system.ChildSpec{Name: "count", Kind: "sink/count", Producer: func() actor.Actor { return c }}); err != nil {
		tb.Fatal(err)
	}
	waitRunning(tb, rt, "sinks/count")
	pts := makeBatch("", batchSize)
	return measure(tb, name, points, f, func() {
		for sent := 0; sent < points; sent += batchSize {
			f.tokens <- struct{}{}
			ts := time.Now().UnixNano()
			for i := range pts {
				pts[i].Timestamp = ts
			}
			if err := srv.BroadcastData(pts); err != nil {
				tb.Error(err)
				return
			}
		}
	})
}

func BenchmarkSidecar(b *testing.B) {
	sidecarRun(b, "sidecar DATA frames of 100 → iot.processed", b.N, 100).report(b)
}
