package actors

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/goburrow/modbus"
	"github.com/prometheus/client_golang/prometheus"
)

func TestMetricsNilIsSafe(t *testing.T) {
	var m *Metrics
	m.PointsIn("devices/d1", 1)
	m.PointsOut("devices/d1", 1)
	m.Error("devices/d1", "decode")
	m.ModbusRequest("d1", 3, time.Millisecond, errors.New("x"))
	m.Forget("devices/d1")
	m.ForgetDevice("d1")
}

// gathered returns name{labels} → value (counters) or sample count (histograms) from reg.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += fmt.Sprintf(",%s=%s", l.GetName(), l.GetValue())
			}
			if h := m.GetHistogram(); h != nil {
				out[key] = float64(h.GetSampleCount())
			} else {
				out[key] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func TestMetricsCount(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.PointsIn("devices/d1", 30)
	m.PointsIn("devices/d1", 0) // nothing, and no series for an actor that never counted
	m.PointsIn("devices/d2", 0)
	m.PointsOut("sinks/file", 7)
	m.Error("rules/processor", "decode")
	m.Error("rules/processor", "decode")
	m.ModbusRequest("plc-1", 3, 1500*time.Microsecond, nil)
	m.ModbusRequest("plc-1", 3, 5*time.Second, WithKind("timeout", errors.New("modbus: no reply in time")))
	m.ModbusRequest("plc-1", 16, time.Millisecond, &modbus.ModbusError{FunctionCode: 16, ExceptionCode: 2})

	got := gathered(t, reg)
	for key, want := range map[string]float64{
		"iotgw_points_in_total,actor=devices/d1":                        30,
		"iotgw_points_out_total,actor=sinks/file":                       7,
		"iotgw_errors_total,actor=rules/processor,kind=decode":          2,
		"iotgw_modbus_request_seconds,device=plc-1,function=3":          2,
		"iotgw_modbus_request_seconds,device=plc-1,function=16":         1,
		"iotgw_modbus_request_errors_total,device=plc-1,kind=timeout":   1,
		"iotgw_modbus_request_errors_total,device=plc-1,kind=exception": 1,
	} {
		if got[key] != want {
			t.Errorf("%s: got %v, want %v", key, got[key], want)
		}
	}
	if _, ok := got["iotgw_points_in_total,actor=devices/d2"]; ok {
		t.Error("a series for devices/d2, which counted nothing")
	}

	for _, a := range []string{"devices/d1", "sinks/file", "rules/processor"} {
		m.Forget(a)
	}
	m.ForgetDevice("plc-1")
	got = gathered(t, reg)
	for key := range got {
		t.Errorf("series %s left after Forget", key)
	}
}

// TestModbusErrorKind: a KindError's own kind, else the Modbus client's classifier (mb.ErrorKind).
func TestModbusErrorKind(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"exception", fmt.Errorf("read: %w", &modbus.ModbusError{FunctionCode: 3, ExceptionCode: 2}), "exception"},
		{"labelled", WithKind("busy", errors.New("queue full")), "busy"},
		{"labelled and wrapped", fmt.Errorf("device %q: %w", "d1", WithKind("mismatch", io.ErrUnexpectedEOF)), "mismatch"},
		// Unlabelled: mb.ErrorKind, tested in its own package.
		{"eof", io.EOF, "disconnected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ModbusErrorKind(tc.err); got != tc.want {
				t.Errorf("ModbusErrorKind(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
	if WithKind("x", nil) != nil {
		t.Error("WithKind of nil is not nil")
	}
}

func TestCounted(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	m.PointsIn("sinks/a", 3)
	m.PointsOut("sinks/a", 2)
	m.PointsOut("sinks/b", 7)
	m.Error("sinks/a", "write")
	m.Error("sinks/a", "write")
	m.Error("sinks/a", "disconnect")
	in, out, errs := m.Counted("sinks/a")
	if in != 3 || out != 2 || errs["write"] != 2 || errs["disconnect"] != 1 || len(errs) != 2 {
		t.Fatalf("got in %d out %d errors %v; want 3, 2, write 2 and disconnect 1", in, out, errs)
	}
	if in, out, errs := m.Counted("sinks/none"); in != 0 || out != 0 || len(errs) != 0 {
		t.Fatalf("an actor that counted nothing: got %d %d %v", in, out, errs)
	}
	var nilM *Metrics
	if in, out, errs := nilM.Counted("x"); in != 0 || out != 0 || errs != nil {
		t.Fatal("nil Metrics counted something")
	}
}

// A ModbusRecorder observes into the very series ModbusRequest does, and ForgetDevice drops them.
func TestModbusRecorderSameSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	var r ModbusRecorder
	r.Request(m, "plc-2", 3, time.Millisecond, nil)
	r.Request(m, "plc-2", 3, 2*time.Millisecond, WithKind("timeout", errors.New("modbus: no reply in time")))
	r.Request(m, "plc-2", 1, time.Millisecond, nil)
	m.ModbusRequest("plc-2", 3, time.Millisecond, nil)
	(&ModbusRecorder{}).Request(nil, "plc-2", 3, time.Millisecond, nil) // no metrics: nothing, no panic
	got := gathered(t, reg)
	for key, want := range map[string]float64{
		"iotgw_modbus_request_seconds,device=plc-2,function=3":        3,
		"iotgw_modbus_request_seconds,device=plc-2,function=1":        1,
		"iotgw_modbus_request_errors_total,device=plc-2,kind=timeout": 1,
	} {
		if got[key] != want {
			t.Errorf("%s: got %v, want %v", key, got[key], want)
		}
	}
	if len(got) != 3 {
		t.Errorf("%d series, want 3: %v", len(got), got)
	}
	m.ForgetDevice("plc-2")
	for key := range gathered(t, reg) {
		t.Errorf("series %s left after ForgetDevice", key)
	}
}

// The points counters are cached per actor; a forgotten actor's series is gone from the scrape, and an actor added
// again under the same path counts from zero in a series that is scraped (not in the deleted one), also when
// several goroutines count at once. Counting a known actor allocates nothing.
func TestPointsCountersAfterForget(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.PointsIn("rules/r", 30)
	m.PointsOut("rules/r", 29)
	m.Forget("rules/r")
	if g := gathered(t, reg); g["iotgw_points_in_total,actor=rules/r"] != 0 || g["iotgw_points_out_total,actor=rules/r"] != 0 {
		t.Fatalf("after Forget: %v", g)
	}
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 100 {
				m.PointsIn("rules/r", 1)
				m.PointsIn("rules/other", 1)
			}
		}()
	}
	for range 4 {
		<-done
	}
	g := gathered(t, reg)
	if g["iotgw_points_in_total,actor=rules/r"] != 400 || g["iotgw_points_in_total,actor=rules/other"] != 400 {
		t.Fatalf("counted again: %v, want 400 each", g)
	}
	if n := testing.AllocsPerRun(100, func() { m.PointsIn("rules/r", 30); m.PointsOut("rules/r", 30) }); n != 0 {
		t.Errorf("counting allocates %v times", n)
	}
}
