package config

import (
	"bytes"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Leafnode is the `leafnode` block inside `nats`: the embedded server joins a hub (a site or cloud NATS cluster)
// as a leaf node, with a JetStream domain of its own, so devices, rules and local sinks never depend on the WAN
// and the hub's stream sources the gateway's IOT_DATA across the link (README "Uplink").
//
// The account the link lands in on the hub is not chosen here: a hub binds a leaf connection to the account
// its credentials (or its leafnodes authorization user) belong to, as nats-server's leafnode docs describe; the
// gateway's side is its one account. So there is no "account" setting, on purpose.
type Leafnode struct {
	URLs        []string // the hub's leafnode URLs (nats-leaf://, nats://, tls://, ws://, wss://), tried in turn
	Credentials string   // a NATS .creds file (user JWT and nkey seed): read by the server at each connect
	User        string   // user and password of a hub without JWTs (leafnodes authorization)
	Password    string   // only through env() in the config file, never a literal
	TLS         *TLS     // CA for the hub's certificate, and a client certificate if the hub asks for one
	// Domain is the gateway's JetStream domain: the hub reaches its stream API as $JS.{Domain}.API. "" in the
	// file means the gateway id (JetStreamDomain resolves it).
	Domain string
	// AllowControl lets the hub's clients use iot.control.> of this gateway across the link. Off: the link
	// neither delivers requests from the hub there nor shows the hub the gateway's own control traffic.
	AllowControl  bool
	ReconnectWait time.Duration // between attempts to reach the hub; nats-server's default is 1s
}

// JetStreamDomain is the domain the embedded server runs JetStream in: the block's domain, else the gateway id.
func (l *Leafnode) JetStreamDomain(g Gateway) string {
	if l.Domain != "" {
		return l.Domain
	}
	return g.ID
}

// Limits on the leafnode block's values: generous for any real deployment, small enough that a hostile file
// makes no work.
const (
	maxLeafURLs     = 32
	maxLeafURLLen   = 2048
	maxCredsSize    = 64 << 10 // a .creds file is about 1 KiB
	defaultLeafWait = time.Second
)

// leafSchemes are what nats-server dials for a remote leaf: nats-leaf (the leafnode port's own scheme), nats
// and tls, and websockets.
var leafSchemes = []string{"nats-leaf", "nats", "tls", "ws", "wss"}

type leafnodeHCL struct {
	URL           *string   `hcl:"url,optional"`
	URLs          *[]string `hcl:"urls,optional"`
	Credentials   *string   `hcl:"credentials,optional"`
	User          *string   `hcl:"user,optional"`
	Password      *string   `hcl:"password,optional"`
	Domain        *string   `hcl:"domain,optional"`
	AllowControl  *bool     `hcl:"allow_control,optional"`
	ReconnectWait *string   `hcl:"reconnect_wait,optional"`
	TLS           *tlsHCL   `hcl:"tls,block"`
}

// decodeLeafnode turns a decoded leafnode block into n.Leafnode (nil when there is none). It runs after the rest
// of the nats block, since the uplink needs the embedded server and its JetStream. nv is the nats block's validator.
func decodeLeafnode(nv *Validator, h *leafnodeHCL, n *NATS) {
	if h == nil {
		return
	}
	v := nv.Block("leafnode", "")
	l := &Leafnode{ReconnectWait: defaultLeafWait}
	n.Leafnode = l

	switch {
	case h.URL != nil && h.URLs != nil:
		v.Errorf("urls", "write url or urls, not both")
	case h.URL != nil:
		l.URLs = []string{*h.URL}
		checkLeafURL(v, "url", -1, *h.URL)
	case h.URLs != nil:
		l.URLs = *h.URLs
		if len(l.URLs) == 0 {
			v.Errorf("urls", "urls is empty: write the hub's leafnode URLs, like [\"nats-leaf://hub-1:7422\", \"nats-leaf://hub-2:7422\"]")
		}
		if len(l.URLs) > maxLeafURLs {
			v.Errorf("urls", "%d URLs, at most %d allowed", len(l.URLs), maxLeafURLs)
			break
		}
		seen := map[string]int{}
		for i, s := range l.URLs {
			checkLeafURL(v, "urls", i, s)
			if j, dup := seen[s]; dup {
				v.ErrorfIndex("urls", i, "%s is listed twice (first as element %d)", quote(s), j+1)
			}
			seen[s] = i
		}
	default:
		v.Errorf("", `The leafnode block needs url (or urls): the hub's leafnode listener, like url = "nats-leaf://hub.example.com:7422".`)
	}

	set(&l.Credentials, h.Credentials)
	set(&l.User, h.User)
	set(&l.Password, h.Password)
	switch {
	case h.Credentials != nil && (h.User != nil || h.Password != nil):
		v.Errorf("credentials", "write credentials (a .creds file) or user and password, not both")
	case h.Credentials != nil:
		checkCredentials(v, l.Credentials)
	case h.User != nil && h.Password == nil:
		v.Errorf("user", "user without password: write password = env(\"…\") too")
	case h.Password != nil && h.User == nil:
		v.Errorf("password", "password without user")
	case h.User != nil:
		if l.User == "" || strings.ContainsAny(l.User, ":@/ \t\r\n") {
			v.Errorf("user", "the user %s must be non-empty, without ':', '@', '/' or spaces", quote(l.User))
		}
		if !fromEnv(v, "password") {
			v.Errorf("password", "write the hub password as env(\"NAME\"): a literal secret in the config file would end up in backups and repositories")
		} else if l.Password == "" {
			v.Errorf("password", "the password is empty (is its environment variable set?)")
		}
	}
	for i, s := range l.URLs {
		if u, err := url.Parse(s); err == nil && u.User != nil {
			if _, has := u.User.Password(); has && !fromEnv(v, "url") {
				v.ErrorfIndex(urlAttr(h), i, "%s holds a password: write user and password = env(\"…\") instead", quote(u.Redacted()))
			}
		}
	}

	l.TLS = decodeTLS(v.Block("tls", ""), h.TLS, tlsClient)

	set(&l.Domain, h.Domain)
	if h.Domain != nil {
		if err := ValidToken(l.Domain); err != nil {
			v.Errorf("domain", "the JetStream domain becomes a subject token ($JS.{domain}.API): %v", err)
		}
	}
	set(&l.AllowControl, h.AllowControl)
	if h.ReconnectWait != nil {
		if d, ok := v.Duration("reconnect_wait", *h.ReconnectWait); ok {
			if d == 0 {
				v.Errorf("reconnect_wait", "reconnect_wait must be > 0")
			}
			l.ReconnectWait = d
		}
	}

	if n.URL != "embedded" {
		v.Errorf("", "The leafnode block is for the embedded server (url = \"embedded\"); with an external server, make that server the leaf of the hub in its own configuration.")
	}
	if !n.JetStream.Enabled {
		v.Errorf("", "The uplink needs jetstream { enabled = true }: the hub's stream sources the gateway's IOT_DATA, and without it what is produced while the hub is away is lost.")
	}
}

func urlAttr(h *leafnodeHCL) string {
	if h.URLs != nil {
		return "urls"
	}
	return "url"
}

// checkLeafURL reports a hub URL that nats-server could not dial. i < 0 reports at attr, else at its i-th element.
func checkLeafURL(v *Validator, attr string, i int, s string) {
	report := func(format string, args ...any) {
		if i < 0 {
			v.Errorf(attr, format, args...)
		} else {
			v.ErrorfIndex(attr, i, format, args...)
		}
	}
	if len(s) > maxLeafURLLen {
		report("the URL is %d bytes long, at most %d allowed", len(s), maxLeafURLLen)
		return
	}
	u, err := url.Parse(s)
	switch {
	case strings.TrimSpace(s) == "":
		report("empty URL: write the hub's leafnode listener, like \"nats-leaf://hub.example.com:7422\"")
	case err != nil:
		report("%s is not a URL", quote(s))
	case !isOneOf(u.Scheme, leafSchemes):
		report("%s: unsupported scheme %s; known: %s", quote(s), quote(u.Scheme), oneOf(leafSchemes))
	case u.Hostname() == "":
		report("%s has no host", quote(s))
	case u.Path != "" && u.Path != "/" && u.Scheme != "ws" && u.Scheme != "wss":
		report("%s has a path; a leafnode URL is scheme://host:port", quote(s))
	case u.Port() != "":
		if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
			report("%s: port %s is not a number from 1 to 65535", quote(s), quote(u.Port()))
		}
	}
}

// fromEnv reports whether attr is written as a call of env(): the one way a secret may enter the config file.
func fromEnv(v *Validator, attr string) bool {
	if !v.Has(attr) {
		return false
	}
	call, ok := v.body.Attributes[attr].Expr.(*hclsyntax.FunctionCallExpr)
	return ok && call.Name == "env"
}

// checkCredentials reads a .creds file as nats-server will at every connect, so a wrong path or a file of the
// wrong kind is a config error with its position, not a link that never comes up. It reads at most
// maxCredsSize bytes, and only from a regular file (never a device or a pipe).
func checkCredentials(v *Validator, path string) {
	if path == "" {
		v.Errorf("credentials", "credentials is empty: write the path of the .creds file the hub's operator issued")
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		v.Errorf("credentials", "cannot read %s: %v", quote(path), err)
		return
	}
	if !fi.Mode().IsRegular() {
		v.Errorf("credentials", "%s is not a regular file", quote(path))
		return
	}
	if fi.Size() > maxCredsSize {
		v.Errorf("credentials", "%s is %d bytes, more than a .creds file (at most %d)", quote(path), fi.Size(), maxCredsSize)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		v.Errorf("credentials", "cannot read %s: %v", quote(path), err)
		return
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCredsSize))
	if err != nil {
		v.Errorf("credentials", "cannot read %s: %v", quote(path), err)
		return
	}
	for _, section := range []string{"-----BEGIN NATS USER JWT-----", "-----BEGIN USER NKEY SEED-----"} {
		if !bytes.Contains(data, []byte(section)) {
			v.Errorf("credentials", "%s is not a NATS credentials file: it lacks %s (nsc generate creds writes one)", quote(path), section)
			return
		}
	}
}

// String is for logs: where the uplink goes and how it authenticates, without secrets.
func (l *Leafnode) String() string {
	if l == nil {
		return "off"
	}
	auth := "none"
	switch {
	case l.Credentials != "":
		auth = "credentials " + l.Credentials
	case l.User != "":
		auth = "user " + l.User
	}
	urls := make([]string, len(l.URLs))
	for i, s := range l.URLs {
		urls[i] = s
		if u, err := url.Parse(s); err == nil {
			urls[i] = u.Redacted()
		}
	}
	return fmt.Sprintf("urls=%s auth=%s tls=%v", strings.Join(urls, ","), auth, l.TLS != nil)
}
