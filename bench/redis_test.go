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
// the same commands the sink sends (redisAlone), from go-redis alone.

// redisSinkBlock is the sink's block; entry "" writes no stream, else the stream_entry ("point", "batch").
func redisSinkBlock(addr string, entry string) string {
	s := fmt.Sprintf("sink \"r\" {\n  type = \"redis\"\n  address = %q\n  max_ack_pending = 4096\n", addr)
	if entry != "" {
		s += fmt.Sprintf("  stream_prefix = \"bench:stream:\"\n  stream_max_len = 10000\n  stream_entry = %q\n", entry)
	}
	return s + "}\n"
}

// redisAlone sends n points' commands from go-redis with no gateway, 1000 points per pipeline, one pipeline at a
// time as the sink does, and returns the rate: the commands the sink sends with stream entry "" (the HSET per
// device and batch: key, key.ts and key.q per point), "point" (with them an XADD ... MAXLEN ~ per point) or "batch"
// (one XADD per device and batch with the keys as fields, their tags with them). The commands are made before
// the clock starts, so the row is Redis's pace with its own client sending, not go-redis building arguments (the
// sink builds them as points arrive, beside the write in flight).
func redisAlone(tb testing.TB, srv *testenv.Server, n int, entry string) netSinkResult {
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, DisableIdentity: true})
	defer c.Close()
	ctx := context.Background()
	pts := makeBatch("plc-0", fileBatch)
	var pipelines [][][]any
	for sent := 0; sent < n; {
		var cmds [][]any
		for b := 0; b < 1000/fileBatch && sent < n; b++ {
			dev := fmt.Sprintf("plc-%d", b%10)
			ts := strconv.FormatInt(time.Now().UnixNano(), 10)
			hset := []any{"hset", "alone:" + dev}
			for i := range pts {
				hset = append(hset, pts[i].Key, pts[i].Value.String(), pts[i].Key+".ts", ts, pts[i].Key+".q", "1")
			}
			cmds = append(cmds, hset)
			xadd := []any{"xadd", "alone:stream:" + dev, "maxlen", "~", 10000, "*"}
			switch entry {
			case "point":
				for i := range pts {
					cmds = append(cmds, append(xadd[:6:6], "key", pts[i].Key, "value", pts[i].Value.String(), "ts", ts, "q", "1", "tag.unit", "C"))
				}
			case "batch":
				for i := range pts {
					xadd = append(xadd, hset[2+6*i:8+6*i]...)
					for _, tag := range pts[i].Tags {
						xadd = append(xadd, pts[i].Key+".tag."+tag.Key, tag.Value)
					}
				}
				cmds = append(cmds, xadd)
			}
			sent += fileBatch
		}
		pipelines = append(pipelines, cmds)
	}
	cpu0, srv0, t0 := cpuTime(), srv.CPU(), time.Now()
	for _, cmds := range pipelines {
		pipe := c.Pipeline()
		for _, args := range cmds {
			pipe.Do(ctx, args...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	wall := time.Since(t0)
	name := map[string]string{
		"":      "Redis alone: go-redis, the same HSETs",
		"point": "Redis alone: go-redis, the same HSETs and an XADD per point",
		"batch": "Redis alone: go-redis, the same HSETs and an XADD per device and batch",
	}[entry]
	return netSinkResult{result: result{Name: name, Points: n,
		PointsPerSec: float64(n) / wall.Seconds(), CPUPerPoint: (cpuTime() - cpu0) / time.Duration(n)},
		ServerCPUPerPoint: (srv.CPU() - srv0) / time.Duration(n)}
}

func redisRows(tb testing.TB, n int) []netSinkResult {
	srv := testenv.Redis(tb)
	return []netSinkResult{
		{result: rawRun(tb, "raw NATS, batches of 30", n, fileBatch)},
		redisAlone(tb, srv, n, ""),
		netSinkRun(tb, "redis sink, latest hash, JetStream", n, srv, redisSinkBlock(srv.Addr, ""), "r"),
		redisAlone(tb, srv, n/2, "point"),
		netSinkRun(tb, "redis sink, hash and stream (an entry per point), JetStream", n/2, srv, redisSinkBlock(srv.Addr, "point"), "r"),
		redisAlone(tb, srv, n, "batch"),
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
	sb.WriteString("and batch of 30 with the keys and their tags as fields) from go-redis with no gateway, in pipelines of 1000 points,\n")
	sb.WriteString("one at a time as the sink sends them, the commands made before the clock starts: the target's own pace on this\n")
	sb.WriteString("machine, so a sink row near its alone row is bounded by Redis, not by the gateway. The sink makes its commands as\n")
	sb.WriteString("the points arrive, beside the pipeline in flight, so it can come near that pace but not pass it.\n\n")
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
	for _, entry := range []string{"", "point", "batch"} {
		b.Run(fmt.Sprintf("alone-stream=%q", entry), func(b *testing.B) {
			r := redisAlone(b, srv, max(b.N, 30_000), entry)
			b.ReportMetric(r.PointsPerSec, "points/s")
			b.ReportMetric(float64(r.CPUPerPoint.Nanoseconds()), "cpu-ns/point")
			b.ReportMetric(float64(r.ServerCPUPerPoint.Nanoseconds()), "server-cpu-ns/point")
		})
	}
}
