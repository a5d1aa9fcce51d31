package system

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/isp"
)

const pushConfig = `
gateway { http_address = "127.0.0.1:0" }
http { token = "push-token-0123456789" }
device "meter" {
  driver      = "http"
  mode        = "push"
  max_body    = "64KB"
  stale_after = "500ms"
  tags        = { site = "north" }
}
device "polled" {
  driver   = "http"
  url      = "http://127.0.0.1:1/never"
  interval = "1h"
}
`

func pushReq(t *testing.T, addr, path, token, ctype, body string) (int, PushReply) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var r PushReply
	if resp.StatusCode != http.StatusUnauthorized {
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatalf("POST %s: reply %q: %v", path, data, err)
		}
	}
	return resp.StatusCode, r
}

// TestPushEndpoint: a declared push device takes a point and a batch, which flow through the processor with the
// device's tags; every bad request is refused with its status and reason, and publishes nothing.
func TestPushEndpoint(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, pushConfig))
	nc := client(t, rt.Bus().URL)
	l := watchBatches(t, nc)
	ev := watchEvents(t, nc, "iot.errors.http.meter")
	addr := rt.HTTPAddr()
	const tok = "push-token-0123456789"

	if code, r := pushReq(t, addr, "/api/v1/points/meter", tok, "application/json", `{"key":"power","value":1.5}`); code != http.StatusAccepted || r.Accepted != 1 || r.Subject != "iot.raw.http.meter" {
		t.Fatalf("point: %d %+v", code, r)
	}
	p := l.wait(t, "meter", "power")["power"]
	if v, _ := p.Value.Float(); v != 1.5 || p.Source != "http" || p.Quality != isp.QualityGood {
		t.Errorf("power %+v, want 1.5 good from http", p)
	}
	if site, _ := p.Tag("site"); site != "north" {
		t.Errorf("power tags %v, want site=north", p.Tags)
	}
	if code, r := pushReq(t, addr, "/api/v1/points/meter", tok, "", `{"points":[{"key":"energy","value":10,"timestamp":1700000000000000000},{"device_id":"meter","key":"on","value":true}]}`); code != http.StatusAccepted || r.Accepted != 2 {
		t.Fatalf("batch: %d %+v", code, r)
	}
	b := l.wait(t, "meter", "energy", "on")
	if b["energy"].Timestamp != 1700000000000000000 {
		t.Errorf("energy timestamp %d, want the pushed one", b["energy"].Timestamp)
	}

	l.mu.Lock()
	before := l.count["meter"]
	l.mu.Unlock()
	tests := []struct {
		name, path, token, ctype, body string
		status                         int
		want                           string
	}{
		{"no token", "/api/v1/points/meter", "", "", `{"key":"a","value":1}`, http.StatusUnauthorized, ""},
		{"wrong token", "/api/v1/points/meter", "push-token-0123456788", "", `{"key":"a","value":1}`, http.StatusUnauthorized, ""},
		{"undeclared device", "/api/v1/points/ghost", tok, "", `{"key":"a","value":1}`, http.StatusNotFound, `no device "ghost"`},
		{"polled device", "/api/v1/points/polled", tok, "", `{"key":"a","value":1}`, http.StatusNotFound, "does not take pushes"},
		{"bad id", "/api/v1/points/a%2Ab", tok, "", `{"key":"a","value":1}`, http.StatusBadRequest, "device id"},
		{"long id", "/api/v1/points/" + strings.Repeat("x", 100), tok, "", `{"key":"a","value":1}`, http.StatusBadRequest, "at most 64"},
		{"content type", "/api/v1/points/meter", tok, "text/html", `{"key":"a","value":1}`, http.StatusUnsupportedMediaType, "application/json"},
		{"empty", "/api/v1/points/meter", tok, "", "  ", http.StatusBadRequest, "empty body"},
		{"not JSON", "/api/v1/points/meter", tok, "", "power=1", http.StatusBadRequest, "not a point"},
		{"truncated", "/api/v1/points/meter", tok, "", `{"points":[{"key":"a","value":1},{"key":`, http.StatusBadRequest, "not a point"},
		{"no key", "/api/v1/points/meter", tok, "", `{"value":1}`, http.StatusBadRequest, "not a point"},
		{"bad key", "/api/v1/points/meter", tok, "", `{"key":"a.b","value":1}`, http.StatusBadRequest, "key"},
		{"foreign device", "/api/v1/points/meter", tok, "", `{"points":[{"key":"a","value":1},{"device_id":"other","key":"b","value":2}]}`, http.StatusBadRequest, `point 1: device_id "other"`},
		{"bad quality", "/api/v1/points/meter", tok, "", `{"key":"a","value":1,"quality":7}`, http.StatusBadRequest, "quality 7"},
		{"no points", "/api/v1/points/meter", tok, "", `{"points":[]}`, http.StatusBadRequest, "without points"},
		{"oversized", "/api/v1/points/meter", tok, "", `{"key":"a","value":"` + strings.Repeat("x", 70<<10) + `"}`, http.StatusRequestEntityTooLarge, "max_body (65536 bytes)"},
		{"large batch", "/api/v1/points/meter", tok, "", `{"points":[` + strings.Repeat(`{"key":"a","value":1},`, 1999) + `{"key":"a","value":1}]}`, http.StatusAccepted, ""},
		{"deep", "/api/v1/points/meter", tok, "", strings.Repeat(`{"points":[`, 5000), http.StatusBadRequest, "not a point"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, r := pushReq(t, addr, tc.path, tc.token, tc.ctype, tc.body)
			if code != tc.status || !strings.Contains(r.Error, tc.want) {
				t.Fatalf("got %d %q, want %d and an error containing %q", code, r.Error, tc.status, tc.want)
			}
			if r.Error != "" {
				t.Logf("%d %s", code, r.Error)
			}
		})
	}
	// Only the accepted push (2000 points of key a, one batch) was published.
	l.wait(t, "meter", "a")
	l.mu.Lock()
	after := l.count["meter"]
	l.mu.Unlock()
	if after != before+1 {
		t.Errorf("%d batches published by the refused requests and the accepted one, want 1", after-before)
	}
	// Keys that are no longer pushed go stale: their point bad with stale=true, and one event.
	e := ev.waitEvent(t, "stale", "", "nothing pushed for 500ms")
	t.Logf("stale: %v", e.Keys)
	checkFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		p := l.points["meter"]["power"]
		if s, _ := p.Tag("stale"); p.Quality != isp.QualityBad || s != "true" {
			return fmt.Errorf("power %+v, want bad and stale", p)
		}
		return nil
	})
}

func TestDecodePush(t *testing.T) {
	now := time.Unix(100, 0)
	pts, err := decodePush([]byte(`{"key":"k","value":2,"tags":{"site":"own"}}`), "d1", map[string]string{"site": "dev", "line": "1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	p := pts[0]
	if p.DeviceID != "d1" || p.Source != "http" || p.Timestamp != now.UnixNano() {
		t.Errorf("point %+v", p)
	}
	if site, _ := p.Tag("site"); site != "own" {
		t.Errorf("site %q: the point's own tag wins", site)
	}
	if line, _ := p.Tag("line"); line != "1" {
		t.Errorf("line %q: the device's tag is added", line)
	}
	many := `{"points":[` + strings.Repeat(`{"key":"a","value":1},`, maxPushPoints) + `{"key":"a","value":1}]}`
	if _, err := decodePush([]byte(many), "d1", nil, now); err == nil || !strings.Contains(err.Error(), "at most 10000") {
		t.Errorf("%d points: %v, want refused", maxPushPoints+1, err)
	}
}

// FuzzDecodePush: the push body decoder never panics, and what it accepts is the URL's device's, with valid keys
// and qualities.
func FuzzDecodePush(f *testing.F) {
	for _, s := range []string{`{"key":"a","value":1}`, `{"points":[{"key":"a","value":true,"device_id":"d"}]}`,
		`{"points":[]}`, `{"key":"a.b","value":1}`, `{"key":"a","value":1,"quality":-1,"tags":{"x":"y"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		pts, err := decodePush(body, "d", map[string]string{"site": "s"}, time.Unix(1, 0))
		if err != nil {
			return
		}
		for _, p := range pts {
			if p.DeviceID != "d" || isp.ValidToken(p.Key) != nil || p.Quality < -1 || p.Quality > 1 || p.Timestamp <= 0 {
				t.Fatalf("accepted %+v from %q", p, body)
			}
		}
	})
}
