package system

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestRequestReloadReportsProblems: the reload SIGHUP asks for returns the reply's problems, so that `iotgw run`
// can log them: a broken file with its position, and nothing when the reload went through.
func TestRequestReloadReportsProblems(t *testing.T) {
	rt, write := reloadRuntime(t, gatewayForReload)
	if err := rt.RequestReload(15 * time.Second); err != nil {
		t.Fatalf("reload of an unchanged file: got %v, want no error", err)
	}
	write(gatewayForReload + "device \"d1\" {\n  driver = \"nosuch\"\n}\n")
	err := rt.RequestReload(15 * time.Second)
	if err == nil {
		t.Fatal("reload of a broken file: got no error, want its problems")
	}
	for _, want := range []string{"is not valid; nothing changed", "gateway.hcl:4:", "nosuch"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("reload error %q lacks %q", err, want)
		}
	}
}

// TestKVLoadReportsUnreadableEntries: an entry of the device bucket whose key is not a device id is skipped with
// an error in the log, and the other entries still load.
func TestKVLoadReportsUnreadableEntries(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, "nats {\n  jetstream { enabled = true }\n}\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var logs syncBuffer
	store, err := devicesBucket(ctx, rt.Bus().JS, rt.cfg.Gateway.ID, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	good := []byte("device \"ok\" {\n  driver = \"mock\"\n  point \"x\" { signal = \"sine\" }\n}\n")
	if err := store.Put(ctx, "ok", good); err != nil {
		t.Fatal(err)
	}
	bad := rt.cfg.Gateway.ID + ".not.an.id" // this gateway's, but "." is not in the base64url alphabet
	if _, err := store.kv.Put(ctx, bad, good); err != nil {
		t.Fatal(err)
	}
	got, err := store.Load(ctx)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if len(got) != 1 || string(got["ok"]) != string(good) {
		t.Errorf("loaded %q, want only device ok", got)
	}
	if !strings.Contains(logs.String(), `"key":"`+bad+`"`) || !strings.Contains(logs.String(), "skipped") {
		t.Errorf("log %q does not name the skipped key %s", logs.String(), bad)
	}
}

// TestKVKeysPerGateway: gateways sharing one bucket (client mode, one JetStream) each load their own entries and
// not the others'; an entry of the earlier form (no gateway in the key) is loaded by each, and moved to the key of
// the gateway that changes it next.
func TestKVKeysPerGateway(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, "nats {\n  jetstream { enabled = true }\n}\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	open := func(gw string) *kvStore {
		s, err := devicesBucket(ctx, rt.Bus().JS, gw, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := open("gw-a"), open("gw-b")
	def := func(id string) []byte { return []byte("device \"" + id + "\" {}") }
	if err := a.Put(ctx, "x", def("x")); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "y", def("y")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.kv.Put(ctx, legacyKVKey("z"), def("z")); err != nil { // as an earlier version stored it
		t.Fatal(err)
	}
	ids := func(s *kvStore) string {
		t.Helper()
		m, err := s.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for id, v := range m {
			if string(v) != string(def(id)) {
				t.Errorf("%s: entry %s holds %q", s.gateway, id, v)
			}
			out = append(out, id)
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	if got := ids(a); got != "x,z" {
		t.Errorf("gw-a loads %s, want x,z", got)
	}
	if got := ids(b); got != "y,z" {
		t.Errorf("gw-b loads %s, want y,z", got)
	}
	if err := a.Put(ctx, "z", def("z")); err != nil { // gw-a changes z: it becomes gw-a's
		t.Fatal(err)
	}
	if got := ids(a); got != "x,z" {
		t.Errorf("gw-a after its change of z loads %s, want x,z", got)
	}
	if got := ids(b); got != "y" {
		t.Errorf("gw-b after gw-a's change of z loads %s, want y", got)
	}
	if err := b.Delete(ctx, "x"); err != nil { // another gateway's id: nothing of gw-a's goes
		t.Fatal(err)
	}
	if err := a.Delete(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if got := ids(a); got != "z" {
		t.Errorf("gw-a after deleting x loads %s, want z", got)
	}
}

// TestReloadReportsFailedRollback: a changed simulator whose new port is taken is rolled back, and when the old
// block does not start either (its port is taken too: it has been failing since the start) the reload's result says so instead of dropping it.
func TestReloadReportsFailedRollback(t *testing.T) {
	busy := make([]net.Listener, 2)
	for i := range busy {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		busy[i] = l
	}
	sim := func(l net.Listener) string { return fmt.Sprintf("simulator \"s\" { listen = %q }\n", l.Addr()) }
	rt, write := reloadRuntime(t, gatewayForReload+sim(busy[0]))
	write(gatewayForReload + sim(busy[1]))
	err := rt.RequestReload(15 * time.Second)
	if err == nil {
		t.Fatal("reload onto a taken port: no error")
	}
	for _, want := range []string{"endpoints/simulator-s", busy[1].Addr().String(), "the previous config did not start again either", busy[0].Addr().String()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("reload error %q lacks %q", err, want)
		}
	}
}
