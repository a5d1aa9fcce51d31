package redis_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/iotgw/iotgw/system"
	goredis "github.com/redis/go-redis/v9"
)

// TestInProcess runs the gateway in this test's process (so -race sees the sink's actor, its worker and the
// batching core), writes a few hundred batches through JetStream into a real redis-server, stops Redis and starts
// it again under load, then stops the gateway: the hash holds every device's last poll, the stream every poll.
func TestInProcess(t *testing.T) {
	srv := testenv.Redis(t)
	src := fmt.Sprintf(`
gateway {
  data_dir       = %q
  http_address   = ""
  point_subjects = false
}
nats {
  port = -1
  jetstream { enabled = true }
}
sink "r" {
  type           = "redis"
  address        = %q
  stream_prefix  = "s:"
  flush_interval = "20ms"
  retry          = "50ms"
  max_retry      = "200ms"
  timeout        = "1s"
}
`, t.TempDir(), srv.Addr)
	cfg, diags := config.Parse([]byte(src), "test.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	rt := system.New(cfg)
	if err := rt.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rt.Stop() }()
	select {
	case <-rt.Bus().JetStreamReady():
	case <-time.After(time.Minute):
		t.Fatal("JetStream not ready")
	}
	testenv.WaitFor(t, "the sink running", time.Minute, func() bool {
		n, ok := rt.Tree().Get("sinks/r")
		return ok && n.State == system.StateRunning
	})
	nc := rt.Bus().Conn
	const batches = 300
	var before int
	for i := range batches {
		if i == batches/3 {
			time.Sleep(200 * time.Millisecond)
			before = runtime.NumGoroutine()
			srv.Stop()
		}
		if i == batches/2 {
			time.Sleep(3 * time.Second) // some 20 failed writes and reconnects at the capped backoff
		}
		if i == 2*batches/3 {
			srv.Start()
		}
		body := fmt.Sprintf(`{"points":[{"device_id":"p%d","key":"n","value":%d,"type":"int64","timestamp":%d},{"device_id":"p%d","key":"t","value":1.5}]}`,
			i%3, i, time.Now().UnixNano(), i%3)
		if err := nc.Publish(fmt.Sprintf("iot.processed.batch.p%d", i%3), []byte(body)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr, DisableIdentity: true})
	defer rc.Close()
	ctx := context.Background()
	testenv.WaitFor(t, "every batch in the streams", 2*time.Minute, func() bool {
		total := int64(0)
		for d := range 3 {
			n, err := rc.XLen(ctx, fmt.Sprintf("s:p%d", d)).Result()
			if err != nil {
				return false
			}
			total += n
		}
		return total >= 2*batches
	})
	// No goroutine growth from the failed reconnects (go-redis dials again at the next write; its pool's dial
	// retrier ends once a dial succeeds).
	testenv.WaitFor(t, "the goroutines back to their number before the outage", time.Minute, func() bool {
		return runtime.NumGoroutine() <= before+3
	})
	t.Logf("goroutines: %d before the outage, %d after", before, runtime.NumGoroutine())
	if err := rt.Stop(); err != nil {
		t.Fatal(err)
	}
	for d := range 3 {
		entries, err := rc.XRange(ctx, fmt.Sprintf("s:p%d", d), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		next := int64(d) // p{d} has the polls d, d+3, d+6, …
		for _, e := range entries {
			if e.Values["key"] != "n" {
				continue
			}
			v, err := strconv.ParseInt(fmt.Sprint(e.Values["value"]), 10, 64)
			switch {
			case err != nil:
				t.Fatalf("p%d: entry %s: %v", d, e.ID, err)
			case v == next:
				next += 3
			case v > next:
				t.Fatalf("p%d: n=%d, want %d: polls missing", d, v, next)
			} // v < next: a rewrite (at-least-once)
		}
		if next-3 < batches-3 {
			t.Fatalf("p%d: the stream ends at n=%d, want every poll to %d", d, next-3, batches-3+d)
		}
		h, err := rc.HGet(ctx, fmt.Sprintf("iot:latest:p%d", d), "n").Result()
		if err != nil || h != strconv.FormatInt(next-3, 10) {
			t.Fatalf("p%d: hash n = %q (%v), want %d", d, h, err, next-3)
		}
	}
}
