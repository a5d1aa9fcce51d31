// Package mqtt is the MQTT device driver: a device actor that subscribes to topic filters on a broker and maps
// each message to points (actors/device/payload), publishing one batch per message (or per batch_window) on
// iot.raw.mqtt.{device}; writes publish to a command topic. It never subscribes to the bus and never publishes
// anything to the broker but the writes it is asked for.
package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/actors/device"
	"github.com/iotgw/iotgw/actors/device/payload"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
)

func init() {
	actors.RegisterDevice("mqtt", actors.DeviceKind{Settings: NewSettings, New: New})
}

// mqttDevice is one connection to a broker. Its session worker connects, subscribes to every filter and waits;
// the client's goroutine hands each message to the actor (inMessage), which maps it and publishes the batch. A
// broker that cannot be reached, or a connection that is lost, ends the worker with a peer failure: the
// supervisor shows the device disconnected and restarts it after its capped backoff, and the new incarnation
// connects and subscribes again (see client.go for why every connection subscribes).
//
// A message that does not map — not JSON, a field of the wrong type, a topic level that is no valid name, larger
// than max_payload, nested too deep — gives an event on iot.errors.mqtt.{device} naming the topic and why; the
// points of the message that did map are still published, and the device goes on.
type mqttDevice struct {
	id  string
	cfg *Settings
	env actors.Env

	workers  actors.Workers
	delay    time.Duration // before connecting: the backoff after a peer failure (Reconnector)
	mappers  []*payload.Mapper
	sess     session // set once connected
	ctx      context.Context
	raw      *nats.Msg
	errSubj  string
	tags     []isp.Tag // the device's tags, shared by its points
	out      []isp.Point
	topicTag [][2]string
	stale    *device.Keys // nil without stale_after
	staleT   *actors.Tick
	received uint64
	faults   actors.Faults
	pending  []isp.Point // points gathered for the batch window
	flushT   *actors.Tick
	backlog  *backlog
	reported uint64 // dropped messages already reported
}

var (
	_ device.Writer      = (*mqttDevice)(nil)
	_ actors.Reconnector = (*mqttDevice)(nil)
	_ actors.FaultTarget = (*mqttDevice)(nil)
)

// InjectFault: drop closes the connection to the broker (the device reconnects and subscribes again, as after a
// broker restart); error and bad_quality publish the points of the messages with quality 0.
func (d *mqttDevice) InjectFault(ctx actor.Context, f *actors.Fault) error {
	switch f.Kind {
	case actors.FaultError, actors.FaultBadQuality:
		d.faults.Add(f)
		return nil
	case actors.FaultDrop:
		s := d.sess
		if s == nil {
			return errors.New("not connected to the broker: nothing to drop")
		}
		d.workers.Task(ctx, "drop", func(<-chan struct{}) error { s.close(); return nil })
		return nil
	}
	return actors.ErrFaultUnsupported
}

// ClearFault ends a fault.
func (d *mqttDevice) ClearFault(_ actor.Context, id string) { d.faults.Remove(id) }

// Bounds of the messages received and not yet mapped (the client's goroutine hands them over faster than the actor
// takes them): past either, messages are dropped, counted and reported with an overflow event, never queued
// without end. The broker's own queue (QoS 1 with a persistent session) is where a longer backlog belongs.
const (
	maxBacklogMessages = 4096
	maxBacklogBytes    = 64 << 20
)

// backlog counts what the client has handed over and the actor has not taken yet; shared by the two.
type backlog struct {
	messages, bytes, dropped atomic.Int64
}

// admit counts a message of size bytes in, or drops it (counted) when the backlog is full. Only the client's
// goroutine admits, so the check and the add need no lock between them.
func (b *backlog) admit(size int64) bool {
	if b.messages.Load() >= maxBacklogMessages || b.bytes.Load()+size > maxBacklogBytes {
		b.dropped.Add(1)
		return false
	}
	b.messages.Add(1)
	b.bytes.Add(size)
	return true
}

// taken counts a message of size bytes out.
func (b *backlog) taken(size int64) {
	b.messages.Add(-1)
	b.bytes.Add(-size)
}

// New returns the producer of an mqtt device's actor.
func New(dev config.Device, env actors.Env) actor.Producer {
	cfg := dev.Settings.(*Settings)
	return func() actor.Actor { return &mqttDevice{id: dev.ID, cfg: cfg, env: env} }
}

// TakesWrites: the runtime forwards the device's writes (device.Write).
func (d *mqttDevice) TakesWrites() {}

// ReconnectAfter: the supervisor restarts the device at once after a peer failure and the session worker waits
// out the backoff, so writes meanwhile are answered "not connected" instead of timing out.
func (d *mqttDevice) ReconnectAfter(delay time.Duration) { d.delay = delay }

func (d *mqttDevice) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		d.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		d.flush() // what the window gathered is published, not lost with the incarnation
		d.workers.Stop()
	case *inMessage:
		d.message(m)
	case *connected:
		d.sess = m.sess
		for i, err := range m.refused {
			if err != nil {
				d.event(device.Event{Kind: "subscribe", Topic: d.cfg.Subscribe[i].Pattern.Filter, Error: err.Error()})
			}
		}
		d.env.Link(actors.LinkConnected, "")
		d.env.Log.Info().Str("device", d.id).Str("broker", d.cfg.Broker).Str("protocol", d.cfg.Protocol).Msg("mqtt connected and subscribed")
	case *actors.Tick:
		m.Ack()
		switch m {
		case d.staleT:
			d.checkStale(time.Now())
		case d.flushT:
			d.flush()
		}
	case *device.Write:
		d.write(ctx, m.Msg)
	}
}

func (d *mqttDevice) start(ctx actor.Context) {
	d.raw = &nats.Msg{Subject: "iot.raw.mqtt." + d.id, Header: nats.Header{}}
	d.raw.Header.Set(actors.HeaderSource, "mqtt")
	d.raw.Header.Set(actors.HeaderSchema, actors.SchemaVersion)
	d.errSubj = "iot.errors.mqtt." + d.id
	d.tags = isp.MergeTags(d.cfg.Tags, nil, "")
	d.mappers = make([]*payload.Mapper, len(d.cfg.Subscribe))
	filters := make([]string, len(d.cfg.Subscribe))
	for i := range d.cfg.Subscribe {
		m, err := payload.New(d.cfg.Subscribe[i].Spec())
		if err != nil {
			panic(fmt.Errorf("device %q: %w", d.id, err)) // config validation checks the same
		}
		d.mappers[i] = m
		filters[i] = d.cfg.Subscribe[i].Pattern.Filter
	}
	if d.cfg.BatchWindow > 0 {
		d.flushT = d.workers.Tick(ctx, "batch window", d.cfg.BatchWindow)
	}
	if d.cfg.StaleAfter > 0 {
		d.stale = &device.Keys{}
		d.staleT = d.workers.Tick(ctx, "stale", max(d.cfg.StaleAfter/4, 10*time.Millisecond))
	}
	// Not connected until the broker has acknowledged the subscriptions: the tree shows the device disconnected
	// until then (no detail: the last error stays the reason of the last failure, if any).
	d.env.Link(actors.LinkDisconnected, "")
	clientID := d.cfg.ClientID
	if clientID == "" {
		clientID = "iotgw-" + d.id
	}
	cctx, cancel := context.WithCancel(context.Background())
	d.ctx = cctx
	d.workers.OnStop(cancel) // a connect, subscribe or write in progress gives up at stop
	cfg, delay, maxPayload := d.cfg, d.delay, d.cfg.MaxPayload
	bl := &backlog{}
	d.backlog = bl
	d.workers.Go(ctx, "session", func(done <-chan struct{}, send func(any)) error {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-done:
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		in := func(topic string, data []byte) {
			m := &inMessage{topic: topic, size: len(data), arrival: time.Now()}
			if int64(len(data)) <= maxPayload {
				m.payload = data
			}
			if bl.admit(int64(len(m.payload))) {
				send(m)
			}
		}
		s, err := dial(cctx, cfg, clientID, in)
		if err != nil {
			return actors.PeerFailure(fmt.Errorf("broker %s: connect: %w", cfg.HostPort, err))
		}
		defer s.close()
		refused, err := s.subscribe(cctx, filters, cfg.SubQoS)
		if err != nil {
			return actors.PeerFailure(fmt.Errorf("broker %s: subscribe: %w", cfg.HostPort, err))
		}
		send(&connected{sess: s, refused: refused})
		select {
		case <-done:
			return nil
		case <-s.lost():
			return actors.PeerFailure(fmt.Errorf("broker %s: %w", cfg.HostPort, s.cause()))
		}
	})
}

func (d *mqttDevice) event(ev device.Event) {
	ev.Device = d.id
	device.PublishEvent(d.env.Bus, d.env.Log, d.errSubj, ev)
}

// message maps one message and publishes its batch.
func (d *mqttDevice) message(m *inMessage) {
	d.received++
	d.backlog.taken(int64(len(m.payload)))
	if dropped := uint64(d.backlog.dropped.Load()); dropped > d.reported {
		d.event(device.Event{Kind: "overflow", Error: fmt.Sprintf("%d messages dropped: more than %d messages or %d MB received and not yet mapped",
			dropped-d.reported, maxBacklogMessages, maxBacklogBytes>>20)})
		d.reported = dropped
	}
	if m.payload == nil && m.size > 0 {
		d.event(device.Event{Kind: "too_large", Topic: m.topic,
			Error: fmt.Sprintf("message of %d bytes: max_payload is %d", m.size, d.cfg.MaxPayload)})
		return
	}
	idx := -1
	var dev, key string
	var topicTags [][2]string
	for i := range d.cfg.Subscribe {
		var ok bool
		if dev, key, topicTags, ok = d.cfg.Subscribe[i].Pattern.Match(m.topic, d.topicTag[:0]); ok {
			idx = i
			break
		}
	}
	d.topicTag = topicTags[:0]
	if idx < 0 {
		d.event(device.Event{Kind: "topic", Topic: m.topic, Error: "the topic matches none of the device's subscribe patterns"})
		return
	}
	if dev == "" {
		dev = d.id
	} else if err := isp.ValidToken(dev); err != nil {
		d.event(device.Event{Kind: "topic", Topic: m.topic, Error: fmt.Sprintf("the +device level is no device id: %v", err)})
		return
	} else if !d.cfg.Allows(dev) {
		d.event(device.Event{Kind: "topic", Topic: m.topic, Error: fmt.Sprintf("device %q is not in the device's devices list", dev)})
		return
	}
	if key != "" {
		if err := isp.ValidToken(key); err != nil {
			d.event(device.Event{Kind: "topic", Topic: m.topic, Error: fmt.Sprintf("the +key level is no point key: %v", err)})
			return
		}
	}
	tags := d.tags
	if len(topicTags) > 0 {
		tags = make([]isp.Tag, 0, len(d.tags)+len(topicTags))
		tags = append(tags, d.tags...)
		for _, t := range topicTags {
			tags = append(tags, isp.Tag{Key: t[0], Value: t[1]})
		}
	}
	pts, err := d.mappers[idx].Map(d.out[:0], m.payload, key, m.arrival)
	d.out = pts[:0]
	if err != nil {
		d.event(device.Event{Kind: "payload", Topic: m.topic, Error: err.Error(), Keys: keysOf(pts)})
	}
	if len(pts) == 0 {
		return
	}
	bad := d.faults.Hit(actors.FaultError) != nil || d.faults.Hit(actors.FaultBadQuality) != nil
	for i := range pts {
		pts[i].DeviceID, pts[i].Tags, pts[i].Source = dev, tags, "mqtt"
		if bad {
			pts[i].Quality = isp.QualityBad
			continue
		}
		if d.stale != nil {
			d.stale.Good(device.PointID{Device: dev, Key: pts[i].Key}, m.arrival)
		}
	}
	if d.cfg.BatchWindow <= 0 {
		d.publish(pts)
		return
	}
	d.pending = append(d.pending, pts...)
	if len(d.pending) >= maxWindowPoints {
		d.flush()
	}
}

// maxWindowPoints bounds the points a batch window gathers: past it the batch goes out before the window ends.
const maxWindowPoints = 1000

// flush publishes the points the batch window gathered.
func (d *mqttDevice) flush() {
	if len(d.pending) == 0 {
		return
	}
	d.publish(d.pending)
	clear(d.pending) // drop the references to the points' strings and tags
	d.pending = d.pending[:0]
}

func (d *mqttDevice) publish(pts []isp.Point) {
	d.env.Metrics.PointsOut("devices/"+d.id, len(pts))
	d.raw.Data = isp.AppendBatch(d.raw.Data[:0], pts)
	actors.SetHeader(d.raw.Header, actors.HeaderTraceID, actors.NewTraceID()) // a message is where this batch is born
	if err := d.env.Bus.PublishMsg(d.raw); err != nil {
		d.env.Log.Warn().Err(err).Str("subject", d.raw.Subject).Msg("cannot publish mqtt message")
	}
}

func keysOf(pts []isp.Point) []string {
	if len(pts) == 0 {
		return nil
	}
	keys := make([]string, len(pts))
	for i := range pts {
		keys[i] = pts[i].Key
	}
	return keys
}

// checkStale publishes, for every key that has become stale, its point with quality bad and the tag
// stale=true, and one stale event naming them (like Modbus: a point not read successfully for stale_after).
func (d *mqttDevice) checkStale(now time.Time) {
	became := d.stale.Stale(now, d.cfg.StaleAfter)
	if len(became) == 0 {
		return
	}
	pts := make([]isp.Point, 0, len(became))
	keys := make([]string, 0, len(became))
	for _, k := range became {
		pts = append(pts, isp.Point{DeviceID: k.Device, Key: k.Key, Value: isp.Null(), Quality: isp.QualityBad,
			Timestamp: now.UnixNano(), Tags: actors.MarkStale(d.tags), Source: "mqtt"})
		name := k.Key
		if k.Device != d.id {
			name = k.Device + "/" + k.Key
		}
		keys = append(keys, name)
	}
	d.publish(pts)
	d.event(device.Event{Kind: "stale", Keys: keys, Error: fmt.Sprintf("not received for %s", d.cfg.StaleAfter)})
}

// maxWriteRequest bounds a write request's body (the same bound as Modbus's).
const maxWriteRequest = 4 << 10

// write publishes the value of a write request to the command topic, in a task (a QoS 1 publish waits for the
// broker's PUBACK), and answers it like a Modbus write: ok with the value, or the error.
func (d *mqttDevice) write(ctx actor.Context, msg *nats.Msg) {
	fail := func(format string, args ...any) {
		actors.Respond(d.env.Log, msg, device.WriteReply{Device: d.id, Error: fmt.Sprintf(format, args...)})
	}
	if len(msg.Data) > maxWriteRequest {
		fail("request of %d bytes: at most %d", len(msg.Data), maxWriteRequest)
		return
	}
	var req device.WriteRequest
	if err := json.Unmarshal(msg.Data, &req); err != nil {
		fail(`request is not {"key":…, "value":…}: %v`, err)
		return
	}
	if err := isp.ValidToken(req.Key); err != nil {
		fail("key: %v", err)
		return
	}
	if d.cfg.CommandTopic == "" {
		fail("device %s has no command_topic: writes are off", d.id)
		return
	}
	body, value, err := commandPayload(req.Value)
	if err != nil {
		fail("value of %q: %v", req.Key, err)
		return
	}
	if d.cfg.CommandFormat == "json" {
		body, _ = json.Marshal(map[string]any{req.Key: value})
	}
	s := d.sess
	if s == nil {
		fail("device %s is not connected to its broker %s", d.id, d.cfg.HostPort)
		return
	}
	topic := strings.ReplaceAll(strings.ReplaceAll(d.cfg.CommandTopic, "{key}", req.Key), "{device}", d.id)
	pctx := d.ctx // cancelled at stop
	qos, retain, log, bus, errSubj, id := d.cfg.CmdQoS, d.cfg.CommandRetain, d.env.Log, d.env.Bus, d.errSubj, d.id
	started := d.workers.Task(ctx, "write "+req.Key, func(<-chan struct{}) error {
		if err := s.publish(pctx, topic, qos, retain, body); err != nil {
			err = fmt.Errorf("publish to %q: %w", topic, err)
			device.PublishEvent(bus, log, errSubj, device.Event{Device: id, Kind: "write", Topic: topic, Error: err.Error(), Keys: []string{req.Key}})
			actors.Respond(log, msg, device.WriteReply{Device: id, Key: req.Key, Error: err.Error()})
			return nil
		}
		actors.Respond(log, msg, device.WriteReply{OK: true, Device: id, Key: req.Key, Value: value})
		return nil
	})
	if !started {
		fail("device %s is stopping", d.id)
	}
}

// commandPayload is what a write publishes: a number or a boolean as its JSON text, a string as its text.
func commandPayload(raw json.RawMessage) ([]byte, any, error) {
	if len(raw) == 0 {
		return nil, nil, errors.New("missing")
	}
	var x any
	if err := json.Unmarshal(raw, &x); err != nil {
		return nil, nil, err
	}
	switch v := x.(type) {
	case bool:
		return []byte(strconv.FormatBool(v)), v, nil
	case float64:
		return []byte(strings.TrimSpace(string(raw))), v, nil
	case string:
		return []byte(v), v, nil
	}
	return nil, nil, fmt.Errorf("want a number, a bool or a string, not %s", raw)
}
