// Package sidecar holds the sidecar connection actor: one per `sidecar` block, the gateway's end of an ISP
// connection (launching the sidecar process first when the gateway runs it).
package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
	"github.com/iotgw/iotgw/sidecar"
	"github.com/nats-io/nats.go"
)

// Errors that end a connection (the supervisor then restarts the actor, which reconnects and relaunches).
var (
	ErrProcessExited  = errors.New("sidecar process exited")
	ErrConnectionLost = errors.New("sidecar connection lost")
	ErrNotConnected   = errors.New("not connected")
)

// Connection states, in the status reply while the sidecar is not connected.
const (
	StateWaiting    = "waiting"    // waiting out the supervisor's backoff after a failure
	StateLaunching  = "launching"  // starting the plugin's process and waiting for its port
	StateConnecting = "connecting" // dialling, then waiting for the CONFIG reply
	StateConnected  = "connected"
)

// StatusSubject is where an operator asks a sidecar for its STATUS: iot.control.sidecars.{name}.status.
func StatusSubject(name string) string { return StatusPrefix + name + ".status" }

// StatusPrefix begins every sidecar's status subject.
const StatusPrefix = "iot.control.sidecars."

// conn is the actor of one sidecar. On start one worker does the blocking part: launch the plugin (when the
// sidecar is the gateway's to run) and wait for its port, dial, send the block's config as CONFIG and wait for the
// sidecar to accept it; then it watches the connection and the process. Anything that ends them (a lost
// connection, a silent peer, a CONFIG rejection or timeout, the process exiting) is returned by the worker, which
// fails the actor: the supervisor restarts it, and the new incarnation starts over. A restart thus always
// reconnects and resends CONFIG, and relaunches a process it launched.
//
// Failures of the peer — refused, reset or lost connections, a dial, port or CONFIG timeout, a lost heartbeat, a
// process that exited or could not bind its port — are actors.PeerFailure: the supervisor retries them for as
// long as the sidecar is configured, at its capped backoff, and shows the sidecar disconnected. What retrying
// cannot fix is a plain failure, counted against max_restarts: a missing plugin, an entry that cannot be
// executed, a CONFIG the sidecar rejects. conn is an actors.Reconnector: it waits out the backoff itself (a timer
// in its connect worker), so its status request is answered "not connected" meanwhile instead of timing out.
//
// A key that DATA has not brought a good value of for stale_after is republished once with stale=true and quality
// 0, with a "stale" event on iot.errors.isp.{sidecar} (see liveness): a sidecar that answers heartbeats but has
// stopped sending data is noticed.
//
// DATA frames are forwarded by the client's reader goroutine straight to iot.raw.isp.{sidecar}, one bus message
// per frame, re-encoded with the allocation-free codec; the processor turns them into processed data.
type conn struct {
	cfg     config.Sidecar
	plugins string
	env     actors.Env

	hist    *history  // shared by the incarnations of this sidecar
	live    *liveness // shared too: a key goes stale while the sidecar is away as well
	workers actors.Workers

	mu     sync.Mutex // guards the fields below, set by the connect worker and read by status
	proc   *sidecar.Process
	client *isp.Client
	state  string
	delay  time.Duration // ReconnectAfter's
	retry  time.Time     // when the wait ends

	badLines atomic.Int64
}

// history is what one incarnation leaves to the next: why the connection last ended.
type history struct {
	mu        sync.Mutex
	lastError string
	errorAt   time.Time
}

func (h *history) set(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastError, h.errorAt = err.Error(), time.Now()
}

func (h *history) get() (string, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastError, h.errorAt
}

var (
	_ actors.Listener    = (*conn)(nil)
	_ actors.FaultTarget = (*conn)(nil)
	_ actors.Reconnector = (*conn)(nil)
)

// ReconnectAfter makes the next start wait d before it launches or dials (actors.Reconnector); it is called
// before Started.
func (c *conn) ReconnectAfter(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.delay = d
}

// InjectFault: drop closes the ISP connection (the actor fails and reconnects); kill sends SIGKILL to the
// sidecar process it launched (it is relaunched).
func (c *conn) InjectFault(_ actor.Context, f *actors.Fault) error {
	c.mu.Lock()
	client, proc := c.client, c.proc
	c.mu.Unlock()
	switch f.Kind {
	case actors.FaultDrop:
		if client == nil {
			return errors.New("not connected")
		}
		return client.Close()
	case actors.FaultKill:
		if proc == nil {
			return errors.New("no process: this sidecar was not launched by the gateway")
		}
		return proc.Kill()
	default:
		return actors.ErrFaultUnsupported
	}
}

// ClearFault: drop and kill are done at once; nothing stays.
func (c *conn) ClearFault(actor.Context, string) {}

// connected is sent by the connect worker once CONFIG was accepted.
type connected struct{ resp *isp.Response }

// NewConn returns the producer of a sidecar connection actor.
func NewConn(sc config.Sidecar, pluginsDir string, env actors.Env) actor.Producer {
	hist, live := &history{}, &liveness{}
	return func() actor.Actor {
		return &conn{cfg: sc, plugins: pluginsDir, env: env, hist: hist, live: live}
	}
}

func (c *conn) Inboxes() []actors.Inbox {
	status := StatusSubject(c.cfg.Name)
	return []actors.Inbox{{Subject: status}, {Subject: actors.GatewayControl(c.env.GatewayID, status)}}
}

func (c *conn) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		c.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		c.release()
	case *connected:
		c.env.Log.Info().Str("sidecar", c.cfg.Name).Str("addr", c.addr()).Msg("sidecar connected, CONFIG accepted")
		c.env.Link(actors.LinkConnected, "")
	case *actors.Tick:
		m.Ack()
		c.checkStale()
	case *nats.Msg:
		c.status(ctx, m)
	}
}

func (c *conn) start(ctx actor.Context) {
	c.mu.Lock()
	delay := c.delay
	c.state, c.retry = StateConnecting, time.Time{}
	if delay > 0 {
		c.state, c.retry = StateWaiting, time.Now().Add(delay)
	}
	c.mu.Unlock()
	if last, _ := c.hist.get(); last != "" {
		c.env.Link(actors.LinkDisconnected, last)
	}
	c.workers.Go(ctx, "connect", func(done <-chan struct{}, send func(any)) error {
		if delay > 0 {
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-done:
				return nil
			case <-t.C:
			}
		}
		err := c.run(done, send)
		if err != nil {
			c.hist.set(err)
		}
		return err
	})
	if c.cfg.StaleAfter > 0 {
		c.workers.Tick(ctx, "stale", staleCheckEvery(c.cfg.StaleAfter))
	}
}

func (c *conn) setState(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state, c.retry = s, time.Time{}
}

// release stops the workers, closes the connection and stops a process this actor launched.
func (c *conn) release() {
	c.workers.Stop()
	c.mu.Lock()
	client, proc := c.client, c.proc
	c.client, c.proc = nil, nil
	c.mu.Unlock()
	if client != nil {
		_ = client.Close()
	}
	if proc != nil {
		_ = proc.Stop(2 * time.Second)
	}
}

func (c *conn) addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil {
		return c.proc.Addr
	}
	return c.cfg.Address
}

// pid is the launched process's id, 0 when the sidecar is not the gateway's to run.
func (c *conn) pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return 0
	}
	return c.proc.Pid()
}

// run is the connect-and-watch worker.
func (c *conn) run(done <-chan struct{}, send func(any)) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()

	addr := c.cfg.Address
	var exited <-chan struct{}
	if c.cfg.Plugin != "" {
		c.setState(StateLaunching)
		m, err := sidecar.FindPlugin(c.plugins, c.cfg.Plugin)
		if err != nil {
			return err // not installed: no retry fixes that
		}
		var env []string
		for k, v := range c.cfg.Env {
			env = append(env, k+"="+v)
		}
		proc, err := sidecar.Launch(m, sidecar.LaunchOptions{Port: c.cfg.Port, LogLevel: "info", Env: env, Log: c.env.Log})
		if errors.Is(err, sidecar.ErrPortInUse) {
			// Someone else holds the port (a sidecar left over by a gateway that was killed, another program):
			// it may go away, so it is the world's state, not a bug.
			return actors.PeerFailure(fmt.Errorf("sidecar %s: %w", c.cfg.Name, err))
		}
		if err != nil {
			return err // the entry cannot be executed
		}
		c.mu.Lock()
		c.proc = proc
		c.mu.Unlock()
		wctx, wcancel := context.WithTimeout(ctx, c.cfg.DialTimeout+10*time.Second)
		err = proc.WaitPort(wctx)
		wcancel()
		if err != nil {
			return actors.PeerFailure(err) // it exited before listening, or never listened
		}
		addr, exited = proc.Addr, proc.Done()
	}
	c.setState(StateConnecting)

	client, err := isp.Dial(ctx, isp.ClientConfig{
		Address:             addr,
		DialTimeout:         c.cfg.DialTimeout,
		RequestTimeout:      c.cfg.RequestTimeout,
		HeartbeatInterval:   c.cfg.HeartbeatInterval,
		MaxMissedHeartbeats: c.cfg.MaxMissedHeartbeats,
		MaxLineSize:         int(c.cfg.MaxLineSize),
	}, c.events())
	if err != nil {
		return actors.PeerFailure(fmt.Errorf("sidecar %s: %w", c.cfg.Name, err)) // refused, unreachable, timed out
	}
	c.mu.Lock()
	c.client = client
	c.mu.Unlock()

	resp, err := client.Configure(ctx, configPayload(c.cfg.Config))
	if err != nil {
		err = fmt.Errorf("sidecar %s: CONFIG: %w", c.cfg.Name, err)
		if configFailure(err) {
			return err
		}
		return actors.PeerFailure(err) // no answer in time, or the connection ended
	}
	c.setState(StateConnected)
	send(&connected{resp: resp})

	select {
	case <-done:
		return nil
	case <-client.Done():
		return actors.PeerFailure(fmt.Errorf("sidecar %s: %w: %w", c.cfg.Name, ErrConnectionLost, client.Err()))
	case <-exited:
		c.mu.Lock()
		perr := c.proc.Err()
		c.mu.Unlock()
		return actors.PeerFailure(fmt.Errorf("sidecar %s: %w: %v", c.cfg.Name, ErrProcessExited, perr))
	}
}

// configFailure says whether a failed CONFIG is the config's fault — the sidecar rejected it, or it is not valid
// to send — which reconnecting cannot change; anything else (a timeout, a lost connection) is the peer's.
func configFailure(err error) bool {
	return errors.Is(err, isp.ErrRejected) || errors.Is(err, isp.ErrInvalidConfig)
}

// events forwards what the sidecar sends. They run on the client's reader goroutine.
func (c *conn) events() isp.ClientEvents {
	raw := &nats.Msg{Subject: "iot.raw.isp." + c.cfg.Name, Header: nats.Header{}}
	raw.Header.Set(actors.HeaderSource, c.cfg.Name)
	raw.Header.Set(actors.HeaderSchema, actors.SchemaVersion)
	metricsSubject := "iot.metrics.performance.sidecar." + c.cfg.Name
	errorSubject := "iot.errors.isp." + c.cfg.Name
	return isp.ClientEvents{
		Data: func(points []isp.Point) {
			for i := range points {
				points[i].Source = c.cfg.Name // the source of a sidecar's data is the sidecar's name
			}
			if c.cfg.StaleAfter > 0 {
				c.live.seen(points, time.Now())
			}
			c.env.Metrics.PointsIn("sidecars/"+c.cfg.Name, len(points))
			raw.Data = isp.AppendBatch(raw.Data[:0], points)
			actors.SetHeader(raw.Header, actors.HeaderTraceID, actors.NewTraceID()) // a DATA frame is a batch born
			if err := c.env.Bus.PublishMsg(raw); err != nil {
				c.env.Log.Warn().Err(err).Str("subject", raw.Subject).Msg("cannot publish sidecar data")
			}
		},
		Metrics: func(m isp.MetricsPayload) {
			data, _ := json.Marshal(struct {
				Sidecar   string             `json:"sidecar"`
				Counters  map[string]float64 `json:"counters"`
				Timestamp int64              `json:"timestamp"`
			}{c.cfg.Name, m.Counters, time.Now().UnixNano()})
			if err := c.env.Bus.Publish(metricsSubject, data); err != nil {
				c.env.Log.Warn().Err(err).Msg("cannot publish sidecar metrics")
			}
		},
		BadLine: func(le *isp.LineError) {
			n := c.badLines.Add(1)
			c.env.Metrics.Error("sidecars/"+c.cfg.Name, "bad_line")
			c.env.Log.Warn().Err(le).Str("sidecar", c.cfg.Name).Int64("bad_lines", n).Msg("bad line from sidecar")
			data, _ := json.Marshal(struct {
				Sidecar   string `json:"sidecar"`
				Line      int    `json:"line"`
				ID        string `json:"id,omitempty"`
				Type      string `json:"type,omitempty"`
				Error     string `json:"error"`
				BadLines  int64  `json:"bad_lines"`
				Timestamp int64  `json:"timestamp"`
			}{c.cfg.Name, le.Line, le.ID, le.Type, le.Error(), n, time.Now().UnixNano()})
			if err := c.env.Bus.Publish(errorSubject, data); err != nil {
				c.env.Log.Warn().Err(err).Msg("cannot publish sidecar error")
			}
		},
	}
}

// status answers iot.control.sidecars.{name}.status with the sidecar's own STATUS reply, asked in a task so the
// actor's mailbox stays free.
func (c *conn) status(ctx actor.Context, msg *nats.Msg) {
	c.mu.Lock()
	client, state, retry := c.client, c.state, c.retry
	c.mu.Unlock()
	if client == nil || state != StateConnected {
		// Answered at once, from the actor: while it waits, launches or dials there is no sidecar to ask.
		out := map[string]any{"sidecar": c.cfg.Name, "error": ErrNotConnected.Error(), "state": state}
		if last, at := c.hist.get(); last != "" {
			out["last_error"], out["last_error_at"] = last, at
		}
		if !retry.IsZero() {
			out["retry_in_ms"] = max(time.Until(retry), 0).Milliseconds()
		}
		if pid := c.pid(); pid != 0 {
			out["pid"] = pid
		}
		actors.Respond(c.env.Log, msg, out)
		return
	}
	timeout := c.cfg.RequestTimeout
	c.workers.Task(ctx, "status", func(done <-chan struct{}) error {
		rctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		go func() {
			select {
			case <-done:
				cancel()
			case <-rctx.Done():
			}
		}()
		reply, err := client.Status(rctx)
		if err != nil {
			actors.Respond(c.env.Log, msg, map[string]any{"sidecar": c.cfg.Name, "error": err.Error()})
			return nil
		}
		out := map[string]any{"sidecar": c.cfg.Name, "state": StateConnected, "stats": client.Stats()}
		if pid := c.pid(); pid != 0 {
			out["pid"] = pid
		}
		if len(reply.Payload) > 0 {
			out["response"] = reply.Payload
		}
		actors.Respond(c.env.Log, msg, out)
		return nil
	})
}

// configPayload is the block's config as the ISP CONFIG payload.
func configPayload(c config.SidecarConfig) isp.ConfigPayload {
	p := isp.ConfigPayload{
		Mode: c.Mode, Address: c.Address,
		TimeoutMS: int(c.Timeout.Milliseconds()), IntervalMS: int(c.Interval.Milliseconds()),
		Retries: c.Retries, Registers: make([]isp.Register, 0, len(c.Registers)),
	}
	if s := c.Serial; s != nil {
		p.Serial = &isp.Serial{BaudRate: s.BaudRate, DataBits: s.DataBits, Parity: s.Parity, StopBits: s.StopBits}
	}
	for _, r := range c.Registers {
		p.Registers = append(p.Registers, isp.Register{
			Key: r.Key, Address: uint16(r.Address), Quantity: uint16(r.Quantity), Type: r.Type,
			Function: uint8(r.Function), Scale: r.Scale, DeviceID: uint8(r.DeviceID), Tags: r.Tags,
		})
	}
	return p
}
