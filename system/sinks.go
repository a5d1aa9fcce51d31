package system

import (
	"encoding/json"
	"github.com/iotgw/iotgw/actors"
	"sort"
	"strings"
	"time"

	"github.com/iotgw/iotgw/config"
	"github.com/prometheus/client_golang/prometheus"
)

// Control subjects of the sinks.
const (
	SubjectSinksList = "iot.control.sinks.list"
	SubjectSinksGet  = "iot.control.sinks.get"
)

// maxSinkRequest bounds an iot.control.sinks.get request body.
const maxSinkRequest = 4 << 10

// SinkInfo is one sink as iot.control.sinks.* show it: the actor's state and the figures of its durable
// inboxes summed (each inbox in Durable). A sink without a durable inbox (console) has only the actor's part.
type SinkInfo struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	State    string `json:"state"`
	Restarts int    `json:"restarts"`
	// Pending is the lag: messages kept for the sink (in the stream, or its memory buffer) and not yet delivered.
	Pending       uint64 `json:"pending"`
	AckPending    int    `json:"ack_pending"`
	Delivered     uint64 `json:"delivered"`
	Acked         uint64 `json:"acked"`
	Redeliveries  uint64 `json:"redeliveries"`
	DeadLetters   uint64 `json:"dead_letters"`
	Dropped       uint64 `json:"dropped"`
	LastDelivered string `json:"last_delivered,omitempty"` // RFC 3339, the last Ack
	LastError     string `json:"last_error,omitempty"`
	// LastErrorAt is when LastError happened (RFC 3339): it stays shown after the sink recovered, and State says
	// whether it did (running again, not disconnected).
	LastErrorAt string `json:"last_error_at,omitempty"`
	// Held are the messages of Pending its durable inboxes hold back behind one the sink handed back (Nak).
	Held int `json:"held"`
	// Written and Failed are the points the sink's target accepted and the errors it counted (the same series as
	// iotgw_points_out_total and iotgw_errors_total of actor sinks/{name}); Reconnects how often it connected to
	// its target again after the first time (a sink that reports its link: mqtt).
	Written    uint64         `json:"written"`
	Failed     uint64         `json:"failed"`
	Reconnects int            `json:"reconnects"`
	Durable    []DurableStats `json:"durable,omitempty"`
}

// sinkInfos returns every sink, sorted by name; live asks JetStream for each consumer's lag.
func (r *Runtime) sinkInfos(live bool) []SinkInfo {
	type entry struct {
		name string
		e    treeEntry
	}
	var entries []entry
	r.tree.mu.Lock()
	for path, e := range r.tree.nodes {
		name, ok := strings.CutPrefix(path, GroupSinks+"/")
		if !ok || strings.Contains(name, "/") {
			continue
		}
		entries = append(entries, entry{name: name, e: *e})
	}
	r.tree.mu.Unlock()
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	out := make([]SinkInfo, 0, len(entries))
	for _, en := range entries {
		e := en.e
		info := SinkInfo{Name: en.name, Type: strings.TrimPrefix(e.kind, "sink/"), State: e.state, Restarts: e.restarts, LastError: e.lastError,
			Reconnects: max(e.connects-1, 0)}
		if info.State == StateRunning && e.link == actors.LinkDisconnected {
			info.State = StateDisconnected // a sink whose target is down (Env.Link), as the tree shows it
		}
		if e.lastError != "" && !e.errorAt.IsZero() {
			info.LastErrorAt = e.errorAt.UTC().Format(time.RFC3339Nano)
		}
		if r.mon != nil {
			info.Written, info.Failed = r.mon.metrics.PointsOutOf(GroupSinks+"/"+en.name), r.mon.metrics.ErrorsOf(GroupSinks+"/"+en.name)
		}
		if mb := e.mailbox; mb != nil {
			for _, d := range mb.durables {
				st := d.stats(live)
				info.Durable = append(info.Durable, st)
				info.Pending += st.Pending
				info.AckPending += st.AckPending
				info.Delivered += st.Delivered
				info.Acked += st.Acked
				info.Redeliveries += st.Redelivered
				info.DeadLetters += st.DeadLetters
				info.Dropped += st.Dropped
				if st.LastDelivered > info.LastDelivered {
					info.LastDelivered = st.LastDelivered
				}
				info.Held += st.Held
				if info.LastError == "" {
					info.LastError, info.LastErrorAt = st.LastError, st.LastErrorAt
				}
			}
		}
		out = append(out, info)
	}
	return out
}

func (r *Runtime) listSinks() ControlReply {
	return ControlReply{OK: true, Sinks: r.sinkInfos(true)}
}

// getSink reads {"name":"…"} and returns that sink.
func (r *Runtime) getSink(body []byte) ControlReply {
	if len(body) > maxSinkRequest {
		return failure("request of %d bytes: at most %d", len(body), maxSinkRequest)
	}
	var req struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return failure(`request is not {"name":"…"}: %v`, err)
	}
	if req.Name == "" {
		return failure(`request lacks "name", the name of a sink block (see iot.control.sinks.list)`)
	}
	if err := config.ValidToken(req.Name); err != nil {
		return failure("sink name: %v", err)
	}
	for _, s := range r.sinkInfos(true) {
		if s.Name == req.Name {
			return ControlReply{OK: true, Sink: &s}
		}
	}
	return failure("no sink %q (see iot.control.sinks.list)", req.Name)
}

// sinkCollector puts the sinks' figures into /metrics at scrape time (the lag live from JetStream).
type sinkCollector struct{ rt *Runtime }

var (
	descSinkPending    = prometheus.NewDesc("iotgw_sink_pending", "Messages kept for a sink and not yet delivered to it (its lag).", []string{"sink"}, nil)
	descSinkAckPending = prometheus.NewDesc("iotgw_sink_ack_pending", "Messages delivered to a sink and not yet acknowledged.", []string{"sink"}, nil)
	descSinkDelivered  = prometheus.NewDesc("iotgw_sink_delivered_total", "Deliveries to a sink's durable inboxes.", []string{"sink"}, nil)
	descSinkAcked      = prometheus.NewDesc("iotgw_sink_acked_total", "Messages a sink acknowledged (its target accepted them).", []string{"sink"}, nil)
	descSinkRedeliv    = prometheus.NewDesc("iotgw_sink_redeliveries_total", "Deliveries to a sink that were not the first of their message.", []string{"sink"}, nil)
	descSinkDead       = prometheus.NewDesc("iotgw_sink_dead_letters_total", "Messages a sink's inboxes sent to the dead letters.", []string{"sink"}, nil)
	descSinkDropped    = prometheus.NewDesc("iotgw_sink_dropped_total", "Messages a sink's memory buffer dropped (JetStream off).", []string{"sink"}, nil)
	descSinkReconnects = prometheus.NewDesc("iotgw_sink_reconnects_total", "Times a sink connected to its target again after the first.", []string{"sink"}, nil)
	descSinkLast       = prometheus.NewDesc("iotgw_sink_last_delivered_timestamp_seconds", "When a sink last acknowledged a message (Unix seconds; 0 never).", []string{"sink"}, nil)
	descPublisherQueue = prometheus.NewDesc("iotgw_nats_publish_unconfirmed", "Messages published to an external server and not yet confirmed by it (client mode).", nil, nil)
	descPublisherRepl  = prometheus.NewDesc("iotgw_nats_publish_replayed_total", "Messages published again after a disconnect because the server had not confirmed them (client mode).", nil, nil)
	descPublisherDrop  = prometheus.NewDesc("iotgw_nats_publish_dropped_total", "Publishes refused because the unconfirmed queue was full (client mode).", nil, nil)
)

var _ prometheus.Collector = (*sinkCollector)(nil)

func (c *sinkCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSinkPending, descSinkAckPending, descSinkDelivered, descSinkAcked, descSinkRedeliv,
		descSinkDead, descSinkDropped, descSinkLast, descSinkReconnects, descPublisherQueue, descPublisherRepl, descPublisherDrop} {
		ch <- d
	}
	describeStreams(ch)
}

func (c *sinkCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	for _, s := range c.rt.sinkInfos(true) {
		if s.Reconnects > 0 {
			counter(descSinkReconnects, float64(s.Reconnects), s.Name)
		}
		if len(s.Durable) == 0 {
			continue
		}
		gauge(descSinkPending, float64(s.Pending), s.Name)
		gauge(descSinkAckPending, float64(s.AckPending), s.Name)
		counter(descSinkDelivered, float64(s.Delivered), s.Name)
		counter(descSinkAcked, float64(s.Acked), s.Name)
		counter(descSinkRedeliv, float64(s.Redeliveries), s.Name)
		counter(descSinkDead, float64(s.DeadLetters), s.Name)
		counter(descSinkDropped, float64(s.Dropped), s.Name)
		gauge(descSinkLast, rfc3339Seconds(s.LastDelivered), s.Name)
	}
	if b := c.rt.bus; b != nil {
		if p := b.confirmed.Load(); p != nil {
			gauge(descPublisherQueue, float64(p.depth()))
			counter(descPublisherRepl, float64(p.replays.Load()))
			counter(descPublisherDrop, float64(p.drops.Load()))
		}
	}
	c.rt.collectStreams(gauge, counter)
}

func rfc3339Seconds(s string) float64 {
	if s == "" {
		return 0
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
