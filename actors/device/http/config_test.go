package http

import (
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/config"
)

func parse(t *testing.T, body string) (*Settings, string) {
	t.Helper()
	src := "device \"h1\" {\n  driver = \"http\"\n" + body + "\n}\n"
	cfg, diags := config.Parse([]byte(src), "gw.hcl")
	if diags.HasErrors() {
		return nil, diags.Error()
	}
	return cfg.Devices[0].Settings.(*Settings), ""
}

func TestConfigDefaults(t *testing.T) {
	s, errs := parse(t, `  url = "http://10.0.0.5/status.json"`)
	if errs != "" {
		t.Fatal(errs)
	}
	if s.Mode != ModePoll || s.Method != "GET" || s.Interval != 10*time.Second || s.Timeout != 5*time.Second || s.MaxBody != 1<<20 || s.AcceptsPush() {
		t.Errorf("defaults: %+v", s)
	}
	s, errs = parse(t, `  mode = "push"`)
	if errs != "" {
		t.Fatal(errs)
	}
	if !s.AcceptsPush() || s.PushLimit() != 1<<20 {
		t.Errorf("push: %+v", s)
	}
}

// TestConfigErrors: each mistake at its file:line:column with what is wrong.
func TestConfigErrors(t *testing.T) {
	const u = "  url = \"http://x/\"\n"
	tests := []struct{ name, body, want string }{
		{"no url", ``, "A polled http device needs url"},
		{"bad url", `  url = "ftp://x/"`, `gw.hcl:3,9-19: Invalid value for "url"; url "ftp://x/" is not an http:// or https:// URL`},
		{"credentials in url", `  url = "http://u:p@x/"`, "credentials go in username and password"},
		{"mode", `  mode = "pull"`, `unknown mode "pull"`},
		{"method", u + `  method = "PUT"`, `method "PUT"`},
		{"body with GET", u + `  body = "{}"`, "a body is sent with"},
		{"header", u + `  headers = { "X Bad" = "1" }`, "not a valid header"},
		{"header injection", u + `  headers = { "X-A" = "1\r\nX-B: 2" }`, "not a valid header"},
		{"two auths", u + `  username = "a"
  bearer_token = "b"`, "not both"},
		{"password alone", u + `  password = "p"`, "password without username"},
		{"interval", u + `  interval = "100us"`, "too short"},
		{"max body", u + `  max_body = "1TB"`, "between 1 byte and 64 MB"},
		{"tls with http", u + `  tls { }`, "write https://"},
		{"mapping", u + `  format = "csv"`, `payload mapping: unknown format "csv"`},
		{"plain without key", u + `  format = "value"`, "a plain value needs key"},
		{"long url", `  url = "http://x/` + strings.Repeat("a", 9000) + `"`, "url of 9009 bytes: at most 8192"},
		{"long body", u + `  method = "POST"
  body = "` + strings.Repeat("b", 70000) + `"`, "a body of 70000 bytes"},
		{"push with url", `  mode = "push"
  url = "http://x/"`, `url is for mode = "poll"`},
		{"push with fields", `  mode = "push"
  field "a" { }`, "field blocks are for"},
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
