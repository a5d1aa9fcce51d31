package config

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

// The fixed blocks are decoded into mirrors whose fields are pointers: nil means "not written, keep the
// default from Default()". Durations and sizes are strings in HCL and are parsed here, with errors at the value.

type gatewayHCL struct {
	ID            *string `hcl:"id,optional"`
	LogLevel      *string `hcl:"log_level,optional"`
	LogFormat     *string `hcl:"log_format,optional"`
	DataDir       *string `hcl:"data_dir,optional"`
	HTTPAddress   *string `hcl:"http_address,optional"`
	PointSubjects *bool   `hcl:"point_subjects,optional"`
	PluginsDir    *string `hcl:"plugins_dir,optional"`
	MemoryLimit   *string `hcl:"memory_limit,optional"`
}

type natsHCL struct {
	URL           *string           `hcl:"url,optional"`
	Host          *string           `hcl:"host,optional"`
	Port          *int              `hcl:"port,optional"`
	MaxReconnect  *int              `hcl:"max_reconnect,optional"`
	ReconnectWait *string           `hcl:"reconnect_wait,optional"`
	Timeout       *string           `hcl:"timeout,optional"`
	PingInterval  *string           `hcl:"ping_interval,optional"`
	MaxPingsOut   *int              `hcl:"max_pings_out,optional"`
	InProcess     *bool             `hcl:"in_process,optional"`
	PendingMsgs   *int              `hcl:"pending_messages,optional"`
	PendingBytes  *string           `hcl:"pending_bytes,optional"`
	JetStream     *jetStreamHCL     `hcl:"jetstream,block"`
	Authorization *authorizationHCL `hcl:"authorization,block"`
	Insecure      *bool             `hcl:"insecure,optional"`
	TLS           *tlsHCL           `hcl:"tls,block"`
	ClientTLS     *tlsHCL           `hcl:"client_tls,block"`
	Leafnode      *leafnodeHCL      `hcl:"leafnode,block"`
}

type jetStreamHCL struct {
	Enabled            *bool   `hcl:"enabled,optional"`
	StoreDir           *string `hcl:"store_dir,optional"`
	MaxMemory          *string `hcl:"max_memory,optional"`
	MaxFile            *string `hcl:"max_file,optional"`
	MaxAge             *string `hcl:"max_age,optional"`
	MaxBytes           *string `hcl:"max_bytes,optional"`
	Discard            *string `hcl:"discard,optional"`
	DuplicateWindow    *string `hcl:"duplicate_window,optional"`
	DeadLetterMaxAge   *string `hcl:"dead_letter_max_age,optional"`
	DeadLetterMaxBytes *string `hcl:"dead_letter_max_bytes,optional"`
	PublishWindow      *int    `hcl:"publish_window,optional"`
	PublishTimeout     *string `hcl:"publish_timeout,optional"`
	Buffer             *int    `hcl:"buffer,optional"`
	Sync               *string `hcl:"sync,optional"`
	PersistMode        *string `hcl:"persist_mode,optional"`
}

type supervisorHCL struct {
	Strategy    *string     `hcl:"strategy,optional"`
	MaxRestarts *int        `hcl:"max_restarts,optional"`
	Within      *string     `hcl:"within,optional"`
	Backoff     *backoffHCL `hcl:"backoff,block"`
}

type backoffHCL struct {
	Initial *string  `hcl:"initial,optional"`
	Max     *string  `hcl:"max,optional"`
	Jitter  *float64 `hcl:"jitter,optional"`
}

var (
	logLevels  = []string{"trace", "debug", "info", "warn", "error"}
	logFormats = []string{"console", "json"}
	strategies = []string{"one_for_one", "all_for_one"}
	urlSchemes = []string{"nats", "tls", "ws", "wss"}
)

// set overwrites *dst with *src when src was written.
func set[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

// setDuration parses src into *dst when it was written and is a valid duration.
func setDuration(v *Validator, attr string, dst *time.Duration, src *string) {
	if src == nil {
		return
	}
	if d, ok := v.Duration(attr, *src); ok {
		*dst = d
	}
}

// setSize parses src into *dst when it was written and is a valid size.
func setSize(v *Validator, attr string, dst *int64, src *string) {
	if src == nil {
		return
	}
	n, err := ParseSize(*src)
	if err != nil {
		v.Errorf(attr, "%v", err)
		return
	}
	*dst = n
}

func decodeGateway(block *hcl.Block, ctx *hcl.EvalContext, g *Gateway, diags *hcl.Diagnostics) {
	var h gatewayHCL
	if d := gohcl.DecodeBody(block.Body, ctx, &h); d.HasErrors() {
		*diags = append(*diags, d...)
		return
	}
	v := newValidator(block, "gateway block", diags)
	set(&g.ID, h.ID)
	set(&g.LogLevel, h.LogLevel)
	set(&g.LogFormat, h.LogFormat)
	set(&g.DataDir, h.DataDir)
	set(&g.HTTPAddress, h.HTTPAddress)
	set(&g.PointSubjects, h.PointSubjects)
	set(&g.PluginsDir, h.PluginsDir)
	setSize(v, "memory_limit", &g.MemoryLimit, h.MemoryLimit)
	if h.MemoryLimit != nil && g.MemoryLimit <= 0 {
		v.Errorf("memory_limit", "memory_limit must be > 0 (leave it out for the Go runtime's default, no limit)")
	}

	if err := ValidToken(g.ID); err != nil {
		v.Errorf("id", "the gateway id is used in subjects: %v", err)
	}
	if !isOneOf(g.LogLevel, logLevels) {
		v.Errorf("log_level", "unknown log level %s; known: %s", quote(g.LogLevel), oneOf(logLevels))
	}
	if !isOneOf(g.LogFormat, logFormats) {
		v.Errorf("log_format", "unknown log format %s; known: %s", quote(g.LogFormat), oneOf(logFormats))
	}
	if g.DataDir == "" {
		v.Errorf("data_dir", "data_dir must not be empty")
	}
	if g.HTTPAddress != "" {
		if err := checkHostPort(g.HTTPAddress); err != nil {
			v.Errorf("http_address", "%v (write host:port, or \"\" to disable the HTTP server)", err)
		}
	}
}

func decodeNATS(block *hcl.Block, ctx *hcl.EvalContext, n *NATS, diags *hcl.Diagnostics) {
	h := natsHCL{JetStream: &jetStreamHCL{}} // non-nil: an absent jetstream block keeps the defaults
	if d := gohcl.DecodeBody(block.Body, ctx, &h); d.HasErrors() {
		*diags = append(*diags, d...)
		return
	}
	v := newValidator(block, "nats block", diags)
	decodeAuthorization(v.Block("authorization", ""), h.Authorization, n)
	set(&n.URL, h.URL)
	set(&n.Host, h.Host)
	set(&n.Port, h.Port)
	set(&n.MaxReconnect, h.MaxReconnect)
	setDuration(v, "reconnect_wait", &n.ReconnectWait, h.ReconnectWait)
	setDuration(v, "timeout", &n.Timeout, h.Timeout)
	setDuration(v, "ping_interval", &n.PingInterval, h.PingInterval)
	set(&n.MaxPingsOut, h.MaxPingsOut)
	set(&n.InProcess, h.InProcess)
	set(&n.PendingMessages, h.PendingMsgs)
	setSize(v, "pending_bytes", &n.PendingBytes, h.PendingBytes)
	if n.PendingMessages < 1 {
		v.Errorf("pending_messages", "pending_messages is %d, must be >= 1", n.PendingMessages)
	}
	if n.PendingBytes < 1 {
		v.Errorf("pending_bytes", "pending_bytes must be > 0")
	}

	if n.URL != "embedded" {
		checkNATSURLs(v, n.URL)
	}
	decodeNATSSecurity(v, &h, n)
	if n.Host == "" {
		v.Errorf("host", "host must not be empty (write \"0.0.0.0\" to listen on every interface)")
	}
	if n.Port < -1 || n.Port > 65535 {
		v.Errorf("port", "port %d is out of range: 0 to 65535, or -1 for a random port", n.Port)
	}
	if n.MaxReconnect < -1 {
		v.Errorf("max_reconnect", "max_reconnect is %d: write -1 to reconnect forever, or a count >= 0", n.MaxReconnect)
	}
	if h.Timeout != nil && n.Timeout == 0 {
		v.Errorf("timeout", "the connect timeout must be > 0")
	}
	if h.PingInterval != nil && n.PingInterval == 0 {
		v.Errorf("ping_interval", "ping_interval must be > 0")
	}
	if n.MaxPingsOut < 1 {
		v.Errorf("max_pings_out", "max_pings_out is %d, must be >= 1", n.MaxPingsOut)
	}

	js := v.Block("jetstream", "")
	j, hj := &n.JetStream, h.JetStream
	set(&j.Enabled, hj.Enabled)
	set(&j.StoreDir, hj.StoreDir)
	setSize(js, "max_memory", &j.MaxMemory, hj.MaxMemory)
	setSize(js, "max_file", &j.MaxFile, hj.MaxFile)
	setDuration(js, "max_age", &j.MaxAge, hj.MaxAge)
	if hj.MaxMemory != nil && j.MaxMemory == 0 {
		js.Errorf("max_memory", "max_memory must be > 0")
	}
	if hj.MaxFile != nil && j.MaxFile == 0 {
		js.Errorf("max_file", "max_file must be > 0")
	}
	setSize(js, "max_bytes", &j.MaxBytes, hj.MaxBytes)
	set(&j.Discard, hj.Discard)
	setDuration(js, "duplicate_window", &j.DuplicateWindow, hj.DuplicateWindow)
	setDuration(js, "dead_letter_max_age", &j.DeadLetterMaxAge, hj.DeadLetterMaxAge)
	setSize(js, "dead_letter_max_bytes", &j.DeadLetterMaxBytes, hj.DeadLetterMaxBytes)
	set(&j.PublishWindow, hj.PublishWindow)
	setDuration(js, "publish_timeout", &j.PublishTimeout, hj.PublishTimeout)
	set(&j.Buffer, hj.Buffer)
	// The defaults follow a smaller max_file: the embedded server reserves every stream's max_bytes in it.
	if hj.MaxBytes == nil {
		j.MaxBytes = min(j.MaxBytes, j.MaxFile/4*3)
	}
	if hj.DeadLetterMaxBytes == nil {
		j.DeadLetterMaxBytes = min(j.DeadLetterMaxBytes, j.MaxFile/16)
	}
	if j.MaxBytes < 1 {
		js.Errorf("max_bytes", "max_bytes must be > 0: the stream is bounded in bytes (and by max_age)")
	} else if n.URL == "embedded" && j.MaxBytes+j.DeadLetterMaxBytes > j.MaxFile {
		js.Errorf("max_bytes", "max_bytes (%d bytes) and dead_letter_max_bytes (%d bytes) are more than max_file (%d bytes), the embedded server's room for all its file streams",
			j.MaxBytes, j.DeadLetterMaxBytes, j.MaxFile)
	}
	if !isOneOf(j.Discard, DiscardPolicies) {
		js.Errorf("discard", "unknown discard policy %s; known: %s (old deletes the oldest messages, new refuses new ones)", quote(j.Discard), oneOf(DiscardPolicies))
	}
	if hj.DuplicateWindow != nil && j.DuplicateWindow == 0 {
		js.Errorf("duplicate_window", "duplicate_window must be > 0: retried publishes are dropped by their message id within it")
	}
	if hj.DuplicateWindow == nil && j.MaxAge > 0 && j.DuplicateWindow > j.MaxAge {
		j.DuplicateWindow = j.MaxAge // the default window follows a shorter max_age (JetStream refuses a longer one)
	}
	if j.MaxAge > 0 && j.DuplicateWindow > j.MaxAge {
		js.Errorf("duplicate_window", "duplicate_window (%s) is longer than max_age (%s)", j.DuplicateWindow, j.MaxAge)
	}
	if j.DeadLetterMaxBytes < 1 {
		js.Errorf("dead_letter_max_bytes", "dead_letter_max_bytes must be > 0")
	}
	if j.PublishWindow < 1 || j.PublishWindow > 65536 {
		js.Errorf("publish_window", "publish_window is %d: from 1 to 65536 acknowledged publishes in flight", j.PublishWindow)
	}
	if hj.PublishTimeout != nil && j.PublishTimeout == 0 {
		js.Errorf("publish_timeout", "publish_timeout must be > 0")
	}
	if hj.Sync != nil {
		j.Sync = *hj.Sync
		if j.Sync == "always" {
			j.SyncAlways, j.SyncInterval = true, 0
		} else if d, ok := js.Duration("sync", j.Sync); ok {
			if d == 0 {
				js.Errorf("sync", `sync must be "always" or a duration > 0 (an fsync at least that often)`)
			}
			j.SyncInterval = d
		}
	}
	set(&j.PersistMode, hj.PersistMode)
	if !isOneOf(j.PersistMode, PersistModes) {
		js.Errorf("persist_mode", "unknown persist_mode %s; known: %s (default writes each message before its ack, async writes batches after it)", quote(j.PersistMode), oneOf(PersistModes))
	}
	if j.Buffer < 1 || j.Buffer > 10_000_000 {
		js.Errorf("buffer", "buffer is %d: from 1 to 10000000 messages per durable inbox (used when JetStream is off)", j.Buffer)
	}
	decodeLeafnode(v, h.Leafnode, n) // last: it checks the url and jetstream above
}

// checkNATSURLs checks a comma-separated list of server URLs, reporting each bad one.
func checkNATSURLs(v *Validator, list string) {
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		u, err := url.Parse(s)
		switch {
		case s == "":
			v.Errorf("url", "empty server URL in %s; write \"embedded\" or nats://host:port, comma separated", quote(list))
		case err != nil:
			v.Errorf("url", "%s is not a URL: %v", quote(s), err)
		case !isOneOf(u.Scheme, urlSchemes):
			v.Errorf("url", "%s: unsupported scheme %s; write \"embedded\" or a URL with one of: %s", quote(s), quote(u.Scheme), oneOf(urlSchemes))
		case u.Host == "":
			v.Errorf("url", "%s has no host", quote(s))
		}
	}
}

// checkHostPort checks a listen address without resolving it (config never touches the network).
func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s is not host:port", quote(addr))
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%s: port %s is not a number from 0 to 65535", quote(addr), quote(port))
	}
	return nil
}

func decodeSupervisor(block *hcl.Block, ctx *hcl.EvalContext, s *Supervisor, diags *hcl.Diagnostics) {
	h := supervisorHCL{Backoff: &backoffHCL{}}
	if d := gohcl.DecodeBody(block.Body, ctx, &h); d.HasErrors() {
		*diags = append(*diags, d...)
		return
	}
	v := newValidator(block, "supervisor block", diags)
	set(&s.Strategy, h.Strategy)
	set(&s.MaxRestarts, h.MaxRestarts)
	setDuration(v, "within", &s.Within, h.Within)
	if !isOneOf(s.Strategy, strategies) {
		v.Errorf("strategy", "unknown strategy %s; known: %s", quote(s.Strategy), oneOf(strategies))
	}
	if s.MaxRestarts < 0 {
		v.Errorf("max_restarts", "max_restarts is %d, must be >= 0 (0 never restarts)", s.MaxRestarts)
	}
	if h.Within != nil && s.Within == 0 {
		v.Errorf("within", "within must be > 0")
	}

	bv := v.Block("backoff", "")
	b, hb := &s.Backoff, h.Backoff
	initialOK, maxOK := true, true
	if hb.Initial != nil {
		b.Initial, initialOK = bv.Duration("initial", *hb.Initial)
		if initialOK && b.Initial == 0 {
			bv.Errorf("initial", "initial must be > 0")
			initialOK = false
		}
	}
	if hb.Max != nil {
		b.Max, maxOK = bv.Duration("max", *hb.Max)
	}
	if initialOK && maxOK && b.Initial > b.Max {
		attr := "initial"
		if hb.Initial == nil {
			attr = "max"
		}
		bv.Errorf(attr, "initial (%v) is greater than max (%v)", b.Initial, b.Max)
	}
	set(&b.Jitter, hb.Jitter)
	if math.IsNaN(b.Jitter) || b.Jitter < 0 || b.Jitter > 1 {
		bv.Errorf("jitter", "jitter is %v: a fraction from 0 to 1 (0.2 varies each delay by ±20%%)", b.Jitter)
	}
}
