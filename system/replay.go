package system

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgw/iotgw/actors"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// confirmedPublisher is what actors publish through in client mode (an external server): the loss window of a
// hung server closed, at the price of duplicates.
//
// A core publish is fire-and-forget: nats.go writes it into the TCP connection and forgets it. When the server
// hangs (SIGSTOP, a frozen VM, a half-open link) the writes go on filling the socket until the client's pings
// time out (ping_interval × max_pings_out), and everything written meanwhile is gone with the connection: about 20
// polls of a device polling every 100 ms, with pings every second. Worse, nats.go holds the connection's lock
// while it dials the hung server again (each attempt up to the connect timeout), so a device that publishes
// directly stops polling for as long (nats.go's reconnect buffer only helps once the client knows it is
// disconnected). An earlier measurement saw about 157 of 220 polls of such an outage vanish.
//
// So, in client mode, a publish goes into a bounded queue and returns; one writer goroutine hands the queue to
// nats.go in order; every confirmInterval a flush (PING/PONG) confirms what was written before it — the server
// answers a PING only after it has read everything before it, and the messages it routed back to the gateway's own
// subscriptions (the processor listens on iot.raw.>) come before the PONG on the same connection. After a
// disconnect, the writer goes back to the first unconfirmed message and writes everything again. What the server
// had read before it hung, but whose PONG did not come, is therefore published twice: the processing stage's
// message ids (the raw message's trace id) let the stream keep it once; a core subscriber of iot.processed.> may
// see it twice. Past the queue's bound a publish fails with nats.ErrReconnectBufExceeded, which the actor counts
// and logs: a loss, but not a silent one.
//
// This is at-least-once at the connection, like MQTT's QoS 1 session; nats.go has nothing like it for core
// publishes (its reconnect buffer only holds what is published after the client noticed the disconnect).
type confirmedPublisher struct {
	nc    *nats.Conn
	next  actors.Publisher // the connection
	log   zerolog.Logger
	limit int // bytes queued, sent or not

	mu      sync.Mutex
	queue   []*nats.Msg // unconfirmed, in publish order; queue[:sent] have been written
	sizes   []int
	sent    int
	bytes   int
	rewinds int // disconnects seen: at each one the writer goes back to queue[0]
	wake    chan struct{}
	done    chan struct{}
	stopped chan struct{}

	replays atomic.Uint64 // messages written again after a disconnect
	drops   atomic.Uint64 // publishes refused because the queue was full
	// rewind is set by the disconnect handler; the writer also rewinds when it sees the reconnect count change
	// (it may have been blocked in nats.go for the whole disconnect). Only the writer rewinds, between two writes.
	rewind     atomic.Bool
	reconnects uint64 // as the writer last saw it
}

var _ actors.Publisher = (*confirmedPublisher)(nil)

// confirmInterval is how often what was written is confirmed by a flush: the duplicate window after a hung server.
const confirmInterval = 100 * time.Millisecond

func newConfirmedPublisher(nc *nats.Conn, next actors.Publisher, limit int, log zerolog.Logger) *confirmedPublisher {
	p := &confirmedPublisher{nc: nc, next: next, log: log, limit: limit,
		wake: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{})}
	go p.run()
	return p
}

func (p *confirmedPublisher) Publish(subject string, data []byte) error {
	return p.PublishMsg(&nats.Msg{Subject: subject, Data: data})
}

// PublishMsg queues a copy of m (actors reuse their messages and buffers) and returns at once.
func (p *confirmedPublisher) PublishMsg(m *nats.Msg) error {
	size := len(m.Subject) + len(m.Data)
	c := &nats.Msg{Subject: m.Subject, Reply: m.Reply, Data: append([]byte(nil), m.Data...)}
	if len(m.Header) > 0 {
		c.Header = make(nats.Header, len(m.Header))
		for k, vs := range m.Header {
			c.Header[k] = append([]string(nil), vs...)
			for _, v := range vs {
				size += len(k) + len(v) + 4
			}
		}
	}
	p.mu.Lock()
	select {
	case <-p.done:
		p.mu.Unlock()
		return nats.ErrConnectionClosed
	default:
	}
	if p.bytes+size > p.limit {
		p.mu.Unlock()
		p.drops.Add(1)
		return nats.ErrReconnectBufExceeded
	}
	p.queue = append(p.queue, c)
	p.sizes = append(p.sizes, size)
	p.bytes += size
	p.mu.Unlock()
	p.signal()
	return nil
}

func (p *confirmedPublisher) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// disconnected makes the writer write everything unconfirmed again (the bus's disconnect handler).
func (p *confirmedPublisher) disconnected() {
	p.rewind.Store(true)
	p.signal()
}

// rewindIfDisconnected goes back to the first unconfirmed message after a disconnect; called by the writer.
func (p *confirmedPublisher) rewindIfDisconnected() {
	r := p.nc.Stats().Reconnects
	if !p.rewind.Swap(false) && r == p.reconnects {
		return
	}
	p.reconnects = r
	p.mu.Lock()
	if p.sent > 0 {
		p.replays.Add(uint64(p.sent))
		p.log.Warn().Int("messages", p.sent).Msg("disconnected: publishing again what the server did not confirm")
	}
	p.sent = 0
	p.rewinds++
	p.mu.Unlock()
}

// run writes the queue in order and confirms it; it returns when the publisher is closed.
func (p *confirmedPublisher) run() {
	defer close(p.stopped)
	tick := time.NewTicker(confirmInterval)
	defer tick.Stop()
	for {
		p.write()
		select {
		case <-p.done:
			p.write()
			return
		case <-p.wake:
		case <-tick.C:
			p.confirm()
		}
	}
}

// write hands everything not yet written to nats.go, in order. nats.go may block here (it holds its lock while it
// dials a hung server): only this goroutine waits, the actors do not.
func (p *confirmedPublisher) write() {
	for {
		p.rewindIfDisconnected()
		if !p.nc.IsConnected() {
			// Disconnected (or not yet connected): the queue keeps everything, and nothing goes into nats.go's own
			// reconnect buffer, which would send it once more before the replay. The tick tries again.
			return
		}
		p.mu.Lock()
		if p.sent >= len(p.queue) {
			p.mu.Unlock()
			return
		}
		m, rewinds := p.queue[p.sent], p.rewinds
		p.mu.Unlock()
		err := p.next.PublishMsg(m)
		p.mu.Lock()
		if p.rewinds == rewinds && p.sent < len(p.queue) && p.queue[p.sent] == m {
			p.sent++
		}
		p.mu.Unlock()
		if err != nil {
			// Closed, or nats.go's own reconnect buffer full: the message stays unconfirmed and is written again
			// after the next connection.
			p.log.Debug().Err(err).Str("subject", m.Subject).Msg("publish deferred")
			return
		}
	}
}

// confirm flushes: what was written before a flush that returns on the same connection is confirmed.
func (p *confirmedPublisher) confirm() {
	p.mu.Lock()
	n, rewinds := p.sent, p.rewinds
	p.mu.Unlock()
	if n == 0 || !p.nc.IsConnected() {
		return
	}
	reconnects := p.nc.Stats().Reconnects
	if err := p.nc.FlushTimeout(2 * time.Second); err != nil {
		return
	}
	if p.nc.Stats().Reconnects != reconnects {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rewinds != rewinds || n > p.sent {
		return // a disconnect in between: nothing is confirmed
	}
	for i := 0; i < n; i++ {
		p.bytes -= p.sizes[i]
		p.queue[i] = nil
	}
	p.queue, p.sizes, p.sent = p.queue[n:], p.sizes[n:], p.sent-n
}

// close writes what is queued (bounded by wait) and stops the writer.
func (p *confirmedPublisher) close(wait time.Duration) {
	p.mu.Lock()
	select {
	case <-p.done:
	default:
		close(p.done)
	}
	p.mu.Unlock()
	select {
	case <-p.stopped:
	case <-time.After(wait):
		p.log.Warn().Msg("publisher queue not written out in time")
	}
	p.mu.Lock()
	unconfirmed, unsent := len(p.queue), len(p.queue)-p.sent
	p.mu.Unlock()
	if unconfirmed > 0 && p.nc.IsConnected() {
		_ = p.nc.FlushTimeout(wait)
	}
	if unsent > 0 {
		p.log.Warn().Int("messages", unsent).Msg("stopped with messages never written to the server (it was not reachable): lost")
	}
}

// depth is how many messages are queued or unconfirmed.
func (p *confirmedPublisher) depth() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}
