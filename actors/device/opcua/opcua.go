// Package opcua is the OPC UA device driver: a device actor that reads nodes of an OPC UA server with gopcua
// (github.com/gopcua/opcua), on an interval or through a subscription, publishes them as batches on
// iot.raw.opcua.{device}, writes nodes and browses the server for the control plane. It must never import the
// runtime: it talks to its server through its own session worker and to the gateway only through its Env.
package opcua

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/actors/device"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
)

// opcuaDevice is one OPC UA device. Its session worker (session.go) owns the connection; the actor turns what it
// reports into points and events, the same way the Modbus driver does: a read or a notification is one batch on
// iot.raw.opcua.{device}; a node whose value is bad (by its status code), of the wrong type or missing on the
// server is published with quality 0 and reported once on iot.errors.opcua.{device} when its problem starts; an
// uncertain value is published with quality -1; a point without a good value for stale_after carries stale=true,
// with one "stale" event. An unreachable server is a peer failure: the device shows disconnected, publishes its
// points bad, and is restarted at the supervisor's capped backoff with a new session.
type opcuaDevice struct {
	id     string
	cfg    *config.OPCUADevice
	env    actors.Env
	shared *shared

	workers  actors.Workers
	ctx      context.Context // canceled when the incarnation stops
	client   *opcua.Client   // the session's client while connected, for writes and browsing
	raw      *nats.Msg
	errSubj  string
	tags     [][]isp.Tag
	byKey    map[string]int
	problem  []string // per node: the problem last reported ("" none), so each is reported once
	lastGood []bool   // per node: its last value was good (subscribe mode's staleness check)
	out      []isp.Point
	tasks    *atomic.Int32 // writes and browses running
	faults   actors.Faults
	staleTk  *actors.Tick
	// backlog counts the reads and notifications the session worker sent and the actor has not handled yet;
	// overruns those the worker skipped or dropped because the backlog was full (see maxBacklog).
	backlog   *atomic.Int32
	overruns  *atomic.Uint64
	reported  uint64 // overruns already reported
	readIssue string // the last read failure reported ("" none), so each is reported once
	// reconnectIn is the backoff the supervisor handed this incarnation after a peer failure (ReconnectAfter):
	// the session worker waits it out before it connects, while the actor answers writes and browses at once.
	reconnectIn time.Duration
}

// shared is what the device's incarnations hand on to each other: a restart after a lost session must not make
// a point fresh again, nor forget how many sessions there were.
type shared struct {
	fresh    actors.Freshness
	sessions atomic.Uint64
}

var (
	_ device.Writer      = (*opcuaDevice)(nil)
	_ device.Browser     = (*opcuaDevice)(nil)
	_ actors.FaultTarget = (*opcuaDevice)(nil)
	_ actors.Reconnector = (*opcuaDevice)(nil)
)

// ReconnectAfter: after a lost session the device is restarted at once and waits the backoff in its session
// worker, so a write or browse sent while the server is away is answered "not connected" at once instead of
// waiting in a suspended mailbox.
func (d *opcuaDevice) ReconnectAfter(delay time.Duration) { d.reconnectIn = delay }

func init() {
	actors.RegisterDevice("opcua", actors.DeviceKind{Settings: config.NewOPCUADevice, New: New})
}

// New returns the producer of an OPC UA device's actor.
func New(dev config.Device, env actors.Env) actor.Producer {
	cfg := dev.Settings.(*config.OPCUADevice)
	sh := &shared{}
	now := time.Now()
	for range cfg.Nodes {
		sh.fresh.Add(now) // staleness counts from the first start
	}
	return func() actor.Actor {
		return &opcuaDevice{id: dev.ID, cfg: cfg, env: env, shared: sh}
	}
}

// TakesWrites: the runtime forwards the device's writes (device.Write).
func (d *opcuaDevice) TakesWrites() {}

// TakesBrowse: the runtime forwards the device's browse requests (device.Browse).
func (d *opcuaDevice) TakesBrowse() {}

// InjectFault: error and bad_quality publish the device's points with quality 0; drop closes the session (the
// device reconnects as after a server restart).
func (d *opcuaDevice) InjectFault(ctx actor.Context, f *actors.Fault) error {
	switch f.Kind {
	case actors.FaultError, actors.FaultBadQuality:
		d.faults.Add(f)
		return nil
	case actors.FaultDrop:
		c := d.client
		if c == nil {
			return errors.New("not connected: nothing to drop")
		}
		d.workers.Task(ctx, "drop", func(<-chan struct{}) error {
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return c.Close(cctx)
		})
		return nil
	default:
		return actors.ErrFaultUnsupported
	}
}

// ClearFault ends a fault.
func (d *opcuaDevice) ClearFault(_ actor.Context, id string) { d.faults.Remove(id) }

func (d *opcuaDevice) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		d.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		d.workers.StopWait = 2 * time.Second // a session's close waits at most 1 s for the server
		d.workers.Stop()
		d.client = nil
	case *connected:
		d.client = m.client
		n := d.shared.sessions.Add(1)
		d.env.Link(actors.LinkConnected, "")
		ev := d.env.Log.Info().Str("endpoint", d.cfg.Endpoint).Uint64("sessions", n)
		if d.cfg.Mode == "subscribe" {
			ev = ev.Uint32("subscription", m.subscription)
			if d.staleTk == nil {
				d.staleTk = d.workers.Tick(ctx, "stale", d.cfg.Interval)
			}
		}
		ev.Msg("opcua session open")
	case *connectFailed:
		d.event(Event{Kind: m.kind, Error: m.err.Error()})
		d.allBad(time.Now())
	case *sessionLost:
		d.client = nil
		kind := m.kind
		if kind == "" {
			kind = "disconnected"
		}
		d.event(Event{Kind: kind, Error: m.err.Error()})
		d.allBad(time.Now())
	case *readResult:
		d.backlog.Add(-1)
		d.readResult(m)
		d.checkOverruns()
	case *dataChange:
		d.backlog.Add(-1)
		d.checkOverruns()
		d.out = d.out[:0]
		for j, i := range m.nodes {
			d.value(i, m.values[j], m.at)
		}
		d.publish(m.at)
	case *itemFailed:
		d.out = d.out[:0]
		d.bad(m.node, m.status, time.Now())
		d.publish(time.Now())
	case *subscriptionError:
		d.event(Event{Kind: "subscription", Error: m.err.Error()})
	case *actors.Tick:
		m.Ack()
		if m == d.staleTk {
			d.checkStale(time.Now())
		}
	case *device.Write:
		d.write(ctx, m.Msg)
	case *device.Browse:
		d.browse(ctx, m.Msg)
	}
}

func (d *opcuaDevice) start(ctx actor.Context) {
	d.raw = &nats.Msg{Subject: "iot.raw.opcua." + d.id, Header: nats.Header{}}
	d.raw.Header.Set(actors.HeaderSource, "opcua")
	d.raw.Header.Set(actors.HeaderSchema, actors.SchemaVersion)
	d.errSubj = "iot.errors.opcua." + d.id
	n := len(d.cfg.Nodes)
	d.tags = make([][]isp.Tag, n)
	d.byKey = make(map[string]int, n)
	d.problem = make([]string, n)
	d.lastGood = make([]bool, n)
	d.tasks = &atomic.Int32{}
	d.backlog, d.overruns = &atomic.Int32{}, &atomic.Uint64{}
	for i := range d.cfg.Nodes {
		nd := &d.cfg.Nodes[i]
		d.byKey[nd.Key] = i
		d.tags[i] = isp.MergeTags(d.cfg.Tags, nd.Tags, nd.Unit)
	}
	var cancel context.CancelFunc
	d.ctx, cancel = context.WithCancel(context.Background())
	d.workers.OnStop(cancel) // a connect or request in flight returns at once
	o, err := d.options()
	if err != nil {
		// A certificate or key file that went missing since validation: a state to fix, retried like a server away.
		d.event(Event{Kind: "certificate", Error: err.Error()})
		d.allBad(time.Now())
		wait := d.reconnectIn
		d.workers.Go(ctx, "session", func(done <-chan struct{}, _ func(any)) error {
			if !waitOut(wait, done) {
				return nil
			}
			return actors.PeerFailure(err)
		})
		return
	}
	sctx, wait := d.ctx, d.reconnectIn
	d.workers.Go(ctx, "session", func(done <-chan struct{}, send func(any)) error {
		if !waitOut(wait, done) {
			return nil
		}
		return d.run(sctx, o, done, send)
	})
}

// waitOut waits d, or less when done closes first: then it returns false.
func waitOut(d time.Duration, done <-chan struct{}) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C:
		return true
	}
}

// options resolves what a session needs from the files the config names.
func (d *opcuaDevice) options() (*sessionOptions, error) {
	o := &sessionOptions{cfg: d.cfg, trust: &trust{}, appURI: "urn:iotgw:" + d.env.GatewayID}
	if d.cfg.Secure() {
		t, err := loadTrust(d.cfg)
		if err != nil {
			return nil, err
		}
		o.trust = t
	}
	if d.cfg.Secure() || d.cfg.Auth == "certificate" {
		c, err := loadClientCert(d.cfg, d.env.DataDir, d.env.GatewayID)
		if err != nil {
			return nil, err
		}
		o.cert = c
		if c.uri != "" {
			o.appURI = c.uri // the application URI must be the one the certificate names
		}
	}
	return o, nil
}

func (d *opcuaDevice) readResult(m *readResult) {
	d.out = d.out[:0]
	if m.err != nil {
		if msg := m.err.Error(); msg != d.readIssue {
			d.readIssue = msg
			d.event(Event{Kind: "read", Error: msg})
		}
		for i := range d.cfg.Nodes {
			d.add(i, isp.Null(), d.cfg.Nodes[i].Type, isp.QualityBad, m.at.UnixNano())
		}
		d.publish(m.at)
		return
	}
	d.readIssue = ""
	for i, dv := range m.values {
		d.value(i, dv, m.at)
	}
	d.publish(m.at)
}

// checkOverruns reports reads skipped or notifications dropped since the last report.
func (d *opcuaDevice) checkOverruns() {
	if n := d.overruns.Load(); n != d.reported {
		d.event(Event{Kind: "overrun", Error: fmt.Sprintf("%d reads or notifications dropped in all: the device's actor lags behind its server (interval %s)",
			n, d.cfg.Interval)})
		d.reported = n
	}
}

// value adds node i's point from a server value.
func (d *opcuaDevice) value(i int, dv *ua.DataValue, at time.Time) {
	n := &d.cfg.Nodes[i]
	if dv == nil {
		d.bad(i, ua.StatusBadNoData, at)
		return
	}
	status := ua.StatusOK
	if dv.EncodingMask&ua.DataValueStatusCode != 0 {
		status = dv.Status
	}
	q := quality(status)
	if q == isp.QualityBad {
		d.bad(i, status, at)
		return
	}
	v, typ, err := pointValue(n, dv.Value)
	ts := timestamp(dv, at)
	if err != nil {
		d.report(i, Event{Kind: "type", Error: fmt.Sprintf("node %s: %v", n.NodeIDText, err), NodeID: n.NodeIDText})
		d.add(i, isp.Null(), n.Type, isp.QualityBad, ts)
		return
	}
	if d.faults.Hit(actors.FaultError) != nil || d.faults.Hit(actors.FaultBadQuality) != nil {
		d.add(i, isp.Null(), n.Type, isp.QualityBad, ts)
		return
	}
	if q == isp.QualityUnknown {
		d.report(i, Event{Kind: "status", Error: fmt.Sprintf("node %s: uncertain value: %s", n.NodeIDText, statusText(status)),
			NodeID: n.NodeIDText, Status: statusName(status)})
	} else {
		d.problem[i] = ""
		d.shared.fresh.Good(i, at)
	}
	d.add(i, v, typ, q, ts)
}

// bad adds node i's point as bad for status, reporting why once.
func (d *opcuaDevice) bad(i int, status ua.StatusCode, at time.Time) {
	n := &d.cfg.Nodes[i]
	kind := "status"
	msg := fmt.Sprintf("node %s: %s", n.NodeIDText, statusText(status))
	if status == ua.StatusBadNodeIDUnknown || status == ua.StatusBadNodeIDInvalid {
		kind = "node"
		msg = fmt.Sprintf("node %s does not exist on the server: %s", n.NodeIDText, statusName(status))
	}
	d.report(i, Event{Kind: kind, Error: msg, NodeID: n.NodeIDText, Status: statusName(status)})
	d.add(i, isp.Null(), n.Type, isp.QualityBad, at.UnixNano())
}

func (d *opcuaDevice) add(i int, v isp.Value, typ string, q int, ts int64) {
	d.lastGood[i] = q == isp.QualityGood
	d.out = append(d.out, isp.Point{
		DeviceID: d.id, Key: d.cfg.Nodes[i].Key, Value: v, Type: typ, Quality: q, Timestamp: ts,
		Tags: d.tags[i], Source: "opcua",
	})
}

// allBad publishes every point bad: the server cannot be read.
func (d *opcuaDevice) allBad(at time.Time) {
	d.out = d.out[:0]
	for i := range d.cfg.Nodes {
		d.add(i, isp.Null(), d.cfg.Nodes[i].Type, isp.QualityBad, at.UnixNano())
	}
	d.publish(at)
}

// checkStale, in subscribe mode, reports the points whose last value was not good and that have had no good one
// for stale_after (a subscription sends nothing while a value stays the same, so a good point is never stale).
func (d *opcuaDevice) checkStale(at time.Time) {
	d.out = d.out[:0]
	after := actors.StaleAfter(d.cfg.StaleAfter, d.cfg.Interval)
	var keys []string
	for i := range d.cfg.Nodes {
		if d.lastGood[i] {
			continue
		}
		if _, became := d.shared.fresh.Check(i, at, after); became {
			keys = append(keys, d.cfg.Nodes[i].Key)
			d.add(i, isp.Null(), d.cfg.Nodes[i].Type, isp.QualityBad, at.UnixNano())
			d.out[len(d.out)-1].Tags = actors.MarkStale(d.tags[i])
		}
	}
	if len(keys) > 0 {
		d.event(Event{Kind: "stale", Keys: keys, Error: fmt.Sprintf("no good value for %s", after)})
		d.send()
	}
}

// publish applies staleness to the batch in d.out and publishes it.
func (d *opcuaDevice) publish(at time.Time) {
	after := actors.StaleAfter(d.cfg.StaleAfter, d.cfg.Interval)
	var newlyStale []string
	for j := range d.out {
		p := &d.out[j]
		if p.Quality == isp.QualityGood {
			continue
		}
		i := d.byKey[p.Key]
		if stale, became := d.shared.fresh.Check(i, at, after); stale {
			if became {
				newlyStale = append(newlyStale, p.Key)
			}
			p.Tags = actors.MarkStale(p.Tags)
		}
	}
	if len(newlyStale) > 0 {
		d.event(Event{Kind: "stale", Keys: newlyStale, Error: fmt.Sprintf("no good value for %s", after)})
	}
	d.send()
}

func (d *opcuaDevice) send() {
	if len(d.out) == 0 {
		return
	}
	d.env.Metrics.PointsOut("devices/"+d.id, len(d.out))
	d.raw.Data = isp.AppendBatch(d.raw.Data[:0], d.out)
	actors.SetHeader(d.raw.Header, actors.HeaderTraceID, actors.NewTraceID()) // a read is where this batch is born
	if err := d.env.Bus.PublishMsg(d.raw); err != nil {
		d.env.Log.Warn().Err(err).Str("subject", d.raw.Subject).Msg("cannot publish read")
	}
}

// Event is published on iot.errors.opcua.{device}; it reads like the Modbus driver's events (device, kind, error,
// keys, timestamp), with the node and the OPC UA status in place of Modbus's addresses.
type Event struct {
	Device string `json:"device"`
	// Kind: disconnected (the server cannot be reached or the session was lost), certificate (the server's
	// certificate does not verify, or the gateway's cannot be loaded), security (no endpoint with the configured
	// policy and mode, or the server refused the channel), auth (the server refused the identity), node (a node
	// that does not exist), type (a value that does not fit the node's type), status (a bad or uncertain status),
	// read (a read refused as a whole), subscription, write, stale, overrun (reads skipped or notifications
	// dropped because the actor lagged).
	Kind      string   `json:"kind"`
	Error     string   `json:"error"`
	NodeID    string   `json:"node_id,omitempty"`
	Status    string   `json:"status,omitempty"`
	Keys      []string `json:"keys,omitempty"`
	Timestamp int64    `json:"timestamp"`
}

// report publishes node i's problem when it is a new one.
func (d *opcuaDevice) report(i int, ev Event) {
	key := ev.Kind + " " + ev.Status + " " + ev.Error
	if d.problem[i] == key {
		return
	}
	d.problem[i] = key
	ev.Keys = []string{d.cfg.Nodes[i].Key}
	d.event(ev)
}

// event publishes ev; safe from the actor's tasks too (the bus connection is).
func (d *opcuaDevice) event(ev Event) {
	ev.Device = d.id
	ev.Timestamp = time.Now().UnixNano()
	data, _ := json.Marshal(ev)
	if err := d.env.Bus.Publish(d.errSubj, data); err != nil {
		d.env.Log.Warn().Err(err).Msg("cannot publish opcua event")
	}
}
