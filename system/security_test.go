package system

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/iotgw/actors/rule/processor"
	"github.com/iotgw/iotgw/config"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// The tests of this file are written as an attacker with a valid non-admin login ("reader") would try the gateway.
// The evidence that an attack is refused is positive: the server's "Permissions Violation" for exactly that
// subject, delivered to the attacker's connection as an asynchronous error. nats-server checks a publish's
// permission before it routes the message, so once the violation came back the message went nowhere, and no wait
// for "nothing arrived" is needed.

const securityUsers = `
  authorization {
    user "admin" {
      password = "admin-secret-1"
      admin    = true
    }
    user "reader" { password = "reader-secret-1" }
  }
`

// asyncErrors collects what the server reports to a connection asynchronously.
type asyncErrors struct {
	mu   sync.Mutex
	errs []string
}

func (a *asyncErrors) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.errs = append(a.errs, err.Error())
}

// violation waits for the server's permissions violation of op ("Publish to", "Subscription to") on subject.
func (a *asyncErrors) violation(t *testing.T, op, subject string) {
	t.Helper()
	want := fmt.Sprintf("Permissions Violation for %s %q", op, subject)
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, e := range a.errs {
			if strings.Contains(e, want) {
				return nil
			}
		}
		return fmt.Errorf("no %s; the connection's errors: %q", want, a.errs)
	})
}

// login connects as user with its own inbox prefix (as iotgw ctl does) and collects the async errors.
func login(t *testing.T, url, user, password string, opts ...nats.Option) (*nats.Conn, *asyncErrors) {
	t.Helper()
	errs := &asyncErrors{}
	opts = append([]nats.Option{nats.UserInfo(user, password), nats.ErrorHandler(errs.handler), nats.CustomInboxPrefix(UserInbox(user))}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// TestReaderAttacks: each attack of a logged-in non-admin user from issue 9 is refused by the server.
func TestReaderAttacks(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `
nats {
  jetstream { enabled = true }
`+securityUsers+`
}
device "t1" {
  driver   = "mock"
  interval = "20ms"
  point "x" { signal = "ramp" }
}`))
	url := rt.Bus().URL
	reader, errs := login(t, url, "reader", "reader-secret-1")
	admin, _ := login(t, url, "admin", "admin-secret-1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The reader does read the data: the refusals below are not a connection that reads nothing.
	data, err := reader.SubscribeSync("iot.processed.batch.t1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := data.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("the reader gets no data: %v", err)
	}

	evil := "device \"evil\" {\n  driver = \"mock\"\n  tags = { pw = env(\"IOTGW_ADMIN_PASSWORD\") }\n  point \"p\" { signal = \"sine\" }\n}\n"
	js, err := jetstream.New(reader)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, op, subject string
		attack            func() error
	}{
		{"store a device in the KV bucket", "Publish to", "$KV." + DevicesBucket + "." + kvKey(rt.cfg.Gateway.ID, "evil"), func() error {
			return reader.Publish("$KV."+DevicesBucket+"."+kvKey(rt.cfg.Gateway.ID, "evil"), []byte(evil))
		}},
		{"delete the data stream", "Publish to", "$JS.API.STREAM.DELETE." + StreamName, func() error {
			c, cancel := context.WithTimeout(ctx, time.Second) // no reply will come: the request is dropped
			defer cancel()
			if err := js.DeleteStream(c, StreamName); err == nil {
				return errors.New("stream deleted")
			}
			return nil
		}},
		{"delete the device bucket", "Publish to", "$JS.API.STREAM.DELETE.KV_" + DevicesBucket, func() error {
			c, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if err := js.DeleteKeyValue(c, DevicesBucket); err == nil {
				return errors.New("bucket deleted")
			}
			return nil
		}},
		{"read every control reply", "Subscription to", "_INBOX.>", func() error {
			_, err := reader.SubscribeSync("_INBOX.>")
			return err
		}},
		{"read the gateway's replies", "Subscription to", GatewayInboxPrefix + ".>", func() error {
			_, err := reader.SubscribeSync(GatewayInboxPrefix + ".>")
			return err
		}},
		{"read control requests", "Subscription to", "iot.control.>", func() error {
			_, err := reader.SubscribeSync("iot.control.>")
			return err
		}},
		{"publish raw data as a device", "Publish to", "iot.raw.mock.t1", func() error {
			return reader.Publish("iot.raw.mock.t1", []byte(`{"key":"x","value":1e9,"quality":1}`))
		}},
		{"publish processed data as a device", "Publish to", "iot.processed.batch.t1", func() error {
			return reader.Publish("iot.processed.batch.t1", []byte(`{"points":[{"device_id":"t1","key":"x","value":1e9,"quality":1}]}`))
		}},
		{"fake a supervisor event", "Publish to", "iot.errors.supervisor.failed", func() error {
			return reader.Publish("iot.errors.supervisor.failed", []byte(`{"path":"devices/t1","error":"fake"}`))
		}},
		{"add a device", "Publish to", SubjectDevicesAdd, func() error {
			_, err := reader.Request(SubjectDevicesAdd, []byte(evil), 200*time.Millisecond)
			if err == nil {
				return errors.New("the gateway answered")
			}
			return nil
		}},
		{"system account", "Subscription to", "$SYS.>", func() error {
			_, err := reader.SubscribeSync("$SYS.>")
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.attack(); err != nil {
				t.Fatalf("attack: %v", err)
			}
			errs.violation(t, tc.op, tc.subject)
		})
	}

	// Nothing changed: the stream and the bucket are there, the bucket holds no "evil", t1's data is the device's.
	if _, err := rt.Bus().JS.Stream(ctx, StreamName); err != nil {
		t.Errorf("stream %s after the attacks: %v", StreamName, err)
	}
	kv, err := rt.Bus().JS.KeyValue(ctx, DevicesBucket)
	if err != nil {
		t.Fatalf("bucket %s after the attacks: %v", DevicesBucket, err)
	}
	if _, err := kv.Get(ctx, kvKey(rt.cfg.Gateway.ID, "evil")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("bucket entry evil: %v, want not found", err)
	}
	if r := ask(t, admin, SubjectPing, ""); r.Error != "" {
		t.Errorf("admin ping after the attacks: %+v", r)
	}
	for range 5 {
		m, err := data.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(m.Data), "1e+09") || strings.Contains(string(m.Data), "1000000000") {
			t.Errorf("the reader's fake point came out as t1's data: %s", m.Data)
		}
	}
}

// TestUserGrants: a user block widens a non-admin's permissions by exactly what it names, never into the
// gateway's inboxes; a non-admin allowed a request gets its reply on its own inbox only.
func TestUserGrants(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `
gateway { point_subjects = false }
nats {
  jetstream { enabled = true }
  authorization {
    user "admin" {
      password = "admin-secret-1"
      admin    = true
    }
    user "line3" {
      password  = "line3-secret-1"
      publish   = ["iot.raw.http.line3"]
      subscribe = [">"]
    }
    user "ops" {
      password = "ops-secret-1"
      publish  = ["iot.control.ping"]
    }
  }
}`))
	url := rt.Bus().URL
	admin, _ := login(t, url, "admin", "admin-secret-1")
	line3, line3Errs := login(t, url, "line3", "line3-secret-1")

	got, err := admin.SubscribeSync("iot.processed.batch.line3")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := line3.Publish("iot.raw.http.line3", []byte(`{"key":"speed","value":42,"quality":1}`)); err != nil {
		t.Fatal(err)
	}
	m, err := got.NextMsg(5 * time.Second)
	if err != nil || !strings.Contains(string(m.Data), `"value":42`) {
		t.Fatalf("the granted publish: %v %s, want line3's point processed", err, msgData(m))
	}
	if err := line3.Publish("iot.raw.mock.t1", []byte(`{"key":"x","value":1}`)); err != nil {
		t.Fatal(err)
	}
	line3Errs.violation(t, "Publish to", "iot.raw.mock.t1")
	if err := line3.Publish(GatewayInboxPrefix+"."+rt.cfg.Gateway.ID+".x", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	line3Errs.violation(t, "Publish to", GatewayInboxPrefix+"."+rt.cfg.Gateway.ID+".x")
	// subscribe = [">"] is granted, but the gateway's inboxes are denied below any grant.
	if _, err := line3.SubscribeSync(GatewayInboxPrefix + ".>"); err != nil {
		t.Fatal(err)
	}
	line3Errs.violation(t, "Subscription to", GatewayInboxPrefix+".>")
	// And with ">" it receives none of the gateway's replies: an add stores the device in the bucket, and
	// JetStream acknowledges that to the gateway's inbox before the gateway answers the admin.
	var mu sync.Mutex
	var seen []string
	if _, err := line3.Subscribe(">", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, m.Subject)
	}); err != nil {
		t.Fatal(err)
	}
	if err := line3.Flush(); err != nil {
		t.Fatal(err)
	}
	if r := ask(t, admin, SubjectDevicesAdd, `{"id":"js-1","driver":"mock","point":{"p":{"signal":"sine"}}}`); !r.OK {
		t.Fatalf("add: %+v", r)
	}
	// The bucket write reaches line3 from the publisher's read loop, which the server may run after JetStream has
	// stored the write and acknowledged it (the stream ingests on a goroutine of its own): so wait for it rather
	// than trust one flush. Once it is here, a flush brings whatever else the server routed to line3 by then,
	// the acknowledgement and the admin's reply included, had they been routed to it.
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range seen {
			if strings.HasPrefix(s, "$KV."+DevicesBucket+".") {
				return nil
			}
		}
		return fmt.Errorf("line3 did not see the bucket write it was granted (\">\"): the check below would prove nothing; saw %q", seen)
	})
	if err := line3.Flush(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	for _, s := range seen {
		if strings.HasPrefix(s, GatewayInboxPrefix+".") || strings.HasPrefix(s, "_INBOX.admin.") {
			t.Errorf("line3 received %s", s)
		}
	}
	mu.Unlock()

	// ops may ask iot.control.ping: the reply comes to _INBOX.ops.…, which it may read.
	ops, opsErrs := login(t, url, "ops", "ops-secret-1")
	if r := ask(t, ops, SubjectPing, ""); r.Error != "" {
		t.Errorf("ops ping: %+v", r)
	}
	if _, err := ops.Request(SubjectDevicesList, nil, 200*time.Millisecond); err == nil {
		t.Error("ops listed the devices, which it was not granted")
	}
	opsErrs.violation(t, "Publish to", SubjectDevicesList)
	// With the default inbox prefix its reply subscription is refused: replies go to _INBOX.{user} only.
	plain, plainErrs := login(t, url, "ops", "ops-secret-1", nats.CustomInboxPrefix("_INBOX"))
	if _, err := plain.Request(SubjectPing, nil, 500*time.Millisecond); err == nil {
		t.Error("ops got a reply on a shared _INBOX")
	}
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		plainErrs.mu.Lock()
		defer plainErrs.mu.Unlock()
		for _, e := range plainErrs.errs {
			if strings.Contains(e, `Permissions Violation for Subscription to "_INBOX.`) {
				return nil
			}
		}
		return fmt.Errorf("errors %q, want the inbox subscription refused", plainErrs.errs)
	})
}

func msgData(m *nats.Msg) string {
	if m == nil {
		return ""
	}
	return string(m.Data)
}

// TestEnvRefusedInRequests: env() in a control request is an error at its position, and the gateway's
// environment does not reach the reply, the store or the bus.
func TestEnvRefusedInRequests(t *testing.T) {
	t.Setenv("IOTGW_TEST_SECRET", "do-not-leak-7f3a")
	rt := startRuntime(t, parseConfig(t, `device "d1" {
  driver = "mock"
  tags   = { site = env("IOTGW_TEST_SECRET") }
  point "p" { signal = "sine" }
}`))
	if got := fmt.Sprint(rt.cfg.Devices[0].Settings.(*config.MockDevice).Tags); !strings.Contains(got, "do-not-leak-7f3a") {
		t.Errorf("env() in the config file: tags %s, want the variable's value", got)
	}
	nc := client(t, rt.Bus().URL)
	cases := []struct{ name, subject, body, pos string }{
		{"add, in a tag", SubjectDevicesAdd, "device \"leak\" {\n  driver = \"mock\"\n  tags = { x = env(\"IOTGW_TEST_SECRET\") }\n  point \"p\" { signal = \"sine\" }\n}\n", "request:3:16"},
		{"add, in a template", SubjectDevicesAdd, "device \"leak\" {\n  driver = \"mock\"\n  point \"p\" {\n    signal = \"sine\"\n    unit = \"${env(\"HOME\")}\"\n  }\n}\n", "request:5:15"},
		{"update", SubjectDevicesUpdate, "device \"d1\" {\n  driver = \"mock\"\n  tags = { x = env(\"IOTGW_TEST_SECRET\", \"d\") }\n  point \"p\" { signal = \"sine\" }\n}\n", "request:3:16"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := nc.Request(tc.subject, []byte(tc.body), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(raw.Data), "do-not-leak") {
				t.Errorf("the reply carries the secret: %s", raw.Data)
			}
			var r ControlReply
			if err := json.Unmarshal(raw.Data, &r); err != nil {
				t.Fatal(err)
			}
			if r.OK || len(r.Diagnostics) == 0 || r.Diagnostics[0].Pos != tc.pos ||
				!strings.Contains(r.Diagnostics[0].Detail, "env() is only allowed in the config file") {
				t.Errorf("got %+v, want the env() error at %s", r, tc.pos)
			}
		})
	}
	if _, ok := rt.Tree().Get("devices/leak"); ok {
		t.Error("a device with env() was started")
	}
	// A JSON request's strings are literals: a template in one stays text and is never evaluated.
	batches, err := nc.SubscribeSync("iot.processed.batch.json-1")
	if err != nil {
		t.Fatal(err)
	}
	r := ask(t, nc, SubjectDevicesAdd, `{"id":"json-1","driver":"mock","interval":"20ms","tags":{"x":"${env(\"IOTGW_TEST_SECRET\")}"},"point":{"p":{"signal":"sine"}}}`)
	if !r.OK {
		t.Fatalf("JSON add: %+v", r)
	}
	m, err := batches.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(m.Data), "do-not-leak") || !strings.Contains(string(m.Data), `${env(\"IOTGW_TEST_SECRET\")}`) {
		t.Errorf("batch %s, want the tag as the literal text", m.Data)
	}
	if b, err := os.ReadFile(filepath.Join(rt.cfg.Gateway.DataDir, "devices.json")); err == nil && strings.Contains(string(b), "leak") {
		t.Errorf("devices.json holds the rejected device: %s", b)
	}
}

// TestEnvRefusedInStoredDevices: a device written into the store by someone else than the gateway (a file
// edit, a KV put) with env() in it is not started, and the error is logged with its position.
func TestEnvRefusedInStoredDevices(t *testing.T) {
	t.Setenv("IOTGW_TEST_SECRET", "do-not-leak-7f3a")
	stored := "device \"leak\" {\n  driver = \"mock\"\n  tags = { x = env(\"IOTGW_TEST_SECRET\") }\n  point \"p\" { signal = \"sine\" }\n}\n"
	good := "device \"fine\" {\n  driver = \"mock\"\n  point \"p\" { signal = \"sine\" }\n}\n"
	for _, store := range []string{"file", "jetstream"} {
		t.Run(store, func(t *testing.T) {
			dataDir := t.TempDir()
			src := `gateway { http_address = "" }`
			if store == "file" { // JetStream is on by default
				src += "\nnats {\n  jetstream { enabled = false }\n}"
			}
			if store == "jetstream" {
				src += "\nnats {\n  jetstream { enabled = true }\n" + securityUsers + "}"
			}
			cfg := parseConfig(t, src)
			cfg.NATS.Port, cfg.Gateway.DataDir = -1, dataDir
			start := func(log zerolog.Logger) *Runtime {
				rt := New(cfg, WithLogger(log))
				if err := rt.Start(context.Background()); err != nil {
					t.Fatal(err)
				}
				return rt
			}
			if store == "file" {
				b, _ := json.Marshal(map[string]string{"leak": stored, "fine": good})
				if err := os.WriteFile(filepath.Join(dataDir, "devices.json"), b, 0o600); err != nil {
					t.Fatal(err)
				}
			} else { // an admin writes the bucket directly, the way `nats kv put` would
				rt := start(testLogger(t))
				admin, _ := login(t, rt.Bus().URL, "admin", "admin-secret-1")
				js, err := jetstream.New(admin)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				kv, err := js.KeyValue(ctx, DevicesBucket)
				if err == nil {
					_, err = kv.Put(ctx, kvKey(cfg.Gateway.ID, "leak"), []byte(stored))
				}
				if err == nil {
					_, err = kv.Put(ctx, kvKey(cfg.Gateway.ID, "fine"), []byte(good))
				}
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				admin.Close()
				if err := rt.Stop(); err != nil {
					t.Fatal(err)
				}
			}
			var logs syncBuffer
			rt := start(zerolog.New(&logs))
			defer func() { _ = rt.Stop() }()
			if _, ok := rt.Tree().Get("devices/leak"); ok {
				t.Error("the stored device with env() runs")
			}
			if _, ok := rt.Tree().Get("devices/fine"); !ok {
				t.Error("the good stored device does not run")
			}
			if want := `stored device leak:3:16: Error in function call: Call to function \"env\" failed: env() is only allowed in the config file`; !strings.Contains(logs.String(), want) {
				t.Errorf("logs:\n%s\nwant %s", logs.String(), want)
			}
			if strings.Contains(logs.String(), "do-not-leak") {
				t.Errorf("the logs carry the secret:\n%s", logs.String())
			}
		})
	}
}

// TestDeceptiveIDsAtRunTime: ids and keys that deceive (invisible, bidirectional, path-like), and a device id a
// sidecar uses, are refused in run-time requests and in data from devices.
func TestDeceptiveIDsAtRunTime(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `
sidecar "line3" {
  address = "127.0.0.1:1"
  config { mode = "tcp" }
}`))
	nc := client(t, rt.Bus().URL)
	for _, tc := range []struct{ name, id, want string }{
		{"zero-width space", "watch\u200b", "U+200B"},
		{"right-to-left override", "ab\u202ecd", "U+202E"},
		{"slash", "boiler/evil", "supervision tree"},
		{"sidecar's name", "line3", `the sidecar "line3" at test.hcl:2,1-16 has this name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{"id": tc.id, "driver": "mock", "point": map[string]any{"p": map[string]string{"signal": "sine"}}})
			r := ask(t, nc, SubjectDevicesAdd, string(body))
			text := r.Error
			for _, d := range r.Diagnostics {
				text += "\n" + d.Summary + ": " + d.Detail
			}
			if r.OK || !strings.Contains(strings.ToLower(text), strings.ToLower(tc.want)) {
				t.Errorf("got %+v, want an error mentioning %q", r, tc.want)
			}
			if _, ok := rt.Tree().Get("devices/" + tc.id); ok {
				t.Errorf("device %q runs", tc.id)
			}
		})
	}
	// A point key that deceives, from a device's raw data, is dropped with an event naming why.
	invalid, err := nc.SubscribeSync(processor.SubjectErrorInvalid)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("iot.raw.http.d9", []byte(`{"key":"watch\u200b","value":1}`)); err != nil {
		t.Fatal(err)
	}
	m, err := invalid.NextMsg(5 * time.Second)
	if err != nil || !strings.Contains(string(m.Data), "U+200B") {
		t.Errorf("invalid-point event: %v %s, want the key refused", err, msgData(m))
	}
}

// TestInsecureListenersWarn: beyond loopback without protection the gateway starts only with insecure = true,
// and then says so at start.
func TestInsecureListenersWarn(t *testing.T) {
	if _, diags := config.Parse([]byte("nats {\n  host = \"0.0.0.0\"\n}\n"), "t.hcl"); !diags.HasErrors() {
		t.Fatal("a bare embedded server beyond loopback passed validation")
	}
	cfg := parseConfig(t, `
gateway { http_address = "0.0.0.0:0" }
http { insecure = true }
nats {
  host     = "0.0.0.0"
  insecure = true
}`)
	var logs syncBuffer
	rt := startRuntime(t, cfg, WithLogger(zerolog.New(&logs)))
	_ = rt
	for _, want := range []string{
		"INSECURE: the embedded NATS server listens beyond loopback without users and TLS",
		"INSECURE: the HTTP server listens beyond loopback without TLS and a token",
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs:\n%s\nwant %q", logs.String(), want)
		}
	}
}
