package system

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/system/dashboard"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// The HTTP server's limits. Probes and scrapes are small requests on a trusted network, but a plant network is
// not a reason to let one slow or stuck client hold a connection forever.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpReadTimeout       = 10 * time.Second
	httpWriteTimeout      = 30 * time.Second // a scrape of a large tree, on a slow link
	httpIdleTimeout       = 60 * time.Second
	httpMaxHeaderBytes    = 64 << 10
	httpShutdownTimeout   = time.Second // then open connections are closed outright
	metricsScrapeTimeout  = 10 * time.Second
	metricsMaxInFlight    = 4
)

// readyGroups are the supervisors that must be running for the gateway to be ready, besides the NATS connection.
var readyGroups = []string{rootPath, GroupEndpoints, GroupDevices, GroupSidecars, GroupRules, GroupSinks}

// stageGroups hold the stages every point passes on its way out: the rules (the processor at least) and the
// sinks. Each of their actors is a readiness check of its own, named by its path.
var stageGroups = []string{GroupRules, GroupSinks}

// CheckNATS is the name of the NATS connection's readiness check; the others are named by the supervisor's path.
const CheckNATS = "nats"

// Check is one readiness check.
type Check struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"` // why it failed, or the state it saw
}

// Readiness is what /readyz answers and iot.metrics.health carries.
type Readiness struct {
	Ready  bool             `json:"ready"`
	Failed []string         `json:"failed,omitempty"` // names of the failed checks, in check order
	Checks map[string]Check `json:"checks"`
}

// maxNamed bounds the actors a check detail names.
const maxNamed = 5

// Readiness says whether the gateway can do its work: its NATS connection is connected, the root and the group
// supervisors are running, and so is every stage data must pass: the processor (and any rule) and every
// sink. A stopped or failed stage means nothing gets through, so the gateway is not ready until it runs again
// (iot.control.actors.restart, or a reload). A disconnected stage (a sink whose target is away, retrying) counts
// as running: it is alive and retrying, and the check's detail says it.
//
// A device or a sidecar that failed for good, or whose peer is away, does not make the gateway unready: the rest
// of it still works. A failed one shows in the tree and iotgw_actor_failed, a disconnected one in
// iotgw_actor_disconnected and in the detail of its group's check ("running; disconnected: devices/plc-1 (…)").
func (r *Runtime) Readiness() Readiness {
	rd := Readiness{Ready: true, Checks: make(map[string]Check, 1+len(readyGroups)+2)}
	add := func(name string, c Check) {
		rd.Checks[name] = c
		if !c.OK {
			rd.Ready = false
			rd.Failed = append(rd.Failed, name)
		}
	}
	switch {
	case r.bus == nil || r.bus.Conn == nil:
		add(CheckNATS, Check{Detail: "not started"})
	case !r.bus.Conn.IsConnected():
		add(CheckNATS, Check{Detail: "not connected: " + r.bus.Conn.Status().String()})
	default:
		add(CheckNATS, Check{OK: true, Detail: "connected to " + r.bus.Conn.ConnectedUrlRedacted()})
	}
	if r.bus != nil && r.bus.uplink != nil {
		add(CheckUplink, r.bus.uplink.check()) // never fails: see CheckUplink
	}
	nodes := flatten(r.tree.Snapshot(), nil)
	byPath := make(map[string]*Node, len(nodes))
	disconnected := map[string][]string{} // group → "path (last error)"
	for _, n := range nodes {
		byPath[n.Path] = n
		if g, _, ok := strings.Cut(n.Path, "/"); ok && n.State == StateDisconnected {
			d := n.Path
			if n.LastError != "" {
				d += " (" + n.LastError + ")"
			}
			disconnected[g] = append(disconnected[g], d)
		}
	}
	for _, path := range readyGroups {
		n, ok := byPath[path]
		switch {
		case !ok:
			add(path, Check{Detail: "supervisor not in the tree"})
		case n.State != StateRunning:
			add(path, Check{Detail: "supervisor " + n.State})
		default:
			add(path, Check{OK: true, Detail: n.State + disconnectedDetail(disconnected[path])})
		}
	}
	for _, g := range stageGroups {
		for _, n := range nodes {
			if parent, _, ok := strings.Cut(n.Path, "/"); !ok || parent != g || strings.Count(n.Path, "/") != 1 {
				continue
			}
			switch n.State {
			case StateRunning:
				add(n.Path, Check{OK: true, Detail: n.State})
			case StateDisconnected:
				add(n.Path, Check{OK: true, Detail: n.State + ": " + n.LastError})
			default:
				c := Check{Detail: n.State + ": nothing passes this stage"}
				if n.LastError != "" {
					c.Detail += " (last error: " + n.LastError + ")"
				}
				add(n.Path, c)
			}
		}
	}
	return rd
}

func disconnectedDetail(paths []string) string {
	if len(paths) == 0 {
		return ""
	}
	n, more := len(paths), ""
	if n > maxNamed {
		more = fmt.Sprintf(" and %d more", n-maxNamed)
		paths = paths[:maxNamed]
	}
	return fmt.Sprintf("; %d disconnected: %s%s", n, strings.Join(paths, ", "), more)
}

// HTTPAddr is the address the HTTP server is bound to ("127.0.0.1:43567"), "" when it is disabled or not running.
func (r *Runtime) HTTPAddr() string {
	if r.mon == nil {
		return ""
	}
	return r.mon.addr
}

func (m *monitor) handler() http.Handler {
	mux := http.NewServeMux()
	// GET patterns also answer HEAD; other methods get 405 and unknown paths 404 from the mux.
	// The dashboard at / (a browser; the text index for curl and at /index.txt), its sign-in and API (dashfeed.go).
	m.dash.Mount(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		rd := m.rt.Readiness()
		body, err := json.Marshal(rd)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !rd.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write(append(body, '\n'))
	})
	// Points pushed by devices declared with driver = "http" and mode = "push" (push.go).
	mux.HandleFunc("POST "+PushPathPrefix+"{device}", m.push)
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            m.stdLogger(),
		ErrorHandling:       promhttp.ContinueOnError, // a partial scrape beats none
		Registry:            m.reg,                    // counts promhttp's own errors
		MaxRequestsInFlight: metricsMaxInFlight,
		Timeout:             metricsScrapeTimeout,
	})))
	mux.HandleFunc("GET /ws", m.serveWS) // websocket.go
	return mux
}

// probePaths answer a client on loopback without a token, the way Prometheus and local health checks expect.
var probePaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// authorize requires Authorization: Bearer {token} when a token is configured, except for the probe paths asked
// from loopback. Without a token it lets everything through (config allows that on loopback only, or with
// insecure = true).
func (m *monitor) authorize(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if probePaths[r.URL.Path] && loopbackPeer(r.RemoteAddr) {
			next.ServeHTTP(w, r)
			return
		}
		// The page and its sign-in are public; a signed-in browser (which cannot set Authorization on a
		// WebSocket) is let through to /ws and the dashboard's API on its session cookie; the API checks the
		// user's role. Everything else (push, /metrics) still wants the token.
		if m.dash != nil && (dashboard.Public(r) || (dashboard.SessionPath(r.URL.Path) && m.dash.HasSession(r))) {
			next.ServeHTTP(w, r)
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="iotgw"`)
			http.Error(w, "401 unauthorized: send Authorization: Bearer {http.token}", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func loopbackPeer(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// stdLogger routes what net/http and promhttp log (accept errors, failed scrapes) into zerolog as warnings.
func (m *monitor) stdLogger() *stdlog.Logger {
	return stdlog.New(warnWriter{m.log.With().Str("component", "http").Logger()}, "", 0)
}

type warnWriter struct{ log zerolog.Logger }

func (w warnWriter) Write(p []byte) (int, error) {
	w.log.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// serve binds addr and serves in a goroutine; "" disables the server. A bind failure (the port is in use) is
// returned, naming the address, so the gateway does not start half-observable.
func (m *monitor) serve(addr string) error {
	m.addr = ""
	if addr == "" {
		m.log.Info().Msg("HTTP server disabled (gateway.http_address is empty)")
		return nil
	}
	hc := m.rt.cfg.HTTP
	var tlsConfig *tls.Config
	if hc.TLS != nil {
		cert, err := tls.LoadX509KeyPair(hc.TLS.Cert, hc.TLS.Key)
		if err != nil {
			return fmt.Errorf("http server tls: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http server on %s: %w", addr, err)
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	if missing := config.HTTPExposure(m.rt.cfg.Gateway, hc); missing != "" {
		// config refuses this unless the operator wrote http { insecure = true }: say it at every start.
		m.log.Warn().Str("address", addr).Str("missing", missing).Msg("INSECURE: the HTTP server listens beyond loopback without " + missing + " (http { insecure = true })")
	}
	m.addr = ln.Addr().String()
	m.dash = m.dashboard()
	m.srv = &http.Server{
		Handler:           m.authorize(hc.Token, m.handler()),
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		ErrorLog:          m.stdLogger(),
	}
	m.served = make(chan struct{})
	go func(srv *http.Server, done chan<- struct{}) {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error().Err(err).Str("address", m.addr).Msg("HTTP server stopped")
		}
	}(m.srv, m.served)
	m.log.Info().Str("address", m.addr).Bool("tls", tlsConfig != nil).Bool("token", hc.Token != "").Msg("HTTP server listening (/healthz, /readyz, /metrics)")
	return nil
}

// shutdownHTTP stops accepting, lets requests in flight finish for a moment, then closes what is left, and
// waits for the serving goroutine.
func (m *monitor) shutdownHTTP() {
	if m.srv == nil {
		return
	}
	m.ws.shutdown() // Shutdown does not track hijacked connections: the streams are closed first
	ctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		m.log.Warn().Err(err).Msg("HTTP server did not shut down gracefully; closing its connections")
		_ = m.srv.Close()
	}
	<-m.served
	m.srv, m.addr = nil, ""
}
