package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// The sign-in, the sessions, the roles and the API's bad input, against the handler itself; the control plane
// behind it is a recorder of the requests it would have forwarded (the browser tests run the real gateway).

type recorder struct {
	mu   sync.Mutex
	sent []string // "subject body"
}

func (r *recorder) request(_ context.Context, subject string, body []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, subject+" "+string(body))
	return []byte(`{"ok":true,"devices":[{"id":"d1","hcl":"password = \"secret\""}]}`), nil
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.sent...)
}

func testServer(t *testing.T, o Options) (*httptest.Server, *recorder) {
	t.Helper()
	rec := &recorder{}
	o.Request = rec.request
	o.Gateway = "gw"
	o.Index = func(w io.Writer) { fmt.Fprintln(w, "index") }
	mux := http.NewServeMux()
	New(o).Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, rec
}

type client struct {
	t      *testing.T
	srv    *httptest.Server
	cookie string
}

func (c *client) do(method, path, body string, header map[string]string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.srv.URL+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if c.cookie != "" {
		req.Header.Set("Cookie", CookieName+"="+c.cookie)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, ck := range resp.Cookies() {
		if ck.Name == CookieName {
			c.cookie = ck.Value
		}
	}
	return resp, string(b)
}

var writeHeader = map[string]string{CSRFHeader: "1", "Content-Type": "application/json"}

func (c *client) post(path, body string) (int, string) {
	c.t.Helper()
	resp, b := c.do(http.MethodPost, path, body, writeHeader)
	return resp.StatusCode, b
}

func (c *client) get(path string) (int, string) {
	c.t.Helper()
	resp, b := c.do(http.MethodGet, path, "", nil)
	return resp.StatusCode, b
}

// errOf is the message of an error reply.
func errOf(body string) string {
	var e struct{ Error string }
	if json.Unmarshal([]byte(body), &e) != nil {
		return body
	}
	return e.Error
}

func users(t *testing.T) []User {
	hash, err := bcrypt.GenerateFromPassword([]byte("hashed-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return []User{{Name: "admin", Password: "admin-password", Admin: true}, {Name: "viewer", Password: "viewer-password"},
		{Name: "hashed", Password: string(hash)}}
}

func TestSignInAndRoles(t *testing.T) {
	srv, rec := testServer(t, Options{Users: users(t), Token: "the-http-token-0123", Faults: true})
	anon := &client{t: t, srv: srv}
	if code, _ := anon.get("/api/dash/tree"); code != http.StatusUnauthorized {
		t.Errorf("anonymous with a token configured: %d", code)
	}
	if code, _ := anon.post("/api/dash/faults/inject", `{"kind":"crash","target":"devices/d1"}`); code != http.StatusUnauthorized {
		t.Errorf("anonymous write: %d", code)
	}
	resp, body := anon.do(http.MethodGet, "/", "", map[string]string{"Accept": "text/html"})
	if resp.StatusCode != 200 || !strings.Contains(body, "<script src=\"/assets/app.js\">") || resp.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("the page: %d %q", resp.StatusCode, body[:min(len(body), 80)])
	}
	if _, body := anon.get("/"); body != "index\n" {
		t.Errorf("curl's / is not the text index: %q", body)
	}
	if _, body := anon.get("/index.txt"); body != "index\n" {
		t.Errorf("/index.txt: %q", body)
	}
	if code, _ := anon.get("/assets/"); code != http.StatusNotFound {
		t.Errorf("asset listing: %d", code)
	}

	for _, bad := range []struct{ user, pass string }{{"admin", "wrong"}, {"admin", "admin-passwor"}, {"nobody", "admin-password"}, {"hashed", "$2a$"}} {
		c := &client{t: t, srv: srv}
		if code, _ := c.post("/login", fmt.Sprintf(`{"user":%q,"password":%q}`, bad.user, bad.pass)); code != http.StatusUnauthorized || c.cookie != "" {
			t.Errorf("sign-in %s/%s: %d, cookie %q", bad.user, bad.pass, code, c.cookie)
		}
	}

	viewer := &client{t: t, srv: srv}
	resp, body = viewer.do(http.MethodPost, "/login", `{"user":"viewer","password":"viewer-password"}`, writeHeader)
	if resp.StatusCode != 200 || viewer.cookie == "" {
		t.Fatalf("viewer sign-in: %d %s", resp.StatusCode, body)
	}
	ck := resp.Cookies()[0]
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.MaxAge != int(SessionTTL.Seconds()) || ck.Path != "/" {
		t.Errorf("cookie: %+v", ck)
	}
	var s SessionReply
	_, body = viewer.get("/api/dash/session")
	if json.Unmarshal([]byte(body), &s) != nil || s.User != "viewer" || s.Admin || s.Faults {
		t.Errorf("viewer session: %s", body)
	}
	code, body := viewer.get("/api/dash/devices")
	if code != 200 || strings.Contains(body, "secret") || strings.Contains(body, "hcl") {
		t.Errorf("devices for the viewer: %d %s (a device's hcl may hold credentials)", code, body)
	}
	before := len(rec.all())
	for _, w := range []struct{ path, body string }{
		{"/api/dash/faults/inject", `{"kind":"crash","target":"devices/d1"}`},
		{"/api/dash/faults/clear", `{"target":"devices/d1"}`},
		{"/api/dash/alerts/ack", `{"dedup_key":"k"}`},
	} {
		if code, body := viewer.post(w.path, w.body); code != http.StatusForbidden || !strings.Contains(body, "not an admin") {
			t.Errorf("viewer %s: %d %s", w.path, code, body)
		}
	}
	if n := len(rec.all()); n != before {
		t.Errorf("the viewer's writes reached the control plane: %v", rec.all()[before:])
	}

	for _, who := range []struct{ name, body string }{
		{"admin", `{"user":"admin","password":"admin-password"}`},
		{"hashed", `{"user":"hashed","password":"hashed-password"}`},
		{"token", `{"token":"the-http-token-0123"}`},
	} {
		c := &client{t: t, srv: srv}
		if code, body := c.post("/login", who.body); code != 200 {
			t.Fatalf("%s sign-in: %d %s", who.name, code, body)
		}
		want := who.name != "hashed" // hashed is not an admin
		code, body := c.post("/api/dash/alerts/ack", `{"dedup_key":"k1"}`)
		if (code == 200) != want {
			t.Errorf("%s ack: %d %s", who.name, code, body)
		}
	}
	sent := rec.all()
	if last := sent[len(sent)-1]; last != `iot.control.alerts.ack {"dedup_key":"k1","by":"token"}` {
		t.Errorf("the ack forwarded: %q (by is the signed-in user)", last)
	}

	// Sign-out ends the session on the server, not only in the browser.
	old := viewer.cookie
	if code, _ := viewer.post("/logout", ""); code != 200 {
		t.Errorf("sign-out: %d", code)
	}
	viewer.cookie = old
	if code, _ := viewer.get("/api/dash/tree"); code != http.StatusUnauthorized {
		t.Errorf("a signed-out session still works: %d", code)
	}
}

func TestSessionExpires(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv, _ := testServer(t, Options{Users: users(t), Token: "tok-0123456789abcdef", Now: clock})
	c := &client{t: t, srv: srv}
	if code, _ := c.post("/login", `{"user":"admin","password":"admin-password"}`); code != 200 {
		t.Fatal(code)
	}
	if code, _ := c.get("/api/dash/tree"); code != 200 {
		t.Fatalf("fresh session: %d", code)
	}
	mu.Lock()
	now = now.Add(SessionTTL)
	mu.Unlock()
	if code, _ := c.get("/api/dash/tree"); code != http.StatusUnauthorized {
		t.Errorf("expired session: %d", code)
	}
}

// Without a token an anonymous visitor on loopback is an admin, as for every other HTTP path; a Host that is not
// loopback (a rebound name) is nobody, and a signed-in user is who they signed in as.
func TestLoopbackWithoutToken(t *testing.T) {
	srv, _ := testServer(t, Options{Users: users(t), Faults: true})
	anon := &client{t: t, srv: srv}
	_, body := anon.get("/api/dash/session")
	var s SessionReply
	if json.Unmarshal([]byte(body), &s) != nil || !s.Admin || !s.Anon || !s.Faults || !s.Login {
		t.Errorf("anonymous on loopback: %s", body)
	}
	if code, body := anon.post("/api/dash/faults/inject", `{"kind":"crash","target":"devices/d1"}`); code != 200 {
		t.Errorf("anonymous admin write: %d %s", code, body)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/dash/tree", nil)
	req.Host = "evil.example"
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusUnauthorized {
		t.Errorf("a rebound Host name: %d", resp2.StatusCode)
	}
	viewer := &client{t: t, srv: srv}
	viewer.post("/login", `{"user":"viewer","password":"viewer-password"}`)
	if code, _ := viewer.post("/api/dash/faults/inject", `{"kind":"crash","target":"devices/d1"}`); code != http.StatusForbidden {
		t.Errorf("a signed-in viewer on loopback: %d", code)
	}
}

func TestWritesNeedMoreThanTheCookie(t *testing.T) {
	srv, rec := testServer(t, Options{Users: users(t), Token: "tok-0123456789abcdef", Faults: true})
	c := &client{t: t, srv: srv}
	c.post("/login", `{"user":"admin","password":"admin-password"}`)
	body := `{"kind":"crash","target":"devices/d1"}`
	for _, h := range []map[string]string{
		{"Content-Type": "application/json"},                      // a form or fetch from elsewhere: no header
		{CSRFHeader: "0"},                                         // the wrong value
		{CSRFHeader: "1", "Origin": "http://evil.example"},        // another origin
		{CSRFHeader: "1", "Origin": "null"},                       // a sandboxed frame
		{CSRFHeader: "1", "Origin": srv.URL + ".evil.example"},    // a prefix match is no match
		{CSRFHeader: "1", "Origin": strings.ToUpper(srv.URL[:4])}, // nor a case-folded one
	} {
		if resp, b := c.do(http.MethodPost, "/api/dash/faults/inject", body, h); resp.StatusCode != http.StatusForbidden {
			t.Errorf("write with %v: %d %s", h, resp.StatusCode, b)
		}
	}
	if resp, _ := c.do(http.MethodPost, "/login", `{"user":"admin","password":"admin-password"}`, map[string]string{"Origin": "http://evil.example", CSRFHeader: "1"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site sign-in: %d", resp.StatusCode)
	}
	if resp, _ := c.do(http.MethodPost, "/api/dash/faults/inject", body, map[string]string{CSRFHeader: "1", "Origin": srv.URL}); resp.StatusCode != 200 {
		t.Errorf("a same-origin write: %d", resp.StatusCode)
	}
	if n := len(rec.all()); n != 1 {
		t.Errorf("%d requests forwarded, want 1: %v", n, rec.all())
	}
}

func TestBadInput(t *testing.T) {
	srv, rec := testServer(t, Options{Users: users(t), Token: "tok-0123456789abcdef", Faults: true})
	c := &client{t: t, srv: srv}
	for _, tc := range []struct {
		body string
		code int
		msg  string
	}{
		{``, 400, "sign-in is not"},
		{`{`, 400, "sign-in is not"},
		{`[]`, 400, "sign-in is not"},
		{`{"user":"admin"}`, 400, `give "user" and "password"`},
		{`{"user":"admin","password":"x","token":"y"}`, 400, "not both"},
		{`{"user":"admin","password":"admin-password","admin":true}`, 400, "unknown field"},
		{`{"user":"admin","password":"admin-password"} {}`, 400, "more than one"},
		{`{"user":"admin","password":"admin-password"}x`, 400, "sign-in is not"},
		{`{"user":"` + strings.Repeat("a", 300) + `","password":"p"}`, 400, "over 256"},
		{`{"user":"a","password":"` + strings.Repeat("p", MaxBody) + `"}`, 413, "over 4096 bytes"},
		{`{"user":1,"password":2}`, 400, "sign-in is not"},
	} {
		if code, body := c.post("/login", tc.body); code != tc.code || !strings.Contains(errOf(body), tc.msg) {
			t.Errorf("sign-in %.60q: %d %s, want %d %q", tc.body, code, body, tc.code, tc.msg)
		}
	}
	c.post("/login", `{"user":"admin","password":"admin-password"}`)
	for _, tc := range []struct {
		path, body string
		code       int
		msg        string
	}{
		{"/api/dash/faults/inject", `{"kind":"crash"}`, 400, `needs "kind" and "target"`},
		{"/api/dash/faults/inject", `{"kind":"crash","target":"devices/d1","extra":1}`, 400, "unknown field"},
		{"/api/dash/faults/inject", `{"kind":"crash","target":"devices/d1","probability":"x"}`, 400, "fault is not"},
		{"/api/dash/faults/inject", strings.Repeat(" ", MaxBody+1), 413, "over 4096"},
		{"/api/dash/faults/clear", `{}`, 400, `"id" or "target"`},
		{"/api/dash/alerts/ack", `{"dedup_key":"k","by":"someone-else"}`, 400, `"by" is the signed-in user`},
		{"/api/dash/alerts/ack", `{"dedup_key":""}`, 400, `needs "dedup_key"`},
		{"/api/dash/alerts/ack", "\xff\xfe", 400, "acknowledgement is not"},
		{"/api/dash/devices/add", `{}`, 404, "no action"},
		{"/api/dash/control/reload", `{}`, 404, "no action"},
	} {
		if code, body := c.post(tc.path, tc.body); code != tc.code || !strings.Contains(errOf(body), tc.msg) {
			t.Errorf("POST %s %.40q: %d %s, want %d %q", tc.path, tc.body, code, body, tc.code, tc.msg)
		}
	}
	if code, body := c.get("/api/dash/config"); code != 404 || !strings.Contains(body, "no view") {
		t.Errorf("unknown view: %d %s", code, body)
	}
	if n := len(rec.all()); n != 0 {
		t.Errorf("bad requests reached the control plane: %v", rec.all())
	}
	// A cookie of garbage, of a huge size or of a session that never was is no session.
	for _, v := range []string{"x", strings.Repeat("a", 4000), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		g := &client{t: t, srv: srv, cookie: v}
		if code, _ := g.get("/api/dash/tree"); code != http.StatusUnauthorized {
			t.Errorf("cookie %.20q: %d", v, code)
		}
	}
}

func TestFailedSignInsAreThrottled(t *testing.T) {
	srv, _ := testServer(t, Options{Users: users(t), Token: "tok-0123456789abcdef"})
	c := &client{t: t, srv: srv}
	for i := 0; i < FailedLoginsPerMinute; i++ {
		if code, _ := c.post("/login", `{"user":"admin","password":"guess"}`); code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, code)
		}
	}
	if code, _ := c.post("/login", `{"user":"admin","password":"admin-password"}`); code != http.StatusTooManyRequests {
		t.Errorf("after %d failures: %d, want 429", FailedLoginsPerMinute, code)
	}
}

func TestSessionsAreBounded(t *testing.T) {
	d := New(Options{})
	first := d.newSession(Identity{User: "first"})
	for i := 0; i < MaxSessions; i++ {
		d.newSession(Identity{User: "u"})
	}
	if n := len(d.sessions); n != MaxSessions {
		t.Errorf("%d sessions", n)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: CookieName, Value: first})
	if d.HasSession(r) {
		t.Error("the oldest session survived past the bound")
	}
}

func FuzzParseLogin(f *testing.F) {
	for _, s := range []string{`{"user":"a","password":"b"}`, `{"token":"t"}`, `{"user":"a","password":"b","token":"c"}`, `{`, `null`, `{"user":"\u0000","password":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := ParseLogin(b)
		if err != nil {
			return
		}
		byToken := req.Token != "" && req.User == "" && req.Password == ""
		byPassword := req.Token == "" && req.User != "" && req.Password != ""
		if !byToken && !byPassword {
			t.Fatalf("accepted %q as %+v", b, req)
		}
		if len(req.User) > 256 || len(b) > MaxBody {
			t.Fatalf("accepted %d bytes", len(b))
		}
	})
}

func FuzzParseWrite(f *testing.F) {
	for _, s := range []string{`{"kind":"crash","target":"devices/d1"}`, `{"id":"f-1"}`, `{"dedup_key":"k"}`, `{"dedup_key":"k","by":"x"}`, `{}`, `[`} {
		f.Add("faults/inject", []byte(s))
		f.Add("alerts/ack", []byte(s))
		f.Add("faults/clear", []byte(s))
	}
	f.Fuzz(func(t *testing.T, action string, b []byte) {
		subject, req, err := ParseWrite(action, b, Identity{User: "op", Admin: true})
		if err != nil {
			return
		}
		if !strings.HasPrefix(subject, "iot.control.") {
			t.Fatalf("subject %q", subject)
		}
		var m map[string]any
		if err := json.Unmarshal(req, &m); err != nil {
			t.Fatalf("forwarded %q is not a JSON object: %v", req, err)
		}
		if action == "alerts/ack" && m["by"] != "op" {
			t.Fatalf("ack forwarded with by=%v", m["by"])
		}
	})
}
