package modbussim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgw/iotgw/internal/backoff"
)

// Server is a simulated Modbus TCP device: one listener, any number of units.
// Its methods are safe for concurrent use.
type Server struct {
	cfg    Config
	units  [256]*unit // by unit id; [0] is the catch-all
	epoch  time.Time  // signals are functions of the time since epoch
	faults atomic.Pointer[[]Fault]
	stats  counters

	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]struct{}
	started bool
	closed  bool

	done     chan struct{} // closed by shutdown
	shutOnce sync.Once
	wg       sync.WaitGroup // every goroutine the server starts
}

// New builds a server from cfg (defaults filled in, see [Config]); it does
// not listen until Start. Every config error is reported, joined.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	units, err := buildUnits(cfg.Units)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, epoch: time.Now(), conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	for _, u := range units {
		s.units[u.id] = u
	}
	return s, nil
}

// Start listens on Config.Listen and serves in the background until ctx is
// done or Stop is called. When it returns nil, Addr is the bound address.
func (s *Server) Start(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrServerClosed
	case s.started:
		return ErrServerStarted
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("modbussim: listen %s: %w", s.cfg.Listen, err)
	}
	s.ln, s.started = ln, true
	s.wg.Add(2)
	go s.acceptLoop(ln)
	go func() {
		defer s.wg.Done()
		select {
		case <-ctx.Done():
			s.shutdown()
		case <-s.done:
		}
	}()
	return nil
}

// Run starts the server, serves until ctx is done, and stops it: the whole
// life of `iotgw sim modbus`.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return s.Stop()
}

// Stop closes the listener and every connection and waits for every
// goroutine the server started. It may be called more than once.
func (s *Server) Stop() error {
	s.shutdown()
	s.wg.Wait()
	return nil
}

func (s *Server) shutdown() {
	s.shutOnce.Do(func() {
		close(s.done)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.closed = true
		if s.ln != nil {
			s.ln.Close()
		}
		for c := range s.conns {
			c.Close()
		}
	})
}

// Addr is the address the server listens on, nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

func (s *Server) elapsed() time.Duration { return time.Since(s.epoch) }

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	defer s.recoverPanic()
	wait := backoff.Backoff{Policy: backoff.Policy{Initial: 5 * time.Millisecond, Max: time.Second}}
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.isClosed() {
				return
			}
			// Out of file descriptors and the like: back off as net/http does.
			select {
			case <-time.After(wait.Next()):
				continue
			case <-s.done:
				return
			}
		}
		wait.Reset()
		s.track(c)
	}
}

func (s *Server) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// track registers c and starts serving it, or closes it when the server is
// closing or full. wg.Add happens under mu while not closed, so Stop's
// wg.Wait never races an Add.
func (s *Server) track(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		c.Close()
		return
	case len(s.conns) >= s.cfg.MaxConns:
		s.stats.rejected.Add(1)
		c.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.stats.connections.Add(1)
	s.stats.active.Add(1)
	s.wg.Add(1)
	go s.serveConn(c)
}

func (s *Server) forget(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.stats.active.Add(-1)
}

func (s *Server) recoverPanic() {
	if r := recover(); r != nil {
		s.stats.panics.Add(1)
	}
}

// serveConn answers one connection's requests in order until it closes, sends
// a malformed frame, idles out, or the server stops. Responses to pipelined
// requests are batched into one write while more requests are buffered.
func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer s.forget(c)
	defer s.recoverPanic()

	br := bufio.NewReaderSize(c, 4096)
	bw := bufio.NewWriterSize(c, 4096)
	// Requests answered before a bad frame still get their answers.
	defer bw.Flush()
	var in [maxFrame]byte
	out := make([]byte, 0, maxFrame)
	for {
		if s.cfg.IdleTimeout > 0 {
			// One deadline covers reading this request and writing its answer.
			c.SetDeadline(time.Now().Add(s.cfg.IdleTimeout))
		}
		if _, err := io.ReadFull(br, in[:headerLen]); err != nil {
			if err == io.ErrUnexpectedEOF {
				s.stats.badFrames.Add(1)
			}
			return
		}
		n, err := checkHeader(in[:headerLen])
		if err != nil {
			s.stats.badFrames.Add(1)
			return
		}
		if _, err := io.ReadFull(br, in[headerLen:n]); err != nil {
			s.stats.badFrames.Add(1) // truncated frame
			return
		}
		s.stats.bytesIn.Add(uint64(n))
		res, err := s.serveFrame(out[:0], in[:n])
		if err != nil {
			s.stats.badFrames.Add(1)
			return
		}
		if res.delay > 0 || res.act == actClose {
			// Answers already given must not wait for this one.
			if bw.Flush() != nil {
				return
			}
		}
		if res.delay > 0 && !s.sleep(res.delay) {
			return
		}
		switch res.act {
		case actClose:
			s.stats.dropped.Add(1)
			return
		case actNoReply:
			continue
		}
		out = res.resp[:0]
		if _, err := bw.Write(res.resp); err != nil {
			return
		}
		s.stats.bytesOut.Add(uint64(len(res.resp)))
		if br.Buffered() == 0 {
			if bw.Flush() != nil {
				return
			}
		}
	}
}

// sleep waits d, or returns false when the server stops first.
func (s *Server) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	}
}

// unit returns the unit configured with id (0 is the catch-all unit).
func (s *Server) unit(id uint8) (*unit, error) {
	if u := s.units[id]; u != nil {
		return u, nil
	}
	return nil, fmt.Errorf("%w: %d", ErrNoUnit, id)
}

// span checks that addr..addr+n-1 lies in table t of u.
func span(u *unit, t Table, addr uint16, n int) error {
	if t < Coil || t > Input {
		return fmt.Errorf("%w: %d", ErrBadTable, t)
	}
	if int(addr)+n > u.size(t) {
		return fmt.Errorf("%w: unit %d %s %d..%d, size %d", ErrOutOfRange, u.id, t, addr, int(addr)+n-1, u.size(t))
	}
	return nil
}

// SetRegister writes values to consecutive registers of a Holding or Input
// table from addr on, in the unit configured with unitID (0 is the catch-all
// unit, not "every unit"). A signal covering them overwrites them on its next read.
func (s *Server) SetRegister(unitID uint8, table Table, addr uint16, values ...uint16) error {
	u, err := s.unit(unitID)
	if err != nil {
		return err
	}
	if table.isBits() {
		return fmt.Errorf("%w: %s holds bits, use SetBit", ErrBadTable, table)
	}
	if err := span(u, table, addr, len(values)); err != nil {
		return err
	}
	u.mu.Lock()
	copy(u.regs[table-3][addr:], values)
	u.mu.Unlock()
	return nil
}

// SetBit writes values to consecutive bits of a Coil or Discrete table.
func (s *Server) SetBit(unitID uint8, table Table, addr uint16, values ...bool) error {
	u, err := s.unit(unitID)
	if err != nil {
		return err
	}
	if !table.isBits() && table >= Coil && table <= Input {
		return fmt.Errorf("%w: %s holds registers, use SetRegister", ErrBadTable, table)
	}
	if err := span(u, table, addr, len(values)); err != nil {
		return err
	}
	u.mu.Lock()
	copy(u.bits[table-1][addr:], values)
	u.mu.Unlock()
	return nil
}

// Register reads one register as a client would see it now (signals
// recomputed).
func (s *Server) Register(unitID uint8, table Table, addr uint16) (uint16, error) {
	r, err := s.Registers(unitID, table, addr, 1)
	if err != nil {
		return 0, err
	}
	return r[0], nil
}

// Registers reads n consecutive registers as a client would see them now.
func (s *Server) Registers(unitID uint8, table Table, addr uint16, n int) ([]uint16, error) {
	u, err := s.unit(unitID)
	if err != nil {
		return nil, err
	}
	if table.isBits() {
		return nil, fmt.Errorf("%w: %s holds bits, use Bit", ErrBadTable, table)
	}
	if err := span(u, table, addr, n); err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.refresh(table, int(addr), n, s.elapsed())
	return append([]uint16(nil), u.regs[table-3][addr:int(addr)+n]...), nil
}

// Bit reads one coil or discrete input as a client would see it now.
func (s *Server) Bit(unitID uint8, table Table, addr uint16) (bool, error) {
	u, err := s.unit(unitID)
	if err != nil {
		return false, err
	}
	if !table.isBits() && table >= Coil && table <= Input {
		return false, fmt.Errorf("%w: %s holds registers, use Register", ErrBadTable, table)
	}
	if err := span(u, table, addr, 1); err != nil {
		return false, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.refresh(table, int(addr), 1, s.elapsed())
	return u.bits[table-1][addr], nil
}
