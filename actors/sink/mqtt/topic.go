package mqtt

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// topicTemplate is a topic made of literal text and the fields {device}, {key}, {gateway} and {sink}.
//
// A value put into a topic comes off the bus: a key is whatever a device or sidecar sent. MQTT gives '/' (a level
// separator) and '+' and '#' (wildcards, forbidden in a published topic) a meaning, a leading '$' marks the
// broker's own topics ($SYS), and NUL or invalid UTF-8 makes the broker close the connection (MQTT 3.1.1 §1.5.3,
// 5.0 §1.5.4). So a value with any of them is refused (the message goes to the dead letters) rather than
// escaped: an escaped key would silently name another topic than the operator expects, and a '/' in a key
// would let one point publish into another device's levels.
type topicTemplate struct {
	parts []topicPart
	text  string
}

type topicPart struct {
	lit   string
	field string // "" for a literal
}

var topicFields = []string{"device", "key", "gateway", "sink"}

// ErrTopicValue is the error of a value that cannot go into a topic.
var ErrTopicValue = errors.New("cannot go into an MQTT topic")

func parseTopic(s string) (*topicTemplate, error) {
	if s == "" {
		return nil, errors.New(`topic is empty: give a template like "plant/{device}/{key}"`)
	}
	if len(s) > maxString {
		return nil, fmt.Errorf("topic is %d bytes: MQTT allows at most %d", len(s), maxString)
	}
	if !utf8.ValidString(s) {
		return nil, errors.New("topic is not UTF-8")
	}
	t := &topicTemplate{text: s}
	rest := s
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			t.parts = append(t.parts, topicPart{lit: rest})
			break
		}
		if open > 0 {
			t.parts = append(t.parts, topicPart{lit: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("topic %q: %q has no closing }", s, rest[open:])
		}
		name := rest[open+1 : open+end]
		if !contains(topicFields, name) {
			return nil, fmt.Errorf("topic %q: unknown field {%s}; known: {device}, {key}, {gateway}, {sink}", s, name)
		}
		t.parts = append(t.parts, topicPart{field: name})
		rest = rest[open+end+1:]
	}
	for _, p := range t.parts {
		if p.field != "" {
			continue
		}
		if strings.ContainsAny(p.lit, "+#") {
			return nil, fmt.Errorf("topic %q: + and # are wildcards, which a published topic may not hold", s)
		}
		if strings.ContainsAny(p.lit, "}\x00") {
			return nil, fmt.Errorf("topic %q: a stray } or a NUL", s)
		}
	}
	if t.parts[0].field == "" && strings.HasPrefix(t.parts[0].lit, "$") {
		return nil, fmt.Errorf("topic %q: topics beginning with $ are the broker's own ($SYS)", s)
	}
	if t.parts[0].field == "" && strings.HasPrefix(t.parts[0].lit, "/") {
		return nil, fmt.Errorf("topic %q begins with /, an empty first level: drop the /", s)
	}
	return t, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// perPoint says whether the template names {key}: then every point is a message of its own.
func (t *topicTemplate) perPoint() bool {
	for _, p := range t.parts {
		if p.field == "key" {
			return true
		}
	}
	return false
}

// topicValues are what a topic is made of.
type topicValues struct {
	device, key, gateway, sink string
}

// append appends the topic for vals to dst; a value that would change the topic's levels or break the protocol
// is refused with ErrTopicValue.
func (t *topicTemplate) append(dst []byte, vals *topicValues) ([]byte, error) {
	start := len(dst)
	for i, p := range t.parts {
		if p.field == "" {
			dst = append(dst, p.lit...)
			continue
		}
		var v string
		switch p.field {
		case "device":
			v = vals.device
		case "key":
			v = vals.key
		case "gateway":
			v = vals.gateway
		case "sink":
			v = vals.sink
		}
		if err := checkTopicValue(p.field, v, i == 0); err != nil {
			return dst[:start], err
		}
		dst = append(dst, v...)
	}
	if len(dst)-start > maxString {
		return dst[:start], fmt.Errorf("topic of %d bytes: %w (at most %d)", len(dst)-start, ErrTopicValue, maxString)
	}
	return dst, nil
}

func checkTopicValue(field, v string, first bool) error {
	if v == "" {
		return fmt.Errorf("{%s} is empty: %w", field, ErrTopicValue)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("{%s} %q is not UTF-8: %w", field, v, ErrTopicValue)
	}
	for _, r := range v {
		switch {
		case r == '/' || r == '+' || r == '#':
			return fmt.Errorf("{%s} %q holds %q, which MQTT reads as a level separator or a wildcard: %w", field, v, r, ErrTopicValue)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0xfffe || r == 0xffff:
			return fmt.Errorf("{%s} %q holds the control character %U: %w", field, v, r, ErrTopicValue)
		}
	}
	if first && v[0] == '$' {
		return fmt.Errorf("{%s} %q would begin the topic with $, the broker's own topics: %w", field, v, ErrTopicValue)
	}
	return nil
}
