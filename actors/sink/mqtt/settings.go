package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/iotgw/iotgw/config"
)

// The schema of a `sink "name" { type = "mqtt" … }` block lives here, in the kind's folder, beside the actor, as
// the file sink's does (config.RegisterSink takes any settings with a Validate method).

// Payload formats.
const (
	PayloadJSON  = "json"  // the point's JSON, one message per point
	PayloadBatch = "batch" // {"points":[…]}, one message per batch (and topic)
	PayloadValue = "value" // the bare value (25.5, true, text), one message per point
)

var payloads = []string{PayloadJSON, PayloadBatch, PayloadValue}

// Protocol versions.
const (
	Protocol311 = "3.1.1"
	Protocol5   = "5"
)

var protocols = []string{Protocol311, Protocol5}

// Settings is sink type "mqtt".
type Settings struct {
	// Subjects to consume, durably; default ["iot.processed.batch.>"].
	Subjects []string `hcl:"subjects,optional"`
	// Broker URL: tcp://host:1883, mqtt://…, ssl://…, tls://… or mqtts://host:8883.
	Broker string `hcl:"broker"`
	// "3.1.1" (default) or "5".
	Protocol string `hcl:"protocol,optional"`
	// Topic template over {device}, {key}, {gateway}, {sink}: with {key}, one message per point; without, one
	// message per batch (payload "batch") or per point on the same topic.
	Topic string `hcl:"topic,optional"`
	// json (default) | batch | value.
	Payload string `hcl:"payload,optional"`
	// 0, 1 (default) or 2.
	QoS int `hcl:"qos,optional"`
	// Retained messages (default false).
	Retain bool `hcl:"retain,optional"`
	// Client id (default "iotgw-{gateway}-{sink}").
	ClientID string `hcl:"client_id,optional"`
	// A persistent session (clean_session = false on 3.1.1, a session expiry on 5): the broker keeps the
	// session's in-flight QoS 1/2 messages across a reconnect.
	Persistent bool `hcl:"persistent_session,optional"`
	// Session expiry for MQTT 5 persistent sessions (default "1h").
	SessionExpiryText string `hcl:"session_expiry,optional"`
	Username          string `hcl:"username,optional"`
	Password          string `hcl:"password,optional"`
	// Keep alive (default "30s").
	KeepAliveText string `hcl:"keep_alive,optional"`
	// Connect and publish-acknowledgement timeout (default "10s").
	TimeoutText string `hcl:"timeout,optional"`
	// Deliveries handed to the sink and not yet acknowledged (default 1024).
	MaxAckPending int `hcl:"max_ack_pending,optional"`
	// QoS 1 and 2 messages on the wire, waiting for the broker's acknowledgement (16-bit packet ids). Unset (0):
	// 1024, except 18 for QoS 2 on 3.1.1, which has no Receive Maximum to say the broker's limit (mosquitto's
	// max_inflight_messages is 20, and it drops a 3.1.1 client with more QoS 2 messages unreleased).
	MaxInflight int `hcl:"max_inflight,optional"`
	// TLS towards the broker (implied by ssl://, tls://, mqtts://).
	TLS *TLSBlock `hcl:"tls,block"`

	SessionExpiry time.Duration
	KeepAlive     time.Duration
	Timeout       time.Duration
	tmpl          *topicTemplate
	tlsConfig     *tls.Config
	address       string // host:port
}

// TLSBlock is the sink's `tls { ca, cert, key, server_name }`: PEM files read at validation, so a missing file is
// a config error at its position, not a failure at start.
type TLSBlock struct {
	CA         string `hcl:"ca,optional"`
	Cert       string `hcl:"cert,optional"`
	Key        string `hcl:"key,optional"`
	ServerName string `hcl:"server_name,optional"`
}

// NewSettings returns the settings of an mqtt sink block with their defaults.
func NewSettings() config.SinkSettings {
	return &Settings{
		Subjects:          []string{"iot.processed.batch.>"},
		Protocol:          Protocol311,
		Topic:             "plant/{device}/{key}",
		Payload:           PayloadJSON,
		QoS:               1,
		SessionExpiryText: "1h",
		KeepAliveText:     "30s",
		TimeoutText:       "10s",
		MaxAckPending:     1024,
	}
}

const (
	defaultInflight        = 1024
	defaultInflight311QoS2 = 18    // mosquitto's default max_inflight_messages (20), less the two ids a client keeps beyond its window
	maxAckPendingCap       = 65535 // MQTT packet ids are 16 bits: more in flight cannot be told apart
	maxString              = 65535 // MQTT strings (client id, user, password, topic) are length-prefixed with 16 bits
)

// Validate implements config.SinkSettings.
func (s *Settings) Validate(v *config.Validator) {
	if len(s.Subjects) == 0 {
		v.Errorf("subjects", `An mqtt sink needs at least one subject, like ["iot.processed.batch.>"].`)
	}
	for i, subj := range s.Subjects {
		if err := config.ValidSubject(subj, true); err != nil {
			v.ErrorfIndex("subjects", i, "%v", err)
		}
	}
	useTLS := s.validateBroker(v)
	if !slices.Contains(protocols, s.Protocol) {
		v.Errorf("protocol", "unknown MQTT protocol %q; known: %s", s.Protocol, strings.Join(protocols, ", "))
	}
	if !slices.Contains(payloads, s.Payload) {
		v.Errorf("payload", "unknown payload %q; known: %s", s.Payload, strings.Join(payloads, ", "))
	}
	if t, err := parseTopic(s.Topic); err != nil {
		v.Errorf("topic", "%v", err)
	} else {
		s.tmpl = t
		if s.Payload == PayloadBatch && t.perPoint() {
			v.Errorf("topic", "topic %q has {key}, which makes one message per point: payload \"batch\" needs a topic without it, like \"plant/{device}\"", s.Topic)
		}
	}
	if s.QoS < 0 || s.QoS > 2 {
		v.Errorf("qos", "qos is %d: 0, 1 or 2", s.QoS)
	}
	for _, f := range []struct{ attr, val string }{{"client_id", s.ClientID}, {"username", s.Username}, {"password", s.Password}} {
		if len(f.val) > maxString {
			v.Errorf(f.attr, "%s is %d bytes: MQTT allows at most %d", f.attr, len(f.val), maxString)
		} else if !utf8.ValidString(f.val) || strings.ContainsRune(f.val, 0) {
			v.Errorf(f.attr, "%s must be UTF-8 without NUL (MQTT strings)", f.attr)
		}
	}
	if s.Password != "" && s.Username == "" && s.Protocol == Protocol311 {
		v.Errorf("password", "MQTT 3.1.1 sends a password only with a username: set username too")
	}
	var ok bool
	if s.SessionExpiry, ok = v.Duration("session_expiry", s.SessionExpiryText); ok && (s.SessionExpiry < 0 || s.SessionExpiry > 0xFFFFFFFF*time.Second) {
		v.Errorf("session_expiry", "session_expiry %q is out of range (at most 136 years, MQTT's 32-bit seconds)", s.SessionExpiryText)
	}
	if s.KeepAlive, ok = v.Duration("keep_alive", s.KeepAliveText); ok && (s.KeepAlive < time.Second || s.KeepAlive > 65535*time.Second) {
		v.Errorf("keep_alive", "keep_alive %q is out of range: from 1s to 65535s", s.KeepAliveText)
	}
	if s.Timeout, ok = v.Duration("timeout", s.TimeoutText); ok && (s.Timeout < 100*time.Millisecond || s.Timeout > 10*time.Minute) {
		v.Errorf("timeout", "timeout %q is out of range: from 100ms to 10m", s.TimeoutText)
	}
	if s.MaxAckPending < 1 || s.MaxAckPending > maxAckPendingCap {
		v.Errorf("max_ack_pending", "max_ack_pending is %d: from 1 to %d", s.MaxAckPending, maxAckPendingCap)
	}
	if s.MaxInflight == 0 {
		s.MaxInflight = defaultInflight
		if s.Protocol == Protocol311 && s.QoS == 2 {
			s.MaxInflight = defaultInflight311QoS2
		}
	}
	if s.MaxInflight < 1 || s.MaxInflight > maxAckPendingCap {
		v.Errorf("max_inflight", "max_inflight is %d: from 1 to %d (MQTT packet ids are 16 bits)", s.MaxInflight, maxAckPendingCap)
	}
	if s.TLS != nil || useTLS {
		s.validateTLS(v.Block("tls", ""))
	}
}

// validateBroker checks the URL and says whether its scheme asks for TLS.
func (s *Settings) validateBroker(v *config.Validator) bool {
	u, err := url.Parse(s.Broker)
	if err != nil {
		v.Errorf("broker", "broker %q is not a URL: %v", s.Broker, err)
		return false
	}
	var useTLS bool
	port := ""
	switch u.Scheme {
	case "tcp", "mqtt":
		port = "1883"
	case "ssl", "tls", "mqtts":
		port, useTLS = "8883", true
	default:
		v.Errorf("broker", "broker %q: scheme %q is not one of tcp, mqtt, ssl, tls, mqtts (websockets are not supported)", s.Broker, u.Scheme)
		return false
	}
	if u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		v.Errorf("broker", "broker %q must be scheme://host[:port] (credentials go in username and password)", s.Broker)
		return useTLS
	}
	if p := u.Port(); p != "" {
		port = p
	}
	s.address = u.Hostname() + ":" + port
	if strings.Contains(u.Hostname(), ":") {
		s.address = "[" + u.Hostname() + "]:" + port
	}
	return useTLS
}

func (s *Settings) validateTLS(v *config.Validator) {
	t := s.TLS
	if t == nil {
		t = &TLSBlock{}
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			v.Errorf("ca", "%v", err)
		} else {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				v.Errorf("ca", "%s holds no PEM certificate", t.CA)
			}
			cfg.RootCAs = pool
		}
	}
	if (t.Cert == "") != (t.Key == "") {
		v.Errorf("cert", "cert and key go together: a client certificate needs both")
	} else if t.Cert != "" {
		pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			v.Errorf("cert", "client certificate: %v", err)
		} else {
			cfg.Certificates = []tls.Certificate{pair}
		}
	}
	s.tlsConfig = cfg
}

// clientID is the configured id, or iotgw-{gateway}-{sink}.
func (s *Settings) clientID(gateway, sink string) string {
	if s.ClientID != "" {
		return s.ClientID
	}
	id := fmt.Sprintf("iotgw-%s-%s", gateway, sink)
	if len(id) > maxString {
		id = id[:maxString]
	}
	return id
}
