package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/system"
)

// Memory per Modbus device (issue 13: 1,000 devices under 100 MB RSS). TestPeer's workload 4 measures the RSS of
// a separate `iotgw run`; this is the part of it that the gateway's own code decides, in this process: the live
// heap after a collection and the goroutines with devices polling (30 uint16 each, every second, a simulator port
// each, as in workload 4), less the same gateway with none, per device. IOTGW_BENCH_MEMPROFILE=FILE writes a heap
// profile of every allocation (MemProfileRate 1) with the devices running.

type modbusMemResult struct {
	Devices           int
	LivePerDevice     float64 // bytes of live heap
	StackPerDevice    float64 // bytes of goroutine stacks
	GoroutinesPerDev  float64
	BaseLive, AllLive uint64
}

func modbusMemory(tb testing.TB, devices int, warm time.Duration) modbusMemResult {
	ports := peerSimulator(tb, devices)
	if prof := os.Getenv("IOTGW_BENCH_MEMPROFILE"); prof != "" {
		old := runtime.MemProfileRate
		runtime.MemProfileRate = 1
		defer func() { runtime.MemProfileRate = old }()
	}
	measure := func(n int) (live, stack uint64, goroutines int) {
		var b strings.Builder
		fmt.Fprintf(&b, "gateway {\n  log_level = \"warn\"\n  http_address = \"\"\n  point_subjects = false\n  data_dir = %q\n}\n", tb.TempDir())
		b.WriteString("nats {\n  port = -1\n  jetstream { enabled = false }\n}\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "device \"meter-%d\" {\n  driver = \"modbus\"\n  address = \"127.0.0.1:%d\"\n  unit_id = 2\n  interval = \"1s\"\n", i, ports[i])
			for r := 0; r < 30; r++ {
				fmt.Fprintf(&b, "  register \"r%d\" {\n    address = %d\n    type = \"uint16\"\n  }\n", r, r)
			}
			b.WriteString("}\n")
		}
		cfg := parseHCL(tb, b.String())
		// Not startConfig: its cleanup would keep each stopped gateway reachable until the test ends, in the
		// next measurement's live heap.
		rt := system.New(cfg)
		if err := rt.Start(context.Background()); err != nil {
			tb.Fatal(err)
		}
		defer func() { _ = rt.Stop() }()
		points, _ := addCounter(tb, rt)
		time.Sleep(warm) // polls go by; nothing is asserted on its length but that points arrived
		if n > 0 && points.Load() == 0 {
			tb.Fatalf("%d devices: no points in %s", n, warm)
		}
		// The least of three samples 200ms apart, each after two collections (sync.Pool's victims go with the
		// second): a poll in flight holds its buffers, so one sample can catch a few hundred polls' worth.
		var m runtime.MemStats
		for i := range 3 {
			if i > 0 {
				time.Sleep(200 * time.Millisecond)
			}
			runtime.GC()
			runtime.GC()
			var s runtime.MemStats
			runtime.ReadMemStats(&s)
			if i == 0 || s.HeapAlloc < m.HeapAlloc {
				m = s
			}
		}
		if prof := os.Getenv("IOTGW_BENCH_MEMPROFILE"); prof != "" && n > 0 {
			f, err := os.Create(prof)
			if err != nil {
				tb.Fatal(err)
			}
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			_ = f.Close()
		}
		return m.HeapAlloc, m.StackInuse, runtime.NumGoroutine()
	}
	baseLive, baseStack, baseG := measure(0)
	live, stack, g := measure(devices)
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(devices) }
	return modbusMemResult{Devices: devices, LivePerDevice: per(live, baseLive), StackPerDevice: per(stack, baseStack),
		GoroutinesPerDev: float64(g-baseG) / float64(devices), BaseLive: baseLive, AllLive: live}
}

func BenchmarkModbusMemory(b *testing.B) {
	r := modbusMemory(b, 1000, 5*time.Second)
	b.ReportMetric(r.LivePerDevice, "live-B/device")
	b.ReportMetric(r.StackPerDevice, "stack-B/device")
	b.ReportMetric(r.GoroutinesPerDev, "goroutines/device")
	b.ReportMetric(float64(r.AllLive)/(1<<20), "live-MiB")
}
