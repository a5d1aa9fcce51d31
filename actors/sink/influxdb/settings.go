package influxdb

import (
	"net/url"
	"strings"

	"github.com/iotgw/iotgw/actors/sink/batch"
	"github.com/iotgw/iotgw/config"
)

// The schema of a `sink "name" { type = "influxdb" … }` block lives here, beside the actor, as the file sink's
// does (config.RegisterSink takes any settings with a Validate method).

// Settings is sink type "influxdb".
type Settings struct {
	// Subjects to consume, durably; default ["iot.processed.batch.>"] (every point once).
	Subjects []string `hcl:"subjects,optional"`
	// The server's base URL, http:// or https:// (required), e.g. "http://127.0.0.1:8086".
	URL string `hcl:"url"`
	// InfluxDB 1.x: database (required for 1.x), retention_policy (optional), username and password (optional,
	// sent as HTTP basic authentication).
	Database        string `hcl:"database,optional"`
	RetentionPolicy string `hcl:"retention_policy,optional"`
	Username        string `hcl:"username,optional"`
	Password        string `hcl:"password,optional"`
	// InfluxDB 2.x: org, bucket and token (all required for 2.x; a bucket makes the sink use /api/v2/write).
	Org    string `hcl:"org,optional"`
	Bucket string `hcl:"bucket,optional"`
	Token  string `hcl:"token,optional"`
	// Measurement and field of each point: templates of {device} and {key} and literal text; default the device
	// is the measurement and the key the field.
	Measurement string `hcl:"measurement,optional"`
	Field       string `hcl:"field,optional"`
	// Tags added to each line with the device id and the key as value; "" for none (default). The point's own
	// tags are always written; one of them with the same name wins.
	DeviceTag string `hcl:"device_tag,optional"`
	KeyTag    string `hcl:"key_tag,optional"`
	// Gzip the request bodies (default true).
	Gzip bool `hcl:"gzip,optional"`

	// Batching and retries (actors/sink/batch).
	BatchSize     int    `hcl:"batch_size,optional"`      // lines per request, default 5000
	FlushInterval string `hcl:"flush_interval,optional"`  // default "1s"
	MaxAckPending int    `hcl:"max_ack_pending,optional"` // default 4096
	Retry         string `hcl:"retry,optional"`           // default "1s"
	MaxRetry      string `hcl:"max_retry,optional"`       // default "30s"
	Timeout       string `hcl:"timeout,optional"`         // one request, default "10s"

	opts        batch.Options
	v2          bool
	measurement template
	field       template
}

// NewSettings returns the settings of an influxdb sink block with their defaults.
func NewSettings() config.SinkSettings {
	return &Settings{
		Subjects:      []string{"iot.processed.batch.>"},
		Measurement:   "{device}",
		Field:         "{key}",
		Gzip:          true,
		BatchSize:     5000,
		FlushInterval: "1s",
		MaxAckPending: 4096,
		Retry:         "1s",
		MaxRetry:      "30s",
		Timeout:       "10s",
	}
}

// Validate implements config.SinkSettings.
func (s *Settings) Validate(v *config.Validator) {
	s.opts = batch.Parse(v, batch.Texts{Subjects: s.Subjects, BatchSize: s.BatchSize, FlushInterval: s.FlushInterval,
		MaxAckPending: s.MaxAckPending, Retry: s.Retry, MaxRetry: s.MaxRetry, Timeout: s.Timeout})
	if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.Errorf("url", `url %q is not an http:// or https:// URL of the server, like "http://127.0.0.1:8086"`, s.URL)
	} else if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		v.Errorf("url", "url %q: give the server's base URL only (credentials in username/password or token)", s.URL)
	}
	s.v2 = s.Bucket != "" || s.Org != "" || s.Token != ""
	if s.v2 {
		for _, a := range []struct{ attr, val string }{{"org", s.Org}, {"bucket", s.Bucket}, {"token", s.Token}} {
			if a.val == "" {
				v.Errorf(a.attr, "InfluxDB 2.x (org, bucket, token) needs %s too.", a.attr)
			}
		}
		for _, a := range []struct{ attr, val string }{{"database", s.Database}, {"retention_policy", s.RetentionPolicy},
			{"username", s.Username}, {"password", s.Password}} {
			if a.val != "" {
				v.Errorf(a.attr, "%s is for InfluxDB 1.x; with bucket, org and token (2.x) leave it out.", a.attr)
			}
		}
	} else if s.Database == "" {
		v.Errorf("database", "Name the database (InfluxDB 1.x), or give org, bucket and token (InfluxDB 2.x).")
	}
	if (s.Username == "") != (s.Password == "") {
		v.Errorf("password", "username and password go together.")
	}
	var err error
	if s.measurement, err = parseTemplate(s.Measurement); err != nil {
		v.Errorf("measurement", "%v", err)
	}
	if s.field, err = parseTemplate(s.Field); err != nil {
		v.Errorf("field", "%v", err)
	}
	for _, a := range []struct{ attr, val string }{{"device_tag", s.DeviceTag}, {"key_tag", s.KeyTag}} {
		if a.val != "" {
			if err := checkName(a.attr, a.val); err != nil {
				v.Errorf(a.attr, "%v", err)
			}
		}
	}
}

// template is a measurement or field name made of literal text and {device}, {key}.
type template []part

type part struct {
	lit string
	ref byte // 0: literal; 'd': the device id; 'k': the key
}

// errTemplate is a template's problem.
type errTemplate string

func (e errTemplate) Error() string { return string(e) }

func parseTemplate(s string) (template, error) {
	if s == "" {
		return nil, errTemplate("empty: write a name, or {device} or {key}")
	}
	var t template
	for s != "" {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			t = append(t, part{lit: s})
			break
		}
		if i > 0 {
			t = append(t, part{lit: s[:i]})
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return nil, errTemplate("a '{' without its '}': the placeholders are {device} and {key}")
		}
		switch s[i : i+j+1] {
		case "{device}":
			t = append(t, part{ref: 'd'})
		case "{key}":
			t = append(t, part{ref: 'k'})
		default:
			return nil, errTemplate("unknown placeholder " + s[i:i+j+1] + ": the placeholders are {device} and {key}")
		}
		s = s[i+j+1:]
	}
	return t, nil
}

// expand returns the name for one point; a template of one placeholder or one literal allocates nothing.
func (t template) expand(device, key string) string {
	if len(t) == 1 {
		switch t[0].ref {
		case 'd':
			return device
		case 'k':
			return key
		}
		return t[0].lit
	}
	var sb strings.Builder
	for _, p := range t {
		switch p.ref {
		case 'd':
			sb.WriteString(device)
		case 'k':
			sb.WriteString(key)
		default:
			sb.WriteString(p.lit)
		}
	}
	return sb.String()
}
