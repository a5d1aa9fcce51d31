package isp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSidecar accepts one connection and hands it to the test as a rawConn.
func fakeSidecar(t *testing.T) (addr string, accepted <-chan *rawConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	ch := make(chan *rawConn, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		t.Cleanup(func() { _ = conn.Close() })
		ch <- &rawConn{t: t, conn: conn, rd: bufio.NewReaderSize(conn, 1<<16)}
	}()
	return ln.Addr().String(), ch
}

func accept(t *testing.T, ch <-chan *rawConn) *rawConn {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(hangGuard(t)):
		t.Fatal("no connection")
		return nil
	}
}

func TestClientPeerSilent(t *testing.T) {
	checkNoLeaks(t)
	addr, ch := fakeSidecar(t)
	const interval = 50 * time.Millisecond
	start := time.Now()
	c := dial(t, addr, ClientConfig{HeartbeatInterval: interval, MaxMissedHeartbeats: 3}, ClientEvents{})
	r := accept(t, ch)
	go func() { // read the client's heartbeats, never answer
		_, _ = io.Copy(io.Discard, r.conn)
	}()
	select {
	case <-c.Done():
	case <-time.After(hangGuard(t)):
		t.Fatal("silent peer not detected")
	}
	elapsed := time.Since(start)
	if !errors.Is(c.Err(), ErrPeerSilent) {
		t.Errorf("got %v, want ErrPeerSilent", c.Err())
	}
	if elapsed < 3*interval {
		t.Errorf("gave up after %v, want at least %v", elapsed, 3*interval)
	}
	if st := c.Stats(); st.HeartbeatsOut < 2 {
		t.Errorf("sent %d heartbeats, want at least 2", st.HeartbeatsOut)
	}
}

func TestClientRequestTimeoutAndClose(t *testing.T) {
	checkNoLeaks(t)
	addr, ch := fakeSidecar(t)
	c := dial(t, addr, ClientConfig{RequestTimeout: 100 * time.Millisecond}, ClientEvents{})
	r := accept(t, ch)
	_, err := c.Status(context.Background())
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	if got := r.recv(); !strings.HasPrefix(got, `{"type":"STATUS","id":"status-`) {
		t.Errorf("sidecar got %s, want a STATUS", got)
	}
	// The late answer is counted and ignored.
	r.send(`{"type":"RESPONSE","id":"status-1","payload":{"success":true}}` + "\n")
	checkFor(t, 2*time.Second, func() error {
		if n := c.Stats().UnmatchedResponses; n != 1 {
			return fmt.Errorf("got %d unmatched responses, want 1", n)
		}
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Status(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}

	errc := make(chan error, 1)
	go func() {
		_, err := c.Configure(context.Background(), seedConfig)
		errc <- err
	}()
	for !strings.HasPrefix(r.recv(), `{"type":"CONFIG"`) { // wait until the CONFIG is out, then close
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("request in flight: got %v, want ErrClosed", err)
	}
	if !errors.Is(c.Err(), ErrClosed) {
		t.Errorf("got %v, want ErrClosed", c.Err())
	}
	if _, err := c.Status(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: got %v, want ErrClosed", err)
	}
}

func TestClientStatusRejected(t *testing.T) {
	checkNoLeaks(t)
	addr, ch := fakeSidecar(t)
	c := dial(t, addr, ClientConfig{}, ClientEvents{})
	r := accept(t, ch)
	go func() {
		r.recv()
		r.send(`{"type":"RESPONSE","id":"status-1","timestamp":1,"payload":{"success":false,"error":"not configured","uptime_s":3}}` + "\n")
	}()
	m, err := c.Status(context.Background())
	if !errors.Is(err, ErrRejected) || m == nil || !strings.Contains(string(m.Payload), `"uptime_s":3`) {
		t.Errorf("got %v, %v; want the message and ErrRejected", m, err)
	}
}

// clientEvents records what a Client reports.
type clientEvents struct {
	mu       sync.Mutex
	points   int
	frames   int
	metrics  []MetricsPayload
	badLines []*LineError
}

func (e *clientEvents) events() ClientEvents {
	return ClientEvents{
		Data: func(pts []Point) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.points += len(pts)
			e.frames++
		},
		Metrics: func(m MetricsPayload) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.metrics = append(e.metrics, m)
		},
		BadLine: func(le *LineError) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.badLines = append(e.badLines, le)
		},
	}
}

func (e *clientEvents) take() (points, frames int, bad []*LineError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	points, frames, bad = e.points, e.frames, e.badLines
	e.points, e.frames, e.badLines = 0, 0, nil
	return points, frames, bad
}

// TestClientHostileInput plays a sidecar sending bad lines, each followed by a HEARTBEAT with an id: the
// client's answers must be exactly the expected ones and then the heartbeat's, and it reports each bad line.
func TestClientHostileInput(t *testing.T) {
	checkNoLeaks(t)
	addr, ch := fakeSidecar(t)
	var ev clientEvents
	c := dial(t, addr, ClientConfig{MaxLineSize: 1024}, ev.events())
	r := accept(t, ch)
	data := string(appendDataFrame(nil, benchBatch(3), 1))
	tests := []struct {
		name, send string
		want       []string // the client's answers before the heartbeat's
		bad        []error  // the bad lines reported
		points     int
	}{
		{"not JSON", "hello\n", nil, []error{ErrNotJSON}, 0},
		{"unknown type", `{"type":"FOO","id":"u1"}` + "\n",
			[]string{response("u1", `{"success":false,"error":"unknown message type \"FOO\""}`)}, []error{ErrUnknownType}, 0},
		{"missing type", `{"id":"m1"}` + "\n",
			[]string{response("m1", `{"success":false,"error":"missing field \"type\""}`)}, []error{ErrMissingField}, 0},
		{"oversized line", `{"type":"DATA","id":"big","payload":{"points":[` + strings.Repeat(`{"key":"k"},`, 200) + "{}]}}\n" + data,
			[]string{response("big", `{"success":false,"error":"line longer than 1024 bytes"}`)}, []error{ErrLineTooLong}, 3},
		{"invalid UTF-8", "\xff\xfe\n", nil, []error{ErrInvalidUTF8}, 0},
		{"NUL bytes", "\x00\n" + data, nil, []error{ErrNotJSON}, 3},
		{"empty lines", "\n\r\n \n", nil, nil, 0},
		{"CRLF", strings.TrimSuffix(data, "\n") + "\r\n", nil, nil, 3},
		{"malformed DATA payload", `{"type":"DATA","id":"d1","payload":{"points":[{"value":1}]}}` + "\n" + data,
			[]string{response("d1", `{"success":false,"error":"bad payload: point 0: field \"key\": missing required field at offset 11"}`)},
			[]error{ErrBadPayload}, 3},
		{"malformed METRICS payload", `{"type":"METRICS","payload":{"counters":{"a":"x"}}}` + "\n", nil, []error{ErrBadPayload}, 0},
		{"CONFIG to the gateway", `{"type":"CONFIG","id":"c1","payload":{}}` + "\n",
			[]string{response("c1", `{"success":false,"error":"unexpected message type CONFIG from a sidecar"}`)}, []error{ErrUnexpectedType}, 0},
		{"RESPONSE with unknown id", `{"type":"RESPONSE","id":"x","payload":{"success":true}}` + "\n", nil, nil, 0},
		{"bad RESPONSE is not answered", `{"type":"RESPONSE","id":"x"}` + "\n", nil, []error{ErrMissingField}, 0},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ping := "ping-" + strconv.Itoa(i)
			r.send(tc.send + `{"type":"HEARTBEAT","id":"` + ping + `"}` + "\n")
			for j, w := range append(tc.want, response(ping, `{"success":true}`)) {
				if got := r.recv(); got != w {
					t.Errorf("answer %d: got  %s\nwant %s", j, got, w)
				}
			}
			points, _, bad := ev.take()
			if points != tc.points {
				t.Errorf("got %d points, want %d", points, tc.points)
			}
			if len(bad) != len(tc.bad) {
				t.Fatalf("got bad lines %v, want %v", bad, tc.bad)
			}
			for j := range bad {
				if !errors.Is(bad[j], tc.bad[j]) {
					t.Errorf("bad line %d: got %v, want %v", j, bad[j], tc.bad[j])
				}
			}
		})
	}
	t.Run("10000 lines pipelined", func(t *testing.T) {
		var b strings.Builder
		for range 10000 {
			b.WriteString(data)
		}
		// The client reads its lines in order and reports each frame before it reads the next, so the heartbeat's
		// answer comes after the last frame was reported: no wall-clock bound on how fast 10,000 frames decode.
		b.WriteString(`{"type":"HEARTBEAT","id":"bulk"}` + "\n")
		r.send(b.String())
		if got, want := r.recv(), response("bulk", `{"success":true}`); got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
		if points, frames, bad := ev.take(); frames != 10000 || points != 30000 || len(bad) != 0 {
			t.Errorf("got %d frames, %d points and bad lines %v, want 10000, 30000 and none", frames, points, bad)
		}
	})
	t.Run("half line then disconnect", func(t *testing.T) {
		r.send(`{"type":"DATA","payload":{"points":[`)
		_ = r.conn.Close()
		select {
		case <-c.Done():
		case <-time.After(hangGuard(t)):
			t.Fatal("client still connected")
		}
		if !errors.Is(c.Err(), io.EOF) {
			t.Errorf("got %v, want io.EOF", c.Err())
		}
		if _, _, bad := ev.take(); len(bad) != 1 || !errors.Is(bad[0], ErrNotJSON) {
			t.Errorf("got bad lines %v, want the half line", bad)
		}
	})
	if st := c.Stats(); st.BadLines == 0 || st.PointsIn == 0 || st.UnmatchedResponses != 1 {
		t.Errorf("got stats %+v", st)
	}
}

func TestClientPanickingCallback(t *testing.T) {
	checkNoLeaks(t)
	s := startServer(t, ServerConfig{}, &testHandler{})
	c := dial(t, s.Addr().String(), ClientConfig{}, ClientEvents{Data: func([]Point) { panic("consumer bug") }})
	waitConnections(t, s, 1)
	_ = s.BroadcastData(benchBatch(1))
	select {
	case <-c.Done():
	case <-time.After(hangGuard(t)):
		t.Fatal("client survived a panic in its reader")
	}
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "consumer bug") {
		t.Errorf("got %v, want the panic", err)
	}
}

func TestDialError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	if _, err := Dial(context.Background(), ClientConfig{Address: addr, DialTimeout: time.Second}, ClientEvents{}); err == nil {
		t.Error("got no error dialing a closed port")
	}
}
