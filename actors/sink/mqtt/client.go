package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	paho5 "github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session"
	"github.com/eclipse/paho.golang/paho/session/state"
	"github.com/eclipse/paho.golang/paho/store/memory"
)

// The two clients, one per protocol, behind one small interface. The libraries are the Eclipse Paho clients the
// MQTT device driver uses too: paho.mqtt.golang (3.1.1, the most used Go MQTT client) and paho.golang (MQTT 5; its
// low-level paho.Client, not autopaho, because the reconnect is the supervisor's: one client per connection,
// closed when it fails, so no library keeps a reconnect loop of its own — where the goroutine growth of failed
// reconnects lives; TestNoGoroutineGrowthOnFailedReconnects counts them). Both read and write through bufConn
// (conn.go), which buffers what neither library does.
//
// Every publish is asynchronous: publish hands the message to the client and returns at once, and the sink's
// confirm worker waits for the acknowledgements in order, so a delivery's messages are all on the wire together,
// up to the sink's window (max_inflight). On MQTT 5 that needs paho.golang's PublishMethod_AsyncSend, whose
// Publish returns once the message is in the session and written; the acknowledgement then reaches the channel
// the session was given for the message (SessionManager.AddToSession's documented promise), which
// ackSession keeps for the sink instead of leaving it to a blocking Publish.

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

// --- MQTT 5: paho.golang ---

type client5 struct {
	c    *paho5.Client
	conn *bufConn
	sess *ackSession
	sig  *lostSignal
}

// ackSession is paho.golang's in-memory session that hands the sink the channel of each message it adds: the
// session sends the message's PUBACK, PUBREC (a refusal) or PUBCOMP there, or an empty packet when it drops the
// message (closed). Only the publish worker adds messages, one at a time, so the last one is the one just
// published.
type ackSession struct {
	*state.State
	last chan packets.ControlPacket
}

func (s *ackSession) AddToSession(ctx context.Context, p session.Packet, _ chan<- packets.ControlPacket) error {
	ch := make(chan packets.ControlPacket, 1) // the session sends once and never blocks on it
	if err := s.State.AddToSession(ctx, p, ch); err != nil {
		return err
	}
	s.last = ch
	return nil
}

// discardStore is the session's store of the client's own packets, kept for nothing: paho.golang stores each
// QoS 1 and 2 PUBLISH (a copy of the whole packet) only to send it again when the same session state reconnects,
// and here a session state never outlives its one connection (a new client per connection; see the README's
// duplicate window). The profile of the MQTT 5 per-point row had the in-memory store's copy at 8% of the process.
type discardStore struct{}

func (discardStore) Put(uint16, byte, io.WriterTo) error { return nil }
func (discardStore) Get(id uint16) (io.ReadCloser, error) {
	return nil, fmt.Errorf("packet %d: the sink keeps no copy of its packets", id)
}
func (discardStore) Delete(uint16) error     { return nil }
func (discardStore) Quarantine(uint16) error { return nil }
func (discardStore) List() ([]uint16, error) { return nil, nil }
func (discardStore) Reset() error            { return nil }

func dial5(ctx context.Context, o dialOptions) (client, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	conn, err := dialConn(ctx, o.address, o.tls, o.timeout)
	if err != nil {
		return nil, err
	}
	l := newLost()
	sess := &ackSession{State: state.New(discardStore{}, memory.New())}
	c := paho5.NewClient(paho5.ClientConfig{
		Conn:          conn,
		Session:       sess,
		PacketTimeout: o.timeout,
		OnClientError: func(err error) { l.fire(fmt.Errorf("connection lost: %w", err)) },
		OnServerDisconnect: func(d *paho5.Disconnect) {
			l.fire(fmt.Errorf("the broker disconnected: reason %#x %s", d.ReasonCode, reasonString(d.Properties)))
		},
	})
	cp := &paho5.Connect{
		ClientID:   o.clientID,
		KeepAlive:  uint16(o.keepAlive / time.Second),
		CleanStart: !o.persistent,
	}
	if o.persistent {
		secs := uint32(o.expiry / time.Second)
		cp.Properties = &paho5.ConnectProperties{SessionExpiryInterval: &secs}
	}
	if o.username != "" {
		cp.Username, cp.UsernameFlag = o.username, true
	}
	if o.password != "" {
		cp.Password, cp.PasswordFlag = []byte(o.password), true
	}
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		_ = conn.Close()
		_ = sess.Close()
		if ca != nil {
			return nil, fmt.Errorf("connect refused: reason %#x (%s) %s", ca.ReasonCode, connackCodes[ca.ReasonCode], connackReason(ca))
		}
		return nil, err
	}
	// Connect started the client's goroutines; they end with the connection (close waits for Done). A failed
	// read, write or keepalive reaches OnClientError before Done, so lost needs no goroutine of its own.
	return &client5{c: c, conn: conn, sess: sess, sig: l}, nil
}

func reasonString(p *paho5.DisconnectProperties) string {
	if p == nil {
		return ""
	}
	return p.ReasonString
}

// connackCodes name the CONNACK reason codes of MQTT 5 (§3.2.2.2) a gateway meets.
var connackCodes = map[byte]string{
	0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error", 0x84: "unsupported protocol version",
	0x85: "client identifier not valid", 0x86: "bad user name or password", 0x87: "not authorized",
	0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned", 0x8C: "bad authentication method",
	0x95: "packet too large", 0x97: "quota exceeded", 0x9F: "connection rate exceeded",
}

func connackReason(ca *paho5.Connack) string {
	if ca.Properties == nil {
		return ""
	}
	return ca.Properties.ReasonString
}

// publish hands the message to the session and the connection (PublishMethod_AsyncSend) and returns how to wait
// for the broker's answer: ctx bounds only the wait for a free packet id while the broker's Receive Maximum
// is reached.
func (c *client5) publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) (waiter, error) {
	c.sess.last = nil
	_, err := c.c.PublishWithOptions(ctx, &paho5.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: payload},
		paho5.PublishOptions{Method: paho5.PublishMethod_AsyncSend})
	if err != nil {
		return nil, err
	}
	ch := c.sess.last
	if qos == 0 || ch == nil {
		return func(<-chan struct{}, time.Duration) error { return nil }, nil // written: QoS 0's acknowledgement
	}
	return func(done <-chan struct{}, timeout time.Duration) error {
		var resp packets.ControlPacket
		select {
		case resp = <-ch:
		default:
			t := time.NewTimer(timeout)
			defer t.Stop()
			select {
			case resp = <-ch:
			case <-c.sig.ch:
				return c.sig.get()
			case <-done:
				return errStopped
			case <-t.C:
				return fmt.Errorf("no acknowledgement from the broker within %v", timeout)
			}
		}
		return pubResult(topic, resp)
	}, nil
}

// pubResult is the outcome of the broker's answer to a QoS 1 or 2 publish; an empty packet is the session
// dropping the message (the client closing).
func pubResult(topic string, resp packets.ControlPacket) error {
	var pr *paho5.PublishResponse
	switch p := resp.Content.(type) {
	case *packets.Puback:
		pr = paho5.PublishResponseFromPuback(p)
	case *packets.Pubrec:
		pr = paho5.PublishResponseFromPubrec(p)
	case *packets.Pubcomp:
		pr = paho5.PublishResponseFromPubcomp(p)
	default:
		return fmt.Errorf("publish to %q: transmitted but not acknowledged when the client closed", topic)
	}
	if pr.ReasonCode < 0x80 {
		return nil
	}
	why := ""
	if pr.Properties != nil {
		why = pr.Properties.ReasonString
	}
	return fmt.Errorf("%w: topic %q: reason %#x %s", errRefused, topic, pr.ReasonCode, strings.TrimSpace(why))
}

// errRefused is a publish the broker refused (an MQTT 5 reason code ≥ 0x80: not authorised, topic invalid,
// quota exceeded, payload format invalid).
var errRefused = errors.New("the broker refused the message")

func (c *client5) hold()                 { c.conn.hold() }
func (c *client5) release()              { c.conn.release() }
func (c *client5) lost() <-chan struct{} { return c.sig.ch }
func (c *client5) err() error            { return c.sig.get() }
func (c *client5) close() {
	_ = c.c.Disconnect(&paho5.Disconnect{ReasonCode: 0})
	_ = c.conn.Close()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-c.c.Done():
	case <-t.C:
	}
	_ = c.sess.Close() // the client does not close a session it was given
}
