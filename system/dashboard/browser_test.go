package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/iotgw/iotgw/system"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// The dashboard in a real browser: Debian's chromium, headless, driven by chromedp. Every wait is on a condition
// of the page (the DOM, or the figures app.js keeps in window.iotgwStats) with a generous bound; nothing is timed.

const (
	testToken     = "dashboard-test-token-0123456789"
	adminPassword = "admin-password-1"
	viewerPass    = "viewer-password-1"
)

// browserConfig: two mock devices, one of them hot enough to fire the alert rule, a console sink, faults on, an
// admin and a read-only user, and an HTTP token, so that the page asks to sign in as it does beyond loopback.
// The restart backoff is long (3 s), so the page has time to show "restarting" after a crash.
func browserConfig(extra string) string {
	return `
gateway {
  id           = "dash-test"
  http_address = "127.0.0.1:0"
}
http { token = "` + testToken + `" }
nats {
  port = -1
  authorization {
    user "admin" {
      password = "` + adminPassword + `"
      admin    = true
    }
    user "viewer" { password = "` + viewerPass + `" }
  }
}
supervisor {
  backoff {
    initial = "3s"
    max     = "10s"
  }
}
faults { enabled = true }
device "boiler-1" {
  driver   = "mock"
  interval = "200ms"
  point "temperature" {
    signal = "ramp"
    period = "10s"
  }
}
device "furnace-1" {
  driver   = "mock"
  interval = "500ms"
  point "temperature" {
    signal = "constant"
    value  = 95
  }
}
rule "furnace-hot" {
  type = "alert"
  match { devices = ["furnace-1"] }
  when = "value > 90"
}
sink "console" { type = "console" }
` + extra
}

func startGateway(t testing.TB, src string, opts ...system.Option) *system.Runtime {
	t.Helper()
	cfg, diags := config.Parse([]byte(src), "dashboard_test.hcl")
	if diags.HasErrors() {
		t.Fatalf("config: %s", diags.Error())
	}
	cfg.Gateway.DataDir = t.TempDir()
	rt := system.New(cfg, append([]system.Option{system.WithLogger(zerolog.Nop()), system.WithStdout(io.Discard)}, opts...)...)
	if err := rt.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = rt.Stop() })
	return rt
}

func signIn(t testing.TB, ctx context.Context, base, user, password string) {
	t.Helper()
	testenv.BrowserDo(t, ctx, "open the page", chromedp.Navigate(base+"/"))
	testenv.WaitJS(t, ctx, "the sign-in form", `!document.getElementById("login").hidden`)
	testenv.BrowserDo(t, ctx, "sign in as "+user,
		chromedp.SetValue(chromedp.ID("login-user"), user),
		chromedp.SetValue(chromedp.ID("login-password"), password),
		chromedp.Click(chromedp.ID("login-submit")))
	testenv.WaitJS(t, ctx, "the page, live", `!document.getElementById("app").hidden && document.getElementById("conn").textContent === "live"`)
}

func tab(t testing.TB, ctx context.Context, view string) {
	t.Helper()
	testenv.BrowserDo(t, ctx, "open the "+view+" tab", chromedp.Click(chromedp.CSS(`#tabs button[data-view="`+view+`"]`)))
	testenv.WaitJS(t, ctx, "the "+view+" view", `!document.getElementById("view-`+view+`").hidden`)
}

// screenshot writes docs/dashboard-{name}.png when IOTGW_SCREENSHOTS is set (README "Dashboard" shows them).
func screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("IOTGW_SCREENSHOTS") == "" {
		return
	}
	c, cancel := context.WithTimeout(ctx, testenv.BrowserTimeout)
	defer cancel()
	png, err := chromedp.Run(c, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join("..", "..", "docs", "dashboard-"+name+".png")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func adminConn(t testing.TB, rt *system.Runtime) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(rt.Bus().URL, nats.UserInfo("admin", adminPassword))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// actorPaths are the paths of every actor in the gateway's tree (iot.control.tree).
func actorPaths(t testing.TB, nc *nats.Conn) []string {
	t.Helper()
	msg, err := nc.Request(system.SubjectTree, nil, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var root system.Node
	if err := json.Unmarshal(msg.Data, &root); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(n *system.Node)
	walk = func(n *system.Node) {
		out = append(out, n.Path)
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(&root)
	return out
}

func TestDashboardInABrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts chromium (CI runs it)")
	}
	ctx := testenv.Browser(t)
	rt := startGateway(t, browserConfig(""))
	base := "http://" + rt.HTTPAddr()
	nc := adminConn(t, rt)

	signIn(t, ctx, base, "admin", adminPassword)
	if !testenv.EvalJS[bool](t, ctx, `!document.getElementById("tab-faults").hidden`) {
		t.Fatal("an admin sees no fault panel")
	}

	// The tree shows every actor of the config.
	paths := actorPaths(t, nc)
	for _, want := range []string{"devices/boiler-1", "devices/furnace-1", "rules/furnace-hot", "sinks/console"} {
		if !strings.Contains(strings.Join(paths, " "), want) {
			t.Fatalf("the gateway's tree lacks %s: %v", want, paths)
		}
	}
	js, _ := json.Marshal(paths)
	testenv.WaitJS(t, ctx, "every actor in the tree view", fmt.Sprintf(`%s.every(p => [...document.querySelectorAll("#tree tbody tr")].some(tr => tr.dataset.path === p))`, js))
	testenv.WaitJS(t, ctx, "the devices running", `[...document.querySelectorAll("#tree tbody tr")].filter(tr => tr.dataset.path.startsWith("devices/") && tr.querySelector(".state").textContent === "running").length === 2`)
	screenshot(t, ctx, "tree")

	// A device's value changes on screen.
	tab(t, ctx, "devices")
	valueJS := `(document.querySelector('#devices tr[data-device="boiler-1"] .point[data-key="temperature"] .value') || {}).textContent`
	testenv.WaitJS(t, ctx, "a value of boiler-1", valueJS+` !== undefined`)
	first := testenv.EvalJS[string](t, ctx, valueJS)
	testenv.WaitJS(t, ctx, "boiler-1's value to change from "+first, valueJS+` !== undefined && `+valueJS+` !== `+jsString(first))
	testenv.WaitJS(t, ctx, "a sparkline", `!!document.querySelector('#devices tr[data-device="boiler-1"] .spark canvas')`)
	screenshot(t, ctx, "devices")

	// An alert appears and is acknowledged.
	tab(t, ctx, "alerts")
	testenv.WaitJS(t, ctx, "the furnace alert", `!!document.querySelector('#alerts tr[data-key^="furnace-hot:furnace-1"] button.ack')`)
	screenshot(t, ctx, "alerts")
	testenv.BrowserDo(t, ctx, "acknowledge", chromedp.Click(chromedp.CSS(`#alerts tr[data-key^="furnace-hot:furnace-1"] button.ack`)))
	testenv.WaitJS(t, ctx, "the alert acknowledged by admin", `(document.querySelector('#alerts tr[data-key^="furnace-hot:furnace-1"] .acked') || {}).textContent === "by admin"`)

	// A crash injected from the fault panel: the actor restarts, then runs.
	tab(t, ctx, "faults")
	testenv.BrowserDo(t, ctx, "inject a crash",
		chromedp.SetValue(chromedp.ID("fault-target"), "devices/boiler-1"),
		chromedp.SetValue(chromedp.ID("fault-kind"), "crash"),
		chromedp.Click(chromedp.ID("fault-inject")))
	testenv.WaitJS(t, ctx, "the injection confirmed", `document.getElementById("fault-result").textContent.startsWith("injected")`)
	screenshot(t, ctx, "faults")
	tab(t, ctx, "tree")
	testenv.WaitJS(t, ctx, "boiler-1 seen restarting", `iotgwStats.transitions.includes("devices/boiler-1 running→restarting")`)
	testenv.WaitJS(t, ctx, "the supervisor's backoff (3 s ± 20%)", `iotgwStats.backoffs["devices/boiler-1"] >= 2400`)
	screenshot(t, ctx, "restarting")
	rowJS := `document.querySelector('#tree tr[data-path="devices/boiler-1"]')`
	testenv.WaitJS(t, ctx, "boiler-1 running again after one restart", rowJS+`.querySelector(".state").textContent === "running" && `+rowJS+`.querySelector(".restarts").textContent === "1"`)

	// Sinks and rules have their figures.
	tab(t, ctx, "sinks")
	testenv.WaitJS(t, ctx, "the console sink", `(document.querySelector('#sinks tr[data-sink="console"] .state') || {}).textContent === "running"`)
	tab(t, ctx, "rules")
	testenv.WaitJS(t, ctx, "the rule's figures", `+((document.querySelector('#rules tr[data-rule="furnace-hot"] td.num') || {}).textContent || 0) > 0`)
	screenshot(t, ctx, "rules")
}

// TestDashboardTreeInParts: a gateway whose tree feed is larger than a bus message sends it in parts (here forced
// by a 1 KiB part size); the page joins them, so every actor stays in the tree view after trees in parts arrive.
func TestDashboardTreeInParts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts chromium (CI runs it)")
	}
	ctx := testenv.Browser(t)
	rt := startGateway(t, browserConfig(""), system.WithFeedPartBytes(1024))
	nc := adminConn(t, rt)
	signIn(t, ctx, "http://"+rt.HTTPAddr(), "admin", adminPassword)
	testenv.WaitJS(t, ctx, "two trees joined from parts", `iotgwStats.treeParts >= 2`)
	js, _ := json.Marshal(actorPaths(t, nc))
	testenv.WaitJS(t, ctx, "every actor in the tree view", fmt.Sprintf(`%s.every(p => [...document.querySelectorAll("#tree tbody tr")].some(tr => tr.dataset.path === p))`, js))
}

// A read-only user: no fault panel and no acknowledge on the page, and the server refuses its writes even when
// sent by hand with a valid session and the CSRF header.
func TestDashboardReadOnlyUser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts chromium (CI runs it)")
	}
	ctx := testenv.Browser(t)
	rt := startGateway(t, browserConfig(""))
	base := "http://" + rt.HTTPAddr()

	signIn(t, ctx, base, "viewer", viewerPass)
	if got := testenv.EvalJS[string](t, ctx, `document.getElementById("who").textContent`); got != "viewer (read-only)" {
		t.Errorf("who: %q", got)
	}
	if !testenv.EvalJS[bool](t, ctx, `document.getElementById("tab-faults").hidden`) {
		t.Error("a read-only user sees the fault panel")
	}
	tab(t, ctx, "alerts")
	testenv.WaitJS(t, ctx, "the furnace alert", `!!document.querySelector('#alerts tr[data-key^="furnace-hot:furnace-1"]')`)
	if testenv.EvalJS[bool](t, ctx, `!!document.querySelector("#alerts button.ack")`) {
		t.Error("a read-only user is offered acknowledge")
	}
	// The writes, from the page's own origin with its cookie, as a hostile viewer would send them.
	for _, w := range []struct{ path, body string }{
		{"/api/dash/faults/inject", `{"kind":"crash","target":"devices/boiler-1"}`},
		{"/api/dash/alerts/ack", `{"dedup_key":"furnace-hot:furnace-1:temperature:when"}`},
		{"/api/dash/faults/clear", `{"target":"devices/boiler-1"}`},
	} {
		status := testenv.EvalJS[float64](t, ctx, fmt.Sprintf(`(async () => (await fetch(%s, {method: "POST", headers: {"X-Iotgw": "1", "Content-Type": "application/json"}, body: %s})).status)()`,
			jsString(w.path), jsString(w.body)))
		if status != http.StatusForbidden {
			t.Errorf("viewer POST %s: status %v, want 403", w.path, status)
		}
	}
	var root system.Node
	msg, err := adminConn(t, rt).Request(system.SubjectTree, nil, 10*time.Second)
	if err != nil || json.Unmarshal(msg.Data, &root) != nil {
		t.Fatal(err)
	}
	for _, g := range root.Children {
		for _, n := range g.Children {
			if n.Path == "devices/boiler-1" && n.Restarts != 0 {
				t.Errorf("boiler-1 restarted %d times after the viewer's refused crash", n.Restarts)
			}
		}
	}
}

// The page reconnects by itself when the gateway restarts (on the same address), and shows the new gateway's
// data: a sign-in is asked again (sessions live in the gateway's memory).
func TestDashboardReconnectsAfterARestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts chromium (CI runs it)")
	}
	ctx := testenv.Browser(t)
	port := testenv.FreePort(t)
	src := strings.Replace(browserConfig(""), `http_address = "127.0.0.1:0"`, fmt.Sprintf(`http_address = "127.0.0.1:%d"`, port), 1)
	rt := startGateway(t, src)
	base := "http://" + rt.HTTPAddr()
	signIn(t, ctx, base, "admin", adminPassword)
	if err := rt.Stop(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitJS(t, ctx, "the page to see the gateway gone", `document.getElementById("conn").textContent !== "live"`)
	startGateway(t, src)
	testenv.WaitJS(t, ctx, "the sign-in form again", `!document.getElementById("login").hidden`)
	testenv.BrowserDo(t, ctx, "sign in again",
		chromedp.SetValue(chromedp.ID("login-user"), "admin"),
		chromedp.SetValue(chromedp.ID("login-password"), adminPassword),
		chromedp.Click(chromedp.ID("login-submit")))
	testenv.WaitJS(t, ctx, "the page live again", `document.getElementById("conn").textContent === "live" && iotgwStats.connects >= 2`)
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
