// Package ctl is `iotgw ctl`, the command-line client of the control plane: each command builds one request on
// an iot.control.* subject, sends it over NATS and renders the JSON reply. It holds no state and never talks to
// the gateway any other way, so everything it does can also be done with `nats req`. It lives under system
// because it speaks the control plane's types (Pong, Node, the states); it must never start a runtime.
package ctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/system"
	"github.com/mattn/go-isatty"
	"github.com/nats-io/nats.go"
)

const ctlUsage = `Usage: iotgw ctl [-s URL] [-json] [-timeout 5s] [-user U -password P | -creds FILE | -nkey SEEDFILE]
                 [-inbox-prefix P] [-tlsca FILE] [-tlscert FILE -tlskey FILE] [-gateway ID] COMMAND …

Commands:
  ping                                  is the gateway there? its id, version and uptime
  tree                                  the supervision tree: per actor its kind, state, restarts and last error
  devices list
  devices get ID                        a device's state and its HCL
  devices add -f dev.hcl                add a device from one device "id" { … } block
  devices update -f dev.hcl             replace a device with the block's new definition
  devices remove ID
  devices write ID KEY VALUE            write a register; VALUE is JSON (75, 7.5, true, "text") or else a string
  devices browse ID [NODE_ID] [-depth 1] [-max 1000]
                                        an OPC UA device's server: the nodes below NODE_ID (default the Objects folder)
  fault inject KIND TARGET [-for 30s] [-probability 0.5] [-latency 200ms]
                                        KIND: crash, stop, drop, latency, error, bad_quality, kill; TARGET: devices/plc-1
  fault clear [ID|TARGET]               one fault (f-N), the faults on a target, or all of them
  fault list
  reload                                re-read the config and apply the differences
  restart PATH                          restart an actor of the tree (failed, stopped or running): devices/plc-1
  sidecars status NAME
  rules list                            the rules with their figures: points in, out, dropped, errors, eval time
  rules get NAME                        a rule's state, figures and (added at run time) its HCL
  rules add -f rule.hcl                 add a rule from one rule "name" { … } block; rules update -f; rules remove NAME
  alerts list                           the pending and firing alerts
  alerts ack KEY                        acknowledge an alert (it stays until it resolves, but is not repeated)
  sinks list                            every sink: state, lag (pending), unacknowledged, dead letters, last delivery
  sinks get NAME                        one sink, with each of its durable inboxes

Flags may follow the command words. -s defaults to $NATS_URL, else nats://127.0.0.1:4222.
Replies come to the inbox _INBOX.{user} with -user (a non-admin may read no other); give -inbox-prefix with
-creds or -nkey. -tlsca trusts a CA (tls:// servers), -tlscert/-tlskey present a client certificate.
-gateway ID sends the request to that gateway alone (iot.control.gw.{ID}.…): on a server shared by several gateways
a request without it is answered by each, and the first reply is shown.
-json prints the gateway's reply as it is (indented). Exit status: 0 ok, 1 the request failed, 2 usage error.
`

const ctlSubjectPrefix = "iot.control."

// Exit codes of iotgw ctl.
const (
	ctlOK       = 0
	ctlFailed   = 1
	ctlUsageErr = 2
)

// ctlUsageError is a mistake on the command line (exit 2), as opposed to a request that failed (exit 1).
type ctlUsageError string

func (e ctlUsageError) Error() string { return string(e) }

func ctlUsagef(format string, args ...any) error {
	return ctlUsageError(fmt.Sprintf(format, args...))
}

// ctlRequest is what a command sends and how it shows the answer.
type ctlRequest struct {
	subject string
	body    []byte
	render  func(w io.Writer, reply []byte, color bool) error
	hint    string // what to check when nobody answers, beyond "is it running?"
}

// ctlFlags are the connection flags and the flags of the commands; each command reads only its own.
type ctlFlags struct {
	server, user, password, creds, nkey string
	inboxPrefix, tlsCA, tlsCert, tlsKey string
	json                                bool
	timeout                             time.Duration
	gateway                             string // -gateway: address the request to this gateway alone

	file              string // devices add/update -f
	duration, latency string // fault inject -for, -latency
	probability       float64
	depth, maxNodes   int // devices browse -depth, -max
}

// Main runs `iotgw ctl` with the words after "ctl" and returns the exit status: 0 ok, 1 the request failed,
// 2 a usage error.
func Main(args []string, stdout, stderr io.Writer) int {
	var f ctlFlags
	fs := newCtlFlagSet(&f, stderr)
	words, err := ctlParseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) || (err == nil && len(words) > 0 && words[0] == "help") {
		fmt.Fprint(stdout, ctlUsage)
		return ctlOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "\n%s", ctlUsage) // the flag package has printed the error
		return ctlUsageErr
	}
	if len(words) == 0 {
		fmt.Fprint(stderr, ctlUsage)
		return ctlUsageErr
	}
	req, err := ctlBuild(fs, &f, words)
	if err == nil {
		err = ctlCheckAuth(&f)
	}
	var usageErr ctlUsageError
	switch {
	case errors.As(err, &usageErr):
		fmt.Fprintf(stderr, "iotgw ctl: %v\n'iotgw ctl help' lists the commands and flags\n", err)
		return ctlUsageErr
	case err != nil:
		fmt.Fprintf(stderr, "iotgw ctl: %v\n", err)
		return ctlFailed
	}
	req.subject = ctlSubjectPrefix + req.subject
	if f.gateway != "" {
		req.subject = actors.GatewayControl(f.gateway, req.subject) // iot.control.gw.{gateway}.…
	}

	reply, err := ctlSend(&f, req)
	if err != nil {
		fmt.Fprintf(stderr, "iotgw ctl: %v\n", err)
		return ctlFailed
	}
	if f.json { // the reply as it came, even a refusal: scripts read it
		var out bytes.Buffer
		_ = json.Indent(&out, reply, "", "  ") // ctlSend checked that it is JSON
		out.WriteByte('\n')
		_, _ = stdout.Write(out.Bytes())
	}
	if err := ctlCheckReply(reply); err != nil {
		fmt.Fprintf(stderr, "iotgw ctl: %v\n", err)
		return ctlFailed
	}
	if !f.json {
		if err := req.render(stdout, reply, ctlColor(stdout)); err != nil {
			fmt.Fprintf(stderr, "iotgw ctl: malformed reply on %s: %v\n", req.subject, err)
			return ctlFailed
		}
	}
	return ctlOK
}

// newCtlFlagSet declares the connection flags and every command's flags; ctlBuild rejects another command's.
func newCtlFlagSet(f *ctlFlags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	server := os.Getenv("NATS_URL")
	if server == "" {
		server = nats.DefaultURL
	}
	fs.StringVar(&f.server, "s", server, "NATS server URL")
	fs.BoolVar(&f.json, "json", false, "print the raw reply")
	fs.StringVar(&f.gateway, "gateway", "", "address the request to the gateway with this id alone (iot.control.gw.{id}.…)")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Second, "how long to wait for the connection and for the reply")
	fs.StringVar(&f.user, "user", "", "NATS user")
	fs.StringVar(&f.password, "password", "", "NATS password")
	fs.StringVar(&f.creds, "creds", "", "NATS credentials file")
	fs.StringVar(&f.nkey, "nkey", "", "NATS nkey seed file")
	fs.StringVar(&f.inboxPrefix, "inbox-prefix", "", "reply inbox prefix (default _INBOX.{user} with -user)")
	fs.StringVar(&f.tlsCA, "tlsca", "", "CA certificate file the server's certificate is checked against")
	fs.StringVar(&f.tlsCert, "tlscert", "", "client certificate file")
	fs.StringVar(&f.tlsKey, "tlskey", "", "client certificate's key file")
	fs.StringVar(&f.file, "f", "", "devices add/update: the file with the device block")
	fs.StringVar(&f.duration, "for", "", "fault inject: how long the fault lasts")
	fs.Float64Var(&f.probability, "probability", 0, "fault inject: the probability that the fault hits")
	fs.StringVar(&f.latency, "latency", "", "fault inject: the added latency")
	fs.IntVar(&f.depth, "depth", 0, "devices browse: levels below the node (default 1)")
	fs.IntVar(&f.maxNodes, "max", 0, "devices browse: nodes at most (default 1000)")
	return fs
}

// ctlParseFlags takes flags wherever they are among the words, since the examples put them after the positional
// arguments (`fault inject crash devices/plc-1 -for 30s`). "--" ends the flags, and a negative number is a word
// (`devices write boiler-2 offset -5`), not a flag.
func ctlParseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var words []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(words, args[i+1:]...), nil
		}
		if _, err := strconv.ParseFloat(a, 64); len(a) < 2 || a[0] != '-' || err == nil {
			words = append(words, a)
			continue
		}
		// Give the FlagSet this one flag, with the next word as its value if it takes one.
		n := 1
		if name := strings.TrimLeft(a, "-"); !strings.Contains(name, "=") {
			if fl := fs.Lookup(name); fl != nil && !ctlIsBool(fl) && i+1 < len(args) {
				n = 2
			}
		}
		if err := fs.Parse(args[i : i+n]); err != nil {
			return nil, err
		}
		i += n - 1
	}
	return words, nil
}

func ctlIsBool(fl *flag.Flag) bool {
	b, ok := fl.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// ctlBuild turns the command words into a request and checks that only the command's own flags were given.
func ctlBuild(fs *flag.FlagSet, f *ctlFlags, words []string) (ctlRequest, error) {
	cmd := words[0]
	if subs, ok := ctlGroups[cmd]; ok {
		if len(words) == 1 {
			return ctlRequest{}, ctlUsagef("%s wants one of: %s", cmd, subs)
		}
		cmd += " " + words[1]
	}
	args := words[len(strings.Fields(cmd)):]
	own := map[string]bool{}
	for _, name := range ctlCommandFlags[cmd] {
		own[name] = true
	}
	var stray []string
	fs.Visit(func(fl *flag.Flag) {
		if !own[fl.Name] && !ctlConnFlags[fl.Name] {
			stray = append(stray, "-"+fl.Name)
		}
	})
	if len(stray) > 0 {
		return ctlRequest{}, ctlUsagef("%s does not apply to %q", strings.Join(stray, ", "), cmd)
	}
	want := func(n int, names string) error {
		if len(args) != n {
			return ctlUsagef("%s wants %s", cmd, names)
		}
		return nil
	}

	switch cmd {
	case "ping":
		return ctlRequest{subject: "ping", render: renderPing}, want(0, "no arguments")
	case "tree":
		return ctlRequest{subject: "tree", render: renderTree}, want(0, "no arguments")
	case "reload":
		return ctlRequest{subject: "reload", render: renderReload}, want(0, "no arguments")
	case "restart":
		if err := want(1, "the path of an actor, like devices/plc-1 (see iotgw ctl tree)"); err != nil {
			return ctlRequest{}, err
		}
		return ctlRequest{subject: "actors.restart", body: ctlJSON(map[string]string{"path": args[0]}), render: renderRestarted}, nil
	case "devices list":
		return ctlRequest{subject: "devices.list", render: renderDevices}, want(0, "no arguments")
	case "devices get", "devices remove":
		if err := want(1, "a device id"); err != nil {
			return ctlRequest{}, err
		}
		verb := strings.TrimPrefix(cmd, "devices ")
		render := renderDevice
		if verb == "remove" {
			render = renderDone("removed")
		}
		return ctlRequest{subject: "devices." + verb, body: ctlJSON(map[string]string{"id": args[0]}), render: render}, nil
	case "devices add", "devices update":
		if err := want(0, "-f FILE and no other argument"); err != nil {
			return ctlRequest{}, err
		}
		if f.file == "" {
			return ctlRequest{}, ctlUsagef("%s wants -f FILE, the file with the device block", cmd)
		}
		body, err := os.ReadFile(f.file)
		if err != nil {
			return ctlRequest{}, err
		}
		verb, done := "add", "added"
		if cmd == "devices update" {
			verb, done = "update", "updated"
		}
		// The file goes as it is: the gateway parses it, so its diagnostics point into the user's file.
		return ctlRequest{subject: "devices." + verb, body: body, render: renderDone(done)}, nil
	case "devices write":
		if err := want(3, "ID KEY VALUE"); err != nil {
			return ctlRequest{}, err
		}
		if !ctlToken(args[0]) {
			return ctlRequest{}, ctlUsagef("device id %q cannot be part of a subject", args[0])
		}
		// VALUE is JSON when it reads as JSON, so 75 is a number and true a bool; anything else is a string.
		value := json.RawMessage(args[2])
		if !json.Valid(value) {
			value = ctlJSON(args[2])
		}
		body := ctlJSON(struct {
			Key   string          `json:"key"`
			Value json.RawMessage `json:"value"`
		}{args[1], value})
		return ctlRequest{subject: "devices." + args[0] + ".write", body: body, render: renderWrite,
			hint: fmt.Sprintf("is there a Modbus device %q?", args[0])}, nil
	case "devices browse":
		if len(args) < 1 || len(args) > 2 {
			return ctlRequest{}, ctlUsagef("devices browse wants ID [NODE_ID]")
		}
		if !ctlToken(args[0]) {
			return ctlRequest{}, ctlUsagef("device id %q cannot be part of a subject", args[0])
		}
		req := struct {
			NodeID   string `json:"node_id,omitempty"`
			Depth    int    `json:"depth,omitempty"`
			MaxNodes int    `json:"max_nodes,omitempty"`
		}{Depth: f.depth, MaxNodes: f.maxNodes}
		if len(args) == 2 {
			req.NodeID = args[1]
		}
		return ctlRequest{subject: "devices." + args[0] + ".browse", body: ctlJSON(req), render: renderBrowse,
			hint: fmt.Sprintf("is there an OPC UA device %q?", args[0])}, nil
	case "fault inject":
		return ctlFaultInject(f, args)
	case "fault clear":
		if len(args) > 1 {
			return ctlRequest{}, ctlUsagef("fault clear wants at most one ID or TARGET")
		}
		body := map[string]string{}
		switch {
		case len(args) == 0:
		case ctlFaultID.MatchString(args[0]):
			body["id"] = args[0]
		default:
			body["target"] = args[0]
		}
		return ctlRequest{subject: "faults.clear", body: ctlJSON(body), render: renderCleared, hint: ctlFaultsHint}, nil
	case "fault list":
		return ctlRequest{subject: "faults.list", render: renderFaults, hint: ctlFaultsHint}, want(0, "no arguments")
	case "sinks list":
		return ctlRequest{subject: "sinks.list", render: renderSinks}, want(0, "no arguments")
	case "sinks get":
		if err := want(1, "a sink name"); err != nil {
			return ctlRequest{}, err
		}
		if !ctlToken(args[0]) {
			return ctlRequest{}, ctlUsagef("sink name %q is not a sink block's name", args[0])
		}
		return ctlRequest{subject: "sinks.get", body: ctlJSON(map[string]string{"name": args[0]}), render: renderSink}, nil
	case "sidecars status":
		if err := want(1, "a sidecar name"); err != nil {
			return ctlRequest{}, err
		}
		if !ctlToken(args[0]) {
			return ctlRequest{}, ctlUsagef("sidecar name %q cannot be part of a subject", args[0])
		}
		return ctlRequest{subject: "sidecars." + args[0] + ".status", render: renderSidecar,
			hint: fmt.Sprintf("is there a sidecar %q?", args[0])}, nil
	}
	if req, ok, err := ctlRules(f, cmd, args); ok { // rules.go
		return req, err
	}
	return ctlRequest{}, ctlUsagef("unknown command %q", cmd)
}

// ctlGroups are the commands that take a subcommand.
var ctlGroups = map[string]string{
	"devices":  "list, get, add, update, remove, write, browse",
	"fault":    "inject, clear, list",
	"sidecars": "status",
	"rules":    "list, get, add, update, remove",
	"alerts":   "list, ack",
	"sinks":    "list, get",
}

// ctlCommandFlags are the flags of each command beyond the connection flags.
var ctlCommandFlags = map[string][]string{
	"devices add":    {"f"},
	"devices update": {"f"},
	"devices browse": {"depth", "max"},
	"fault inject":   {"for", "probability", "latency"},
	"rules add":      {"f"},
	"rules update":   {"f"},
}

var ctlConnFlags = map[string]bool{"s": true, "json": true, "timeout": true, "user": true, "password": true, "creds": true, "nkey": true,
	"inbox-prefix": true, "tlsca": true, "tlscert": true, "tlskey": true, "gateway": true}

const ctlFaultsHint = "are faults enabled?"

// ctlFaultID tells a fault id (f-3) from a target (devices/plc-1) in `fault clear`.
var ctlFaultID = regexp.MustCompile(`^f-[0-9]+$`)

func ctlFaultInject(f *ctlFlags, args []string) (ctlRequest, error) {
	if len(args) != 2 {
		return ctlRequest{}, ctlUsagef("fault inject wants KIND TARGET")
	}
	// The kinds are the gateway's to check: a new kind should not need a new CLI.
	req := struct {
		Kind        string  `json:"kind"`
		Target      string  `json:"target"`
		Duration    string  `json:"duration,omitempty"`
		Probability float64 `json:"probability,omitempty"`
		Latency     string  `json:"latency,omitempty"`
	}{Kind: args[0], Target: args[1], Duration: f.duration, Probability: f.probability, Latency: f.latency}
	for _, d := range []struct{ flag, value string }{{"-for", f.duration}, {"-latency", f.latency}} {
		if _, err := time.ParseDuration(d.value); d.value != "" && err != nil {
			return ctlRequest{}, ctlUsagef("%s %q is not a duration (like 30s or 200ms)", d.flag, d.value)
		}
	}
	if f.probability < 0 || f.probability > 1 {
		return ctlRequest{}, ctlUsagef("-probability %v is not between 0 and 1", f.probability)
	}
	return ctlRequest{subject: "faults.inject", body: ctlJSON(req), render: renderInjected, hint: ctlFaultsHint}, nil
}

func ctlCheckAuth(f *ctlFlags) error {
	n := 0
	for _, set := range []bool{f.user != "" || f.password != "", f.creds != "", f.nkey != ""} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return ctlUsagef("give one of -user/-password, -creds and -nkey")
	case f.password != "" && f.user == "":
		return ctlUsagef("-password wants -user")
	case f.timeout <= 0:
		return ctlUsagef("-timeout must be positive")
	case (f.tlsCert == "") != (f.tlsKey == ""):
		return ctlUsagef("-tlscert and -tlskey go together")
	case f.inboxPrefix != "" && (config.ValidSubject(f.inboxPrefix, false) != nil || strings.HasSuffix(f.inboxPrefix, ".")):
		return ctlUsagef("-inbox-prefix %q is not a subject without wildcards", f.inboxPrefix)
	case f.gateway != "" && !ctlToken(f.gateway):
		return ctlUsagef("-gateway %q is not a gateway id (1 to 64 letters, digits, - and _)", f.gateway)
	}
	return nil
}

// ctlToken reports whether s is a valid device or sidecar name (config.ValidToken, the gateway's own rule).
func ctlToken(s string) bool { return config.ValidToken(s) == nil }

func ctlJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only strings, numbers and raw JSON already checked go in
	}
	return b
}

// ctlSend connects, sends one request and returns the reply, with errors that say what to check.
func ctlSend(f *ctlFlags, req ctlRequest) ([]byte, error) {
	opts := []nats.Option{nats.Name("iotgw ctl"), nats.Timeout(f.timeout), nats.NoReconnect()}
	switch {
	case f.inboxPrefix != "":
		opts = append(opts, nats.CustomInboxPrefix(f.inboxPrefix))
	case f.user != "" && config.ValidToken(f.user) == nil:
		// A non-admin user may subscribe to its own inbox only; an admin does not mind.
		opts = append(opts, nats.CustomInboxPrefix(system.UserInbox(f.user)))
	}
	if f.tlsCA != "" {
		opts = append(opts, nats.RootCAs(f.tlsCA))
	}
	if f.tlsCert != "" {
		opts = append(opts, nats.ClientCert(f.tlsCert, f.tlsKey))
	}
	switch {
	case f.user != "":
		opts = append(opts, nats.UserInfo(f.user, f.password))
	case f.creds != "":
		opts = append(opts, nats.UserCredentials(f.creds))
	case f.nkey != "":
		opt, err := nats.NkeyOptionFromSeed(f.nkey)
		if err != nil {
			return nil, fmt.Errorf("nkey seed %s: %w", f.nkey, err)
		}
		opts = append(opts, opt)
	}
	nc, err := nats.Connect(f.server, opts...)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the gateway at %s: %w", ctlRedact(f.server), err)
	}
	defer nc.Close()

	subject := req.subject
	msg, err := nc.Request(subject, req.body, f.timeout)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		hint := "is it running?"
		if req.hint != "" {
			hint += " " + req.hint
		}
		return nil, fmt.Errorf("no gateway answers %s (%s)", subject, hint)
	case errors.Is(err, nats.ErrTimeout):
		return nil, fmt.Errorf("no reply on %s within %v", subject, f.timeout)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", subject, err)
	}
	if !json.Valid(msg.Data) {
		return nil, fmt.Errorf("malformed reply on %s: %q", subject, ctlShorten(msg.Data))
	}
	return msg.Data, nil
}

// ctlRedact hides a password in the server URL before it is printed.
func ctlRedact(server string) string {
	if u, err := url.Parse(server); err == nil && u.User != nil {
		return u.Redacted()
	}
	return server
}

func ctlShorten(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// ctlDiagnostic is one problem the gateway found in a device block.
type ctlDiagnostic struct {
	Pos     string `json:"pos"`
	Summary string `json:"summary"`
	Detail  string `json:"detail"`
}

// ctlCheckReply returns the gateway's refusal: a reply with "ok":false or an "error" member.
func ctlCheckReply(reply []byte) error {
	var r struct {
		OK          *bool           `json:"ok"`
		Error       json.RawMessage `json:"error"`
		Diagnostics []ctlDiagnostic `json:"diagnostics"`
	}
	if bytes.HasPrefix(bytes.TrimSpace(reply), []byte("{")) {
		if err := json.Unmarshal(reply, &r); err != nil {
			return fmt.Errorf("malformed reply: %w", err)
		}
	}
	if (r.OK == nil || *r.OK) && r.Error == nil {
		return nil
	}
	var msg string
	if json.Unmarshal(r.Error, &msg) != nil || msg == "" {
		msg = "the gateway refused the request"
		if r.Error != nil && string(r.Error) != "null" {
			msg = string(r.Error)
		}
	}
	for _, d := range r.Diagnostics {
		line := d.Summary
		if d.Pos != "" {
			line = d.Pos + ": " + line
		}
		if d.Detail != "" {
			line += ": " + d.Detail
		}
		msg += "\n" + line
	}
	return errors.New(msg)
}

// ctlColor reports whether w is a terminal that wants colour.
func ctlColor(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && os.Getenv("NO_COLOR") == "" && isatty.IsTerminal(f.Fd())
}

// ctlText is a reply field shown as text whatever its JSON type: a string as it is, a number or an object as
// written. The fault fields (until, latency) are new, and a time.Duration would arrive as nanoseconds.
type ctlText string

func (t *ctlText) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*t = ctlText(s)
	} else if string(b) != "null" {
		*t = ctlText(b)
	}
	return nil
}

func ctlTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func renderPing(w io.Writer, reply []byte, _ bool) error {
	var p system.Pong
	if err := json.Unmarshal(reply, &p); err != nil {
		return err
	}
	up := time.Duration(p.UptimeS * float64(time.Second))
	if up >= time.Minute {
		up = up.Round(time.Second)
	} else {
		up = up.Round(time.Millisecond)
	}
	_, err := fmt.Fprintf(w, "pong from %s (iotgw %s), up %v\n", orDash(p.Gateway), p.Version, up)
	return err
}

// renderTree draws the tree one actor a line, the columns aligned by hand: tabwriter would count the colour codes
// as text.
func renderTree(w io.Writer, reply []byte, color bool) error {
	var root *system.Node
	if err := json.Unmarshal(reply, &root); err != nil {
		return err
	}
	if root == nil {
		_, err := fmt.Fprintln(w, "the tree is empty")
		return err
	}
	type row struct{ name, kind, state, restarts, lastError string }
	rows := []row{{"ACTOR", "KIND", "STATE", "RESTARTS", "LAST ERROR"}}
	var walk func(n *system.Node, indent, branch string)
	walk = func(n *system.Node, indent, branch string) {
		lastError := strings.Join(strings.Fields(n.LastError), " ")
		rows = append(rows, row{indent + branch + n.Name, n.Kind, n.State, strconv.Itoa(n.Restarts), lastError})
		switch branch {
		case "├── ":
			indent += "│   "
		case "└── ":
			indent += "    "
		}
		for i, c := range n.Children {
			b := "├── "
			if i == len(n.Children)-1 {
				b = "└── "
			}
			walk(c, indent, b)
		}
	}
	walk(root, "", "")

	var width [4]int
	for _, r := range rows {
		for i, s := range []string{r.name, r.kind, r.state, r.restarts} {
			width[i] = max(width[i], utf8.RuneCountInString(s))
		}
	}
	pad := func(s string, n int) string { return s + strings.Repeat(" ", n-utf8.RuneCountInString(s)+2) }
	var b strings.Builder
	for i, r := range rows {
		state := pad(r.state, width[2])
		if color && i > 0 {
			state = ctlPaint(r.state, state)
		}
		line := pad(r.name, width[0]) + pad(r.kind, width[1]) + state + pad(r.restarts, width[3]) + r.lastError
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	if u := root.Uplink; u != nil {
		b.WriteString(uplinkLine(u) + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// uplinkLine is the leaf link to the hub under the tree (README "Uplink").
func uplinkLine(u *system.UplinkState) string {
	state := fmt.Sprintf("hub %s connected since %s", orDash(u.Hub), u.Since.UTC().Format(time.RFC3339))
	if !u.Connected {
		state = "hub not connected since " + u.Since.UTC().Format(time.RFC3339)
	}
	behind := "behind: unknown"
	if u.Known {
		behind = fmt.Sprintf("behind: %d messages", u.Behind)
	}
	return fmt.Sprintf("uplink (domain %s): %s; %s; discarded before delivery: %d; connects %d, disconnects %d",
		u.Domain, state, behind, u.Discarded, u.Connects, u.Disconnects)
}

// ctlPaint colours a state cell on a terminal: red for failed, yellow for restarting and disconnected.
func ctlPaint(state, cell string) string {
	switch state {
	case system.StateFailed:
		return "\x1b[31m" + cell + "\x1b[0m"
	case system.StateRestarting, system.StateDisconnected:
		return "\x1b[33m" + cell + "\x1b[0m"
	}
	return cell
}

// ctlDevice is a device as devices.list and devices.get return it.
type ctlDevice struct {
	ID       string `json:"id"`
	Driver   string `json:"driver"`
	Source   string `json:"source"`
	State    string `json:"state"`
	Restarts int    `json:"restarts"`
	HCL      string `json:"hcl"`
}

func renderDevices(w io.Writer, reply []byte, _ bool) error {
	var r struct {
		Devices []ctlDevice `json:"devices"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return err
	}
	if len(r.Devices) == 0 {
		_, err := fmt.Fprintln(w, "no devices")
		return err
	}
	tw := ctlTable(w)
	fmt.Fprintln(tw, "ID\tDRIVER\tSOURCE\tSTATE\tRESTARTS")
	for _, d := range r.Devices {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", d.ID, orDash(d.Driver), orDash(d.Source), orDash(d.State), d.Restarts)
	}
	return tw.Flush()
}

func renderDevice(w io.Writer, reply []byte, _ bool) error {
	var r struct {
		Device *ctlDevice `json:"device"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return err
	}
	if r.Device == nil {
		return errors.New(`no "device" in the reply`)
	}
	d := r.Device
	tw := ctlTable(w)
	fmt.Fprintf(tw, "id:\t%s\ndriver:\t%s\nsource:\t%s\nstate:\t%s\nrestarts:\t%d\n",
		d.ID, orDash(d.Driver), orDash(d.Source), orDash(d.State), d.Restarts)
	if err := tw.Flush(); err != nil {
		return err
	}
	if d.HCL != "" {
		_, err := fmt.Fprintf(w, "\n%s\n", strings.TrimRight(d.HCL, "\n"))
		return err
	}
	return nil
}

// renderDone confirms a change to one device: "added device plc-9".
func renderDone(verb string) func(io.Writer, []byte, bool) error {
	return func(w io.Writer, reply []byte, _ bool) error {
		var r struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(reply, &r); err != nil {
			return err
		}
		_, err := fmt.Fprintf(w, "%s device %s\n", verb, r.ID)
		return err
	}
}

func renderWrite(w io.Writer, reply []byte, _ bool) error {
	var r struct {
		Device string          `json:"device"`
		Key    string          `json:"key"`
		Value  json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "wrote %s %s = %s\n", r.Device, r.Key, r.Value)
	return err
}

// renderBrowse lists the nodes a browse found, one a line: what to put in a node block.
func renderBrowse(w io.Writer, reply []byte, _ bool) error {
	var r struct {
		Nodes []struct {
			NodeID   string `json:"node_id"`
			Class    string `json:"class"`
			DataType string `json:"data_type"`
			Path     string `json:"path"`
		} `json:"nodes"`
		Truncated bool `json:"truncated"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return err
	}
	if len(r.Nodes) == 0 {
		_, err := fmt.Fprintln(w, "no nodes")
		return err
	}
	tw := ctlTable(w)
	fmt.Fprintln(tw, "NODE ID\tCLASS\tDATA TYPE\tPATH")
	for _, n := range r.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.NodeID, n.Class, orDash(n.DataType), n.Path)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Truncated {
		_, err := fmt.Fprintln(w, "(truncated at -max: narrow NODE_ID or -depth)")
		return err
	}
	return nil
}

// ctlFault is an active fault as faults.inject and faults.list return it.
type ctlFault struct {
	ID          string  `json:"id"`
	Kind        string  `json:"kind"`
	Target      string  `json:"target"`
	Until       ctlText `json:"until"`
	Probability float64 `json:"probability"`
	Latency     ctlText `json:"latency"`
}

// options are the fault's optional settings, as the flags that set them.
func (f ctlFault) options() string {
	var o []string
	if f.Probability != 0 {
		o = append(o, "probability="+strconv.FormatFloat(f.Probability, 'g', -1, 64))
	}
	if f.Latency != "" {
		o = append(o, "latency="+string(f.Latency))
	}
	return strings.Join(o, " ")
}

func renderInjected(w io.Writer, reply []byte, _ bool) error {
	var r struct {
		Fault *ctlFault `json:"fault"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return err
	}
	if r.Fault == nil {
		return errors.New(`no "fault" in the reply`)
	}
	f := r.Fault
	line := fmt.Sprintf("injected %s: %s on %s", f.ID, f.Kind, f.Target)
	if f.Until != "" {
		line += " until " + string(f.Until)
	}
	if o := f.options(); o != "" {
		line += " (" + o + ")"
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

func renderFaults(w io.Writer, reply []byte, _ bool) error {
	var r struct {
		Faults []ctlFault `json:"faults"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return err
	}
	if len(r.Faults) == 0 {
		_, err := fmt.Fprintln(w, "no faults")
		return err
	}
	tw := ctlTable(w)
	fmt.Fprintln(tw, "ID\tKIND\tTARGET\tUNTIL\tOPTIONS")
	for _, f := range r.Faults {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.ID, f.Kind, f.Target, orDash(string(f.Until)), f.options())
	}
	return tw.Flush()
}

func renderCleared(w io.Writer, reply []byte, _ bool) error {
	var r struct {
		Cleared int `json:"cleared"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return err
	}
	noun := "faults"
	if r.Cleared == 1 {
		noun = "fault"
	}
	_, err := fmt.Fprintf(w, "cleared %d %s\n", r.Cleared, noun)
	return err
}

// renderRestarted confirms iot.control.actors.restart: "restarted devices/plc-1 (running)".
func renderRestarted(w io.Writer, reply []byte, _ bool) error {
	var r struct {
		Path  string `json:"path"`
		State string `json:"state"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return err
	}
	if r.State != "" {
		_, err := fmt.Fprintf(w, "restarted %s (%s)\n", r.Path, r.State)
		return err
	}
	_, err := fmt.Fprintf(w, "restarted %s\n", r.Path)
	return err
}

// ctlReload is what a reload did; the gateway nests it under "reload".
type ctlReload struct {
	Added     []ctlText `json:"added"`
	Changed   []ctlText `json:"changed"`
	Removed   []ctlText `json:"removed"`
	Failed    []ctlText `json:"failed"` // ids, or objects with the reason: shown as they come
	Restarted []ctlText `json:"restarted"`
}

func renderReload(w io.Writer, reply []byte, _ bool) error {
	var outer struct {
		Reload *ctlReload `json:"reload"`
	}
	if err := json.Unmarshal(reply, &outer); err != nil {
		return err
	}
	var r ctlReload
	if outer.Reload != nil {
		r = *outer.Reload
	} else if err := json.Unmarshal(reply, &r); err != nil { // a flat reply, as older gateways sent
		return err
	}
	tw := ctlTable(w)
	for _, g := range []struct {
		name  string
		items []ctlText
	}{{"added", r.Added}, {"changed", r.Changed}, {"removed", r.Removed}, {"failed", r.Failed}, {"restarted", r.Restarted}} {
		if len(g.items) == 0 {
			continue
		}
		s := make([]string, len(g.items))
		for i, it := range g.items {
			s[i] = string(it)
		}
		fmt.Fprintf(tw, "%s:\t%s\n", g.name, strings.Join(s, ", "))
	}
	if len(r.Added)+len(r.Changed)+len(r.Removed)+len(r.Failed)+len(r.Restarted) == 0 {
		fmt.Fprintln(tw, "nothing changed")
	}
	return tw.Flush()
}

func renderSidecar(w io.Writer, reply []byte, _ bool) error {
	var r struct {
		Sidecar  string                     `json:"sidecar"`
		PID      int                        `json:"pid"`
		Stats    map[string]json.RawMessage `json:"stats"`
		Response map[string]json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return err
	}
	tw := ctlTable(w)
	fmt.Fprintf(tw, "sidecar:\t%s\n", r.Sidecar)
	if r.PID != 0 {
		fmt.Fprintf(tw, "pid:\t%d\n", r.PID)
	}
	for _, g := range []struct {
		name string
		m    map[string]json.RawMessage
	}{{"stats", r.Stats}, {"response", r.Response}} {
		if len(g.m) == 0 {
			continue
		}
		fmt.Fprintf(tw, "%s:\n", g.name) // no tab: each section aligns on its own
		keys := make([]string, 0, len(g.m))
		for k := range g.m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			var v ctlText
			_ = v.UnmarshalJSON(g.m[k])
			fmt.Fprintf(tw, "  %s\t%s\n", k, v)
		}
	}
	return tw.Flush()
}

func renderSinks(w io.Writer, reply []byte, _ bool) error {
	var r struct {
		Sinks []system.SinkInfo `json:"sinks"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return err
	}
	if len(r.Sinks) == 0 {
		_, err := fmt.Fprintln(w, "no sinks")
		return err
	}
	tw := ctlTable(w)
	fmt.Fprintln(tw, "NAME\tTYPE\tSTATE\tPENDING\tUNACKED\tREDELIVERED\tDEAD\tDROPPED\tLAST DELIVERED\tLAST ERROR")
	for _, s := range r.Sinks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", s.Name, orDash(s.Type), orDash(s.State), s.Pending,
			s.AckPending, s.Redeliveries, s.DeadLetters, s.Dropped, orDash(s.LastDelivered), orDash(ctlShorten([]byte(s.LastError))))
	}
	return tw.Flush()
}

func renderSink(w io.Writer, reply []byte, _ bool) error {
	var r struct {
		Sink *system.SinkInfo `json:"sink"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return err
	}
	if r.Sink == nil {
		return errors.New(`no "sink" in the reply`)
	}
	s := r.Sink
	tw := ctlTable(w)
	fmt.Fprintf(tw, "name:\t%s\ntype:\t%s\nstate:\t%s\nrestarts:\t%d\npending:\t%d\nunacked:\t%d\ndelivered:\t%d\nacked:\t%d\n"+
		"redelivered:\t%d\ndead letters:\t%d\ndropped:\t%d\nlast delivered:\t%s\nlast error:\t%s\n",
		s.Name, orDash(s.Type), orDash(s.State), s.Restarts, s.Pending, s.AckPending, s.Delivered, s.Acked,
		s.Redeliveries, s.DeadLetters, s.Dropped, orDash(s.LastDelivered), orDash(s.LastError))
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, d := range s.Durable {
		where := d.Backend
		if d.Stream != "" {
			where += " " + d.Stream
		}
		if _, err := fmt.Fprintf(w, "\ninbox %s (%s): %s, subjects %s, pending %d, unacked %d, naked %d\n",
			d.Name, where, d.State, strings.Join(d.Subjects, ", "), d.Pending, d.AckPending, d.Naked); err != nil {
			return err
		}
	}
	return nil
}
