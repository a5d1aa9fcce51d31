package system

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/isp"
	"github.com/iotgw/iotgw/sidecar/modbussim"
	"github.com/nats-io/nats.go"
)

// twoFaced is an actor whose worker fails together with the actor itself: on "boom" it releases the worker, which
// returns an error, and panics once the worker has returned. The worker's failure is sent while the actor waits
// out its backoff, suspended, so it sits in the mailbox the next incarnation takes over. It answers "ping" with
// its incarnation's number.
type twoFaced struct {
	subject string
	starts  *atomic.Int32
	n       int32
	workers actors.Workers
	release chan struct{}
	gone    chan struct{}
}

func (a *twoFaced) Inboxes() []actors.Inbox { return []actors.Inbox{{Subject: a.subject}} }

func (a *twoFaced) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.n = a.starts.Add(1)
		a.release, a.gone = make(chan struct{}), make(chan struct{})
		release, gone := a.release, a.gone
		a.workers.Go(ctx, "link", func(done <-chan struct{}, _ func(any)) error {
			defer close(gone)
			select {
			case <-done:
				return nil
			case <-release:
				return errors.New("link lost")
			}
		})
	case *actor.Stopping, *actor.Restarting:
		a.workers.Stop()
	case *nats.Msg:
		switch string(m.Data) {
		case "boom":
			close(a.release)
			<-a.gone
			panic("boom")
		case "ping":
			_ = m.Respond([]byte(strconv.Itoa(int(a.n))))
		}
	}
}

// TestStaleWorkerFailureIsDropped: the failure of a worker of an actor's previous incarnation does not reach the
// new one: one crash is one restart, not two counted against max_restarts.
func TestStaleWorkerFailureIsDropped(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `
supervisor {
  max_restarts = 5
  within       = "1m"
  backoff {
    initial = "200ms"
    max     = "200ms"
    jitter  = 0
  }
}
`))
	var starts atomic.Int32
	if err := rt.AddActor(GroupSinks, ChildSpec{Name: "twofaced", Kind: "sink/test", Producer: func() actor.Actor {
		return &twoFaced{subject: "test.twofaced", starts: &starts}
	}}); err != nil {
		t.Fatal(err)
	}
	nc := client(t, rt.Bus().URL)
	if err := nc.Publish("test.twofaced", []byte("boom")); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if n, _ := rt.Tree().Get("sinks/twofaced"); n.Restarts < 1 || n.State != StateRunning {
			return fmt.Errorf("sinks/twofaced: state %s, %d restarts", n.State, n.Restarts)
		}
		return nil
	})
	// The ping queues behind whatever the first incarnation left in the mailbox: its answer comes after those
	// were handled.
	msg, err := nc.Request("test.twofaced", []byte("ping"), 10*time.Second)
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	n, _ := rt.Tree().Get("sinks/twofaced")
	if n.Restarts != 1 || string(msg.Data) != "2" {
		t.Errorf("after one crash: %d restarts, ping answered by incarnation %s; want 1 restart, incarnation 2 (last error %q)",
			n.Restarts, msg.Data, n.LastError)
	}
}

// stuckOnStop is an actor whose Stopping does not return until released.
type stuckOnStop struct{ release chan struct{} }

func (a *stuckOnStop) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*actor.Stopping); ok {
		<-a.release
	}
}

// TestStuckActorDoesNotHoldSupervisor: an actor that does not stop, not even outright, is left behind after a
// bounded wait (and logged); its supervisor goes on serving its other children instead of waiting for ever.
func TestStuckActorDoesNotHoldSupervisor(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, ""))
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	if err := rt.AddActor(GroupSinks, ChildSpec{Name: "stuck", Kind: "sink/test", Producer: func() actor.Actor {
		return &stuckOnStop{release: release}
	}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := rt.RemoveActor(GroupSinks, "stuck")
	t.Logf("remove of an actor that does not stop: %v after %s", err, time.Since(start).Round(time.Millisecond))
	// The supervisor is free again: it starts another child.
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		return rt.AddActor(GroupSinks, ChildSpec{Name: "next", Kind: "sink/test", Producer: func() actor.Actor {
			return actor.ReceiveFunc(func(actor.Context) {})
		}})
	})
}

// TestFaultsOutliveARestart: a lasting fault is applied again to the incarnation that follows a crash, so what
// iot.control.faults.list shows after the restart is what is in force; cleared, it ends in the new incarnation.
func TestFaultsOutliveARestart(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `
faults { enabled = true }
supervisor {
  backoff {
    initial = "50ms"
    max     = "100ms"
  }
}
device "m" {
  driver   = "mock"
  interval = "20ms"
  point "x" { signal = "sine" }
}
`))
	nc := client(t, rt.Bus().URL)
	l := watchBatches(t, nc)
	l.wait(t, "m", "x")
	r := ask(t, nc, SubjectFaultsInject, `{"kind":"error","target":"devices/m"}`)
	if !r.OK || r.Fault == nil {
		t.Fatalf("inject: %+v", r)
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if q := l.next(t, "m", 1)["x"].Quality; q != isp.QualityBad {
			return fmt.Errorf("quality %d under the fault", q)
		}
		return nil
	})
	if r := ask(t, nc, SubjectFaultsInject, `{"kind":"crash","target":"devices/m"}`); !r.OK {
		t.Fatalf("crash: %+v", r)
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n, _ := rt.Tree().Get("devices/m"); n.Restarts != 1 || n.State != StateRunning {
			return fmt.Errorf("devices/m: state %s, %d restarts", n.State, n.Restarts)
		}
		return nil
	})
	listed := ask(t, nc, SubjectFaultsList, "").Faults
	if len(listed) != 1 || listed[0].ID != r.Fault.ID {
		t.Fatalf("listed after the restart: %+v, want the error fault", listed)
	}
	for i := 0; i < 3; i++ { // published by the new incarnation
		if q := l.next(t, "m", 1)["x"].Quality; q != isp.QualityBad {
			t.Fatalf("quality %d after the restart with the error fault listed, want %d (in force)", q, isp.QualityBad)
		}
	}
	if n, _ := rt.Tree().Get("devices/m"); len(n.Faults) != 1 {
		t.Errorf("tree shows faults %v after the restart, want the error fault", n.Faults)
	}
	ask(t, nc, SubjectFaultsClear, fmt.Sprintf(`{"id":%q}`, r.Fault.ID))
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if q := l.next(t, "m", 1)["x"].Quality; q != isp.QualityGood {
			return fmt.Errorf("quality %d after clear", q)
		}
		return nil
	})
	// Removing the device ends its faults: none is listed for an actor that is gone.
	inj := ask(t, nc, SubjectFaultsInject, `{"kind":"bad_quality","target":"devices/m"}`)
	if !inj.OK {
		t.Fatalf("inject: %+v", inj)
	}
	if err := rt.RemoveActor(GroupDevices, "m"); err != nil {
		t.Fatal(err)
	}
	if listed := ask(t, nc, SubjectFaultsList, "").Faults; len(listed) != 0 {
		t.Errorf("listed after the device was removed: %+v", listed)
	}
}

// TestRestartedModbusDeviceDropsOldPoll: a Modbus device that restarts while a poll of its previous incarnation is
// on the wire never publishes that poll: its answers arrive in the new incarnation, which is not the one that
// asked.
func TestRestartedModbusDeviceDropsOldPoll(t *testing.T) {
	srv := startSim(t, modbussim.Demo())
	rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
faults { enabled = true }
supervisor {
  backoff {
    initial = "50ms"
    max     = "50ms"
    jitter  = 0
  }
}
device "plc" {
  driver   = "modbus"
  address  = %q
  interval = "50ms"
  timeout  = "2s"
  retries  = 0
  register "temperature" {
    address = 0
    type    = "float32"
  }
}
`, srv.Addr().String())))
	nc := client(t, rt.Bus().URL)
	type batch struct {
		at time.Time
		ts int64 // the poll's start
	}
	var mu sync.Mutex
	var batches []batch
	sub, err := nc.Subscribe("iot.raw.modbus.plc", func(m *nats.Msg) {
		pts, err := isp.DecodeBatch(m.Data)
		if err != nil || len(pts) == 0 {
			t.Errorf("batch %q: %v", m.Data, err)
			return
		}
		mu.Lock()
		batches = append(batches, batch{time.Now(), pts[0].Timestamp})
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	last := func() (batch, int) {
		mu.Lock()
		defer mu.Unlock()
		if len(batches) == 0 {
			return batch{}, 0
		}
		return batches[len(batches)-1], len(batches)
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if _, n := last(); n < 2 {
			return fmt.Errorf("%d polls published", n)
		}
		return nil
	})
	// Every transaction now waits a second before the wire: once no poll has come for 300ms, one is held there.
	if r := ask(t, nc, SubjectFaultsInject, `{"kind":"latency","target":"devices/plc","latency":"1s"}`); !r.OK {
		t.Fatalf("latency: %+v", r)
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if b, _ := last(); time.Since(b.at) < 300*time.Millisecond {
			return errNotYet
		}
		return nil
	})
	crashAt := time.Now()
	if r := ask(t, nc, SubjectFaultsInject, `{"kind":"crash","target":"devices/plc"}`); !r.OK {
		t.Fatalf("crash: %+v", r)
	}
	crashed := time.Now()
	// The new incarnation's first poll comes a second after it started, after the old poll's answer.
	checkFor(t, 15*time.Second, 10*time.Millisecond, func() error {
		if b, _ := last(); b.ts < crashAt.UnixNano() {
			return errNotYet
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for _, b := range batches {
		if b.at.After(crashed.Add(100*time.Millisecond)) && b.ts < crashAt.UnixNano() {
			t.Errorf("a poll started %s before the crash was published %s after it, by the next incarnation",
				crashAt.Sub(time.Unix(0, b.ts)).Round(time.Millisecond), b.at.Sub(crashed).Round(time.Millisecond))
		}
	}
}
