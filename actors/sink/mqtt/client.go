package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"time"
)

// The two clients, one per protocol, behind one small interface: client3.go (MQTT 3.1.1) and client5.go (MQTT 5).
// Each is its Eclipse Paho library's packets package — paho.mqtt.golang's for 3.1.1 (the most used Go MQTT
// client), paho.golang's for 5, the libraries the MQTT device driver uses too — driven over bufConn (conn.go),
// not the libraries' clients: the profiles of the per-point rows put 46% (3.1.1) and 30% (5) of the process's
// CPU in the clients' per-message machinery (tokens, timers, contexts, stores, a goroutine per message and
// goroutine hand-offs), which the sink's own publish and confirm workers make unnecessary; the files say what.
// The packets are the libraries' encoding and decoding, the sequencing of a client that only publishes
// (CONNECT/CONNACK, PUBLISH and its acknowledgements, PINGREQ, DISCONNECT) is wire.go and the two files. One
// client per connection, closed when it fails, and no reconnect loop of any library (where the goroutine growth
// of failed reconnects lives; TestNoGoroutineGrowthOnFailedReconnects counts them): the supervisor reconnects.
//
// Every publish is asynchronous: publish writes the message and returns at once, and the sink's confirm worker
// waits for the acknowledgements in order, so a delivery's messages are all on the wire together, up to the
// sink's window (max_inflight) and, on MQTT 5, the broker's Receive Maximum.

// client is one connection to the broker.
type client interface {
	// publish sends one message and returns how to wait for its outcome: the broker's PUBACK (QoS 1) or PUBCOMP
	// (QoS 2), or the write (QoS 0). It may block while the client's window is full.
	publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) (waiter, error)
	// hold and release bracket a run of publishes whose packets should leave together (bufConn.hold).
	hold()
	release()
	// lost is closed when the connection is lost; err says why.
	lost() <-chan struct{}
	err() error
	close()
}

// waiter waits for one publish's outcome, or done.
type waiter func(done <-chan struct{}, timeout time.Duration) error

var errStopped = errors.New("sink stopping")

// dialOptions are what a connection needs.
type dialOptions struct {
	address    string
	tls        *tls.Config // nil: plain TCP
	clientID   string
	username   string
	password   string
	persistent bool
	expiry     time.Duration
	keepAlive  time.Duration
	timeout    time.Duration
	inflight   int // the sink's window (max_inflight): how many packet ids 3.1.1 keeps
}

func dial(ctx context.Context, protocol string, o dialOptions) (client, error) {
	if protocol == Protocol5 {
		return dial5(ctx, o)
	}
	return dial3(ctx, o)
}

// lostSignal is closed once, with the first reason.
type lostSignal struct {
	once sync.Once
	ch   chan struct{}
	mu   sync.Mutex
	e    error
}

func newLost() *lostSignal { return &lostSignal{ch: make(chan struct{})} }

func (l *lostSignal) fire(err error) {
	l.once.Do(func() {
		l.mu.Lock()
		l.e = err
		l.mu.Unlock()
		close(l.ch)
	})
}

func (l *lostSignal) get() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.e
}
