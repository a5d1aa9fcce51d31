// Package mock is the mock device driver: simulated points that follow a signal, for demos and tests.
package mock

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
)

// mock is a simulated device: each point follows a signal (sine, ramp, random, constant, step, counter) and is
// "polled" at its interval; every poll of a group of points with the same interval becomes one batch on
// iot.raw.mock.{device}.
type mock struct {
	id  string
	cfg *config.MockDevice
	env actors.Env
	// counts are the counter signals' polls so far, one per point, shared by the device's incarnations: a counter
	// counts by one from min at every poll for the gateway's life, across restarts of the actor, so a test can
	// count what was lost or duplicated downstream.
	counts []atomic.Int64

	workers   actors.Workers
	groups    map[*actors.Tick][]int // a ticker per distinct interval → the points it polls
	batch     []isp.Point
	msg       *nats.Msg
	polls     int
	pointTags [][]isp.Tag
	faults    actors.Faults
}

// A mock device is no device.Writer: the runtime answers its writes with "driver mock does not support writes".
var _ actors.FaultTarget = (*mock)(nil)

// InjectFault: error and bad_quality publish the device's points with quality 0.
func (m *mock) InjectFault(_ actor.Context, f *actors.Fault) error {
	if f.Kind != actors.FaultError && f.Kind != actors.FaultBadQuality {
		return actors.ErrFaultUnsupported
	}
	m.faults.Add(f)
	return nil
}

// ClearFault ends a fault.
func (m *mock) ClearFault(_ actor.Context, id string) { m.faults.Remove(id) }

func init() {
	actors.RegisterDevice("mock", actors.DeviceKind{Settings: config.NewMockDevice, New: New})
}

// New returns the producer of a mock device's actor.
func New(dev config.Device, env actors.Env) actor.Producer {
	cfg := dev.Settings.(*config.MockDevice)
	counts := make([]atomic.Int64, len(cfg.Points))
	return func() actor.Actor {
		return &mock{id: dev.ID, cfg: cfg, env: env, counts: counts}
	}
}

func (m *mock) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		m.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		m.workers.Stop()
	case *actors.Tick:
		msg.Ack()
		if idx, ok := m.groups[msg]; ok { // a tick of a previous incarnation is ignored
			m.poll(idx)
		}
	}
}

func (m *mock) start(ctx actor.Context) {
	m.msg = &nats.Msg{Subject: "iot.raw.mock." + m.id, Header: nats.Header{}}
	m.msg.Header.Set(actors.HeaderSource, "mock")
	m.msg.Header.Set(actors.HeaderSchema, actors.SchemaVersion)

	byInterval := map[time.Duration][]int{}
	var order []time.Duration
	for i, p := range m.cfg.Points {
		iv := p.Interval
		if iv <= 0 {
			iv = m.cfg.Interval
		}
		if _, ok := byInterval[iv]; !ok {
			order = append(order, iv)
		}
		byInterval[iv] = append(byInterval[iv], i)
	}
	m.groups = make(map[*actors.Tick][]int, len(order))
	for _, iv := range order {
		m.groups[m.workers.Tick(ctx, iv.String(), iv)] = byInterval[iv]
	}
	if m.cfg.FailMode == "worker" && m.cfg.FailAfter > 0 {
		// A fault hook for tests and demos: a goroutine the actor owns panics; the runtime must restart the actor
		// and the process must live.
		after := time.Duration(m.cfg.FailAfter) * m.cfg.Interval
		m.workers.Go(ctx, "fail", func(done <-chan struct{}, _ func(any)) error {
			select {
			case <-done:
				return nil
			case <-time.After(after):
				panic(fmt.Sprintf("mock device %q: fail_after=%d reached in a worker goroutine", m.id, m.cfg.FailAfter))
			}
		})
	}
}

func (m *mock) poll(idx []int) {
	m.polls++
	if m.cfg.FailMode != "worker" && m.cfg.FailAfter > 0 && m.polls >= m.cfg.FailAfter {
		panic(fmt.Errorf("mock device %q: fail_after=%d polls reached", m.id, m.cfg.FailAfter))
	}
	now := time.Now()
	ts := now.UnixNano()
	quality := isp.QualityGood
	if m.faults.Hit(actors.FaultError) != nil || m.faults.Hit(actors.FaultBadQuality) != nil {
		quality = isp.QualityBad
	}
	m.batch = m.batch[:0]
	for _, i := range idx {
		p := &m.cfg.Points[i]
		m.batch = append(m.batch, isp.Point{
			DeviceID:  m.id,
			Key:       p.Key,
			Value:     m.value(i, now),
			Type:      p.Type,
			Quality:   quality,
			Timestamp: ts,
			Tags:      m.tags(i),
			Source:    "mock",
		})
	}
	m.env.Metrics.PointsOut("devices/"+m.id, len(m.batch))
	m.msg.Data = isp.AppendBatch(m.msg.Data[:0], m.batch)
	actors.SetHeader(m.msg.Header, actors.HeaderTraceID, actors.NewTraceID()) // a tick is where this batch is born
	if err := m.env.Bus.PublishMsg(m.msg); err != nil {
		// The connection buffers while reconnecting; an error here means it is closed or the buffer is full.
		m.env.Log.Warn().Err(err).Str("subject", m.msg.Subject).Msg("cannot publish poll")
	}
}

// tags are computed once per point and reused: the device's tags, the point's, and its unit.
func (m *mock) tags(i int) []isp.Tag {
	if m.pointTags == nil {
		m.pointTags = make([][]isp.Tag, len(m.cfg.Points))
		for j, p := range m.cfg.Points {
			m.pointTags[j] = isp.MergeTags(m.cfg.Tags, p.Tags, p.Unit)
		}
	}
	return m.pointTags[i]
}

// value is point i's value at time now: the counter counts its polls, the other signals follow the clock.
func (m *mock) value(i int, now time.Time) isp.Value {
	p := &m.cfg.Points[i]
	if p.Signal != "counter" {
		return signal(p, now)
	}
	n := float64(m.counts[i].Add(1) - 1)
	switch p.Type {
	case "int64":
		return isp.Int(int64(p.Min) + int64(n))
	case "bool":
		return isp.Bool(int64(n)%2 == 1)
	default:
		return isp.Float(p.Min + n)
	}
}

// signal is a point's value at time now. Phases follow the wall clock, so a restarted device continues its curve.
func signal(p *config.MockPoint, now time.Time) isp.Value {
	span := p.Max - p.Min
	phase := 0.0
	if p.Period > 0 {
		phase = math.Mod(float64(now.UnixNano())/float64(p.Period), 1)
	}
	var v float64
	switch p.Signal {
	case "sine":
		v = p.Min + span*(0.5+0.5*math.Sin(2*math.Pi*phase))
	case "ramp":
		v = p.Min + span*phase
	case "random":
		v = p.Min + span*rand.Float64()
	case "step":
		v = p.Min
		if phase >= 0.5 {
			v = p.Max
		}
	default: // constant
		v = p.Value
	}
	switch p.Type {
	case "int64":
		return isp.Int(int64(math.Round(v)))
	case "bool":
		return isp.Bool(v >= p.Min+span/2)
	default:
		return isp.Float(v)
	}
}
