package mqtt

import (
	"strings"
	"testing"

	"github.com/iotgw/iotgw/config"
)

func parse(t *testing.T, body string) (*Settings, string) {
	t.Helper()
	src := "device \"m1\" {\n  driver = \"mqtt\"\n" + body + "\n}\n"
	cfg, diags := config.Parse([]byte(src), "gw.hcl")
	if diags.HasErrors() {
		return nil, diags.Error()
	}
	return cfg.Devices[0].Settings.(*Settings), ""
}

func TestConfigDefaults(t *testing.T) {
	s, errs := parse(t, `  broker = "tcp://127.0.0.1"
  subscribe "a/+key" { }`)
	if errs != "" {
		t.Fatal(errs)
	}
	if s.HostPort != "127.0.0.1:1883" || s.Protocol != Protocol311 || !s.Clean || s.SubQoS != 1 || s.MaxPayload != 1<<20 ||
		s.KeepAlive.Seconds() != 30 || s.StaleAfter != 0 || s.TLS != nil {
		t.Errorf("defaults: %+v", s)
	}
	s, errs = parse(t, `  broker = "mqtts://broker.example"
  subscribe "a/+key" { }`)
	if errs != "" {
		t.Fatal(errs)
	}
	if s.HostPort != "broker.example:8883" || s.TLS == nil {
		t.Errorf("mqtts: %s, tls %v; want port 8883 and the system's roots", s.HostPort, s.TLS)
	}
}

// TestConfigErrors: each mistake is reported at its file:line:column with what is wrong.
func TestConfigErrors(t *testing.T) {
	sub := "\n  subscribe \"a/+key\" { }"
	tests := []struct{ name, body, want string }{
		{"no broker", `  subscribe "a/+key" { }`, `The argument "broker" is required`},
		{"bad scheme", `  broker = "http://x:1"` + sub, `gw.hcl:3,12-24: Invalid value for "broker"; broker scheme "http"`},
		{"not a url", `  broker = "::"` + sub, "is not a URL"},
		{"credentials in url", `  broker = "tcp://u:p@x:1"` + sub, "credentials go in username and password"},
		{"bad port", `  broker = "tcp://x:99999"` + sub, "is not a port"},
		{"protocol", `  broker = "tcp://x:1"
  protocol = "3.1"` + sub, `unknown protocol "3.1"`},
		{"qos", `  broker = "tcp://x:1"
  qos = 3` + sub, "qos is 3: 0, 1 or 2"},
		{"persistent without id", `  broker = "tcp://x:1"
  clean_session = false` + sub, "needs a client_id"},
		{"keep alive", `  broker = "tcp://x:1"
  keep_alive = "10ms"` + sub, "too short"},
		{"max payload", `  broker = "tcp://x:1"
  max_payload = "1GB"` + sub, "between 1 byte and 64 MB"},
		{"no subscribe", `  broker = "tcp://x:1"`, "at least one subscribe block"},
		{"wildcard inside a level", `  broker = "tcp://x:1"
  subscribe "a/b+c" { }`, "gw.hcl:4,3-20: Invalid subscribe \"a/b+c\"; topic \"a/b+c\": a wildcard must be a whole level"},
		{"hash not last", `  broker = "tcp://x:1"
  subscribe "a/#/b" { }`, "# must be the last level"},
		{"bad level name", `  broker = "tcp://x:1"
  subscribe "a/+dev.ice" { }`, "wildcard name"},
		{"twice", `  broker = "tcp://x:1"
  subscribe "a/+key" { }
  subscribe "a/+" { }`, "subscribed twice"},
		{"mapping", `  broker = "tcp://x:1"
  subscribe "a/+key" {
    format = "xml"
  }`, `payload mapping: unknown format "xml"`},
		{"plain without key", `  broker = "tcp://x:1"
  subscribe "a/b" {
    format = "value"
  }`, "a plain value needs a key"},
		{"field type", `  broker = "tcp://x:1"
  subscribe "a/b" {
    field "t" { type = "int8" }
  }`, `unknown type "int8"`},
		{"command topic wildcard", `  broker = "tcp://x:1"
  command_topic = "a/+/{key}"` + sub, "no wildcards"},
		{"command format", `  broker = "tcp://x:1"
  command_format = "xml"` + sub, `unknown command_format "xml"`},
		{"command topic without key", `  broker = "tcp://x:1"
  command_topic = "a/set"` + sub, "needs {key}"},
		{"devices", `  broker = "tcp://x:1"
  devices = ["ok", "not.ok"]` + sub, "gw.hcl:4,20-28: Invalid value for \"devices\"; device id: invalid subject token"},
		{"long topic", `  broker = "tcp://x:1"
  subscribe "` + strings.Repeat("a", 2000) + `" { }`, "topic of 2000 bytes: at most 1024"},
		{"long password", `  broker = "tcp://x:1"
  username = "u"
  password = "` + strings.Repeat("p", 70000) + `"` + sub, "password is 70000 bytes: MQTT strings are at most 65535"},
		{"control character in a topic", `  broker = "tcp://x:1"
  subscribe "a/\u0001" { }`, "holds a control character"},
		{"unknown attribute", `  broker = "tcp://x:1"
  brokers = "tcp://y:1"` + sub, `An argument named "brokers" is not expected here`},
		{"batch window", `  broker = "tcp://x:1"
  batch_window = "1m"` + sub, "at most 10s"},
		{"tls with tcp", `  broker = "tcp://x:1"
  tls { }` + sub, "a tls block with a plain tcp:// broker"},
		{"tls ca missing", `  broker = "ssl://x:1"
  tls { ca = "/nonexistent/ca.pem" }` + sub, "cannot read"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := parse(t, tc.body)
			if !strings.Contains(errs, tc.want) {
				t.Errorf("got %q, want it to contain %q", errs, tc.want)
			}
		})
	}
}

// TestConfigTruncated: a block cut off in the middle is an error at its position, not a half-read device.
func TestConfigTruncated(t *testing.T) {
	for _, src := range []string{
		"device \"m1\" {\n  driver = \"mqtt\"\n  broker = \"tcp://x:1",
		"device \"m1\" {\n  driver = \"mqtt\"\n  broker = \"tcp://x:1\"\n  subscribe \"a/+key\" {\n",
	} {
		_, diags := config.Parse([]byte(src), "gw.hcl")
		if !diags.HasErrors() || !strings.Contains(diags.Error(), "gw.hcl:") {
			t.Errorf("%q: %v, want an error with its position", src, diags)
		}
	}
}

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern, topic string
		device, key    string
		tags           string
		ok             bool
	}{
		{"plant/+device/+key", "plant/p1/temp", "p1", "temp", "", true},
		{"plant/+device/+key", "plant/p1", "", "", "", false},
		{"plant/+device/+key", "plant/p1/temp/x", "", "", "", false},
		{"plant/+device/+key", "other/p1/temp", "", "", "", false},
		{"site/+site/+/+key", "site/s1/any/k", "", "k", "site=s1", true},
		{"a/#", "a", "", "", "", true},
		{"a/#", "a/b/c", "", "", "", true},
		{"a/+key/#", "a/k/x/y", "", "k", "", true},
		{"#", "x/y", "", "", "", true},
		{"a/b", "a/b", "", "", "", true},
		{"a/+key", "a/", "", "", "", true}, // an empty level: the driver then refuses the empty key
	}
	for _, tc := range tests {
		t.Run(tc.pattern+" "+tc.topic, func(t *testing.T) {
			p, err := ParsePattern(tc.pattern)
			if err != nil {
				t.Fatal(err)
			}
			dev, key, tags, ok := p.Match(tc.topic, nil)
			var ts []string
			for _, tg := range tags {
				ts = append(ts, tg[0]+"="+tg[1])
			}
			if ok != tc.ok || dev != tc.device || key != tc.key || strings.Join(ts, ",") != tc.tags {
				t.Errorf("got %q %q %v %v, want %q %q %q %v", dev, key, ts, ok, tc.device, tc.key, tc.tags, tc.ok)
			}
		})
	}
	if p, _ := ParsePattern("plant/+device/+key"); p.Filter != "plant/+/+" {
		t.Errorf("filter %q, want plant/+/+", p.Filter)
	}
}

// FuzzPattern: parsing never panics, a parsed pattern's filter has the same levels, and matching any topic
// never panics and never returns a device or key that is not a level of the topic.
func FuzzPattern(f *testing.F) {
	f.Add("plant/+device/+key", "plant/p1/temp")
	f.Add("a/#", "a/b/c")
	f.Add("+/+x/#", "/x/")
	f.Fuzz(func(t *testing.T, pattern, topic string) {
		p, err := ParsePattern(pattern)
		if err != nil {
			return
		}
		if strings.Count(p.Filter, "/") != strings.Count(pattern, "/") {
			t.Fatalf("pattern %q: filter %q has other levels", pattern, p.Filter)
		}
		dev, key, _, ok := p.Match(topic, nil)
		if !ok {
			return
		}
		levels := strings.Split(topic, "/")
		in := func(s string) bool {
			for _, l := range levels {
				if l == s {
					return true
				}
			}
			return s == ""
		}
		if !in(dev) || !in(key) {
			t.Fatalf("pattern %q topic %q: device %q key %q are not levels of the topic", pattern, topic, dev, key)
		}
	})
}
