// Package dashboard is the gateway's live web page: the supervision tree, the devices and their latest points,
// the alerts, rules and sinks, and a fault panel. The page and its assets are embedded (assets/, built from
// web/ by web/build.sh, which reproduces the vendored uPlot from a committed npm lock); the package serves them,
// the sign-in and a small JSON API in front of the control subjects. Live updates do not come from here: the
// page opens the gateway's /ws endpoint on the subjects the gateway publishes (README "Dashboard").
//
// Who may do what:
//   - A signed-in visitor is who they signed in as: a NATS user of nats { authorization } (its password checked
//     the way nats-server checks it: bcrypt when it is a bcrypt hash, else a constant-time comparison), or the
//     http token, which signs in as an admin. Only admins may write (inject and clear faults, acknowledge alerts);
//     the server refuses the writes of the others with 403, the page only hides their buttons.
//   - Without http.token (the config allows that on loopback only, or with insecure = true) an anonymous visitor
//     is an admin, as it is for every other HTTP path, provided the Host it asked for is loopback (127.0.0.1, ::1,
//     localhost): a page of another site that rebinds its name to 127.0.0.1 gets nothing.
//   - With http.token, anonymous visitors get the page and the sign-in form only.
//
// A session is a random 256-bit id in an HttpOnly, SameSite=Strict cookie (Secure under TLS), held in memory
// (a restart signs everyone out) for SessionTTL. Every state-changing request (sign-in, sign-out, writes) must
// carry the header X-Iotgw: 1 and, when the browser sends one, an Origin equal to the page's: a cross-site form
// cannot set the header, and a cross-site fetch that sets it needs a CORS preflight the gateway never grants.
//
// The anchors: EdgeX's UI has no access control ("demo only") and Neuron's and eKuiper's poll a REST API every
// few seconds; this page reads each view once and is then pushed from the bus.
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

//go:embed assets
var assets embed.FS

// Limits of the sign-in and the API.
const (
	// SessionTTL is how long a session lasts from its sign-in.
	SessionTTL = 12 * time.Hour
	// MaxSessions bounds the sessions held; past it the oldest is ended.
	MaxSessions = 1024
	// MaxBody bounds a sign-in or API request body.
	MaxBody = 4 << 10
	// FailedLoginsPerMinute bounds failed sign-ins, all users together; past it sign-ins get 429 for the rest of
	// the minute. Passwords are checked with bcrypt at best: this keeps a guesser to a trickle.
	FailedLoginsPerMinute = 30
	// RequestTimeout bounds one control request made for the API.
	RequestTimeout = 10 * time.Second
	// CookieName is the session cookie.
	CookieName = "iotgw_session"
	// CSRFHeader must be present, with the value "1", on every state-changing request.
	CSRFHeader = "X-Iotgw"
)

// User is one account that may sign in: a NATS user with a password.
type User struct {
	Name     string
	Password string // plain or a bcrypt hash ($2a$…), as in nats { authorization }
	Admin    bool
}

// Options are what the gateway gives the dashboard.
type Options struct {
	Gateway string // the gateway id: the page subscribes to iot.metrics.tree.{gateway}
	Version string
	Faults  bool   // faults { enabled }: the fault panel is offered to admins
	Users   []User // the NATS users with a password
	Token   string // http.token, "" for none
	Secure  bool   // served over TLS: cookies get Secure
	// Request makes a control request on the bus and returns the reply body.
	Request func(ctx context.Context, subject string, body []byte) ([]byte, error)
	// Index writes the plain-text index of the HTTP paths, for curl and for Accept without text/html.
	Index func(w io.Writer)
	// Now is the clock, time.Now when nil.
	Now func() time.Time
}

// Identity is who a request is from.
type Identity struct {
	User  string `json:"user"` // "" for an anonymous visitor on loopback without a token
	Admin bool   `json:"admin"`
}

// Dashboard serves the page, the sign-in and the API.
type Dashboard struct {
	o        Options
	mu       sync.Mutex
	sessions map[[32]byte]*session // by the SHA-256 of the cookie's value
	failed   int                   // failed sign-ins in the current minute
	window   time.Time             // start of that minute
}

type session struct {
	Identity
	expires time.Time
	created time.Time
}

// New returns a dashboard.
func New(o Options) *Dashboard {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Dashboard{o: o, sessions: map[[32]byte]*session{}}
}

// Public says whether r is served to anyone: the page (asked for as HTML), its assets and the sign-in. What the
// page shows comes from the API and /ws, which check who asks; the text index, which names the version, keeps the
// token like the rest.
func Public(r *http.Request) bool {
	switch p := r.URL.Path; {
	case p == "/":
		return wantsHTML(r)
	case p == "/login" || p == "/logout":
		return true
	default:
		return strings.HasPrefix(p, "/assets/")
	}
}

// SessionPath says whether a session cookie opens path: the stream (/ws) and the dashboard's API. The other
// paths of the HTTP server (push, /metrics) keep wanting the token.
func SessionPath(path string) bool {
	return path == "/ws" || strings.HasPrefix(path, "/api/dash/")
}

// Mount adds the dashboard's routes to mux: GET / (the page, or the text index), GET /index.txt, GET /assets/…,
// POST /login, POST /logout and /api/dash/….
func (d *Dashboard) Mount(mux *http.ServeMux) {
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(static)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if !wantsHTML(r) {
			d.index(w)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		setPageHeaders(w)
		http.ServeFileFS(w, r, static, "index.html")
	})
	mux.HandleFunc("GET /index.txt", func(w http.ResponseWriter, _ *http.Request) { d.index(w) })
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") || r.URL.Path == "index.html" {
			http.NotFound(w, r) // no directory listings; the page is at /
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})))
	mux.HandleFunc("POST /login", d.login)
	mux.HandleFunc("POST /logout", d.logout)
	mux.HandleFunc("GET /api/dash/session", d.sessionInfo)
	mux.HandleFunc("GET /api/dash/{view}", d.view)
	mux.HandleFunc("POST /api/dash/{action...}", d.write)
}

// setPageHeaders keeps the page from being framed or running scripts from elsewhere.
func setPageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// wantsHTML: a browser asks for text/html; curl asks for */* and gets the text index, as before the page.
func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

func (d *Dashboard) index(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if d.o.Index != nil {
		d.o.Index(w)
	}
}

// Who says who r is from; false when nobody: with a token configured and neither a session nor the token.
func (d *Dashboard) Who(r *http.Request) (Identity, bool) {
	if s, ok := d.session(r); ok {
		return s.Identity, true
	}
	if d.o.Token != "" {
		want := "Bearer " + d.o.Token
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) == 1 {
			return Identity{User: "token", Admin: true}, true
		}
		return Identity{}, false
	}
	if !loopbackHost(r.Host) {
		return Identity{}, false
	}
	return Identity{Admin: true}, true
}

// HasSession says whether r carries a valid session cookie (the HTTP server lets such requests through to /ws).
func (d *Dashboard) HasSession(r *http.Request) bool {
	_, ok := d.session(r)
	return ok
}

func (d *Dashboard) session(r *http.Request) (*session, bool) {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil, false
	}
	key := sha256.Sum256([]byte(c.Value))
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.sessions[key]
	if !ok {
		return nil, false
	}
	if !d.o.Now().Before(s.expires) {
		delete(d.sessions, key)
		return nil, false
	}
	return s, true
}

// loopbackHost says whether the Host header names loopback.
func loopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkWrite refuses a state-changing request without the CSRF header, or from another origin.
func checkWrite(r *http.Request) error {
	if r.Header.Get(CSRFHeader) != "1" {
		return fmt.Errorf("a state-changing request needs the header %s: 1", CSRFHeader)
	}
	if o := r.Header.Get("Origin"); o != "" {
		want := "http://" + r.Host
		if r.TLS != nil {
			want = "https://" + r.Host
		}
		if o != want {
			return fmt.Errorf("origin %q is not this gateway's (%s)", o, want)
		}
	}
	return nil
}

// readBody reads at most MaxBody bytes; more is an error.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, fmt.Errorf("request body over %d bytes", MaxBody)
	}
	return b, err
}

func jsonError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode the reply"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// LoginRequest is the body of POST /login: a user and its password, or the http token.
type LoginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
	Token    string `json:"token"`
}

// ParseLogin reads a sign-in body: JSON, known fields only, either user and password or token.
func ParseLogin(b []byte) (LoginRequest, error) {
	var req LoginRequest
	if len(b) > MaxBody {
		return req, fmt.Errorf("request body over %d bytes", MaxBody)
	}
	if err := decodeStrict(b, &req); err != nil {
		return req, fmt.Errorf(`sign-in is not {"user":…,"password":…} or {"token":…}: %v`, err)
	}
	switch {
	case req.Token != "" && (req.User != "" || req.Password != ""):
		return req, errors.New("give a user and a password, or a token, not both")
	case req.Token == "" && (req.User == "" || req.Password == ""):
		return req, errors.New(`give "user" and "password", or "token"`)
	case len(req.User) > 256:
		return req, errors.New("user name over 256 bytes")
	}
	return req, nil
}

// decodeStrict decodes one JSON object with known fields only and nothing after it.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	if err := checkWrite(r); err != nil {
		jsonError(w, http.StatusForbidden, err.Error())
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		jsonError(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	req, err := ParseLogin(body)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	if d.throttled() {
		jsonError(w, http.StatusTooManyRequests, fmt.Sprintf("more than %d failed sign-ins this minute: wait", FailedLoginsPerMinute))
		return
	}
	id, ok := d.check(req)
	if !ok {
		d.fail()
		jsonError(w, http.StatusUnauthorized, "wrong user, password or token")
		return
	}
	value := d.newSession(id)
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: value, Path: "/", MaxAge: int(SessionTTL.Seconds()),
		HttpOnly: true, Secure: d.o.Secure, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, d.sessionReply(id))
}

// check compares the credentials with every candidate, so the time taken does not say whether a user exists.
func (d *Dashboard) check(req LoginRequest) (Identity, bool) {
	if req.Token != "" {
		ok := d.o.Token != "" && subtle.ConstantTimeCompare([]byte(req.Token), []byte(d.o.Token)) == 1
		return Identity{User: "token", Admin: true}, ok
	}
	for _, u := range d.o.Users {
		if u.Name == req.User && PasswordMatches(u.Password, req.Password) {
			return Identity{User: u.Name, Admin: u.Admin}, true
		}
	}
	return Identity{}, false
}

// PasswordMatches checks a password the way nats-server does: a stored bcrypt hash ($2a$, $2b$, $2y$) with
// bcrypt, anything else with a constant-time comparison.
func PasswordMatches(stored, given string) bool {
	if strings.HasPrefix(stored, "$2a$") || strings.HasPrefix(stored, "$2b$") || strings.HasPrefix(stored, "$2y$") {
		return bcrypt.CompareHashAndPassword([]byte(stored), []byte(given)) == nil
	}
	return subtle.ConstantTimeCompare([]byte(stored), []byte(given)) == 1
}

func (d *Dashboard) throttled() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if now := d.o.Now(); now.Sub(d.window) >= time.Minute {
		d.window, d.failed = now, 0
	}
	return d.failed >= FailedLoginsPerMinute
}

func (d *Dashboard) fail() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failed++
}

func (d *Dashboard) newSession(id Identity) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	value := base64.RawURLEncoding.EncodeToString(b)
	now := d.o.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, s := range d.sessions { // expired ones first
		if !now.Before(s.expires) {
			delete(d.sessions, k)
		}
	}
	for len(d.sessions) >= MaxSessions {
		var oldest [32]byte
		var at time.Time
		for k, s := range d.sessions {
			if at.IsZero() || s.created.Before(at) {
				oldest, at = k, s.created
			}
		}
		delete(d.sessions, oldest)
	}
	d.sessions[sha256.Sum256([]byte(value))] = &session{Identity: id, created: now, expires: now.Add(SessionTTL)}
	return value
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	if err := checkWrite(r); err != nil {
		jsonError(w, http.StatusForbidden, err.Error())
		return
	}
	if c, err := r.Cookie(CookieName); err == nil {
		d.mu.Lock()
		delete(d.sessions, sha256.Sum256([]byte(c.Value)))
		d.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: d.o.Secure, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// SessionReply is GET /api/dash/session: who the page is for and what it may offer.
type SessionReply struct {
	Identity
	Gateway string `json:"gateway"`
	Version string `json:"version"`
	Faults  bool   `json:"faults"`    // the fault panel: faults enabled and an admin
	Login   bool   `json:"login"`     // there is something to sign in with (users or a token)
	Subject string `json:"subject"`   // the tree feed, iot.metrics.tree.{gateway}
	Sinks   string `json:"sinks"`     // the sinks feed, iot.metrics.sinks.{gateway}
	Anon    bool   `json:"anonymous"` // not signed in
}

func (d *Dashboard) sessionReply(id Identity) SessionReply {
	return SessionReply{Identity: id, Gateway: d.o.Gateway, Version: d.o.Version, Faults: d.o.Faults && id.Admin,
		Login: d.o.Token != "" || len(d.o.Users) > 0, Subject: "iot.metrics.tree." + d.o.Gateway,
		Sinks: "iot.metrics.sinks." + d.o.Gateway, Anon: id.User == ""}
}

func (d *Dashboard) sessionInfo(w http.ResponseWriter, r *http.Request) {
	id, ok := d.Who(r)
	if !ok {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "sign in", "login": true, "gateway": d.o.Gateway})
		return
	}
	writeJSON(w, http.StatusOK, d.sessionReply(id))
}

// views are the GET /api/dash/{view} requests: one control request each, read-only.
var views = map[string]string{
	"tree":    "iot.control.tree",
	"devices": "iot.control.devices.list",
	"alerts":  "iot.control.alerts.list",
	"rules":   "iot.control.rules.list",
	"sinks":   "iot.control.sinks.list",
	"faults":  "iot.control.faults.list",
}

func (d *Dashboard) view(w http.ResponseWriter, r *http.Request) {
	if _, ok := d.Who(r); !ok {
		jsonError(w, http.StatusUnauthorized, "sign in first")
		return
	}
	subject, ok := views[r.PathValue("view")]
	if !ok {
		jsonError(w, http.StatusNotFound, "no view "+r.PathValue("view")+": tree, devices, alerts, rules, sinks or faults")
		return
	}
	reply, err := d.ask(r.Context(), subject, nil)
	if err != nil {
		jsonError(w, http.StatusBadGateway, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, json.RawMessage(stripHCL(reply)))
}

// stripHCL drops the "hcl" of devices and rules from a reply: a device's definition may hold credentials, and
// the page does not show it.
func stripHCL(reply []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(reply, &m) != nil {
		return reply
	}
	changed := false
	for _, list := range []string{"devices", "rules"} {
		var items []map[string]json.RawMessage
		if raw, ok := m[list]; !ok || json.Unmarshal(raw, &items) != nil {
			continue
		}
		for _, it := range items {
			delete(it, "hcl")
		}
		m[list], _ = json.Marshal(items)
		changed = true
	}
	if !changed {
		return reply
	}
	b, err := json.Marshal(m)
	if err != nil {
		return reply
	}
	return b
}

func (d *Dashboard) ask(ctx context.Context, subject string, body []byte) ([]byte, error) {
	if d.o.Request == nil {
		return nil, errors.New("the bus is not connected")
	}
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	return d.o.Request(ctx, subject, body)
}

func (d *Dashboard) write(w http.ResponseWriter, r *http.Request) {
	id, ok := d.Who(r)
	if !ok {
		jsonError(w, http.StatusUnauthorized, "sign in first")
		return
	}
	if err := checkWrite(r); err != nil {
		jsonError(w, http.StatusForbidden, err.Error())
		return
	}
	action := r.PathValue("action")
	if _, known := writes[action]; !known {
		jsonError(w, http.StatusNotFound, "no action "+action+": faults/inject, faults/clear or alerts/ack")
		return
	}
	if !id.Admin {
		jsonError(w, http.StatusForbidden, fmt.Sprintf("user %s is not an admin: the dashboard is read-only for it", id.User))
		return
	}
	if action != "alerts/ack" && !d.o.Faults {
		jsonError(w, http.StatusForbidden, "fault injection is disabled: set faults { enabled = true } in the config")
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		jsonError(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	subject, req, err := ParseWrite(action, body, id)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	reply, err := d.ask(r.Context(), subject, req)
	if err != nil {
		jsonError(w, http.StatusBadGateway, err.Error())
		return
	}
	var ok2 struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	status := http.StatusOK
	if json.Unmarshal(reply, &ok2) == nil && !ok2.OK {
		status = http.StatusUnprocessableEntity // the gateway refused it: its reply says why
	}
	writeJSON(w, status, json.RawMessage(reply))
}

// The write bodies: known fields only, re-encoded before they reach the control plane, which checks them again.
type faultInject struct {
	Kind        string  `json:"kind"`
	Target      string  `json:"target"`
	Duration    string  `json:"duration,omitempty"`
	Probability float64 `json:"probability,omitempty"`
	Latency     string  `json:"latency,omitempty"`
}

type faultClear struct {
	ID     string `json:"id,omitempty"`
	Target string `json:"target,omitempty"`
}

type alertAck struct {
	Key  string `json:"dedup_key"`
	Rule string `json:"rule,omitempty"`
	By   string `json:"by,omitempty"`
}

var writes = map[string]string{
	"faults/inject": "iot.control.faults.inject",
	"faults/clear":  "iot.control.faults.clear",
	"alerts/ack":    "iot.control.alerts.ack",
}

// ParseWrite checks a write's body and returns the control subject and the request to send. An acknowledgement
// is made by the signed-in user ("by" is set here, not taken from the body); a clear names a fault or a target
// (clearing everything at once is for iotgw ctl).
func ParseWrite(action string, body []byte, id Identity) (string, []byte, error) {
	subject, ok := writes[action]
	if !ok {
		return "", nil, fmt.Errorf("no action %q", action)
	}
	if len(body) > MaxBody {
		return "", nil, fmt.Errorf("request body over %d bytes", MaxBody)
	}
	var v any
	switch action {
	case "faults/inject":
		var f faultInject
		if err := decodeStrict(body, &f); err != nil {
			return "", nil, fmt.Errorf(`fault is not {"kind":…,"target":…,"duration":…}: %v`, err)
		}
		if f.Kind == "" || f.Target == "" {
			return "", nil, errors.New(`a fault needs "kind" and "target" (an actor path like devices/plc-1)`)
		}
		v = f
	case "faults/clear":
		var f faultClear
		if err := decodeStrict(body, &f); err != nil {
			return "", nil, fmt.Errorf(`clear is not {"id":…} or {"target":…}: %v`, err)
		}
		if f.ID == "" && f.Target == "" {
			return "", nil, errors.New(`name the fault to clear: "id" or "target"`)
		}
		v = f
	case "alerts/ack":
		var a alertAck
		if err := decodeStrict(body, &a); err != nil {
			return "", nil, fmt.Errorf(`acknowledgement is not {"dedup_key":…}: %v`, err)
		}
		if a.Key == "" {
			return "", nil, errors.New(`an acknowledgement needs "dedup_key"`)
		}
		if a.By != "" {
			return "", nil, errors.New(`"by" is the signed-in user; do not send it`)
		}
		a.By = id.User
		if a.By == "" {
			a.By = "dashboard"
		}
		v = a
	}
	b, err := json.Marshal(v)
	return subject, b, err
}
