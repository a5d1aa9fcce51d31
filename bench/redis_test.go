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

func redisSinkBlock(addr string, stream bool) string {
	s := fmt.Sprintf("sink \"r\" {\n  type = \"redis\"\n  address = %q\n  max_ack_pending = 4096\n", addr)
	if stream {
		s += "  stream_prefix = \"bench:stream:\"\n  stream_max_len = 10000\n"
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

func redisRows(tb testing.TB, n int) []netSinkResult {
	srv := testenv.Redis(tb)
	return []netSinkResult{
		{result: rawRun(tb, "raw NATS, batches of 30", n, fileBatch)},
		redisAlone(tb, srv, n),
		netSinkRun(tb, "redis sink, latest hash, JetStream", n, srv, redisSinkBlock(srv.Addr, false), "r"),
		netSinkRun(tb, "redis sink, hash and stream, JetStream", n/2, srv, redisSinkBlock(srv.Addr, true), "r"),
	}
}

// redisSection runs the rows and returns the report's section.
func redisSection(t *testing.T, n int) string {
	var sb strings.Builder
	sb.WriteString("\n## Redis sink: processed batches of 30 into redis-server\n\n")
	sb.WriteString("Batches of 30 points for 10 devices through IOT_DATA and the sink's durable consumer into Debian's redis-server\n")
	sb.WriteString("(append-only file, fsync every second by default off here: `appendfsync always` in the tests, the default config\n")
	sb.WriteString("of testenv.Redis), pipelines of up to 1000 points, acknowledged after each pipeline. Redis alone is the same HSETs\n")
	sb.WriteString("from go-redis with no gateway: the target's own limit on this machine.\n\n")
	rows := redisRows(t, n)
	for _, r := range rows {
		t.Logf("%-50s %10.0f points/s %8s cpu/point, server %8s cpu/point", r.Name, r.PointsPerSec, r.CPUPerPoint, r.ServerCPUPerPoint)
	}
	netSinkTable(&sb, rows)
	return sb.String()
}

func BenchmarkRedisSink(b *testing.B) {
	srv := testenv.Redis(b)
	for _, stream := range []bool{false, true} {
		b.Run(fmt.Sprintf("stream=%v", stream), func(b *testing.B) {
			r := netSinkRun(b, "redis sink", max(b.N, 30_000), srv, redisSinkBlock(srv.Addr, stream), "r")
			r.report(b)
			b.ReportMetric(float64(r.ServerCPUPerPoint.Nanoseconds()), "server-cpu-ns/point")
		})
	}
	b.Run("alone", func(b *testing.B) {
		r := redisAlone(b, srv, max(b.N, 30_000))
		b.ReportMetric(r.PointsPerSec, "points/s")
		b.ReportMetric(float64(r.ServerCPUPerPoint.Nanoseconds()), "server-cpu-ns/point")
	})
}
