package system

import (
	"fmt"
	"testing"
	"time"

	"github.com/iotgw/iotgw/isp"
	"github.com/iotgw/iotgw/sidecar/modbussim"
)

// TestLatencyClearTakesEffect: a latency fault longer than the device gives a poll makes transactions queue up in
// the transport; when it is cleared, the transactions it held and those whose poll was given up are dropped, not
// run, so good data is back within one device timeout and one poll interval, not after the backlog.
func TestLatencyClearTakesEffect(t *testing.T) {
	sim := startSim(t, modbussim.Demo())
	const (
		interval = 50 * time.Millisecond
		timeout  = 200 * time.Millisecond
		latency  = 3 * time.Second // the issue's; longer than a poll may take (timeout + 1 s), so a backlog builds
	)
	rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
faults { enabled = true }
device "plc" {
  driver   = "modbus"
  address  = %q
  interval = %q
  timeout  = %q
  retries  = 0
  register "temperature" {
    address = 0
    type    = "float32"
  }
}
`, sim.Addr(), interval, timeout)))
	nc := client(t, rt.Bus().URL)
	l := watchBatches(t, nc)
	l.wait(t, "plc", "temperature")

	if r := ask(t, nc, SubjectFaultsInject, fmt.Sprintf(`{"kind":"latency","target":"devices/plc","latency":%q}`, latency)); !r.OK {
		t.Fatalf("inject: %+v", r)
	}
	// Three polls given up (bad quality): transactions are queued behind the delayed one.
	for bad := 0; bad < 3; {
		if q := l.next(t, "plc", 1)["temperature"].Quality; q == isp.QualityBad {
			bad++
		}
	}
	l.mu.Lock()
	from := l.count["plc"]
	l.mu.Unlock()
	cleared := time.Now()
	if r := ask(t, nc, SubjectFaultsClear, ""); !r.OK {
		t.Fatalf("clear: %+v", r)
	}
	var took time.Duration
	checkFor(t, 4*latency, time.Millisecond, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.count["plc"] == from || l.points["plc"]["temperature"].Quality != isp.QualityGood {
			return fmt.Errorf("no good data %s after the clear", time.Since(cleared).Round(time.Millisecond))
		}
		took = time.Since(cleared)
		return nil
	})
	// One device timeout (a transaction on the wire at the clear) and one interval (the next poll), plus a few
	// intervals for the bus and the scheduling of a loaded machine under -race.
	bound := timeout + interval + 5*interval
	t.Logf("good data %s after clearing a %s latency (bound %s)", took.Round(time.Millisecond), latency, bound)
	if took > bound {
		t.Errorf("good data %s after the clear, want within %s", took.Round(time.Millisecond), bound)
	}
}
