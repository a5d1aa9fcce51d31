package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/isp"
	mb "github.com/iotgw/iotgw/modbus"
	"github.com/nats-io/nats.go"
)

var (
	iotgwOnce sync.Once
	iotgwBin  string
	iotgwErr  error
)

// simProcess runs `iotgw sim modbus` as its own process, so the CPU the benchmark measures (getrusage of this
// process) is the gateway's alone, as Telegraf's figure is Telegraf's alone.
func simProcess(tb testing.TB) string {
	tb.Helper()
	iotgwOnce.Do(func() {
		dir, err := os.MkdirTemp("", "iotgw-bench")
		if err != nil {
			iotgwErr = err
			return
		}
		iotgwBin = filepath.Join(dir, "iotgw")
		if out, err := exec.Command("go", "build", "-o", iotgwBin, "..").CombinedOutput(); err != nil {
			iotgwErr = fmt.Errorf("go build iotgw: %v\n%s", err, out)
		}
	})
	if iotgwErr != nil {
		tb.Fatal(iotgwErr)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(tb))
	cmd := exec.Command(iotgwBin, "sim", "modbus", "-listen", addr)
	stderr, _ := cmd.StderrPipe()
	cmd.Stdin = strings.NewReader("")
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "listening") {
			go func() {
				for sc.Scan() {
				}
			}()
			return addr
		}
	}
	tb.Fatal("simulator did not start")
	return ""
}

// rawModbusRate is the simulator's read rate from the gateway's Modbus client (mb.Client, its own TCP framing) on
// one connection: the ceiling for one endpoint, measured in the same run.
func rawModbusRate(tb testing.TB, addr string, d time.Duration) (readsPerSec float64, perRead time.Duration) {
	c, err := mb.NewClient(mb.Endpoint{Address: addr})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	call := mb.Call{Slave: 2, Function: mb.FuncHoldingRegisters, Quantity: 30, Timeout: time.Second}
	buf := make([]byte, 0, 256)
	start := time.Now()
	n := 0
	for time.Since(start) < d {
		if _, err := c.DoAppend(buf[:0], call); err != nil {
			tb.Fatal(err)
		}
		n++
	}
	el := time.Since(start)
	return float64(n) / el.Seconds(), el / time.Duration(n)
}

// pointCounter is a sink actor counting points of processed batches.
type pointCounter struct {
	points, batches *atomic.Int64
	dec             isp.Decoder
	pts             []isp.Point
}

func (c *pointCounter) Inboxes() []actors.Inbox {
	return []actors.Inbox{{Subject: "iot.processed.batch.>"}}
}

func (c *pointCounter) Receive(ctx actor.Context) {
	if m, ok := ctx.Message().(*nats.Msg); ok {
		var err error
		if c.pts, err = c.dec.DecodeBatch(m.Data, c.pts[:0]); err == nil {
			c.points.Add(int64(len(c.pts)))
			c.batches.Add(1)
		}
	}
}

// modbusResult is one Modbus run's figures.
type modbusResult struct {
	Devices, Registers      int
	Interval                time.Duration
	PointsPerSec, PollsPerS float64
	CPUPerPoint, CPUPerPoll time.Duration
	AllocsPoint             float64
	RawReadsPerSec          float64
	RawPerRead              time.Duration
	BadPoints               int64
}

// modbusRun polls devices × registers (30 uint16 holding registers each, unit 2 of the demo map) every interval
// from a simulator in another process, through the transport, the device actors, the bus and the processor, to
// a counting sink actor, for d.
func modbusRun(tb testing.TB, devices int, interval, d time.Duration) modbusResult {
	addr := simProcess(tb)
	raw, per := rawModbusRate(tb, addr, time.Second)

	var src strings.Builder
	// JetStream off: the path as measured before it was on by default (issue 11).
	fmt.Fprintf(&src, "gateway { point_subjects = false }\nnats {\n  jetstream { enabled = false }\n}\n")
	for i := 0; i < devices; i++ {
		fmt.Fprintf(&src, "device \"meter-%d\" {\n  driver = \"modbus\"\n  address = %q\n  unit_id = 2\n  interval = %q\n", i, addr, interval)
		for r := 0; r < 30; r++ {
			fmt.Fprintf(&src, "  register \"r%d\" { address = %d }\n", r, r)
		}
		src.WriteString("}\n")
	}
	cfg := parseHCL(tb, src.String())
	cfg.NATS.Port = -1
	cfg.Gateway.HTTPAddress = "" // measured: the gateway's data path, not its HTTP server
	cfg.Gateway.DataDir = tb.TempDir()
	rt := startConfig(tb, cfg)
	defer func() { _ = rt.Stop() }()
	points, batches := addCounter(tb, rt)
	time.Sleep(2 * interval) // let every device's first poll go by
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	p0, b0, cpu0, t0 := points.Load(), batches.Load(), cpuTime(), time.Now()
	time.Sleep(d)
	p1, b1, cpu1, el := points.Load(), batches.Load(), cpuTime(), time.Since(t0)
	runtime.ReadMemStats(&m1)
	np, nb := p1-p0, b1-b0
	if np == 0 {
		tb.Fatal("no points")
	}
	return modbusResult{
		Devices: devices, Registers: 30, Interval: interval,
		PointsPerSec: float64(np) / el.Seconds(), PollsPerS: float64(nb) / el.Seconds(),
		CPUPerPoint: (cpu1 - cpu0) / time.Duration(np), CPUPerPoll: (cpu1 - cpu0) / time.Duration(nb),
		AllocsPoint:    float64(m1.Mallocs-m0.Mallocs) / float64(np),
		RawReadsPerSec: raw, RawPerRead: per,
	}
}

func BenchmarkModbus(b *testing.B) {
	for _, devices := range []int{1, 40, 100} {
		b.Run(fmt.Sprintf("devices=%d", devices), func(b *testing.B) {
			interval := 100 * time.Millisecond
			if devices < 100 {
				interval = time.Millisecond
			}
			r := modbusRun(b, devices, interval, 3*time.Second)
			b.ReportMetric(r.PointsPerSec, "points/s")
			b.ReportMetric(r.PollsPerS, "polls/s")
			b.ReportMetric(float64(r.CPUPerPoint.Nanoseconds()), "cpu-ns/point")
			b.ReportMetric(float64(r.CPUPerPoll.Microseconds()), "cpu-µs/poll")
			b.ReportMetric(r.AllocsPoint, "allocs/point")
			b.ReportMetric(r.AllocsPoint*float64(r.Registers), "allocs/poll")
			b.ReportMetric(r.RawReadsPerSec, "raw-reads/s")
		})
	}
}

// coalescingSaved plans a realistic power-meter map (the demo meter's 15 values over 30 registers, plus a status
// word and 4 coils) with and without bridging gaps, and against one request per register.
func coalescingSaved() (perRegister, contiguous, coalesced int) {
	var regs []mb.Register
	add := func(key string, fn uint8, addr uint16, t mb.Type) {
		regs = append(regs, mb.Register{Key: key, SlaveID: 1, Function: fn, Address: addr, Type: t, Bit: mb.NoBit})
	}
	for i := 0; i < 11; i++ {
		add(fmt.Sprintf("f%d", i), 3, uint16(2*i), mb.TypeFloat32)
	}
	add("imported", 3, 22, mb.TypeUint32)
	add("exported", 3, 24, mb.TypeUint32)
	add("demand", 3, 26, mb.TypeFloat32)
	add("seconds", 3, 28, mb.TypeUint32)
	add("status", 3, 40, mb.TypeUint16)
	add("alarms", 3, 44, mb.TypeUint16)
	for i := 0; i < 4; i++ {
		add(fmt.Sprintf("coil%d", i), 1, uint16(i*3), mb.TypeBool)
	}
	noGap, _ := mb.Plan(regs, mb.PlanOptions{MaxGap: -1, MaxBitGap: -1})
	def, _ := mb.Plan(regs, mb.PlanOptions{})
	return len(regs), len(noGap), len(def)
}
