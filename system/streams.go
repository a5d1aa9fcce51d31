package system

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// What the streams' limits discard is counted and reported, never silent (DESIGN.md). JetStream removes the
// oldest messages of a stream with discard "old" when max_bytes or max_age is reached, and says nothing: no
// advisory, no counter. A stream with the limits retention policy loses messages from its front only that way (or
// by an operator's purge), so the messages before its first sequence are what its limits discarded: the watcher
// reads every gateway stream's state every StreamWatchInterval, counts the growth of FirstSeq-1, and publishes it on
// iot.errors.jetstream.discarded. With discard "new" nothing is removed: the publishes are refused instead, and
// the processing stage counts those (iot.errors.processor.store).

// SubjectErrorDiscarded reports what a stream's limits discarded since the last report (DiscardEvent).
const SubjectErrorDiscarded = "iot.errors.jetstream.discarded"

// StreamWatchInterval is how often the streams' states are read.
const StreamWatchInterval = 5 * time.Second

// DiscardEvent is published on iot.errors.jetstream.discarded.
type DiscardEvent struct {
	Stream    string `json:"stream"`
	Discarded uint64 `json:"discarded"` // since the last event
	Total     uint64 `json:"total"`     // since the stream was created
	FirstSeq  uint64 `json:"first_seq"`
	Bytes     uint64 `json:"bytes"`
	MaxBytes  int64  `json:"max_bytes"`
	MaxAge    string `json:"max_age"`
	Timestamp int64  `json:"timestamp"`
}

// gatewayStream says whether the watcher counts a stream: IOT_DATA, the dead letters, and the JetStream sinks'
// streams (whose description starts with "iotgw"). Other streams on a shared server are not the gateway's.
func gatewayStream(cfg jetstream.StreamConfig) bool {
	return cfg.Name == StreamName || cfg.Name == DeadLetterStream || strings.HasPrefix(cfg.Description, "iotgw")
}

// streamWatch is the watcher's state.
type streamWatch struct {
	mu     sync.Mutex
	states map[string]streamState
	stop   chan struct{}
	done   chan struct{}
}

type streamState struct {
	discarded uint64
	msgs      uint64
	bytes     uint64
	maxBytes  int64
}

// startStreamWatch starts the watcher once JetStream is there; Stop stops it.
func (r *Runtime) startStreamWatch() {
	if !r.cfg.NATS.JetStream.Enabled {
		return
	}
	w := &streamWatch{states: map[string]streamState{}, stop: make(chan struct{}), done: make(chan struct{})}
	r.streams = w
	interval := r.streamWatchInterval
	if interval <= 0 {
		interval = StreamWatchInterval
	}
	go func() {
		defer close(w.done)
		select {
		case <-r.bus.JetStreamReady():
		case <-w.stop:
			return
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			r.watchStreams(w)
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
}

func (r *Runtime) stopStreamWatch() {
	if w := r.streams; w != nil {
		close(w.stop)
		select {
		case <-w.done:
		case <-time.After(2 * time.Second):
			r.log.Warn().Msg("stream watcher did not stop in time")
		}
	}
}

func (r *Runtime) watchStreams(w *streamWatch) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list := r.bus.JS.ListStreams(ctx)
	for info := range list.Info() {
		if !gatewayStream(info.Config) {
			continue
		}
		total := uint64(0)
		if info.State.FirstSeq > 1 {
			total = info.State.FirstSeq - 1
		}
		w.mu.Lock()
		prev, seen := w.states[info.Config.Name]
		w.states[info.Config.Name] = streamState{discarded: total, msgs: info.State.Msgs, bytes: info.State.Bytes, maxBytes: info.Config.MaxBytes}
		w.mu.Unlock()
		if total <= prev.discarded {
			continue
		}
		delta := total - prev.discarded
		ev := r.log.Warn()
		if !seen {
			ev = r.log.Info() // discarded before this start: reported once, as the total
		}
		ev.Str("stream", info.Config.Name).Uint64("discarded", delta).Uint64("total", total).
			Stringer("max_age", info.Config.MaxAge).Int64("max_bytes", info.Config.MaxBytes).
			Msg("the stream's limits discarded its oldest messages")
		data, err := marshalJSON(DiscardEvent{Stream: info.Config.Name, Discarded: delta, Total: total, FirstSeq: info.State.FirstSeq,
			Bytes: info.State.Bytes, MaxBytes: info.Config.MaxBytes, MaxAge: info.Config.MaxAge.String(), Timestamp: time.Now().UnixNano()})
		if err == nil {
			err = r.bus.Conn.Publish(SubjectErrorDiscarded, data)
		}
		if err != nil {
			r.log.Debug().Err(err).Msg("cannot publish discard event")
		}
	}
	if err := list.Err(); err != nil {
		r.log.Debug().Err(err).Msg("stream watch")
	}
}

var (
	descStreamDiscarded = prometheus.NewDesc("iotgw_stream_discarded_total", "Messages a gateway stream's limits (max_bytes, max_age) discarded since it was created.", []string{"stream"}, nil)
	descStreamMsgs      = prometheus.NewDesc("iotgw_stream_messages", "Messages in a gateway stream.", []string{"stream"}, nil)
	descStreamBytes     = prometheus.NewDesc("iotgw_stream_bytes", "Bytes in a gateway stream.", []string{"stream"}, nil)
	descStreamMaxBytes  = prometheus.NewDesc("iotgw_stream_max_bytes", "A gateway stream's max_bytes limit.", []string{"stream"}, nil)
)

func describeStreams(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStreamDiscarded, descStreamMsgs, descStreamBytes, descStreamMaxBytes} {
		ch <- d
	}
}

// collectStreams reports the watcher's last reading (no request at scrape time).
func (r *Runtime) collectStreams(gauge, counter func(d *prometheus.Desc, v float64, labels ...string)) {
	w := r.streams
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, st := range w.states {
		counter(descStreamDiscarded, float64(st.discarded), name)
		gauge(descStreamMsgs, float64(st.msgs), name)
		gauge(descStreamBytes, float64(st.bytes), name)
		gauge(descStreamMaxBytes, float64(st.maxBytes), name)
	}
}

// withStreamWatchInterval makes the stream watcher read more often, for tests.
func withStreamWatchInterval(d time.Duration) Option {
	return func(r *Runtime) { r.streamWatchInterval = d }
}
