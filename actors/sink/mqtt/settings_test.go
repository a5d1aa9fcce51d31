package mqtt

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
)

func parseSink(t *testing.T, body string) (*Settings, string) {
	t.Helper()
	src := "sink \"up\" {\n  type = \"mqtt\"\n" + body + "\n}\n"
	cfg, diags := config.Parse([]byte(src), "gw.hcl")
	if diags.HasErrors() {
		var sb strings.Builder
		for _, d := range diags {
			fmt.Fprintf(&sb, "%s: %s; %s\n", d.Subject, d.Summary, d.Detail)
		}
		return nil, sb.String()
	}
	return cfg.Sinks[0].Settings.(*Settings), ""
}

func TestSettingsDefaults(t *testing.T) {
	s, errs := parseSink(t, `  broker = "tcp://127.0.0.1"`)
	if errs != "" {
		t.Fatalf("defaults refused: %s", errs)
	}
	if s.address != "127.0.0.1:1883" || s.Protocol != Protocol311 || s.QoS != 1 || s.Payload != PayloadJSON ||
		s.Topic != "plant/{device}/{key}" || s.KeepAlive != 30*time.Second || s.Timeout != 10*time.Second ||
		s.tlsConfig != nil || s.clientID("gw", "up") != "iotgw-gw-up" {
		t.Fatalf("got %+v, want the documented defaults", s)
	}
	if s.MaxInflight != 1024 {
		t.Fatalf("max_inflight %d, want 1024", s.MaxInflight)
	}
	// QoS 2 on 3.1.1 cannot learn the broker's limit: the default window keeps within mosquitto's 20; an explicit
	// one is kept, and MQTT 5 at QoS 2 keeps 1024 (the broker's Receive Maximum bounds it).
	for body, want := range map[string]int{
		"  broker = \"tcp://h\"\n  qos = 2":                       18,
		"  broker = \"tcp://h\"\n  qos = 2\n  max_inflight = 100": 100,
		"  broker = \"tcp://h\"\n  qos = 2\n  protocol = \"5\"":   1024,
	} {
		if s, errs := parseSink(t, body); errs != "" || s.MaxInflight != want {
			t.Errorf("%q: max_inflight %d (%s), want %d", body, s.MaxInflight, errs, want)
		}
	}
	s, errs = parseSink(t, `  broker = "mqtts://[::1]"`+"\n  protocol = \"5\"\n  tls { server_name = \"broker.local\" }")
	if errs != "" || s.address != "[::1]:8883" || s.tlsConfig == nil || s.tlsConfig.ServerName != "broker.local" {
		t.Fatalf("mqtts: %+v %s", s, errs)
	}
}

// Every bad value is reported at its attribute (file:line:column), with what was wrong.
func TestSettingsRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"no broker", ``, `gw.hcl:1,11-11: Missing required argument; The argument "broker" is required`},
		{"scheme", `broker = "ws://h"`, `gw.hcl:3,10-18: Invalid value for "broker"; broker "ws://h": scheme "ws"`},
		{"credentials in url", `broker = "tcp://u:p@h"`, "credentials go in username"},
		{"path", `broker = "tcp://h/x"`, "scheme://host[:port]"},
		{"protocol", "broker = \"tcp://h\"\nprotocol = \"3.1\"", `gw.hcl:4,12-17: Invalid value for "protocol"; unknown MQTT protocol "3.1"`},
		{"qos", "broker = \"tcp://h\"\nqos = 3", `gw.hcl:4,7-8: Invalid value for "qos"; qos is 3`},
		{"payload", "broker = \"tcp://h\"\npayload = \"xml\"", `unknown payload "xml"`},
		{"batch with key", "broker = \"tcp://h\"\npayload = \"batch\"", `payload "batch" needs a topic without it`},
		{"wildcard topic", "broker = \"tcp://h\"\ntopic = \"plant/+/{key}\"", "wildcards"},
		{"sys topic", "broker = \"tcp://h\"\ntopic = \"$SYS/{device}\"", "broker's own"},
		{"unknown field", "broker = \"tcp://h\"\ntopic = \"plant/{devise}\"", "unknown field {devise}"},
		{"unclosed", "broker = \"tcp://h\"\ntopic = \"plant/{device\"", "no closing }"},
		{"empty topic", "broker = \"tcp://h\"\ntopic = \"\"", "topic is empty"},
		{"leading slash", "broker = \"tcp://h\"\ntopic = \"/{device}\"", "empty first level"},
		{"long topic", "broker = \"tcp://h\"\ntopic = \"" + strings.Repeat("a", 70000) + "\"", "at most 65535"},
		{"password alone", "broker = \"tcp://h\"\npassword = \"p\"", "only with a username"},
		{"nul client id", "broker = \"tcp://h\"\nclient_id = \"a\\u0000b\"", "without NUL"},
		{"keep alive", "broker = \"tcp://h\"\nkeep_alive = \"10ms\"", "keep_alive \"10ms\" is out of range"},
		{"timeout", "broker = \"tcp://h\"\ntimeout = \"soon\"", "timeout"},
		{"window", "broker = \"tcp://h\"\nmax_ack_pending = 70000", "max_ack_pending is 70000"},
		{"inflight window", "broker = \"tcp://h\"\nmax_inflight = -1", "max_inflight is -1"},
		{"subject", "broker = \"tcp://h\"\nsubjects = [\"iot..x\"]", `gw.hcl:4,13-21: Invalid value for "subjects"`},
		{"no subjects", "broker = \"tcp://h\"\nsubjects = []", "at least one subject"},
		{"missing ca", "broker = \"ssl://h\"\ntls { ca = \"/nonexistent/ca.pem\" }", "/nonexistent/ca.pem"},
		{"cert without key", "broker = \"ssl://h\"\ntls { cert = \"/x.pem\" }", "cert and key go together"},
		{"unknown attribute", "broker = \"tcp://h\"\nqos2 = 1", `Unsupported argument`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := parseSink(t, tc.body)
			if !strings.Contains(errs, tc.want) {
				t.Fatalf("errors:\n%s\nwant one containing %q", errs, tc.want)
			}
		})
	}
}

func TestTopicRefusesHostileValues(t *testing.T) {
	tmpl, err := parseTopic("plant/{device}/{key}")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ device, key, want string }{
		{"d1", "temp", ""},
		{"d1", "température", ""},
		{"d1", "a/b", "level separator"},
		{"d1", "+", "wildcard"},
		{"d1", "x#", "wildcard"},
		{"d1", "", "empty"},
		{"d1", "a\x00b", "control character"},
		{"d1", "a\nb", "control character"},
		{"d1", "a\u0085b", "control character"},
		{"d1", "\xff", "not UTF-8"},
		{"d1", strings.Repeat("k", 65530), "at most 65535"},
	} {
		got, err := tmpl.append(nil, &topicValues{device: tc.device, key: tc.key})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q/%q refused: %v", tc.device, tc.key, err)
		case tc.want == "" && string(got) != "plant/"+tc.device+"/"+tc.key:
			t.Errorf("%q/%q: topic %q", tc.device, tc.key, got)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrTopicValue)):
			t.Errorf("%q/%q: got %q, %v; want an ErrTopicValue saying %q", tc.device, tc.key, got, err, tc.want)
		}
	}
	first, _ := parseTopic("{device}/{key}")
	if _, err := first.append(nil, &topicValues{device: "$SYS", key: "k"}); err == nil {
		t.Error("a device $SYS at the start of the topic was accepted")
	}
}

func TestEncoderShapes(t *testing.T) {
	pts := []isp.Point{
		{DeviceID: "d1", Key: "t", Value: isp.Float(25.5), Quality: 1, Timestamp: 7},
		{Key: "s", Value: isp.String("on"), Quality: 1, Timestamp: 7},
		{DeviceID: "d2", Key: "b", Value: isp.Bool(true), Quality: 0, Timestamp: 8},
	}
	for _, tc := range []struct{ topic, payload, want string }{
		{"p/{device}/{key}", PayloadValue, "p/d1/t 25.5|p/dsub/s on|p/d2/b true"},
		{"p/{device}/{key}", PayloadJSON, `p/d1/t {"device_id":"d1","key":"t","value":25.5,"quality":1,"timestamp":7}|` +
			`p/dsub/s {"key":"s","value":"on","quality":1,"timestamp":7}|p/d2/b {"device_id":"d2","key":"b","value":true,"quality":0,"timestamp":8}`},
		{"{gateway}/{device}", PayloadBatch, `gw/d1 {"points":[{"device_id":"d1","key":"t","value":25.5,"quality":1,"timestamp":7}]}|` +
			`gw/dsub {"points":[{"key":"s","value":"on","quality":1,"timestamp":7}]}|` +
			`gw/d2 {"points":[{"device_id":"d2","key":"b","value":true,"quality":0,"timestamp":8}]}`},
		{"{sink}/{device}", PayloadValue, "up/d1 25.5|up/dsub on|up/d2 true"},
	} {
		tmpl, err := parseTopic(tc.topic)
		if err != nil {
			t.Fatal(err)
		}
		e := encoder{tmpl: tmpl, payload: tc.payload, vals: topicValues{gateway: "gw", sink: "up"}}
		msgs, err := e.encode(pts, "dsub")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range msgs {
			got = append(got, m.topic+" "+string(m.payload))
		}
		if strings.Join(got, "|") != tc.want {
			t.Errorf("%s %s:\n got %s\nwant %s", tc.topic, tc.payload, strings.Join(got, "|"), tc.want)
		}
	}
}

// FuzzEncode: any template and any bytes off the bus either make messages whose topics MQTT accepts as they are
// (no wildcard, no NUL, UTF-8, at most 65535 bytes, the template's levels only) or an error; never a panic.
func FuzzEncode(f *testing.F) {
	f.Add("plant/{device}/{key}", `{"points":[{"device_id":"d","key":"k","value":1}]}`, "value")
	f.Add("plant/{device}", `{"points":[{"key":"a/b","value":1},{"key":"c","value":"x"}]}`, "batch")
	f.Add("{device}/{key}", `{"points":[{"device_id":"$SYS","key":"#","value":null}]}`, "json")
	f.Add("a/{key}{key}", `{"points":[{"key":"\u0000","value":true}]}`, "json")
	f.Fuzz(func(t *testing.T, topic, body, payload string) {
		if len(body) > 4096 || len(topic) > 512 {
			return // the limits are tested above; large inputs only slow the 50,000 runs down
		}
		tmpl, err := parseTopic(topic)
		if err != nil {
			return
		}
		if payload != PayloadBatch && payload != PayloadValue {
			payload = PayloadJSON
		}
		var dec isp.Decoder
		pts, err := dec.DecodeBatch([]byte(body), nil)
		if err != nil {
			return
		}
		e := encoder{tmpl: tmpl, payload: payload, vals: topicValues{gateway: "gw", sink: "up"}}
		msgs, err := e.encode(pts, "dev")
		if err != nil {
			return
		}
		levels := strings.Count(topic, "/")
		for _, m := range msgs {
			if strings.ContainsAny(m.topic, "+#\x00") || len(m.topic) > maxString || strings.Count(m.topic, "/") != levels {
				t.Fatalf("template %q made topic %q", topic, m.topic)
			}
		}
	})
}
