// Package console is the console sink: it prints what arrives on its subjects to standard output.
package console

import (
	"bufio"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/actors/sink/batch"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
)

// console prints what arrives on its subjects, one line per point: readable columns by default, one JSON point
// per line with format "json" (or "auto" when the gateway logs JSON). A batch prints one line per point; a message
// that is neither a point nor a batch prints as "subject body", so the sink shows anything it is pointed at.
type console struct {
	cfg  *config.ConsoleSink
	env  actors.Env
	json bool
	path string // sinks/{name}, the metrics label

	w       *bufio.Writer
	dec     isp.Decoder
	points  []isp.Point
	spans   [][2]int
	line    []byte
	faults  actors.Faults
	workers actors.Workers
}

// flushEvery bounds how long a line waits in the console's buffer: lines are written when 32 KiB have gathered
// or at the next flush tick, not one write(2) per message (which was a write per poll), and at stop.
const flushEvery = 100 * time.Millisecond

var (
	_ actors.Listener    = (*console)(nil)
	_ actors.FaultTarget = (*console)(nil)
)

// InjectFault: latency makes the sink slow (each message waits), to watch backpressure in the mailbox figures.
func (c *console) InjectFault(_ actor.Context, f *actors.Fault) error {
	if f.Kind != actors.FaultLatency {
		return actors.ErrFaultUnsupported
	}
	c.faults.Add(f)
	return nil
}

// ClearFault ends a fault.
func (c *console) ClearFault(_ actor.Context, id string) { c.faults.Remove(id) }

func init() {
	actors.RegisterSink("console", actors.SinkKind{Settings: config.NewConsoleSink, New: New})
}

// New returns the producer of a console sink's actor.
func New(s config.Sink, env actors.Env) actor.Producer {
	cfg := s.Settings.(*config.ConsoleSink)
	asJSON := cfg.Format == "json" || (cfg.Format != "text" && env.LogFormat == "json")
	return func() actor.Actor {
		return &console{cfg: cfg, env: env, json: asJSON, path: "sinks/" + s.Name, w: bufio.NewWriterSize(env.Stdout, 32<<10)}
	}
}

func (c *console) Inboxes() []actors.Inbox {
	in := make([]actors.Inbox, len(c.cfg.Subjects))
	for i, s := range c.cfg.Subjects {
		in[i] = actors.Inbox{Subject: s, Queue: c.cfg.Queue}
	}
	return in
}

func (c *console) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *nats.Msg:
		if f := c.faults.Hit(actors.FaultLatency); f != nil {
			time.Sleep(f.Latency) // the injected fault is a slow sink: blocking is the point
		}
		c.print(m)
	case *actors.Tick:
		m.Ack()
		c.flushNow()
	case *actor.Started:
		c.workers.Tick(ctx, "flush", flushEvery)
	case *actor.Stopping, *actor.Restarting:
		c.workers.Stop()
		c.flushNow()
	}
}

func (c *console) flushNow() {
	if c.w.Buffered() == 0 {
		return
	}
	if err := c.w.Flush(); err != nil {
		c.env.Log.Warn().Err(err).Msg("console: cannot write")
	}
}

func (c *console) print(msg *nats.Msg) {
	batched := batch.IsBatch(msg.Subject, msg.Data)
	if c.json && batched {
		var ok bool
		if c.spans, ok = batch.Split(msg.Data, c.spans); ok { // the processor's encoding, printed as it is
			c.env.Metrics.PointsIn(c.path, len(c.spans))
			for _, s := range c.spans {
				_, _ = c.w.Write(msg.Data[s[0]:s[1]])
				_ = c.w.WriteByte('\n')
			}
			return
		}
	}
	var err error
	if batched {
		c.points, err = c.dec.DecodeBatch(msg.Data, c.points[:0])
	} else {
		c.points = c.points[:0]
		if cap(c.points) > 0 {
			c.points = c.points[:1] // reuse the slot: the decoder keeps its strings and tag capacity
		} else {
			c.points = append(c.points, isp.Point{})
		}
		err = c.dec.DecodePoint(msg.Data, &c.points[0])
	}
	if err != nil {
		c.raw(msg) // neither a point nor a batch: shown as it came, once, and counted as no point
		return
	}
	if dev := batch.SubjectDevice(msg.Subject); dev != "" {
		for i := range c.points {
			if c.points[i].DeviceID == "" {
				c.points[i].DeviceID = dev
			}
		}
	}
	c.env.Metrics.PointsIn(c.path, len(c.points))
	for i := range c.points {
		if c.json {
			c.line = isp.AppendPoint(c.line[:0], &c.points[i])
		} else {
			c.line = appendText(c.line[:0], &c.points[i])
		}
		c.line = append(c.line, '\n')
		_, _ = c.w.Write(c.line)
	}
}

func (c *console) raw(msg *nats.Msg) {
	c.line = append(append(append(c.line[:0], msg.Subject...), ' '), msg.Data...)
	c.line = append(c.line, '\n')
	_, _ = c.w.Write(c.line)
}

// appendText formats a point for people: time, device, key, value with unit, quality, source and other tags.
//
//	12:00:01.250  plc-1  temperature  25.53 °C  good  mock  line=A
func appendText(b []byte, p *isp.Point) []byte {
	ts := time.Now()
	if p.Timestamp > 0 {
		ts = time.Unix(0, p.Timestamp)
	}
	b = ts.AppendFormat(b, "15:04:05.000")
	b = append(b, "  "...)
	b = append(b, p.DeviceID...)
	b = append(b, "  "...)
	b = append(b, p.Key...)
	b = append(b, "  "...)
	if f, ok := p.Value.Float(); ok && p.Value.Kind() == isp.KindFloat {
		b = strconv.AppendFloat(b, f, 'g', 6, 64) // readable; the JSON format keeps every digit
	} else {
		b = append(b, p.Value.String()...)
	}
	if unit, ok := p.Tag("unit"); ok {
		b = append(append(b, ' '), unit...)
	}
	switch p.Quality {
	case isp.QualityGood:
		b = append(b, "  good"...)
	case isp.QualityBad:
		b = append(b, "  BAD"...)
	default:
		b = append(b, "  quality="...)
		b = strconv.AppendInt(b, int64(p.Quality), 10)
	}
	if p.Source != "" {
		b = append(append(b, "  "...), p.Source...)
	}
	for _, t := range p.Tags {
		if t.Key == "unit" {
			continue
		}
		b = append(append(append(append(b, "  "...), t.Key...), '='), t.Value...)
	}
	return b
}
