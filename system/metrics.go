package system

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/system/dashboard"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
)

// MetricsInterval is how often the gateway publishes iot.metrics.health.{gateway} and
// iot.metrics.performance.{gateway}.
const MetricsInterval = 10 * time.Second

// Subjects of the gateway's own reports; the gateway id is the last token.
const (
	SubjectMetricsHealth      = "iot.metrics.health"
	SubjectMetricsPerformance = "iot.metrics.performance"
)

// monitor is the runtime's health and metrics plane: one Prometheus registry (never the global one, so two
// runtimes in one process do not collide), the metrics actors update, the HTTP server (http.go) and the goroutine
// that publishes the same figures on the bus. It reads the tree and the NATS connection; it never writes them.
type monitor struct {
	rt       *Runtime
	log      zerolog.Logger
	interval time.Duration

	reg     *prometheus.Registry
	metrics *actors.Metrics

	// The HTTP server, nil when gateway.http_address is "".
	srv    *http.Server
	addr   string        // the bound address
	served chan struct{} // closed when Serve has returned

	ws *wsHub // the /ws endpoint's connections (websocket.go)

	dash          *dashboard.Dashboard // the page at / (dashfeed.go), nil while HTTP is off
	stopFeed, fed chan struct{}        // the dashboard's feed on iot.metrics.tree and .sinks (dashfeed.go)

	stopPublish chan struct{}
	published   chan struct{} // closed when the publisher has returned
}

// monitor returns the runtime's monitor, creating it on first use (by an option in New, or by Start).
func (r *Runtime) monitor() *monitor {
	if r.mon == nil {
		r.mon = &monitor{rt: r, interval: MetricsInterval}
	}
	return r.mon
}

// withMetricsInterval makes the bus reports more frequent for tests.
func withMetricsInterval(d time.Duration) Option {
	return func(r *Runtime) { r.monitor().interval = d }
}

// init builds a fresh registry for one Start: the runtime's collector, the Go and process collectors, and the
// actors' metrics, which must exist before the first actor is built (Runtime.env hands them out).
func (m *monitor) init() {
	m.log = m.rt.log.With().Str("component", "monitor").Logger()
	m.reg = prometheus.NewRegistry()
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newRuntimeCollector(m.rt),
		rulesCollector{rt: m.rt}, // rules_metrics.go
		&sinkCollector{rt: m.rt}, // sinks.go
		uplinkCollector{m.rt},
	)
	m.metrics = actors.NewMetrics(m.reg)
	m.ws = newWSHub(m.reg) // websocket.go
}

// actorMetrics is what Runtime.env hands to actors: nil before Start (the methods are nil-safe).
func (m *monitor) actorMetrics() *actors.Metrics {
	if m == nil {
		return nil
	}
	return m.metrics
}

// start serves HTTP (unless disabled) and starts the publisher, once the tree is up.
func (m *monitor) start() error {
	if err := m.serve(m.rt.cfg.Gateway.HTTPAddress); err != nil {
		return err
	}
	m.stopPublish, m.published = make(chan struct{}), make(chan struct{})
	go m.publishLoop(m.stopPublish, m.published)
	if m.addr != "" { // the feed is the dashboard's: on with the HTTP server
		m.stopFeed, m.fed = make(chan struct{}), make(chan struct{})
		go m.feedLoop(m.stopFeed, m.fed)
	}
	return nil
}

// stop ends the publisher and the HTTP server and waits for both: nothing of the monitor outlives Stop.
func (m *monitor) stop() {
	if m == nil {
		return
	}
	if m.stopPublish != nil {
		close(m.stopPublish)
		<-m.published
		m.stopPublish = nil
	}
	if m.stopFeed != nil {
		close(m.stopFeed)
		<-m.fed
		m.stopFeed = nil
	}
	m.shutdownHTTP()
}

// Gatherer is the runtime's metrics registry (what /metrics serves), nil before Start.
func (r *Runtime) Gatherer() prometheus.Gatherer {
	if r.mon == nil || r.mon.reg == nil {
		return nil
	}
	return r.mon.reg
}

func (m *monitor) publishLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		m.publish()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

func (m *monitor) publish() {
	gw := m.rt.cfg.Gateway.ID
	now := time.Now().UnixNano()
	h := m.rt.healthReport()
	h.Timestamp = now
	p := m.rt.performanceReport()
	p.Timestamp = now
	m.send(SubjectMetricsHealth+"."+gw, h)
	m.send(SubjectMetricsPerformance+"."+gw, p)
}

func (m *monitor) send(subject string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		m.log.Error().Err(err).Str("subject", subject).Msg("cannot encode report")
		return
	}
	// While NATS reconnects, the client buffers this; only a closed connection is an error.
	if err := m.rt.bus.Conn.Publish(subject, data); err != nil {
		m.log.Warn().Err(err).Str("subject", subject).Msg("cannot publish report")
	}
}

// HealthReport is the body of iot.metrics.health.{gateway}: readiness (as /readyz) and a summary.
type HealthReport struct {
	Gateway   string           `json:"gateway"`
	Version   string           `json:"version"`
	Ready     bool             `json:"ready"`
	Failed    []string         `json:"failed,omitempty"` // the checks that failed
	Checks    map[string]Check `json:"checks"`
	Actors    ActorCounts      `json:"actors"`
	NATS      NATSHealth       `json:"nats"`
	Uplink    *UplinkState     `json:"uplink,omitempty"` // the leaf link to the hub, with a leafnode block
	UptimeS   float64          `json:"uptime_s"`
	Timestamp int64            `json:"timestamp"` // Unix ns
}

// ActorCounts counts the actors of the tree by state.
type ActorCounts struct {
	Total        int `json:"total"`
	Running      int `json:"running"`
	Starting     int `json:"starting"`
	Restarting   int `json:"restarting"`
	Disconnected int `json:"disconnected"`
	Failed       int `json:"failed"`
	Stopped      int `json:"stopped"`
}

// NATSHealth is the state of the gateway's NATS connection.
type NATSHealth struct {
	Connected  bool   `json:"connected"`
	Status     string `json:"status"`
	URL        string `json:"url,omitempty"` // the server connected to, password redacted
	Reconnects uint64 `json:"reconnects"`
	Embedded   bool   `json:"embedded"`
}

// PerformanceReport is the body of iot.metrics.performance.{gateway}: per-actor figures and the bus traffic.
type PerformanceReport struct {
	Gateway   string         `json:"gateway"`
	Actors    []ActorFigures `json:"actors"`
	NATS      NATSTraffic    `json:"nats"`
	Timestamp int64          `json:"timestamp"` // Unix ns
}

// ActorFigures are one actor's figures in a performance report.
type ActorFigures struct {
	Path     string        `json:"path"`
	Kind     string        `json:"kind"`
	State    string        `json:"state"`
	Restarts int           `json:"restarts"`
	Mailbox  *MailboxStats `json:"mailbox,omitempty"`
}

// NATSTraffic is the gateway connection's counters since it was opened.
type NATSTraffic struct {
	InMsgs     uint64 `json:"in_msgs"`
	OutMsgs    uint64 `json:"out_msgs"`
	InBytes    uint64 `json:"in_bytes"`
	OutBytes   uint64 `json:"out_bytes"`
	Reconnects uint64 `json:"reconnects"`
}

func (r *Runtime) healthReport() HealthReport {
	rd := r.Readiness()
	h := HealthReport{
		Gateway: r.cfg.Gateway.ID, Version: Version, Ready: rd.Ready, Failed: rd.Failed, Checks: rd.Checks,
		UptimeS: time.Since(r.started).Seconds(),
	}
	for _, n := range flatten(r.tree.Snapshot(), nil) {
		h.Actors.Total++
		switch n.State {
		case StateRunning:
			h.Actors.Running++
		case StateStarting:
			h.Actors.Starting++
		case StateRestarting:
			h.Actors.Restarting++
		case StateDisconnected:
			h.Actors.Disconnected++
		case StateFailed:
			h.Actors.Failed++
		case StateStopped:
			h.Actors.Stopped++
		}
	}
	nc := r.bus.Conn
	h.NATS = NATSHealth{
		Connected: nc.IsConnected(), Status: nc.Status().String(), URL: nc.ConnectedUrlRedacted(),
		Reconnects: nc.Stats().Reconnects, Embedded: r.bus.Server != nil,
	}
	if s, ok := r.bus.Uplink(); ok {
		h.Uplink = &s
	}
	return h
}

func (r *Runtime) performanceReport() PerformanceReport {
	p := PerformanceReport{Gateway: r.cfg.Gateway.ID, Actors: []ActorFigures{}}
	for _, n := range flatten(r.tree.Snapshot(), nil) {
		p.Actors = append(p.Actors, ActorFigures{Path: n.Path, Kind: n.Kind, State: n.State, Restarts: n.Restarts, Mailbox: n.Mailbox})
	}
	st := r.bus.Conn.Stats()
	p.NATS = NATSTraffic{InMsgs: st.InMsgs, OutMsgs: st.OutMsgs, InBytes: st.InBytes, OutBytes: st.OutBytes, Reconnects: st.Reconnects}
	return p
}

// flatten appends n and all its descendants to out, parents first.
func flatten(n *Node, out []*Node) []*Node {
	if n == nil {
		return out
	}
	out = append(out, n)
	for _, c := range n.Children {
		out = flatten(c, out)
	}
	return out
}

// runtimeCollector reads the tree and the NATS connection at scrape time, so a scrape always shows the current
// state and nothing has to be kept in step with the supervisors.
type runtimeCollector struct {
	rt *Runtime
}

var (
	descRestarts  = prometheus.NewDesc("iotgw_actor_restarts_total", "Restarts of an actor by its supervisor.", []string{"actor", "kind"}, nil)
	descUp        = prometheus.NewDesc("iotgw_actor_up", "1 while the actor is running, 0 otherwise (starting, restarting, disconnected, failed, stopped).", []string{"actor", "kind"}, nil)
	descFailed    = prometheus.NewDesc("iotgw_actor_failed", "1 when the actor was stopped for good after too many restarts.", []string{"actor"}, nil)
	descDisc      = prometheus.NewDesc("iotgw_actor_disconnected", "1 while the actor's peer is away: retried at the capped backoff after a peer failure, or its link reported down.", []string{"actor"}, nil)
	descDepth     = prometheus.NewDesc("iotgw_mailbox_depth", "Messages in the actor's subject mailbox now.", []string{"actor"}, nil)
	descCapacity  = prometheus.NewDesc("iotgw_mailbox_capacity", "Capacity of the actor's subject mailbox.", []string{"actor"}, nil)
	descPending   = prometheus.NewDesc("iotgw_mailbox_pending", "Messages waiting in the NATS client buffers of the actor's subscriptions.", []string{"actor"}, nil)
	descDelivered = prometheus.NewDesc("iotgw_mailbox_delivered_total", "Messages delivered into the actor's mailbox.", []string{"actor"}, nil)
	descBlocked   = prometheus.NewDesc("iotgw_mailbox_blocked_total", "Deliveries that waited for room in a full mailbox.", []string{"actor"}, nil)
	descDropped   = prometheus.NewDesc("iotgw_mailbox_dropped_total", "Messages NATS dropped because the subscription's buffers overflowed.", []string{"actor"}, nil)

	descNATSConnected  = prometheus.NewDesc("iotgw_nats_connected", "1 while the gateway's NATS connection is connected.", nil, nil)
	descNATSInMsgs     = prometheus.NewDesc("iotgw_nats_in_msgs_total", "Messages the gateway's NATS connection received.", nil, nil)
	descNATSOutMsgs    = prometheus.NewDesc("iotgw_nats_out_msgs_total", "Messages the gateway's NATS connection sent.", nil, nil)
	descNATSInBytes    = prometheus.NewDesc("iotgw_nats_in_bytes_total", "Bytes the gateway's NATS connection received.", nil, nil)
	descNATSOutBytes   = prometheus.NewDesc("iotgw_nats_out_bytes_total", "Bytes the gateway's NATS connection sent.", nil, nil)
	descNATSReconnects = prometheus.NewDesc("iotgw_nats_reconnects_total", "Reconnections of the gateway's NATS connection.", nil, nil)

	descInfo = prometheus.NewDesc("iotgw_info", "The gateway's id and version; always 1.", []string{"gateway", "version"}, nil)
)

var _ prometheus.Collector = (*runtimeCollector)(nil)

func newRuntimeCollector(rt *Runtime) *runtimeCollector { return &runtimeCollector{rt: rt} }

func (c *runtimeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descRestarts, descUp, descFailed, descDisc, descDepth, descCapacity, descPending, descDelivered, descBlocked, descDropped,
		descNATSConnected, descNATSInMsgs, descNATSOutMsgs, descNATSInBytes, descNATSOutBytes, descNATSReconnects,
		descInfo,
	} {
		ch <- d
	}
}

func (c *runtimeCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descInfo, 1, c.rt.cfg.Gateway.ID, Version)
	for _, n := range flatten(c.rt.tree.Snapshot(), nil) {
		counter(descRestarts, float64(n.Restarts), n.Path, n.Kind)
		gauge(descUp, boolFloat(n.State == StateRunning), n.Path, n.Kind)
		gauge(descFailed, boolFloat(n.State == StateFailed), n.Path)
		gauge(descDisc, boolFloat(n.State == StateDisconnected), n.Path)
		if mb := n.Mailbox; mb != nil {
			gauge(descDepth, float64(mb.Depth), n.Path)
			gauge(descCapacity, float64(mb.Capacity), n.Path)
			gauge(descPending, float64(mb.Pending), n.Path)
			counter(descDelivered, float64(mb.Delivered), n.Path)
			counter(descBlocked, float64(mb.Blocked), n.Path)
			counter(descDropped, float64(mb.Dropped), n.Path)
		}
	}
	var nc *nats.Conn
	if b := c.rt.bus; b != nil {
		nc = b.Conn
	}
	if nc == nil {
		return
	}
	st := nc.Stats()
	gauge(descNATSConnected, boolFloat(nc.IsConnected()))
	counter(descNATSInMsgs, float64(st.InMsgs))
	counter(descNATSOutMsgs, float64(st.OutMsgs))
	counter(descNATSInBytes, float64(st.InBytes))
	counter(descNATSOutBytes, float64(st.OutBytes))
	counter(descNATSReconnects, float64(st.Reconnects))
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
