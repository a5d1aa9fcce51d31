package bench

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/internal/testenv"
)

// The influxdb sink into a real influxd 1.x (see netsink_test.go), beside the raw bus rate and InfluxDB's own
// limit: the same gzipped line protocol bodies of 5000 points posted to /write by a plain HTTP client.

func startInfluxBench(tb testing.TB) *testenv.Server {
	srv := testenv.Influxd(tb)
	resp, err := http.PostForm("http://"+srv.Addr+"/query", url.Values{"q": {"CREATE DATABASE bench"}})
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	return srv
}

func influxSinkBlock(addr string) string {
	return fmt.Sprintf("sink \"i\" {\n  type = \"influxdb\"\n  url = \"http://%s\"\n  database = \"bench\"\n  device_tag = \"device\"\n  measurement = \"plc\"\n}\n", addr)
}

// influxAlone posts n points as gzipped line protocol, 5000 lines per request, and returns the rate.
func influxAlone(tb testing.TB, srv *testenv.Server, n int) netSinkResult {
	pts := makeBatch("plc-0", fileBatch)
	var body, zbody bytes.Buffer
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	cpu0, srv0, t0 := cpuTime(), srv.CPU(), time.Now()
	for sent := 0; sent < n; {
		body.Reset()
		for b := 0; b < 5000/fileBatch && sent < n; b++ {
			ts := time.Now().UnixNano() + int64(sent)
			for i := range pts {
				fmt.Fprintf(&body, "alone,device=plc-%d %s=%s %d\n", b%10, pts[i].Key, pts[i].Value.String(), ts)
			}
			sent += fileBatch
		}
		zbody.Reset()
		zw.Reset(&zbody)
		_, _ = zw.Write(body.Bytes())
		_ = zw.Close()
		req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr+"/write?db=bench&precision=ns", &zbody)
		req.Header.Set("Content-Encoding", "gzip")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			tb.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			tb.Fatalf("InfluxDB: %s %s", resp.Status, msg)
		}
	}
	wall := time.Since(t0)
	return netSinkResult{result: result{Name: "InfluxDB alone: net/http, gzipped bodies of 5000 lines", Points: n,
		PointsPerSec: float64(n) / wall.Seconds(), CPUPerPoint: (cpuTime() - cpu0) / time.Duration(n)},
		ServerCPUPerPoint: (srv.CPU() - srv0) / time.Duration(n)}
}

// influxSection runs the rows and returns the report's section.
func influxSection(t *testing.T, n int) string {
	srv := startInfluxBench(t)
	rows := []netSinkResult{
		{result: rawRun(t, "raw NATS, batches of 30", n, fileBatch)},
		influxAlone(t, srv, n),
		netSinkRun(t, "influxdb sink, 1.x /write, gzip, JetStream", n, srv, influxSinkBlock(srv.Addr), "i"),
	}
	var sb strings.Builder
	sb.WriteString("\n## InfluxDB sink: processed batches of 30 into influxd 1.6\n\n")
	sb.WriteString("Batches of 30 points for 10 devices through IOT_DATA and the sink's durable consumer into Debian's influxd\n")
	sb.WriteString("(1.6), gzipped requests of up to 5000 lines, acknowledged after InfluxDB's 204. InfluxDB alone is the same\n")
	sb.WriteString("kind of body from a plain HTTP client with no gateway: the target's own limit on this machine.\n\n")
	for _, r := range rows {
		t.Logf("%-50s %10.0f points/s %8s cpu/point, server %8s cpu/point", r.Name, r.PointsPerSec, r.CPUPerPoint, r.ServerCPUPerPoint)
	}
	netSinkTable(&sb, rows)
	return sb.String()
}

func BenchmarkInfluxDBSink(b *testing.B) {
	srv := startInfluxBench(b)
	b.Run("sink", func(b *testing.B) {
		r := netSinkRun(b, "influxdb sink", max(b.N, 30_000), srv, influxSinkBlock(srv.Addr), "i")
		r.report(b)
		b.ReportMetric(float64(r.ServerCPUPerPoint.Nanoseconds()), "server-cpu-ns/point")
	})
	b.Run("alone", func(b *testing.B) {
		r := influxAlone(b, srv, max(b.N, 30_000))
		b.ReportMetric(r.PointsPerSec, "points/s")
		b.ReportMetric(float64(r.ServerCPUPerPoint.Nanoseconds()), "server-cpu-ns/point")
	})
}
