package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
)

// The two clients, one per protocol, behind one small interface. The libraries are the Eclipse Paho clients the
// MQTT device driver uses too: paho.mqtt.golang (3.1.1, the most used Go MQTT client) and paho.golang (MQTT 5; its
// low-level paho.Client, not autopaho, because the reconnect is the supervisor's: one client per connection,
// closed when it fails, so no library keeps a reconnect loop of its own — where the goroutine growth of failed
// reconnects lives; TestNoGoroutineGrowthOnFailedReconnects counts them).

// client is one connection to the broker.
type client interface {
	// publish sends one message and returns how to wait for its outcome: the broker's PUBACK (QoS 1) or PUBCOMP
	// (QoS 2), or the write (QoS 0). It may block while the client's window is full.
	publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) (waiter, error)
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
	window     int
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

// --- MQTT 3.1.1: paho.mqtt.golang ---

type client3 struct {
	c   paho3.Client
	sig *lostSignal
}

func dial3(ctx context.Context, o dialOptions) (client, error) {
	scheme := "tcp://"
	if o.tls != nil {
		scheme = "ssl://"
	}
	l := newLost()
	opts := paho3.NewClientOptions().
		AddBroker(scheme + o.address).
		SetClientID(o.clientID).
		SetProtocolVersion(4). // 3.1.1, no fallback to 3.1
		SetCleanSession(!o.persistent).
		SetKeepAlive(o.keepAlive).
		SetPingTimeout(o.timeout).
		SetConnectTimeout(o.timeout).
		SetWriteTimeout(o.timeout).
		SetAutoReconnect(false). // the supervisor reconnects, with a new client
		SetConnectRetry(false).
		SetOrderMatters(false). // nothing is received; publishes keep their order on the wire anyway
		SetMaxResumePubInFlight(o.window).
		SetConnectionLostHandler(func(_ paho3.Client, err error) { l.fire(fmt.Errorf("connection lost: %w", err)) })
	if o.username != "" {
		opts.SetUsername(o.username).SetPassword(o.password)
	}
	if o.tls != nil {
		opts.SetTLSConfig(o.tls.Clone())
	}
	c := paho3.NewClient(opts)
	tok := c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		c.Disconnect(0)
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		c.Disconnect(0)
		return nil, err
	}
	return &client3{c: c, sig: l}, nil
}

func (c *client3) publish(_ context.Context, topic string, payload []byte, qos byte, retain bool) (waiter, error) {
	tok := c.c.Publish(topic, qos, retain, payload)
	return func(done <-chan struct{}, timeout time.Duration) error {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-tok.Done():
			return tok.Error()
		case <-c.sig.ch:
			return c.sig.get()
		case <-done:
			return errStopped
		case <-t.C:
			return fmt.Errorf("no acknowledgement from the broker within %v", timeout)
		}
	}, nil
}

func (c *client3) lost() <-chan struct{} { return c.sig.ch }
func (c *client3) err() error            { return c.sig.get() }
func (c *client3) close()                { c.c.Disconnect(100) }

// --- MQTT 5: paho.golang ---

type client5 struct {
	c    *paho5.Client
	conn net.Conn
	sig  *lostSignal
}

func dial5(ctx context.Context, o dialOptions) (client, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var conn net.Conn
	var err error
	d := &net.Dialer{Timeout: o.timeout}
	if o.tls != nil {
		cfg := o.tls.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(o.address)
		}
		conn, err = (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, "tcp", o.address)
	} else {
		conn, err = d.DialContext(ctx, "tcp", o.address)
	}
	if err != nil {
		return nil, err
	}
	l := newLost()
	c := paho5.NewClient(paho5.ClientConfig{
		Conn:          conn,
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
		if ca != nil {
			return nil, fmt.Errorf("connect refused: reason %#x (%s) %s", ca.ReasonCode, connackCodes[ca.ReasonCode], connackReason(ca))
		}
		return nil, err
	}
	// Connect started the client's goroutines; they end with the connection (close waits for Done). A failed
	// read, write or keepalive reaches OnClientError before Done, so lost needs no goroutine of its own.
	return &client5{c: c, conn: conn, sig: l}, nil
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

// publish blocks until the broker's acknowledgement: paho.golang's Publish is a transaction. The sink keeps the
// order of its messages on the wire, so MQTT 5 publishes one at a time (a round trip each; the batch payload
// amortises it).
func (c *client5) publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) (waiter, error) {
	resp, err := c.c.Publish(ctx, &paho5.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: payload})
	if resp != nil && resp.ReasonCode >= 0x80 { // paho.golang returns the PUBACK/PUBREC with an error then
		why := ""
		if resp.Properties != nil {
			why = resp.Properties.ReasonString
		}
		if err != nil {
			why = strings.TrimSpace(why + " " + err.Error())
		}
		err = fmt.Errorf("%w: topic %q: reason %#x %s", errRefused, topic, resp.ReasonCode, why)
	}
	return func(<-chan struct{}, time.Duration) error { return err }, nil
}

// errRefused is a publish the broker refused (an MQTT 5 reason code ≥ 0x80: not authorised, topic invalid,
// quota exceeded, payload format invalid).
var errRefused = errors.New("the broker refused the message")

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
}
