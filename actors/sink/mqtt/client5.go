package mqtt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// --- MQTT 5: paho.golang's packets over bufConn ---
//
// Like 3.1.1 (client3.go), MQTT 5 is paho.golang's packets package (its encoder and decoder of every MQTT 5
// packet and property) driven over bufConn, not its paho.Client. The profile of the per-point row
// (BenchmarkMQTTSink/5-value) put 30% of the process's CPU in paho.Client's publish alone, none of it the
// protocol: per message two contexts (a packet timeout, and in the session a cancel), a goroutine started to
// watch the connection while the session waits for a slot, two channels, the session's map of packets in
// flight under its lock, and the pinger's bookkeeping; its reader then routes each PUBACK through the session
// under the same lock. What the sink needs of an MQTT 5 session is kept here: the broker's Receive Maximum
// (CONNACK; at most that many QoS 1 and 2 messages unacknowledged, §4.9: publish waits for a slot), its Server
// Keep Alive, the reason codes of PUBACK and PUBREC (≥ 0x80: the broker refused the message, errRefused), the
// broker's DISCONNECT with its reason, and the QoS 2 exchange (PUBREC, PUBREL, PUBCOMP, §4.3.3).

type client5 struct {
	*flight
	pub   packets.Publish
	quota chan struct{} // one token per QoS 1 or 2 message unacknowledged, up to the broker's Receive Maximum
}

func dial5(ctx context.Context, o dialOptions) (client, error) {
	conn, err := dialConn(ctx, o.address, o.tls, o.timeout)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() }) // a stop during the handshake ends it
	fail := func(err error) (client, error) {
		stop()
		_ = conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	cp := packets.NewControlPacket(packets.CONNECT)
	c5 := cp.Content.(*packets.Connect)
	c5.ClientID = o.clientID
	c5.KeepAlive = uint16(o.keepAlive / time.Second)
	c5.CleanStart = !o.persistent
	if o.persistent {
		secs := uint32(o.expiry / time.Second)
		c5.Properties.SessionExpiryInterval = &secs
	}
	if o.username != "" {
		c5.Username, c5.UsernameFlag = o.username, true
	}
	if o.password != "" {
		c5.Password, c5.PasswordFlag = []byte(o.password), true
	}
	if err := conn.SetReadDeadline(time.Now().Add(o.timeout)); err != nil {
		return fail(err)
	}
	if _, err := cp.WriteTo(conn); err != nil {
		return fail(err)
	}
	rp, err := packets.ReadPacket(conn)
	if err != nil {
		return fail(fmt.Errorf("no CONNACK: %w", err))
	}
	ca, ok := rp.Content.(*packets.Connack)
	if !ok {
		return fail(fmt.Errorf("the broker answered CONNECT with %s, not CONNACK", rp.PacketType()))
	}
	if ca.ReasonCode != packets.ConnackSuccess {
		return fail(fmt.Errorf("connect refused: reason %#x (%s) %s", ca.ReasonCode, connackCodes[ca.ReasonCode], reasonOf(ca.Properties)))
	}
	if ca.SessionPresent {
		err := releaseSession(conn, ringSize(o.inflight), o.timeout, func(id uint16) error {
			rel := packets.NewControlPacket(packets.PUBREL)
			rel.Content.(*packets.Pubrel).PacketID = id
			_, err := rel.WriteTo(conn)
			return err
		}, func() (uint16, bool, error) {
			rp, err := packets.ReadPacket(conn)
			if err != nil {
				return 0, false, err
			}
			pc, ok := rp.Content.(*packets.Pubcomp)
			if !ok {
				return 0, false, nil
			}
			return pc.PacketID, true, nil
		})
		if err != nil {
			return fail(fmt.Errorf("releasing the session's QoS 2 packet ids: %w", err))
		}
	}
	if !stop() {
		return fail(ctx.Err())
	}
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		return fail(err)
	}
	receiveMax, keepAlive := 65535, o.keepAlive
	if p := ca.Properties; p != nil {
		if p.ReceiveMaximum != nil && *p.ReceiveMaximum > 0 {
			receiveMax = int(*p.ReceiveMaximum)
		}
		if p.ServerKeepAlive != nil { // the broker's keep alive replaces ours (§3.2.2.3.14)
			keepAlive = time.Duration(*p.ServerKeepAlive) * time.Second
		}
	}
	c := &client5{flight: newFlight(conn, o.inflight, o.timeout), quota: make(chan struct{}, receiveMax)}
	c.pub.Properties = &packets.Properties{}
	ping := packets.NewControlPacket(packets.PINGREQ)
	c.wg.Add(2)
	go c.read()
	go c.keepAlive(keepAlive, func() error { _, err := ping.WriteTo(c.conn); return err })
	return c, nil
}

// connackCodes name the CONNACK reason codes of MQTT 5 (§3.2.2.2) a gateway meets.
var connackCodes = map[byte]string{
	0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error", 0x84: "unsupported protocol version",
	0x85: "client identifier not valid", 0x86: "bad user name or password", 0x87: "not authorized",
	0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned", 0x8C: "bad authentication method",
	0x95: "packet too large", 0x97: "quota exceeded", 0x9F: "connection rate exceeded",
}

func reasonOf(p *packets.Properties) string {
	if p == nil {
		return ""
	}
	return strings.TrimSpace(p.ReasonString)
}

// publish writes the message and returns how to wait for the broker's answer; ctx bounds only the wait for a
// slot while the broker's Receive Maximum is reached.
func (c *client5) publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) (waiter, error) {
	p := &c.pub
	p.QoS, p.Retain, p.Duplicate, p.Topic, p.Payload, p.PacketID = qos, retain, false, topic, payload, 0
	var s *slot
	if qos > 0 {
		select {
		case c.quota <- struct{}{}:
		default:
			c.release() // the broker's window is full: what is held must reach it for its answers to come
			select {
			case c.quota <- struct{}{}:
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-c.sig.ch:
				return nil, c.sig.get()
			}
		}
		var err error
		if s, p.PacketID, err = c.take(topic); err != nil {
			<-c.quota
			return nil, err
		}
	}
	_, err := p.WriteTo(c.conn)
	p.Topic, p.Payload = "", nil // the worker's buffers are not the client's to keep
	if err != nil {
		if s != nil {
			s.busy.Store(false)
			<-c.quota
		}
		return nil, err
	}
	if s == nil {
		return written, nil
	}
	return s.wait, nil
}

// read reads the broker's packets until the connection ends, and fires lost with why.
func (c *client5) read() {
	defer c.wg.Done()
	for {
		p, err := packets.ReadPacket(c.conn)
		if err != nil {
			c.sig.fire(fmt.Errorf("connection lost: %w", err))
			return
		}
		c.lastRecv.Store(time.Now().UnixNano())
		if err := c.handle(p); err != nil {
			c.fail(err)
			return
		}
	}
}

func (c *client5) handle(cp *packets.ControlPacket) error {
	switch p := cp.Content.(type) {
	case *packets.Puback:
		return c.answered(p.PacketID, p.ReasonCode, p.Properties, "PUBACK")
	case *packets.Pubrec: // QoS 2, step 2: release the message, unless the broker refused it
		if p.ReasonCode >= 0x80 {
			return c.answered(p.PacketID, p.ReasonCode, p.Properties, "PUBREC")
		}
		if c.slot(p.PacketID) == nil {
			return fmt.Errorf("the broker sent PUBREC for packet id %d, which is not in flight", p.PacketID)
		}
		rel := packets.NewControlPacket(packets.PUBREL)
		rel.Content.(*packets.Pubrel).PacketID = p.PacketID
		_, err := rel.WriteTo(c.conn)
		return err
	case *packets.Pubcomp:
		return c.answered(p.PacketID, p.ReasonCode, p.Properties, "PUBCOMP")
	case *packets.Pingresp:
		return nil
	case *packets.Disconnect:
		return fmt.Errorf("the broker disconnected: reason %#x %s", p.ReasonCode, reasonOf(p.Properties))
	}
	return fmt.Errorf("the broker sent an unexpected %s", cp.PacketType())
}

// answered ends the message of packet id with the broker's reason code, and frees its slot of the quota.
func (c *client5) answered(id uint16, code byte, props *packets.Properties, what string) error {
	var outcome error
	if code >= 0x80 {
		topic := ""
		if s := c.slot(id); s != nil {
			topic = s.topic
		}
		outcome = fmt.Errorf("%w: topic %q: reason %#x %s", errRefused, topic, code, reasonOf(props))
	}
	if err := c.complete(id, outcome, what); err != nil {
		return err
	}
	select {
	case <-c.quota:
	default:
	}
	return nil
}

// errRefused is a publish the broker refused (an MQTT 5 reason code ≥ 0x80: not authorised, topic invalid,
// quota exceeded, payload format invalid).
var errRefused = errors.New("the broker refused the message")

// close sends DISCONNECT (reason 0: normal, the broker drops the will), closes the connection after writing what
// is pending, and waits for the client's goroutines.
func (c *client5) close() {
	c.end(func() error {
		d := packets.NewControlPacket(packets.DISCONNECT)
		_, err := d.WriteTo(c.conn)
		return err
	})
}
