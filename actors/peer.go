package actors

import (
	"errors"
	"time"
)

// Peer failures versus crashes.
//
// An actor that talks to a peer (a sidecar, a Modbus endpoint, a broker, a database, a southbound client) fails in
// two different ways. A crash — a panic, a broken invariant, a bug — is the actor's own fault, and the supervisor's
// restart limit (max_restarts within a window) is there to stop a crash loop. A peer that is unreachable — a refused
// or reset connection, a timeout, a lost heartbeat, a sidecar process that exited — is a state of the world, not a
// bug: the actor must keep retrying at the capped backoff for as long as it is configured, and say that it is
// disconnected.
//
// An actor marks a failure as the peer's by wrapping its error with PeerFailure (a worker returning
// PeerFailure(err), or a panic with such an error). The supervisor restarts the actor after its capped, jittered
// backoff for ever, never counts the failure against max_restarts, and shows the actor as "disconnected" in the
// tree, the metrics and the readiness details until it runs again. This is Erlang/OTP's distinction between a
// child that crashed and one whose resource is away, drawn in the supervisor once for every kind.
type PeerError struct{ Err error }

func (e *PeerError) Error() string { return e.Err.Error() }
func (e *PeerError) Unwrap() error { return e.Err }

// PeerFailure marks err as a failure of the peer, not of the actor (nil stays nil).
func PeerFailure(err error) error {
	if err == nil {
		return nil
	}
	var pe *PeerError
	if errors.As(err, &pe) {
		return err
	}
	return &PeerError{Err: err}
}

// IsPeerFailure says whether a failure reason (a panic value, an error, a *WorkerFailed) is a peer failure.
func IsPeerFailure(reason any) bool {
	err, ok := reason.(error)
	if !ok {
		return false
	}
	var pe *PeerError
	return errors.As(err, &pe)
}

// Link states an actor reports for its connection to its peer (Env.Link).
const (
	LinkConnected    = "connected"
	LinkDisconnected = "disconnected"
)

// Link reports the state of the actor's connection to its peer, for an actor that stays alive while its peer is
// away (a Modbus transport reconnecting by itself, a sink whose client buffers): the runtime shows it in the tree
// ("disconnected", with detail as the last error), the metrics and the readiness details. It is nil-safe and
// cheap enough to call on every transition; call it on transitions, not on every operation.
func (e Env) Link(state, detail string) {
	if e.LinkState != nil {
		e.LinkState(state, detail)
	}
}

// Reconnector is implemented by an actor that stays responsive while it waits out a peer failure's backoff (a
// sidecar connection answering its status request with "not connected" instead of letting it time out). After a
// peer failure the supervisor restarts such an actor at once and calls ReconnectAfter on the new incarnation, before
// its Started, with the backoff it would otherwise have waited suspended; the actor must not reach its peer before
// that delay has passed (a timer worker, then connect). The tree shows it "disconnected" until it reports
// Env.Link(LinkConnected). An actor that does not implement it waits out the backoff with its mailbox suspended, as
// after a crash.
type Reconnector interface {
	ReconnectAfter(d time.Duration)
}
