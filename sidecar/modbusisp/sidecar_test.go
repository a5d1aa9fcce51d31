package modbusisp

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/iotgw/iotgw/isp"
	"github.com/iotgw/iotgw/sidecar/modbussim"
	"github.com/rs/zerolog"
)

// startPymodbus starts Debian's python3-pymodbus as an independent Modbus TCP server with known values ("rtu" in
// options: RTU framed over TCP). Without it the test skips (naming the package), or fails when CI is set.
func startPymodbus(t *testing.T, values string, options ...string) string {
	t.Helper()
	testenv.Pymodbus(t)
	port := freePort(t)
	cmd := exec.Command(testenv.Python, append([]string{"../../testdata/pymodbus_server.py", strconv.Itoa(port), values}, options...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("pymodbus server did not start")
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// frames collects DATA frames from the sidecar.
type frames struct {
	mu  sync.Mutex
	all [][]isp.Point
}

func (f *frames) add(pts []isp.Point) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.all = append(f.all, append([]isp.Point(nil), pts...))
}

func (f *frames) last(t *testing.T, n int) []isp.Point {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		if len(f.all) >= n {
			pts := f.all[len(f.all)-1]
			f.mu.Unlock()
			return pts
		}
		f.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("fewer than %d DATA frames", n)
	return nil
}

func startSidecar(t *testing.T) (*Sidecar, *isp.Client, *frames) {
	t.Helper()
	s := New(Options{Listen: "127.0.0.1:0", Name: "modbus-test", Log: zerolog.Nop()})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	f := &frames{}
	c, err := isp.Dial(context.Background(), isp.ClientConfig{Address: s.Addr()}, isp.ClientEvents{Data: f.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return s, c, f
}

// TestReadsAnIndependentServer polls pymodbus through the sidecar: CONFIG accepted, each type decoded, DATA
// frames of at most 100 points, STATUS answered.
func TestReadsAnIndependentServer(t *testing.T) {
	// float32 123.456 = 0x42F6E979 at 0-1; int16 -5 at 2; uint32 70000 = 0x00011170 at 10-11; input 235 at 0;
	// coils 1,0,1.
	addr := startPymodbus(t, `{"hr":[17142,59769,65531,0,0,0,0,0,0,0,1,4464],"ir":[235],"co":[1,0,1]}`)
	_, c, f := startSidecar(t)
	cfg := isp.ConfigPayload{Mode: "tcp", Address: addr, TimeoutMS: 2000, IntervalMS: 50, Registers: []isp.Register{
		{Key: "temperature", Address: 0, Quantity: 2, Type: "float32", Function: 3, DeviceID: 1, Tags: map[string]string{"unit": "C"}},
		{Key: "offset", Address: 2, Quantity: 1, Type: "int16", Function: 3, Scale: 0.1, DeviceID: 1},
		{Key: "counter", Address: 10, Quantity: 2, Type: "uint32", Function: 3, DeviceID: 1},
		{Key: "flow", Address: 0, Quantity: 1, Type: "uint16", Function: 4, Scale: 0.1, DeviceID: 1},
		{Key: "pump", Address: 0, Quantity: 1, Type: "bool", Function: 1, DeviceID: 1},
		{Key: "valve", Address: 1, Quantity: 1, Type: "bool", Function: 1, DeviceID: 1},
	}}
	if _, err := c.Configure(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	pts := f.last(t, 2)
	got := map[string]isp.Point{}
	for _, p := range pts {
		got[p.Key] = p
	}
	check := func(key string, want float64) {
		t.Helper()
		p, ok := got[key]
		if !ok {
			t.Errorf("no point %s in %v", key, pts)
			return
		}
		v, _ := p.Value.Float()
		if p.Quality != isp.QualityGood || math.Abs(v-want) > 1e-4 {
			t.Errorf("%s = %v (quality %d), want %v", key, p.Value, p.Quality, want)
		}
	}
	check("temperature", 123.456)
	check("offset", -0.5)
	check("counter", 70000)
	check("flow", 23.5)
	check("pump", 1)
	check("valve", 0)
	temp := got["temperature"]
	if u, _ := temp.Tag("unit"); u != "C" || temp.Source != "modbus-test" {
		t.Errorf("temperature point %+v: want its unit tag and the sidecar's name as source", got["temperature"])
	}

	msg, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := msg.Response()
	if err != nil || !resp.Success {
		t.Fatalf("status %s: %v", msg.Payload, err)
	}
}

// TestFailedReadsAreBadQuality: a device that does not answer gives quality-0 points and a last error in STATUS,
// and the sidecar keeps polling.
func TestFailedReadsAreBadQuality(t *testing.T) {
	s, c, f := startSidecar(t)
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nothing listens there
	cfg := isp.ConfigPayload{Mode: "tcp", Address: dead, TimeoutMS: 200, IntervalMS: 50, Registers: []isp.Register{
		{Key: "a", Address: 0, Quantity: 1, Type: "uint16", Function: 3, DeviceID: 1},
		{Key: "b", Address: 100, Quantity: 1, Type: "uint16", Function: 3, DeviceID: 1},
	}}
	if _, err := c.Configure(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	pts := f.last(t, 2)
	if len(pts) != 2 {
		t.Fatalf("%d points, want 2", len(pts))
	}
	for _, p := range pts {
		if p.Quality != isp.QualityBad {
			t.Errorf("point %s quality %d, want 0 for a failed read", p.Key, p.Quality)
		}
	}
	st := s.Status(context.Background()).(map[string]any)
	if st["last_error"] == nil || st["failed_reads"].(int64) == 0 {
		t.Errorf("status %v: want the failed reads counted and the last error", st)
	}
}

// TestRejectsBadConfig: a CONFIG the sidecar cannot poll is rejected with a reason, and it keeps the old one.
func TestRejectsBadConfig(t *testing.T) {
	_, c, _ := startSidecar(t)
	for _, cfg := range []isp.ConfigPayload{
		{Mode: "carrier-pigeon", Address: "x", Registers: []isp.Register{{Key: "a", Quantity: 1, Type: "uint16", Function: 3}}},
		{Mode: "tcp", Address: "x", Registers: []isp.Register{{Key: "a", Quantity: 1, Type: "float16", Function: 3}}},
		{Mode: "tcp", Address: "x", Registers: []isp.Register{{Key: "a", Quantity: 1, Type: "int16", Function: 1}}},
		{Mode: "tcp", Address: "x", Serial: &isp.Serial{BaudRate: 19200}, Registers: []isp.Register{{Key: "a", Quantity: 1, Type: "uint16", Function: 3}}},
		{Mode: "rtu", Address: "/dev/ttyUSB0", Serial: &isp.Serial{Parity: "X"}, Registers: []isp.Register{{Key: "a", Quantity: 1, Type: "uint16", Function: 3}}},
		{Mode: "tcp", Address: "x", Retries: -1, Registers: []isp.Register{{Key: "a", Quantity: 1, Type: "uint16", Function: 3}}},
		{Mode: "tcp", Address: "x", Registers: []isp.Register{{Key: "temp°", Quantity: 1, Type: "uint16", Function: 3}}},
	} {
		if _, err := c.Configure(context.Background(), cfg); err == nil {
			t.Errorf("CONFIG %+v accepted, want it rejected", cfg)
		}
	}
}

func TestBatchesOfAtMost100(t *testing.T) {
	regs := make([]isp.Register, 250)
	for i := range regs {
		regs[i] = isp.Register{Key: "r" + strconv.Itoa(i), Address: uint16(i), Quantity: 1, Type: "uint16", Function: 3, DeviceID: 1}
	}
	addr := startPymodbus(t, `{"hr":[1,2,3]}`)
	_, c, f := startSidecar(t)
	if _, err := c.Configure(context.Background(), isp.ConfigPayload{Mode: "tcp", Address: addr, TimeoutMS: 2000, IntervalMS: 1000, Registers: regs}); err != nil {
		t.Fatal(err)
	}
	f.last(t, 3)
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, fr := range f.all[:3] {
		if len(fr) > MaxBatch {
			t.Errorf("frame %d has %d points, want at most %d", i, len(fr), MaxBatch)
		}
	}
	if n := len(f.all[0]) + len(f.all[1]) + len(f.all[2]); n != 250 {
		t.Errorf("first poll: %d points in 3 frames, want 250", n)
	}
}

// startSim runs the in-process Modbus simulator with one unit of id 1 until the test ends.
func startSim(t *testing.T) *modbussim.Server {
	t.Helper()
	srv, err := modbussim.New(modbussim.Config{Listen: "127.0.0.1:0", Units: []modbussim.Unit{{ID: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	return srv
}

// TestReadsTheSimulator polls the in-process simulator through the sidecar: values, a register's tags with its
// unit, the sidecar's name as source.
func TestReadsTheSimulator(t *testing.T) {
	srv := startSim(t)
	if err := srv.SetRegister(1, modbussim.Holding, 5, 1234, 0xFFFE); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetBit(1, modbussim.Coil, 3, true); err != nil {
		t.Fatal(err)
	}
	_, c, f := startSidecar(t)
	cfg := isp.ConfigPayload{Mode: "tcp", Address: srv.Addr().String(), TimeoutMS: 1000, IntervalMS: 50, Retries: 1,
		Registers: []isp.Register{
			{Key: "level", Address: 5, Quantity: 1, Type: "uint16", Function: 3, DeviceID: 1, Tags: map[string]string{"unit": "mm", "zone": "a"}},
			{Key: "delta", Address: 6, Quantity: 1, Type: "int16", Function: 3, DeviceID: 1},
			{Key: "pump", Address: 3, Quantity: 1, Type: "bool", Function: 1, DeviceID: 1},
		}}
	if _, err := c.Configure(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	got := map[string]isp.Point{}
	for _, p := range f.last(t, 1) {
		got[p.Key] = p
	}
	for key, want := range map[string]float64{"level": 1234, "delta": -2, "pump": 1} {
		p := got[key]
		if v, _ := p.Value.Float(); p.Quality != isp.QualityGood || v != want {
			t.Errorf("%s = %v (quality %d), want %v", key, p.Value, p.Quality, want)
		}
	}
	if tags := got["level"].Tags; len(tags) != 2 || tags[0] != (isp.Tag{Key: "unit", Value: "mm"}) || tags[1] != (isp.Tag{Key: "zone", Value: "a"}) {
		t.Errorf("level tags %v, want unit=mm, zone=a in order", tags)
	}
	if src := got["level"].Source; src != "modbus-test" {
		t.Errorf("source %q, want the sidecar's name", src)
	}
}

// TestRetries: the sidecar retries a read that got no reply as often as the CONFIG's retries say (the direct
// driver's client), each on a fresh connection, then marks its points bad with the error's kind in STATUS.
func TestRetries(t *testing.T) {
	srv := startSim(t)
	srv.SetFaults(modbussim.Fault{Kind: modbussim.FaultNoReply})
	s, c, f := startSidecar(t)
	cfg := isp.ConfigPayload{Mode: "tcp", Address: srv.Addr().String(), TimeoutMS: 100, IntervalMS: 60_000, Retries: 2,
		Registers: []isp.Register{{Key: "a", Address: 0, Quantity: 1, Type: "uint16", Function: 3, DeviceID: 1}}}
	if _, err := c.Configure(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	pts := f.last(t, 1)
	if len(pts) != 1 || pts[0].Quality != isp.QualityBad {
		t.Fatalf("points %v, want one of quality 0", pts)
	}
	if n := srv.Stats().Requests[3]; n != 3 {
		t.Errorf("the simulator saw %d reads, want 3: one and 2 retries", n)
	}
	st := s.Status(context.Background()).(map[string]any)
	if st["last_error_kind"] != "timeout" {
		t.Errorf("status %v: want last_error_kind timeout", st)
	}
}

// TestRTUOverTCP: mode rtu-over-tcp, which the sidecar's own client lacked, reads pymodbus framing RTU over TCP.
func TestRTUOverTCP(t *testing.T) {
	addr := startPymodbus(t, `{"hr":[17142,59769,65531],"co":[1,0,1]}`, "rtu")
	_, c, f := startSidecar(t)
	cfg := isp.ConfigPayload{Mode: "rtu-over-tcp", Address: addr, TimeoutMS: 2000, IntervalMS: 50, Retries: 1,
		Registers: []isp.Register{
			{Key: "temperature", Address: 0, Quantity: 2, Type: "float32", Function: 3, DeviceID: 1},
			{Key: "offset", Address: 2, Quantity: 1, Type: "int16", Function: 3, DeviceID: 1},
			{Key: "valve", Address: 2, Quantity: 1, Type: "bool", Function: 1, DeviceID: 1},
		}}
	if _, err := c.Configure(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	got := map[string]isp.Point{}
	for _, p := range f.last(t, 2) {
		got[p.Key] = p
	}
	for key, want := range map[string]float64{"temperature": 123.456, "offset": -5, "valve": 1} {
		p := got[key]
		if v, _ := p.Value.Float(); p.Quality != isp.QualityGood || math.Abs(v-want) > 1e-4 {
			t.Errorf("%s = %v (quality %d), want %v", key, p.Value, p.Quality, want)
		}
	}
}
