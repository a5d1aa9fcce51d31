package system

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	wsfilter "github.com/iotgw/iotgw/actors/sink/websocket"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// The WebSocket endpoint: GET /ws?subject=iot.alerts.>&subject=… streams what is published on the subjects, each
// message a text frame {"subject":…,"data":…}, to a browser. It is a live view: core subscriptions on the
// gateway's connection, no durable consumer, so a client sees what is published while it is connected.
//
// It is behind the same authorization as the rest of HTTP (http.token, required beyond loopback), and a filter
// must lie within the subjects every non-admin NATS user may read (dataSubjects): never the control plane,
// JetStream's API, the system account, an inbox or iot.raw (wsfilter.CheckFilter). The library is
// github.com/coder/websocket: context-aware reads and writes (a write that cannot finish in wsWriteTimeout
// ends the connection), close codes with reasons, origin checks by default and a maintained, dependency-free
// module; gorilla/websocket would need deadlines set by hand around every write.
//
// A client never slows the gateway: each connection has a bounded queue filled by the subscription's callback
// without blocking; when the queue is full (the browser does not read fast enough) the connection is closed with
// 1008 and the reason "slow consumer". Connections are bounded (wsMaxConns); past it the upgrade is refused
// with 503. How the best do it: nats-server's own WebSocket listener and Centrifugo both close a client whose
// outbound buffer passes a limit instead of blocking the publisher; this follows them, and departs from
// Grafana Live in not coalescing messages (a dropped client reconnects and continues live).
const (
	wsMaxConns     = 64
	wsQueue        = 4096    // messages per connection
	wsQueueBytes   = 4 << 20 // and their bodies' bytes: 64 connections hold at most 256 MiB
	wsWriteTimeout = 10 * time.Second
	wsPing         = 30 * time.Second // a ping keeps proxies from closing an idle stream, and finds dead peers
)

// CloseReasonSlow is the close reason of a client that did not keep up.
const CloseReasonSlow = "slow consumer: the client did not read fast enough"

type wsHub struct {
	conns   atomic.Int64
	dropped prometheus.Counter
	open    prometheus.GaugeFunc
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

func newWSHub(reg prometheus.Registerer) *wsHub {
	h := &wsHub{stop: make(chan struct{})}
	h.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "iotgw_websocket_dropped_total",
		Help: "WebSocket clients closed because they did not read fast enough."})
	h.open = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "iotgw_websocket_connections",
		Help: "Open WebSocket connections on /ws."}, func() float64 { return float64(h.conns.Load()) })
	if reg != nil {
		reg.MustRegister(h.dropped, h.open)
	}
	return h
}

// shutdown closes every connection (1001 going away) and waits for their handlers, at most a second.
func (h *wsHub) shutdown() {
	h.once.Do(func() { close(h.stop) })
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}

// serveWS is GET /ws.
func (m *monitor) serveWS(w http.ResponseWriter, r *http.Request) {
	h := m.ws
	filters := r.URL.Query()["subject"]
	if len(filters) == 0 || len(filters) > wsfilter.MaxFilters {
		http.Error(w, fmt.Sprintf("give 1 to %d subject parameters: /ws?subject=iot.alerts.>", wsfilter.MaxFilters), http.StatusBadRequest)
		return
	}
	for _, f := range filters {
		if err := wsfilter.CheckFilter(f, dataSubjects); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
	}
	nc := m.rt.bus
	if nc == nil || nc.Conn == nil {
		http.Error(w, "the bus is not connected", http.StatusServiceUnavailable)
		return
	}
	select {
	case <-h.stop:
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	default:
	}
	if h.conns.Add(1) > wsMaxConns {
		h.conns.Add(-1)
		http.Error(w, fmt.Sprintf("at most %d WebSocket connections", wsMaxConns), http.StatusServiceUnavailable)
		return
	}
	h.wg.Add(1)
	defer h.wg.Done()
	defer h.conns.Add(-1)
	// The server's read and write timeouts are for requests; a stream lives longer. Cleared before the hijack,
	// they stay cleared on the connection (net/http leaves the deadlines of a hijacked conn to its new owner).
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	// Subscribed before the upgrade, and flushed: when the client sees the stream open, the server has the
	// interest, so a view the client reads after that (the dashboard reads its views on open) misses no event
	// published in between.
	st := &wsStream{queue: make(chan *nats.Msg, wsQueue), overflow: make(chan struct{})}
	defer st.unsubscribe()
	if err := st.subscribe(nc.Conn, filters); err != nil {
		http.Error(w, "subscribe: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	c, err := websocket.Accept(w, r, nil) // the default checks Origin against Host: no cross-site pages
	if err != nil {
		return // Accept has answered
	}
	defer c.CloseNow()
	m.streamWS(r.Context(), c, st, filters)
}

// wsStream is one connection's subscriptions and the bounded queue their callbacks fill.
type wsStream struct {
	queue        chan *nats.Msg
	slow         atomic.Bool
	queued       atomic.Int64 // bytes in queue
	overflow     chan struct{}
	overflowOnce sync.Once
	subs         []*nats.Subscription
}

func (st *wsStream) subscribe(nc *nats.Conn, filters []string) error {
	for _, f := range filters {
		s, err := nc.Subscribe(f, st.enqueue)
		if err != nil {
			return err
		}
		st.subs = append(st.subs, s)
	}
	return nc.FlushTimeout(5 * time.Second)
}

func (st *wsStream) enqueue(msg *nats.Msg) {
	if st.slow.Load() {
		return
	}
	if st.queued.Add(int64(len(msg.Data))) > wsQueueBytes {
		st.tooSlow()
		return
	}
	select {
	case st.queue <- msg:
	default: // never block the bus: the client is dropped instead
		st.tooSlow()
	}
}

func (st *wsStream) tooSlow() {
	st.slow.Store(true)
	st.overflowOnce.Do(func() { close(st.overflow) })
}

func (st *wsStream) unsubscribe() {
	for _, s := range st.subs {
		_ = s.Unsubscribe()
	}
}

// streamWS forwards the subscriptions' messages until the client goes, the gateway stops, or the client falls
// behind.
func (m *monitor) streamWS(reqCtx context.Context, c *websocket.Conn, st *wsStream, filters []string) {
	h := m.ws
	ctx := c.CloseRead(reqCtx) // the client sends nothing; a data frame from it closes the connection
	ping := time.NewTicker(wsPing)
	defer ping.Stop()
	var frame []byte
	write := func(b []byte) error {
		wctx, cancel := context.WithTimeout(ctx, wsWriteTimeout)
		defer cancel()
		return c.Write(wctx, websocket.MessageText, b)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.stop:
			_ = c.Close(websocket.StatusGoingAway, "the gateway is stopping")
			return
		case <-st.overflow:
			h.dropped.Inc()
			m.log.Warn().Strs("subjects", filters).Msg("websocket: client dropped: " + CloseReasonSlow)
			_ = c.Close(websocket.StatusPolicyViolation, CloseReasonSlow)
			return
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, wsWriteTimeout)
			err := c.Ping(pctx)
			cancel()
			if err != nil {
				return
			}
		case msg := <-st.queue:
			st.queued.Add(-int64(len(msg.Data)))
			frame = wsfilter.AppendFrame(frame[:0], msg.Subject, msg.Data)
			if err := write(frame); err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					h.dropped.Inc()
					m.log.Warn().Strs("subjects", filters).Msg("websocket: client dropped: a write took longer than " + wsWriteTimeout.String())
				}
				return
			}
		}
	}
}
