package mqtt

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	p5 "github.com/eclipse/paho.golang/packets"
	p3 "github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/iotgw/iotgw/internal/testenv"
)

// The clients' own protocol sequencing (client3.go, client5.go, wire.go) against Debian's mosquitto, below the
// sink: the keep alive holds an idle connection, a window far above the broker's Receive Maximum is published
// and acknowledged in order, and every message arrives at a real subscriber.

func dialTest(t *testing.T, protocol string, port int, keepAlive time.Duration, inflight int) client {
	t.Helper()
	c, err := dial(context.Background(), protocol, dialOptions{address: "127.0.0.1:" + strconv.Itoa(port),
		clientID: "client-test-" + protocol, keepAlive: keepAlive, timeout: 5 * time.Second, inflight: inflight})
	if err != nil {
		t.Fatalf("%s: dial: %v", protocol, err)
	}
	t.Cleanup(c.close)
	return c
}

// TestKeepAliveHoldsAnIdleConnection: with a keep alive of 1 s mosquitto closes a client that sends nothing for
// 1.5 s; the client's PINGREQs keep it open over 4 s of silence, and it publishes afterwards.
func TestKeepAliveHoldsAnIdleConnection(t *testing.T) {
	broker := testenv.MosquittoSink(t, "")
	for _, protocol := range []string{Protocol311, Protocol5} {
		c := dialTest(t, protocol, broker.Port, time.Second, 16)
		select {
		case <-c.lost():
			t.Fatalf("%s: the idle connection was lost: %v", protocol, c.err())
		case <-time.After(4 * time.Second):
		}
		w, err := c.publish(context.Background(), "idle/"+protocol, []byte("1"), 1, false)
		if err != nil {
			t.Fatalf("%s: publish after the idle time: %v", protocol, err)
		}
		if err := w(nil, 10*time.Second); err != nil {
			t.Fatalf("%s: no acknowledgement after the idle time: %v", protocol, err)
		}
	}
}

// TestWindowAboveTheBrokersReceiveMaximum: mosquitto with max_inflight_messages 4 (its Receive Maximum on MQTT
// 5); the client's window is 1000 messages, at QoS 1 and 2 (3.1.1 QoS 2: 2, see below). Every message is acknowledged, in order, none refused, the connection never lost, and
// the subscriber gets every one.
func TestWindowAboveTheBrokersReceiveMaximum(t *testing.T) {
	broker := testenv.MosquittoSink(t, "max_inflight_messages 4")
	const n = 3000
	for _, protocol := range []string{Protocol311, Protocol5} {
		for _, qos := range []byte{1, 2} {
			levels := fmt.Sprintf("window/%s/%d", protocol, qos)
			topic := levels + "/m"
			sub := broker.Subscribe(t, levels+"/#", levels+"/probe", "sub-"+protocol+strconv.Itoa(int(qos)), int(qos))
			window := 1000
			if protocol == Protocol311 && qos == 2 {
				// MQTT 3.1.1 has no Receive Maximum to tell the client: mosquitto drops a client with more QoS 2
				// messages unreleased than its max_inflight_messages, so the messages in flight (the window, the one
				// waited on, the one being enqueued) must be within it (README).
				window = 2
			}
			c := dialTest(t, protocol, broker.Port, 30*time.Second, window)
			if c5, ok := c.(*client5); ok && cap(c5.quota) != 4 {
				t.Fatalf("MQTT 5: the client keeps a Receive Maximum of %d, mosquitto announced 4", cap(c5.quota))
			}
			waits := make(chan waiter, window) // the sink's window, as its publish and confirm workers use it
			errs := make(chan error, 1)
			go func() {
				for w := range waits {
					if err := w(nil, 20*time.Second); err != nil {
						errs <- err
						for range waits {
						}
						return
					}
				}
				errs <- nil
			}()
			c.hold()
			for i := 0; i < n; i++ {
				w, err := c.publish(context.Background(), topic, []byte(strconv.Itoa(i)), qos, false)
				if err != nil {
					close(waits)
					t.Fatalf("%s QoS %d: publish %d: %v (the acknowledgements: %v)", protocol, qos, i, err, <-errs)
				}
				select {
				case waits <- w:
				default:
					c.release()
					waits <- w
				}
			}
			c.release()
			close(waits)
			if err := <-errs; err != nil {
				t.Fatalf("%s QoS %d: %v", protocol, qos, err)
			}
			lines := sub.WaitLines(t, n, time.Minute)
			for i := 0; i < n; i++ {
				if want := topic + " " + strconv.Itoa(i); lines[i] != want {
					t.Fatalf("%s QoS %d: message %d is %q, want %q", protocol, qos, i, lines[i], want)
				}
			}
			c.close()
		}
	}
}

// crashAfterPUBREC is an earlier connection of clientID that published a QoS 2 message under packet id 1, got the
// broker's PUBREC, and ended before its PUBREL (the gateway killed): the broker's session holds the message.
func crashAfterPUBREC(t *testing.T, protocol string, port int, clientID, topic string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if protocol == Protocol311 {
		cp := p3.NewControlPacket(p3.Connect).(*p3.ConnectPacket)
		cp.ProtocolName, cp.ProtocolVersion, cp.ClientIdentifier, cp.Keepalive = "MQTT", 4, clientID, 60
		pub := p3.NewControlPacket(p3.Publish).(*p3.PublishPacket)
		pub.Qos, pub.TopicName, pub.Payload, pub.MessageID = 2, topic, []byte("old"), 1
		for _, step := range []func() error{func() error { return cp.Write(conn) }, func() error { _, err := p3.ReadPacket(conn); return err },
			func() error { return pub.Write(conn) }} {
			if err := step(); err != nil {
				t.Fatal(err)
			}
		}
		p, err := p3.ReadPacket(conn)
		if _, ok := p.(*p3.PubrecPacket); err != nil || !ok {
			t.Fatalf("want PUBREC, got %v %v", p, err)
		}
		return
	}
	cp := p5.NewControlPacket(p5.CONNECT)
	c5 := cp.Content.(*p5.Connect)
	c5.ClientID, c5.KeepAlive = clientID, 60
	expiry := uint32(3600)
	c5.Properties.SessionExpiryInterval = &expiry
	pub := p5.NewControlPacket(p5.PUBLISH)
	pp := pub.Content.(*p5.Publish)
	pp.QoS, pp.Topic, pp.Payload, pp.PacketID, pp.Properties = 2, topic, []byte("old"), 1, &p5.Properties{}
	if _, err := cp.WriteTo(conn); err != nil {
		t.Fatal(err)
	}
	if _, err := p5.ReadPacket(conn); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.WriteTo(conn); err != nil {
		t.Fatal(err)
	}
	rp, err := p5.ReadPacket(conn)
	if err != nil || rp.PacketType() != "PUBREC" {
		t.Fatalf("want PUBREC, got %v %v", rp, err)
	}
}

// TestPersistentSessionReleasesEarlierQoS2: a persistent client whose earlier connection died between PUBREC and
// PUBREL. Its new connection numbers packet ids from 1 again; the held message is released first (it arrives: a
// duplicate of what the stream delivers again), then the new one arrives under the same id, neither taken for the
// other (without the release, mosquitto overwrote the held one: only "new" arrived; see releaseSession).
func TestPersistentSessionReleasesEarlierQoS2(t *testing.T) {
	broker := testenv.MosquittoSink(t, "")
	for _, protocol := range []string{Protocol311, Protocol5} {
		levels := "release/" + protocol
		sub := broker.Subscribe(t, levels+"/#", levels+"/probe", "sub-release-"+protocol, 2)
		id := "release-" + protocol
		crashAfterPUBREC(t, protocol, broker.Port, id, levels+"/m")
		c, err := dial(context.Background(), protocol, dialOptions{address: "127.0.0.1:" + strconv.Itoa(broker.Port),
			clientID: id, persistent: true, expiry: time.Hour, keepAlive: 30 * time.Second, timeout: 5 * time.Second, inflight: 16})
		if err != nil {
			t.Fatalf("%s: dial: %v", protocol, err)
		}
		w, err := c.publish(context.Background(), levels+"/m", []byte("new"), 2, false)
		if err != nil {
			t.Fatalf("%s: publish: %v", protocol, err)
		}
		if err := w(nil, 10*time.Second); err != nil {
			t.Fatalf("%s: %v", protocol, err)
		}
		c.close()
		lines := sub.WaitLines(t, 2, 30*time.Second)
		if !slices.Contains(lines, levels+"/m new") || !slices.Contains(lines, levels+"/m old") {
			t.Fatalf("%s: the subscriber got %q, want the released old message and the new one", protocol, lines)
		}
	}
}
