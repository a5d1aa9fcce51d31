package isp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgw/iotgw/internal/backoff"
)

// ServerHandler is what a sidecar does with the gateway's requests. Its methods are called from each
// connection's reader goroutine, so two gateways connected at once call them concurrently. ctx is cancelled
// when the Server stops; Stop waits for the calls in progress, so they must return when it is.
type ServerHandler interface {
	// Configure applies a validated config. An error is sent back as success:false with its message.
	Configure(ctx context.Context, cfg ConfigPayload) error
	// Status returns the sidecar's state. A JSON object's members are sent beside "success":true (so they must
	// not be called success or error); any other value is sent as "data".
	Status(ctx context.Context) any
}

// ServerConfig configures a Server. Zero fields take the defaults.
type ServerConfig struct {
	Address           string        // listen address; default 127.0.0.1:50052 (loopback: the gateway runs beside the sidecar)
	MaxLineSize       int           // default 1 MiB
	HeartbeatInterval time.Duration // default 15s; a client silent for DefaultMaxMissedHeartbeats intervals is dropped
	Name              string        // the sidecar's name, sent as "name" in STATUS replies when set
	// OnError, when set, is told of the failures the server survives (a panic in its accept loop), which are
	// otherwise only counted in Metrics().Errors. It is called from the server's goroutines.
	OnError func(err error)
}

// ErrAcceptPanic wraps a panic recovered in the accept loop.
var ErrAcceptPanic = errors.New("isp: panic in the accept loop")

// The accept loop runs again after a panic, after acceptPanicPause, so that one bad connection does not stop the
// sidecar accepting for good; maxAcceptPanics panics in a row, with no connection accepted in between, end it.
const (
	maxAcceptPanics  = 10
	acceptPanicPause = 100 * time.Millisecond
)

// ServerMetrics are a Server's counters.
type ServerMetrics struct {
	MessagesReceived int64
	MessagesSent     int64
	PointsSent       int64
	Errors           int64 // bad lines, rejected requests, failed writes
	Connections      int64 // connected now
	ConnectionsTotal int64 // accepted since Start
	LastDataTime     time.Time
}

// A Server is the sidecar's end of ISP: it accepts gateways (several at once), answers CONFIG, STATUS and
// HEARTBEAT, sends heartbeats, and broadcasts DATA and METRICS to every connected gateway.
//
// Broadcasts write to the clients one after the other from the caller's goroutine: a client that stops
// reading blocks the broadcast for at most DefaultWriteTimeout, and is then disconnected.
type Server struct {
	cfg ServerConfig
	h   ServerHandler

	mu      sync.Mutex
	ln      net.Listener
	conns   map[*serverConn]struct{}
	started bool
	closing bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	wrapListener func(net.Listener) net.Listener // tests: a listener that misbehaves

	bmu     sync.Mutex // serializes broadcasts, guarding frame and targets
	frame   []byte
	targets []*serverConn

	received, sent, pointsSent, errors, connections, connectionsTotal, lastData atomic.Int64
}

type serverConn struct {
	conn net.Conn
	w    *LineWriter
}

// NewServer returns a Server that has not started listening.
func NewServer(cfg ServerConfig, h ServerHandler) *Server {
	if cfg.Address == "" {
		cfg.Address = DefaultServerAddress
	}
	if cfg.MaxLineSize <= 0 {
		cfg.MaxLineSize = DefaultMaxLineSize
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	return &Server{cfg: cfg, h: h, conns: make(map[*serverConn]struct{})}
}

// Start listens on the configured address and accepts gateways in a goroutine. Cancelling ctx shuts the
// server down as Stop does (call Stop to wait for it).
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errStarted
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Address)
	if err != nil {
		return fmt.Errorf("isp: listen on %s: %w", s.cfg.Address, err)
	}
	if s.wrapListener != nil {
		ln = s.wrapListener(ln)
	}
	s.ln, s.started = ln, true
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(3)
	go s.watch()
	go s.accept()
	go s.heartbeat()
	return nil
}

// Stop closes the listener and every connection and waits for all the server's goroutines.
func (s *Server) Stop() error {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	return nil
}

// Addr returns the address the server listens on (useful with port 0), or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Metrics returns the server's counters.
func (s *Server) Metrics() ServerMetrics {
	m := ServerMetrics{
		MessagesReceived: s.received.Load(),
		MessagesSent:     s.sent.Load(),
		PointsSent:       s.pointsSent.Load(),
		Errors:           s.errors.Load(),
		Connections:      s.connections.Load(),
		ConnectionsTotal: s.connectionsTotal.Load(),
	}
	if ns := s.lastData.Load(); ns != 0 {
		m.LastDataTime = time.Unix(0, ns)
	}
	return m
}

// BroadcastData sends one DATA message holding points to every connected gateway; with none connected it does
// nothing. Keep frames to about 100 points. The frame is encoded once, without reflection. A client whose
// write fails is disconnected, and the errors are returned joined.
func (s *Server) BroadcastData(points []Point) error {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	s.frame = appendDataFrame(s.frame[:0], points, time.Now().UnixNano())
	n, err := s.broadcastLocked(s.frame)
	if n > 0 {
		s.pointsSent.Add(int64(n * len(points)))
		s.lastData.Store(time.Now().UnixNano())
	}
	return err
}

// SendMetrics sends a METRICS message to every connected gateway.
func (s *Server) SendMetrics(m MetricsPayload) error {
	payload, err := json.Marshal(&m)
	if err != nil {
		return fmt.Errorf("isp: encode metrics: %w", err)
	}
	s.bmu.Lock()
	defer s.bmu.Unlock()
	s.frame = appendMessage(s.frame[:0], TypeMetrics, "", time.Now().UnixNano(), payload)
	_, err = s.broadcastLocked(s.frame)
	return err
}

// broadcastLocked writes line to every client and returns how many took it. s.bmu is held.
func (s *Server) broadcastLocked(line []byte) (int, error) {
	s.mu.Lock()
	s.targets = s.targets[:0]
	for c := range s.conns {
		s.targets = append(s.targets, c)
	}
	s.mu.Unlock()
	var errs []error
	n := 0
	for i, c := range s.targets {
		if err := c.w.writeLine(line); err != nil {
			s.errors.Add(1)
			_ = c.conn.Close() // its reader sees this and removes it
			errs = append(errs, fmt.Errorf("isp: write to gateway %s: %w", c.conn.RemoteAddr(), err))
		} else {
			n++
		}
		s.targets[i] = nil
	}
	s.sent.Add(int64(n))
	return n, errors.Join(errs...)
}

// watch closes the listener and every connection when the server's context ends (Stop or Start's ctx).
func (s *Server) watch() {
	defer s.wg.Done()
	<-s.ctx.Done()
	s.mu.Lock()
	s.closing = true
	_ = s.ln.Close()
	for c := range s.conns {
		_ = c.conn.Close()
	}
	s.mu.Unlock()
}

// accept runs acceptLoop until the server stops, again after each panic, bounded by maxAcceptPanics in a row.
func (s *Server) accept() {
	defer s.wg.Done()
	for panics := 0; ; {
		accepted, err := s.acceptLoop()
		if err == nil {
			return // stopped
		}
		if accepted {
			panics = 0
		}
		panics++
		s.errors.Add(1)
		if panics >= maxAcceptPanics {
			s.reportError(fmt.Errorf("%w, %d times in a row: no longer accepting gateways: %w", ErrAcceptPanic, panics, err))
			return
		}
		s.reportError(err)
		select {
		case <-time.After(acceptPanicPause):
		case <-s.ctx.Done():
			return
		}
	}
}

func (s *Server) reportError(err error) {
	if s.cfg.OnError != nil {
		s.cfg.OnError(err)
	}
}

// acceptLoop accepts gateways until the server stops (nil) or a panic, returned as an error wrapping
// ErrAcceptPanic. accepted says whether it accepted a connection before.
func (s *Server) acceptLoop() (accepted bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrAcceptPanic, r)
		}
	}()
	wait := backoff.Backoff{Policy: backoff.Policy{Initial: 5 * time.Millisecond, Max: time.Second}}
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.ctx.Err() != nil {
				return accepted, nil
			}
			// Out of file descriptors and the like: wait, as net/http does, rather than spin or give up.
			s.errors.Add(1)
			select {
			case <-time.After(wait.Next()):
			case <-s.ctx.Done():
				return accepted, nil
			}
			continue
		}
		wait.Reset()
		c := &serverConn{conn: conn, w: NewLineWriter(conn)}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			_ = conn.Close()
			return accepted, nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.connections.Add(1)
		s.connectionsTotal.Add(1)
		accepted = true
		go s.serve(c)
	}
}

func (s *Server) heartbeat() {
	defer s.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			s.errors.Add(1)
		}
	}()
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	var line []byte
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			line = appendMessage(line[:0], TypeHeartbeat, "", time.Now().UnixNano(), nil)
			s.bmu.Lock()
			_, _ = s.broadcastLocked(line)
			s.bmu.Unlock()
		}
	}
}

// serve reads one gateway's lines until the connection ends.
func (s *Server) serve(c *serverConn) {
	defer func() {
		if r := recover(); r != nil {
			s.errors.Add(1) // a handler panicked: the connection ends, the server goes on
		}
		_ = c.conn.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.connections.Add(-1)
		s.wg.Done()
	}()
	silence := time.Duration(DefaultMaxMissedHeartbeats) * s.cfg.HeartbeatInterval
	lr := NewLineReader(&silentReader{conn: c.conn, limit: silence}, s.cfg.MaxLineSize)
	for {
		m, err := lr.Next()
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) {
				return
			}
			s.badLine(c, le)
			continue
		}
		s.received.Add(1)
		var werr error
		switch m.Type {
		case TypeConfig:
			werr = s.configure(c, lr, m)
		case TypeStatus:
			werr = s.status(c, m)
		case TypeHeartbeat:
			if m.ID != "" {
				werr = s.respond(c, m.ID, appendResponsePayload(nil, true, ""))
			}
		case TypeResponse:
			// The server sends no requests, so nothing waits for a RESPONSE: it is counted and dropped.
		default: // DATA and METRICS go to the gateway, not to a sidecar
			s.badLine(c, &LineError{Line: lr.Line(), ID: m.ID, Type: m.Type,
				Err: lineErr(ErrUnexpectedType, "unexpected message type "+m.Type+" from a gateway")})
		}
		if werr != nil {
			return
		}
	}
}

func (s *Server) configure(c *serverConn, lr *LineReader, m *Message) error {
	var cfg ConfigPayload
	if err := json.Unmarshal(m.Payload, &cfg); err != nil {
		s.badLine(c, &LineError{Line: lr.Line(), ID: m.ID, Type: m.Type, Err: badPayload(err)})
		return nil
	}
	err := cfg.Validate()
	if err == nil {
		err = s.h.Configure(s.ctx, cfg)
	}
	if err != nil {
		s.errors.Add(1)
		return s.respond(c, m.ID, appendResponsePayload(nil, false, err.Error()))
	}
	return s.respond(c, m.ID, appendResponsePayload(nil, true, ""))
}

// status answers STATUS with {"success":true,"name":…,<the handler's fields>}.
func (s *Server) status(c *serverConn, m *Message) error {
	b, err := json.Marshal(s.h.Status(s.ctx))
	if err != nil {
		s.errors.Add(1)
		return s.respond(c, m.ID, appendResponsePayload(nil, false, "encode status: "+err.Error()))
	}
	p := append(make([]byte, 0, len(b)+64), `{"success":true`...)
	if s.cfg.Name != "" {
		p = append(p, `,"name":`...)
		p = appendString(p, s.cfg.Name)
	}
	switch {
	case string(b) == "null" || string(b) == "{}":
	case b[0] == '{':
		p = append(p, ',')
		p = append(p, b[1:len(b)-1]...)
	default:
		p = append(p, `,"data":`...)
		p = append(p, b...)
	}
	return s.respond(c, m.ID, append(p, '}'))
}

// badLine counts a bad line and answers it when it has an id (never a RESPONSE: no error ping-pong).
func (s *Server) badLine(c *serverConn, le *LineError) {
	s.errors.Add(1)
	if le.ID != "" && le.Type != TypeResponse {
		_ = s.respond(c, le.ID, appendResponsePayload(nil, false, le.Err.Error()))
	}
}

// respond writes a RESPONSE; a failed write closes the connection, so its reader ends.
func (s *Server) respond(c *serverConn, id string, payload []byte) error {
	line := appendMessage(nil, TypeResponse, id, time.Now().UnixNano(), payload)
	if err := c.w.writeLine(line); err != nil {
		s.errors.Add(1)
		_ = c.conn.Close()
		return err
	}
	s.sent.Add(1)
	return nil
}
