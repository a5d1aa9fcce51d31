package mqtt

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
)

// The clients. MQTT 3.1.1 is eclipse/paho.mqtt.golang (v1.5.1), MQTT 5 is the paho client of
// eclipse/paho.golang (v0.23.0): no single well-kept Go client speaks both (paho.mqtt.golang stops at 3.1.1,
// paho.golang starts at 5), so each version gets the library its Eclipse project keeps for it, behind one small
// interface, and nothing of either leaks past this file.
//
// Both are used for one connection each, never with their own reconnect: paho.mqtt.golang's auto-reconnect is
// where its known goroutine leak lives (eclipse-paho/paho.mqtt.golang#675: startCommsWorkers left waiting when
// connectionUp fails during a reconnect), and autopaho's reconnect would hide a broker outage from the
// supervisor. A lost connection ends the device's session worker with a peer failure; the supervisor restarts
// the device after its capped backoff (shown disconnected meanwhile), and the new incarnation connects with a
// fresh client and subscribes again — every connection subscribes, whatever the broker says about a stored
// session. That is exactly what Telegraf's mqtt_consumer got wrong (influxdata/telegraf#16038, #16293: it
// skipped the subscribe when it had asked for a persistent session, or lost the subscriptions across the
// library's own reconnect, and stayed connected with no data).

// session is one connection to the broker.
type session interface {
	// subscribe subscribes to every filter and returns, per filter, nil or why the broker refused it.
	subscribe(ctx context.Context, filters []string, qos byte) ([]error, error)
	publish(ctx context.Context, topic string, qos byte, retain bool, payload []byte) error
	// lost is closed when the connection is lost; cause says why.
	lost() <-chan struct{}
	cause() error
	close()
}

// inbound receives every message of the session, on the client's goroutine: it must not block.
type inbound func(topic string, payload []byte)

// errConnectionLost is the cause of a connection that ended without one; errClosed of one the gateway closed
// (a stop, an injected drop).
var (
	errConnectionLost = errors.New("connection lost")
	errClosed         = errors.New("connection closed by the gateway")
)

// lostSignal is closed once, with its cause.
type lostSignal struct {
	once sync.Once
	ch   chan struct{}
	mu   sync.Mutex
	err  error
}

func newLost() *lostSignal { return &lostSignal{ch: make(chan struct{})} }

func (l *lostSignal) fire(err error) {
	l.once.Do(func() {
		if err == nil {
			err = errConnectionLost
		}
		l.mu.Lock()
		l.err = err
		l.mu.Unlock()
		close(l.ch)
	})
}

func (l *lostSignal) cause() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// dial connects to the broker with the settings' protocol.
func dial(ctx context.Context, s *Settings, clientID string, in inbound) (session, error) {
	var tlsConfig *tls.Config
	if s.TLS != nil {
		host, _, _ := net.SplitHostPort(s.HostPort)
		c, err := s.TLS.ClientConfig(host)
		if err != nil {
			return nil, err
		}
		tlsConfig = c
	}
	if s.Protocol == Protocol5 {
		return dial5(ctx, s, clientID, tlsConfig, in)
	}
	return dial311(ctx, s, clientID, tlsConfig, in)
}

// dialBroker opens the connection to the broker, TLS when configured, with reads buffered: both clients read a
// packet's fixed header and length byte by byte straight from the connection, which made reading a small message
// several system calls (a quarter of the driver's CPU in the benchmark). One buffered reader per connection makes
// it one read per burst of messages. The dial is bounded by ctx and the connect timeout.
func dialBroker(ctx context.Context, s *Settings, tlsConfig *tls.Config) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, s.ConnectTimeout)
	defer cancel()
	d := &net.Dialer{}
	var nc net.Conn
	var err error
	if tlsConfig != nil {
		nc, err = (&tls.Dialer{NetDialer: d, Config: tlsConfig}).DialContext(dctx, "tcp", s.HostPort)
	} else {
		nc, err = d.DialContext(dctx, "tcp", s.HostPort)
	}
	if err != nil {
		return nil, err
	}
	return &bufferedConn{Conn: nc, r: bufio.NewReaderSize(nc, 32<<10)}, nil
}

// bufferedConn is a connection whose reads go through a buffer (one reader: the client's).
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// --- MQTT 3.1.1: paho.mqtt.golang ---

type session311 struct {
	c    paho3.Client
	gone *lostSignal
}

func dial311(ctx context.Context, s *Settings, clientID string, tlsConfig *tls.Config, in inbound) (session, error) {
	gone := newLost()
	scheme := "tcp://"
	if tlsConfig != nil {
		scheme = "ssl://"
	}
	opts := paho3.NewClientOptions().
		AddBroker(scheme + s.HostPort).
		SetClientID(clientID).
		SetProtocolVersion(4).
		SetCleanSession(s.Clean).
		SetKeepAlive(s.KeepAlive).
		SetPingTimeout(min(s.KeepAlive, 10*time.Second)).
		SetConnectTimeout(s.ConnectTimeout).
		SetWriteTimeout(s.ConnectTimeout).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetResumeSubs(false).
		SetOrderMatters(true). // one goroutine delivers in order; inbound only sends to the actor
		SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) { in(m.Topic(), m.Payload()) }).
		SetConnectionLostHandler(func(_ paho3.Client, err error) { gone.fire(err) })
	if s.Username != "" {
		opts.SetUsername(s.Username).SetPassword(s.Password)
	}
	// The connection is ours (dialBroker: buffered reads, TLS as configured); paho's own dialer would also read
	// proxy settings from the environment, which a gateway's broker connection should not pick up unseen.
	opts.SetCustomOpenConnectionFn(func(*url.URL, paho3.ClientOptions) (net.Conn, error) {
		return dialBroker(ctx, s, tlsConfig)
	})
	c := paho3.NewClient(opts)
	tok := c.Connect()
	if err := wait(ctx, tok, s.ConnectTimeout); err != nil {
		c.Disconnect(0)
		return nil, err
	}
	return &session311{c: c, gone: gone}, nil
}

// wait waits for a paho.mqtt.golang token, bounded by ctx and limit.
func wait(ctx context.Context, tok paho3.Token, limit time.Duration) error {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("no answer from the broker within %s", limit)
	}
}

func (c *session311) subscribe(ctx context.Context, filters []string, qos byte) ([]error, error) {
	m := make(map[string]byte, len(filters))
	for _, f := range filters {
		m[f] = qos
	}
	tok := c.c.SubscribeMultiple(m, nil) // the default handler takes every message
	if err := wait(ctx, tok, 30*time.Second); err != nil {
		return nil, err
	}
	granted := tok.(*paho3.SubscribeToken).Result()
	errs := make([]error, len(filters))
	for i, f := range filters {
		if q, ok := granted[f]; !ok || q >= 0x80 {
			errs[i] = fmt.Errorf("the broker refused the subscription to %q (return code 0x80)", f)
		}
	}
	return errs, nil
}

func (c *session311) publish(ctx context.Context, topic string, qos byte, retain bool, payload []byte) error {
	return wait(ctx, c.c.Publish(topic, qos, retain, payload), 30*time.Second)
}

func (c *session311) lost() <-chan struct{} { return c.gone.ch }
func (c *session311) cause() error          { return c.gone.cause() }

// close disconnects (paho.mqtt.golang calls no lost handler for a disconnect it was asked for: lost fires here).
func (c *session311) close() {
	c.c.Disconnect(250)
	c.gone.fire(errClosed)
}

// --- MQTT 5: paho.golang ---

type session5 struct {
	c    *paho5.Client
	gone *lostSignal
}

func dial5(ctx context.Context, s *Settings, clientID string, tlsConfig *tls.Config, in inbound) (session, error) {
	nc, err := dialBroker(ctx, s, tlsConfig)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, s.ConnectTimeout)
	defer cancel()
	gone := newLost()
	c := paho5.NewClient(paho5.ClientConfig{
		ClientID: clientID,
		Conn:     nc,
		OnPublishReceived: []func(paho5.PublishReceived) (bool, error){func(pr paho5.PublishReceived) (bool, error) {
			in(pr.Packet.Topic, pr.Packet.Payload)
			return true, nil
		}},
		OnClientError: func(err error) { gone.fire(err) },
		OnServerDisconnect: func(d *paho5.Disconnect) {
			reason := ""
			if d.Properties != nil {
				reason = d.Properties.ReasonString
			}
			gone.fire(fmt.Errorf("the broker disconnected (reason 0x%02x %s)", d.ReasonCode, reason))
		},
		PacketTimeout: s.ConnectTimeout,
	})
	max := uint32(s.MaxPayload) + 64<<10 // the packet: the payload, its topic and properties
	cp := &paho5.Connect{
		ClientID:   clientID,
		KeepAlive:  uint16(s.KeepAlive / time.Second),
		CleanStart: s.Clean,
		// The broker drops what is larger than the gateway takes, instead of sending it.
		Properties: &paho5.ConnectProperties{MaximumPacketSize: &max},
	}
	if !s.Clean {
		never := uint32(0xFFFFFFFF) // a persistent session that the broker keeps (up to its own limit)
		cp.Properties.SessionExpiryInterval = &never
	}
	if s.Username != "" {
		cp.Username, cp.UsernameFlag = s.Username, true
		cp.Password, cp.PasswordFlag = []byte(s.Password), true
	}
	if ack, err := c.Connect(dctx, cp); err != nil {
		_ = nc.Close()
		if ack != nil && ack.ReasonCode >= 0x80 {
			return nil, fmt.Errorf("the broker refused the connection: reason 0x%02x (%s)", ack.ReasonCode, reasonName(ack.ReasonCode))
		}
		return nil, err
	}
	return &session5{c: c, gone: gone}, nil
}

// reasonName names the MQTT 5 CONNACK reason codes a gateway meets (MQTT 5.0, 3.2.2.2).
func reasonName(code byte) string {
	names := map[byte]string{
		0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error", 0x83: "implementation specific error",
		0x84: "unsupported protocol version", 0x85: "client identifier not valid", 0x86: "bad user name or password",
		0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned",
		0x8C: "bad authentication method", 0x95: "packet too large", 0x97: "quota exceeded", 0x9F: "connection rate exceeded",
	}
	if n, ok := names[code]; ok {
		return n
	}
	return "see the MQTT 5 reason codes"
}

func (c *session5) subscribe(ctx context.Context, filters []string, qos byte) ([]error, error) {
	sub := &paho5.Subscribe{}
	for _, f := range filters {
		sub.Subscriptions = append(sub.Subscriptions, paho5.SubscribeOptions{Topic: f, QoS: qos})
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ack, err := c.c.Subscribe(sctx, sub)
	if ack == nil {
		return nil, err
	}
	errs := make([]error, len(filters))
	for i := range filters {
		if i >= len(ack.Reasons) {
			errs[i] = fmt.Errorf("no answer for the subscription to %q", filters[i])
		} else if code := ack.Reasons[i]; code >= 0x80 {
			errs[i] = fmt.Errorf("the broker refused the subscription to %q (reason 0x%02x)", filters[i], code)
		}
	}
	return errs, nil
}

func (c *session5) publish(ctx context.Context, topic string, qos byte, retain bool, payload []byte) error {
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := c.c.Publish(pctx, &paho5.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: payload})
	if err != nil {
		return err
	}
	if res != nil && res.ReasonCode >= 0x80 {
		return fmt.Errorf("the broker refused the publish (reason 0x%02x)", res.ReasonCode)
	}
	return nil
}

// lost is the client's shutdown, which every failure of the connection ends in (OnClientError and
// OnServerDisconnect record why, possibly just after).
func (c *session5) lost() <-chan struct{} { return c.c.Done() }

func (c *session5) cause() error {
	if err := c.gone.cause(); err != nil {
		return err
	}
	return errConnectionLost
}

func (c *session5) close() {
	c.gone.fire(errClosed)
	_ = c.c.Disconnect(&paho5.Disconnect{ReasonCode: 0})
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-c.c.Done():
	case <-t.C: // the client's workers end with its connection, closed by Disconnect
	}
}
