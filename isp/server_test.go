package isp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testHandler is a sidecar that remembers its config and rejects what reject says.
type testHandler struct {
	mu      sync.Mutex
	cfg     *ConfigPayload
	reject  error
	panicky bool
}

type testStatus struct {
	Configured bool `json:"configured"`
	Registers  int  `json:"registers"`
}

func (h *testHandler) Configure(ctx context.Context, cfg ConfigPayload) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.panicky {
		panic("handler bug")
	}
	if h.reject != nil {
		return h.reject
	}
	h.cfg = &cfg
	return nil
}

func (h *testHandler) Status(ctx context.Context) any {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := testStatus{Configured: h.cfg != nil}
	if h.cfg != nil {
		s.Registers = len(h.cfg.Registers)
	}
	return s
}

var _ ServerHandler = (*testHandler)(nil)

// checkNoLeaks fails the test if goroutines started during it are still running when it ends. Call it first,
// so its cleanup runs after every other.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		checkFor(t, hangGuard(t), func() error {
			if n := runtime.NumGoroutine(); n > base {
				buf := make([]byte, 1<<16)
				return fmt.Errorf("%d goroutines, want at most %d:\n%s", n, base, buf[:runtime.Stack(buf, true)])
			}
			return nil
		})
	})
}

// hangGuard is how long a test waits for what must happen: a guard against a hang, not a bound on speed, so a
// loaded machine (go test -race ./... on two shared cores) cannot fail it. It ends shortly before the test
// binary's -timeout, so the failure names what was awaited instead of a panic's goroutine dump.
func hangGuard(t *testing.T) time.Duration {
	if d, ok := t.Deadline(); ok {
		if g := time.Until(d) - 5*time.Second; g > time.Second {
			return g
		}
		return time.Second
	}
	return time.Minute
}

// checkFor polls f until it returns nil or the deadline passes.
func checkFor(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startServer(t *testing.T, cfg ServerConfig, h ServerHandler) *Server {
	t.Helper()
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:0"
	}
	s := NewServer(cfg, h)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

func dial(t *testing.T, addr string, cfg ClientConfig, ev ClientEvents) *Client {
	t.Helper()
	cfg.Address = addr
	c, err := Dial(context.Background(), cfg, ev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func waitConnections(t *testing.T, s *Server, n int64) {
	t.Helper()
	checkFor(t, hangGuard(t), func() error {
		if got := s.Metrics().Connections; got != n {
			return fmt.Errorf("got %d connections, want %d", got, n)
		}
		return nil
	})
}

var seedConfig = ConfigPayload{Mode: "tcp", Address: "127.0.0.1:502", TimeoutMS: 3000, IntervalMS: 2000,
	Registers: []Register{{Key: "temperature", Address: 0, Quantity: 1, Type: "float32", Function: 3, Scale: 0.1,
		DeviceID: 1, Tags: map[string]string{"unit": "°C"}}}}

func TestClientServerRequests(t *testing.T) {
	checkNoLeaks(t)
	h := &testHandler{}
	s := startServer(t, ServerConfig{Name: "test-sidecar"}, h)
	c := dial(t, s.Addr().String(), ClientConfig{}, ClientEvents{})
	ctx := context.Background()

	t.Run("config accepted", func(t *testing.T) {
		resp, err := c.Configure(ctx, seedConfig)
		if err != nil || !resp.Success {
			t.Fatalf("got %+v, %v; want success", resp, err)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.cfg == nil || h.cfg.Registers[0].Tags["unit"] != "°C" || h.cfg.Registers[0].Scale != 0.1 {
			t.Errorf("handler got %+v, want the seed config", h.cfg)
		}
	})
	t.Run("status", func(t *testing.T) {
		m, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := `{"success":true,"name":"test-sidecar","configured":true,"registers":1}`
		if m.Type != TypeResponse || string(m.Payload) != want {
			t.Errorf("got %s %s, want RESPONSE %s", m.Type, m.Payload, want)
		}
	})
	t.Run("config rejected", func(t *testing.T) {
		h.mu.Lock()
		h.reject = errors.New("modbus: dial 127.0.0.1:502: connection refused")
		h.mu.Unlock()
		defer func() { h.mu.Lock(); h.reject = nil; h.mu.Unlock() }()
		resp, err := c.Configure(ctx, seedConfig)
		if !errors.Is(err, ErrRejected) || resp == nil || resp.Success {
			t.Fatalf("got %+v, %v; want ErrRejected", resp, err)
		}
		if want := "isp: rejected by sidecar: modbus: dial 127.0.0.1:502: connection refused"; err.Error() != want {
			t.Errorf("got %q, want %q", err, want)
		}
	})
	t.Run("invalid config not sent", func(t *testing.T) {
		before := c.Stats().MessagesOut
		_, err := c.Configure(ctx, ConfigPayload{Mode: "tcp", Registers: []Register{{Key: "k", Function: 9, Quantity: 1, Type: "int16"}}})
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("got %v, want ErrInvalidConfig", err)
		}
		if got := c.Stats().MessagesOut; got != before {
			t.Errorf("sent %d messages, want none", got-before)
		}
	})
	t.Run("concurrent requests", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				if _, err := c.Status(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	})
}

func TestBroadcastDataAndMetrics(t *testing.T) {
	checkNoLeaks(t)
	s := startServer(t, ServerConfig{}, &testHandler{})
	type sink struct {
		mu      sync.Mutex
		points  []Point
		metrics []MetricsPayload
	}
	var sinks [2]sink
	for i := range sinks {
		k := &sinks[i]
		dial(t, s.Addr().String(), ClientConfig{}, ClientEvents{
			Data: func(pts []Point) {
				k.mu.Lock()
				defer k.mu.Unlock()
				for _, p := range pts {
					p.Tags = append([]Tag(nil), p.Tags...)
					k.points = append(k.points, p)
				}
			},
			Metrics: func(m MetricsPayload) {
				k.mu.Lock()
				defer k.mu.Unlock()
				k.metrics = append(k.metrics, m)
			},
		})
	}
	waitConnections(t, s, 2)
	pts := benchBatch(100)
	if err := s.BroadcastData(pts[:60]); err != nil {
		t.Fatal(err)
	}
	if err := s.BroadcastData(pts[60:]); err != nil {
		t.Fatal(err)
	}
	if err := s.SendMetrics(MetricsPayload{Counters: map[string]float64{"polls": 12, "poll_errors": 1}}); err != nil {
		t.Fatal(err)
	}
	for i := range sinks {
		k := &sinks[i]
		checkFor(t, hangGuard(t), func() error {
			k.mu.Lock()
			defer k.mu.Unlock()
			if len(k.points) != 100 || len(k.metrics) != 1 {
				return fmt.Errorf("client %d: got %d points and %d metrics, want 100 and 1", i, len(k.points), len(k.metrics))
			}
			return nil
		})
		for j := range pts {
			if err := samePoint(&k.points[j], &pts[j]); err != nil {
				t.Fatalf("client %d point %d: %v", i, j, err)
			}
		}
		if m := k.metrics[0].Counters; m["polls"] != 12 || m["poll_errors"] != 1 {
			t.Errorf("client %d: got metrics %v", i, m)
		}
	}
	m := s.Metrics()
	if m.PointsSent != 200 || m.LastDataTime.IsZero() || m.MessagesSent < 6 {
		t.Errorf("got server metrics %+v, want 200 points sent", m)
	}
}

func TestHeartbeatsFlow(t *testing.T) {
	checkNoLeaks(t)
	const interval = 20 * time.Millisecond
	s := startServer(t, ServerConfig{HeartbeatInterval: interval}, &testHandler{})
	c := dial(t, s.Addr().String(), ClientConfig{HeartbeatInterval: interval}, ClientEvents{})
	checkFor(t, hangGuard(t), func() error {
		st := c.Stats()
		if st.HeartbeatsIn < 5 || st.HeartbeatsOut < 5 || s.Metrics().MessagesReceived < 5 {
			return fmt.Errorf("got client stats %+v and server metrics %+v, want 5 heartbeats each way", st, s.Metrics())
		}
		return nil
	})
	select {
	case <-c.Done():
		t.Fatalf("connection ended: %v", c.Err())
	default:
	}
	// They keep flowing: one more heartbeat arrives, and the last message's time moves with it (no bound on how
	// soon, which a loaded machine could break).
	before := c.Stats()
	checkFor(t, hangGuard(t), func() error {
		if st := c.Stats(); st.HeartbeatsIn <= before.HeartbeatsIn || !st.LastMessage.After(before.LastMessage) {
			return fmt.Errorf("no heartbeat after %d (last message at %v)", before.HeartbeatsIn, before.LastMessage)
		}
		return nil
	})
}

func TestServerStopClosesClients(t *testing.T) {
	checkNoLeaks(t)
	s := NewServer(ServerConfig{Address: "127.0.0.1:0"}, &testHandler{})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var clients []*Client
	for range 3 {
		clients = append(clients, dial(t, s.Addr().String(), ClientConfig{}, ClientEvents{}))
	}
	waitConnections(t, s, 3)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		select {
		case <-c.Done():
			if c.Err() == nil || errors.Is(c.Err(), ErrClosed) {
				t.Errorf("client %d: got Err %v, want the read error", i, c.Err())
			}
		case <-time.After(hangGuard(t)):
			t.Fatalf("client %d: Done not closed after Stop", i)
		}
	}
	if _, err := clients[0].Status(context.Background()); err == nil {
		t.Error("Status after the connection ended: got no error")
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestServerStartContextCancel(t *testing.T) {
	checkNoLeaks(t)
	ctx, cancel := context.WithCancel(context.Background())
	s := NewServer(ServerConfig{Address: "127.0.0.1:0"}, &testHandler{})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err == nil {
		t.Error("second Start: got no error")
	}
	c := dial(t, s.Addr().String(), ClientConfig{}, ClientEvents{})
	cancel()
	select {
	case <-c.Done():
	case <-time.After(hangGuard(t)):
		t.Fatal("client still connected after the server's context ended")
	}
	_ = s.Stop()
}

func TestServerHandlerPanic(t *testing.T) {
	checkNoLeaks(t)
	s := startServer(t, ServerConfig{}, &testHandler{panicky: true})
	c := dial(t, s.Addr().String(), ClientConfig{RequestTimeout: 2 * time.Second}, ClientEvents{})
	if _, err := c.Configure(context.Background(), seedConfig); err == nil {
		t.Fatal("got no error from a panicking handler")
	}
	<-c.Done()
	// The server survives and takes the next gateway.
	c2 := dial(t, s.Addr().String(), ClientConfig{}, ClientEvents{})
	if _, err := c2.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
}

var timestampRE = regexp.MustCompile(`"timestamp":[0-9]+`)

// rawConn is a telnet-style peer: it writes lines as they are and reads lines with timestamps replaced by T.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	rd   *bufio.Reader
}

func rawDial(t *testing.T, addr string) *rawConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &rawConn{t: t, conn: conn, rd: bufio.NewReaderSize(conn, 1<<16)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := r.conn.Write([]byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

// recv returns the next line that is not a HEARTBEAT without id, with timestamps as T.
func (r *rawConn) recv() string {
	r.t.Helper()
	for {
		_ = r.conn.SetReadDeadline(time.Now().Add(hangGuard(r.t)))
		line, err := r.rd.ReadString('\n')
		if err != nil {
			r.t.Fatalf("read: %v (got %q)", err, line)
		}
		line = timestampRE.ReplaceAllString(strings.TrimSuffix(line, "\n"), `"timestamp":T`)
		if line != `{"type":"HEARTBEAT","timestamp":T}` {
			return line
		}
	}
}

func response(id, payload string) string {
	return `{"type":"RESPONSE","id":"` + id + `","timestamp":T,"payload":` + payload + `}`
}

func TestServerTelnetSession(t *testing.T) {
	checkNoLeaks(t)
	s := startServer(t, ServerConfig{Name: "my-sidecar"}, &testHandler{})
	r := rawDial(t, s.Addr().String())
	steps := []struct{ send, want string }{
		{seedConfigLine + "\n", response("test-001", `{"success":true}`)},
		{seedStatusLine + "\n", response("status-001", `{"success":true,"name":"my-sidecar","configured":true,"registers":0}`)},
		{`{"type":"HEARTBEAT","id":"hb-1","timestamp":1751200000000000000}` + "\n", response("hb-1", `{"success":true}`)},
		{`{"type":"CONFIG","id":"test-002","timestamp":1,"payload":{"mode":"tcp","registers":[{"key":"a","function":7,"quantity":1,"type":"int16"}]}}` + "\n",
			response("test-002", `{"success":false,"error":"isp: invalid config: registers[0].function: 7 is not in 1..4"}`)},
	}
	for i, st := range steps {
		r.send(st.send)
		if got := r.recv(); got != st.want {
			t.Errorf("step %d: got  %s\nwant %s", i, got, st.want)
		}
	}
}

// TestServerHostileInput sends each bad input, then a HEARTBEAT with an id: the answers must be exactly the
// expected ones followed by the heartbeat's, which shows the connection is still served.
func TestServerHostileInput(t *testing.T) {
	checkNoLeaks(t)
	s := startServer(t, ServerConfig{MaxLineSize: 1024}, &testHandler{})
	tests := []struct {
		name, send string
		want       []string
	}{
		{"not JSON", "hello world\n", nil},
		{"unknown type", `{"type":"FOO","id":"u1","timestamp":1}` + "\n",
			[]string{response("u1", `{"success":false,"error":"unknown message type \"FOO\""}`)}},
		{"missing type", `{"id":"m1","timestamp":1}` + "\n",
			[]string{response("m1", `{"success":false,"error":"missing field \"type\""}`)}},
		{"oversized line", `{"type":"CONFIG","id":"big","payload":"` + strings.Repeat("x", 5000) + `"}` + "\n",
			[]string{response("big", `{"success":false,"error":"line longer than 1024 bytes"}`)}},
		{"invalid UTF-8", "{\"type\":\"STATUS\",\"id\":\"i1\",\"x\":\"\xff\"}\n",
			[]string{response("i1", `{"success":false,"error":"invalid UTF-8: byte 0xff in a string at column 33"}`)}},
		{"NUL bytes", "\x00\x00\x00\n", nil},
		{"empty lines", "\n\n\r\n   \n", nil},
		{"CRLF", `{"type":"STATUS","id":"crlf"}` + "\r\n",
			[]string{response("crlf", `{"success":true,"configured":false,"registers":0}`)}},
		{"DATA to a sidecar", `{"type":"DATA","id":"d1","payload":{"points":[]}}` + "\n",
			[]string{response("d1", `{"success":false,"error":"unexpected message type DATA from a gateway"}`)}},
		{"malformed CONFIG payload", `{"type":"CONFIG","id":"c1","payload":{"mode":5}}` + "\n",
			[]string{response("c1", `{"success":false,"error":"bad payload: json: cannot unmarshal number into Go struct field ConfigPayload.mode of type string"}`)}},
		{"RESPONSE with unknown id", `{"type":"RESPONSE","id":"nobody","payload":{"success":true}}` + "\n", nil},
		{"bad RESPONSE is not answered", `{"type":"RESPONSE","id":"r1"}` + "\n", nil},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rawDial(t, s.Addr().String())
			ping := "ping-" + strconv.Itoa(i)
			r.send(tc.send + `{"type":"HEARTBEAT","id":"` + ping + `"}` + "\n")
			want := append(tc.want, response(ping, `{"success":true}`))
			for j, w := range want {
				if got := r.recv(); got != w {
					t.Errorf("answer %d: got  %s\nwant %s", j, got, w)
				}
			}
		})
	}
	t.Run("10000 lines pipelined", func(t *testing.T) {
		r := rawDial(t, s.Addr().String())
		var b strings.Builder
		for i := range 10000 {
			b.WriteString(`{"type":"HEARTBEAT","id":"p` + strconv.Itoa(i) + `"}` + "\n")
		}
		go func() { _, _ = r.conn.Write([]byte(b.String())) }()
		for i := range 10000 {
			if got, want := r.recv(), response("p"+strconv.Itoa(i), `{"success":true}`); got != want {
				t.Fatalf("answer %d: got %s, want %s", i, got, want)
			}
		}
	})
	t.Run("half line then disconnect", func(t *testing.T) {
		before := s.Metrics().ConnectionsTotal
		r := rawDial(t, s.Addr().String())
		r.send(`{"type":"STATUS","id":"ha`)
		_ = r.conn.Close()
		r2 := rawDial(t, s.Addr().String())
		r2.send(seedStatusLine + "\n")
		if got := r2.recv(); !strings.HasPrefix(got, `{"type":"RESPONSE","id":"status-001"`) {
			t.Errorf("got %s, want the STATUS answer", got)
		}
		if got := s.Metrics().ConnectionsTotal - before; got != 2 {
			t.Errorf("got %d connections, want 2", got)
		}
	})
}

func TestServerDropsSilentGateway(t *testing.T) {
	checkNoLeaks(t)
	s := startServer(t, ServerConfig{HeartbeatInterval: 20 * time.Millisecond}, &testHandler{})
	r := rawDial(t, s.Addr().String())
	waitConnections(t, s, 1)
	waitConnections(t, s, 0) // it never sends anything
	_ = r.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		if _, err := r.rd.ReadString('\n'); err != nil {
			break // closed by the server
		}
	}
}

// BenchmarkDataFrames measures a sidecar broadcasting DATA frames of 100 points to one gateway over loopback:
// encode, write, read, decode and deliver.
func BenchmarkDataFrames(b *testing.B) {
	const frame = 100
	s := NewServer(ServerConfig{Address: "127.0.0.1:0"}, &testHandler{})
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer s.Stop()
	var got atomic.Int64
	c, err := Dial(context.Background(), ClientConfig{Address: s.Addr().String()}, ClientEvents{
		Data: func(pts []Point) { got.Add(int64(len(pts))) },
	})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for s.Metrics().Connections != 1 {
		time.Sleep(time.Millisecond)
	}
	pts := benchBatch(frame)
	if err := s.BroadcastData(pts); err != nil { // warm the buffers
		b.Fatal(err)
	}
	for got.Load() != frame {
		time.Sleep(time.Millisecond)
	}
	got.Store(0)
	b.SetBytes(int64(len(AppendBatch(nil, pts))))
	pp := startPerPoint(b, frame)
	for range b.N { // not b.Loop: the wait for the last frame below must be timed too
		if err := s.BroadcastData(pts); err != nil {
			b.Fatal(err)
		}
	}
	want := int64(b.N) * frame
	for got.Load() < want {
		runtime.Gosched()
	}
	pp.stop(b)
}

// panickyListener panics in Accept the first n times.
type panickyListener struct {
	net.Listener
	n atomic.Int32
}

func (l *panickyListener) Accept() (net.Conn, error) {
	if l.n.Add(-1) >= 0 {
		panic("listener bug")
	}
	return l.Listener.Accept()
}

// TestServerAcceptSurvivesPanics: a panic in the accept loop is reported and the server keeps accepting; too
// many in a row end the loop, reported too.
func TestServerAcceptSurvivesPanics(t *testing.T) {
	for _, tc := range []struct {
		name   string
		panics int32
		accept bool
	}{
		{"a few panics", 3, true},
		{"a panic every time", maxAcceptPanics, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeaks(t)
			var mu sync.Mutex
			var reported []error
			srv := NewServer(ServerConfig{Address: "127.0.0.1:0", OnError: func(err error) {
				mu.Lock()
				defer mu.Unlock()
				reported = append(reported, err)
			}}, &testHandler{})
			srv.wrapListener = func(ln net.Listener) net.Listener {
				l := &panickyListener{Listener: ln}
				l.n.Store(tc.panics)
				return l
			}
			if err := srv.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer srv.Stop()
			deadline := time.Now().Add(hangGuard(t))
			for {
				mu.Lock()
				n := len(reported)
				mu.Unlock()
				if n == int(tc.panics) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("got %d errors reported, want %d", n, tc.panics)
				}
				time.Sleep(10 * time.Millisecond)
			}
			mu.Lock()
			for _, err := range reported {
				if !errors.Is(err, ErrAcceptPanic) || !strings.Contains(err.Error(), "listener bug") {
					t.Errorf("reported %v, want ErrAcceptPanic with the panic's value", err)
				}
			}
			last := reported[len(reported)-1]
			mu.Unlock()
			if gave := strings.Contains(last.Error(), "no longer accepting"); gave == tc.accept {
				t.Errorf("last report %q: want giving up %v", last, !tc.accept)
			}
			if !tc.accept {
				return
			}
			c, err := Dial(context.Background(), ClientConfig{Address: srv.Addr().String()}, ClientEvents{})
			if err != nil {
				t.Fatalf("dial after the panics: %v", err)
			}
			defer c.Close()
			if _, err := c.Status(context.Background()); err != nil {
				t.Errorf("status after the panics: got %v, want an answer", err)
			}
		})
	}
}
