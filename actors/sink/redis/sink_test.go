package redis_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/nats-io/nats.go"
	goredis "github.com/redis/go-redis/v9"
)

// outage is how long the Redis server stays down while the devices keep polling: the figure.
const outage = 30 * time.Second

const devices = 2

// gatewayConfig: devices d0, d1 polling 10 points every 50 ms (the first, "n", counting by one from 0), and a
// redis sink writing the latest hash, a stream and PUBLISH.
func gatewayConfig(natsPort int, redisAddr string, sinkExtra ...string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, `
gateway {
  http_address   = ""
  point_subjects = false
}
nats {
  port = %d
  jetstream { enabled = true }
}
sink "latest" {
  type           = "redis"
  address        = %q
  hash_prefix    = "t:latest:"
  stream_prefix  = "t:stream:"
  stream_max_len = 1000000
  channel_prefix = "t:points:"
  flush_interval = "50ms"
  retry          = "200ms"
  max_retry      = "1s"
  timeout        = "2s"
%s
}
`, natsPort, redisAddr, strings.Join(sinkExtra, "\n"))
	for d := range devices {
		fmt.Fprintf(&sb, "device \"d%d\" {\n  driver   = \"mock\"\n  interval = \"50ms\"\n", d)
		sb.WriteString("  point \"n\" {\n    signal = \"counter\"\n    type   = \"int64\"\n  }\n")
		for k := 1; k < 10; k++ {
			fmt.Fprintf(&sb, "  point \"v%d\" { signal = \"sine\" }\n", k)
		}
		sb.WriteString("}\n")
	}
	return strings.Replace(sb.String(), "gateway {", fmt.Sprintf("gateway {\n  data_dir = %q", tempDir), 1)
}

var tempDir string

func setup(t *testing.T, sinkExtra ...string) (*testenv.Server, *goredis.Client, *nats.Conn) {
	t.Helper()
	srv := testenv.Redis(t)
	tempDir = t.TempDir()
	gw, _ := testenv.Gateway(t, func(port int) string { return gatewayConfig(port, srv.Addr, sinkExtra...) })
	var nc *nats.Conn
	testenv.WaitFor(t, "the gateway's NATS server", time.Minute, func() bool {
		var err error
		nc, err = nats.Connect("nats://"+gw.Addr, nats.Timeout(time.Second))
		return err == nil
	})
	t.Cleanup(nc.Close)
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr, DisableIdentity: true})
	t.Cleanup(func() { rc.Close() })
	return srv, rc, nc
}

// counters reads device dev's stream back and returns the counter "n" of every entry, in stream order.
func counters(t *testing.T, rc *goredis.Client, dev string) []int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	entries, err := rc.XRange(ctx, "t:stream:"+dev, "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE %s: %v", dev, err)
	}
	var ns []int64
	for _, e := range entries {
		if e.Values["key"] != "n" {
			continue
		}
		n, err := strconv.ParseInt(fmt.Sprint(e.Values["value"]), 10, 64)
		if err != nil {
			t.Fatalf("entry %s: value %v: %v", e.ID, e.Values["value"], err)
		}
		ns = append(ns, n)
	}
	return ns
}

// check counts the gaps and the order of a counter read back: every value from 0 to the last once at least, the
// first time each appears in increasing order; it returns the duplicates (at-least-once: a replay).
func check(t *testing.T, dev string, ns []int64) (last int64, dups int) {
	t.Helper()
	if len(ns) == 0 {
		t.Fatalf("%s: no entries", dev)
	}
	next := int64(0)
	for i, n := range ns {
		switch {
		case n == next:
			next++
		case n < next:
			dups++
		default:
			t.Fatalf("%s: entry %d is n=%d, want %d: %d points missing", dev, i, n, next, n-next)
		}
	}
	return next - 1, dups
}

func TestHashStreamAndPublish(t *testing.T) {
	_, rc, _ := setup(t)
	ctx := context.Background()
	sub := rc.Subscribe(ctx, "t:points:d0")
	t.Cleanup(func() { sub.Close() })
	if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	ch := sub.Channel()
	select {
	case m := <-ch:
		if !strings.Contains(m.Payload, `"device_id":"d0"`) {
			t.Fatalf("published %s, want a point of d0", m.Payload)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("nothing published on t:points:d0")
	}
	testenv.WaitFor(t, "100 polls of each device in its stream", 2*time.Minute, func() bool {
		for d := range devices {
			if len(counters(t, rc, fmt.Sprintf("d%d", d))) < 100 {
				return false
			}
		}
		return true
	})
	for d := range devices {
		dev := fmt.Sprintf("d%d", d)
		last, dups := check(t, dev, counters(t, rc, dev))
		h, err := rc.HGetAll(ctx, "t:latest:"+dev).Result()
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseInt(h["n"], 10, 64)
		if err != nil || n < last {
			t.Fatalf("%s: hash n = %q, want at least %d (the stream's last)", dev, h["n"], last)
		}
		for k := 0; k < 10; k++ {
			key := "n"
			if k > 0 {
				key = fmt.Sprintf("v%d", k)
			}
			if h[key] == "" || h[key+".q"] != "1" {
				t.Fatalf("%s: hash %v lacks %s or its quality 1", dev, h, key)
			}
			if ts, err := strconv.ParseInt(h[key+".ts"], 10, 64); err != nil || time.Since(time.Unix(0, ts)) > time.Hour {
				t.Fatalf("%s: %s.ts = %q, want a recent Unix ns time", dev, key, h[key+".ts"])
			}
		}
		t.Logf("%s: %d polls in the stream, none missing, %d duplicates", dev, last+1, dups)
	}
}

// TestBatchEntries: with stream_entry = "batch" each poll is one entry of its device's stream, its keys as
// fields beside their time and quality (as in the hash), every poll once and in order; a key twice in one message
// makes two entries, in point order.
func TestBatchEntries(t *testing.T) {
	_, rc, nc := setup(t, `stream_entry = "batch"`)
	ctx := context.Background()
	entries := func(dev string) []goredis.XMessage {
		t.Helper()
		es, err := rc.XRange(ctx, "t:stream:"+dev, "-", "+").Result()
		if err != nil {
			t.Fatalf("XRANGE %s: %v", dev, err)
		}
		return es
	}
	testenv.WaitFor(t, "50 polls of each device in its stream", 2*time.Minute, func() bool {
		return len(entries("d0")) >= 50 && len(entries("d1")) >= 50
	})
	for d := range devices {
		dev := fmt.Sprintf("d%d", d)
		var ns []int64
		for _, e := range entries(dev) {
			if len(e.Values) != 30 { // 10 keys: value, .ts, .q (the mock's points have no tags)
				t.Fatalf("%s: entry %s has %d fields, want 30 (10 keys × value, ts, q): %v", dev, e.ID, len(e.Values), e.Values)
			}
			for k := 1; k < 10; k++ {
				if e.Values[fmt.Sprintf("v%d.q", k)] != "1" {
					t.Fatalf("%s: entry %s: v%d.q = %v, want 1", dev, e.ID, k, e.Values[fmt.Sprintf("v%d.q", k)])
				}
			}
			n, err := strconv.ParseInt(fmt.Sprint(e.Values["n"]), 10, 64)
			if err != nil {
				t.Fatalf("%s: entry %s: n = %v: %v", dev, e.ID, e.Values["n"], err)
			}
			if ts, err := strconv.ParseInt(fmt.Sprint(e.Values["n.ts"]), 10, 64); err != nil || time.Since(time.Unix(0, ts)) > time.Hour {
				t.Fatalf("%s: entry %s: n.ts = %v, want a recent Unix ns time", dev, e.ID, e.Values["n.ts"])
			}
			ns = append(ns, n)
		}
		last, dups := check(t, dev, ns)
		t.Logf("%s: %d polls, an entry each, none missing, %d duplicates", dev, last+1, dups)
	}
	body := `{"points":[{"device_id":"twice","key":"k","value":1,"tags":{"unit":"C"}},` +
		`{"device_id":"twice","key":"j","value":2},{"device_id":"twice","key":"k","value":3}]}`
	if err := nc.Publish("iot.processed.batch.twice", []byte(body)); err != nil {
		t.Fatal(err)
	}
	var es []goredis.XMessage
	testenv.WaitFor(t, "the message with a key twice in the stream", time.Minute, func() bool {
		es = entries("twice")
		return len(es) >= 2
	})
	if len(es) != 2 || es[0].Values["k"] != "1" || es[0].Values["j"] != "2" || es[0].Values["k.tag.unit"] != "C" ||
		es[1].Values["k"] != "3" || len(es[1].Values) != 3 {
		t.Fatalf("entries %v, want {k:1 k.tag.unit:C j:2 …} then {k:3 k.ts k.q}", es)
	}
}

// TestRedisDown stops the server mid-stream for the outage while the devices keep polling, starts it again, and
// counts: every poll arrives, in order.
func TestRedisDown(t *testing.T) {
	if testing.Short() {
		t.Skip("a 30 s outage; skipped with -short (CI runs it: test.sh does not pass -short)")
	}
	srv, rc, nc := setup(t)
	testenv.WaitFor(t, "50 polls of d0 in its stream", 2*time.Minute, func() bool { return len(counters(t, rc, "d0")) >= 50 })
	before := counters(t, rc, "d0")
	srv.Stop()
	stopped := time.Now()
	testenv.WaitFor(t, "the sink to show the outage", time.Minute, func() bool {
		f, err := testenv.Sink(nc, "latest")
		return err == nil && f.State == "disconnected" && f.LastError != ""
	})
	time.Sleep(time.Until(stopped.Add(outage)))
	f, err := testenv.Sink(nc, "latest")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after %s down: state %s, pending %d, unacknowledged %d, last error %q", outage, f.State, f.Pending, f.AckPending, f.LastError)
	t.Logf("sinks.get: %s", f.Raw)
	if f.State != "disconnected" {
		t.Fatalf("state %q at the end of the outage, want disconnected", f.State)
	}
	srv.Start()
	// What was polled during the outage: at least the outage's polls beyond what the stream held before.
	want := before[len(before)-1] + int64(outage/(50*time.Millisecond))*8/10
	testenv.WaitFor(t, "the outage's polls in Redis", 3*time.Minute, func() bool {
		ns := counters(t, rc, "d0")
		return len(ns) > 0 && ns[len(ns)-1] >= want
	})
	// The figures count a write when the sink actor has its result, which can come after Redis shows the data
	// (the actor's mailbox holds the catch-up's deliveries): wait for them instead of reading them once.
	var after testenv.SinkFigures
	testenv.WaitFor(t, "the sink connected again, its figures counting the outage's points", time.Minute, func() bool {
		var err error
		after, err = testenv.Sink(nc, "latest")
		return err == nil && after.State == "running" && after.Written >= uint64(want)*10
	})
	if after.Reconnects != 1 || after.Failed == 0 || after.Written < uint64(want)*10 {
		t.Errorf("figures after the outage: %d reconnects, %d failed writes, %d points written; want 1, some, at least %d",
			after.Reconnects, after.Failed, after.Written, want*10)
	}
	t.Logf("figures after the outage: %d points written, %d failed writes, %d reconnects", after.Written, after.Failed, after.Reconnects)
	for d := range devices {
		dev := fmt.Sprintf("d%d", d)
		last, dups := check(t, dev, counters(t, rc, dev))
		t.Logf("%s: %d polls from 0 to %d, none missing, in order, %d duplicates", dev, last+1, last, dups)
	}
}

// TestBadInput publishes what the sink cannot write into the subjects it reads: it refuses each (dead letters),
// keeps running, and writes nothing of it into Redis.
func TestBadInput(t *testing.T) {
	_, rc, nc := setup(t)
	testenv.WaitFor(t, "a first poll in Redis", 2*time.Minute, func() bool { return len(counters(t, rc, "d0")) > 0 })
	bad := map[string]string{
		"not json":          `{"points":[{"key":`,
		"not a batch":       `[1,2,3]`,
		"device with colon": `{"points":[{"device_id":"x:latest:d0","key":"n","value":1}]}`,
		"key with CRLF":     `{"points":[{"device_id":"evil","key":"n\r\nFLUSHALL\r\n","value":1}]}`,
		"key with space":    `{"points":[{"device_id":"evil","key":"a b","value":1}]}`,
		"empty key":         `{"points":[{"device_id":"evil","key":"","value":1}]}`,
		"truncated":         `{"points":[{"device_id":"evil","key":"n","value":1}`,
		"invalid utf8":      "{\"points\":[{\"device_id\":\"evil\",\"key\":\"n\",\"value\":\"\xff\"}]}",
		"oversized key":     `{"points":[{"device_id":"evil","key":"` + strings.Repeat("k", 100_000) + `","value":1}]}`,
	}
	before, err := testenv.Sink(nc, "latest")
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range bad {
		if err := nc.Publish("iot.processed.batch.evil", []byte(body)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if err := nc.Publish("iot.processed.batch.good", []byte(`{"points":[{"device_id":"good","key":"k","value":"a \"quoted\"\r\nline"}]}`)); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the hostile messages in the dead letters", 2*time.Minute, func() bool {
		f, err := testenv.Sink(nc, "latest")
		return err == nil && f.DeadLetters >= before.DeadLetters+uint64(len(bad))
	})
	ctx := context.Background()
	testenv.WaitFor(t, "the good message after them", time.Minute, func() bool {
		v, err := rc.HGet(ctx, "t:latest:good", "k").Result()
		return err == nil && v == "a \"quoted\"\r\nline"
	})
	keys, err := rc.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.Contains(k, "evil") || strings.HasPrefix(k, "x:") {
			t.Errorf("key %q written from a refused message", k)
		}
	}
	if n, err := rc.DBSize(ctx).Result(); err != nil || n > 8 {
		t.Errorf("DBSIZE %d (%v): the hostile key wrote more than the devices' keys", n, err)
	}
	f, _ := testenv.Sink(nc, "latest")
	if f.State != "running" {
		t.Errorf("state %q after the hostile messages, want running", f.State)
	}
}
