// Package file is the file sink: it writes the points of its subjects to files, one point per line (JSON lines,
// Influx line protocol or CSV), in a path made from a template with the device and the date, rotated by size
// and age, the old ones gzipped and bounded in number. It consumes a durable inbox and acknowledges a delivery
// only once its points are in the file, and, per the sync mode, fsynced.
//
// It must never write outside the directory its path template names (device ids come off the bus and are
// checked here), and never acknowledge what it has not written.
package file

import (
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/actors/sink/batch"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/internal/backoff"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
)

func init() {
	actors.RegisterSink("file", actors.SinkKind{Settings: NewSettings, New: New})
}

// ackWait is how long a delivery may stay unacknowledged before it is delivered again: longer than any sync
// interval and fsync the sink waits for, so a slow disk does not cause redeliveries.
const ackWait = 30 * time.Second

// sink is the file sink's actor.
type sink struct {
	name string
	cfg  *Settings
	env  actors.Env
	path string // sinks/{name}, the metrics label
	bind binding
	base string // the directory every path lies in
	now  func() time.Time

	workers actors.Workers
	w       *writer
	mill    *mill
	tick    *actors.Tick

	dec     isp.Decoder
	points  []isp.Point
	elems   []batch.Element   // the points of a delivery written as they are (write)
	devices map[string]string // device ids of elems, as strings
	// verbatim counts the points written as they are, not decoded (tests); decodeOnly turns that off (the
	// reference of the tests that compare the two).
	verbatim   int
	decodeOnly bool
	line       []byte
	paths      []byte // the paths of a delivery's points, back to back
	pathEnd    []int
	checked    string // the last path found inside base

	// pending are the deliveries written since the last sync (sync interval), acknowledged by the next; the
	// files each wrote to are pendingPaths[pendingEnd[i-1]:pendingEnd[i]].
	pending       []*actors.Delivery
	pendingPaths  []string
	pendingEnd    []int
	pendingPoints int
	touched       []string // the files of the delivery being written

	// While the target cannot be written, what was handed back (Nak) comes again first: the durable inbox holds
	// every later delivery back until it has (system/durable.go), so the file keeps the stream's order.
	down     bool
	downErr  string
	retry    backoff.Backoff // the delay of what is handed back: retry, doubling per failure up to maxRetry
	delay    time.Duration
	lastSync time.Time // the last sync of the interval
}

// maxRetry caps the doubling delay of the delivery handed back while the directory cannot be written: the sink
// finds out the disk is back within it. A retry is one local write attempt of one delivery (the durable inbox
// parks the rest), so a short cap costs little; the catch-up after an outage starts within it (measured: with a
// 5 s cap the first 1.5 s of a catch-up waited for the retry).
const maxRetry = time.Second

var (
	_ actors.Listener = (*sink)(nil)
	_ actor.Actor     = (*sink)(nil)
)

// New returns the producer of a file sink's actor.
func New(s config.Sink, env actors.Env) actor.Producer {
	cfg := s.Settings.(*Settings)
	return func() actor.Actor {
		return newSink(s.Name, cfg, env, time.Now)
	}
}

func newSink(name string, cfg *Settings, env actors.Env, now func() time.Time) *sink {
	k := &sink{name: name, cfg: cfg, env: env, path: "sinks/" + name, now: now,
		bind:  binding{dataDir: env.DataDir, sink: name},
		retry: backoff.Backoff{Policy: backoff.Policy{Initial: cfg.Retry, Max: max(cfg.Retry, maxRetry)}}}
	if k.bind.dataDir == "" {
		k.bind.dataDir = "."
	}
	return k
}

// Inboxes: one durable inbox per subject, the consumer named after the sink (and the subject's position when
// there are several, since one durable consumer reads one filter here).
func (k *sink) Inboxes() []actors.Inbox {
	in := make([]actors.Inbox, len(k.cfg.Subjects))
	for i, s := range k.cfg.Subjects {
		name := k.name
		if i > 0 {
			name = fmt.Sprintf("%s_%d", k.name, i)
		}
		in[i] = actors.Inbox{Subject: s, Durable: &actors.Durable{
			Name:          name,
			MaxAckPending: k.cfg.MaxAckPending,
			AckWait:       ackWait,
		}}
	}
	return in
}

func (k *sink) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		k.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		k.stop()
	case *actors.Delivery:
		k.deliver(msg)
	case *nats.Msg:
		k.plain(msg)
	case *actors.Tick:
		msg.Ack()
		if msg == k.tick {
			k.onTick()
		}
	}
}

func (k *sink) start(ctx actor.Context) {
	k.base = k.cfg.tmpl.base(k.bind)
	k.mill = newMill(k.cfg.Compress, k.cfg.MaxFiles, func(err error) {
		k.env.Metrics.Error(k.path, "rotate")
		k.env.Log.Warn().Err(err).Str("sink", k.name).Msg("file sink: rotated file left as it is")
	})
	k.w = newWriter(k.cfg, k.now, k.mill.add)
	k.workers.Go(ctx, "mill", func(done <-chan struct{}, _ func(any)) error { return k.mill.run(done) })
	every := time.Second // rotation by age, idle files, and the end of an outage
	if k.cfg.Sync == SyncInterval && k.cfg.SyncInterval < every {
		every = k.cfg.SyncInterval
	}
	k.lastSync = k.now()
	k.tick = k.workers.Tick(ctx, "sync", every)
}

// stop syncs what was written and settles the pending deliveries, then closes the files. Nothing pending is
// left unsettled: acknowledged when synced, handed back otherwise.
func (k *sink) stop() {
	if k.w != nil {
		k.settle(k.w.sync())
		if err := k.w.closeAll(); err != nil {
			k.env.Log.Warn().Err(err).Str("sink", k.name).Msg("file sink: close")
		}
	}
	k.workers.Stop()
}

func (k *sink) onTick() {
	now := k.now()
	if k.cfg.Sync == SyncInterval && now.Sub(k.lastSync) >= k.cfg.SyncInterval-k.cfg.SyncInterval/10 {
		// The tick is at most a second apart (housekeeping), the sync every sync_interval (a tenth early rather
		// than a tick late, since ticks jitter).
		k.lastSync = now
		k.settle(k.w.sync())
	}
	if err := k.w.housekeeping(); err != nil {
		k.failed(err)
	}
}

// deliver writes one delivery's points and acknowledges it per the sync mode.
func (k *sink) deliver(d *actors.Delivery) {
	n, err := k.write(d.Msg)
	switch {
	case errors.Is(err, errNotPoints) || errors.Is(err, ErrPath):
		k.env.Metrics.Error(k.path, "refused")
		k.env.Log.Warn().Err(err).Str("sink", k.name).Str("subject", d.Msg.Subject).Msg("file sink: message refused")
		if terr := d.Term(err.Error()); terr != nil {
			k.env.Log.Warn().Err(terr).Str("sink", k.name).Msg("file sink: term")
		}
		return
	case err != nil:
		k.failed(err)
		k.nak(d)
		return
	}
	switch k.cfg.Sync {
	case SyncAlways:
		if err := k.w.sync(); err != nil {
			k.failed(err)
			k.nak(d)
			return
		}
		k.ack(d, n)
	case SyncNever:
		if err := k.w.flush(); err != nil {
			k.failed(err)
			k.nak(d)
			return
		}
		k.ack(d, n)
	default:
		k.pending = append(k.pending, d)
		k.pendingPaths = append(k.pendingPaths, k.touched...)
		k.pendingEnd = append(k.pendingEnd, len(k.pendingPaths))
		k.pendingPoints += n
		// Sync before the runtime's window is full, so the consumer never stalls waiting for the interval.
		if len(k.pending) >= max(1, k.cfg.MaxAckPending/2) {
			k.settle(k.w.sync()) // a failure hands it back with the others
		}
	}
}

// plain writes a message of an inbox that is not durable (there is nobody to acknowledge it to): a failure is
// counted and logged, the message lost. The runtime gives this sink durable inboxes, so this is only a fallback.
func (k *sink) plain(msg *nats.Msg) {
	n, err := k.write(msg)
	if err == nil {
		if k.cfg.Sync == SyncAlways {
			err = k.w.sync()
		} else if k.cfg.Sync == SyncNever {
			err = k.w.flush()
		}
	}
	if err != nil {
		k.env.Metrics.Error(k.path, "dropped")
		k.env.Log.Warn().Err(err).Str("sink", k.name).Msg("file sink: message not written (not durable: dropped)")
		return
	}
	if k.cfg.Sync == SyncInterval {
		k.pendingPoints += n // counted as written at the sync, like the deliveries
		return
	}
	k.env.Metrics.PointsOut(k.path, n)
}

// settle acknowledges the pending deliveries after a sync that succeeded, or hands them back after one that
// failed; it says whether the sync succeeded.
func (k *sink) settle(syncErr error) bool {
	if syncErr != nil {
		// What wrote only to files that synced is in place and acknowledged; what touched a file that failed
		// goes back (and failed() cuts that file back). Order holds per file: every later delivery to a failed
		// file goes back too, and later ones are held back until the first comes again.
		start := 0
		for i, d := range k.pending {
			end := k.pendingEnd[i]
			if touchesAny(k.pendingPaths[start:end], k.w.failed) {
				k.nak(d)
			} else {
				k.ack(d, 0)
			}
			start = end
			k.pending[i] = nil
		}
		k.clearPending()
		k.failed(syncErr)
		return false
	}
	for i, d := range k.pending {
		k.ack(d, 0)
		k.pending[i] = nil
	}
	if syncErr == nil {
		k.env.Metrics.PointsOut(k.path, k.pendingPoints)
		if k.down && len(k.pending) > 0 {
			k.recovered() // up again once a sync has covered a delivery, not at the first write into a buffer
		}
	}
	k.clearPending()
	return true
}

func (k *sink) clearPending() {
	clear(k.pending)
	k.pending = k.pending[:0]
	k.pendingPaths = k.pendingPaths[:0]
	k.pendingEnd = k.pendingEnd[:0]
	k.pendingPoints = 0
}

func touchesAny(paths, failed []string) bool {
	for _, p := range paths {
		for _, f := range failed {
			if p == f {
				return true
			}
		}
	}
	return false
}

func (k *sink) ack(d *actors.Delivery, points int) {
	if err := d.Ack(); err != nil {
		k.env.Log.Warn().Err(err).Str("sink", k.name).Uint64("seq", d.Seq).Msg("file sink: ack (it will come again)")
	}
	k.env.Metrics.PointsOut(k.path, points)
	if k.down && k.cfg.Sync != SyncInterval {
		k.recovered()
	}
}

func (k *sink) nak(d *actors.Delivery) {
	if k.delay == 0 {
		k.delay = k.cfg.Retry
	}
	if err := d.Nak(k.delay); err != nil {
		k.env.Log.Warn().Err(err).Str("sink", k.name).Uint64("seq", d.Seq).Msg("file sink: nak")
	}
}

// failed marks the target down: the pending deliveries go back (a write after them would reorder the file),
// the tree shows the sink disconnected with the error.
func (k *sink) failed(err error) {
	k.delay = k.retry.Next()
	k.w.abort() // what the pending deliveries wrote goes with them
	for _, d := range k.pending {
		k.nak(d)
	}
	k.clearPending()
	k.env.Metrics.Error(k.path, "write")
	if !k.down || k.downErr != err.Error() {
		k.env.Log.Warn().Err(err).Str("sink", k.name).Msg("file sink: cannot write; deliveries wait in the stream")
		k.env.Link(actors.LinkDisconnected, err.Error())
	}
	k.down, k.downErr = true, err.Error()
}

func (k *sink) recovered() {
	k.down, k.downErr = false, ""
	k.retry.Reset()
	k.env.Log.Info().Str("sink", k.name).Msg("file sink: writing again")
	k.env.Link(actors.LinkConnected, "")
}

// errNotPoints is the error of a message that is neither a point nor a batch: it can never be written.
var errNotPoints = errors.New("not a point or a batch")

// write decodes msg and writes its points; all their paths are checked before the first line is written, so a
// refused message leaves nothing behind. It returns the number of points written.
//
// In the jsonl format a point's line is isp.AppendPoint of the point, so a message whose points are already in
// that form is not decoded: batch.SplitPoints proves each element is byte for byte what decoding and encoding it
// again would write, and the element is written as it is (the device id and timestamp the path needs come with
// the proof). What it cannot prove (a batch from outside the gateway, other spacing, escapes or number forms) is
// decoded as before. Vector and Telegraf always decode and re-serialize; the console sink prints the elements
// of a batch as they are too, with a structural check only (a console is for people, a file for programs).
func (k *sink) write(msg *nats.Msg) (int, error) {
	n, verbatim, err := k.read(msg)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errNotPoints, err)
	}
	k.env.Metrics.PointsIn(k.path, n)
	k.paths, k.pathEnd = k.paths[:0], k.pathEnd[:0]
	now := k.now()
	for i := range n {
		var device string
		var stamp int64
		if verbatim {
			e := &k.elems[i]
			device, stamp = k.deviceID(msg.Data[e.DeviceStart:e.DeviceEnd]), e.Timestamp
		} else {
			device, stamp = k.points[i].DeviceID, k.points[i].Timestamp
		}
		if device == "" {
			device = batch.SubjectDevice(msg.Subject)
		}
		ts := now
		if stamp > 0 {
			ts = time.Unix(0, stamp)
		}
		start := len(k.paths)
		if k.paths, err = k.cfg.tmpl.appendPath(k.paths, k.bind, device, ts); err != nil {
			return 0, err
		}
		if path := k.paths[start:]; string(path) != k.checked {
			if !within(k.base, string(path)) {
				return 0, fmt.Errorf("%w: %q is outside %s", ErrPath, path, k.base)
			}
			k.checked = string(path) // a batch's points, and the next batch of the device, share one path
		}
		k.pathEnd = append(k.pathEnd, len(k.paths))
	}
	start := 0
	k.touched = k.touched[:0]
	for i := range n {
		if verbatim {
			e := &k.elems[i]
			k.line = append(append(k.line[:0], msg.Data[e.Start:e.End]...), '\n')
		} else {
			k.line = appendLine(k.line[:0], k.cfg.Format, &k.points[i])
		}
		if err := k.w.writeAt(k.paths[start:k.pathEnd[i]], k.line, now); err != nil {
			return i, err
		}
		if p := k.w.last.path; len(k.touched) == 0 || k.touched[len(k.touched)-1] != p {
			k.touched = append(k.touched, p) // a batch's points share a file: usually one entry
		}
		start = k.pathEnd[i]
	}
	return n, nil
}

// read finds msg's points: verbatim in k.elems when the format is jsonl and SplitPoints (or OnePoint) proves
// them in the encoder's form, else decoded into k.points. It returns their number.
func (k *sink) read(msg *nats.Msg) (n int, verbatim bool, err error) {
	batched := batch.IsBatch(msg.Subject, msg.Data)
	if k.cfg.Format == FormatJSONL && !k.decodeOnly {
		var ok bool
		if batched {
			k.elems, ok = batch.SplitPoints(msg.Data, k.elems)
		} else {
			var e batch.Element
			if e, ok = batch.OnePoint(msg.Data); ok {
				k.elems = append(k.elems[:0], e)
			}
		}
		if ok {
			k.verbatim += len(k.elems)
			return len(k.elems), true, nil
		}
	}
	if batched {
		k.points, err = k.dec.DecodeBatch(msg.Data, k.points[:0])
		return len(k.points), false, err
	}
	if cap(k.points) == 0 {
		k.points = append(k.points, isp.Point{})
	}
	k.points = k.points[:1]
	if err = k.dec.DecodePoint(msg.Data, &k.points[0]); err != nil {
		return 0, false, err
	}
	return 1, false, nil
}

// deviceID returns b as a string without allocating for a device seen before (a few per sink, bounded).
func (k *sink) deviceID(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := k.devices[string(b)]; ok {
		return s
	}
	if k.devices == nil || len(k.devices) >= maxDevices {
		k.devices = make(map[string]string)
	}
	s := string(b)
	k.devices[s] = s
	return s
}

// maxDevices bounds deviceID's table: past it the table starts again.
const maxDevices = 4096
