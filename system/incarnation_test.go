package system

import (
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
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
