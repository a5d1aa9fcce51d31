package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/performance"
	"github.com/chromedp/chromedp"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/iotgw/iotgw/system"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// BenchmarkDashboard1000Devices: the dashboard in Debian's chromium (headless, chromedp) against a gateway of
// 1,000 devices. Method:
//
//  1. A gateway with 1,000 mock devices (interval 1h: they poll once, so the bench alone sets the load) and one
//     console sink starts; the page is opened on the tree view.
//  2. first_render_ms: performance.now() in the page when it has read its five views (one GET each) and drawn
//     the first frame; tree_rows are the rows the tree view then shows (1,000 devices and the supervisors).
//  3. The bench publishes batches of 2 points on iot.processed.batch.{device}, round robin over the 1,000
//     devices, at IOTGW_DASH_RATE batches per second (default 5,000) for 4 s, while the page shows the devices
//     view (50 rows with sparklines). The page counts what it handled (parsed, applied to its model, drawn at
//     most once per animation frame): updates_per_s = points handled / the time between its first and last
//     message, handled_% = points handled / points sent (below 100 when the gateway dropped the page as a slow
//     consumer: drops counts reconnects), longtask_ms_per_s = main-thread stalls over 50 ms (PerformanceObserver
//     "longtask") per second of the storm, renders_per_s = animation frames drawn.
//  4. cpu_us_per_update: the page's CPU for the storm, from the DevTools Performance domain in thread ticks
//     (TaskDuration of the renderer's main thread: CPU time, not wall clock, so it holds on a loaded machine), per
//     point handled; script_us_per_update is its JavaScript part (ScriptDuration). These are the figures to
//     trust while other work runs; the wall-clock ones (updates_per_s, renders_per_s) want a quiet machine.
//
// Run it alone on a quiet machine (the wall-clock figures are the browser's):
//
//	go test -run '^$' -bench Dashboard -benchtime 1x ./bench/
func BenchmarkDashboard1000Devices(b *testing.B) {
	const devices = 1000
	rate := 5000
	if v, err := strconv.Atoi(os.Getenv("IOTGW_DASH_RATE")); err == nil && v > 0 {
		rate = v
	}
	var sb strings.Builder
	sb.WriteString("gateway {\n  id = \"bench\"\n  http_address = \"127.0.0.1:0\"\n}\nnats { port = -1 }\nsink \"console\" {\n  type = \"console\"\n  subjects = [\"iot.alerts.>\"]\n}\n")
	for i := range devices {
		fmt.Fprintf(&sb, "device \"dev-%04d\" {\n  driver = \"mock\"\n  interval = \"1h\"\n  point \"temperature\" { signal = \"sine\" }\n  point \"pressure\" { signal = \"ramp\" }\n}\n", i)
	}
	cfg, diags := config.Parse([]byte(sb.String()), "bench.hcl")
	if diags.HasErrors() {
		b.Fatal(diags.Error())
	}
	cfg.Gateway.DataDir = b.TempDir()
	for range b.N {
		ctx := testenv.Browser(b)
		rt := system.New(cfg, system.WithLogger(zerolog.Nop()), system.WithStdout(io.Discard))
		if err := rt.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		nc, err := nats.Connect(rt.Bus().URL)
		if err != nil {
			b.Fatal(err)
		}
		testenv.BrowserDo(b, ctx, "open the page", chromedp.Navigate("http://"+rt.HTTPAddr()+"/"))
		testenv.WaitJS(b, ctx, "the first render", `iotgwStats.firstRender > 0 && document.getElementById("conn").textContent === "live"`)
		firstRender := testenv.EvalJS[float64](b, ctx, `iotgwStats.firstRender`)
		testenv.WaitJS(b, ctx, "every device in the tree", fmt.Sprintf(`document.querySelectorAll('#tree tbody tr[data-path^="devices/"]').length >= %d`, devices))
		rows := testenv.EvalJS[float64](b, ctx, `document.querySelectorAll("#tree tbody tr").length`)

		testenv.BrowserDo(b, ctx, "the devices view", chromedp.Click(chromedp.CSS(`#tabs button[data-view="devices"]`)))
		testenv.WaitJS(b, ctx, "the device rows", `document.querySelectorAll("#devices tbody tr").length === 50`)
		if _, err := chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) (cdp.Empty, error) {
			return cdp.Call(ctx, t, performance.Enable, performance.EnableParams{TimeDomain: performance.EnableTimeDomainThreadTicks})
		}); err != nil {
			b.Fatalf("performance domain: %v", err)
		}
		cpu0 := pageCPU(b, ctx)
		base := testenv.EvalJS[map[string]float64](b, ctx, `({points: iotgwStats.points, renders: iotgwStats.renders, long: iotgwStats.longTaskMs, connects: iotgwStats.connects, t: performance.now()})`)
		testenv.EvalJS[bool](b, ctx, `(iotgwStats.firstAt = 0, true)`)

		sent := publishStorm(b, nc, devices, rate, 4*time.Second)
		want := base["points"] + float64(sent)
		// wait until the page has handled every point, or has been dropped (then its count stops short)
		testenv.WaitJS(b, ctx, "the page to catch up", fmt.Sprintf(`iotgwStats.points >= %f || iotgwStats.connects > %f`, want, base["connects"]))
		end := testenv.EvalJS[map[string]float64](b, ctx, `({points: iotgwStats.points, renders: iotgwStats.renders, long: iotgwStats.longTaskMs, connects: iotgwStats.connects, first: iotgwStats.firstAt, last: iotgwStats.lastAt, t: performance.now()})`)
		cpu1 := pageCPU(b, ctx)
		handled := end["points"] - base["points"]
		storm := (end["last"] - end["first"]) / 1000
		if storm <= 0 {
			storm = 1
		}
		b.ReportMetric(1e6*(cpu1["TaskDuration"]-cpu0["TaskDuration"])/handled, "cpu_us_per_update")
		b.ReportMetric(1e6*(cpu1["ScriptDuration"]-cpu0["ScriptDuration"])/handled, "script_us_per_update")
		b.ReportMetric(1e6*(cpu1["LayoutDuration"]+cpu1["RecalcStyleDuration"]-cpu0["LayoutDuration"]-cpu0["RecalcStyleDuration"])/handled, "layout_us_per_update")
		b.ReportMetric(firstRender, "first_render_ms")
		b.ReportMetric(rows, "tree_rows")
		b.ReportMetric(handled/storm, "updates_per_s")
		b.ReportMetric(100*handled/float64(sent), "handled_%")
		b.ReportMetric(end["connects"]-base["connects"], "drops")
		b.ReportMetric((end["long"]-base["long"])/storm, "longtask_ms_per_s")
		b.ReportMetric((end["renders"]-base["renders"])/((end["t"]-base["t"])/1000), "renders_per_s")
		nc.Close()
		if err := rt.Stop(); err != nil {
			b.Fatal(err)
		}
	}
}

// pageCPU reads the renderer's Performance metrics in thread ticks (CPU seconds of its main thread).
func pageCPU(b *testing.B, ctx context.Context) map[string]float64 {
	b.Helper()
	res, err := chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) (performance.GetMetricsResult, error) {
		return cdp.Call(ctx, t, performance.GetMetrics, cdp.Empty{})
	})
	if err != nil {
		b.Fatalf("performance metrics: %v", err)
	}
	out := map[string]float64{}
	for _, m := range res.Metrics {
		out[m.Name] = m.Value
	}
	return out
}

// publishStorm publishes 2-point batches round robin over the devices at rate batches per second for d, paced
// in 10 ms steps, and returns the points sent.
func publishStorm(b *testing.B, nc *nats.Conn, devices, rate int, d time.Duration) int {
	b.Helper()
	step := 10 * time.Millisecond
	perStep := max(rate*int(step)/int(time.Second), 1)
	tick := time.NewTicker(step)
	defer tick.Stop()
	deadline := time.Now().Add(d)
	var buf []byte
	n, points := 0, 0
	for time.Now().Before(deadline) {
		for range perStep {
			id := fmt.Sprintf("dev-%04d", n%devices)
			ts := time.Now().UnixNano()
			buf = fmt.Appendf(buf[:0], `{"points":[{"device_id":%q,"key":"temperature","value":%d.5,"type":"float64","quality":1,"timestamp":%d},{"device_id":%q,"key":"pressure","value":%d,"type":"float64","quality":1,"timestamp":%d}]}`,
				id, n%100, ts, id, n%37, ts)
			if err := nc.Publish("iot.processed.batch."+id, buf); err != nil {
				b.Fatal(err)
			}
			n++
			points += 2
		}
		<-tick.C
	}
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
	return points
}
