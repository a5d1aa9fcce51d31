package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotgw/iotgw/internal/testca"
)

// wantDiag fails unless diags has an error at pos whose "summary: detail" contains want.
func wantDiag(t *testing.T, got, pos, want string) {
	t.Helper()
	for _, line := range strings.Split(got, "\n") {
		if strings.HasPrefix(line, pos+": ") && strings.Contains(line, want) {
			return
		}
	}
	t.Errorf("got\n%s\nwant a line at %s containing %q", got, pos, want)
}

// TestDeceptiveNames: every name that becomes a subject token or terminal text is ASCII letters, digits, '-' and
// '_' only, wherever it is written.
func TestDeceptiveNames(t *testing.T) {
	names := []struct{ name, id, want string }{
		{"zero-width space", "watch\u200b", "invisible formatting character U+200B"},
		{"right-to-left override", "ab\u202ecd", "invisible formatting character U+202E"},
		{"slash", "boiler/evil", "'/', which separates the levels of the supervision tree"},
		{"cyrillic a", "\u0430larm", "non-ASCII character U+0430"},
		{"colon", "plc:1", `the character ':'`},
		{"too long", strings.Repeat("a", MaxTokenLen+1), "at most 64"},
	}
	places := []struct{ name, src, pos string }{
		{"device id", "device %q {\n  driver = \"mock\"\n  point \"p\" { signal = \"sine\" }\n}\n", "t.hcl:1:8"},
		{"point key", "device \"d\" {\n  driver = \"mock\"\n  point %q { signal = \"sine\" }\n}\n", "t.hcl:3:3"},
		{"sink name", "sink %q {\n  type = \"console\"\n}\n", "t.hcl:1:6"},
		{"sidecar name", "sidecar %q {\n  address = \"127.0.0.1:1\"\n}\n", "t.hcl:1:9"},
		{"simulator name", "simulator %q {\n}\n", "t.hcl:1:11"},
		{"user name", "nats {\n  authorization {\n    user %q { password = \"long-enough\" }\n  }\n}\n", "t.hcl:3:5"},
		{"gateway id", "gateway {\n  id = %q\n}\n", "t.hcl:2:8"},
	}
	for _, p := range places {
		for _, n := range names {
			t.Run(p.name+"/"+n.name, func(t *testing.T) {
				_, diags := Parse([]byte(fmt.Sprintf(p.src, n.id)), "t.hcl")
				wantDiag(t, (&Error{Diags: diags}).Error(), p.pos, n.want)
			})
		}
	}
	for _, ok := range []string{"plc-1", "Boiler_2", "a", strings.Repeat("z", MaxTokenLen)} {
		if err := ValidToken(ok); err != nil {
			t.Errorf("ValidToken(%q): %v, want nil", ok, err)
		}
	}
}

// TestEnvOnlyInConfigFile: env() is evaluated in the configuration file and refused, at its position, in a
// device block from anywhere else.
func TestEnvOnlyInConfigFile(t *testing.T) {
	t.Setenv("IOTGW_TEST_SECRET", "s3cret")
	src := []byte("device \"d\" {\n  driver = \"mock\"\n  tags = { x = env(\"IOTGW_TEST_SECRET\") }\n  point \"p\" { signal = \"sine\" }\n}\n")
	dev, diags := ParseDevice(src, "gateway.hcl")
	if diags.HasErrors() {
		t.Fatalf("in the config file: %s", diags.Error())
	}
	if got := fmt.Sprint(dev.Settings.(*MockDevice).Tags); !strings.Contains(got, "s3cret") {
		t.Errorf("tags %s, want the variable's value", got)
	}
	cases := []struct{ name, src, pos string }{
		{"tag", string(src), "request:3:16"},
		{"template", "device \"d\" {\n  driver = \"mock\"\n  interval = \"${env(\"X\")}s\"\n  point \"p\" { signal = \"sine\" }\n}\n", "request:3:17"},
		{"point", "device \"d\" {\n  driver = \"mock\"\n  point \"p\" { signal = env(\"X\", \"sine\") }\n}\n", "request:3:24"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dev, diags := ParseRuntimeDevice([]byte(tc.src), "request")
			if dev != nil || !diags.HasErrors() {
				t.Fatalf("got a device, want the error")
			}
			got := (&Error{Diags: diags}).Error()
			wantDiag(t, got, tc.pos, "env() is only allowed in the config file")
			if strings.Contains(got, "s3cret") {
				t.Errorf("the error shows the variable's value: %s", got)
			}
		})
	}
}

func TestSecurityConfig(t *testing.T) {
	ca := testca.New(t, "cfg")
	srv := ca.Server("srv")
	other := testca.New(t, "other").Server("other")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	users := "authorization {\n    user \"a\" {\n      password = \"long-enough\"\n      admin = true\n    }\n  }\n"
	tlsBlock := fmt.Sprintf("tls {\n    cert = %q\n    key = %q\n  }\n", srv.Cert, srv.Key)
	cases := []struct {
		name, src, pos, want string // want "" means the config is valid
	}{
		{"loopback needs nothing", "nats {\n  host = \"127.0.0.1\"\n}\n", "", ""},
		{"beyond loopback bare", "nats {\n  host = \"0.0.0.0\"\n}\n", "t.hcl:2:10", "without users and TLS"},
		{"beyond loopback without tls", "nats {\n  host = \"0.0.0.0\"\n  " + users + "}\n", "t.hcl:2:10", "without TLS:"},
		{"beyond loopback without users", "nats {\n  host = \"10.0.0.1\"\n  " + tlsBlock + "}\n", "t.hcl:2:10", "without users:"},
		{"beyond loopback protected", "nats {\n  host = \"0.0.0.0\"\n  " + users + "  " + tlsBlock + "}\n", "", ""},
		{"beyond loopback insecure", "nats {\n  host = \"0.0.0.0\"\n  insecure = true\n}\n", "", ""},
		{"a host name is not loopback", "nats {\n  host = \"gw.plant\"\n}\n", "t.hcl:2:10", "beyond loopback"},
		{"http beyond loopback", "gateway {\n  http_address = \":8080\"\n}\n", "t.hcl:2:18", "without TLS and a token"},
		{"http token without tls", "gateway {\n  http_address = \"0.0.0.0:8080\"\n}\nhttp {\n  token = \"0123456789abcdef\"\n}\n", "t.hcl:2:18", "without TLS."},
		{"http protected", fmt.Sprintf("gateway {\n  http_address = \"0.0.0.0:8080\"\n}\nhttp {\n  token = \"0123456789abcdef\"\n  tls {\n    cert = %q\n    key = %q\n  }\n}\n", srv.Cert, srv.Key), "", ""},
		{"http insecure", "gateway {\n  http_address = \"0.0.0.0:8080\"\n}\nhttp {\n  insecure = true\n}\n", "", ""},
		{"http short token", "http {\n  token = \"short\"\n}\n", "t.hcl:2:11", "at least 16"},
		{"tls without key", fmt.Sprintf("nats {\n  tls {\n    cert = %q\n  }\n}\n", srv.Cert), "t.hcl:2:3", "needs key"},
		{"tls missing file", fmt.Sprintf("nats {\n  tls {\n    cert = %q\n    key = %q\n  }\n}\n", missing, srv.Key), "t.hcl:3:12", "cannot read"},
		{"tls key of another cert", fmt.Sprintf("nats {\n  tls {\n    cert = %q\n    key = %q\n  }\n}\n", srv.Cert, other.Key), "t.hcl:3:12", "not a certificate and its key"},
		{"tls ca not PEM", fmt.Sprintf("nats {\n  tls {\n    cert = %q\n    key = %q\n    ca = %q\n  }\n}\n", srv.Cert, srv.Key, junk), "t.hcl:5:10", "no PEM certificate"},
		{"tls verify without ca", fmt.Sprintf("nats {\n  tls {\n    cert = %q\n    key = %q\n    verify = true\n  }\n}\n", srv.Cert, srv.Key), "t.hcl:5:14", "needs ca"},
		{"tls on an external url", "nats {\n  url = \"tls://h:4222\"\n  " + tlsBlock + "}\n", "t.hcl:3:3", "write client_tls"},
		{"client_tls on embedded", fmt.Sprintf("nats {\n  client_tls {\n    ca = %q\n  }\n}\n", ca.CAFile), "t.hcl:2:3", "for an external server"},
		{"client_tls half a pair", fmt.Sprintf("nats {\n  url = \"tls://h:4222\"\n  client_tls {\n    key = %q\n  }\n}\n", srv.Key), "t.hcl:4:11", "key without cert"},
		{"client_tls ok", fmt.Sprintf("nats {\n  url = \"tls://h:4222\"\n  client_tls {\n    ca = %q\n    cert = %q\n    key = %q\n  }\n}\n", ca.CAFile, srv.Cert, srv.Key), "", ""},
		{"tls not in process", "nats {\n  in_process = false\n  " + tlsBlock + "}\n", "t.hcl:2:16", "keep it in-process"},
		{"grant bad subject", "nats {\n  authorization {\n    user \"r\" {\n      password = \"long-enough\"\n      publish = [\"iot.raw.ok\", \"iot..x\"]\n    }\n  }\n}\n", "t.hcl:5:32", "empty token"},
		{"grant to an admin", "nats {\n  authorization {\n    user \"r\" {\n      password = \"long-enough\"\n      admin = true\n      subscribe = [\">\"]\n    }\n  }\n}\n", "t.hcl:6:19", "is an admin"},
		{"device named like a sidecar", "sidecar \"line3\" {\n  address = \"127.0.0.1:1\"\n  config { mode = \"tcp\" }\n}\ndevice \"line3\" {\n  driver = \"mock\"\n  point \"p\" { signal = \"sine\" }\n}\n", "t.hcl:5:1", "The sidecar \"line3\" at t.hcl:1,1-16 has this name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, diags := Parse([]byte(tc.src), "t.hcl")
			got := (&Error{Diags: diags}).Error()
			if tc.want == "" {
				if diags.HasErrors() || cfg == nil {
					t.Fatalf("got %s, want a valid config", got)
				}
				return
			}
			wantDiag(t, got, tc.pos, tc.want)
		})
	}
}

// BenchmarkValidToken: the processor checks every point's device id and key with it.
func BenchmarkValidToken(b *testing.B) {
	for _, s := range []string{"temperature", "plc-line3_boiler-0042"} {
		b.Run(s, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if ValidToken(s) != nil {
					b.Fatal(s)
				}
			}
		})
	}
}
