package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// leafSrc is a nats block with JetStream on and a leafnode block holding body (lines 4 on).
func leafSrc(body string) string {
	return "nats {\n  jetstream { enabled = true }\n  leafnode {\n" + body + "  }\n}\n"
}

// credsFile writes a file shaped like what nsc generate creds writes (the JWT and seed are not real ones: config
// checks the shape; nats-server checks the content at connect).
func credsFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hub.creds")
	src := "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.sig\n------END NATS USER JWT------\n\n" +
		"-----BEGIN USER NKEY SEED-----\nSUAEXAMPLE\n------END USER NKEY SEED------\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLeafnodeValid(t *testing.T) {
	creds := credsFile(t)
	t.Setenv("IOTGW_TEST_HUB_PASSWORD", "s3cret-from-env")
	tests := []struct {
		name  string
		src   string
		check func(*testing.T, *Config)
	}{
		{"one url, defaults", leafSrc("    url = \"nats-leaf://hub.example.com:7422\"\n"), func(t *testing.T, c *Config) {
			l := c.NATS.Leafnode
			if got := strings.Join(l.URLs, ","); got != "nats-leaf://hub.example.com:7422" {
				t.Errorf("got urls %q", got)
			}
			if l.Domain != "" || l.JetStreamDomain(c.Gateway) != c.Gateway.ID {
				t.Errorf("got domain %q (resolved %q), want the gateway id %q", l.Domain, l.JetStreamDomain(c.Gateway), c.Gateway.ID)
			}
			if l.AllowControl || l.ReconnectWait != time.Second || l.TLS != nil || l.Credentials != "" {
				t.Errorf("got %+v, want the defaults", l)
			}
		}},
		{"several urls, credentials, domain, tls, allow_control", leafSrc("    urls = [\"tls://a:7422\", \"nats-leaf://b:7422\", \"wss://c:443/leafnode\"]\n" +
			"    credentials = \"" + creds + "\"\n    domain = \"plant-7\"\n    allow_control = true\n    reconnect_wait = \"5s\"\n    tls {}\n"),
			func(t *testing.T, c *Config) {
				l := c.NATS.Leafnode
				if len(l.URLs) != 3 || l.Credentials != creds || l.JetStreamDomain(c.Gateway) != "plant-7" || !l.AllowControl ||
					l.ReconnectWait != 5*time.Second || l.TLS == nil {
					t.Errorf("got %+v", l)
				}
			}},
		{"user and password from env", leafSrc("    url = \"nats-leaf://hub:7422\"\n    user = \"gw1\"\n    password = env(\"IOTGW_TEST_HUB_PASSWORD\")\n"),
			func(t *testing.T, c *Config) {
				l := c.NATS.Leafnode
				if l.User != "gw1" || l.Password != "s3cret-from-env" {
					t.Errorf("got user %q password %q", l.User, l.Password)
				}
				if s := l.String(); strings.Contains(s, "s3cret") {
					t.Errorf("String() shows the password: %s", s)
				}
			}},
		{"no leafnode block", "nats {\n  jetstream { enabled = true }\n}\n", func(t *testing.T, c *Config) {
			if c.NATS.Leafnode != nil {
				t.Errorf("got %+v, want no uplink", c.NATS.Leafnode)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, diags := Parse([]byte(tc.src), "leaf.hcl")
			if diags.HasErrors() {
				t.Fatalf("got %s, want no error", diags.Error())
			}
			tc.check(t, cfg)
		})
	}
}

// TestLeafnodeBroken: every problem of a leafnode block is reported at its value, with what to write instead;
// hostile values (huge, wrongly typed, files that are not credentials) are refused without reading more than a
// credentials file's worth.
func TestLeafnodeBroken(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.creds")
	if err := os.WriteFile(junk, []byte("not a creds file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.creds")
	if err := os.WriteFile(huge, make([]byte, maxCredsSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	creds := credsFile(t)
	t.Setenv("IOTGW_TEST_EMPTY", "")
	many := make([]string, maxLeafURLs+1)
	for i := range many {
		many[i] = `"nats-leaf://h` + strings.Repeat("x", i) + `:7422"`
	}
	u := "    url = \"nats-leaf://hub:7422\"\n"
	tests := []struct{ name, src, pos, want string }{
		{"no url", leafSrc(""), "leaf.hcl:3:3", "needs url (or urls)"},
		{"url and urls", leafSrc(u + "    urls = [\"nats-leaf://b:7422\"]\n"), "leaf.hcl:5:12", "write url or urls, not both"},
		{"empty urls", leafSrc("    urls = []\n"), "leaf.hcl:4:12", "urls is empty"},
		{"empty url", leafSrc("    url = \"\"\n"), "leaf.hcl:4:11", "empty URL"},
		{"http url", leafSrc("    url = \"http://hub:7422\"\n"), "leaf.hcl:4:11", `unsupported scheme "http"; known: nats-leaf, nats, tls, ws, wss`},
		{"no host", leafSrc("    url = \"nats-leaf://:7422\"\n"), "leaf.hcl:4:11", "has no host"},
		{"bad port", leafSrc("    url = \"nats-leaf://hub:99999\"\n"), "leaf.hcl:4:11", `port "99999" is not a number from 1 to 65535`},
		{"path", leafSrc("    url = \"nats-leaf://hub:7422/x\"\n"), "leaf.hcl:4:11", "has a path"},
		{"not a url", leafSrc("    url = \"nats-leaf://hub:7422\\u007f\"\n"), "leaf.hcl:4:11", "is not a URL"},
		{"url too long", leafSrc("    url = \"nats-leaf://" + strings.Repeat("h", maxLeafURLLen) + "\"\n"), "leaf.hcl:4:11", "at most 2048 allowed"},
		{"too many urls", leafSrc("    urls = [" + strings.Join(many, ", ") + "]\n"), "leaf.hcl:4:12", "33 URLs, at most 32 allowed"},
		{"second url bad", leafSrc("    urls = [\"nats-leaf://a:7422\", \"ftp://b\"]\n"), "leaf.hcl:4:35", `unsupported scheme "ftp"`},
		{"duplicate url", leafSrc("    urls = [\"nats-leaf://a:7422\", \"nats-leaf://a:7422\"]\n"), "leaf.hcl:4:35", "listed twice (first as element 1)"},
		{"password in url", leafSrc("    url = \"nats-leaf://gw:hunter22@hub:7422\"\n"), "leaf.hcl:4:11", `"nats-leaf://gw:xxxxx@hub:7422" holds a password`},
		{"url not a string", leafSrc("    url = [\"nats-leaf://hub:7422\"]\n"), "leaf.hcl:4:11", "Unsuitable value type"},
		{"urls not a list", leafSrc("    urls = \"nats-leaf://hub:7422\"\n"), "leaf.hcl:4:13", "list of string required"},
		{"missing credentials", leafSrc(u + "    credentials = \"" + filepath.Join(dir, "none.creds") + "\"\n"), "leaf.hcl:5:19", "none.creds: no such file"},
		{"credentials a directory", leafSrc(u + "    credentials = \"" + dir + "\"\n"), "leaf.hcl:5:19", "is not a regular file"},
		{"credentials a device", leafSrc(u + "    credentials = \"/dev/zero\"\n"), "leaf.hcl:5:19", "is not a regular file"},
		{"credentials not creds", leafSrc(u + "    credentials = \"" + junk + "\"\n"), "leaf.hcl:5:19", "is not a NATS credentials file: it lacks -----BEGIN NATS USER JWT-----"},
		{"credentials huge", leafSrc(u + "    credentials = \"" + huge + "\"\n"), "leaf.hcl:5:19", "65537 bytes, more than a .creds file"},
		{"credentials empty", leafSrc(u + "    credentials = \"\"\n"), "leaf.hcl:5:19", "credentials is empty"},
		{"credentials and user", leafSrc(u + "    credentials = \"" + creds + "\"\n    user = \"gw\"\n"), "leaf.hcl:5:19", "not both"},
		{"user without password", leafSrc(u + "    user = \"gw\"\n"), "leaf.hcl:5:12", "user without password"},
		{"password without user", leafSrc(u + "    password = env(\"X\")\n"), "leaf.hcl:5:16", "password without user"},
		{"literal password", leafSrc(u + "    user = \"gw\"\n    password = \"hunter22\"\n"), "leaf.hcl:6:16", `write the hub password as env("NAME")`},
		{"password env empty", leafSrc(u + "    user = \"gw\"\n    password = env(\"IOTGW_TEST_EMPTY\")\n"), "leaf.hcl:6:16", "is its environment variable set?"},
		{"user with colon", leafSrc(u + "    user = \"g:w\"\n    password = env(\"X\", \"y\")\n"), "leaf.hcl:5:12", `the user "g:w" must be non-empty`},
		{"domain with dot", leafSrc(u + "    domain = \"a.b\"\n"), "leaf.hcl:5:14", `the JetStream domain becomes a subject token ($JS.{domain}.API): invalid subject token: "a.b" contains '.'`},
		{"domain with gt", leafSrc(u + "    domain = \">\"\n"), "leaf.hcl:5:14", "contains the wildcard '>'"},
		{"domain empty", leafSrc(u + "    domain = \"\"\n"), "leaf.hcl:5:14", "invalid subject token: empty"},
		{"domain too long", leafSrc(u + "    domain = \"" + strings.Repeat("d", 65) + "\"\n"), "leaf.hcl:5:14", "65 characters long, at most 64 allowed"},
		{"reconnect_wait bad", leafSrc(u + "    reconnect_wait = \"often\"\n"), "leaf.hcl:5:22", `"often" is not a duration`},
		{"reconnect_wait zero", leafSrc(u + "    reconnect_wait = \"0s\"\n"), "leaf.hcl:5:22", "reconnect_wait must be > 0"},
		{"tls verify", leafSrc(u + "    tls { verify = true }\n"), "leaf.hcl:5:20", "a client always verifies the server"},
		{"tls cert without key", leafSrc(u + "    tls { cert = \"c.pem\" }\n"), "leaf.hcl:5:18", "cert without key"},
		{"tls missing ca", leafSrc(u + "    tls { ca = \"" + filepath.Join(dir, "none.pem") + "\" }\n"), "leaf.hcl:5:16", "cannot read"},
		{"allow_control not bool", leafSrc(u + "    allow_control = \"maybe\"\n"), "leaf.hcl:5:22", "a bool is required"},
		{"unknown attribute", leafSrc(u + "    account = \"IOT\"\n"), "leaf.hcl:5:5", `An argument named "account" is not expected here`},
		{"two leafnode blocks", "nats {\n  jetstream { enabled = true }\n  leafnode {\n" + u + "  }\n  leafnode {\n" + u + "  }\n}\n", "leaf.hcl:6:3", "Duplicate leafnode block"},
		{"external server", "nats {\n  url = \"nats://a:4222\"\n  jetstream { enabled = true }\n  leafnode {\n" + u + "  }\n}\n", "leaf.hcl:4:3", "The leafnode block is for the embedded server"},
		{"jetstream off", "nats {\n  jetstream { enabled = false }\n  leafnode {\n" + u + "  }\n}\n", "leaf.hcl:3:3", "The uplink needs jetstream { enabled = true }"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, diags := Parse([]byte(tc.src), "leaf.hcl")
			if !diags.HasErrors() {
				t.Fatalf("got no error, want %s: %s", tc.pos, tc.want)
			}
			if cfg != nil {
				t.Error("got a Config with errors, want nil")
			}
			got := (&Error{Diags: diags}).Error()
			for _, line := range strings.Split(got, "\n") {
				if strings.HasPrefix(line, tc.pos+": ") && strings.Contains(line, tc.want) {
					return
				}
			}
			t.Errorf("got\n%s\nwant a line at %s containing %q", got, tc.pos, tc.want)
		})
	}
}

// FuzzLeafnode parses arbitrary leafnode block bodies: no panic, and whatever is accepted is an uplink
// nats-server can dial (URLs of a leaf scheme with a host) without a literal password.
func FuzzLeafnode(f *testing.F) {
	for _, s := range []string{
		"url = \"nats-leaf://hub:7422\"\n",
		"urls = [\"tls://a:7422\", \"wss://b/leafnode\"]\ndomain = \"d\"\nallow_control = true\n",
		"url = \"nats-leaf://u:p@hub:7422\"\n",
		"url = \"nats-leaf://hub:7422\"\nuser = \"u\"\npassword = env(\"HOME\")\n",
		"url = \"nats-leaf://hub:7422\"\ncredentials = \"/dev/null\"\n",
		"url = \"nats-leaf://hub:7422\"\nreconnect_wait = \"1ms\"\ntls { ca = \"/nonexistent\" }\n",
		"urls = []\n", "url = \"\"\n", "domain = \"a.b\"\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if len(body) > 4096 {
			return
		}
		cfg, diags := Parse([]byte(leafSrc(body)), "fuzz.hcl")
		if diags.HasErrors() {
			return
		}
		l := cfg.NATS.Leafnode
		if l == nil || len(l.URLs) == 0 {
			t.Fatalf("accepted %q without a hub URL: %+v", body, l)
		}
		for _, s := range l.URLs {
			if len(s) > maxLeafURLLen {
				t.Fatalf("accepted a URL of %d bytes", len(s))
			}
		}
		if l.Password != "" && !strings.Contains(body, "env(") {
			t.Fatalf("accepted a password without env(): %q", body)
		}
		if ValidToken(l.JetStreamDomain(cfg.Gateway)) != nil {
			t.Fatalf("accepted domain %q", l.JetStreamDomain(cfg.Gateway))
		}
	})
}

// TestLeafnodeGatewayHCL: the leafnode block gateway.hcl documents (commented out, since it needs a hub) is valid
// once uncommented, with its credentials file present.
func TestLeafnodeGatewayHCL(t *testing.T) {
	src, err := os.ReadFile("../gateway.hcl")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(src), "\n  # leafnode {\n")
	if !ok {
		t.Fatal("gateway.hcl has no commented leafnode block")
	}
	var block strings.Builder
	block.WriteString("  leafnode {\n")
	for _, line := range strings.Split(rest, "\n") {
		if line == "  # }" {
			break
		}
		block.WriteString(strings.TrimPrefix(line, "  # ") + "\n")
	}
	block.WriteString("  }\n")
	body := strings.Replace(block.String(), "/etc/iotgw/hub.creds", credsFile(t), 1)
	cfg, diags := Parse([]byte("nats {\n  jetstream { enabled = true }\n"+body+"}\n"), "gateway.hcl")
	if diags.HasErrors() {
		t.Fatalf("the documented leafnode block:\n%s\n%s", body, diags.Error())
	}
	if l := cfg.NATS.Leafnode; len(l.URLs) != 1 || l.URLs[0] != "nats-leaf://hub.example.com:7422" || l.Credentials == "" {
		t.Errorf("got %+v", l)
	}
}
