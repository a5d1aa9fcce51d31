package bench

// The side-by-side with Telegraf (issue 13): the same Modbus TCP simulator (one port per device, its own process),
// Telegraf 1.39.3 (inputs.modbus in request style, optimization "max_insert", outputs.file in influx format) and
// `iotgw run` (Modbus devices → processor → file sink in JSON lines), each its own process, one at
// a time in interleaved windows (T, i, [before], T, i, …), so drift in the machine's load falls on all alike.
// CPU (utime+stime) comes from /proc/PID/stat, context switches from every thread's /proc/PID/task/*/status,
// RSS from /proc/PID/status; points are counted in what each wrote during the window (a Telegraf line carries
// one field per register; an iotgw line is one point).
//
//	cd "$(git rev-parse --show-toplevel)" && GOBIN=$PWD/.peer go install -tags "custom,inputs.modbus,inputs.internal,outputs.file,outputs.discard,serializers.influx" github.com/influxdata/telegraf/cmd/telegraf@v1.39.3
//	IOTGW_PEER=1 go test -run '^TestPeer$' -v -timeout 2h ./bench/
//
// Settings (environment): IOTGW_PEER_WARMUP (15s), IOTGW_PEER_WINDOW (40s), IOTGW_PEER_WINDOWS (3),
// IOTGW_PEER_WORKLOADS (1,2,3; 4 is 1,000 devices for RSS), IOTGW_PEER_ONLY (the contenders to run, e.g. "iotgw"), IOTGW_PEER_TELEGRAF (../.peer/telegraf), IOTGW_PEER_BEFORE (a second iotgw
// binary measured in the same run, e.g. one built from main), IOTGW_PEER_JETSTREAM=1 (the gateway with JetStream
// on; off by default, as Telegraf keeps nothing), IOTGW_PEER_PROFILE=DIR (iotgw runs with -cpuprofile into DIR), IOTGW_PEER_MEMPROFILE=DIR (this commit's iotgw writes a heap profile into DIR at its end), IOTGW_PEER_REPORT=1 (writes its section of bench/REPORT.md, which TestReport carries over), IOTGW_PEER_MEMORY_LIMIT=90MB (adds
// iotgw-memlimit: the same binary with gateway.memory_limit), IOTGW_PEER_SINK=console (iotgw writes through the
// console sink to stdout instead of the file sink).
// It is not part of CI: it runs only with IOTGW_PEER set and skips when the Telegraf binary is absent.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iotgw/iotgw/sidecar/modbussim"
)

// peerWorkload is one row of the table.
type peerWorkload struct {
	name     string
	devices  int
	regs     int
	typ      string // uint16 | float32
	interval time.Duration
}

func (w peerWorkload) target() float64 { return float64(w.devices*w.regs) / w.interval.Seconds() }

var peerWorkloads = []peerWorkload{
	{"100 devices × 30 uint16 every 100 ms", 100, 30, "uint16", 100 * time.Millisecond},
	{"100 devices × 30 float32 every 100 ms", 100, 30, "float32", 100 * time.Millisecond},
	{"10 devices × 100 uint16 every 10 ms", 10, 100, "uint16", 10 * time.Millisecond},
	// 4, only when asked for: the memory aim (1,000 Modbus devices under 100 MB RSS).
	{"1000 devices × 30 uint16 every 1 s", 1000, 30, "uint16", time.Second},
}

// peerSample is one contender's window.
type peerSample struct {
	cpuPerPoint  time.Duration
	pointsPerSec float64
	ctxPerSec    float64
	rssMiB       float64
}

// contender starts one process polling the workload's ports and writing to out; count counts the points in a
// span of what it wrote.
type contender struct {
	name  string
	start func(t *testing.T, w peerWorkload, ports []int, dir, out string) *exec.Cmd
	count func(b []byte) int64
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}

func TestPeer(t *testing.T) {
	if os.Getenv("IOTGW_PEER") == "" {
		t.Skip("set IOTGW_PEER=1 to run the side-by-side with Telegraf (minutes; not part of CI)")
	}
	telegraf := os.Getenv("IOTGW_PEER_TELEGRAF")
	if telegraf == "" {
		telegraf, _ = filepath.Abs("../.peer/telegraf")
	}
	only := os.Getenv("IOTGW_PEER_ONLY") // e.g. "iotgw" to profile it alone: then Telegraf need not be built
	if _, err := os.Stat(telegraf); err != nil && (only == "" || slices.Contains(strings.Split(only, ","), "telegraf")) {
		t.Skipf("no Telegraf binary at %s: build it with GOBIN=$PWD/.peer go install -tags \"custom,inputs.modbus,inputs.internal,outputs.file,outputs.discard,serializers.influx\" github.com/influxdata/telegraf/cmd/telegraf@v1.39.3", telegraf)
	}
	warm, window := envDuration("IOTGW_PEER_WARMUP", 15*time.Second), envDuration("IOTGW_PEER_WINDOW", 40*time.Second)
	windows := 3
	if n, err := strconv.Atoi(os.Getenv("IOTGW_PEER_WINDOWS")); err == nil && n > 0 {
		windows = n
	}
	workloads := peerWorkloads[:3]
	if s := os.Getenv("IOTGW_PEER_WORKLOADS"); s != "" {
		workloads = nil
		for _, f := range strings.Split(s, ",") {
			i, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || i < 1 || i > len(peerWorkloads) {
				t.Fatalf("IOTGW_PEER_WORKLOADS: %q is not one of 1..%d", f, len(peerWorkloads))
			}
			workloads = append(workloads, peerWorkloads[i-1])
		}
	}
	simProcess(t) // builds the iotgw binary (iotgwBin) once
	contenders := []contender{
		{name: "telegraf", start: telegrafStart(telegraf), count: countInfluxFields},
		{name: "iotgw", start: iotgwStart(iotgwBin, ""), count: countLines},
	}
	if limit := os.Getenv("IOTGW_PEER_MEMORY_LIMIT"); limit != "" { // e.g. "90MB": the same binary under gateway.memory_limit
		contenders = append(contenders, contender{name: "iotgw-memlimit", start: iotgwStart(iotgwBin, limit), count: countLines})
	}
	if before := os.Getenv("IOTGW_PEER_BEFORE"); before != "" {
		contenders = append(contenders, contender{name: "iotgw-before", start: iotgwStart(before, ""), count: countLines})
	}
	if only != "" {
		var keep []contender
		for _, c := range contenders {
			if slices.Contains(strings.Split(only, ","), c.name) {
				keep = append(keep, c)
			}
		}
		contenders = keep
	}
	var report strings.Builder
	ratios := map[string]float64{} // iotgw's CPU per point over Telegraf's, by workload
	fmt.Fprintf(&report, "| workload | contender | CPU/point | points/s (of target) | ctx switches/s | RSS MiB |\n| --- | --- | ---: | ---: | ---: | ---: |\n")
	for _, w := range workloads {
		ports := peerSimulator(t, w.devices)
		samples := map[string][]peerSample{}
		for win := 0; win < windows; win++ {
			for _, c := range contenders {
				s := peerWindow(t, c, w, ports, warm, window)
				t.Logf("%s: %s window %d: %.2f µs/point, %.0f points/s (%.1f%% of %.0f), %.0f ctx/s, %.1f MiB",
					w.name, c.name, win+1, float64(s.cpuPerPoint.Nanoseconds())/1000, s.pointsPerSec,
					100*s.pointsPerSec/w.target(), w.target(), s.ctxPerSec, s.rssMiB)
				samples[c.name] = append(samples[c.name], s)
			}
		}
		var tele peerSample
		for _, c := range contenders {
			m := medianSample(samples[c.name])
			if c.name == "telegraf" {
				tele = m
			}
			if c.name == "iotgw" && tele.cpuPerPoint > 0 {
				ratios[w.name] = float64(m.cpuPerPoint) / float64(tele.cpuPerPoint)
			}
			ratio := ""
			if c.name != "telegraf" && tele.cpuPerPoint > 0 {
				ratio = fmt.Sprintf(" (%.2f× Telegraf's)", float64(m.cpuPerPoint)/float64(tele.cpuPerPoint))
			}
			keep := ""
			if m.pointsPerSec < 0.98*w.target() {
				keep = " — DID NOT KEEP UP"
			}
			fmt.Fprintf(&report, "| %s | %s | %.2f µs%s | %.0f (%.1f%%)%s | %.0f | %.0f |\n", w.name, c.name,
				float64(m.cpuPerPoint.Nanoseconds())/1000, ratio, m.pointsPerSec, 100*m.pointsPerSec/w.target(), keep,
				m.ctxPerSec, m.rssMiB)
		}
	}
	t.Logf("medians of %d windows of %s after %s of warm-up, %d CPUs:\n%s", windows, window, warm, runtime.NumCPU(), report.String())
	if os.Getenv("IOTGW_PEER_REPORT") != "" {
		var names []string
		for _, c := range contenders {
			names = append(names, c.name)
		}
		settings := fmt.Sprintf("medians of %d window(s) of %s after %s of warm-up each, %d CPUs; contenders %s",
			windows, window, warm, runtime.NumCPU(), strings.Join(names, ", "))
		if before := os.Getenv("IOTGW_PEER_BEFORE"); before != "" {
			settings += fmt.Sprintf(" (iotgw-before: the binary %s; IOTGW_PEER_BEFORE_COMMIT names what it was built from)", before)
			if c := os.Getenv("IOTGW_PEER_BEFORE_COMMIT"); c != "" {
				settings = strings.Replace(settings, "; IOTGW_PEER_BEFORE_COMMIT names what it was built from", ", built from "+c, 1)
			}
		}
		old, err := os.ReadFile("REPORT.md")
		if err != nil {
			t.Fatalf("IOTGW_PEER_REPORT: %v (TestReport writes REPORT.md first)", err)
		}
		section := peerSection(settings, report.String(), ratios, workloads)
		if err := os.WriteFile("REPORT.md", []byte(replaceSection(string(old), peerHeading, "## Modbus, poll to sink", section)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("wrote its section into bench/REPORT.md")
	}
}

// peerWindow starts c, lets it warm up, measures one window and stops it.
func peerWindow(t *testing.T, c contender, w peerWorkload, ports []int, warm, window time.Duration) peerSample {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	cmd := c.start(t, w, ports, dir, out)
	defer stopProcess(cmd)
	time.Sleep(warm) // a warm-up, not a wait for a condition: nothing is asserted on its length
	pid := cmd.Process.Pid
	cpu0, ctx0, off0 := procCPU(t, pid), procCtxSwitches(pid), fileSize(out)
	t0 := time.Now()
	time.Sleep(window)
	cpu1, ctx1, off1, el := procCPU(t, pid), procCtxSwitches(pid), fileSize(out), time.Since(t0)
	rss := procRSS(pid)
	if off1 <= off0 {
		logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		var tail []byte
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			tail = append(tail, b[max(len(b)-2000, 0):]...)
		}
		t.Fatalf("%s wrote nothing in %s; its log ends:\n%s", c.name, window, tail)
	}
	points := countSpan(t, out, off0, off1, c.count)
	return peerSample{
		cpuPerPoint:  (cpu1 - cpu0) / time.Duration(points),
		pointsPerSec: float64(points) / el.Seconds(),
		ctxPerSec:    float64(ctx1-ctx0) / el.Seconds(),
		rssMiB:       float64(rss) / (1 << 20),
	}
}

func medianSample(s []peerSample) peerSample {
	med := func(f func(peerSample) float64) float64 {
		v := make([]float64, len(s))
		for i := range s {
			v[i] = f(s[i])
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	return peerSample{
		cpuPerPoint:  time.Duration(med(func(p peerSample) float64 { return float64(p.cpuPerPoint) })),
		pointsPerSec: med(func(p peerSample) float64 { return p.pointsPerSec }),
		ctxPerSec:    med(func(p peerSample) float64 { return p.ctxPerSec }),
		rssMiB:       med(func(p peerSample) float64 { return p.rssMiB }),
	}
}

// peerSimulator runs the simulator in a process of its own (this test binary, TestPeerSimHelper) with one port
// per device, each serving modbussim.Demo's units; it returns the ports (the simulator picks them: no race with
// other programs for a port chosen here).
func peerSimulator(t testing.TB, devices int) []int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPeerSimHelper$")
	cmd.Env = append(os.Environ(), "IOTGW_PEER_SIM_DEVICES="+strconv.Itoa(devices))
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProcess(cmd) })
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if list, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			var ports []int
			for _, w := range strings.Split(list, ",") {
				p, err := strconv.Atoi(w)
				if err != nil {
					t.Fatalf("simulator: %q", sc.Text())
				}
				ports = append(ports, p)
			}
			return ports
		}
		t.Log("simulator: " + sc.Text())
	}
	t.Fatal("the simulator process did not start")
	return nil
}

// TestPeerSimHelper is the simulator process of TestPeer (it runs only when TestPeer starts it).
func TestPeerSimHelper(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("IOTGW_PEER_SIM_DEVICES"))
	if err != nil {
		t.Skip("the simulator process of TestPeer")
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	ports := make([]string, n)
	for i := range ports {
		cfg := modbussim.Demo()
		cfg.Listen = "127.0.0.1:0"
		srv, err := modbussim.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = srv.Stop() }()
		ports[i] = strconv.Itoa(srv.Addr().(*net.TCPAddr).Port)
	}
	fmt.Println("listening " + strings.Join(ports, ","))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
}

func telegrafStart(bin string) func(*testing.T, peerWorkload, []int, string, string) *exec.Cmd {
	return func(t *testing.T, w peerWorkload, ports []int, dir, out string) *exec.Cmd {
		var b strings.Builder
		fmt.Fprintf(&b, "[agent]\n  interval = %q\n  round_interval = true\n  metric_batch_size = 5000\n  metric_buffer_limit = 100000\n"+
			"  collection_jitter = \"0s\"\n  flush_interval = \"1s\"\n  flush_jitter = \"0s\"\n  omit_hostname = true\n  quiet = true\n\n", w.interval.String())
		fmt.Fprintf(&b, "[[outputs.file]]\n  files = [%q]\n  data_format = \"influx\"\n\n", out)
		typ, step := "UINT16", 1
		if w.typ == "float32" {
			typ, step = "FLOAT32", 2
		}
		for i, p := range ports {
			fmt.Fprintf(&b, "[[inputs.modbus]]\n  name = \"meter-%d\"\n  controller = \"tcp://127.0.0.1:%d\"\n  timeout = \"1s\"\n"+
				"  configuration_type = \"request\"\n  [[inputs.modbus.request]]\n    slave_id = 2\n    byte_order = \"ABCD\"\n"+
				"    register = \"holding\"\n    optimization = \"max_insert\"\n    optimization_max_register_fill = 50\n    fields = [\n", i, p)
			for r := 0; r < w.regs; r++ {
				fmt.Fprintf(&b, "      { address = %d, name = \"r%d\", type = %q },\n", r*step, r, typ)
			}
			b.WriteString("    ]\n\n")
		}
		conf := filepath.Join(dir, "telegraf.conf")
		if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "--config", conf)
		cmd.Stdout, cmd.Stderr = logFile(t, dir, "telegraf.log"), logFile(t, dir, "telegraf.log")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
}

// iotgwStart runs bin on the workload; memoryLimit, when not "", is written as gateway.memory_limit (a binary
// from before that setting refuses it).
func iotgwStart(bin, memoryLimit string) func(*testing.T, peerWorkload, []int, string, string) *exec.Cmd {
	return func(t *testing.T, w peerWorkload, ports []int, dir, out string) *exec.Cmd {
		var b strings.Builder
		js := os.Getenv("IOTGW_PEER_JETSTREAM") != ""
		limit := ""
		if memoryLimit != "" {
			limit = fmt.Sprintf("  memory_limit = %q\n", memoryLimit)
		}
		fmt.Fprintf(&b, "gateway {\n  log_level = \"warn\"\n  http_address = \"\"\n  point_subjects = false\n  data_dir = %q\n%s}\n", filepath.Join(dir, "data"), limit)
		fmt.Fprintf(&b, "nats {\n  port = %d\n  jetstream { enabled = %t }\n}\n", freePort(t), js)
		fileSink := peerSink() == "file"
		if fileSink {
			// The file sink (issue 13's measurement once issue 11 landed it): JSON lines into out, synced every
			// second like Telegraf's flush_interval here, never rotated while the windows count its lines.
			fmt.Fprintf(&b, "sink \"file\" {\n  type = \"file\"\n  path = %q\n  format = \"jsonl\"\n  sync = \"interval\"\n"+
				"  rotate_size = \"0\"\n  rotate_age = \"0s\"\n}\n", out)
		} else {
			fmt.Fprintf(&b, "sink \"console\" {\n  type = \"console\"\n  format = \"json\"\n}\n")
		}
		step := 1
		if w.typ == "float32" {
			step = 2
		}
		for i, p := range ports {
			fmt.Fprintf(&b, "device \"meter-%d\" {\n  driver = \"modbus\"\n  address = \"127.0.0.1:%d\"\n  unit_id = 2\n  interval = %q\n", i, p, w.interval.String())
			for r := 0; r < w.regs; r++ {
				fmt.Fprintf(&b, "  register \"r%d\" {\n    address = %d\n    type = %q\n  }\n", r, r*step, w.typ)
			}
			b.WriteString("}\n")
		}
		conf := filepath.Join(dir, "gateway.hcl")
		if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"run", "-config", conf}
		if prof := os.Getenv("IOTGW_PEER_PROFILE"); prof != "" {
			args = append(args, "-cpuprofile", filepath.Join(prof, fmt.Sprintf("%s-%d.prof", filepath.Base(bin), time.Now().UnixNano())))
		}
		logDir := dir
		if prof := os.Getenv("IOTGW_PEER_MEMPROFILE"); prof != "" && bin == iotgwBin { // this commit's binary only: older ones lack the flag
			args = append(args, "-memprofile", filepath.Join(prof, fmt.Sprintf("heap-%d.prof", time.Now().UnixNano())))
			logDir = prof // its log's last line has the runtime's memory figures
		}
		cmd := exec.Command(bin, args...)
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = f, logFile(t, logDir, "iotgw.log")
		if fileSink { // out is the sink's; it was created empty so the count starts at zero
			cmd.Stdout = cmd.Stderr
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
		return cmd
	}
}

func logFile(t *testing.T, dir, name string) *os.File {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// stopProcess ends cmd with SIGTERM (so iotgw writes its profile), SIGKILL after 10 s.
func stopProcess(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on Linux for every architecture Go supports.
const clockTick = 10 * time.Millisecond

// procCPU is a process's utime+stime, all threads.
func procCPU(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:])) // after "pid (comm) ": state is field 3
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * clockTick
}

// procCtxSwitches sums voluntary and involuntary context switches over a process's live threads
// (/proc/PID/status alone counts the main thread's).
func procCtxSwitches(pid int) int64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	var n int64
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n
}

// procRSS is VmRSS in bytes.
func procRSS(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// countSpan counts the points of the whole lines that end in [off0, off1) of path.
func countSpan(t *testing.T, path string, off0, off1 int64, count func([]byte) int64) int64 {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Start after the first newline at or past off0-1, so the line that ends first in the window counts once.
	r := bufio.NewReaderSize(io.NewSectionReader(f, max(off0-1, 0), off1-max(off0-1, 0)), 1<<20)
	if off0 > 0 {
		if _, err := r.ReadSlice('\n'); err != nil {
			return 0
		}
	}
	var n int64
	for {
		line, err := r.ReadSlice('\n')
		if err != nil { // io.EOF: a partial last line belongs to the next window
			return n
		}
		n += count(line)
	}
}

// peerSink is the sink iotgw writes through: "file" (the default: issue 13 asks for the file sink once it exists)
// or "console" (JSON on stdout redirected to the file, as the first table was measured), from
// IOTGW_PEER_SINK.
func peerSink() string {
	if s := os.Getenv("IOTGW_PEER_SINK"); s == "console" {
		return s
	}
	return "file"
}

// countLines: an iotgw line is one point (the file sink's jsonl, or the console's JSON).
func countLines([]byte) int64 { return 1 }

// countInfluxFields counts the fields of an influx line ("measurement,tags fields timestamp"; our tags and
// field names hold no spaces or commas).
func countInfluxFields(line []byte) int64 {
	f := bytes.Fields(line)
	if len(f) < 2 {
		return 0
	}
	return int64(bytes.Count(f[1], []byte{','}) + 1)
}
