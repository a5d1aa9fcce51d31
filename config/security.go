package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

// TLS is a `tls` block: the certificate a listener presents (or a client presents, for client_tls), and the CA
// the other side's certificate is checked against. Files are PEM. Validation reads them, so a missing file or a
// key that does not belong to its certificate is a config error, not a failure at start.
type TLS struct {
	Cert   string // PEM certificate (chain)
	Key    string // its PEM private key
	CA     string // PEM CA bundle: a server verifies client certificates against it, a client the server's
	Verify bool   // embedded server: require client certificates signed by CA (default true when CA is set)
}

// HTTP is the `http` block: how the HTTP server (gateway.http_address) is protected.
type HTTP struct {
	Token    string // clients send Authorization: Bearer {token}; "" for none
	TLS      *TLS   // serve HTTPS; nil for plain HTTP
	Insecure bool   // acknowledge serving beyond loopback without TLS and a token
}

// MinTokenLen is the shortest HTTP bearer token accepted: a token is a password sent with every request.
const MinTokenLen = 16

type tlsHCL struct {
	Cert   *string `hcl:"cert,optional"`
	Key    *string `hcl:"key,optional"`
	CA     *string `hcl:"ca,optional"`
	Verify *bool   `hcl:"verify,optional"`
}

type httpHCL struct {
	Token    *string `hcl:"token,optional"`
	Insecure *bool   `hcl:"insecure,optional"`
	TLS      *struct {
		Cert string `hcl:"cert"`
		Key  string `hcl:"key"`
	} `hcl:"tls,block"`
}

// tlsRole is what a tls block is for, which decides what it needs.
type tlsRole int

const (
	tlsServer tlsRole = iota // a listener: cert and key required; ca and verify check client certificates
	tlsClient                // a client: ca optional (else the system's roots), cert and key optional, as a pair
)

// decodeTLS checks a tls block's files and returns it, or nil when h is nil.
func decodeTLS(v *Validator, h *tlsHCL, role tlsRole) *TLS {
	if h == nil {
		return nil
	}
	t := &TLS{}
	set(&t.Cert, h.Cert)
	set(&t.Key, h.Key)
	set(&t.CA, h.CA)
	t.Verify = t.CA != "" && role == tlsServer
	set(&t.Verify, h.Verify)
	switch {
	case role == tlsServer && t.Cert == "":
		v.Errorf("cert", "a listener's tls block needs cert (and key): the certificate it presents")
	case role == tlsServer && t.Key == "":
		v.Errorf("key", "a listener's tls block needs key: the private key of cert")
	case t.Cert != "" && t.Key == "":
		v.Errorf("cert", "cert without key: write both, or neither")
	case t.Key != "" && t.Cert == "":
		v.Errorf("key", "key without cert: write both, or neither")
	case t.Cert != "":
		checkKeyPair(v, t.Cert, t.Key)
	}
	if t.CA != "" {
		checkCA(v, t.CA)
	}
	switch {
	case role == tlsClient && h.Verify != nil:
		v.Errorf("verify", "verify is for the embedded server's listener (require client certificates); a client always verifies the server")
	case t.Verify && t.CA == "":
		v.Errorf("verify", "verify = true needs ca: the CA client certificates must be signed by")
	}
	return t
}

// checkKeyPair reports an unreadable certificate or key, or a key that is not the certificate's.
func checkKeyPair(v *Validator, cert, key string) {
	for _, f := range []struct{ attr, path string }{{"cert", cert}, {"key", key}} {
		if _, err := os.Stat(f.path); err != nil {
			v.Errorf(f.attr, "cannot read %s: %v", quote(f.path), err)
			return
		}
	}
	if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
		v.Errorf("cert", "%s and %s are not a certificate and its key: %v", quote(cert), quote(key), err)
	}
}

func checkCA(v *Validator, path string) {
	pem, err := os.ReadFile(path)
	if err != nil {
		v.Errorf("ca", "cannot read %s: %v", quote(path), err)
		return
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		v.Errorf("ca", "%s holds no PEM certificate", quote(path))
	}
}

func decodeHTTP(block *hcl.Block, ctx *hcl.EvalContext, h *HTTP, diags *hcl.Diagnostics) {
	var hh httpHCL
	if d := gohcl.DecodeBody(block.Body, ctx, &hh); d.HasErrors() {
		*diags = append(*diags, d...)
		return
	}
	v := newValidator(block, "http block", diags)
	set(&h.Insecure, hh.Insecure)
	if hh.Token != nil {
		h.Token = *hh.Token
		if len(h.Token) < MinTokenLen {
			v.Errorf("token", "the token is %d characters long, at least %d wanted (is its environment variable set?)", len(h.Token), MinTokenLen)
		}
		if strings.ContainsAny(h.Token, " \t\r\n") {
			v.Errorf("token", "the token must not contain spaces or line breaks: it travels in the Authorization header")
		}
	}
	if hh.TLS != nil {
		h.TLS = decodeTLS(v.Block("tls", ""), &tlsHCL{Cert: &hh.TLS.Cert, Key: &hh.TLS.Key}, tlsServer)
	}
}

// decodeNATSSecurity reads the nats block's tls, client_tls and insecure.
func decodeNATSSecurity(v *Validator, h *natsHCL, n *NATS) {
	set(&n.Insecure, h.Insecure)
	n.TLS = decodeTLS(v.Block("tls", ""), h.TLS, tlsServer)
	n.ClientTLS = decodeTLS(v.Block("client_tls", ""), h.ClientTLS, tlsClient)
	embedded := n.URL == "embedded"
	switch {
	case embedded && n.ClientTLS != nil:
		v.Block("client_tls", "").Errorf("", "client_tls is for an external server (url = \"tls://…\"); the embedded server's listener takes tls { cert, key }")
	case !embedded && n.TLS != nil:
		v.Block("tls", "").Errorf("", "tls configures the embedded server's listener, but url names an external server: write client_tls { ca, cert, key }")
	case embedded && n.TLS != nil && h.InProcess != nil && !*h.InProcess:
		v.Errorf("in_process", "in_process = false with tls: the gateway's own connection to its embedded server would need to trust and present certificates; keep it in-process")
	}
}

// checkExposure refuses listeners beyond loopback that anyone who reaches them could use, unless the block says
// insecure = true (the runtime then warns at every start). blocks are the first gateway, nats and http blocks.
func checkExposure(cfg *Config, blocks map[string]*hcl.Block, diags *hcl.Diagnostics) {
	validator := func(typ string) *Validator {
		if b := blocks[typ]; b != nil {
			return newValidator(b, typ+" block", diags)
		}
		return &Validator{what: typ + " block", diags: diags}
	}
	if missing := NATSExposure(cfg.NATS); missing != "" && !cfg.NATS.Insecure {
		validator("nats").Errorf("host", "the embedded NATS server listens on %s, beyond loopback, without %s: anyone who reaches it "+
			"could read everything and drive iot.control.>. Add authorization { user … } and tls { cert, key }, "+
			"or write insecure = true in the nats block to accept that", quote(cfg.NATS.Host), missing)
	}
	if missing := HTTPExposure(cfg.Gateway, cfg.HTTP); missing != "" && !cfg.HTTP.Insecure {
		v := validator("gateway")
		if blocks["gateway"] == nil || !v.Has("http_address") {
			v = validator("http")
		}
		v.Errorf("http_address", "the HTTP server listens on %s, beyond loopback, without %s. Add http { token = env(\"…\") "+
			"tls { cert, key } }, or write http { insecure = true } to accept that", quote(cfg.Gateway.HTTPAddress), missing)
	}
}

// NATSExposure says what the embedded server lacks to listen beyond loopback ("users and TLS", "TLS"), or ""
// when it is on loopback, protected, or not embedded.
func NATSExposure(n NATS) string {
	if n.URL != "embedded" || IsLoopback(n.Host) {
		return ""
	}
	return lacking(len(n.Users) > 0, "users", n.TLS != nil, "TLS")
}

// HTTPExposure says what the HTTP server lacks to listen beyond loopback ("TLS and a token"), or "".
func HTTPExposure(g Gateway, h HTTP) string {
	if g.HTTPAddress == "" {
		return ""
	}
	host, _, err := net.SplitHostPort(g.HTTPAddress)
	if err != nil || IsLoopback(host) {
		return ""
	}
	return lacking(h.TLS != nil, "TLS", h.Token != "", "a token")
}

func lacking(okA bool, a string, okB bool, b string) string {
	switch {
	case !okA && !okB:
		return a + " and " + b
	case !okA:
		return a
	case !okB:
		return b
	}
	return ""
}

// IsLoopback reports whether a listen host is loopback only: "localhost" or a loopback IP. An empty host, a
// wildcard address or any other name is not (config never resolves names).
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// String is for logs: which files, and whether client certificates are verified.
func (t *TLS) String() string {
	if t == nil {
		return "off"
	}
	return fmt.Sprintf("cert=%s key=%s ca=%s verify=%v", t.Cert, t.Key, t.CA, t.Verify)
}

// checkSharedNames rejects a device id that is also a sidecar's name: a sidecar's points without a device_id are
// published as device {sidecar} (iot.raw.isp.{sidecar} becomes iot.processed.batch.{sidecar}), the same subjects
// as the device's, so neither's data could be told apart.
func checkSharedNames(cfg *Config, diags *hcl.Diagnostics) {
	for _, d := range cfg.Devices {
		if sc := cfg.SidecarNamed(d.ID); sc != nil {
			*diags = append(*diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Device id used by a sidecar",
				Detail:   SharedNameDetail(d.ID, sc.DefRange),
				Subject:  d.DefRange.Ptr(),
			})
		}
	}
}

// SidecarNamed returns the sidecar called name, or nil.
func (c *Config) SidecarNamed(name string) *Sidecar {
	for i := range c.Sidecars {
		if c.Sidecars[i].Name == name {
			return &c.Sidecars[i]
		}
	}
	return nil
}

// SharedNameDetail explains a device id that a sidecar (defined at sidecar) uses as its name.
func SharedNameDetail(id string, sidecar hcl.Range) string {
	return fmt.Sprintf("The sidecar %s at %s has this name: both would publish on iot.processed.batch.%s, "+
		"and their data could not be told apart. Rename one.", quote(id), sidecar, id)
}

// ClientTLSBlock is a client's `tls { ca, cert, key }` block in a kind's own schema (a driver that connects to
// a broker or a server: actors/device/mqtt, actors/device/http); decode it with DecodeClientTLS.
type ClientTLSBlock = tlsHCL

// DecodeClientTLS checks a client's tls block (v is the block's validator: v.Block("tls", "") of its parent)
// the way client_tls is checked: ca optional (else the system's roots), cert and key as a pair, files readable.
// It returns nil when h is nil.
func DecodeClientTLS(v *Validator, h *ClientTLSBlock) *TLS { return decodeTLS(v, h, tlsClient) }

// ClientConfig is the crypto/tls configuration of a client with this block: the CA it verifies the server with
// (the system's roots without one) and the certificate it presents, if any. serverName is checked against the
// server's certificate. The files were checked by validation; reading them again here can still fail (they
// changed since), which the caller reports.
func (t *TLS) ClientConfig(serverName string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("tls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca %s: no PEM certificate", t.CA)
		}
		c.RootCAs = pool
	}
	if t.Cert != "" {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("tls cert: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
