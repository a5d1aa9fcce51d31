package isp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Why a Client's connection or request ended. Classify with errors.Is.
var (
	ErrRejected   = errors.New("isp: rejected by sidecar")    // a RESPONSE with success:false
	ErrPeerSilent = errors.New("isp: peer silent")            // no line at all for MaxMissedHeartbeats×HeartbeatInterval
	ErrClosed     = errors.New("isp: connection closed")      // Close was called (or the Server stopped)
	ErrTimeout    = errors.New("isp: request timed out")      // no RESPONSE within RequestTimeout
	errPanic      = errors.New("isp: panic in connection")    // a goroutine of the connection panicked
	errStarted    = errors.New("isp: server already started") // Start twice
)

// ClientConfig configures a Client. Zero fields take the defaults.
type ClientConfig struct {
	Address             string        // host:port of the sidecar; default 127.0.0.1:50052
	DialTimeout         time.Duration // default 5s
	RequestTimeout      time.Duration // how long Configure and Status wait for their RESPONSE; default 10s
	HeartbeatInterval   time.Duration // default 15s
	MaxMissedHeartbeats int           // default 3
	MaxLineSize         int           // default 1 MiB
}

func (c *ClientConfig) withDefaults() ClientConfig {
	d := *c
	if d.Address == "" {
		d.Address = DefaultServerAddress
	}
	if d.DialTimeout <= 0 {
		d.DialTimeout = DefaultDialTimeout
	}
	if d.RequestTimeout <= 0 {
		d.RequestTimeout = DefaultRequestTimeout
	}
	if d.HeartbeatInterval <= 0 {
		d.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if d.MaxMissedHeartbeats <= 0 {
		d.MaxMissedHeartbeats = DefaultMaxMissedHeartbeats
	}
	if d.MaxLineSize <= 0 {
		d.MaxLineSize = DefaultMaxLineSize
	}
	return d
}

// ClientEvents are the callbacks of a Client. They are called from the client's reader goroutine, one at a
// time and in the order of the lines; a callback that blocks stops reading, and one that blocks for longer
// than the silence limit ends the connection with ErrPeerSilent. Nil callbacks are skipped.
type ClientEvents struct {
	Data    func(points []Point) // a DATA frame; the slice and its points are reused after return: copy what you keep
	Metrics func(MetricsPayload) // a METRICS message
	BadLine func(err *LineError) // a line that was not a valid message; already answered with an error RESPONSE when it had an id
}

// ClientStats are a Client's counters; the JSON names are the bus's snake_case (the sidecar status reply).
type ClientStats struct {
	MessagesIn         int64     `json:"messages_in"`
	MessagesOut        int64     `json:"messages_out"`
	PointsIn           int64     `json:"points_in"`
	BadLines           int64     `json:"bad_lines"`
	HeartbeatsIn       int64     `json:"heartbeats_in"`
	HeartbeatsOut      int64     `json:"heartbeats_out"`
	UnmatchedResponses int64     `json:"unmatched_responses"` // RESPONSEs whose id no request was waiting for (late or unknown): ignored
	LastMessage        time.Time `json:"last_message"`        // when the last line (of any kind) arrived; zero before the first
}

// A Client is the gateway's end of one ISP connection to a sidecar. It reads in one goroutine (delivering
// DATA and METRICS to ClientEvents and RESPONSEs to the requests waiting for them), sends heartbeats in
// another, and ends the connection when the sidecar has been silent for MaxMissedHeartbeats heartbeat
// intervals. It does not reconnect: the actor that owns it dials again.
type Client struct {
	cfg  ClientConfig
	ev   ClientEvents
	conn net.Conn
	w    *LineWriter

	quit chan struct{} // closed by fail
	done chan struct{} // closed when both goroutines have returned
	once sync.Once
	mu   sync.Mutex
	err  error

	pending map[string]chan *Message // by request id; guarded by mu
	nextID  atomic.Uint64

	messagesIn, messagesOut, pointsIn, badLines  atomic.Int64
	heartbeatsIn, heartbeatsOut, unmatched, last atomic.Int64
}

// Dial connects to the sidecar at cfg.Address and starts the client's goroutines. ctx bounds the dial only.
func Dial(ctx context.Context, cfg ClientConfig, ev ClientEvents) (*Client, error) {
	cfg = cfg.withDefaults()
	d := net.Dialer{Timeout: cfg.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("isp: dial sidecar %s: %w", cfg.Address, err)
	}
	c := &Client{
		cfg:     cfg,
		ev:      ev,
		conn:    conn,
		w:       NewLineWriter(conn),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		pending: make(map[string]chan *Message),
	}
	silence := time.Duration(cfg.MaxMissedHeartbeats) * cfg.HeartbeatInterval
	lr := NewLineReader(&silentReader{conn: conn, limit: silence}, cfg.MaxLineSize)
	hbDone := make(chan struct{})
	go c.heartbeat(hbDone)
	go c.read(lr, hbDone)
	return c, nil
}

// Done is closed when the connection is finished and the client's goroutines have returned.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the connection finished: ErrClosed after Close, ErrPeerSilent, or the read or write error
// (io.EOF when the sidecar hung up). It is nil while the connection is alive.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection and waits for the client's goroutines. Requests in flight return ErrClosed.
func (c *Client) Close() error {
	c.fail(ErrClosed)
	<-c.done
	return nil
}

// Stats returns the client's counters.
func (c *Client) Stats() ClientStats {
	s := ClientStats{
		MessagesIn:         c.messagesIn.Load(),
		MessagesOut:        c.messagesOut.Load(),
		PointsIn:           c.pointsIn.Load(),
		BadLines:           c.badLines.Load(),
		HeartbeatsIn:       c.heartbeatsIn.Load(),
		HeartbeatsOut:      c.heartbeatsOut.Load(),
		UnmatchedResponses: c.unmatched.Load(),
	}
	if ns := c.last.Load(); ns != 0 {
		s.LastMessage = time.Unix(0, ns)
	}
	return s
}

// Configure sends cfg in a CONFIG message and waits for its RESPONSE. The config is validated first and not
// sent when invalid. A success:false reply returns the Response and an error wrapping ErrRejected with the
// sidecar's message.
func (c *Client) Configure(ctx context.Context, cfg ConfigPayload) (*Response, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(&cfg)
	if err != nil {
		return nil, fmt.Errorf("isp: encode config: %w", err)
	}
	m, err := c.request(ctx, TypeConfig, "cfg-", payload)
	if err != nil {
		return nil, err
	}
	resp, err := m.Response()
	if err != nil {
		return nil, err
	}
	if !resp.Success {
		return resp, fmt.Errorf("%w: %s", ErrRejected, resp.Error)
	}
	return resp, nil
}

// Status sends a STATUS request and returns the RESPONSE message, its payload as the sidecar sent it (every
// field beside success). A success:false reply also returns an error wrapping ErrRejected.
func (c *Client) Status(ctx context.Context) (*Message, error) {
	m, err := c.request(ctx, TypeStatus, "status-", nil)
	if err != nil {
		return nil, err
	}
	if resp, err := m.Response(); err == nil && !resp.Success {
		return m, fmt.Errorf("%w: %s", ErrRejected, resp.Error)
	}
	return m, nil
}

// request sends a message with a fresh id and waits for the RESPONSE carrying that id.
func (c *Client) request(ctx context.Context, typ, prefix string, payload []byte) (*Message, error) {
	id := prefix + strconv.FormatUint(c.nextID.Add(1), 10)
	ch := make(chan *Message, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()

	if err := c.send(&Message{Type: typ, ID: id, Payload: payload}); err != nil {
		return nil, err
	}
	timer := time.NewTimer(c.cfg.RequestTimeout)
	defer timer.Stop()
	select {
	case m := <-ch:
		return m, nil
	case <-timer.C:
		return nil, fmt.Errorf("isp: %s %q to %s: %w after %v", typ, id, c.cfg.Address, ErrTimeout, c.cfg.RequestTimeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.quit:
		return nil, c.Err()
	}
}

// send writes m; a write error ends the connection.
func (c *Client) send(m *Message) error {
	if err := c.w.Write(m); err != nil {
		c.fail(fmt.Errorf("isp: write to sidecar %s: %w", c.cfg.Address, err))
		return c.Err() // the first reason: ErrClosed when Close raced with this write
	}
	c.messagesOut.Add(1)
	return nil
}

// fail ends the connection for the first reason given.
func (c *Client) fail(err error) {
	c.once.Do(func() {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		close(c.quit)
		_ = c.conn.Close()
	})
}

func (c *Client) heartbeat(done chan<- struct{}) {
	defer close(done)
	defer func() {
		if r := recover(); r != nil {
			c.fail(fmt.Errorf("%w: heartbeat: %v", errPanic, r))
		}
	}()
	t := time.NewTicker(c.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-t.C:
			if c.send(&Message{Type: TypeHeartbeat}) != nil {
				return
			}
			c.heartbeatsOut.Add(1)
		}
	}
}

func (c *Client) read(lr *LineReader, hbDone <-chan struct{}) {
	defer func() {
		if r := recover(); r != nil {
			c.fail(fmt.Errorf("%w: reader: %v", errPanic, r))
		}
		c.fail(ErrClosed) // no-op when a reason is already set
		<-hbDone
		close(c.done)
	}()
	var points []Point
	for {
		m, err := lr.Next()
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) {
				c.fail(c.readError(err))
				return
			}
			c.last.Store(time.Now().UnixNano())
			c.badLine(le)
			continue
		}
		c.last.Store(time.Now().UnixNano())
		c.messagesIn.Add(1)
		switch m.Type {
		case TypeData:
			points, err = lr.DecodeData(m, points)
			if err != nil {
				c.badLine(err.(*LineError))
				continue
			}
			c.pointsIn.Add(int64(len(points)))
			if c.ev.Data != nil {
				c.ev.Data(points)
			}
		case TypeMetrics:
			var mp MetricsPayload
			if err := json.Unmarshal(m.Payload, &mp); err != nil {
				c.badLine(&LineError{Line: lr.Line(), ID: m.ID, Type: m.Type, Err: badPayload(err)})
				continue
			}
			if c.ev.Metrics != nil {
				c.ev.Metrics(mp)
			}
		case TypeHeartbeat:
			c.heartbeatsIn.Add(1)
			if m.ID != "" {
				c.respond(m.ID, true, "")
			}
		case TypeResponse:
			c.mu.Lock()
			ch, ok := c.pending[m.ID]
			delete(c.pending, m.ID)
			c.mu.Unlock()
			if !ok {
				c.unmatched.Add(1)
				continue
			}
			ch <- m.Clone() // buffered: never blocks
		default: // CONFIG and STATUS go to sidecars, not to the gateway
			c.badLine(&LineError{Line: lr.Line(), ID: m.ID, Type: m.Type,
				Err: lineErr(ErrUnexpectedType, "unexpected message type "+m.Type+" from a sidecar")})
		}
	}
}

// readError turns the reader's error into the reason the connection ended.
func (c *Client) readError(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return ErrClosed // our own Close (fail has usually recorded the reason already)
	}
	if errors.Is(err, ErrPeerSilent) {
		return fmt.Errorf("isp: sidecar %s: %w for %v", c.cfg.Address, ErrPeerSilent,
			time.Duration(c.cfg.MaxMissedHeartbeats)*c.cfg.HeartbeatInterval)
	}
	return fmt.Errorf("isp: read from sidecar %s: %w", c.cfg.Address, err)
}

// badLine counts a bad line, answers it when it has an id (never a RESPONSE, so two peers cannot bounce
// errors back and forth) and reports it.
func (c *Client) badLine(le *LineError) {
	c.badLines.Add(1)
	if le.ID != "" && le.Type != TypeResponse {
		c.respond(le.ID, false, le.Err.Error())
	}
	if c.ev.BadLine != nil {
		c.ev.BadLine(le)
	}
}

func (c *Client) respond(id string, success bool, errMsg string) {
	_ = c.send(&Message{Type: TypeResponse, ID: id, Payload: appendResponsePayload(nil, success, errMsg)})
}

// silentReader reads from a connection with a read deadline renewed before every read, so a peer that sends
// nothing for limit ends the read with ErrPeerSilent. Any bytes count as life; heartbeats keep a quiet peer
// alive.
type silentReader struct {
	conn  net.Conn
	limit time.Duration
}

func (r *silentReader) Read(p []byte) (int, error) {
	if err := r.conn.SetReadDeadline(time.Now().Add(r.limit)); err != nil {
		return 0, err
	}
	n, err := r.conn.Read(p)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return n, ErrPeerSilent
	}
	return n, err
}
