package mqtt

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// bufConn is the connection both MQTT clients read and write through. The Paho packets packages read a PUBACK
// in three reads (the type byte, the length byte by byte, the body) and write every packet with a write of its
// own (paho.golang's as several, one per part), and neither Paho client buffers its connection. With a message per point that was most
// of the sink's CPU: the profile of bench/mqtt_test.go's per-point row put 40% of the process's CPU in those
// system calls (about 9 µs per message of 15). So reads go through a bufio.Reader (one read takes the PUBACKs of
// many messages), and writes are coalesced: Write appends the packet to a pending buffer and a flusher goroutine
// writes what has gathered with one write(2) — under load, the packets of many messages; idle, each at once.
// nats.go writes the same way (a buffered writer and a flusher goroutine kicked by each publish).
//
// What a Write returns is therefore "in the connection's buffer", not "in the socket": for QoS 0 (acknowledged
// once written) the loss window grows by what the buffer holds (at most maxPending bytes, written within
// microseconds unless the broker stops reading). QoS 1 and 2 wait for the broker's acknowledgement anyway.
//
// The flusher is the connection's: it starts with it and Close waits for it, so it never outlives the client,
// hence never the sink's publish worker that closes the client.
type bufConn struct {
	net.Conn
	r       *bufio.Reader
	timeout time.Duration // per write(2): a broker that stops reading fails the connection

	pkt sync.Mutex // Lock/Unlock: paho.golang's packets hold it across the parts of one packet (written apart)

	mu      sync.Mutex
	drained sync.Cond // signalled after each write(2) and on failure
	pending []byte
	spare   []byte
	held    bool  // the publish worker has more packets coming: gather them, write at release
	werr    error // the first write error, or net.ErrClosed after Close: every later Write returns it
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{} // the flusher ended
	once    sync.Once
}

// maxPending bounds what Write buffers before it waits for the flusher: the broker's pace is the sink's, and
// memory stays bounded when it stops reading.
const maxPending = 256 << 10

func newBufConn(c net.Conn, timeout time.Duration) *bufConn {
	b := &bufConn{Conn: c, r: bufio.NewReaderSize(c, 32<<10), timeout: timeout,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	b.drained.L = &b.mu
	go b.flush()
	return b
}

// dialConn dials address, with TLS when cfg is set (the server name defaults to the address's host), and wraps
// the connection.
func dialConn(ctx context.Context, address string, cfg *tls.Config, timeout time.Duration) (*bufConn, error) {
	d := &net.Dialer{Timeout: timeout}
	var c net.Conn
	var err error
	if cfg != nil {
		cfg = cfg.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(address)
		}
		c, err = (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, "tcp", address)
	} else {
		c, err = d.DialContext(ctx, "tcp", address)
	}
	if err != nil {
		return nil, err
	}
	return newBufConn(c, timeout), nil
}

func (b *bufConn) Lock()   { b.pkt.Lock() }
func (b *bufConn) Unlock() { b.pkt.Unlock() }

// SetWriteDeadline is the flusher's alone (a deadline per write(2)): a Write here is a copy into memory, and a
// caller's deadline around it would otherwise clear the flusher's.
func (b *bufConn) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline sets the read deadline only, for the same reason.
func (b *bufConn) SetDeadline(t time.Time) error { return b.Conn.SetReadDeadline(t) }

// Read reads through the buffer; both clients read from one goroutine only (the CONNACK, then the reader).
func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// Write buffers p (a whole packet or a part of one) for the flusher; it waits while maxPending bytes are pending.
func (b *bufConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	for b.werr == nil && len(b.pending) >= maxPending {
		b.drained.Wait()
	}
	if b.werr != nil {
		err := b.werr
		b.mu.Unlock()
		return 0, err
	}
	b.pending = append(b.pending, p...)
	wait := b.held && len(b.pending) < maxPending
	b.mu.Unlock()
	if !wait {
		b.wake()
	}
	return len(p), nil
}

func (b *bufConn) wake() {
	select {
	case b.kick <- struct{}{}:
	default: // a kick is already waiting: the flusher will take these bytes with the others
	}
}

// hold makes Write gather packets without waking the flusher until release: the publish worker holds the
// connection while it publishes a delivery's messages (and the next deliveries already waiting), so they go out
// in one write(2) rather than in one per few packets (measured: ~4 packets per write without it). A packet
// another goroutine writes meanwhile (a PUBREL, a PINGREQ) waits for the release too, and a full buffer is
// written regardless.
func (b *bufConn) hold() {
	b.mu.Lock()
	b.held = true
	b.mu.Unlock()
}

// release ends hold and writes what gathered.
func (b *bufConn) release() {
	b.mu.Lock()
	b.held = false
	n := len(b.pending)
	b.mu.Unlock()
	if n > 0 {
		b.wake()
	}
}

// flush writes what is pending, one write(2) per turn, until Close; a failed write fails the connection (the
// reader then sees it closed, and the client reports the connection lost).
func (b *bufConn) flush() {
	defer close(b.done)
	for {
		select {
		case <-b.kick:
		case <-b.stop:
			b.writePending() // the last packets (a DISCONNECT) go out when the broker still reads
			return
		}
		if !b.writePending() {
			return
		}
	}
}

func (b *bufConn) writePending() bool {
	b.mu.Lock()
	if len(b.pending) == 0 { // a kick whose bytes went out with an earlier write
		b.mu.Unlock()
		return true
	}
	buf := b.pending // the two buffers swap: Write fills one while the other is written
	b.pending, b.spare = b.spare[:0], nil
	b.mu.Unlock()
	err := b.Conn.SetWriteDeadline(time.Now().Add(b.timeout))
	if err == nil {
		_, err = b.Conn.Write(buf)
	}
	b.mu.Lock()
	b.spare = buf[:0]
	if err != nil && b.werr == nil {
		b.werr = err
	}
	b.drained.Broadcast()
	b.mu.Unlock()
	if err != nil {
		_ = b.Conn.Close()
		return false
	}
	return true
}

// Close stops the flusher after a last write of what is pending (bounded: a broker that does not read gets its
// connection closed under it), then closes the connection. It may be called more than once.
func (b *bufConn) Close() error {
	var err error
	b.once.Do(func() {
		b.mu.Lock()
		if b.werr == nil {
			b.werr = net.ErrClosed
		}
		b.drained.Broadcast()
		b.mu.Unlock()
		close(b.stop)
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case <-b.done:
		case <-t.C:
		}
		err = b.Conn.Close()
		<-b.done // the close ended a blocked write
	})
	return err
}
