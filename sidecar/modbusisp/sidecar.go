// Package modbusisp is the reference Modbus sidecar: an ISP server (package isp) that polls Modbus devices as the
// CONFIG it receives says, and sends what it reads as DATA. It runs as `iotgw sidecar modbus` and is launched by
// the gateway through plugins/modbus-isp.json like any other plugin.
//
// It shares the register model (types, byte orders, scaling, request coalescing) and the client (modes tcp, rtu
// and rtu-over-tcp, serial settings, retries, the reconnect backoff, the error kinds) with the gateway's direct
// Modbus driver through package sidecar/modbus, so a register reads the same through either path.
package modbusisp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgw/iotgw/isp"
	mb "github.com/iotgw/iotgw/modbus"
	"github.com/rs/zerolog"
)

// MaxBatch is the largest DATA frame the sidecar sends (the seed's batch size).
const MaxBatch = 100

// Options configure the sidecar.
type Options struct {
	Listen            string // ISP listen address, e.g. 127.0.0.1:50052
	Name              string // in STATUS replies and point sources; default "modbus"
	HeartbeatInterval time.Duration
	Log               zerolog.Logger
}

// Sidecar polls Modbus and serves ISP.
type Sidecar struct {
	opt Options
	srv *isp.Server

	mu     sync.Mutex // guards poll and cfg
	cfg    *isp.ConfigPayload
	cancel context.CancelFunc
	wg     sync.WaitGroup

	polls, failedReads, pointsSent atomic.Int64
	lastError                      atomic.Value // string
	lastErrorKind                  atomic.Value // string: modbus.ErrorKind's
	lastPoll                       atomic.Int64 // Unix ns
}

var _ isp.ServerHandler = (*Sidecar)(nil)

// New builds a sidecar; Start listens.
func New(opt Options) *Sidecar {
	if opt.Name == "" {
		opt.Name = "modbus"
	}
	s := &Sidecar{opt: opt}
	s.srv = isp.NewServer(isp.ServerConfig{Address: opt.Listen, HeartbeatInterval: opt.HeartbeatInterval, Name: opt.Name,
		OnError: func(err error) { opt.Log.Error().Err(err).Msg("ISP server") }}, s)
	return s
}

// Start listens for gateways.
func (s *Sidecar) Start(ctx context.Context) error { return s.srv.Start(ctx) }

// Addr is where it listens.
func (s *Sidecar) Addr() string { return s.srv.Addr().String() }

// Stop stops polling and closes every connection.
func (s *Sidecar) Stop() error {
	s.stopPolling()
	return s.srv.Stop()
}

// Run serves until ctx is done.
func Run(ctx context.Context, opt Options) error {
	s := New(opt)
	if err := s.Start(ctx); err != nil {
		return err
	}
	opt.Log.Info().Str("listen", s.Addr()).Msg("modbus sidecar listening for ISP")
	<-ctx.Done()
	return s.Stop()
}

// Configure validates the CONFIG, plans its requests and (re)starts polling. A bad config is rejected and the
// previous one keeps running.
func (s *Sidecar) Configure(_ context.Context, cfg isp.ConfigPayload) error {
	regs, err := registers(cfg.Registers)
	if err != nil {
		return err
	}
	plan, err := mb.Plan(regs, mb.PlanOptions{})
	if err != nil {
		return err
	}
	client, err := newClient(cfg)
	if err != nil {
		return err
	}
	interval := time.Duration(cfg.IntervalMS) * time.Millisecond
	if interval <= 0 {
		interval = time.Second
	}
	s.stopPolling()
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.cfg, s.cancel = &cfg, cancel
	s.mu.Unlock()
	p := &poller{s: s, regs: regs, plan: plan, client: client, interval: interval, retries: cfg.Retries,
		timeout: time.Duration(cfg.TimeoutMS) * time.Millisecond}
	if p.timeout <= 0 {
		p.timeout = 3 * time.Second
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			if r := recover(); r != nil {
				s.lastError.Store(fmt.Sprintf("poller panicked: %v", r))
				s.opt.Log.Error().Interface("panic", r).Msg("poller panicked; polling stopped until the next CONFIG")
			}
		}()
		p.run(ctx)
	}()
	s.opt.Log.Info().Str("mode", cfg.Mode).Str("address", cfg.Address).Int("registers", len(regs)).
		Int("requests", len(plan)).Dur("interval", interval).Msg("configured")
	return nil
}

func (s *Sidecar) stopPolling() {
	s.mu.Lock()
	cancel := s.cancel
	s.cancel = nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	s.wg.Wait()
}

// Status reports the sidecar's state.
func (s *Sidecar) Status(context.Context) any {
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	st := map[string]any{
		"configured":   cfg != nil,
		"polls":        s.polls.Load(),
		"failed_reads": s.failedReads.Load(),
		"points_sent":  s.pointsSent.Load(),
	}
	if cfg != nil {
		st["mode"], st["address"], st["registers"] = cfg.Mode, cfg.Address, len(cfg.Registers)
	}
	if t := s.lastPoll.Load(); t != 0 {
		st["last_poll"] = t
	}
	if e, _ := s.lastError.Load().(string); e != "" {
		st["last_error"] = e
		st["last_error_kind"], _ = s.lastErrorKind.Load().(string)
	}
	return st
}

// registers turns CONFIG registers into the shared register model; all problems are reported together.
func registers(in []isp.Register) ([]mb.Register, error) {
	out := make([]mb.Register, 0, len(in))
	var errs []error
	for i, r := range in {
		t, err := mb.ParseType(r.Type)
		if err != nil {
			errs = append(errs, fmt.Errorf("register %d (%s): %w", i, r.Key, err))
			continue
		}
		reg := mb.Register{
			Key: r.Key, SlaveID: r.DeviceID, Function: r.Function, Address: r.Address, Type: t,
			Scale: r.Scale, Bit: mb.NoBit, Tags: r.Tags, Unit: r.Tags["unit"],
		}
		if t == mb.TypeString {
			reg.Length = r.Quantity
		}
		out = append(out, reg)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// newClient builds the Modbus client for a CONFIG's mode, address and serial line: the direct driver's client.
func newClient(cfg isp.ConfigPayload) (*mb.Client, error) {
	mode := strings.ToLower(cfg.Mode)
	ep := mb.Endpoint{Mode: mode, Address: cfg.Address}
	if sp := cfg.Serial; sp != nil {
		if mode != mb.ModeRTU {
			return nil, fmt.Errorf("serial: a serial line applies to mode %q only, not %q", mb.ModeRTU, cfg.Mode)
		}
		ep.Serial = mb.Serial{BaudRate: sp.BaudRate, DataBits: sp.DataBits, Parity: sp.Parity, StopBits: sp.StopBits}
	}
	return mb.NewClient(ep)
}

// poller reads the planned requests every interval and broadcasts the points.
type poller struct {
	s        *Sidecar
	regs     []mb.Register
	plan     []mb.Request
	client   *mb.Client
	interval time.Duration
	timeout  time.Duration // of one attempt
	retries  int
	points   []isp.Point
	tags     [][]isp.Tag
}

func (p *poller) run(ctx context.Context) {
	defer p.client.Close()
	p.tags = make([][]isp.Tag, len(p.regs))
	for i, r := range p.regs {
		p.tags[i] = isp.MergeTags(nil, r.Tags, r.Unit)
	}
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.poll()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *poller) poll() {
	now := time.Now().UnixNano()
	p.points = p.points[:0]
	for qi := range p.plan {
		q := &p.plan[qi]
		resp, err := p.client.Do(mb.Call{Slave: q.SlaveID, Function: q.Function, Address: q.Address, Quantity: q.Quantity,
			Timeout: p.timeout, Retries: p.retries})
		if err == nil {
			err = q.Decode(p.regs, resp, func(i int, v isp.Value, derr error) {
				quality := isp.QualityGood
				if derr != nil {
					quality = isp.QualityBad
				}
				p.add(i, v, quality, now)
			})
		}
		if err != nil {
			p.s.failedReads.Add(1)
			p.s.lastError.Store(fmt.Sprintf("slave %d function %d address %d quantity %d: %v", q.SlaveID, q.Function, q.Address, q.Quantity, err))
			p.s.lastErrorKind.Store(mb.ErrorKind(err))
			// A failed request marks only its own points bad; the client has reopened the connection after a
			// timeout or a garbled reply, so a late answer cannot be taken for the next one's.
			for _, f := range q.Fields {
				p.add(f.Index, isp.Null(), isp.QualityBad, now)
			}
		}
	}
	p.s.polls.Add(1)
	p.s.lastPoll.Store(now)
	for start := 0; start < len(p.points); start += MaxBatch {
		end := min(start+MaxBatch, len(p.points))
		if err := p.s.srv.BroadcastData(p.points[start:end]); err == nil {
			p.s.pointsSent.Add(int64(end - start))
		}
	}
}

func (p *poller) add(i int, v isp.Value, quality int, ts int64) {
	r := &p.regs[i]
	p.points = append(p.points, isp.Point{
		Key: r.Key, Value: v, Type: r.ValueType().String(), Quality: quality, Timestamp: ts, Tags: p.tags[i],
		Source: p.s.opt.Name,
	})
}
