package actors

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Fault kinds an operator can inject through iot.control.faults.inject.
const (
	FaultCrash      = "crash"       // a panic inside the actor's Receive: the supervisor restarts it
	FaultStop       = "stop"        // the actor stops (not restarted)
	FaultDrop       = "drop"        // the actor drops its connection (sidecar, Modbus endpoint)
	FaultLatency    = "latency"     // the actor's I/O takes Latency longer
	FaultError      = "error"       // a device's reads fail (quality 0, error events)
	FaultBadQuality = "bad_quality" // a device's points are published with quality 0
	FaultKill       = "kill"        // the sidecar process the actor launched is killed (SIGKILL)
)

// FaultKinds lists the kinds, for messages.
var FaultKinds = []string{FaultCrash, FaultStop, FaultDrop, FaultLatency, FaultError, FaultBadQuality, FaultKill}

// Fault is sent to an actor to inject a fault; the actor answers *FaultReply. crash and stop are handled by the
// runtime for every actor; the others by actors that implement FaultTarget.
type Fault struct {
	ID          string
	Kind        string
	Probability float64 // 0..1 per operation; 0 means always
	Latency     time.Duration
}

// Hit says whether the fault strikes this operation.
func (f *Fault) Hit() bool {
	return f.Probability <= 0 || f.Probability >= 1 || rand.Float64() < f.Probability
}

// FaultClear ends the fault with this id (the runtime sends it when the fault's duration ends or on clear).
type FaultClear struct{ ID string }

// FaultReply answers a Fault.
type FaultReply struct{ Err error }

// ErrFaultUnsupported is the answer of an actor that has no such fault.
var ErrFaultUnsupported = errors.New("this actor does not support the fault")

// FaultTarget is implemented by actors with faults of their own (drop, latency, error, bad_quality, kill).
type FaultTarget interface {
	InjectFault(ctx actor.Context, f *Fault) error
	ClearFault(ctx actor.Context, id string)
}

// Faults is the set of active faults of an actor, for actors that implement FaultTarget.
type Faults struct{ active map[string]*Fault }

// Add records f.
func (fs *Faults) Add(f *Fault) {
	if fs.active == nil {
		fs.active = map[string]*Fault{}
	}
	fs.active[f.ID] = f
}

// Remove forgets the fault with id.
func (fs *Faults) Remove(id string) { delete(fs.active, id) }

// Hit returns the active fault of kind that strikes this operation, or nil.
func (fs *Faults) Hit(kind string) *Fault {
	for _, f := range fs.active {
		if f.Kind == kind && f.Hit() {
			return f
		}
	}
	return nil
}
