package mqtt

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/iotgw/iotgw/actors/device/payload"
	"github.com/iotgw/iotgw/config"
)

// The schema lives here, in the driver's folder, not in config/: a kind registers its settings with the registry
// (actors.RegisterDevice), and config decodes whatever a kind registered, so the driver's folder holds the whole
// driver — and its Validate can check the payload mapping with the mapper's own Check (config may not import
// the actors). It uses only config's exported validation helpers.

// Protocol versions.
const (
	Protocol311 = "3.1.1"
	Protocol5   = "5"
)

// Settings is driver "mqtt": a device whose data arrives by subscription to an MQTT broker.
type Settings struct {
	Broker       string            `hcl:"broker"`             // tcp://host:1883, ssl://, tls://, mqtt://, mqtts://
	Protocol     string            `hcl:"protocol,optional"`  // 3.1.1 (default) | 5
	ClientID     string            `hcl:"client_id,optional"` // default iotgw-{device}
	Username     string            `hcl:"username,optional"`
	Password     string            `hcl:"password,optional"`
	CleanSession *bool             `hcl:"clean_session,optional"` // default true; false keeps a persistent session
	QoS          *int              `hcl:"qos,optional"`           // of the subscriptions; default 1
	Tags         map[string]string `hcl:"tags,optional"`
	// Devices, when set, are the only device ids a +device topic level may name: a publisher on the broker
	// cannot then invent devices, or speak for one of the gateway's other devices.
	Devices   []string               `hcl:"devices,optional"`
	TLSBlock  *config.ClientTLSBlock `hcl:"tls,block"`
	Subscribe []Subscription         `hcl:"subscribe,block"`

	// Writes: iot.control.devices.{id}.write publishes its value to CommandTopic with {key} replaced.
	CommandTopic  string `hcl:"command_topic,optional"`
	CommandQoS    *int   `hcl:"command_qos,optional"` // default 1
	CommandRetain bool   `hcl:"command_retain,optional"`
	// CommandFormat is how the value is published: "value" (default) as its text (21.5, true, running), or
	// "json" as {"key": value} (Zigbee2MQTT's …/set convention).
	CommandFormat string `hcl:"command_format,optional"`

	KeepAliveText      string `hcl:"keep_alive,optional"`      // default 30s
	ConnectTimeoutText string `hcl:"connect_timeout,optional"` // default 10s
	StaleAfterText     string `hcl:"stale_after,optional"`     // default off: a key not received for this long is stale
	MaxPayloadText     string `hcl:"max_payload,optional"`     // default 1MB
	// BatchWindow, when set, gathers the points of the messages of that window into one batch on the bus (one
	// bus message per window instead of per MQTT message: the cost is per message). Default 0: a batch per message.
	BatchWindowText string `hcl:"batch_window,optional"`

	// Resolved by Validate.
	TLS            *config.TLS
	Scheme         string // tcp or tls
	HostPort       string
	KeepAlive      time.Duration
	ConnectTimeout time.Duration
	StaleAfter     time.Duration
	MaxPayload     int64
	BatchWindow    time.Duration
	Clean          bool
	SubQoS         byte
	CmdQoS         byte
	allowed        map[string]bool
}

// Allows says whether a +device level may name id: any valid id without a devices list, else one of the list.
func (s *Settings) Allows(id string) bool { return len(s.Devices) == 0 || s.allowed[id] }

// Subscription is a `subscribe "plant/+device/+key" { … }` block: a topic filter whose wildcards may be named,
// and how its payloads map to points.
type Subscription struct {
	Topic      string               `hcl:"topic,label"`
	Format     string               `hcl:"format,optional"`
	Key        string               `hcl:"key,optional"`
	Type       string               `hcl:"type,optional"`
	ValueField string               `hcl:"value_field,optional"`
	TimeField  string               `hcl:"time_field,optional"`
	TimeFormat string               `hcl:"time_format,optional"`
	MaxDepth   int                  `hcl:"max_depth,optional"`
	MaxValues  int                  `hcl:"max_values,optional"`
	Fields     []payload.FieldBlock `hcl:"field,block"`

	// Resolved by Validate.
	Pattern Pattern
}

// Spec is the subscription's payload mapping.
func (s *Subscription) Spec() payload.Spec {
	return payload.Spec{Format: s.Format, Key: s.Key, Type: s.Type, ValueField: s.ValueField, TimeField: s.TimeField,
		TimeFormat: s.TimeFormat, MaxDepth: s.MaxDepth, MaxValues: s.MaxValues, Fields: payload.FieldsOf(s.Fields)}
}

// NewSettings returns an mqtt device block's settings with their defaults, for the registration.
func NewSettings() config.DriverSettings {
	return &Settings{Protocol: Protocol311, KeepAliveText: "30s", ConnectTimeoutText: "10s", MaxPayloadText: "1MB"}
}

// maxString is the longest string MQTT encodes (a two-byte length).
const maxString = 65535

// maxPayloadLimit is the most max_payload may be: the broker sends a message whole, and the gateway holds it.
const maxPayloadLimit = 64 << 20

// Validate implements config.DriverSettings.
func (s *Settings) Validate(v *config.Validator) {
	s.validateBroker(v)
	if s.Protocol != Protocol311 && s.Protocol != Protocol5 {
		v.Errorf("protocol", "unknown protocol %q; known: %s, %s", s.Protocol, Protocol311, Protocol5)
	}
	if s.ClientID != "" && len(s.ClientID) > 23 && s.Protocol == Protocol311 {
		// MQTT 3.1.1 only promises ids of up to 23 characters (mosquitto takes longer ones).
		v.Errorf("client_id", "client_id %q is %d characters; MQTT 3.1.1 brokers need accept only 23", s.ClientID, len(s.ClientID))
	}
	for _, f := range []struct{ attr, value string }{{"client_id", s.ClientID}, {"username", s.Username}, {"password", s.Password}, {"command_topic", s.CommandTopic}} {
		if len(f.value) > maxString {
			v.Errorf(f.attr, "%s is %d bytes: MQTT strings are at most %d", f.attr, len(f.value), maxString)
		}
	}
	s.Clean = s.CleanSession == nil || *s.CleanSession
	if !s.Clean && s.ClientID == "" {
		v.Errorf("clean_session", "a persistent session (clean_session = false) needs a client_id the broker keeps it under")
	}
	s.SubQoS = qos(v, "qos", s.QoS)
	s.CmdQoS = qos(v, "command_qos", s.CommandQoS)
	if (s.Username == "") != (s.Password == "") && s.Password != "" {
		v.Errorf("password", "password without username")
	}
	s.KeepAlive = atLeast(v, "keep_alive", s.KeepAliveText, time.Second)
	if s.KeepAlive > 65535*time.Second {
		v.Errorf("keep_alive", "keep_alive is at most 65535s (18h12m15s) in MQTT")
	}
	s.ConnectTimeout = atLeast(v, "connect_timeout", s.ConnectTimeoutText, time.Millisecond)
	if v.Has("stale_after") {
		s.StaleAfter = atLeast(v, "stale_after", s.StaleAfterText, 10*time.Millisecond)
	}
	if v.Has("batch_window") {
		if s.BatchWindow, _ = v.Duration("batch_window", s.BatchWindowText); s.BatchWindow > 10*time.Second {
			v.Errorf("batch_window", "batch_window %q: at most 10s (points wait that long before they are published)", s.BatchWindowText)
		}
	}
	if n, err := config.ParseSize(s.MaxPayloadText); err != nil {
		v.Errorf("max_payload", "%v", err)
	} else if n < 1 || n > maxPayloadLimit {
		v.Errorf("max_payload", "max_payload is %d bytes: between 1 byte and %d MB", n, maxPayloadLimit>>20)
	} else {
		s.MaxPayload = n
	}
	if s.TLSBlock != nil {
		s.TLS = config.DecodeClientTLS(v.Block("tls", ""), s.TLSBlock)
		if s.Scheme == "tcp" {
			v.Errorf("broker", "a tls block with a plain tcp:// broker: write ssl://, tls:// or mqtts://")
		}
	} else if s.Scheme == "tls" {
		s.TLS = &config.TLS{} // the system's roots
	}
	s.allowed = map[string]bool{}
	for i, id := range s.Devices {
		if err := config.ValidToken(id); err != nil {
			v.ErrorfIndex("devices", i, "device id: %v", err)
		}
		s.allowed[id] = true
	}
	if len(s.Subscribe) == 0 {
		v.Errorf("", `An mqtt device needs at least one subscribe block, like subscribe "plant/+device/+key" { }.`)
	}
	blocks := v.Blocks("subscribe")
	seen := map[string]bool{}
	for i := range s.Subscribe {
		sub := &s.Subscribe[i]
		sv := v
		if i < len(blocks) {
			sv = blocks[i]
		}
		p, err := ParsePattern(sub.Topic)
		if err != nil {
			sv.Errorf("", "%v", err)
			continue
		}
		sub.Pattern = p
		if seen[p.Filter] {
			sv.Errorf("", "topic filter %q is subscribed twice", p.Filter)
		}
		seen[p.Filter] = true
		if err := payload.Check(sub.Spec()); err != nil {
			sv.Errorf("", "payload mapping: %v", err)
		}
		if sub.Format == payload.FormatValue && sub.Key == "" && !p.HasKey() {
			sv.Errorf("format", `a plain value needs a key: name a topic level +key, or write key = "…"`)
		}
	}
	if s.CommandFormat == "" {
		s.CommandFormat = "value"
	}
	if s.CommandFormat != "value" && s.CommandFormat != "json" {
		v.Errorf("command_format", "unknown command_format %q; known: value, json", s.CommandFormat)
	}
	if s.CommandTopic != "" {
		if strings.ContainsAny(s.CommandTopic, "+#") || s.CommandTopic == "" {
			v.Errorf("command_topic", "command_topic %q is a topic to publish to: no wildcards", s.CommandTopic)
		}
		if !strings.Contains(s.CommandTopic, "{key}") && s.CommandFormat == "value" {
			// a bare value does not say what it sets: the topic must (with json, the payload's name does)
			v.Errorf("command_topic", `command_topic %q needs {key}, replaced by the key written, like "plant/line1/set/{key}" (or command_format = "json")`, s.CommandTopic)
		}
	}
}

func (s *Settings) validateBroker(v *config.Validator) {
	u, err := url.Parse(s.Broker)
	if err != nil || u.Host == "" {
		v.Errorf("broker", "broker %q is not a URL like tcp://127.0.0.1:1883 or ssl://broker:8883", s.Broker)
		return
	}
	port := "1883"
	switch u.Scheme {
	case "tcp", "mqtt":
		s.Scheme = "tcp"
	case "ssl", "tls", "mqtts":
		s.Scheme, port = "tls", "8883"
	default:
		v.Errorf("broker", "broker scheme %q; known: tcp, mqtt, ssl, tls, mqtts", u.Scheme)
		return
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		v.Errorf("broker", "broker %q: write scheme://host:port only (credentials go in username and password)", s.Broker)
	}
	host := u.Hostname()
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			v.Errorf("broker", "broker port %q is not a port", p)
		}
		port = p
	}
	s.HostPort = net.JoinHostPort(host, port)
}

func qos(v *config.Validator, attr string, q *int) byte {
	if q == nil {
		return 1
	}
	if *q < 0 || *q > 2 {
		v.Errorf(attr, "%s is %d: 0, 1 or 2", attr, *q)
		return 1
	}
	return byte(*q)
}

func atLeast(v *config.Validator, attr, text string, min time.Duration) time.Duration {
	d, ok := v.Duration(attr, text)
	if ok && d < min {
		v.Errorf(attr, "%q is too short: at least %v", text, min)
	}
	return d
}

// Pattern is a subscription's topic with named wildcards: plant/+device/+key subscribes to plant/+/+ and takes
// the device from the second level and the key from the third. Other names become tags (+line: tag line);
// a bare + matches without a name, and # (last) matches the rest.
type Pattern struct {
	Filter string
	levels []level
}

type level struct {
	literal string // the level's text, for a literal level
	name    string // a named wildcard's name ("" for a bare +)
	wild    bool   // + (named or not)
	rest    bool   // #
}

// Names of the wildcards with a meaning of their own; any other name is a tag.
const (
	NameDevice = "device"
	NameKey    = "key"
)

// ParsePattern reads a topic with named wildcards.
func ParsePattern(topic string) (Pattern, error) {
	if topic == "" {
		return Pattern{}, fmt.Errorf("empty topic")
	}
	if len(topic) > 1024 {
		return Pattern{}, fmt.Errorf("topic of %d bytes: at most 1024", len(topic))
	}
	parts := strings.Split(topic, "/")
	p := Pattern{}
	filter := make([]string, len(parts))
	names := map[string]bool{}
	for i, part := range parts {
		switch {
		case part == "#":
			if i != len(parts)-1 {
				return Pattern{}, fmt.Errorf("topic %q: # must be the last level", topic)
			}
			p.levels = append(p.levels, level{rest: true})
		case strings.HasPrefix(part, "+"):
			name := part[1:]
			if name != "" {
				if err := config.ValidToken(name); err != nil {
					return Pattern{}, fmt.Errorf("topic %q: wildcard name %q: %v", topic, name, err)
				}
				if names[name] {
					return Pattern{}, fmt.Errorf("topic %q: +%s is named twice", topic, name)
				}
				names[name] = true
			}
			p.levels = append(p.levels, level{wild: true, name: name})
			part = "+"
		case strings.ContainsAny(part, "+#"):
			return Pattern{}, fmt.Errorf("topic %q: a wildcard must be a whole level (%q)", topic, part)
		default:
			for _, r := range part {
				if r == 0 || r < 0x20 {
					return Pattern{}, fmt.Errorf("topic %q holds a control character", topic)
				}
			}
			p.levels = append(p.levels, level{literal: part})
		}
		filter[i] = part
	}
	p.Filter = strings.Join(filter, "/")
	return p, nil
}

// HasKey says whether the pattern names a +key level.
func (p Pattern) HasKey() bool {
	for _, l := range p.levels {
		if l.name == NameKey {
			return true
		}
	}
	return false
}

// Match reads a topic against the pattern: the device and key levels ("" when the pattern names none) and the
// other named levels as tags (appended to tags). ok is false when the topic does not match.
func (p Pattern) Match(topic string, tags [][2]string) (device, key string, out [][2]string, ok bool) {
	out = tags
	rest, more := topic, true
	for _, l := range p.levels {
		if l.rest { // # matches the remaining levels, none included ("a/#" matches "a")
			return device, key, out, true
		}
		if !more {
			return "", "", tags, false // the topic has fewer levels
		}
		var part string
		part, rest, more = strings.Cut(rest, "/")
		switch {
		case !l.wild:
			if part != l.literal {
				return "", "", tags, false
			}
		case l.name == NameDevice:
			device = part
		case l.name == NameKey:
			key = part
		case l.name != "":
			out = append(out, [2]string{l.name, part})
		}
	}
	if more {
		return "", "", tags, false // the topic has more levels
	}
	return device, key, out, true
}
