package bench

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/expr-lang/expr/vm"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/iotgw/iotgw/actors/rule"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
	"github.com/iotgw/iotgw/system"
	"github.com/nats-io/nats.go"
	"github.com/zclconf/go-cty/cty"
)

// The rule engine's benchmarks: the expression engines side by side, one rule of each type on batches of 30 (the
// work of the rule's actor per bus message: decode the batch, run the rule, encode what it emits), the same through
// the bus beside the raw NATS rate, 1,000 rules loaded, and an aggregate over 10,000 series.

// ruleSources is one rule of each type, as the report and the benchmarks run them.
var ruleSources = []struct{ name, src string }{
	{"filter", `rule "r" {
  type = "filter"
  when = "value > 0 && quality == 1"
}`},
	{"transform", `rule "r" {
  type   = "transform"
  value  = "value * 1.8 + 32"
  rename = "f"
}`},
	{"forward", `rule "r" {
  type = "forward"
}`},
	{"alert", `rule "r" {
  type     = "alert"
  when     = "value > 85"
  deadband = 2
  for      = "5s"
}`},
	{"aggregate", `rule "r" {
  type      = "aggregate"
  window    = "tumbling"
  size      = "1s"
  functions = ["avg", "min", "max", "count"]
}`},
}

func loadRule(tb testing.TB, src string) *config.Rule {
	tb.Helper()
	cfg := parseHCL(tb, src)
	return &cfg.Rules[0]
}

type discard struct{ n int }

func (d *discard) Publish(string, []byte) error { d.n++; return nil }

// engineResult is a rule's own work per point.
type engineResult struct {
	Name        string
	NsPerPoint  float64
	PointsPerS  float64
	AllocsPoint float64
}

// engineRun runs the rule on batches of 30 as the rule's actor does with each bus message: a filter, transform or
// forward that reads no tags on the batch's bytes (ProcessRaw, actors/rule/raw.go), any other rule on the decoded
// batch (ProcessBatch, with the batch's bytes: a filter that keeps every point and a forward republish them as
// they came).
func engineRun(tb testing.TB, name, src string, points int) engineResult {
	r := loadRule(tb, src)
	out := &discard{}
	e := rule.NewEngine(r, out)
	pts := makeBatch("plc-1", 30)
	data := isp.AppendBatch(nil, pts)
	var dec isp.Decoder
	var buf []isp.Point
	batches := max(points/30, 1)
	now := time.Now()
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	// The CPU of this goroutine's thread alone (threadCPU): what other helpers' builds and the GC's workers take is not in it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := threadCPU()
	for i := range batches {
		t := now.Add(time.Duration(i) * time.Millisecond)
		if _, ok := e.ProcessRaw(data, t); ok { // as the actor: a rule that reads no tags, on the batch's bytes
			continue
		}
		var err error
		if buf, err = dec.DecodeBatch(data, buf[:0]); err != nil {
			tb.Fatal(err)
		}
		for j := range buf {
			buf[j].Timestamp = t.UnixNano()
		}
		e.ProcessBatch(buf, data, t)
	}
	cpu := threadCPU() - cpu0
	runtime.ReadMemStats(&m1)
	n := float64(batches * 30)
	return engineResult{Name: name, NsPerPoint: float64(cpu.Nanoseconds()) / n, PointsPerS: n / cpu.Seconds(),
		AllocsPoint: float64(m1.Mallocs-m0.Mallocs) / n}
}

// clockThreadCPU is Linux's CLOCK_THREAD_CPUTIME_ID. getrusage(RUSAGE_THREAD) would do on its own, but the kernel
// brings its figure up to date only at the scheduler's ticks (4 ms here), too coarse for ruleWork's blocks.
const clockThreadCPU = 3

// threadCPU is the CPU time of the calling thread (the caller locks it with runtime.LockOSThread); the process's
// elsewhere than on Linux.
func threadCPU() time.Duration {
	if runtime.GOOS != "linux" {
		return cpuTime()
	}
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPU, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return cpuTime()
	}
	return time.Duration(ts.Nano())
}

// ruleWork is a rule's own work per point: the thread CPU of its engine's Process on decoded batches of 30 minus a
// forward rule's on the same batches (the encoding of the output, which both do through Process, where the actor's
// ProcessBatch would let the forward and a filter that keeps all skip it), the two run in turn in blocks of
// 100 batches so that what the machine does meanwhile weighs on both alike (a row of engineRun minus forward's row
// measured seconds apart moved by ±300 ns on the shared machine).
func ruleWork(tb testing.TB, src string, points int) float64 {
	engines := []*rule.Engine{rule.NewEngine(loadRule(tb, src), &discard{}), rule.NewEngine(loadRule(tb, ruleSources[2].src), &discard{})}
	var dec isp.Decoder
	buf, err := dec.DecodeBatch(isp.AppendBatch(nil, makeBatch("plc-1", 30)), nil)
	if err != nil {
		tb.Fatal(err)
	}
	cpu := inTurn(points, func(k int, t time.Time) {
		for p := range buf {
			buf[p].Timestamp = t.UnixNano()
		}
		engines[k].Process(buf, t)
	})
	return cpu[0] - cpu[1]
}

// inTurn runs two ways of doing a batch of 30 points (run(0, t) and run(1, t)) in turn, in blocks of 100 batches,
// each going first every other block so that what the machine does meanwhile weighs on both alike, and returns
// the CPU time per point of each, of the calling goroutine's thread alone.
func inTurn(points int, run func(k int, t time.Time)) [2]float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var cpu [2]time.Duration
	now := time.Now()
	const block = 100
	blocks := max(points/30/block, 1)
	for i := range blocks {
		for n := range 2 {
			k := (n + i) % 2
			c0 := threadCPU()
			for j := range block {
				run(k, now.Add(time.Duration(i*block+j)*time.Millisecond))
			}
			cpu[k] += threadCPU() - c0
		}
	}
	per := float64(blocks * block * 30)
	return [2]float64{float64(cpu[0].Nanoseconds()) / per, float64(cpu[1].Nanoseconds()) / per}
}

// pathCost is the thread CPU per point of the rule actor's work on batches of 30 both ways, run in turn in blocks of
// 100 batches as ruleWork does (what the machine does meanwhile weighs on both alike): on the batch's bytes
// (ProcessRaw, the rule's own path when it has it) and decoding them first (DecodeBatch and ProcessBatch, the path of
// a rule that reads tags, and of every rule before the undecoded path). A rule without the undecoded path runs the
// decoding way in both.
func pathCost(tb testing.TB, src string, points int) (undecoded, decoded float64) {
	engines := []*rule.Engine{rule.NewEngine(loadRule(tb, src), &discard{}), rule.NewEngine(loadRule(tb, src), &discard{})}
	data := isp.AppendBatch(nil, makeBatch("plc-1", 30))
	var dec isp.Decoder
	var buf []isp.Point
	cpu := inTurn(points, func(k int, t time.Time) {
		if k == 0 {
			if _, ok := engines[0].ProcessRaw(data, t); ok {
				return
			}
		}
		var err error
		if buf, err = dec.DecodeBatch(data, buf[:0]); err != nil {
			tb.Fatal(err)
		}
		engines[k].ProcessBatch(buf, data, t)
	})
	return cpu[0], cpu[1]
}

func BenchmarkRuleEngine(b *testing.B) {
	for _, rs := range ruleSources {
		b.Run(rs.name, func(b *testing.B) {
			r := engineRun(b, rs.name, rs.src, max(b.N, 30))
			b.ReportMetric(r.NsPerPoint, "cpu-ns/point")
			b.ReportMetric(r.PointsPerS, "points/s")
			b.ReportMetric(r.AllocsPoint, "allocs/point")
			b.ReportMetric(ruleWork(b, rs.src, max(b.N, 3000)), "rule-ns/point")
			u, d := pathCost(b, rs.src, max(b.N, 3000))
			b.ReportMetric(u, "undecoded-ns/point")
			b.ReportMetric(d, "decoded-ns/point")
		})
	}
}

// BenchmarkRuleExpression compares the two engines the issue names on one `when` per point: expr-lang/expr's
// compiled bytecode against HCL's own expressions evaluated through cty.
func BenchmarkRuleExpression(b *testing.B) {
	const src = "value > 85 && quality == 1"
	b.Run("expr", func(b *testing.B) {
		r := exprRun(b, src, b.N, false)
		b.ReportMetric(r.NsPerPoint, "ns/point")
		b.ReportMetric(r.AllocsPoint, "allocs/point")
	})
	b.Run("expr-fast-path", func(b *testing.B) {
		r := exprRun(b, src, b.N, true)
		b.ReportMetric(r.NsPerPoint, "ns/point")
		b.ReportMetric(r.AllocsPoint, "allocs/point")
	})
	b.Run("hcl-cty", func(b *testing.B) {
		r := hclRun(b, src, b.N)
		b.ReportMetric(r.NsPerPoint, "ns/point")
		b.ReportMetric(r.AllocsPoint, "allocs/point")
	})
}

func timed(n int, f func(i int)) engineResult {
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	t0 := time.Now()
	for i := range n {
		f(i)
	}
	d := time.Since(t0)
	runtime.ReadMemStats(&m1)
	return engineResult{NsPerPoint: float64(d.Nanoseconds()) / float64(n), PointsPerS: float64(n) / d.Seconds(),
		AllocsPoint: float64(m1.Mallocs-m0.Mallocs) / float64(n)}
}

// exprRun evaluates a compiled `when` on the rule environment: on expr's VM (reused), or as the engine does per
// point, on the fast path (config/rule_fast.go) when the expression has one.
func exprRun(tb testing.TB, src string, n int, fast bool) engineResult {
	x, err := config.CompileExpr(src, config.ExprBool)
	if err != nil {
		tb.Fatal(err)
	}
	if fast && !x.HasFastPath() {
		tb.Fatalf("%s has no fast path", src)
	}
	var machine vm.VM
	env := &config.RuleEnv{Quality: 1}
	r := timed(n, func(i int) {
		env.Value = float64(80 + i%20)
		if fast {
			if _, err := x.EvalBool(&machine, env); err != nil {
				tb.Fatal(err)
			}
			return
		}
		out, err := machine.Run(x.Program, env)
		if err != nil {
			tb.Fatal(err)
		}
		if _, ok := out.(bool); !ok {
			tb.Fatal("not a bool")
		}
	})
	r.Name = "expr-lang/expr v1.17.8 (bytecode VM)"
	if fast {
		r.Name = "the same expr tree, fast path (Go closures)"
	}
	return r
}

// hclRun evaluates the same expression as an HCL expression: the variables made into cty values per point.
func hclRun(tb testing.TB, src string, n int) engineResult {
	x, diags := hclsyntax.ParseExpression([]byte(src), "bench", hcl.InitialPos)
	if diags.HasErrors() {
		tb.Fatal(diags)
	}
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{}}
	r := timed(n, func(i int) {
		ctx.Variables["value"] = cty.NumberFloatVal(float64(80 + i%20))
		ctx.Variables["quality"] = cty.NumberIntVal(1)
		v, d := x.Value(ctx)
		if d.HasErrors() || v.Type() != cty.Bool {
			tb.Fatal(d)
		}
	})
	r.Name = "HCL expression through cty"
	return r
}

// busRun sends processed batches of 30 on the bus to a gateway that runs one rule, and counts what the rule
// publishes on iot.rules.r.> (filter, transform and forward: one message per batch), as gatewayRun does.
func busRun(tb testing.TB, name, src string, n int) result {
	cfg := config.Default()
	// As startGateway (and the raw rate beside it): the path without durability. With JetStream on (the default
	// since issue 11) the processed stream's file store takes most of the CPU and this would measure it instead.
	cfg.NATS.JetStream.Enabled = false
	cfg.NATS.Port = -1
	cfg.Gateway.HTTPAddress = ""
	cfg.Gateway.DataDir = tb.TempDir()
	cfg.Gateway.PointSubjects = false
	cfg.Rules = []config.Rule{*loadRule(tb, src)}
	rt := startConfig(tb, cfg)
	defer func() { _ = rt.Stop() }()
	const batchSize = 30
	points := max(n, batchSize) / batchSize * batchSize
	f := newFlow(points)
	c := &counter{subject: "iot.rules.r.>", batches: true, f: f, batch: batchSize}
	if err := rt.AddActor(system.GroupSinks, system.ChildSpec{Name: "count", Kind: "sink/count", Producer: func() actor.Actor { return c }}); err != nil {
		tb.Fatal(err)
	}
	waitRunning(tb, rt, "sinks/count")
	waitRunning(tb, rt, "rules/r")
	pts := makeBatch("plc-1", batchSize)
	pub, err := nats.Connect(rt.Bus().URL)
	if err != nil {
		tb.Fatal(err)
	}
	defer pub.Close()
	return measure(tb, name, points, f, func() {
		var data []byte
		for sent := 0; sent < points; sent += batchSize {
			f.tokens <- struct{}{}
			ts := time.Now().UnixNano()
			for i := range pts {
				pts[i].Timestamp = ts
			}
			data = isp.AppendBatch(data[:0], pts)
			if err := pub.Publish("iot.processed.batch.plc-1", data); err != nil {
				tb.Error(err)
				return
			}
		}
	})
}

func BenchmarkRuleBus(b *testing.B) {
	b.Run("raw", func(b *testing.B) { rawRun(b, "raw NATS, batches of 30", b.N, 30).report(b) })
	for _, rs := range ruleSources[:3] {
		b.Run(rs.name, func(b *testing.B) { busRun(b, rs.name, rs.src, b.N).report(b) })
	}
}

// manyRules is a config of n rules, of every type in turn.
func manyRules(n int) []byte {
	var sb strings.Builder
	for i := range n {
		src := ruleSources[i%len(ruleSources)].src
		fmt.Fprintf(&sb, "%s\n", strings.Replace(src, `rule "r"`, `rule "r`+strconv.Itoa(i)+`"`, 1))
	}
	return []byte(sb.String())
}

// loadResult is what 1,000 rules cost to load and run.
type loadResult struct {
	Rules                 int
	Parse, Start          time.Duration
	ParseBytes, RunBytes  float64 // heap per rule: the parsed and compiled rule; the running actor (its engine, mailbox and subscription)
	EngineBytes, Goroutin float64 // heap per empty engine; goroutines per running rule
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func loadRun(tb testing.TB, n int) loadResult {
	src := manyRules(n)
	h0 := heap()
	t0 := time.Now()
	cfg, diags := config.Parse(src, "rules.hcl")
	parse := time.Since(t0)
	if diags.HasErrors() {
		tb.Fatal(diags)
	}
	h1 := heap()
	engines := make([]*rule.Engine, len(cfg.Rules))
	for i := range cfg.Rules {
		engines[i] = rule.NewEngine(&cfg.Rules[i], &discard{})
	}
	h2 := heap()
	runtime.KeepAlive(engines)
	engines = nil

	cfg.NATS.Port = -1
	cfg.Gateway.HTTPAddress = ""
	cfg.Gateway.DataDir = tb.TempDir()
	g0 := runtime.NumGoroutine()
	h3 := heap()
	rt := system.New(cfg)
	t1 := time.Now()
	if err := rt.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	start := time.Since(t1)
	h4 := heap()
	g1 := runtime.NumGoroutine()
	_ = rt.Stop()
	return loadResult{Rules: n, Parse: parse, Start: start,
		ParseBytes:  float64(int64(h1)-int64(h0)) / float64(n),
		EngineBytes: float64(int64(h2)-int64(h1)) / float64(n),
		RunBytes:    float64(int64(h4)-int64(h3)) / float64(n),
		Goroutin:    float64(g1-g0) / float64(n)}
}

func BenchmarkRulesLoaded(b *testing.B) {
	r := loadRun(b, 1000)
	b.ReportMetric(float64(r.Parse.Milliseconds()), "parse-ms")
	b.ReportMetric(float64(r.Start.Milliseconds()), "start-ms")
	b.ReportMetric(r.ParseBytes, "parsed-B/rule")
	b.ReportMetric(r.RunBytes, "running-B/rule")
}

// seriesRun runs a tumbling aggregate over series series (devices of 30 keys), batches of 30, at a simulated
// 100k points/s (the clock advances 300 µs per batch), windows of 1 s closing on the way.
func seriesRun(tb testing.TB, series, points int) (engineResult, float64) {
	r := loadRule(tb, ruleSources[4].src)
	out := &discard{}
	e := rule.NewEngine(r, out)
	devices := series / 30
	batches := make([][]isp.Point, devices)
	for d := range batches {
		batches[d] = makeBatch("dev-"+strconv.Itoa(d), 30)
	}
	now := time.Now()
	// One round first, so that every series exists before measuring.
	for d := range batches {
		e.Process(batches[d], now)
	}
	n := max(points/30, devices)
	res := timed(n, func(i int) {
		now = now.Add(300 * time.Microsecond)
		b := batches[i%devices]
		e.Process(b, now)
		if i%300 == 0 {
			e.Tick(now)
		}
	})
	res.NsPerPoint /= 30
	res.PointsPerS *= 30
	res.AllocsPoint /= 30
	res.Name = fmt.Sprintf("aggregate over %d series", series)
	runtime.KeepAlive(e)
	return res, float64(out.n)
}

func BenchmarkAggregateSeries(b *testing.B) {
	r, _ := seriesRun(b, 10000, max(b.N, 30000))
	b.ReportMetric(r.PointsPerS, "points/s")
	b.ReportMetric(r.NsPerPoint, "ns/point")
	b.ReportMetric(r.AllocsPoint, "allocs/point")
}

// rulesReport runs the rule benchmarks at fixed sizes and writes their section of REPORT.md.
func rulesReport(t *testing.T, sb *strings.Builder) {
	const n = 300_000
	fmt.Fprintf(sb, "\n## Rules\n\n")
	time.Sleep(time.Second) // what earlier runs left (goroutines ending, finalizers) must not count as the rules' heap
	l := loadRun(t, 1000)
	t.Logf("1000 rules: parse %s, start %s, %.0f B/rule parsed, %.0f B/rule running", l.Parse, l.Start, l.ParseBytes, l.RunBytes)
	fmt.Fprintf(sb, "1,000 rules (every type in turn): parsed and compiled in %s (%.0f bytes each on the heap), engines %.0f bytes\n",
		l.Parse.Round(time.Millisecond), l.ParseBytes, l.EngineBytes)
	fmt.Fprintf(sb, "each empty; a gateway with them started in %s, %.0f bytes and %.1f goroutines per running rule (actor,\n",
		l.Start.Round(time.Millisecond), l.RunBytes, l.Goroutin)
	sb.WriteString("mailbox, subscription, clock).\n")
	sb.WriteString("\n")
	sb.WriteString("The expression engines on one `when = \"value > 85 && quality == 1\"` per point, each compiled or parsed once and\n")
	sb.WriteString("evaluated with the point's fields (expr: a reused VM on the rule environment; the fast path: the same checked\n")
	sb.WriteString("expr tree as Go closures, config/rule_fast.go, what the engine runs for such an expression; HCL: its two\n")
	sb.WriteString("variables made cty values per point):\n\n")
	sb.WriteString("| engine | ns/point | allocs/point |\n|---|---:|---:|\n")
	const when = "value > 85 && quality == 1"
	for _, r := range []engineResult{exprRun(t, when, n, false), exprRun(t, when, n, true), hclRun(t, when, n)} {
		t.Logf("%-32s %8.0f ns/point %5.1f allocs/point", r.Name, r.NsPerPoint, r.AllocsPoint)
		fmt.Fprintf(sb, "| %s | %.0f | %.1f |\n", r.Name, r.NsPerPoint, r.AllocsPoint)
	}
	sb.WriteString("\nOne rule of each type, the rule actor's own work on batches of 30 as it does it (a filter, transform or forward\n")
	sb.WriteString("that reads no tags on the batch's bytes, proven to be the encoder's, without decoding it, its output made of\n")
	sb.WriteString("their elements, the transform's with only key, value, type and quality encoded again; alert and aggregate decode\n")
	sb.WriteString("the batch), on one core: the CPU time of the thread that runs it (CLOCK_THREAD_CPUTIME_ID), so what other processes\n")
	sb.WriteString("and the GC's workers take is not in it. The forward rule is nearly the reading alone. The rule's own work (the\n")
	sb.WriteString("aim: at most 150 ns for a filter or a transform) is the last column: the rule's engine minus a forward's on the\n")
	sb.WriteString("same decoded batches, both encoding their output, the two run in turn in blocks of 100 batches (ruleWork); alert\n")
	sb.WriteString("and aggregate publish nothing per point, so theirs can be below zero. The last two columns are the actor's work\n")
	sb.WriteString("both ways, run in turn in blocks of 100 batches (pathCost): on the batch's bytes, and decoding them first, as\n")
	sb.WriteString("every rule did before the undecoded path (alert and aggregate decode in both):\n\n")
	sb.WriteString("| rule | points/s | CPU ns/point | allocs/point | rule work ns/point | undecoded ns/point | decoded ns/point |\n")
	sb.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, rs := range ruleSources {
		r := engineRun(t, rs.name, rs.src, n)
		w := ruleWork(t, rs.src, n)
		u, d := pathCost(t, rs.src, n)
		t.Logf("rule %-12s %10.0f points/s %6.0f ns/point %5.2f allocs/point %5.0f ns rule work, %5.0f undecoded, %5.0f decoded",
			r.Name, r.PointsPerS, r.NsPerPoint, r.AllocsPoint, w, u, d)
		fmt.Fprintf(sb, "| %s | %.0f | %.0f | %.2f | %.0f | %.0f | %.0f |\n", r.Name, r.PointsPerS, r.NsPerPoint, r.AllocsPoint, w, u, d)
	}
	sb.WriteString("\nThrough the bus: processed batches of 30 published to a gateway running one rule (JetStream off, as in the raw\n")
	sb.WriteString("row), its output counted by a sink actor, beside the raw NATS rate for batches of 30 in the same run (whole\n")
	sb.WriteString("process: publisher, embedded server, rule, sink). The aim is 1M points/s through one rule on 2 cores; the rule\n")
	sb.WriteString("path is two bus hops (in, out) and two readings (the rule's, the sink's decoding) where the raw row has one; the\n")
	sb.WriteString("filter (which keeps every point here) and the forward republish the batch as it came, the transform re-encodes\n")
	sb.WriteString("only the fields it changes:\n\n")
	sb.WriteString("| run | points/s | CPU µs/point | allocs/point |\n|---|---:|---:|---:|\n")
	bus := []result{rawRun(t, "raw NATS, batches of 30", n, 30)}
	for _, rs := range ruleSources[:3] {
		bus = append(bus, busRun(t, "gateway, one "+rs.name+" rule", rs.src, n))
	}
	for _, r := range bus {
		t.Logf("%-32s %10.0f points/s %8s cpu/point", r.Name, r.PointsPerSec, r.CPUPerPoint)
		fmt.Fprintf(sb, "| %s | %.0f | %.2f | %.1f |\n", r.Name, r.PointsPerSec, float64(r.CPUPerPoint.Nanoseconds())/1000, r.AllocsPoint)
	}
	s, _ := seriesRun(t, 10000, 3_000_000)
	t.Logf("%s: %.0f points/s, %.0f ns/point", s.Name, s.PointsPerS, s.NsPerPoint)
	fmt.Fprintf(sb, "\nA tumbling 1 s aggregate (avg, min, max, count) over 10,000 series (334 devices × 30 keys), batches of 30 at\n")
	fmt.Fprintf(sb, "a simulated 100k points/s: %.0f points/s on one core, %.0f ns and %.2f allocations per point.\n", s.PointsPerS, s.NsPerPoint, s.AllocsPoint)
}
