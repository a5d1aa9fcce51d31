package opcua

import (
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
)

// What the session worker tells its device actor. The worker owns the connection; the actor owns the points,
// their freshness and what is published.

// connected: a session is up (and in mode subscribe, its subscription created), client is usable for writes and
// browsing until the worker ends.
type connected struct {
	client       *opcua.Client
	subscription uint32 // the subscription's id in mode subscribe
}

// connectFailed: the server could not be reached, or refused the gateway; the worker returns a peer failure next.
type connectFailed struct {
	kind string // disconnected, certificate, security, auth
	err  error
}

// sessionLost: the session of a connected worker is gone (the server restarted, the link dropped), or the server
// refused to set up its subscription (kind "subscription"); the worker returns a peer failure next.
type sessionLost struct {
	kind string // "" for disconnected
	err  error
}

// readResult is one poll's answer: a value per node, in node order, or err when the read as a whole failed.
type readResult struct {
	at     time.Time
	values []*ua.DataValue
	err    error
}

// itemFailed: the server refused to monitor node i (it does not exist, say); the others are monitored.
type itemFailed struct {
	node   int
	status ua.StatusCode
}

// dataChange is one notification of the subscription: values of the nodes by index.
type dataChange struct {
	at     time.Time
	nodes  []int
	values []*ua.DataValue
}

// subscriptionError is an error the subscription reported that did not end the session.
type subscriptionError struct{ err error }
