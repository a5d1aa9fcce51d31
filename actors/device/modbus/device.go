// Package modbus is the Modbus device driver: a device actor that polls its registers through the transport of
// its endpoint (a TCP address or a serial line), which the devices on that endpoint share.
package modbus

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/goburrow/modbus"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/actors/device"
	"github.com/iotgw/iotgw/actors/rule/processor"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
	mb "github.com/iotgw/iotgw/modbus"
	"github.com/nats-io/nats.go"
)

// modbusDevice polls one Modbus device through its endpoint's transport actor. Each poll group (registers with the
// same interval) has a plan of coalesced read requests (package modbus at the top level, shared with the reference
// sidecar); every tick sends them to the transport and, when all have answered, publishes one batch on
// iot.raw.modbus.{device}, checked with the processing stage's own checks and sealed (processor.Sealer), so the
// processor forwards it to iot.processed.batch.{device} without decoding and encoding it again.
//
// A failed request marks only its own points bad (quality 0) and sends an event to iot.errors.modbus.{device}
// saying what failed: an exception reply, a timeout, a mismatched reply, the connection being down. A point that
// has not been read successfully for stale_after is reported with the tag stale=true and an event. The transport
// reconnects by itself with backoff; the device actor fails (and the supervisor restarts it) only on a bug, not on
// a device that misbehaves — that is the device's quality, not the gateway's failure.
type modbusDevice struct {
	id       string
	path     string // devices/{id}, the metrics label
	cfg      *config.ModbusDevice
	env      actors.Env
	requests actors.ModbusRecorder // the latency series of its requests, looked up once per function code

	workers   actors.Workers
	bus       *actor.PID // the endpoint's transport actor (Env.Endpoint)
	line      *line      // the transport's queue, once it answered the lineRequest: transactions go there directly
	regs      []mb.Register
	groups    []*pollGroup
	byTick    map[*actors.Tick]*pollGroup
	filters   []*mb.ChangeFilter // per register: its change filter, nil unless on_change (a filter is ~170 bytes); nil when none is
	fresh     actors.Freshness   // per register: last good read, reported stale
	tags      [][]isp.Tag        // per register: its tags; nil when no register has any
	raw       *nats.Msg
	seal      processor.Sealer // seals the poll's batch (see processor.Sealer)
	errSubj   string
	overruns  uint64
	pollCount uint64
	faults    actors.Faults
}

var _ actors.FaultTarget = (*modbusDevice)(nil)

// InjectFault: error fails the device's requests (quality 0, error events) and bad_quality marks its points bad;
// drop and latency act on its endpoint's transport, which all devices of the endpoint share.
func (d *modbusDevice) InjectFault(ctx actor.Context, f *actors.Fault) error {
	switch f.Kind {
	case actors.FaultError, actors.FaultBadQuality:
		d.faults.Add(f)
		return nil
	case actors.FaultDrop, actors.FaultLatency:
		res, err := ctx.RequestFuture(d.bus, f, 5*time.Second).Result()
		if err != nil {
			return err
		}
		if r, ok := res.(*actors.FaultReply); ok {
			return r.Err
		}
		return nil
	default:
		return actors.ErrFaultUnsupported
	}
}

// ClearFault ends a fault (and the transport's with the same id).
func (d *modbusDevice) ClearFault(ctx actor.Context, id string) {
	d.faults.Remove(id)
	ctx.Send(d.bus, &actors.FaultClear{ID: id})
}

// errInjected is the error of a request failed by an injected fault.
var errInjected = errors.New("fault injected")

type pollGroup struct {
	dev      *modbusDevice // the incarnation that polls it: answers to another's polls are stale
	name     string
	interval time.Duration
	plan     []mb.Request
	// the poll in flight
	seq      uint64
	pending  int
	started  time.Time
	points   []isp.Point
	pbuf     *[]isp.Point // where points came from (pointBufs), given back when the poll is finished
	index    []int        // per point: its register's index (finish needs it; a map lookup by key cost 2% of a poll)
	answered []bool       // per request of the plan
	bufs     [][]byte     // per request of the plan: where the transport puts its reply (ModbusTx.Buf)
}

// pollTag correlates a transaction result with its poll.
type pollTag struct {
	group *pollGroup
	seq   uint64
	req   int
}

// writeTag correlates a write's result with the request to answer.
type writeTag struct {
	msg   *nats.Msg
	key   string
	value isp.Value
}

var _ device.Writer = (*modbusDevice)(nil)

func init() {
	actors.RegisterDevice("modbus", actors.DeviceKind{Settings: config.NewModbusDevice, New: New, NewEndpoint: NewEndpoint})
}

// New returns the producer of a Modbus device's actor. env.Endpoint is the transport of its endpoint.
func New(dev config.Device, env actors.Env) actor.Producer {
	cfg := dev.Settings.(*config.ModbusDevice)
	return func() actor.Actor {
		return &modbusDevice{id: dev.ID, path: "devices/" + dev.ID, cfg: cfg, env: env}
	}
}

// TakesWrites: the runtime forwards the device's writes (device.Write).
func (d *modbusDevice) TakesWrites() {}

func (d *modbusDevice) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		d.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		d.workers.Stop()
	case *actors.Tick:
		m.Ack()
		if g, ok := d.byTick[m]; ok {
			d.poll(ctx, g)
		}
	case *lineReply:
		d.line = m.line
	case *ModbusTxResult:
		switch tag := m.Tag.(type) {
		case pollTag:
			d.result(tag, m)
		case writeTag:
			d.writeResult(tag, m)
		}
	case *device.Write:
		d.write(ctx, m.Msg)
	}
}

func (d *modbusDevice) start(ctx actor.Context) {
	d.bus = d.env.Endpoint
	if d.bus != nil {
		ctx.Request(d.bus, &lineRequest{}) // see line: the answer lets polls skip the transport's mailbox
	}
	d.raw = &nats.Msg{Subject: "iot.raw.modbus." + d.id, Header: nats.Header{}}
	d.raw.Header.Set(actors.HeaderSource, "modbus")
	d.raw.Header.Set(actors.HeaderSchema, actors.SchemaVersion)
	d.errSubj = "iot.errors.modbus." + d.id
	d.regs = d.cfg.Model // shared by the device's incarnations: read only
	n := len(d.regs)
	d.filters = nil // only when a register reports on change (filterOf)
	d.fresh = actors.Freshness{}
	d.fresh.Grow(n)
	d.tags = nil // only when a register has tags: most maps have none, and 1,000 devices paid 24 bytes a register
	now := time.Now()
	for i, r := range d.regs {
		if x := d.cfg.Extra(i); x.OnChange {
			if d.filters == nil {
				d.filters = make([]*mb.ChangeFilter, n)
			}
			d.filters[i] = &mb.ChangeFilter{Deadband: x.Deadband, ForceEvery: x.ForceEvery}
		}
		d.fresh.Add(now) // staleness counts from start
		if tags := isp.MergeTags(d.cfg.Tags, r.Tags, r.Unit); tags != nil {
			if d.tags == nil {
				d.tags = make([][]isp.Tag, n)
			}
			d.tags[i] = tags
		}
	}
	// One plan per poll group: the device's interval, and each group block's.
	intervals := map[string]time.Duration{"": d.cfg.Interval}
	for _, g := range d.cfg.Groups {
		intervals[g.Name] = g.Interval
	}
	members := map[string][]int{}
	for i := range d.regs {
		g := d.cfg.Extra(i).Group
		members[g] = append(members[g], i)
	}
	names := make([]string, 0, len(members))
	for name := range members {
		names = append(names, name)
	}
	sort.Strings(names)
	opt := mb.PlanOptions{MaxGap: d.cfg.MaxGap, MaxBitGap: d.cfg.MaxBitGap}
	d.byTick = map[*actors.Tick]*pollGroup{}
	for _, name := range names {
		idx := members[name]
		sub := make([]mb.Register, len(idx))
		for j, i := range idx {
			sub[j] = d.regs[i]
		}
		plan, err := mb.Plan(sub, opt)
		if err != nil {
			panic(fmt.Errorf("device %q: %w", d.id, err)) // config validation should have caught it
		}
		for qi := range plan { // field indexes back to the device's register list
			for fi := range plan[qi].Fields {
				plan[qi].Fields[fi].Index = idx[plan[qi].Fields[fi].Index]
			}
		}
		g := &pollGroup{dev: d, name: name, interval: intervals[name], plan: plan, answered: make([]bool, len(plan)),
			bufs: make([][]byte, len(plan))}
		for qi := range g.bufs {
			g.bufs[qi] = make([]byte, 0, plan[qi].ResponseLen()) // what a well-formed answer needs, no more
		}
		d.groups = append(d.groups, g)
		d.byTick[d.workers.Tick(ctx, "poll "+name, g.interval)] = g
	}
}

// filterOf is register i's change filter, nil unless it reports on change.
func (d *modbusDevice) filterOf(i int) *mb.ChangeFilter {
	if d.filters == nil {
		return nil
	}
	return d.filters[i]
}

// tagsOf is register i's tags (the device's, the register's and its unit), nil when it has none.
func (d *modbusDevice) tagsOf(i int) []isp.Tag {
	if d.tags == nil {
		return nil
	}
	return d.tags[i]
}

func (d *modbusDevice) poll(ctx actor.Context, g *pollGroup) {
	// How long a poll may take before it is given up; its requests carry it as their deadline, so the transport
	// drops those still waiting when the poll has been given up.
	limit := time.Duration(len(g.plan)*(d.cfg.Retries+1))*(d.cfg.Timeout+d.cfg.Pause) + time.Second
	if g.pending > 0 {
		// The previous poll of this group is still on the wire. Skip this tick, unless the answers are overdue
		// (the transport restarted and lost them): then give the poll up, its missing points bad.
		if time.Since(g.started) < limit {
			d.overruns++
			return
		}
		for qi, ok := range g.answered {
			if !ok {
				d.failed(g, &g.plan[qi], fmt.Errorf("%w: no answer from the transport within %s", mb.ErrTimeout, limit))
			}
		}
		d.finish(g)
		g.pending = 0
	}
	g.seq++
	g.pending = len(g.plan)
	g.started = time.Now()
	g.pbuf = pointBufs.Get().(*[]isp.Point)
	g.points, g.index = (*g.pbuf)[:0], g.index[:0]
	clear(g.answered)
	for qi := range g.plan {
		q := &g.plan[qi]
		d.submit(ctx, &ModbusTx{
			Slave: q.SlaveID, Function: q.Function, Address: q.Address, Quantity: q.Quantity,
			Timeout: d.cfg.Timeout, Retries: d.cfg.Retries, Pause: d.cfg.Pause, Deadline: g.started.Add(limit),
			Tag: pollTag{group: g, seq: g.seq, req: qi}, Buf: g.bufs[qi],
		})
	}
}

// submit hands tx to the endpoint: to its line's queue when the device has the line, else (before the transport
// answered the lineRequest, or after it stopped) to the transport actor. The result comes back as a message
// either way.
func (d *modbusDevice) submit(ctx actor.Context, tx *ModbusTx) {
	if d.line != nil {
		switch err := d.line.submit(tx, ctx.Self()); {
		case err == nil:
			return
		case errors.Is(err, errLineStopped):
			d.line = nil // the actor path (a stopped transport's dead letters, as before), and ask again
			ctx.Request(d.bus, &lineRequest{})
		default:
			ctx.Send(ctx.Self(), &ModbusTxResult{Tag: tx.Tag, Err: err}) // ErrBusy, answered as the actor does
			return
		}
	}
	ctx.Request(d.bus, tx)
}

func (d *modbusDevice) result(tag pollTag, res *ModbusTxResult) {
	g := tag.group
	if g.dev != d {
		// An answer to a poll of a previous incarnation (the transport outlives the device's restarts and replies
		// to its PID): that poll's group, points and timestamps are not this incarnation's to publish.
		return
	}
	if tag.seq != g.seq || g.pending == 0 || g.answered[tag.req] {
		return // an answer for a poll already given up
	}
	g.answered[tag.req] = true
	q := &g.plan[tag.req]
	d.requests.Request(d.env.Metrics, d.id, q.Function, res.Took, actors.WithKind(errorKind(res.Err), res.Err))
	ts := g.started.UnixNano()
	err := res.Err
	if f := d.faults.Hit(actors.FaultError); f != nil && err == nil {
		err = fmt.Errorf("%w: %s (error)", errInjected, f.ID)
	}
	bad := d.faults.Hit(actors.FaultBadQuality) != nil
	if err == nil {
		err = q.Decode(d.regs, res.Data, func(i int, v isp.Value, derr error) {
			quality := isp.QualityGood
			if derr != nil || bad {
				quality = isp.QualityBad
			} else {
				d.fresh.Good(i, g.started)
			}
			d.add(g, i, v, quality, ts)
		})
	}
	if err != nil {
		d.failed(g, q, err)
	}
	if g.pending--; g.pending == 0 {
		d.finish(g)
	}
}

// failed marks a request's points bad and reports why.
func (d *modbusDevice) failed(g *pollGroup, q *mb.Request, err error) {
	for _, f := range q.Fields {
		d.add(g, f.Index, isp.Null(), isp.QualityBad, g.started.UnixNano())
	}
	d.event(errorKind(err), err, q)
}

func (d *modbusDevice) add(g *pollGroup, i int, v isp.Value, quality int, ts int64) {
	g.index = append(g.index, i)
	g.points = append(g.points, isp.Point{
		DeviceID: d.id, Key: d.regs[i].Key, Value: v, Type: d.regs[i].ValueType().String(), Quality: quality,
		Timestamp: ts, Tags: d.tagsOf(i), Source: "modbus",
	})
}

// Between polls a device holds neither its points nor its encoded batch: both come from pools shared by the
// package's devices, since few polls are in flight at once however many devices there are (a heap profile of
// 1,000 devices: 6 MiB of points and 3.5 MiB of batch buffers held between polls). Pointers to slices, so a Put
// allocates nothing; sync.Pool as fmt and encoding/json keep their buffers.
var (
	pointBufs = sync.Pool{New: func() any { return new([]isp.Point) }}
	batchBufs = sync.Pool{New: func() any { return new([]byte) }}
)

// finish applies report-on-change and staleness, then publishes the poll's batch.
func (d *modbusDevice) finish(g *pollGroup) {
	defer func() { // the poll's points go back to the pool: a late answer finds the poll finished and adds none
		*g.pbuf = g.points[:0]
		pointBufs.Put(g.pbuf)
		g.pbuf, g.points = nil, nil
	}()
	d.pollCount++
	staleAfter := actors.StaleAfter(d.cfg.StaleAfter, g.interval)
	// The points to publish are compacted into g.points itself (a copy per device cost 4.5 MiB of the heap of
	// 1,000 devices): point j moves to out[len(out)] <= j, after it was read.
	out := g.points[:0]
	var newlyStale []string
	for j, p := range g.points {
		i := g.index[j]
		if p.Quality != isp.QualityGood {
			if stale, became := d.fresh.Check(i, g.started, staleAfter); stale {
				if became {
					newlyStale = append(newlyStale, p.Key)
				}
				p.Tags = actors.MarkStale(p.Tags)
			}
		}
		if f := d.filterOf(i); f != nil && !f.Report(p.Value, p.Quality) {
			continue
		}
		out = append(out, p)
	}
	if len(newlyStale) > 0 {
		d.publishEvent(ModbusEvent{Device: d.id, Kind: "stale", Keys: newlyStale,
			Error: fmt.Sprintf("not read successfully for %s", staleAfter)})
	}
	if len(out) == 0 {
		return
	}
	// The processing stage's checks, where the points are born (after the filters, as the processor would apply
	// them): a batch that passes them all is sealed, and the processor forwards it without a second pass.
	sealed := true
	for j := range out {
		if processor.Check(&out[j]) != nil {
			sealed = false // the processor drops the point and reports why, as for any raw batch
		}
	}
	d.env.Metrics.PointsOut(d.path, len(out))
	buf := batchBufs.Get().(*[]byte)
	d.raw.Data = isp.AppendBatch((*buf)[:0], out)
	defer func() { // the bus copied it (nats.go writes it into its buffer before PublishMsg returns)
		*buf, d.raw.Data = d.raw.Data[:0], nil
		batchBufs.Put(buf)
	}()
	actors.SetHeader(d.raw.Header, actors.HeaderTraceID, actors.NewTraceID()) // a poll is where this batch is born
	if sealed {
		d.seal.Seal(d.raw, len(out)) // recorded before the publish: the processor may take it at once
	}
	if err := d.env.Bus.PublishMsg(d.raw); err != nil {
		d.env.Log.Warn().Err(err).Str("subject", d.raw.Subject).Msg("cannot publish poll")
	}
}

// ModbusEvent is published on iot.errors.modbus.{device}.
type ModbusEvent struct {
	Device    string   `json:"device"`
	Kind      string   `json:"kind"` // exception, timeout, mismatch, disconnected, invalid_reply, down, busy, stale, write
	Error     string   `json:"error"`
	Exception int      `json:"exception,omitempty"` // the exception code of an exception reply
	Slave     int      `json:"slave,omitempty"`
	Function  int      `json:"function,omitempty"`
	Address   int      `json:"address"`
	Quantity  int      `json:"quantity,omitempty"`
	Keys      []string `json:"keys,omitempty"` // the points it made bad or stale
	Timestamp int64    `json:"timestamp"`
}

// errorKind names a failed request for events and metrics ("" for none): the transport's own failures and an
// injected fault, else the kind the Modbus client's classifier gives (mb.ErrorKind, shared with the sidecar).
func errorKind(err error) string {
	switch {
	case errors.Is(err, ErrBusy):
		return "busy"
	case errors.Is(err, errInjected):
		return "injected"
	default:
		return mb.ErrorKind(err)
	}
}

func (d *modbusDevice) event(kind string, err error, q *mb.Request) {
	ev := ModbusEvent{Device: d.id, Kind: kind, Error: err.Error(), Slave: int(q.SlaveID), Function: int(q.Function),
		Address: int(q.Address), Quantity: int(q.Quantity)}
	var exc *modbus.ModbusError
	if errors.As(err, &exc) {
		ev.Exception = int(exc.ExceptionCode)
	}
	for _, f := range q.Fields {
		ev.Keys = append(ev.Keys, d.regs[f.Index].Key)
	}
	d.publishEvent(ev)
}

func (d *modbusDevice) publishEvent(ev ModbusEvent) {
	ev.Timestamp = time.Now().UnixNano()
	data, _ := json.Marshal(ev)
	if err := d.env.Bus.Publish(d.errSubj, data); err != nil {
		d.env.Log.Warn().Err(err).Msg("cannot publish modbus event")
	}
}

// maxWriteRequest bounds a write request's body.
const maxWriteRequest = 4 << 10

func (d *modbusDevice) write(ctx actor.Context, msg *nats.Msg) {
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
	// A linear search: writes are rare control requests, and a map per device was 1.8 KB of 1,000 devices' memory.
	i := slices.IndexFunc(d.regs, func(r mb.Register) bool { return r.Key == req.Key })
	if i < 0 {
		fail("no register %q on device %s", req.Key, d.id)
		return
	}
	r := &d.regs[i]
	v, err := parseValue(req.Value)
	if err != nil {
		fail("value of %q: %v", req.Key, err)
		return
	}
	if r.Bit != mb.NoBit && r.Function == mb.FuncHoldingRegisters && r.Type == mb.TypeBool {
		fail("register %q is one bit of a register: writing single bits is not supported", req.Key)
		return
	}
	data, err := mb.Encode(r, v)
	if err != nil {
		fail("%v", err)
		return
	}
	tx := &ModbusTx{Slave: r.SlaveID, Address: r.Address, Timeout: d.cfg.Timeout, Retries: 0, Pause: d.cfg.Pause,
		Tag: writeTag{msg: msg, key: req.Key, value: v}}
	switch {
	case r.Function == mb.FuncCoils:
		on, _ := v.Bool()
		if f, ok := v.Float(); ok && !on {
			on = f != 0
		}
		tx.Function, tx.Quantity, tx.Value = 5, 1, binary.BigEndian.AppendUint16(nil, mb.CoilValue(on))
	case len(data) == 2:
		tx.Function, tx.Quantity, tx.Value = 6, 1, data
	default:
		tx.Function, tx.Quantity, tx.Value = 16, uint16(len(data)/2), data
	}
	d.submit(ctx, tx)
}

func (d *modbusDevice) writeResult(tag writeTag, res *ModbusTxResult) {
	if res.Err != nil {
		d.publishEvent(ModbusEvent{Device: d.id, Kind: "write", Error: res.Err.Error(), Keys: []string{tag.key}})
		actors.Respond(d.env.Log, tag.msg, device.WriteReply{Device: d.id, Key: tag.key, Error: res.Err.Error()})
		return
	}
	actors.Respond(d.env.Log, tag.msg, device.WriteReply{OK: true, Device: d.id, Key: tag.key, Value: tag.value.Any()})
}

// parseValue reads a JSON number, bool or string into a point value.
func parseValue(raw json.RawMessage) (isp.Value, error) {
	if len(raw) == 0 {
		return isp.Value{}, errors.New("missing")
	}
	var x any
	if err := json.Unmarshal(raw, &x); err != nil {
		return isp.Value{}, err
	}
	switch v := x.(type) {
	case bool:
		return isp.Bool(v), nil
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return isp.Int(int64(v)), nil
		}
		return isp.Float(v), nil
	case string:
		return isp.String(v), nil
	default:
		return isp.Value{}, fmt.Errorf("want a number, a bool or a string, not %s", raw)
	}
}
