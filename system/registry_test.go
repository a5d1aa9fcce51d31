package system

import (
	"runtime"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
)

// TestCompactRegistry: after compactRegistry the actor system still finds what it registered at its creation
// (dead letters, event stream), spawns and stops actors that receive their messages, and holds far less heap.
func TestCompactRegistry(t *testing.T) {
	before := heapAfterGC()
	full := actor.NewActorSystem(actorLogger(zerolog.Nop()))
	fullBytes := heapAfterGC() - before
	runtime.KeepAlive(full)

	sys := actor.NewActorSystem(actorLogger(zerolog.Nop()))
	compactRegistry(sys)
	if n := len(sys.ProcessRegistry.LocalPIDs.LocalPIDs); n != registryBuckets {
		t.Fatalf("%d buckets, want %d", n, registryBuckets)
	}
	for _, id := range []string{"deadletter", "eventstream"} {
		if p, ok := sys.ProcessRegistry.GetLocal(id); !ok || p == nil {
			t.Errorf("%s is not in the compacted registry", id)
		}
	}
	got := make(chan int, 200)
	var pids []*actor.PID
	for i := range 200 {
		pid := sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
			if n, ok := c.Message().(int); ok {
				got <- n
			}
		}))
		pids = append(pids, pid)
		sys.Root.Send(actor.NewPID(pid.Address, pid.Id), i) // a fresh PID: resolved through the registry
	}
	seen := map[int]bool{}
	for range 200 {
		select {
		case n := <-got:
			seen[n] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of 200 actors answered", len(seen))
		}
	}
	for _, pid := range pids {
		if err := sys.Root.StopFuture(pid).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	for _, pid := range pids {
		if _, ok := sys.ProcessRegistry.GetLocal(pid.Id); ok {
			t.Fatalf("%s still registered after it stopped", pid.Id)
		}
	}

	base := heapAfterGC()
	small := actor.NewActorSystem(actorLogger(zerolog.Nop()))
	compactRegistry(small)
	smallBytes := heapAfterGC() - base
	runtime.KeepAlive(small)
	t.Logf("an actor system: %d bytes of heap with protoactor's registry, %d compacted", fullBytes, smallBytes)
	if smallBytes*4 > fullBytes {
		t.Errorf("compacted actor system holds %d bytes, want under a quarter of %d", smallBytes, fullBytes)
	}
}

func heapAfterGC() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
