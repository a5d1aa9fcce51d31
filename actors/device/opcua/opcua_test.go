package opcua_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/actors/device"
	"github.com/iotgw/iotgw/isp"
	"github.com/iotgw/iotgw/system"
)

// The tests run the gateway against node-opcua (testdata/server/server.js), an OPC UA stack independent of the
// gateway's gopcua, started on a free loopback port for each test.

const supervisorFast = `
supervisor {
  max_restarts = 3
  backoff {
    initial = "100ms"
    max     = "500ms"
  }
}
`

func lastGood(r *recorder, key string) (isp.Point, error) {
	pts := r.of(key)
	for i := len(pts) - 1; i >= 0; i-- {
		if pts[i].Quality == isp.QualityGood {
			return pts[i], nil
		}
	}
	return isp.Point{}, fmt.Errorf("no good %s yet (%d points)", key, len(pts))
}

// TestPollReadsNodes: every interval one batch on iot.raw.opcua.{device}, each node converted to its type and
// scaled, an uncertain status published with quality -1.
func TestPollReadsNodes(t *testing.T) {
	srv := startServer(t)
	_, nc := gateway(t, supervisorFast+`
device "line1" {
  driver   = "opcua"
  endpoint = "`+srv.Endpoint()+`"
  interval = "100ms"
  tags     = { site = "a" }
  node "temperature" {
    node_id = "ns=1;s=Temperature"
    unit = "°C"
  }
  node "counter" {
    node_id = "ns=1;s=Counter"
    type = "int64"
  }
  node "running" {
    node_id = "ns=1;s=Running"
    type = "bool"
  }
  node "name" {
    node_id = "ns=1;s=Name"
    type = "string"
  }
  node "pressure" {
    node_id = "ns=1;s=Pressure"
    scale = 10
    offset = 1
  }
  node "status" {
    node_id = "ns=1;s=Status"
    type = "int64"
  }
}
`)
	r := record(t, nc, "line1")
	waitFor(t, 30*time.Second, func() error {
		for _, k := range []string{"temperature", "counter", "running", "name", "pressure"} {
			if _, err := lastGood(r, k); err != nil {
				return err
			}
		}
		if r.count("counter") < 3 {
			return errors.New("fewer than 3 reads")
		}
		return nil
	})
	temp, _ := lastGood(r, "temperature")
	if f, ok := temp.Value.Float(); !ok || f < 20 || f > 29.5 || temp.Type != "float64" {
		t.Errorf("temperature: got %v (%s), want a float64 in 20..29.5", temp.Value, temp.Type)
	}
	if u, _ := temp.Tag("unit"); u != "°C" {
		t.Errorf("temperature's unit tag: got %q, want °C", u)
	}
	if s, _ := temp.Tag("site"); s != "a" {
		t.Errorf("temperature's site tag: got %q, want a", s)
	}
	counter, _ := lastGood(r, "counter")
	if _, ok := counter.Value.Int(); !ok || counter.Type != "int64" {
		t.Errorf("counter: got %v (%s), want an int64", counter.Value, counter.Type)
	}
	running, _ := lastGood(r, "running")
	if b, ok := running.Value.Bool(); !ok || !b {
		t.Errorf("running: got %v, want true", running.Value)
	}
	name, _ := lastGood(r, "name")
	if s, _ := name.Value.Str(); s != "line one" {
		t.Errorf("name: got %v, want \"line one\"", name.Value)
	}
	pressure, _ := lastGood(r, "pressure")
	if f, _ := pressure.Value.Float(); f != 16 { // 1.5 × 10 + 1
		t.Errorf("pressure: got %v, want 16 (1.5 × scale 10 + offset 1)", pressure.Value)
	}
	status := r.of("status")
	if len(status) == 0 {
		t.Fatal("no status points")
	}
	st := status[len(status)-1]
	if i, _ := st.Value.Int(); st.Quality != isp.QualityUnknown || i != 42 {
		t.Errorf("status (UncertainLastUsableValue on the server): got %v quality %d, want 42 quality -1", st.Value, st.Quality)
	}
	if _, ok := r.event("status", "Uncertain"); !ok {
		t.Errorf("no status event for the uncertain node: %s", r.dump())
	}
	// The timestamp is the server's source timestamp, not zero.
	if temp.Timestamp <= 0 {
		t.Errorf("temperature's timestamp: got %d", temp.Timestamp)
	}
}

// TestBadNodesAreEventsNotCrashes: a node the server does not have and a node of the wrong type are bad points
// with one clear event each, while the other nodes keep flowing and the device keeps running.
func TestBadNodesAreEventsNotCrashes(t *testing.T) {
	for _, mode := range []string{"poll", "subscribe"} {
		t.Run(mode, func(t *testing.T) {
			srv := startServer(t)
			rt, nc := gateway(t, supervisorFast+`
device "bad" {
  driver   = "opcua"
  endpoint = "`+srv.Endpoint()+`"
  mode     = "`+mode+`"
  interval = "100ms"
  node "counter" { node_id = "ns=1;s=Counter" }
  node "ghost"   { node_id = "ns=1;s=DoesNotExist" }
  node "name"    { node_id = "ns=1;s=Name" }
  node "flag" {
    node_id = "ns=1;s=Running"
    type = "string"
  }
}
`)
			r := record(t, nc, "bad")
			waitFor(t, 30*time.Second, func() error {
				if _, ok := r.event("node", "ns=1;s=DoesNotExist does not exist"); !ok {
					return fmt.Errorf("no node event: %s", r.dump())
				}
				if _, ok := r.event("type", "the server gives String, the point is float64"); !ok {
					return fmt.Errorf("no type event for name: %s", r.dump())
				}
				if _, ok := r.event("type", "the server gives Boolean, the point is string"); !ok {
					return fmt.Errorf("no type event for flag: %s", r.dump())
				}
				if len(r.of("counter")) < 3 {
					return errors.New("counter not flowing")
				}
				return nil
			})
			ev, _ := r.event("node", "DoesNotExist")
			if ev["device"] != "bad" || ev["node_id"] != "ns=1;s=DoesNotExist" || !strings.Contains(fmt.Sprint(ev["status"]), "BadNodeIDUnknown") ||
				fmt.Sprint(ev["keys"]) != "[ghost]" {
				t.Errorf("node event: got %v, want device bad, node_id, status BadNodeIdUnknown, keys [ghost]", ev)
			}
			for _, k := range []string{"ghost", "name", "flag"} {
				for _, p := range r.of(k) {
					if p.Quality != isp.QualityBad || p.Value.Kind() != isp.KindNull {
						t.Fatalf("%s: got %v quality %d, want null quality 0", k, p.Value, p.Quality)
					}
				}
			}
			if _, err := lastGood(r, "counter"); err != nil {
				t.Error(err)
			}
			// Reported once, not at every read.
			time.Sleep(500 * time.Millisecond)
			if n := len(r.eventsOf("node", "DoesNotExist")); n != 1 {
				t.Errorf("node events: got %d, want 1 (reported when the problem starts)", n)
			}
			if n, ok := rt.Tree().Get("devices/bad"); !ok || n.State != system.StateRunning || n.Restarts != 0 {
				t.Errorf("device: got %+v, want running without restarts", n)
			}
		})
	}
}

// TestSubscriptionDeliversChanges: mode subscribe gets the counter's changes from monitored items without polling.
func TestSubscriptionDeliversChanges(t *testing.T) {
	srv := startServer(t)
	_, nc := gateway(t, supervisorFast+`
device "sub" {
  driver   = "opcua"
  endpoint = "`+srv.Endpoint()+`"
  mode     = "subscribe"
  interval = "100ms"
  node "counter" {
    node_id = "ns=1;s=Counter"
    type = "int64"
    sampling_interval = "50ms"
  }
  node "temperature" {
    node_id = "ns=1;s=Temperature"
    deadband = 2
  }
}
`)
	r := record(t, nc, "sub")
	waitFor(t, 30*time.Second, func() error {
		seen := map[int64]bool{}
		for _, p := range r.of("counter") {
			if i, ok := p.Value.Int(); ok && p.Quality == isp.QualityGood {
				seen[i] = true
			}
		}
		if len(seen) < 10 {
			return fmt.Errorf("%d distinct counter values", len(seen))
		}
		if len(r.of("temperature")) < 2 {
			return errors.New("fewer than 2 temperature changes")
		}
		return nil
	})
	// The deadband of 2 holds back the ramp's steps of 0.5: consecutive reported temperatures differ by more
	// than 2 (the server's ramp wraps from 29.5 to 20, a change of 9.5, which passes).
	temps := r.of("temperature")
	for i := 1; i < len(temps); i++ {
		a, _ := temps[i-1].Value.Float()
		b, _ := temps[i].Value.Float()
		if d := b - a; d > -2 && d < 2 {
			t.Errorf("temperatures %v then %v: a change within the deadband 2 was reported", a, b)
		}
	}
}

// TestServerRestartRecreatesSubscription is Telegraf's influxdata/telegraf#19186 made a test: the server is killed
// and started again on the same port, and one monitored node does not exist (BadNodeIdUnknown at every
// re-creation, which made gopcua's reconnect and so Telegraf give up for good). The device shows disconnected
// while the server is away, then opens a new session, creates the subscription again and the values flow again,
// counted; the missing node is reported again and stays bad; the other nodes are good.
func TestServerRestartRecreatesSubscription(t *testing.T) {
	srv := startServer(t)
	rt, nc := gateway(t, supervisorFast+`
device "plc" {
  driver   = "opcua"
  endpoint = "`+srv.Endpoint()+`"
  mode     = "subscribe"
  interval = "100ms"
  timeout  = "2s"
  node "counter" {
    node_id = "ns=1;s=Counter"
    type = "int64"
    sampling_interval = "50ms"
  }
  node "ghost"   { node_id = "ns=1;s=Gone" }
}
`)
	r := record(t, nc, "plc")
	goodCounters := func() int {
		n := 0
		for _, p := range r.of("counter") {
			if p.Quality == isp.QualityGood {
				n++
			}
		}
		return n
	}
	waitFor(t, 30*time.Second, func() error {
		if goodCounters() < 5 {
			return fmt.Errorf("%d good counter values", goodCounters())
		}
		return nil
	})
	if n := len(r.eventsOf("node", "ns=1;s=Gone")); n != 1 {
		t.Fatalf("node events before the restart: got %d, want 1: %s", n, r.dump())
	}
	for round := 1; round <= 2; round++ {
		srv.kill()
		waitFor(t, 30*time.Second, func() error {
			if len(r.eventsOf("disconnected", "")) < round {
				return fmt.Errorf("no disconnected event: %s", r.dump())
			}
			if n, ok := rt.Tree().Get("devices/plc"); !ok || n.State != system.StateDisconnected {
				return fmt.Errorf("device: %+v, want disconnected", n)
			}
			return nil
		})
		// While the server is away the device's points are published bad.
		waitFor(t, 30*time.Second, func() error {
			c := r.of("counter")
			if len(c) == 0 || c[len(c)-1].Quality != isp.QualityBad {
				return errors.New("the counter's last point is not bad")
			}
			return nil
		})
		before := goodCounters()
		srv.restart()
		waitFor(t, 60*time.Second, func() error {
			if got := goodCounters() - before; got < 5 {
				return fmt.Errorf("%d good counter values since restart %d", got, round)
			}
			return nil
		})
		t.Logf("restart %d: %d good counter values after it (%d before)", round, goodCounters()-before, before)
		if n := len(r.eventsOf("node", "ns=1;s=Gone")); n != round+1 {
			t.Errorf("node events after restart %d: got %d, want %d (reported by each new subscription)", round, n, round+1)
		}
		// The new server counts from its own start: the values are the new server's, not a replay.
		c := r.of("counter")
		if v, _ := c[len(c)-1].Value.Int(); v > 2000 {
			t.Errorf("counter after restart %d: %d, want the new server's count", round, v)
		}
	}
	n, ok := rt.Tree().Get("devices/plc")
	if !ok || n.State != system.StateRunning {
		t.Errorf("device after the restarts: got %+v, want running", n)
	}
	if n.Restarts < 2 {
		t.Errorf("device restarts: got %d, want at least 2 (one new session per server restart)", n.Restarts)
	}
}

// TestUnreachableServerIsPeerFailure: a device whose server is not there shows disconnected and retries, never
// failed, however often it retries (max_restarts = 1 would fail a crashing actor at its second crash).
func TestUnreachableServerIsPeerFailure(t *testing.T) {
	port := freePort(t)
	rt, nc := gateway(t, `
supervisor {
  max_restarts = 1
  backoff {
    initial = "50ms"
    max     = "100ms"
  }
}
device "away" {
  driver   = "opcua"
  endpoint = "opc.tcp://127.0.0.1:`+fmt.Sprint(port)+`"
  interval = "100ms"
  timeout  = "500ms"
  node "x" { node_id = "ns=1;s=Counter" }
}
`)
	r := record(t, nc, "away")
	waitFor(t, 30*time.Second, func() error {
		if n := len(r.eventsOf("disconnected", "")); n < 4 {
			return fmt.Errorf("%d disconnected events", n)
		}
		return nil
	})
	n, ok := rt.Tree().Get("devices/away")
	if !ok || n.State == system.StateFailed {
		t.Fatalf("device: got %+v, want disconnected and retrying, not failed", n)
	}
	ev, _ := r.event("disconnected", "")
	if !strings.Contains(fmt.Sprint(ev["error"]), fmt.Sprint(port)) {
		t.Errorf("disconnected event: got %v, want it to name the endpoint", ev)
	}
	// Its points are bad, and stale once stale_after (3 × 100ms) has passed without a good value.
	waitFor(t, 30*time.Second, func() error {
		if _, ok := r.event("stale", ""); !ok {
			return errors.New("no stale event")
		}
		x := r.of("x")
		if p := x[len(x)-1]; p.Quality != isp.QualityBad {
			return fmt.Errorf("x: quality %d", p.Quality)
		}
		return nil
	})
}

// TestSecureChannel: Basic256Sha256 with Sign and with SignAndEncrypt, the server's certificate pinned, user and
// password or the gateway's certificate as the identity, the gateway's client certificate generated into data_dir.
func TestSecureChannel(t *testing.T) {
	srv := startServer(t, "--no-anonymous")
	for _, tc := range []struct{ mode, auth string }{
		{"Sign", "username"}, {"SignAndEncrypt", "username"}, {"SignAndEncrypt", "certificate"},
	} {
		t.Run(tc.mode+"/"+tc.auth, func(t *testing.T) {
			identity := `
  auth     = "username"
  username = "operator"
  password = "secret"`
			if tc.auth == "certificate" {
				// auth = "certificate" signs with the certificate it names: the gateway's own, made first.
				identity = `
  auth        = "certificate"
  certificate = "CERT"
  private_key = "KEY"`
				certPath, keyPath := clientFiles(t)
				identity = strings.NewReplacer("CERT", certPath, "KEY", keyPath).Replace(identity)
			}
			_, nc, dir := gatewayDir(t, supervisorFast+`
device "sec" {
  driver              = "opcua"
  endpoint            = "`+srv.Endpoint()+`"
  security_policy     = "Basic256Sha256"
  security_mode       = "`+tc.mode+`"
  server_certificates = ["`+srv.CertFile+`"]`+identity+`
  interval            = "100ms"
  node "counter" {
    node_id = "ns=1;s=Counter"
  }
}
`)
			r := record(t, nc, "sec")
			waitFor(t, 60*time.Second, func() error {
				if _, err := lastGood(r, "counter"); err != nil {
					return fmt.Errorf("%v: %s", err, r.dump())
				}
				return nil
			})
			if tc.auth == "username" {
				if _, err := os.Stat(filepath.Join(dir, "opcua", "client_certificate.der")); err != nil {
					t.Errorf("the generated client certificate: %v", err)
				}
			}
		})
	}
}

// clientFiles writes a client certificate (with an application URI, as OPC UA wants) and its key.
func clientFiles(t *testing.T) (cert, key string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	uri, _ := url.Parse("urn:iotgw:test-client")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "iotgw test client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), URIs: []*url.URL{uri},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageContentCommitment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "client.der", der),
		writeFile(t, "client.pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
}

// TestAuthRefused: a wrong password is an auth event, the device disconnected and retrying, not failed.
func TestAuthRefused(t *testing.T) {
	srv := startServer(t, "--no-anonymous")
	rt, nc := gateway(t, supervisorFast+`
device "auth" {
  driver   = "opcua"
  endpoint = "`+srv.Endpoint()+`"
  auth     = "username"
  username = "operator"
  password = "wrong"
  interval = "100ms"
  node "counter" { node_id = "ns=1;s=Counter" }
}
`)
	r := record(t, nc, "auth")
	waitFor(t, 30*time.Second, func() error {
		if _, ok := r.event("auth", ""); !ok {
			return fmt.Errorf("no auth event: %s", r.dump())
		}
		return nil
	})
	if n, ok := rt.Tree().Get("devices/auth"); !ok || n.State == system.StateFailed {
		t.Errorf("device: got %+v, want not failed", n)
	}
}

// TestUntrustedServerCertificate: with Basic256Sha256 and a server certificate the gateway does not trust (the
// pinned one is another), the device never opens a channel: a certificate event names the server's certificate
// by subject and thumbprint, the points are bad, and the device retries, never failed.
func TestUntrustedServerCertificate(t *testing.T) {
	srv := startServer(t)
	other := writeFile(t, "other.pem", selfSigned(t, "not the server"))
	rt, nc := gateway(t, supervisorFast+`
device "mitm" {
  driver              = "opcua"
  endpoint            = "`+srv.Endpoint()+`"
  security_policy     = "Basic256Sha256"
  security_mode       = "SignAndEncrypt"
  server_certificates = ["`+other+`"]
  interval            = "100ms"
  node "counter" { node_id = "ns=1;s=Counter" }
}
`)
	r := record(t, nc, "mitm")
	waitFor(t, 30*time.Second, func() error {
		if len(r.eventsOf("certificate", "server certificate not trusted")) < 2 {
			return fmt.Errorf("fewer than 2 certificate events: %s", r.dump())
		}
		return nil
	})
	ev, _ := r.event("certificate", "")
	if msg := fmt.Sprint(ev["error"]); !strings.Contains(msg, "thumbprint") || !strings.Contains(msg, "server_certificates") {
		t.Errorf("certificate event: got %q, want the thumbprint and what to do", msg)
	}
	for _, p := range r.of("counter") {
		if p.Quality != isp.QualityBad {
			t.Fatalf("counter: got quality %d from a server that is not trusted", p.Quality)
		}
	}
	if n, ok := rt.Tree().Get("devices/mitm"); !ok || n.State == system.StateFailed || n.State == system.StateRunning && n.Restarts == 0 {
		t.Errorf("device: got %+v, want disconnected and retrying", n)
	}
}

// selfSigned returns a PEM certificate that is not the server's.
func selfSigned(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestBrowse: iot.control.devices.{id}.browse lists the server's nodes with their ids, paths and data types,
// bounded by depth and max_nodes; a node that does not exist and malformed requests are clear errors; a device
// whose driver does not browse is answered by the router.
func TestBrowse(t *testing.T) {
	srv := startServer(t)
	_, nc := gateway(t, supervisorFast+`
device "ua" {
  driver   = "opcua"
  endpoint = "`+srv.Endpoint()+`"
  node "counter" { node_id = "ns=1;s=Counter" }
}
device "m" {
  driver = "mock"
  point "p" { signal = "sine" }
}
`)
	record(t, nc, "ua")
	var reply device.BrowseReply
	waitFor(t, 30*time.Second, func() error { // until the session is open
		reply = device.BrowseReply{}
		request(t, nc, device.BrowseSubject("ua"), `{"node_id":"ns=1;s=Plant","depth":2}`, &reply)
		if !reply.OK {
			return errors.New(reply.Error)
		}
		return nil
	})
	byPath := map[string]device.BrowseNode{}
	for _, n := range reply.Nodes {
		byPath[n.Path] = n
	}
	temp, ok := byPath["1:Line1/1:Temperature"]
	if !ok || temp.NodeID != "ns=1;s=Temperature" || temp.Class != "Variable" || temp.DataType != "Double" || temp.Depth != 2 {
		t.Errorf("Line1/Temperature: got %+v, want ns=1;s=Temperature, a Double Variable at depth 2 (nodes %+v)", temp, reply.Nodes)
	}
	if l2, ok := byPath["1:Line2"]; !ok || l2.Class != "Object" || l2.Depth != 1 {
		t.Errorf("Line2: got %+v, want an Object at depth 1", l2)
	}
	// Default: the Objects folder, one level.
	reply = device.BrowseReply{}
	request(t, nc, device.BrowseSubject("ua"), ``, &reply)
	found := false
	for _, n := range reply.Nodes {
		found = found || n.NodeID == "ns=1;s=Plant"
	}
	if !reply.OK || !found {
		t.Errorf("default browse: got %+v, want the Objects folder's children with Plant", reply)
	}
	// Bounded.
	reply = device.BrowseReply{}
	request(t, nc, device.BrowseSubject("ua"), `{"node_id":"i=84","depth":10,"max_nodes":5}`, &reply)
	if !reply.OK || len(reply.Nodes) != 5 || !reply.Truncated {
		t.Errorf("bounded browse: got ok %v, %d nodes, truncated %v; want 5 nodes, truncated", reply.OK, len(reply.Nodes), reply.Truncated)
	}
	for _, tc := range []struct{ name, device, body, want string }{
		{"missing node", "ua", `{"node_id":"ns=1;s=Nope"}`, "node ns=1;s=Nope does not exist on the server"},
		{"bad node id", "ua", `{"node_id":"ns=x;q"}`, "is not an OPC UA node id"},
		{"not json", "ua", `browse please`, "bad browse request"},
		{"unknown field", "ua", `{"node":"i=85"}`, `unknown field "node"`},
		{"depth too deep", "ua", `{"depth":1000}`, "depth 1000: want 1..10"},
		{"negative max", "ua", `{"max_nodes":-1}`, "max_nodes -1"},
		{"truncated", "ua", `{"node_id":"i=8`, "bad browse request"},
		{"two values", "ua", `{} {}`, "more than one JSON value"},
		{"oversized", "ua", `{"node_id":"` + strings.Repeat("a", 5000) + `"}`, "at most 4096"},
		{"hostile nesting", "ua", strings.Repeat("[", 3000), "bad browse request"},
		{"mock", "m", `{}`, "driver mock does not support browsing"},
		{"unknown device", "nope", `{}`, `no device "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r device.BrowseReply
			request(t, nc, device.BrowseSubject(tc.device), tc.body, &r)
			if r.OK || !strings.Contains(r.Error, tc.want) {
				t.Errorf("got %+v, want an error with %q", r, tc.want)
			}
		})
	}
}

// TestWriteReadBack: a write through iot.control.devices.{id}.write is an OPC UA write of the node's own type
// (the scale undone), answered like a Modbus write, and the next read shows it; bad writes are clear errors.
func TestWriteReadBack(t *testing.T) {
	srv := startServer(t)
	_, nc := gateway(t, supervisorFast+`
device "w" {
  driver   = "opcua"
  endpoint = "`+srv.Endpoint()+`"
  interval = "100ms"
  node "setpoint" {
    node_id = "ns=1;s=Setpoint"
    scale = 2
  }
  node "running" {
    node_id = "ns=1;s=Running"
    type = "bool"
  }
  node "name" {
    node_id = "ns=1;s=Name"
    type = "string"
  }
  node "ghost"    { node_id = "ns=1;s=Ghost" }
}
`)
	r := record(t, nc, "w")
	var reply device.WriteReply
	waitFor(t, 30*time.Second, func() error {
		reply = device.WriteReply{}
		request(t, nc, device.WriteSubject("w"), `{"key":"setpoint","value":151}`, &reply)
		if !reply.OK {
			return errors.New(reply.Error)
		}
		return nil
	})
	if reply.Device != "w" || reply.Key != "setpoint" || fmt.Sprint(reply.Value) != "151" {
		t.Errorf("write reply: got %+v, want ok, device w, key setpoint, value 151", reply)
	}
	request(t, nc, device.WriteSubject("w"), `{"key":"running","value":false}`, &reply)
	if !reply.OK {
		t.Fatalf("write running: %+v", reply)
	}
	waitFor(t, 30*time.Second, func() error {
		sp, err := lastGood(r, "setpoint")
		if err != nil {
			return err
		}
		if f, _ := sp.Value.Float(); f != 151 { // 75.5 on the server × scale 2
			return fmt.Errorf("setpoint reads %v", sp.Value)
		}
		run, err := lastGood(r, "running")
		if err != nil {
			return err
		}
		if b, _ := run.Value.Bool(); b {
			return errors.New("running still true")
		}
		return nil
	})
	for _, tc := range []struct{ name, body, want string }{
		{"unknown key", `{"key":"nope","value":1}`, `no node "nope" on device w`},
		{"wrong kind", `{"key":"setpoint","value":"hot"}`, "the node is Double: want a number"},
		{"bool from number", `{"key":"running","value":7}`, "the node is Boolean"},
		{"missing value", `{"key":"setpoint"}`, "missing"},
		{"not json", `write it`, `request is not {"key":…, "value":…}`},
		{"truncated", `{"key":"setpoint","val`, `request is not`},
		{"oversized", `{"key":"` + strings.Repeat("k", 5000) + `","value":1}`, "at most 4096"},
		{"read only", `{"key":"name","value":"x"}`, "the server refused it"},
		{"missing node", `{"key":"ghost","value":1}`, "does not exist on the server"},
		{"hostile number", `{"key":"setpoint","value":1e400}`, "cannot unmarshal number 1e400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w device.WriteReply
			request(t, nc, device.WriteSubject("w"), tc.body, &w)
			if w.OK || w.Device != "w" || !strings.Contains(w.Error, tc.want) {
				t.Errorf("got %+v, want ok false, device w, an error with %q", w, tc.want)
			}
		})
	}
	if _, ok := r.event("write", "the server refused it"); !ok {
		t.Errorf("no write event for the refused write: %s", r.dump())
	}
}

// TestDropFault: the drop fault closes the device's session; the device reconnects as after a server restart.
func TestDropFault(t *testing.T) {
	srv := startServer(t)
	rt, nc := gateway(t, supervisorFast+`
faults {
  enabled = true
}
device "d" {
  driver   = "opcua"
  endpoint = "`+srv.Endpoint()+`"
  mode     = "subscribe"
  interval = "100ms"
  node "counter" {
    node_id = "ns=1;s=Counter"
    type    = "int64"
  }
}
`)
	r := record(t, nc, "d")
	waitFor(t, 30*time.Second, func() error {
		_, err := lastGood(r, "counter")
		return err
	})
	var reply struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	request(t, nc, "iot.control.faults.inject", `{"kind":"drop","target":"devices/d"}`, &reply)
	if !reply.OK {
		t.Fatalf("inject drop: %s", reply.Error)
	}
	waitFor(t, 30*time.Second, func() error {
		if _, ok := r.event("disconnected", ""); !ok {
			return errors.New("no disconnected event")
		}
		return nil
	})
	n := r.count("counter")
	waitFor(t, 30*time.Second, func() error {
		c := r.of("counter")
		if len(c) < n+3 || c[len(c)-1].Quality != isp.QualityGood {
			return fmt.Errorf("%d counter points, %d before the drop", len(c), n)
		}
		return nil
	})
	if d, ok := rt.Tree().Get("devices/d"); !ok || d.Restarts < 1 || d.State != system.StateRunning {
		t.Errorf("device: got %+v, want running after a restart", d)
	}
}

// TestAddAtRunTime: an opcua device added through iot.control.devices.add (HCL text, as an operator sends it)
// runs like one from the file, and a malformed one is refused with its position in the request.
func TestAddAtRunTime(t *testing.T) {
	srv := startServer(t)
	_, nc := gateway(t, supervisorFast)
	r := record(t, nc, "added")
	var reply struct {
		OK          bool   `json:"ok"`
		Error       string `json:"error"`
		Diagnostics []struct {
			Pos    string `json:"pos"`
			Detail string `json:"detail"`
		} `json:"diagnostics"`
	}
	request(t, nc, "iot.control.devices.add", `device "added" {
  driver   = "opcua"
  endpoint = "`+srv.Endpoint()+`"
  interval = "100ms"
  node "counter" {
    node_id = "ns=1;s=Counter"
  }
}`, &reply)
	if !reply.OK {
		t.Fatalf("add: %s %+v", reply.Error, reply.Diagnostics)
	}
	waitFor(t, 30*time.Second, func() error {
		_, err := lastGood(r, "counter")
		return err
	})
	request(t, nc, "iot.control.devices.add", `device "broken" {
  driver   = "opcua"
  endpoint = "`+srv.Endpoint()+`"
  node "counter" {
    node_id = "Counter"
  }
}`, &reply)
	if reply.OK || len(reply.Diagnostics) == 0 || !strings.HasSuffix(reply.Diagnostics[0].Pos, ":5:15") ||
		!strings.Contains(reply.Diagnostics[0].Detail, "is not an OPC UA node id") {
		t.Errorf("add a broken device: got %+v, want the node id refused at line 5, column 15", reply)
	}
}

// TestAnswersWhileAway: while the server is away and the device waits out a long backoff, its writes and browse
// requests are answered at once ("not connected"), not held in a suspended mailbox until the next attempt.
func TestAnswersWhileAway(t *testing.T) {
	port := freePort(t)
	_, nc := gateway(t, `
supervisor {
  backoff {
    initial = "20s"
    max     = "20s"
  }
}
device "away" {
  driver   = "opcua"
  endpoint = "opc.tcp://127.0.0.1:`+fmt.Sprint(port)+`"
  timeout  = "500ms"
  node "x" {
    node_id = "ns=1;s=Setpoint"
  }
}
`)
	r := record(t, nc, "away")
	waitFor(t, 30*time.Second, func() error {
		if _, ok := r.event("disconnected", ""); !ok {
			return errors.New("no disconnected event")
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // the restarted incarnation waits its 20 s in its worker
	for subject, body := range map[string]string{device.WriteSubject("away"): `{"key":"x","value":1}`, device.BrowseSubject("away"): `{}`} {
		// The timeout is far below the backoff: an answer within it was not held for the next attempt.
		m, err := nc.Request(subject, []byte(body), 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v, want an answer while the server is away", subject, err)
		}
		if !strings.Contains(string(m.Data), "not connected to opc.tcp://127.0.0.1:") {
			t.Errorf("%s: got %s, want not connected", subject, m.Data)
		}
	}
}

// TestChunkedRequests: a server that takes at most 10 nodes per Read and 10 monitored items per call (its
// OperationLimits) gets a device of 25 nodes in chunks, and every node is read, polled and subscribed.
func TestChunkedRequests(t *testing.T) {
	srv := startServer(t, "--bench", "25", "--limit", "10")
	for _, mode := range []string{"poll", "subscribe"} {
		t.Run(mode, func(t *testing.T) {
			var nodes strings.Builder
			for i := 0; i < 25; i++ {
				fmt.Fprintf(&nodes, "  node \"b%d\" {\n    node_id = \"ns=1;s=Bench.%d\"\n    type = \"int64\"\n  }\n", i, i)
			}
			_, nc := gateway(t, supervisorFast+`
device "many" {
  driver   = "opcua"
  endpoint = "`+srv.Endpoint()+`"
  mode     = "`+mode+`"
  interval = "100ms"
`+nodes.String()+`}
`)
			r := record(t, nc, "many")
			waitFor(t, 30*time.Second, func() error {
				for i := 0; i < 25; i++ {
					if _, err := lastGood(r, fmt.Sprintf("b%d", i)); err != nil {
						return fmt.Errorf("%v: %s", err, r.dump())
					}
				}
				return nil
			})
		})
	}
}

// TestServerRejectsGateway: a server that does not trust the gateway's (generated) certificate refuses the channel;
// the event says so and names the file to trust and its thumbprint; the device retries, never failed.
func TestServerRejectsGateway(t *testing.T) {
	srv := startServer(t, "--reject-clients")
	rt, nc, dir := gatewayDir(t, supervisorFast+`
device "new" {
  driver              = "opcua"
  endpoint            = "`+srv.Endpoint()+`"
  security_policy     = "Basic256Sha256"
  security_mode       = "SignAndEncrypt"
  server_certificates = ["`+srv.CertFile+`"]
  interval            = "100ms"
  node "counter" {
    node_id = "ns=1;s=Counter"
  }
}
`)
	r := record(t, nc, "new")
	file := filepath.Join(dir, "opcua", "client_certificate.der")
	waitFor(t, 30*time.Second, func() error {
		if _, ok := r.event("security", "trust its certificate "+file+", thumbprint "); !ok {
			return fmt.Errorf("no security event naming %s: %s", file, r.dump())
		}
		return nil
	})
	ev, _ := r.event("security", "")
	t.Logf("event: %v", ev["error"])
	if n, ok := rt.Tree().Get("devices/new"); !ok || n.State == system.StateFailed {
		t.Errorf("device: got %+v, want retrying, not failed", n)
	}
}
