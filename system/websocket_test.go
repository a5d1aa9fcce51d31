package system

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
)

// The /ws endpoint with a real WebSocket client (coder/websocket's Dial, the client half of the same library a
// browser's WebSocket speaks to).

func wsURL(rt *Runtime, query string) string { return "ws://" + rt.HTTPAddr() + "/ws?" + query }

func wsDial(t *testing.T, url string, header http.Header) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

// wsReady publishes probes on subject until the client reads one: then its subscription is in place.
func wsReady(t *testing.T, nc *nats.Conn, c *websocket.Conn, subject string) {
	t.Helper()
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, _, err := c.Read(ctx)
		got <- err
	}()
	for {
		if err := nc.Publish(subject, []byte(`{"probe":true}`)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("probe: %v", err)
			}
			// drain the other probes that may follow
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type wsFrame struct {
	Subject string          `json:"subject"`
	Data    json.RawMessage `json:"data"`
}

func wsRead(t *testing.T, c *websocket.Conn) wsFrame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var f wsFrame
	if typ != websocket.MessageText || json.Unmarshal(b, &f) != nil {
		t.Fatalf("frame %q (type %v) is not a JSON text frame", b, typ)
	}
	return f
}

// TestWebSocketStreamsSubjects: what is published on the filter arrives, in order, exactly; what is outside it
// does not.
func TestWebSocketStreamsSubjects(t *testing.T) {
	rt := startHTTPRuntime(t, ``)
	nc := client(t, rt.Bus().URL)
	c := wsDial(t, wsURL(rt, "subject=iot.alerts.>&subject=iot.aggregated.d1.*"), nil)
	wsReady(t, nc, c, "iot.alerts.probe.x")
	// Skip probes still in flight, then a marker starts the counted part.
	if err := nc.Publish("iot.alerts.start.x", []byte(`"start"`)); err != nil {
		t.Fatal(err)
	}
	for {
		if f := wsRead(t, c); f.Subject == "iot.alerts.start.x" {
			break
		}
	}
	var want []string
	for i := 0; i < 200; i++ {
		subj, body := fmt.Sprintf("iot.alerts.warning.d%d", i%3), fmt.Sprintf(`{"n":%d}`, i)
		if i%4 == 0 {
			subj = "iot.aggregated.d1.temp"
		}
		_ = nc.Publish("iot.processed.batch.d1", []byte(`{"points":[]}`)) // not streamed
		if err := nc.Publish(subj, []byte(body)); err != nil {
			t.Fatal(err)
		}
		want = append(want, subj+" "+body)
	}
	_ = nc.Publish("iot.alerts.x.y", []byte("not json \xff"))
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Each filter is a subscription of its own: in order within it, interleaved between them.
	want = append(want, `iot.alerts.x.y "not json \ufffd"`)
	var gotAlerts, gotAgg, wantAlerts, wantAgg []string
	for _, w := range want {
		if strings.HasPrefix(w, "iot.alerts.") {
			wantAlerts = append(wantAlerts, w)
		} else {
			wantAgg = append(wantAgg, w)
		}
	}
	for range want {
		f := wsRead(t, c)
		got := f.Subject + " " + string(f.Data)
		if strings.HasPrefix(got, "iot.alerts.") {
			gotAlerts = append(gotAlerts, got)
		} else {
			gotAgg = append(gotAgg, got)
		}
	}
	if strings.Join(gotAlerts, "\n") != strings.Join(wantAlerts, "\n") || strings.Join(gotAgg, "\n") != strings.Join(wantAgg, "\n") {
		t.Fatalf("got\n%s\n%s\nwant\n%s\n%s", strings.Join(gotAlerts, "\n"), strings.Join(gotAgg, "\n"), strings.Join(wantAlerts, "\n"), strings.Join(wantAgg, "\n"))
	}
}

// TestWebSocketSubscribedWhenOpen: the subscriptions are in place when the upgrade answers, so one message
// published right after the client's Dial returns arrives (no probes). The dashboard relies on it: it reads its
// views once the stream is open, and an alert fired in between would otherwise be missed until a reload.
func TestWebSocketSubscribedWhenOpen(t *testing.T) {
	rt := startHTTPRuntime(t, ``)
	nc := client(t, rt.Bus().URL)
	for i := 0; i < 20; i++ {
		c := wsDial(t, wsURL(rt, "subject=iot.alerts.>"), nil)
		body := fmt.Sprintf(`{"n":%d}`, i)
		if err := nc.Publish("iot.alerts.critical.d1", []byte(body)); err != nil {
			t.Fatal(err)
		}
		if f := wsRead(t, c); f.Subject != "iot.alerts.critical.d1" || string(f.Data) != body {
			t.Fatalf("connection %d: got %s %s, want the message published right after the upgrade", i, f.Subject, f.Data)
		}
		_ = c.Close(websocket.StatusNormalClosure, "")
	}
}

// TestWebSocketRefusesFilters: an attacker who may use /ws tries the subjects it must never read; each is refused
// before the upgrade with the reason.
func TestWebSocketRefusesFilters(t *testing.T) {
	rt := startHTTPRuntime(t, ``)
	hc := httpClient(t)
	for _, tc := range []struct {
		query  string
		status int
		says   string
	}{
		{"", http.StatusBadRequest, "subject"},
		{"subject=" + strings.Repeat("subject=iot.alerts.x&", 0) + "iot.control.>", http.StatusForbidden, "iot.control.>"},
		{"subject=iot.control.devices.list", http.StatusForbidden, "iot.control"},
		{"subject=%3E", http.StatusForbidden, "could match"},
		{"subject=iot.%3E", http.StatusForbidden, "could match"},
		{"subject=iot.*.devices.list", http.StatusForbidden, "could match"},
		{"subject=$JS.API.%3E", http.StatusForbidden, "$JS"},
		{"subject=$SYS.%3E", http.StatusForbidden, "$SYS"},
		{"subject=_INBOX.%3E", http.StatusForbidden, "_INBOX"},
		{"subject=iot.raw.mock.d1", http.StatusForbidden, "iot.raw"},
		{"subject=iot..alerts", http.StatusForbidden, "empty token"},
		{"subject=iot.alerts.a%20b", http.StatusForbidden, "refused"},
		{"subject=iot.alerts.%00", http.StatusForbidden, "refused"},
		{"subject=" + strings.Repeat("a", 300), http.StatusForbidden, "at most"},
		{strings.TrimSuffix(strings.Repeat("subject=iot.alerts.x&", 9), "&"), http.StatusBadRequest, "1 to 8"},
		{"subject=iot.alerts.>", http.StatusUpgradeRequired, ""}, // allowed, but a plain GET is not an upgrade
	} {
		code, body, _ := httpDo(t, hc, "GET", "http://"+rt.HTTPAddr()+"/ws?"+tc.query)
		if code != tc.status || !strings.Contains(body, tc.says) {
			t.Errorf("/ws?%s: %d %q, want %d saying %q", tc.query, code, body, tc.status, tc.says)
		}
	}
}

// TestWebSocketNeedsTheToken: with http.token set, /ws needs it like every other path (also from loopback).
func TestWebSocketNeedsTheToken(t *testing.T) {
	const token = "0123456789abcdef-ws-token"
	t.Setenv("IOTGW_TEST_WS_TOKEN", token)
	rt := startHTTPRuntime(t, `http { token = env("IOTGW_TEST_WS_TOKEN") }`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, auth := range []string{"", "Bearer wrong-token-0123456789", "Basic " + token} {
		_, resp, err := websocket.Dial(ctx, wsURL(rt, "subject=iot.alerts.>"), &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {auth}}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %v, want 401", auth, err)
		}
	}
	c := wsDial(t, wsURL(rt, "subject=iot.alerts.>"), http.Header{"Authorization": {"Bearer " + token}})
	wsReady(t, client(t, rt.Bus().URL), c, "iot.alerts.probe.x")
}

// TestWebSocketSlowClientDropped: one client stops reading while another reads; the bus is published to at full
// speed. The publisher never blocks, the reading client gets every message in order, and the one that stopped
// is closed with 1008 and the reason, counted in /metrics.
func TestWebSocketSlowClientDropped(t *testing.T) {
	rt := startHTTPRuntime(t, ``)
	nc := client(t, rt.Bus().URL)
	stalled := wsDial(t, wsURL(rt, "subject=iot.alerts.>"), nil)
	wsReady(t, nc, stalled, "iot.alerts.probe.x")
	reader := wsDial(t, wsURL(rt, "subject=iot.alerts.>"), nil)
	wsReady(t, nc, reader, "iot.alerts.probe.x")
	if err := nc.Publish("iot.alerts.start.x", nil); err != nil {
		t.Fatal(err)
	}
	// The reader counts what comes after the marker; the other client reads nothing from now on.
	var mu sync.Mutex
	got, started := 0, false
	readErr := make(chan error, 1)
	go func() {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			_, b, err := reader.Read(ctx)
			cancel()
			if err != nil {
				readErr <- err
				return
			}
			var f wsFrame
			_ = json.Unmarshal(b, &f)
			mu.Lock()
			switch {
			case f.Subject == "iot.alerts.start.x":
				started = true
			case started && f.Subject == "iot.alerts.load.x":
				var n int
				_ = json.Unmarshal(f.Data, &n)
				if n != got {
					mu.Unlock()
					readErr <- fmt.Errorf("frame %d where %d was next", n, got)
					return
				}
				got++
			}
			mu.Unlock()
		}
	}()
	payload := strings.Repeat("x", 1000)
	const total, chunk = 40000, 1000
	for i := 0; i < total; i++ {
		if err := nc.Publish("iot.alerts.load.x", []byte(fmt.Sprintf(`%d`, i)+strings.Repeat(" ", len(payload)))); err != nil {
			t.Fatal(err)
		}
		if (i+1)%chunk == 0 { // pace to the reading client only, which must not fall behind and be dropped itself
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(60 * time.Second)
			for {
				mu.Lock()
				n := got
				mu.Unlock()
				if n >= i+1-chunk {
					break
				}
				select {
				case err := <-readErr:
					t.Fatalf("reader: %v after %d frames", err, n)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("reader at %d of %d", n, i+1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	checkFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if got != total {
			return fmt.Errorf("reader got %d of %d", got, total)
		}
		return nil
	})
	hc := httpClient(t)
	checkFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		var dropped, open float64
		for _, s := range scrape(t, hc, rt) {
			switch s.name {
			case "iotgw_websocket_dropped_total":
				dropped = s.value
			case "iotgw_websocket_connections":
				open = s.value
			}
		}
		if dropped != 1 || open != 1 {
			return fmt.Errorf("dropped %v, open %v: want the stalled client dropped and the reader open", dropped, open)
		}
		return nil
	})
	// The stalled client, reading again, finds the data it had buffered and then the end: the close frame with
	// the reason when it fit into its buffers, else the closed connection.
	frames := 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, _, err := stalled.Read(ctx)
		cancel()
		if err == nil {
			frames++
			continue
		}
		var ce websocket.CloseError
		if errors.As(err, &ce) && (ce.Code != websocket.StatusPolicyViolation || ce.Reason != CloseReasonSlow) {
			t.Errorf("closed with %v %q, want 1008 %q", ce.Code, ce.Reason, CloseReasonSlow)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("the stalled client's connection is still open after %d frames", frames)
		}
		t.Logf("stalled client: %d frames of %d before the end (%v)", frames, total, err)
		break
	}
	if frames >= total {
		t.Errorf("the stalled client got all %d frames: it was not dropped", frames)
	}
}

// TestWebSocketBoundedConnections: past wsMaxConns the upgrade is refused with 503; closing one makes room.
func TestWebSocketBoundedConnections(t *testing.T) {
	rt := startHTTPRuntime(t, ``)
	nc := client(t, rt.Bus().URL)
	conns := make([]*websocket.Conn, wsMaxConns)
	for i := range conns {
		conns[i] = wsDial(t, wsURL(rt, "subject=iot.alerts.>"), nil)
	}
	wsReady(t, nc, conns[wsMaxConns-1], "iot.alerts.probe.x")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, wsURL(rt, "subject=iot.alerts.>"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("connection %d: %v, want 503", wsMaxConns+1, err)
	}
	_ = conns[0].Close(websocket.StatusNormalClosure, "")
	checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		c, _, err := websocket.Dial(ctx, wsURL(rt, "subject=iot.alerts.>"), nil)
		if err != nil {
			return err
		}
		_ = c.CloseNow()
		return nil
	})
}

// TestWebSocketClosedAtStop: the gateway's stop closes the streams with 1001 instead of leaving them open.
func TestWebSocketClosedAtStop(t *testing.T) {
	cfg := parseConfig(t, ``)
	cfg.Gateway.HTTPAddress = "127.0.0.1:0"
	rt := startRuntime(t, cfg)
	c := wsDial(t, wsURL(rt, "subject=iot.alerts.>"), nil)
	wsReady(t, client(t, rt.Bus().URL), c, "iot.alerts.probe.x")
	if err := rt.Stop(); err != nil {
		t.Fatal(err)
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, _, err := c.Read(ctx)
		cancel()
		if err == nil {
			continue // a probe still in flight
		}
		if websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Fatalf("after stop: %v, want 1001 going away", err)
		}
		return
	}
}
