package system

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/internal/testca"
	"github.com/iotgw/iotgw/isp"
)

// The HTTP driver's poll mode against a real net/http server started by the test (httptest listens on loopback).

// TestHTTPPollRequests: GET with basic auth, GET with a bearer token, POST with a body and headers — the server
// checks each request as a device would, and the mapped JSON arrives processed.
func TestHTTPPollRequests(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, basic := r.BasicAuth()
		body, _ := io.ReadAll(r.Body)
		switch {
		case r.URL.Path == "/basic" && basic && user == "gw" && pass == "pw-12345678":
		case r.URL.Path == "/bearer" && r.Header.Get("Authorization") == "Bearer tok-abcdefgh":
		case r.URL.Path == "/post" && r.Method == "POST" && string(body) == `{"read":"all"}` && r.Header.Get("X-Site") == "north":
		default:
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"sensor":{"temp":21.5,"hum":40},"ok":true,"ts":"2024-05-01T10:00:00Z"}`)
	}))
	defer srv.Close()
	rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
device "basic" {
  driver   = "http"
  url      = "%[1]s/basic"
  username = "gw"
  password = "pw-12345678"
  interval = "50ms"
  field "temp" { path = "sensor.temp" }
}
device "bearer" {
  driver       = "http"
  url          = "%[1]s/bearer"
  bearer_token = "tok-abcdefgh"
  interval     = "50ms"
  time_field   = "ts"
  time_format  = "rfc3339"
}
device "post" {
  driver   = "http"
  url      = "%[1]s/post"
  method   = "POST"
  body     = "{\"read\":\"all\"}"
  headers  = { "X-Site" = "north" }
  interval = "50ms"
  tags     = { line = "2" }
  field "humidity" {
    path = "sensor.hum"
    type = "float64"
  }
}
`, srv.URL)))
	nc := client(t, rt.Bus().URL)
	l := watchBatches(t, nc)
	if v, _ := l.wait(t, "basic", "temp")["temp"].Value.Float(); v != 21.5 {
		t.Errorf("basic: temp %v, want 21.5", v)
	}
	b := l.wait(t, "bearer", "sensor_temp", "sensor_hum", "ok")
	if want := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC).UnixNano(); b["sensor_temp"].Timestamp != want {
		t.Errorf("bearer: timestamp %d, want the body's %d", b["sensor_temp"].Timestamp, want)
	}
	p := l.wait(t, "post", "humidity")["humidity"]
	if v, _ := p.Value.Float(); v != 40 || p.Type != "float64" || p.Source != "http" {
		t.Errorf("post: humidity %+v, want 40 float64 from http", p)
	}
	if line, _ := p.Tag("line"); line != "2" {
		t.Errorf("post: tags %v, want line=2", p.Tags)
	}
}

// TestHTTPPollTLS: https with the server's certificate as the device's ca is read; a ca that did not sign it is
// an error event naming the certificate problem, and the device shows disconnected.
func TestHTTPPollTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"v":1}`)
	}))
	defer srv.Close()
	dir := t.TempDir()
	good := filepath.Join(dir, "server.pem")
	if err := os.WriteFile(good, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := testca.New(t, "other-ca").CAFile // every httptest server has the same certificate: another CA is needed
	rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
device "trusted" {
  driver   = "http"
  url      = %[1]q
  interval = "50ms"
  tls { ca = %[2]q }
}
device "untrusted" {
  driver   = "http"
  url      = %[1]q
  interval = "50ms"
  tls { ca = %[3]q }
}
`, srv.URL, good, bad)))
	nc := client(t, rt.Bus().URL)
	ev := watchEvents(t, nc, "iot.errors.http.untrusted")
	l := watchBatches(t, nc)
	l.wait(t, "trusted", "v")
	e := ev.waitEvent(t, "http", "", "certificate")
	t.Logf("untrusted: %s", e.Error)
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := find(tree(t, nc), "devices/untrusted"); n == nil || n.State != StateDisconnected {
			return fmt.Errorf("devices/untrusted: %+v", n)
		}
		return nil
	})
}

// TestHTTPPollFailures: a server that answers 500, then too slowly, then too much, then what is not JSON, a
// JSON bomb and a field of the wrong type: each poll gives an event naming why and publishes the device's keys
// bad (stale once they have had no good value for stale_after); the device never restarts, and when the server
// is good again so are the points.
func TestHTTPPollFailures(t *testing.T) {
	var mu sync.Mutex
	mode := "good"
	setMode := func(m string) { mu.Lock(); mode = m; mu.Unlock() }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		m := mode
		mu.Unlock()
		switch m {
		case "good":
			fmt.Fprint(w, `{"temp":20.5,"count":3}`)
		case "500":
			http.Error(w, "sensor bus fault", http.StatusInternalServerError)
		case "slow":
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
			fmt.Fprint(w, `{"temp":1,"count":1}`)
		case "huge":
			fmt.Fprint(w, `{"temp":1,"pad":"`+strings.Repeat("x", 2<<20)+`"}`)
		case "html":
			fmt.Fprint(w, "<html>maintenance</html>")
		case "bomb":
			fmt.Fprint(w, strings.Repeat("[", 100000))
		case "type":
			fmt.Fprint(w, `{"temp":"hot","count":3}`)
		}
	}))
	defer srv.Close()
	rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
device "sensor" {
  driver      = "http"
  url         = "%s/data?api_key=secret"
  interval    = "50ms"
  timeout     = "300ms"
  stale_after = "1s"
  field "temp" {
    path = "temp"
    type = "float64"
  }
  field "count" { path = "count" }
}
`, srv.URL)))
	nc := client(t, rt.Bus().URL)
	ev := watchEvents(t, nc, "iot.errors.http.sensor")
	l := watchBatches(t, nc)
	if q := l.wait(t, "sensor", "temp", "count")["temp"].Quality; q != isp.QualityGood {
		t.Fatalf("good server: quality %d", q)
	}
	for _, tc := range []struct{ mode, kind, want string }{
		{"500", "status", "HTTP 500 Internal Server Error"},
		{"slow", "timeout", "no answer within 300ms"},
		{"huge", "too_large", "larger than max_body"},
		{"html", "payload", "not valid JSON"},
		{"bomb", "payload", "nested too deep"},
		{"type", "payload", `field "temp": wrong type`},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			setMode(tc.mode)
			e := ev.waitEvent(t, tc.kind, "", tc.want)
			if strings.Contains(e.URL, "secret") {
				t.Errorf("event URL %q shows the query", e.URL)
			}
			t.Logf("%s: %s", tc.mode, e.Error)
			checkFor(t, 20*time.Second, 10*time.Millisecond, func() error {
				l.mu.Lock()
				defer l.mu.Unlock()
				if q := l.points["sensor"]["temp"].Quality; q != isp.QualityBad {
					return fmt.Errorf("temp quality %d during %s", q, tc.mode)
				}
				return nil
			})
		})
	}
	ev.waitEvent(t, "stale", "", "no good value for 1s")
	checkFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		p := l.points["sensor"]["temp"]
		if s, _ := p.Tag(actors.StaleTag.Key); s != "true" {
			return fmt.Errorf("temp %+v: not tagged stale", p)
		}
		return nil
	})
	setMode("good")
	checkFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		p := l.points["sensor"]["temp"]
		if _, stale := p.Tag(actors.StaleTag.Key); p.Quality != isp.QualityGood || stale {
			return fmt.Errorf("temp %+v after the server recovered", p)
		}
		return nil
	})
	if n := find(tree(t, nc), "devices/sensor"); n == nil || n.Restarts != 0 || n.State != StateRunning {
		t.Errorf("devices/sensor: %+v, want running without restarts", n)
	}
}

// TestHTTPPollClientCertificate: a server that requires a client certificate (mutual TLS) is read with the
// device's tls { cert, key }, and refuses a device without one (an http event, the device disconnected).
func TestHTTPPollClientCertificate(t *testing.T) {
	ca := testca.New(t, "http-mtls")
	srvPair, cli := ca.Server("server"), ca.Client("gateway")
	cert, err := tls.LoadX509KeyPair(srvPair.Cert, srvPair.Key)
	if err != nil {
		t.Fatal(err)
	}
	pemCA, err := os.ReadFile(ca.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemCA)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"peers":%d}`, len(r.TLS.PeerCertificates))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
device "mtls" {
  driver   = "http"
  url      = %[1]q
  interval = "50ms"
  tls {
    ca   = %[2]q
    cert = %[3]q
    key  = %[4]q
  }
}
device "nocert" {
  driver   = "http"
  url      = %[1]q
  interval = "50ms"
  tls { ca = %[2]q }
}
`, srv.URL, ca.CAFile, cli.Cert, cli.Key)))
	nc := client(t, rt.Bus().URL)
	ev := watchEvents(t, nc, "iot.errors.http.nocert")
	l := watchBatches(t, nc)
	if n, _ := l.wait(t, "mtls", "peers")["peers"].Value.Int(); n != 1 {
		t.Errorf("the server saw %d client certificates, want 1", n)
	}
	e := ev.waitEvent(t, "http", "", "certificate")
	t.Logf("nocert: %s", e.Error)
}

// TestHTTPPollFaults: an injected error fails the polls (an event, the keys bad), bad_quality publishes them bad;
// cleared, the points are good again.
func TestHTTPPollFaults(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `{"v":1}`) }))
	defer srv.Close()
	rt := startRuntime(t, parseConfig(t, fmt.Sprintf("faults { enabled = true }\ndevice \"web\" {\n  driver = \"http\"\n  url = %q\n  interval = \"50ms\"\n}\n", srv.URL)))
	nc := client(t, rt.Bus().URL)
	ev := watchEvents(t, nc, "iot.errors.http.web")
	l := watchBatches(t, nc)
	l.wait(t, "web", "v")
	quality := func(want int) {
		t.Helper()
		checkFor(t, 20*time.Second, 10*time.Millisecond, func() error {
			l.mu.Lock()
			defer l.mu.Unlock()
			if q := l.points["web"]["v"].Quality; q != want {
				return fmt.Errorf("quality %d, want %d", q, want)
			}
			return nil
		})
	}
	for _, kind := range []string{"error", "bad_quality"} {
		if r := ask(t, nc, SubjectFaultsInject, `{"kind":"`+kind+`","target":"devices/web"}`); !r.OK {
			t.Fatalf("inject %s: %+v", kind, r)
		}
		quality(isp.QualityBad)
		if kind == "error" {
			ev.waitEvent(t, "injected", "", "fault injected")
		}
		if r := ask(t, nc, SubjectFaultsClear, ""); !r.OK {
			t.Fatalf("clear: %+v", r)
		}
		quality(isp.QualityGood)
	}
}
