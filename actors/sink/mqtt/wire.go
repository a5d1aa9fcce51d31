package mqtt

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// flight is what both clients (client3.go, client5.go) keep of one connection besides the library's packets: the
// packet ids of the messages waiting for the broker, the reader's and the keep alive's goroutines, and the lost
// signal. Only the publish worker takes ids (take), only the reader completes them (complete), and only the
// confirm worker waits on them (the waiter of each id, made once, so a publish allocates no closure); an id is
// busy from its PUBLISH until the confirm worker took its outcome, so it is never reused while someone may still
// wait on it.
type flight struct {
	conn *bufConn
	sig  *lostSignal
	ids  []*slot // ids[id-1]: the message with that packet id, 1..len(ids)
	next int     // index of the next packet id to use

	timeout  time.Duration
	lastRecv atomic.Int64 // UnixNano of the last packet read
	stop     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
}

// slot is one packet id; ch carries its outcome (cap 1: the reader never blocks on it).
type slot struct {
	busy  atomic.Bool
	topic string // for the error of a refusal
	ch    chan error
	wait  waiter
}

// newFlight keeps the ids of a window of inflight messages: the window, the one the confirm worker waits on and
// the one being put into the window.
func newFlight(conn *bufConn, inflight int, timeout time.Duration) *flight {
	f := &flight{conn: conn, sig: newLost(), timeout: timeout, stop: make(chan struct{})}
	f.ids = make([]*slot, ringSize(inflight))
	for i := range f.ids {
		s := &slot{ch: make(chan error, 1)}
		s.wait = f.waiter(s)
		f.ids[i] = s
	}
	f.lastRecv.Store(time.Now().UnixNano())
	return f
}

// ringSize is the number of packet ids a client of window inflight uses, 1..ringSize.
func ringSize(inflight int) int {
	n := inflight + 2
	if n > 65535 || n < 3 {
		n = 65535
	}
	return n
}

// releaseSession runs before a client's first publish when the broker kept a session for its client id (the
// CONNACK's session present: persistent = true). The session may hold QoS 2 messages of an earlier connection
// that the broker acknowledged with PUBREC and still waits to be released (the connection ended before the
// PUBREL). Each new connection numbers its packet ids from 1, so without this a new QoS 2 message under such an
// id meets the held one: a broker that delivers on PUBLISH and keeps only the id (MQTT §4.3.3, method B) takes the
// new message for a duplicate and drops it while the sink acknowledges it to the stream, a loss; mosquitto 2.0
// overwrites the held message with the new one instead (TestPersistentSessionReleasesEarlierQoS2 without this:
// only the new one arrived; the held one was never acknowledged to the stream, so it comes again). Paho's Clients resend the
// in-flight messages they stored instead; this sink keeps no store across connections (the stream is its store:
// what was not acknowledged comes again), so it releases every id it will use, 1..n, and reads the n PUBCOMPs: a
// held message is then delivered (and comes again from the stream: a duplicate within the README's window), an
// id the broker holds nothing for is answered at once (§4.3.3, §3.7: PUBCOMP, on MQTT 5 with 0x92 "packet
// identifier not found"). rel writes a PUBREL, comp reads the next packet and says whether it is a PUBCOMP of
// which id.
func releaseSession(conn *bufConn, n int, timeout time.Duration, rel func(id uint16) error, comp func() (uint16, bool, error)) error {
	for id := 1; id <= n; id++ {
		if err := rel(uint16(id)); err != nil {
			return err
		}
	}
	if err := conn.SetReadDeadline(time.Now().Add(2 * timeout)); err != nil {
		return err
	}
	for got := 0; got < n; got++ {
		id, ok, err := comp()
		if err != nil {
			return fmt.Errorf("%d of %d PUBCOMPs: %w", got, n, err)
		}
		if !ok || id == 0 || int(id) > n {
			return fmt.Errorf("the broker answered the session's PUBRELs with another packet (id %d)", id)
		}
	}
	return conn.SetReadDeadline(time.Time{})
}

// take returns the next packet id for a message to topic.
func (f *flight) take(topic string) (*slot, uint16, error) {
	s := f.ids[f.next]
	if !s.busy.CompareAndSwap(false, true) {
		return nil, 0, fmt.Errorf("packet id %d is still in flight (max_inflight %d is too close to MQTT's 65535)", f.next+1, len(f.ids)-2)
	}
	s.topic = topic
	id := uint16(f.next + 1)
	if f.next++; f.next == len(f.ids) {
		f.next = 0
	}
	return s, id, nil
}

// slot is the slot of a packet id in flight; nil for an id the client did not send.
func (f *flight) slot(id uint16) *slot {
	if id == 0 || int(id) > len(f.ids) || !f.ids[id-1].busy.Load() {
		return nil
	}
	return f.ids[id-1]
}

// complete hands the outcome of packet id to its waiter; an error when the broker acknowledges an id not in
// flight, or one twice (a protocol error: the connection is failed).
func (f *flight) complete(id uint16, outcome error, what string) error {
	s := f.slot(id)
	if s == nil {
		return fmt.Errorf("the broker sent %s for packet id %d, which is not in flight", what, id)
	}
	select {
	case s.ch <- outcome:
		return nil
	default:
		return fmt.Errorf("the broker sent %s twice for packet id %d", what, id)
	}
}

// written is QoS 0's outcome: in the connection's buffer.
func written(<-chan struct{}, time.Duration) error { return nil }

func (f *flight) waiter(s *slot) waiter {
	return func(done <-chan struct{}, timeout time.Duration) error {
		select {
		case err := <-s.ch: // most often, under load: no timer to make
			s.busy.Store(false)
			return err
		default:
		}
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case err := <-s.ch:
			s.busy.Store(false)
			return err
		case <-f.sig.ch:
			select {
			case err := <-s.ch: // answered before the connection ended (a refusal, then the broker's DISCONNECT)
				s.busy.Store(false)
				return err
			default:
			}
			return f.sig.get()
		case <-done:
			return errStopped
		case <-t.C:
			return fmt.Errorf("no acknowledgement from the broker within %v", timeout)
		}
	}
}

// fail ends the connection for err.
func (f *flight) fail(err error) {
	f.sig.fire(err)
	_ = f.conn.Close()
}

// keepAlive writes ping every three quarters of the keep alive (the broker allows one and a half) and fails the
// connection when nothing came back within the timeout of one.
func (f *flight) keepAlive(every time.Duration, ping func() error) {
	defer f.wg.Done()
	if every <= 0 {
		return
	}
	t := time.NewTicker(every * 3 / 4)
	defer t.Stop()
	var pinged int64 // when the unanswered PINGREQ went out, 0 when answered
	for {
		select {
		case <-f.stop:
			return
		case <-f.sig.ch:
			return
		case now := <-t.C:
			if pinged != 0 && f.lastRecv.Load() < pinged {
				if now.Sub(time.Unix(0, pinged)) > f.timeout {
					f.fail(fmt.Errorf("connection lost: no PINGRESP within %v", f.timeout))
					return
				}
				continue
			}
			pinged = now.UnixNano()
			if err := ping(); err != nil {
				f.fail(fmt.Errorf("connection lost: %w", err))
				return
			}
		}
	}
}

// errLost is the lost signal's reason once the client closed.
var errLost = errors.New("the client closed")

// end writes the last packet (DISCONNECT), closes the connection after writing what is pending, and waits for the
// client's goroutines.
func (f *flight) end(disconnect func() error) {
	f.once.Do(func() {
		_ = disconnect()
		close(f.stop)
		_ = f.conn.Close()
		f.sig.fire(errLost)
		f.wg.Wait()
	})
}

func (f *flight) hold()                 { f.conn.hold() }
func (f *flight) release()              { f.conn.release() }
func (f *flight) lost() <-chan struct{} { return f.sig.ch }
func (f *flight) err() error            { return f.sig.get() }
