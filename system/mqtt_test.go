package system

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotgw/iotgw/actors/device"
	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
)

// The MQTT driver against Debian's mosquitto, through the whole gateway: broker, device actor, bus, processor.

// events collects the error events of a device.
type events struct {
	mu  sync.Mutex
	evs []device.Event
}

func watchEvents(t *testing.T, nc *nats.Conn, subject string) *events {
	t.Helper()
	e := &events{}
	if _, err := nc.Subscribe(subject, func(m *nats.Msg) {
		var ev device.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Errorf("event %s: %v", m.Data, err)
			return
		}
		e.mu.Lock()
		e.evs = append(e.evs, ev)
		e.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return e
}

// waitEvent waits for an event of kind about topic whose error contains want.
func (e *events) waitEvent(t *testing.T, kind, topic, want string) device.Event {
	t.Helper()
	var found device.Event
	checkFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, ev := range e.evs {
			if ev.Kind == kind && (topic == "" || ev.Topic == topic) && strings.Contains(ev.Error, want) {
				found = ev
				return nil
			}
		}
		return fmt.Errorf("no %s event on %q containing %q among %d events", kind, topic, want, len(e.evs))
	})
	return found
}

func mqttConfig(broker, extra string) string {
	return fmt.Sprintf(`
device "line1" {
  driver = "mqtt"
  broker = %q
  %s
  subscribe "plant/+device/+key" { }
  subscribe "json/+device" {
    format     = "json"
    time_field = "ts"
    field "temp" {
      path = "data.temp"
      type = "float64"
    }
    field "running" { path = "state.on" }
  }
}
`, broker, extra)
}

// TestMQTTMapsPlainAndJSON: plain values keyed by the topic, and several points of one JSON message with its own
// timestamp, published by mosquitto_pub, arrive processed with the topic's device.
func TestMQTTMapsPlainAndJSON(t *testing.T) {
	for _, proto := range []string{"3.1.1", "5"} {
		t.Run(proto, func(t *testing.T) {
			broker := testenv.Mosquitto(t, "")
			rt := startRuntime(t, parseConfig(t, mqttConfig(broker.URL(), fmt.Sprintf("protocol = %q", proto))))
			nc := client(t, rt.Bus().URL)
			l := watchBatches(t, nc)
			waitFlowing(t, nc, broker)
			broker.Publish(t, "plant/press-7/pressure", []byte("4.25"))
			broker.Publish(t, "plant/press-7/door_open", []byte("true"))
			broker.Publish(t, "json/oven-2", []byte(`{"data":{"temp":181},"state":{"on":true},"ts":1700000000123}`))
			p := l.wait(t, "press-7", "pressure", "door_open")
			if v, _ := p["pressure"].Value.Float(); v != 4.25 || p["pressure"].Source != "mqtt" || p["pressure"].Quality != isp.QualityGood {
				t.Errorf("pressure %+v, want 4.25, source mqtt, good", p["pressure"])
			}
			if b, _ := p["door_open"].Value.Bool(); !b {
				t.Errorf("door_open %+v, want true", p["door_open"])
			}
			o := l.wait(t, "oven-2", "temp", "running")
			if v, _ := o["temp"].Value.Float(); v != 181 || o["temp"].Type != "float64" || o["temp"].Timestamp != 1700000000123*1e6 {
				t.Errorf("temp %+v, want 181 float64 stamped 1700000000123 ms", o["temp"])
			}
		})
	}
}

// waitFlowing waits until the mqtt device line1 receives: it publishes a probe (plant/probe/ping) until the
// probe's point is processed. The tree showing the device running is not enough, as the test may look before the
// device has even started, and so before it reports itself disconnected.
func waitFlowing(t *testing.T, nc *nats.Conn, broker *testenv.MosquittoBroker, args ...string) {
	t.Helper()
	sub, err := nc.SubscribeSync("iot.processed.batch.probe")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // the test's own subscription
	deadline := time.Now().Add(30 * time.Second)
	for {
		broker.Publish(t, "plant/probe/ping", []byte("1"), args...)
		if _, err := sub.NextMsg(100 * time.Millisecond); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the mqtt device receives nothing after 30s")
		}
	}
}

// TestMQTTResumesAfterBrokerRestart is exactly Telegraf's mqtt_consumer failure (influxdata/telegraf#16038,
// #16293): the broker restarts (without persistence, so it forgets every session and subscription) while a
// publisher streams; the device must reconnect, subscribe again and receive — with a clean session and with a
// persistent one (where Telegraf skipped the subscribe, trusting a session the broker no longer had), on MQTT
// 3.1.1 and 5. It counts what arrives before and after, and logs how long the gap was.
func TestMQTTResumesAfterBrokerRestart(t *testing.T) {
	for _, tc := range []struct{ proto, session string }{
		{"3.1.1", "clean_session = true"},
		{"3.1.1", `clean_session = false
  client_id = "iotgw-persist-3"`},
		{"5", "clean_session = true"},
		{"5", `clean_session = false
  client_id = "iotgw-persist-5"`},
	} {
		name := tc.proto + "/" + strings.Fields(tc.session)[2]
		t.Run(name, func(t *testing.T) {
			broker := testenv.Mosquitto(t, "")
			rt := startRuntime(t, parseConfig(t, mqttConfig(broker.URL(), fmt.Sprintf("protocol = %q\n  %s", tc.proto, tc.session))))
			nc := client(t, rt.Bus().URL)
			var mu sync.Mutex
			seen := map[int64]time.Time{}
			if _, err := nc.Subscribe("iot.processed.batch.stream", func(m *nats.Msg) {
				pts, err := isp.DecodeBatch(m.Data)
				if err != nil {
					t.Errorf("batch: %v", err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for _, p := range pts {
					if n, ok := p.Value.Int(); ok {
						seen[n] = time.Now()
					}
				}
			}); err != nil {
				t.Fatal(err)
			}
			count := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
			waitFlowing(t, nc, broker)

			// A publisher of its own (paho, reconnecting by itself), one message every 20 ms.
			pub := publisher(t, broker.URL())
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var seqMu sync.Mutex
			seq := int64(0)
			wg.Add(1)
			go func() {
				defer wg.Done()
				tk := time.NewTicker(20 * time.Millisecond)
				defer tk.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tk.C:
					}
					seqMu.Lock()
					seq++
					n := seq
					seqMu.Unlock()
					if pub.IsConnectionOpen() {
						pub.Publish("plant/stream/seq", 1, false, strconv.FormatInt(n, 10)).WaitTimeout(time.Second)
					}
				}
			}()
			t.Cleanup(func() { close(stop); wg.Wait(); pub.Disconnect(100) })

			checkFor(t, 30*time.Second, 10*time.Millisecond, func() error {
				if n := count(); n < 20 {
					return fmt.Errorf("%d messages before the restart", n)
				}
				return nil
			})
			before := count()
			restarted := time.Now()
			broker.Restart()
			checkFor(t, 60*time.Second, 10*time.Millisecond, func() error {
				mu.Lock()
				defer mu.Unlock()
				for _, at := range seen {
					if at.After(restarted) {
						return nil
					}
				}
				return fmt.Errorf("nothing received since the broker restarted %s ago", time.Since(restarted).Round(time.Millisecond))
			})
			gap := time.Since(restarted)
			afterFirst := count()
			checkFor(t, 30*time.Second, 10*time.Millisecond, func() error {
				if n := count() - afterFirst; n < 20 {
					return fmt.Errorf("%d messages after the restart", n)
				}
				return nil
			})
			t.Logf("%s: %d messages before the restart, data again %s after it, %d more counted since", name, before,
				gap.Round(time.Millisecond), count()-before)
		})
	}
}

// publisher is a test's own MQTT client (paho.mqtt.golang, reconnecting by itself).
func publisher(t *testing.T, url string) paho3.Client {
	t.Helper()
	opts := paho3.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("test-pub-%d", time.Now().UnixNano())).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(50 * time.Millisecond).
		SetMaxReconnectInterval(100 * time.Millisecond)
	c := paho3.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("test publisher: %v", tok.Error())
	}
	return c
}

// TestMQTTBadInput: each payload or topic that does not map gives an error event naming the topic and why, and
// the device goes on (a good message after them all still arrives).
func TestMQTTBadInput(t *testing.T) {
	broker := testenv.Mosquitto(t, "")
	rt := startRuntime(t, parseConfig(t, mqttConfig(broker.URL(), `max_payload = "1MB"`)))
	nc := client(t, rt.Bus().URL)
	ev := watchEvents(t, nc, "iot.errors.mqtt.line1")
	l := watchBatches(t, nc)
	waitFlowing(t, nc, broker)

	deep := strings.Repeat(`{"a":`, 1000) + "1" + strings.Repeat("}", 1000)
	huge := `{"data":{"temp":1},"list":[` + strings.Repeat("0,", 200000) + `0]}`
	cases := []struct {
		name, topic, payload, kind, want string
	}{
		{"not JSON", "json/d1", `{"data": {"temp": 20}`, "payload", "not valid JSON"},
		{"not a number", "plant/d1/temp", "warm", "payload", "not a plain number or boolean"},
		{"wrong type", "json/d2", `{"data":{"temp":"hot"},"state":{"on":true}}`, "payload", "wrong type"},
		{"missing field", "json/d3", `{"data":{"temp":1}}`, "payload", `field not found: "state.on"`},
		{"deep nesting", "json/d4", deep, "payload", "nested too deep"},
		{"huge array", "json/d5", huge, "payload", "too many values"},
		{"10 MB", "json/d6", `{"data":{"temp":1},"pad":"` + strings.Repeat("x", 10<<20) + `"}`, "too_large", "max_payload is 1048576"},
		{"device level", "plant/bad.dev/temp", "1", "topic", "no device id"},
		{"key level", "plant/d7/te$mp", "1", "topic", "no point key"},
		{"empty", "plant/d8/temp", "", "payload", "empty payload"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			publishFile(t, broker, tc.topic, tc.payload)
			e := ev.waitEvent(t, tc.kind, tc.topic, tc.want)
			if len(e.Error) > 600 {
				t.Errorf("event error of %d bytes: %.100s…", len(e.Error), e.Error)
			}
			t.Logf("%s: %s", tc.name, e.Error)
		})
	}
	// the good parts of a partly bad message are kept
	l.wait(t, "d3", "temp")
	broker.Publish(t, "plant/after/temp", []byte("7"))
	if v, _ := l.wait(t, "after", "temp")["temp"].Value.Int(); v != 7 {
		t.Errorf("after the bad input: temp %d, want 7", v)
	}
	if n := find(tree(t, nc), "devices/line1"); n == nil || n.Restarts != 0 {
		t.Errorf("device after bad input: %+v, want running without restarts", n)
	}
}

// TestMQTTDevicesList: with a devices list, a +device level outside it is a topic event and publishes nothing;
// one inside it flows.
func TestMQTTDevicesList(t *testing.T) {
	broker := testenv.Mosquitto(t, "")
	rt := startRuntime(t, parseConfig(t, mqttConfig(broker.URL(), `devices = ["probe", "press-7"]`)))
	nc := client(t, rt.Bus().URL)
	ev := watchEvents(t, nc, "iot.errors.mqtt.line1")
	l := watchBatches(t, nc)
	waitFlowing(t, nc, broker)
	broker.Publish(t, "plant/boiler-1/temperature", []byte("999"))
	ev.waitEvent(t, "topic", "plant/boiler-1/temperature", `device "boiler-1" is not in the device's devices list`)
	broker.Publish(t, "plant/press-7/pressure", []byte("2"))
	l.wait(t, "press-7", "pressure")
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, spoofed := l.points["boiler-1"]; spoofed {
		t.Error("a device outside the list was published")
	}
}

// publishFile publishes a payload of any size with mosquitto_pub -f (the command line would be too long).
func publishFile(t *testing.T, broker *testenv.MosquittoBroker, topic, payload string) {
	t.Helper()
	if payload == "" {
		broker.Publish(t, topic, nil)
		return
	}
	broker.Publish(t, topic, []byte(payload))
}

// TestMQTTWrite: a write is published on the command topic and answered like a Modbus write; a write of a bad
// value or while the broker is away is refused with a reason.
func TestMQTTWrite(t *testing.T) {
	broker := testenv.Mosquitto(t, "")
	rt := startRuntime(t, parseConfig(t, mqttConfig(broker.URL(), `command_topic = "plant/line1/set/{key}"`)))
	nc := client(t, rt.Bus().URL)
	waitFlowing(t, nc, broker)
	got := make(chan string, 4)
	sub := publisher(t, broker.URL())
	if tok := sub.Subscribe("plant/line1/set/#", 1, func(_ paho3.Client, m paho3.Message) {
		got <- m.Topic() + "=" + string(m.Payload())
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	writeReq := func(body string) device.WriteReply {
		m, err := nc.Request(device.WriteSubject("line1"), []byte(body), 15*time.Second)
		if err != nil {
			t.Fatalf("write: %v", err)
		}
		var r device.WriteReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("write reply %s: %v", m.Data, err)
		}
		return r
	}
	if r := writeReq(`{"key":"setpoint","value":21.5}`); !r.OK || r.Key != "setpoint" || r.Value != 21.5 {
		t.Fatalf("write: %+v", r)
	}
	select {
	case m := <-got:
		if m != "plant/line1/set/setpoint=21.5" {
			t.Errorf("published %q, want plant/line1/set/setpoint=21.5", m)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the write was not published")
	}
	for _, tc := range []struct{ body, want string }{
		{`{"key":"setpoint","value":[1]}`, "want a number, a bool or a string"},
		{`{"key":"set.point","value":1}`, "key"},
		{`{"key":"setpoint"`, "request is not"},
		{`{"key":"x","value":"` + strings.Repeat("a", 5000) + `"}`, "at most 4096"},
	} {
		if r := writeReq(tc.body); r.OK || !strings.Contains(r.Error, tc.want) {
			t.Errorf("write %.40s: %+v, want an error containing %q", tc.body, r, tc.want)
		}
	}
	// command_format = "json": {"key": value}, on a second device
	if r := ask(t, nc, SubjectDevicesAdd, `device "line2" {
  driver         = "mqtt"
  broker         = "`+broker.URL()+`"
  command_topic  = "plant/line1/set/{device}"
  command_format = "json"
  subscribe "other/#" { }
}`); !r.OK {
		t.Fatalf("devices.add: %+v", r)
	}
	checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		m, err := nc.Request(device.WriteSubject("line2"), []byte(`{"key":"state","value":"ON"}`), 15*time.Second)
		if err != nil {
			return err
		}
		var r device.WriteReply
		if err := json.Unmarshal(m.Data, &r); err != nil || !r.OK {
			return fmt.Errorf("write to line2: %s", m.Data)
		}
		return nil
	})
	select {
	case m := <-got:
		if m != `plant/line1/set/line2={"state":"ON"}` {
			t.Errorf("published %q, want plant/line1/set/line2={\"state\":\"ON\"}", m)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the json write was not published")
	}
	broker.Stop()
	checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		r := writeReq(`{"key":"setpoint","value":1}`)
		if r.OK || !strings.Contains(r.Error, "not connected") {
			return fmt.Errorf("write with the broker away: %+v", r)
		}
		return nil
	})
}

// TestMQTTBrokerUnreachable: a broker that is not there is a peer failure — the device shows disconnected with
// the reason and retries — and when the broker comes, data flows.
func TestMQTTBrokerUnreachable(t *testing.T) {
	broker := testenv.Mosquitto(t, "")
	broker.Stop()
	rt := startRuntime(t, parseConfig(t, mqttConfig(broker.URL(), "")))
	nc := client(t, rt.Bus().URL)
	checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		n := find(tree(t, nc), "devices/line1")
		if n == nil || n.State != StateDisconnected || !strings.Contains(n.LastError, "connect") {
			return fmt.Errorf("devices/line1: %+v", n)
		}
		return nil
	})
	l := watchBatches(t, nc)
	broker.Restart()
	waitFlowing(t, nc, broker)
	broker.Publish(t, "plant/late/temp", []byte("3"))
	l.wait(t, "late", "temp")
}

// TestMQTTStale: a key not received for stale_after is published bad with stale=true, with one stale event
// naming it; a new message makes it good again.
func TestMQTTStale(t *testing.T) {
	broker := testenv.Mosquitto(t, "")
	rt := startRuntime(t, parseConfig(t, mqttConfig(broker.URL(), `stale_after = "300ms"`)))
	nc := client(t, rt.Bus().URL)
	ev := watchEvents(t, nc, "iot.errors.mqtt.line1")
	l := watchBatches(t, nc)
	waitFlowing(t, nc, broker)
	broker.Publish(t, "plant/line1/level", []byte("3"))
	l.wait(t, "line1", "level")
	checkFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		for _, e := range ev.evs {
			if e.Kind == "stale" && strings.Contains(e.Error, "not received for 300ms") && len(e.Keys) > 0 {
				for _, k := range e.Keys {
					if k == "level" {
						return nil
					}
				}
			}
		}
		return fmt.Errorf("no stale event naming level among %d events", len(ev.evs))
	})
	checkFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		p := l.points["line1"]["level"]
		if s, _ := p.Tag("stale"); p.Quality != isp.QualityBad || s != "true" {
			return fmt.Errorf("level %+v, want bad and stale", p)
		}
		return nil
	})
	broker.Publish(t, "plant/line1/level", []byte("4"))
	checkFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if p := l.points["line1"]["level"]; p.Quality != isp.QualityGood {
			return fmt.Errorf("level %+v after a new message", p)
		}
		return nil
	})
}

// TestMQTTFaults: an injected drop closes the broker connection and the device comes back subscribed (the same
// path as a broker restart); bad_quality publishes the messages' points with quality 0 until cleared.
func TestMQTTFaults(t *testing.T) {
	broker := testenv.Mosquitto(t, "")
	rt := startRuntime(t, parseConfig(t, "faults { enabled = true }\n"+mqttConfig(broker.URL(), "")))
	nc := client(t, rt.Bus().URL)
	l := watchBatches(t, nc)
	waitFlowing(t, nc, broker)
	if r := ask(t, nc, SubjectFaultsInject, `{"kind":"drop","target":"devices/line1"}`); !r.OK {
		t.Fatalf("inject drop: %+v", r)
	}
	checkFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if n := find(tree(t, nc), "devices/line1"); n == nil || n.Restarts < 1 || n.State != StateRunning {
			return fmt.Errorf("devices/line1 after the drop: %+v", n)
		}
		return nil
	})
	broker.Publish(t, "plant/d1/temp", []byte("5"))
	if q := l.wait(t, "d1", "temp")["temp"].Quality; q != isp.QualityGood {
		t.Errorf("after the drop: quality %d, want good", q)
	}
	if r := ask(t, nc, SubjectFaultsInject, `{"kind":"bad_quality","target":"devices/line1"}`); !r.OK {
		t.Fatalf("inject bad_quality: %+v", r)
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		broker.Publish(t, "plant/d1/temp", []byte("6"))
		l.mu.Lock()
		defer l.mu.Unlock()
		if q := l.points["d1"]["temp"].Quality; q != isp.QualityBad {
			return fmt.Errorf("quality %d with bad_quality injected", q)
		}
		return nil
	})
}

// TestMQTTPersistentSessionQueues: with clean_session = false the broker keeps the session while the gateway is
// away, and the QoS 1 messages published meanwhile arrive when it is back (3.1.1 and 5); with a clean session
// they do not — MQTT's promise either way, which the README states.
func TestMQTTPersistentSessionQueues(t *testing.T) {
	for _, tc := range []struct {
		proto   string
		clean   bool
		arrives bool
	}{{"3.1.1", false, true}, {"5", false, true}, {"3.1.1", true, false}} {
		t.Run(fmt.Sprintf("%s clean=%v", tc.proto, tc.clean), func(t *testing.T) {
			broker := testenv.Mosquitto(t, "")
			src := mqttConfig(broker.URL(), fmt.Sprintf("protocol = %q\n  clean_session = %v\n  client_id = \"iotgw-queue\"\n  qos = 1", tc.proto, tc.clean))
			first := startRuntime(t, parseConfig(t, src))
			waitFlowing(t, client(t, first.Bus().URL), broker)
			if err := first.Stop(); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 5; i++ {
				broker.Publish(t, "plant/queued/n", []byte(strconv.Itoa(i)), "-q", "1")
			}
			// The queued messages come right after the connection: watch before the device exists, then add it
			// at run time (iot.control.devices.add, the hot-add path).
			second := startRuntime(t, parseConfig(t, ""))
			nc := client(t, second.Bus().URL)
			l := watchBatches(t, nc)
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			if r := ask(t, nc, SubjectDevicesAdd, src); !r.OK {
				t.Fatalf("devices.add: %+v", r)
			}
			// The broker delivers what it queued before the probe, and one actor and one bus connection keep the
			// order: once the probe is through, whatever was queued is too.
			waitFlowing(t, nc, broker)
			count := func() int { l.mu.Lock(); defer l.mu.Unlock(); return l.count["queued"] }
			if tc.arrives {
				checkFor(t, 20*time.Second, 10*time.Millisecond, func() error {
					if n := count(); n != 5 {
						return fmt.Errorf("%d of 5 queued messages arrived with a persistent session", n)
					}
					return nil
				})
			} else if n := count(); n != 0 {
				t.Errorf("%d messages arrived that were published while a clean session was away", n)
			}
			t.Logf("%d queued messages arrived", count())
		})
	}
}

// TestMQTTBatchWindow: with batch_window the points of the messages of a window go out as one batch: twenty
// messages published back to back arrive whole, in fewer bus messages than twenty.
func TestMQTTBatchWindow(t *testing.T) {
	broker := testenv.Mosquitto(t, "")
	rt := startRuntime(t, parseConfig(t, mqttConfig(broker.URL(), `batch_window = "500ms"`)))
	nc := client(t, rt.Bus().URL)
	var mu sync.Mutex
	var batches int
	values := map[int64]bool{}
	if _, err := nc.Subscribe("iot.processed.batch.burst", func(m *nats.Msg) {
		pts, err := isp.DecodeBatch(m.Data)
		if err != nil {
			t.Errorf("batch: %v", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		batches++
		for _, p := range pts {
			n, _ := p.Value.Int()
			values[n] = true
		}
	}); err != nil {
		t.Fatal(err)
	}
	waitFlowing(t, nc, broker)
	lines := make([]string, 20)
	for i := range lines {
		lines[i] = strconv.Itoa(i)
	}
	broker.PublishLines(t, "plant/burst/n", lines, "-q", "1")
	checkFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(values) != 20 {
			return fmt.Errorf("%d of 20 values", len(values))
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	t.Logf("20 messages in %d batches", batches)
	if batches >= 20 {
		t.Errorf("20 messages in %d batches with a batch window", batches)
	}
}
