package http

import (
	"net/url"
	"strings"
	"time"

	"github.com/iotgw/iotgw/actors/device/payload"
	"github.com/iotgw/iotgw/config"
)

// The schema lives in the driver's folder, as mqtt's does (see actors/device/mqtt/config.go for why).

// Modes of an http device.
const (
	ModePoll = "poll" // the gateway GETs (or POSTs) url every interval
	ModePush = "push" // the device POSTs to the gateway's /api/v1/points/{device}
)

// Settings is driver "http": a device the gateway polls over HTTP(S), or one that pushes to the gateway.
type Settings struct {
	Mode        string                 `hcl:"mode,optional"` // poll (default) | push
	URL         string                 `hcl:"url,optional"`
	Method      string                 `hcl:"method,optional"` // GET (default) | POST
	Body        string                 `hcl:"body,optional"`   // the body of a POST
	Headers     map[string]string      `hcl:"headers,optional"`
	Username    string                 `hcl:"username,optional"` // basic auth
	Password    string                 `hcl:"password,optional"`
	BearerToken string                 `hcl:"bearer_token,optional"`
	Tags        map[string]string      `hcl:"tags,optional"`
	TLSBlock    *config.ClientTLSBlock `hcl:"tls,block"`

	// The mapping of the response (poll mode), as in an mqtt subscribe block.
	Format     string               `hcl:"format,optional"`
	Key        string               `hcl:"key,optional"`
	Type       string               `hcl:"type,optional"`
	ValueField string               `hcl:"value_field,optional"`
	TimeField  string               `hcl:"time_field,optional"`
	TimeFormat string               `hcl:"time_format,optional"`
	MaxDepth   int                  `hcl:"max_depth,optional"`
	MaxValues  int                  `hcl:"max_values,optional"`
	Fields     []payload.FieldBlock `hcl:"field,block"`

	IntervalText   string `hcl:"interval,optional"`    // default 10s
	TimeoutText    string `hcl:"timeout,optional"`     // default 5s
	MaxBodyText    string `hcl:"max_body,optional"`    // default 1MB: a response (or a push) larger is refused
	StaleAfterText string `hcl:"stale_after,optional"` // default 3 × interval in poll mode, off in push mode

	// Resolved by Validate.
	TLS        *config.TLS
	Interval   time.Duration
	Timeout    time.Duration
	MaxBody    int64
	StaleAfter time.Duration
}

// NewSettings returns an http device block's settings with their defaults, for the registration.
func NewSettings() config.DriverSettings {
	return &Settings{Mode: ModePoll, Method: "GET", IntervalText: "10s", TimeoutText: "5s", MaxBodyText: "1MB"}
}

// AcceptsPush says whether the device takes points on the gateway's push endpoint (mode = "push"): the
// endpoint accepts only devices that say so, so a request cannot invent a device.
func (s *Settings) AcceptsPush() bool { return s.Mode == ModePush }

// PushTags are the device's tags, added to every pushed point that lacks them.
func (s *Settings) PushTags() map[string]string { return s.Tags }

// PushLimit is the largest push body the device accepts, in bytes.
func (s *Settings) PushLimit() int64 { return s.MaxBody }

// Spec is the response's payload mapping.
func (s *Settings) Spec() payload.Spec {
	return payload.Spec{Format: s.Format, Key: s.Key, Type: s.Type, ValueField: s.ValueField, TimeField: s.TimeField,
		TimeFormat: s.TimeFormat, MaxDepth: s.MaxDepth, MaxValues: s.MaxValues, Fields: payload.FieldsOf(s.Fields)}
}

// Bounds of what a polled device sends: a config is not a place for megabytes.
const (
	maxBodyLimit   = 64 << 20
	maxURL         = 8 << 10
	maxHeaders     = 64
	maxRequestBody = 64 << 10
)

// pollOnly are the attributes that mean nothing to a push device.
var pollOnly = []string{"url", "method", "body", "headers", "username", "password", "bearer_token", "interval", "timeout",
	"format", "key", "type", "value_field", "time_field", "time_format", "max_depth", "max_values"}

// Validate implements config.DriverSettings.
func (s *Settings) Validate(v *config.Validator) {
	if n, err := config.ParseSize(s.MaxBodyText); err != nil {
		v.Errorf("max_body", "%v", err)
	} else if n < 1 || n > maxBodyLimit {
		v.Errorf("max_body", "max_body is %d bytes: between 1 byte and %d MB", n, maxBodyLimit>>20)
	} else {
		s.MaxBody = n
	}
	switch s.Mode {
	case ModePush:
		for _, attr := range pollOnly {
			if v.Has(attr) {
				v.Errorf(attr, "%s is for mode = \"poll\": a push device sends the gateway's point or batch JSON to /api/v1/points/{device}", attr)
			}
		}
		if s.TLSBlock != nil || len(s.Fields) > 0 {
			v.Errorf("mode", "tls and field blocks are for mode = \"poll\"")
		}
		if v.Has("stale_after") {
			s.StaleAfter = atLeast(v, "stale_after", s.StaleAfterText, 10*time.Millisecond)
		}
		return
	case ModePoll:
	default:
		v.Errorf("mode", "unknown mode %q; known: poll, push", s.Mode)
		return
	}
	u, err := url.Parse(s.URL)
	switch {
	case !v.Has("url"):
		v.Errorf("", `A polled http device needs url, like url = "http://10.0.0.5/status.json" (or mode = "push").`)
	case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
		v.Errorf("url", "url %q is not an http:// or https:// URL", s.URL)
	case u.User != nil:
		v.Errorf("url", "url %q: credentials go in username and password (or bearer_token), not in the URL", s.URL)
	}
	if len(s.URL) > maxURL {
		v.Errorf("url", "url of %d bytes: at most %d", len(s.URL), maxURL)
	}
	if len(s.Headers) > maxHeaders {
		v.Errorf("headers", "%d headers: at most %d", len(s.Headers), maxHeaders)
	}
	if len(s.Body) > maxRequestBody {
		v.Errorf("body", "a body of %d bytes: at most %d", len(s.Body), maxRequestBody)
	}
	s.Method = strings.ToUpper(s.Method)
	if s.Method != "GET" && s.Method != "POST" {
		v.Errorf("method", "method %q; known: GET, POST", s.Method)
	}
	if s.Body != "" && s.Method != "POST" {
		v.Errorf("body", "a body is sent with method = \"POST\"")
	}
	for name, value := range s.Headers {
		if name == "" || strings.ContainsAny(name, " \t\r\n:") || strings.ContainsAny(value, "\r\n") {
			v.Errorf("headers", "header %q is not a valid header name and value", name)
		}
		if strings.EqualFold(name, "Authorization") && (s.Username != "" || s.BearerToken != "") {
			v.Errorf("headers", "an Authorization header beside username or bearer_token: write one")
		}
	}
	if s.Password != "" && s.Username == "" {
		v.Errorf("password", "password without username")
	}
	if s.Username != "" && s.BearerToken != "" {
		v.Errorf("bearer_token", "basic auth (username) or bearer_token, not both")
	}
	s.Interval = atLeast(v, "interval", s.IntervalText, time.Millisecond)
	s.Timeout = atLeast(v, "timeout", s.TimeoutText, time.Millisecond)
	if v.Has("stale_after") {
		s.StaleAfter = atLeast(v, "stale_after", s.StaleAfterText, 10*time.Millisecond)
	}
	if s.TLSBlock != nil {
		s.TLS = config.DecodeClientTLS(v.Block("tls", ""), s.TLSBlock)
		if err == nil && u.Scheme == "http" {
			v.Errorf("url", "a tls block with an http:// url: write https://")
		}
	}
	if err := payload.Check(s.Spec()); err != nil {
		v.Errorf("", "payload mapping: %v", err)
	}
	if s.Format == payload.FormatValue && s.Key == "" {
		v.Errorf("format", `a plain value needs key = "…"`)
	}
}

func atLeast(v *config.Validator, attr, text string, min time.Duration) time.Duration {
	d, ok := v.Duration(attr, text)
	if ok && d < min {
		v.Errorf(attr, "%q is too short: at least %v", text, min)
	}
	return d
}
