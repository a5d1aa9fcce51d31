package system

import (
	"github.com/asynkron/protoactor-go/actor"
	cmap "github.com/orcaman/concurrent-map"
)

// registryBuckets is how many concurrent maps hold the actor system's process ids once compactRegistry has run.
// Each map has 32 locked shards of its own (concurrent-map's SHARD_COUNT), so 8 give 256: more than the cores of
// any machine this runs on could contend for, and a registry lookup is rare anyway (a PID caches its process
// after the first send).
const registryBuckets = 8

// compactRegistry gives the actor system a process registry of registryBuckets concurrent maps instead of
// protoactor's 1,024 (actor.newSliceMap): 32,768 Go maps made at start, 2.75-3.5 MB of live heap whatever the
// number of actors, the largest single item in the heap of a 1,000-device gateway (bench/REPORT.md, the memory
// rounds) and twice that in RSS under the collector's default goal. protoactor exports the registry's buckets
// (ProcessRegistryValue.LocalPIDs.LocalPIDs) and picks one by hash modulo their number, so a smaller slice works
// as it is. What NewActorSystem registered already (its dead letters and event stream) is carried over. It must
// run right after NewActorSystem, before any actor is spawned or any message sent: nothing reads the registry
// concurrently then.
func compactRegistry(sys *actor.ActorSystem) {
	old := sys.ProcessRegistry.LocalPIDs
	sm := &actor.SliceMap{LocalPIDs: make([]cmap.ConcurrentMap, registryBuckets)}
	for i := range sm.LocalPIDs {
		sm.LocalPIDs[i] = cmap.New()
	}
	for _, b := range old.LocalPIDs {
		for id, p := range b.Items() {
			sm.GetBucket(id).Set(id, p)
		}
	}
	sys.ProcessRegistry.LocalPIDs = sm
}
