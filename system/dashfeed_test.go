package system

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/system/dashboard"
)

// TestTreeFeedOnChange: a crash shows on iot.metrics.tree.{gateway} as the actor restarting, then running with
// one restart more, without waiting for the period; the sinks' feed carries the sinks.
func TestTreeFeedOnChange(t *testing.T) {
	rt := startRuntime(t, parseConfig(t, `
gateway { id = "feed" }
faults { enabled = true }
supervisor {
  backoff {
    initial = "2s"
    max     = "10s"
  }
}
device "d1" {
  driver   = "mock"
  interval = "100ms"
  point "p" { signal = "sine" }
}
sink "console" { type = "console" }
`))
	nc := client(t, rt.Bus().URL)
	feed := collect(t, nc, SubjectMetricsTree+".feed")
	sinks := collect(t, nc, SubjectMetricsSinks+".feed")
	stateOf := func(m []byte) (string, int) {
		var f TreeFeed
		if err := json.Unmarshal(m, &f); err != nil {
			t.Fatalf("feed %q: %v", m, err)
		}
		if f.Gateway != "feed" || f.Timestamp == 0 {
			t.Fatalf("feed header: %+v", f)
		}
		for _, a := range f.Actors {
			if a.Path == "devices/d1" {
				return a.State, a.Restarts
			}
		}
		return "", 0
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		for _, m := range feed.all() {
			if s, _ := stateOf(m.Data); s == StateRunning {
				return nil
			}
		}
		return fmt.Errorf("no feed with devices/d1 running in %d messages", feed.n())
	})
	if r := request(t, nc, SubjectFaultsInject, `{"kind":"crash","target":"devices/d1"}`); !r.OK {
		t.Fatalf("inject: %+v", r)
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		var seen []string
		restarting := false
		for _, m := range feed.all() {
			s, n := stateOf(m.Data)
			seen = append(seen, fmt.Sprintf("%s/%d", s, n))
			if s == StateRestarting {
				restarting = true
			}
			if restarting && s == StateRunning && n == 1 {
				return nil
			}
		}
		return fmt.Errorf("devices/d1 in the feed: %v", seen[max(0, len(seen)-10):])
	})
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		for _, m := range sinks.all() {
			var r ControlReply
			if json.Unmarshal(m.Data, &r) == nil && len(r.Sinks) == 1 && r.Sinks[0].Name == "console" {
				return nil
			}
		}
		return fmt.Errorf("no sinks feed in %d messages", sinks.n())
	})
}

// TestDashboardSessionOpensTheWebSocket: with http.token, a browser has no Authorization header for /ws; its
// session cookie opens it, and only a valid one. The filter checks still apply to a signed-in user.
func TestDashboardSessionOpensTheWebSocket(t *testing.T) {
	const token = "ws-session-token-0123456789"
	rt := startRuntime(t, parseConfig(t, `
gateway { id = "ws" }
http { token = "`+token+`" }
nats {
  authorization {
    user "viewer" { password = "viewer-password" }
  }
}
`))
	base := "http://" + rt.HTTPAddr()
	url := wsURL(rt, "subject=iot.metrics.tree.ws")
	status := func(header http.Header) int {
		req, _ := http.NewRequest(http.MethodGet, strings.Replace(url, "ws://", "http://", 1), nil)
		req.Header = header
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(http.Header{}); got != http.StatusUnauthorized {
		t.Errorf("/ws without a session or token: %d", got)
	}
	if got := status(http.Header{"Cookie": {dashboard.CookieName + "=forged"}}); got != http.StatusUnauthorized {
		t.Errorf("/ws with a forged session: %d", got)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/login", strings.NewReader(`{"user":"viewer","password":"viewer-password"}`))
	req.Header.Set(dashboard.CSRFHeader, "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == dashboard.CookieName {
			cookie = c.Name + "=" + c.Value
		}
	}
	if resp.StatusCode != http.StatusOK || cookie == "" {
		t.Fatalf("sign-in: %d, cookie %q", resp.StatusCode, cookie)
	}
	c := wsDial(t, url, http.Header{"Cookie": {cookie}})
	f := wsRead(t, c) // the feed comes within feedPeriod at most
	if f.Subject != "iot.metrics.tree.ws" {
		t.Errorf("first frame on %s", f.Subject)
	}
	hostile := strings.Replace(url, "subject=iot.metrics.tree.ws", "subject=iot.control.>", 1)
	req, _ = http.NewRequest(http.MethodGet, strings.Replace(hostile, "ws://", "http://", 1), nil)
	req.Header.Set("Cookie", cookie)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a signed-in user's /ws on iot.control.>: %d", resp.StatusCode)
	}
	// The API through the real control plane: the viewer reads the tree, and may not write.
	get, _ := http.NewRequest(http.MethodGet, base+"/api/dash/tree", nil)
	get.Header.Set("Cookie", cookie)
	resp, err = http.DefaultClient.Do(get)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var root Node
	if resp.StatusCode != 200 || json.Unmarshal(body, &root) != nil || root.Path == "" {
		t.Errorf("tree for the viewer: %d %s", resp.StatusCode, body)
	}
	// The text index keeps the token: it is the page that is public, not what / says to curl.
	resp, err = http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the text index without the token: %d", resp.StatusCode)
	}
}

// A session opens /ws and the dashboard's API only: pushing points and the text index still want the token.
func TestDashboardSessionOpensNothingElse(t *testing.T) {
	const token = "ws-session-token-0123456789"
	rt := startRuntime(t, parseConfig(t, `
gateway { id = "ws" }
http { token = "`+token+`" }
nats {
  authorization {
    user "viewer" { password = "viewer-password" }
  }
}
device "pushed" {
  driver = "http"
  mode   = "push"
}
`))
	base := "http://" + rt.HTTPAddr()
	req, _ := http.NewRequest(http.MethodPost, base+"/login", strings.NewReader(`{"user":"viewer","password":"viewer-password"}`))
	req.Header.Set(dashboard.CSRFHeader, "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(resp.Cookies()) == 0 {
		t.Fatalf("sign-in: %d, no cookie", resp.StatusCode)
	}
	cookie := resp.Cookies()[0]
	for _, r := range []struct{ method, path, body string }{
		{http.MethodPost, PushPathPrefix + "pushed", `{"key":"k","value":1}`},
		{http.MethodGet, "/index.txt", ""},
	} {
		req, _ := http.NewRequest(r.method, base+r.path, strings.NewReader(r.body))
		req.AddCookie(cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s with a session and no token: %d, want 401", r.method, r.path, resp.StatusCode)
		}
	}
}

// TestTreeParts: a tree that fits is one message without part numbers; a larger one is split into parts that each
// fit, carry the same header and numbers 1..n, and hold every actor once, in order; an actor larger than the limit
// goes alone.
func TestTreeParts(t *testing.T) {
	f := TreeFeed{Gateway: "gw-1", Timestamp: 1764000000000000000}
	for i := range 300 {
		f.Actors = append(f.Actors, FeedActor{Path: fmt.Sprintf("devices/plc-%03d", i), Kind: "device", State: StateRunning,
			LastError: strings.Repeat("x", i%97), Depth: i})
	}
	whole, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	one, err := treeParts(f, len(whole))
	if err != nil || len(one) != 1 || string(one[0]) != string(whole) {
		t.Fatalf("a tree that fits: %d messages, %v", len(one), err)
	}
	if strings.Contains(string(one[0]), `"part"`) {
		t.Errorf("a single message carries part numbers: %.200s", one[0])
	}

	const limit = 2000
	parts, err := treeParts(f, limit)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) < len(whole)/limit {
		t.Fatalf("%d parts for %d bytes at %d each", len(parts), len(whole), limit)
	}
	var got []FeedActor
	for i, p := range parts {
		if len(p) > limit {
			t.Errorf("part %d: %d bytes, over %d", i+1, len(p), limit)
		}
		var pf TreeFeed
		if err := json.Unmarshal(p, &pf); err != nil {
			t.Fatalf("part %d: %v: %.200s", i+1, err, p)
		}
		if pf.Gateway != f.Gateway || pf.Timestamp != f.Timestamp || pf.Part != i+1 || pf.Parts != len(parts) || len(pf.Actors) == 0 {
			t.Fatalf("part %d header: %+v (%d actors)", i+1, pf, len(pf.Actors))
		}
		got = append(got, pf.Actors...)
	}
	if len(got) != len(f.Actors) {
		t.Fatalf("%d actors in the parts, want %d", len(got), len(f.Actors))
	}
	for i := range got {
		if got[i].Path != f.Actors[i].Path || got[i].LastError != f.Actors[i].LastError || got[i].Depth != f.Actors[i].Depth {
			t.Fatalf("actor %d: got %+v, want %+v", i, got[i], f.Actors[i])
		}
	}

	big := TreeFeed{Gateway: "gw-1", Timestamp: 1, Actors: []FeedActor{{Path: "a"}, {Path: "b", LastError: strings.Repeat("e", 5000)}, {Path: "c"}}}
	parts, err = treeParts(big, 1000)
	if err != nil || len(parts) != 3 {
		t.Fatalf("an actor over the limit: %d parts, %v", len(parts), err)
	}
	if !strings.Contains(string(parts[1]), `"path":"b"`) || len(parts[1]) < 5000 {
		t.Errorf("the large actor's part: %.100s", parts[1])
	}
}

// TestTreeFeedInParts: with a small part size the gateway publishes its tree in parts, and the parts of one
// timestamp hold every actor of the tree.
func TestTreeFeedInParts(t *testing.T) {
	src := "gateway { id = \"parts\" }\nsink \"console\" { type = \"console\" }\n"
	for i := range 20 {
		src += fmt.Sprintf("device \"d%02d\" {\n  driver = \"mock\"\n  interval = \"1s\"\n  point \"p\" { signal = \"sine\" }\n}\n", i)
	}
	rt := startRuntime(t, parseConfig(t, src), WithFeedPartBytes(1024))
	nc := client(t, rt.Bus().URL)
	feed := collect(t, nc, SubjectMetricsTree+".parts")
	want := flatten(tree(t, nc), nil)
	checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		byTS := map[int64]map[int][]FeedActor{}
		for _, m := range feed.all() {
			if len(m.Data) > 1024 {
				return fmt.Errorf("a feed message of %d bytes", len(m.Data))
			}
			var f TreeFeed
			if err := json.Unmarshal(m.Data, &f); err != nil {
				t.Fatalf("feed %q: %v", m.Data, err)
			}
			if f.Parts < 2 {
				t.Fatalf("a tree of %d actors in one message of %d bytes", len(f.Actors), len(m.Data))
			}
			if byTS[f.Timestamp] == nil {
				byTS[f.Timestamp] = map[int][]FeedActor{}
			}
			byTS[f.Timestamp][f.Part] = f.Actors
			if len(byTS[f.Timestamp]) < f.Parts {
				continue
			}
			seen := map[string]bool{}
			for p := 1; p <= f.Parts; p++ {
				for _, a := range byTS[f.Timestamp][p] {
					seen[a.Path] = true
				}
			}
			for _, n := range want {
				if !seen[n.Path] {
					return fmt.Errorf("%s missing from a complete set of %d parts", n.Path, f.Parts)
				}
			}
			return nil
		}
		return fmt.Errorf("no complete set of parts in %d messages", feed.n())
	})
}
