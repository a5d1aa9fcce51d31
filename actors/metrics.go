package actors

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mb "github.com/iotgw/iotgw/modbus"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metrics are the Prometheus collectors actors update as they work: points in and out, errors, Modbus request
// latency. The runtime creates one per gateway on its own registry and hands it to every actor in Env.
//
// Every method is safe on a nil *Metrics and then does nothing, so an actor built without metrics (a unit test,
// a benchmark) needs no check of its own.
//
// Label values must come from config (actor paths, device ids) or from a fixed set in code (error kinds,
// function codes), never from what arrives on the wire: each distinct value is a time series kept for the life of
// the process. Forget and ForgetDevice drop the series of an actor removed at run time.
type Metrics struct {
	pointsIn      *prometheus.CounterVec
	pointsOut     *prometheus.CounterVec
	errors        *prometheus.CounterVec
	modbusLatency *prometheus.HistogramVec
	modbusErrors  *prometheus.CounterVec

	// The points counters by actor, looked up without the vector's hashing and its variadic []string (115 ns and
	// an allocation per call, several calls per batch on the path): a map replaced whole when an actor is new,
	// read with one atomic load.
	inByActor, outByActor counterCache
}

// counterCache is a copy-on-write map from an actor to its series of one CounterVec.
type counterCache struct {
	mu sync.Mutex // writers only
	m  atomic.Pointer[map[string]prometheus.Counter]
}

func (c *counterCache) get(vec *prometheus.CounterVec, actor string) prometheus.Counter {
	if m := c.m.Load(); m != nil {
		if ctr, ok := (*m)[actor]; ok {
			return ctr
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if ctr, ok := (*old)[actor]; ok {
			return ctr
		}
	}
	next := make(map[string]prometheus.Counter, 1+len(ptrMap(old)))
	for k, v := range ptrMap(old) {
		next[k] = v
	}
	ctr := vec.WithLabelValues(actor)
	next[actor] = ctr
	c.m.Store(&next)
	return ctr
}

// forget drops actor's entry: its series is being deleted, and a later actor of the same path must get a new one.
func (c *counterCache) forget(actor string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := ptrMap(c.m.Load())
	if _, ok := old[actor]; !ok {
		return
	}
	next := make(map[string]prometheus.Counter, len(old))
	for k, v := range old {
		if k != actor {
			next[k] = v
		}
	}
	c.m.Store(&next)
}

func ptrMap(p *map[string]prometheus.Counter) map[string]prometheus.Counter {
	if p == nil {
		return nil
	}
	return *p
}

// ModbusBuckets are the upper bounds (seconds) of the Modbus request latency histogram: from 100 µs (a simulator
// on loopback) to 5 s (a serial line at its timeout).
var ModbusBuckets = []float64{
	.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5,
}

// NewMetrics creates the collectors and registers them with reg. It panics when one is already registered there,
// like prometheus.MustRegister: that is a wiring bug (two Metrics on one registry), not a run-time condition.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		pointsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotgw_points_in_total",
			Help: "Points an actor received (from a device, a sidecar or the bus).",
		}, []string{"actor"}),
		pointsOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotgw_points_out_total",
			Help: "Points an actor published or delivered.",
		}, []string{"actor"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotgw_errors_total",
			Help: "Errors an actor handled without failing, by kind.",
		}, []string{"actor", "kind"}),
		modbusLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "iotgw_modbus_request_seconds",
			Help:    "Latency of Modbus requests, successful or not, by device and function code.",
			Buckets: ModbusBuckets,
		}, []string{"device", "function"}),
		modbusErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotgw_modbus_request_errors_total",
			Help: "Failed Modbus requests by device and kind (exception, timeout, disconnected, …).",
		}, []string{"device", "kind"}),
	}
	if reg != nil {
		reg.MustRegister(m.pointsIn, m.pointsOut, m.errors, m.modbusLatency, m.modbusErrors)
	}
	return m
}

// PointsIn counts n points received by actor (its path, "devices/plc-1").
func (m *Metrics) PointsIn(actor string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.inByActor.get(m.pointsIn, actor).Add(float64(n))
}

// PointsOut counts n points published or delivered by actor.
func (m *Metrics) PointsOut(actor string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.outByActor.get(m.pointsOut, actor).Add(float64(n))
}

// Error counts one error of a kind ("decode", "invalid", "publish", …: a constant of the caller's) at actor.
func (m *Metrics) Error(actor, kind string) {
	if m == nil {
		return
	}
	m.errors.WithLabelValues(actor, kind).Inc()
}

// PointsOutOf reads the points actor published or delivered (iot.control.sinks.* shows them as written).
func (m *Metrics) PointsOutOf(actor string) uint64 { return m.sum(m.pointsOut, actor) }

// ErrorsOf reads the errors actor counted, of every kind.
func (m *Metrics) ErrorsOf(actor string) uint64 { return m.sum(m.errors, actor) }

// sum adds up the series of vec whose actor label is actor, without creating one.
func (m *Metrics) sum(vec *prometheus.CounterVec, actor string) uint64 {
	if m == nil {
		return 0
	}
	ch := make(chan prometheus.Metric, 16)
	go func() { vec.Collect(ch); close(ch) }() // Collect blocks on ch: prometheus's own pattern for a read
	var total float64
	for pm := range ch {
		var d dto.Metric
		if pm.Write(&d) != nil {
			continue
		}
		for _, l := range d.GetLabel() {
			if l.GetName() == "actor" && l.GetValue() == actor {
				total += d.GetCounter().GetValue()
			}
		}
	}
	return uint64(total)
}

// ModbusRequest records one Modbus request to device with function code function that took d, and, when err is
// not nil, counts it as failed under ModbusErrorKind(err).
func (m *Metrics) ModbusRequest(device string, function uint8, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.modbusLatency.WithLabelValues(device, strconv.Itoa(int(function))).Observe(d.Seconds())
	if err != nil {
		m.modbusErrors.WithLabelValues(device, ModbusErrorKind(err)).Inc()
	}
}

// ModbusRecorder records the Modbus requests of one device, as ModbusRequest does, into the same series: each
// function code's latency histogram is looked up once (WithLabelValues hashes the labels and takes the vector's
// lock on every call, about 2% of the CPU of 100 devices polled every 100 ms) and then observed directly. The zero
// value is ready; it belongs to one device actor and is not safe for concurrent use. A device removed from a
// running gateway is stopped before ForgetDevice drops its series, so no observation goes to a dropped series.
type ModbusRecorder struct {
	fns []uint8
	obs []prometheus.Observer
}

// Request records one request of device to m (nil: nothing), as ModbusRequest.
func (r *ModbusRecorder) Request(m *Metrics, device string, function uint8, d time.Duration, err error) {
	if m == nil {
		return
	}
	i := 0
	for i < len(r.fns) && r.fns[i] != function {
		i++
	}
	if i == len(r.fns) {
		r.fns = append(r.fns, function)
		r.obs = append(r.obs, m.modbusLatency.WithLabelValues(device, strconv.Itoa(int(function))))
	}
	r.obs[i].Observe(d.Seconds())
	if err != nil {
		m.modbusErrors.WithLabelValues(device, ModbusErrorKind(err)).Inc()
	}
}

// Forget drops the series of an actor removed while the gateway runs, so hot-add and remove do not grow the
// scrape without bound.
func (m *Metrics) Forget(actor string) {
	if m == nil {
		return
	}
	// The cache first: an actor is forgotten after it stopped, so nothing adds to its counters meanwhile.
	m.inByActor.forget(actor)
	m.outByActor.forget(actor)
	for _, v := range []*prometheus.CounterVec{m.pointsIn, m.pointsOut, m.errors} {
		v.DeletePartialMatch(prometheus.Labels{"actor": actor})
	}
}

// ForgetDevice drops the Modbus series of a removed device.
func (m *Metrics) ForgetDevice(device string) {
	if m == nil {
		return
	}
	m.modbusLatency.DeletePartialMatch(prometheus.Labels{"device": device})
	m.modbusErrors.DeletePartialMatch(prometheus.Labels{"device": device})
}

// KindError is an error that says which kind it is for metrics. A package whose errors are its own sentinels (the
// Modbus device's ErrTimeout, ErrBusy, …) wraps them with WithKind, since this package cannot know them.
type KindError struct {
	Kind string
	Err  error
}

func (e *KindError) Error() string { return e.Err.Error() }
func (e *KindError) Unwrap() error { return e.Err }

// WithKind returns err labelled with kind (nil when err is nil).
func WithKind(kind string, err error) error {
	if err == nil {
		return nil
	}
	return &KindError{Kind: kind, Err: err}
}

// ModbusErrorKind is the label of a failed Modbus request: the kind of a KindError in its chain (the caller's own
// kinds, such as the transport's "busy"), else the Modbus client's classifier, mb.ErrorKind ("exception",
// "timeout", "disconnected", …), the one the driver's events and the reference sidecar's status use too.
func ModbusErrorKind(err error) string {
	var ke *KindError
	if errors.As(err, &ke) {
		return ke.Kind
	}
	return mb.ErrorKind(err)
}

// Counted returns what actor has counted so far: points in and out, and its errors by kind; for the control
// plane's figures of one actor (iot.control.sinks.*), read from the same counters /metrics shows.
func (m *Metrics) Counted(actor string) (in, out uint64, errs map[string]uint64) {
	if m == nil {
		return 0, 0, nil
	}
	errs = map[string]uint64{}
	read := func(v *prometheus.CounterVec, each func(labels map[string]string, value uint64)) {
		ch := make(chan prometheus.Metric, 64)
		go func() { v.Collect(ch); close(ch) }()
		for pm := range ch {
			var d dto.Metric
			if pm.Write(&d) != nil || d.Counter == nil {
				continue
			}
			labels := map[string]string{}
			for _, l := range d.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["actor"] == actor {
				each(labels, uint64(d.Counter.GetValue()))
			}
		}
	}
	read(m.pointsIn, func(_ map[string]string, v uint64) { in = v })
	read(m.pointsOut, func(_ map[string]string, v uint64) { out = v })
	read(m.errors, func(l map[string]string, v uint64) { errs[l["kind"]] = v })
	return in, out, errs
}
