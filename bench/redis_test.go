package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/internal/testenv"
	goredis "github.com/redis/go-redis/v9"
)

// The redis sink into a real redis-server (see netsink_test.go), beside the raw bus rate and Redis's own limit:
// the same HSETs the sink sends (one per device per pipeline of 1000 points, key, key.ts and key.q per point),
// from go-redis alone.

// redisSinkBlock is the sink's block; entry "" writes no stream, else the stream_entry ("point", "batch").
func redisSinkBlock(addr string, entry string) string {
	s := fmt.Sprintf("sink \"r\" {\n  type = \"redis\"\n  address = %q\n  max_ack_pending = 4096\n", addr)
	if entry != "" {
		s += fmt.Sprintf("  stream_prefix = \"bench:stream:\"\n  stream_max_len = 10000\n  stream_entry = %q\n", entry)
	}
	return s + "}\n"
}

// redisAlone pipelines n points' HSETs from go-redis, 1000 points per pipeline, and returns the rate.
func redisAlone(tb testing.TB, srv *testenv.Server, n int) netSinkResult {
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, DisableIdentity: true})
	defer c.Close()
	ctx := context.Background()
	pts := makeBatch("plc-0", fileBatch)
	cpu0, srv0, t0 := cpuTime(), srv.CPU(), time.Now()
	for sent := 0; sent < n; {
		pipe := c.Pipeline()
		for b := 0; b < 1000/fileBatch && sent < n; b++ {
			args := make([]any, 0, 6*len(pts))
			ts := strconv.FormatInt(time.Now().UnixNano(), 10)
			for i := range pts {
				args = append(args, pts[i].Key, pts[i].Value.String(), pts[i].Key+".ts", ts, pts[i].Key+".q", "1")
			}
			pipe.HSet(ctx, fmt.Sprintf("alone:plc-%d", b%10), args...)
			sent += fileBatch
		}
		if _, err := pipe.Exec(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	wall := time.Since(t0)
	return netSinkResult{result: result{Name: "Redis alone: go-redis pipelines of 1000 points' HSETs", Points: n,
		PointsPerSec: float64(n) / wall.Seconds(), CPUPerPoint: (cpuTime() - cpu0) / time.Duration(n)},
		ServerCPUPerPoint: (srv.CPU() - srv0) / time.Duration(n)}
}

// redisAloneStream pipelines n points' stream writes from go-redis alone, 1000 points per pipeline, as the sink
// sends them with stream_prefix set: the HSET per device, then an XADD … MAXLEN ~ per point (perPoint) or one
// XADD per device and batch with the keys as fields (the sink's stream_entry = "batch").
func redisAloneStream(tb testing.TB, srv *testenv.Server, n int, perPoint bool) netSinkResult {
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, DisableIdentity: true})
	defer c.Close()
	ctx := context.Background()
	pts := makeBatch("plc-0", fileBatch)
	cpu0, srv0, t0 := cpuTime(), srv.CPU(), time.Now()
	for sent := 0; sent < n; {
		pipe := c.Pipeline()
		for b := 0; b < 1000/fileBatch && sent < n; b++ {
			dev := fmt.Sprintf("plc-%d", b%10)
			ts := strconv.FormatInt(time.Now().UnixNano(), 10)
			args := make([]any, 0, 6*len(pts))
			for i := range pts {
				args = append(args, pts[i].Key, pts[i].Value.String(), pts[i].Key+".ts", ts, pts[i].Key+".q", "1")
			}
			pipe.HSet(ctx, "alone:"+dev, args...)
			if perPoint {
				for i := range pts {
					pipe.XAdd(ctx, &goredis.XAddArgs{Stream: "alone:stream:" + dev, MaxLen: 10000, Approx: true,
						Values: []any{"key", pts[i].Key, "value", pts[i].Value.String(), "ts", ts, "q", "1", "tag.unit", "C"}})
				}
			} else {
				pipe.XAdd(ctx, &goredis.XAddArgs{Stream: "alone:stream:" + dev, MaxLen: 10000, Approx: true, Values: args})
			}
			sent += fileBatch
		}
		if _, err := pipe.Exec(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	wall := time.Since(t0)
	name := "Redis alone: go-redis, the same HSETs and an XADD per point"
	if !perPoint {
		name = "Redis alone: go-redis, the same HSETs and an XADD per device and batch"
	}
	return netSinkResult{result: result{Name: name, Points: n,
		PointsPerSec: float64(n) / wall.Seconds(), CPUPerPoint: (cpuTime() - cpu0) / time.Duration(n)},
		ServerCPUPerPoint: (srv.CPU() - srv0) / time.Duration(n)}
}

func redisRows(tb testing.TB, n int) []netSinkResult {
	srv := testenv.Redis(tb)
	return []netSinkResult{
		{result: rawRun(tb, "raw NATS, batches of 30", n, fileBatch)},
		redisAlone(tb, srv, n),
		netSinkRun(tb, "redis sink, latest hash, JetStream", n, srv, redisSinkBlock(srv.Addr, ""), "r"),
		redisAloneStream(tb, srv, n/2, true),
		netSinkRun(tb, "redis sink, hash and stream (an entry per point), JetStream", n/2, srv, redisSinkBlock(srv.Addr, "point"), "r"),
		redisAloneStream(tb, srv, n, false),
		netSinkRun(tb, "redis sink, hash and stream (stream_entry = batch), JetStream", n, srv, redisSinkBlock(srv.Addr, "batch"), "r"),
	}
}

// redisSection runs the rows and returns the report's section.
func redisSection(t *testing.T, n int) string {
	var sb strings.Builder
	sb.WriteString("\n## Redis sink: processed batches of 30 into redis-server\n\n")
	sb.WriteString("Batches of 30 points for 10 devices through IOT_DATA and the sink's durable consumer into Debian's redis-server\n")
	sb.WriteString("(append-only file, fsync every second by default off here: `appendfsync always` in the tests, the default config\n")
	sb.WriteString("of testenv.Redis), pipelines of up to 1000 points, acknowledged after each pipeline. Each \"Redis alone\" row is\n")
	sb.WriteString("the same commands as the sink row below it (the HSETs; with them an XADD ... MAXLEN ~ per point, or one per device\n")
	sb.WriteString("and batch of 30 with the keys as fields) from go-redis with no gateway, in pipelines of 1000 points: the target's\n")
	sb.WriteString("own limit on this machine, so a sink row near its alone row is bounded by Redis, not by the gateway.\n\n")
	rows := redisRows(t, n)
	for _, r := range rows {
		t.Logf("%-50s %10.0f points/s %8s cpu/point, server %8s cpu/point", r.Name, r.PointsPerSec, r.CPUPerPoint, r.ServerCPUPerPoint)
	}
	netSinkTable(&sb, rows)
	return sb.String()
}

func BenchmarkRedisSink(b *testing.B) {
	srv := testenv.Redis(b)
	for _, entry := range []string{"", "point", "batch"} {
		b.Run(fmt.Sprintf("stream=%q", entry), func(b *testing.B) {
			r := netSinkRun(b, "redis sink", max(b.N, 30_000), srv, redisSinkBlock(srv.Addr, entry), "r")
			r.report(b)
			b.ReportMetric(float64(r.ServerCPUPerPoint.Nanoseconds()), "server-cpu-ns/point")
		})
	}
	for _, perPoint := range []bool{true, false} {
		b.Run(fmt.Sprintf("alone-stream-per-point=%v", perPoint), func(b *testing.B) {
			r := redisAloneStream(b, srv, max(b.N, 30_000), perPoint)
			b.ReportMetric(r.PointsPerSec, "points/s")
			b.ReportMetric(float64(r.CPUPerPoint.Nanoseconds()), "cpu-ns/point")
			b.ReportMetric(float64(r.ServerCPUPerPoint.Nanoseconds()), "server-cpu-ns/point")
		})
	}
	b.Run("alone", func(b *testing.B) {
		r := redisAlone(b, srv, max(b.N, 30_000))
		b.ReportMetric(r.PointsPerSec, "points/s")
		b.ReportMetric(float64(r.ServerCPUPerPoint.Nanoseconds()), "server-cpu-ns/point")
	})
}
