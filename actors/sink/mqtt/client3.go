package mqtt

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// --- MQTT 3.1.1: paho.mqtt.golang's packets over bufConn ---
//
// The 3.1.1 client is paho.mqtt.golang's packets package (the library's own encoder and decoder of every MQTT
// 3.1.1 packet, what its client writes and reads with) driven over bufConn, not paho.mqtt.golang's Client. The
// profile of the per-point row (bench/mqtt_test.go, BenchmarkMQTTSink/3.1.1-value) put 46% of the process's CPU
// in the Client's per-message machinery, none of it the protocol: per publish a token with its channel, a
// 30-second timer, a message id from a locked map, the packet stored in a map under a key made with fmt.Sprintf
// (outboundKeyFromMID) and deleted again on its PUBACK (under another Sprintf key), and four goroutine hand-offs
// (Publish → the comms worker → the outgoing writer; the reader → the incoming router → the comms worker), each a
// channel send and a wake-up. This sink needs none of that: the message is written by the publish worker in
// publish order, its PUBACK is matched to the packet id, and the session's store is for resending on a reconnect
// of the same client, which never comes here (a new client per connection; the README's duplicate window).
//
// What is left to this file is the sequencing the MQTT 3.1.1 specification prescribes for one client that only
// publishes: CONNECT then CONNACK (§3.1, §3.2), PUBLISH with a packet id answered by PUBACK (QoS 1, §4.3.2) or
// by PUBREC, PUBREL, PUBCOMP (QoS 2, §4.3.3), PINGREQ within the keep alive (§3.1.2.10), DISCONNECT. Every
// packet is encoded and decoded by the packets package. The tests are the same against Debian's mosquitto as
// with the Client (every QoS, retained, persistent session, TLS, credentials, refused logins, no goroutine
// growth on failed reconnects).
//
// Two goroutines are the client's, started after the CONNACK and ended by close (which waits for them): the
// reader (PUBACK, PUBREC, PUBCOMP, PINGRESP) and the keep alive.

type client3 struct {
	*flight
	pub *packets.PublishPacket // the publish worker's, reused: only it publishes
}

func dial3(ctx context.Context, o dialOptions) (client, error) {
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
	cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion = "MQTT", 4 // 3.1.1, no fallback to 3.1
	cp.CleanSession = !o.persistent
	cp.Keepalive = uint16(o.keepAlive / time.Second)
	cp.ClientIdentifier = o.clientID
	if o.username != "" {
		cp.UsernameFlag, cp.Username = true, o.username
		if o.password != "" {
			cp.PasswordFlag, cp.Password = true, []byte(o.password)
		}
	}
	if err := conn.SetReadDeadline(time.Now().Add(o.timeout)); err != nil {
		return fail(err)
	}
	if err := cp.Write(conn); err != nil {
		return fail(err)
	}
	p, err := packets.ReadPacket(conn)
	if err != nil {
		return fail(fmt.Errorf("no CONNACK: %w", err))
	}
	ca, ok := p.(*packets.ConnackPacket)
	if !ok {
		return fail(fmt.Errorf("the broker answered CONNECT with %T, not CONNACK", p))
	}
	if ca.ReturnCode != packets.Accepted {
		why := packets.ConnErrors[ca.ReturnCode]
		if why == nil {
			why = fmt.Errorf("return code %d", ca.ReturnCode)
		}
		return fail(fmt.Errorf("connect refused: %w", why))
	}
	if ca.SessionPresent {
		err := releaseSession(conn, ringSize(o.inflight), o.timeout, func(id uint16) error {
			rel := packets.NewControlPacket(packets.Pubrel).(*packets.PubrelPacket)
			rel.MessageID = id
			return rel.Write(conn)
		}, func() (uint16, bool, error) {
			p, err := packets.ReadPacket(conn)
			if err != nil {
				return 0, false, err
			}
			pc, ok := p.(*packets.PubcompPacket)
			if !ok {
				return 0, false, nil
			}
			return pc.MessageID, true, nil
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
	c := &client3{flight: newFlight(conn, o.inflight, o.timeout),
		pub: packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)}
	ping := packets.NewControlPacket(packets.Pingreq)
	c.wg.Add(2)
	go c.read()
	go c.keepAlive(o.keepAlive, func() error { return ping.Write(c.conn) })
	return c, nil
}

func (c *client3) publish(_ context.Context, topic string, payload []byte, qos byte, retain bool) (waiter, error) {
	p := c.pub
	p.Qos, p.Retain, p.Dup, p.TopicName, p.Payload, p.MessageID = qos, retain, false, topic, payload, 0
	var s *slot
	if qos > 0 {
		var err error
		if s, p.MessageID, err = c.take(topic); err != nil {
			return nil, err
		}
	}
	err := p.Write(c.conn)
	p.TopicName, p.Payload = "", nil // the worker's buffers are not the client's to keep
	if err != nil {
		if s != nil {
			s.busy.Store(false)
		}
		return nil, err
	}
	if s == nil {
		return written, nil
	}
	return s.wait, nil
}

// read reads the broker's packets until the connection ends, and fires lost with why.
func (c *client3) read() {
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

func (c *client3) handle(p packets.ControlPacket) error {
	switch p := p.(type) {
	case *packets.PubackPacket:
		return c.complete(p.MessageID, nil, "PUBACK")
	case *packets.PubrecPacket: // QoS 2, step 2: release the message
		if c.slot(p.MessageID) == nil {
			return fmt.Errorf("the broker sent PUBREC for packet id %d, which is not in flight", p.MessageID)
		}
		rel := packets.NewControlPacket(packets.Pubrel).(*packets.PubrelPacket)
		rel.MessageID = p.MessageID
		return rel.Write(c.conn)
	case *packets.PubcompPacket:
		return c.complete(p.MessageID, nil, "PUBCOMP")
	case *packets.PingrespPacket:
		return nil
	case *packets.DisconnectPacket:
		return errors.New("the broker disconnected")
	}
	return fmt.Errorf("the broker sent an unexpected %s", p.String())
}

// close sends DISCONNECT (the broker then drops the will and, with a clean session, the session), closes the
// connection after writing what is pending, and waits for the client's goroutines.
func (c *client3) close() {
	c.end(func() error { return packets.NewControlPacket(packets.Disconnect).Write(c.conn) })
}
