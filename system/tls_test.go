package system

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/internal/testca"
	"github.com/nats-io/nats.go"
)

// TestEmbeddedTLS: the embedded server's listener speaks TLS only and, with verify, admits only clients with a
// certificate of its CA; the gateway's own in-process connection keeps working.
func TestEmbeddedTLS(t *testing.T) {
	ca := testca.New(t, "plant")
	srv := ca.Server("nats")
	cli := ca.Client("scada")
	stranger := testca.New(t, "stranger").Client("scada")
	rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
nats {
  tls {
    cert   = %q
    key    = %q
    ca     = %q
    verify = true
  }
}
device "d1" {
  driver   = "mock"
  interval = "20ms"
  point "x" { signal = "ramp" }
}`, srv.Cert, srv.Key, ca.CAFile)))
	url := rt.Bus().URL
	if !strings.HasPrefix(url, "tls://") {
		t.Errorf("the URL clients are told is %s, want tls://", url)
	}
	cases := []struct {
		name string
		opts []nats.Option
		want string // "" connects; else alternatives separated by |
	}{
		{"no TLS settings", nil, "certificate signed by unknown authority"},
		// With TLS 1.3 the client may finish its handshake before the server's alert arrives: then it sees the
		// connection closed instead of the alert's text.
		{"trusts the CA, no client certificate", []nats.Option{nats.RootCAs(ca.CAFile)}, "certificate required|closed by remote after TLS handshake"},
		// Go's client does not even send a certificate the server's CA list does not name.
		{"a certificate of another CA", []nats.Option{nats.RootCAs(ca.CAFile), nats.ClientCert(stranger.Cert, stranger.Key)}, "certificate required|closed by remote after TLS handshake"},
		{"the plant's client certificate", []nats.Option{nats.RootCAs(ca.CAFile), nats.ClientCert(cli.Cert, cli.Key)}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := nats.Connect(url, append([]nats.Option{nats.NoReconnect(), nats.Timeout(5 * time.Second)}, tc.opts...)...)
			if tc.want != "" {
				if err == nil {
					nc.Close()
					t.Fatal("connected, want refused")
				}
				for _, w := range strings.Split(tc.want, "|") {
					if strings.Contains(err.Error(), w) {
						return
					}
				}
				t.Errorf("got %v, want an error containing one of %s", err, tc.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if !nc.TLSRequired() {
				t.Error("the server does not require TLS")
			}
			sub, err := nc.SubscribeSync("iot.processed.batch.d1")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sub.NextMsg(5 * time.Second); err != nil {
				t.Errorf("no data over TLS: %v", err)
			}
		})
	}
	// A plain TCP client gets no further than the server's INFO, which demands TLS.
	c, err := net.DialTimeout("tcp", rt.Bus().Server.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, _ := c.Read(buf)
	if !strings.Contains(string(buf[:n]), `"tls_required":true`) {
		t.Errorf("INFO %s, want tls_required", buf[:n])
	}
}

// TestExternalServerTLS: the gateway connects to a separate nats-server that requires TLS and client
// certificates, with client_tls.
func TestExternalServerTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a nats-server process; skipped with -short")
	}
	ca := testca.New(t, "site")
	srvPair, gwPair, opPair := ca.Server("hub"), ca.Client("gateway"), ca.Client("operator")
	srv := &natsProcess{t: t, bin: natsServerBinary(t), port: freePort(t),
		args: []string{"--tls", "--tlscert", srvPair.Cert, "--tlskey", srvPair.Key, "--tlscacert", ca.CAFile, "--tlsverify"}}
	srv.start()
	t.Cleanup(srv.stop)
	url := fmt.Sprintf("tls://127.0.0.1:%d", srv.port)

	rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
nats {
  url = %q
  jetstream { enabled = false } # the server runs without -js
  client_tls {
    ca   = %q
    cert = %q
    key  = %q
  }
}
device "d1" {
  driver   = "mock"
  interval = "20ms"
  point "x" { signal = "ramp" }
}`, url, ca.CAFile, gwPair.Cert, gwPair.Key)))
	if !rt.Bus().Conn.TLSRequired() {
		t.Error("the gateway's connection is not TLS")
	}
	if _, err := nats.Connect(url, nats.NoReconnect(), nats.RootCAs(ca.CAFile)); err == nil {
		t.Error("a client without a certificate connected to the test's server: the test proves nothing")
	}
	nc, err := nats.Connect(url, nats.RootCAs(ca.CAFile), nats.ClientCert(opPair.Cert, opPair.Key))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("iot.processed.batch.d1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(10 * time.Second); err != nil {
		t.Errorf("no data through the TLS server: %v", err)
	}
}

// TestHTTPTLSAndToken: the HTTP server serves HTTPS only; with a token every request needs it, except the probe
// paths asked from loopback. Asked from beyond loopback (when this machine has such an address) the probes need
// the token too.
func TestHTTPTLSAndToken(t *testing.T) {
	const token = "0123456789abcdef-token"
	t.Setenv("IOTGW_TEST_HTTP_TOKEN", token)
	ca := testca.New(t, "http")
	pem, err := os.ReadFile(ca.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	get := func(url, auth string) (int, error) {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			return 0, err
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}

	hosts := []string{"127.0.0.1"}
	if ip := outsideIP(); ip != "" {
		hosts = append(hosts, ip)
	} else {
		t.Log("no address beyond loopback on this machine: the probes are asked from loopback only")
	}
	for _, host := range hosts {
		t.Run(host, func(t *testing.T) {
			pair := ca.Server("http-"+host, host)
			rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
gateway { http_address = "%s:0" }
http {
  token = env("IOTGW_TEST_HTTP_TOKEN")
  tls {
    cert = %q
    key  = %q
  }
}`, host, pair.Cert, pair.Key)))
			probe := http.StatusOK
			if host != "127.0.0.1" {
				probe = http.StatusUnauthorized
			}
			cases := []struct {
				name, path, auth string
				want             int
			}{
				{"index without token", "/", "", http.StatusUnauthorized},
				{"index with a wrong token", "/", "Bearer wrong", http.StatusUnauthorized},
				{"index with the token truncated", "/", "Bearer " + token[:len(token)-1], http.StatusUnauthorized},
				{"index with the token and more", "/", "Bearer " + token + "x", http.StatusUnauthorized},
				{"index with the token as basic auth", "/", "Basic " + token, http.StatusUnauthorized},
				{"index with the scheme alone", "/", "Bearer", http.StatusUnauthorized},
				{"index with an oversized header", "/", "Bearer " + strings.Repeat("x", 32<<10), http.StatusUnauthorized},
				{"index with the token", "/", "Bearer " + token, http.StatusOK},
				{"metrics without token", "/metrics", "", probe},
				{"readyz without token", "/readyz", "", probe},
				{"healthz without token", "/healthz", "", probe},
				{"metrics with the token", "/metrics", "Bearer " + token, http.StatusOK},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					got, err := get("https://"+rt.HTTPAddr()+tc.path, tc.auth)
					if err != nil || got != tc.want {
						t.Errorf("GET %s: got %d %v, want %d", tc.path, got, err, tc.want)
					}
				})
			}
			if code, err := get("http://"+rt.HTTPAddr()+"/healthz", ""); err == nil && code == http.StatusOK {
				t.Error("plain HTTP answered 200 on the HTTPS port")
			}
		})
	}
}

// outsideIP is an IPv4 address of this machine beyond loopback, or "".
func outsideIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			return ipn.IP.String()
		}
	}
	return ""
}
