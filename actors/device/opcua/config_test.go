package opcua

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotgw/iotgw/config"
)

// okNode is a device block's valid part, for cases about something else.
const okNode = `  node "t" {
    node_id = "ns=1;s=Temperature"
  }
`

// brokenDevices are opcua blocks with one problem each, the position it must be reported at and a substring of
// "summary: detail". They seed FuzzConfig too.
var brokenDevices = []struct {
	name, src, pos, want string
}{
	{"no endpoint", "device \"u\" {\n  driver = \"opcua\"\n" + okNode + "}\n", "t.hcl:1:12", `The argument "endpoint" is required`},
	{"http endpoint", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"http://plc:4840\"\n" + okNode + "}\n", "t.hcl:3:14", `is not an OPC UA address like "opc.tcp://plc.local:4840"`},
	{"endpoint without port", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc\"\n" + okNode + "}\n", "t.hcl:3:14", `write the port`},
	{"unknown policy", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  security_policy = \"Basic128Rsa15\"\n" + okNode + "}\n", "t.hcl:4:21", `unknown security_policy "Basic128Rsa15"; known: None, Basic256Sha256`},
	{"unknown mode", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  security_mode = \"Encrypt\"\n" + okNode + "}\n", "t.hcl:4:19", `unknown security_mode "Encrypt"`},
	{"policy without mode", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  security_policy = \"Basic256Sha256\"\n" + okNode + "}\n", "t.hcl:4:21", `do not go together`},
	{"secure without trust", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  security_policy = \"Basic256Sha256\"\n  security_mode = \"Sign\"\n" + okNode + "}\n", "t.hcl:5:19", `checks the server's certificate: name it in server_certificates`},
	{"trust without security", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  server_certificates = [\"CERT\"]\n" + okNode + "}\n", "t.hcl:4:25", `apply to a signed channel`},
	{"missing server cert file", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  security_policy = \"Basic256Sha256\"\n  security_mode = \"Sign\"\n  server_certificates = [\"/nonexistent.der\", \"CERT\"]\n" + okNode + "}\n", "t.hcl:6:26", `cannot read "/nonexistent.der"`},
	{"unknown auth", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  auth = \"kerberos\"\n" + okNode + "}\n", "t.hcl:4:10", `unknown auth "kerberos"; known: anonymous, username, certificate`},
	{"username without name", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  auth = \"username\"\n" + okNode + "}\n", "t.hcl:1:1", `auth = "username" needs username`},
	{"password without auth", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  username = \"op\"\n" + okNode + "}\n", "t.hcl:4:14", `apply to auth = "username"`},
	{"certificate auth without cert", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  auth = \"certificate\"\n" + okNode + "}\n", "t.hcl:1:1", `give certificate and private_key`},
	{"cert without key", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  certificate = \"CERT\"\n" + okNode + "}\n", "t.hcl:4:17", `certificate and private_key go together`},
	{"unknown mode of reading", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  mode = \"push\"\n" + okNode + "}\n", "t.hcl:4:10", `unknown mode "push"; known: poll, subscribe`},
	{"no nodes", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n}\n", "t.hcl:1:1", `needs at least one node block`},
	{"bad node id", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  node \"t\" {\n    node_id = \"Temperature\"\n  }\n}\n", "t.hcl:5:15", `node_id "Temperature" is not an OPC UA node id`},
	{"namespace without id", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  node \"t\" {\n    node_id = \"ns=2\"\n  }\n}\n", "t.hcl:5:15", `is not an OPC UA node id`},
	{"bad namespace", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  node \"t\" {\n    node_id = \"ns=99999999;i=1\"\n  }\n}\n", "t.hcl:5:15", `is not an OPC UA node id`},
	{"missing node id", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  node \"t\" {\n    type = \"int64\"\n  }\n}\n", "t.hcl:4:12", `The argument "node_id" is required`},
	{"duplicate key", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n" + okNode + okNode + "}\n", "t.hcl:7:3", `Node key "t" is used twice`},
	{"key with dot", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  node \"a.b\" {\n    node_id = \"i=1\"\n  }\n}\n", "t.hcl:4:3", `becomes a NATS subject token`},
	{"unknown type", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  node \"t\" {\n    node_id = \"i=1\"\n    type = \"float32\"\n  }\n}\n", "t.hcl:6:12", `unknown type "float32"; known: float64, int64, bool, string`},
	{"scaled bool", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  node \"t\" {\n    node_id = \"i=1\"\n    type = \"bool\"\n    scale = 2\n  }\n}\n", "t.hcl:7:13", `scale and offset do not apply to a bool`},
	{"deadband when polling", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  node \"t\" {\n    node_id = \"i=1\"\n    deadband = 1\n  }\n}\n", "t.hcl:6:16", `apply to mode = "subscribe"`},
	{"negative deadband", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  mode = \"subscribe\"\n  node \"t\" {\n    node_id = \"i=1\"\n    deadband = -1\n  }\n}\n", "t.hcl:7:16", `deadband must be >= 0`},
	{"percent over 100", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  mode = \"subscribe\"\n  node \"t\" {\n    node_id = \"i=1\"\n    deadband = 150\n    deadband_type = \"percent\"\n  }\n}\n", "t.hcl:7:16", `a percent deadband is 0..100`},
	{"bad sampling interval", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  mode = \"subscribe\"\n  node \"t\" {\n    node_id = \"i=1\"\n    sampling_interval = \"fast\"\n  }\n}\n", "t.hcl:7:25", `"fast" is not a duration`},
	{"zero interval", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  interval = \"0s\"\n" + okNode + "}\n", "t.hcl:4:14", `is too short: at least 1ms`},
	{"unknown attribute", "device \"u\" {\n  driver = \"opcua\"\n  endpoint = \"opc.tcp://plc:4840\"\n  namespace = 2\n" + okNode + "}\n", "t.hcl:4:3", `An argument named "namespace" is not expected here`},
}

func testCertFile(t testing.TB) string {
	t.Helper()
	der, _, err := generateCert("test")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "cert.der")
	if err := os.WriteFile(p, der, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBrokenConfig(t *testing.T) {
	cert := testCertFile(t)
	for _, tc := range brokenDevices {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.ReplaceAll(tc.src, "CERT", cert)
			_, diags := config.Parse([]byte(src), "t.hcl")
			if !diags.HasErrors() {
				t.Fatalf("got no error, want %s: %s", tc.pos, tc.want)
			}
			msg := (&config.Error{Diags: diags}).Error()
			for _, line := range strings.Split(msg, "\n") {
				if strings.HasPrefix(line, tc.pos+": ") && strings.Contains(line, tc.want) {
					return
				}
			}
			t.Errorf("got\n%s\nwant a line at %s with %q", msg, tc.pos, tc.want)
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, diags := config.Parse([]byte(`device "u" {
  driver   = "opcua"
  endpoint = "opc.tcp://127.0.0.1:4840"
  mode     = "subscribe"
  node "t" {
    node_id  = "ns=2;s=Line1.Temperature"
    deadband = 0.5
  }
}
`), "t.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	o := cfg.Devices[0].Settings.(*config.OPCUADevice)
	n := o.Nodes[0]
	got := fmt.Sprintf("%s %s %s %v %v %s %s %v %s", o.SecurityPolicy, o.SecurityMode, o.Auth, o.Interval, o.Timeout,
		n.Type, n.DeadbandType, n.SamplingInterval, n.NodeID)
	if want := "None None anonymous 1s 5s float64 absolute 1s ns=2;s=Line1.Temperature"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// FuzzConfig: no opcua block, however broken, panics the decoder or the validation.
func FuzzConfig(f *testing.F) {
	for _, tc := range brokenDevices {
		f.Add(tc.src)
	}
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > 4<<10 {
			return
		}
		_, _ = config.Parse([]byte(src), "fuzz.hcl")
	})
}

// TestGatewayHCLExample: the commented opcua block of gateway.hcl, uncommented (with every optional key it shows,
// certificate files aside), is a valid device block.
func TestGatewayHCLExample(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "gateway.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	var block []string
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		if line == `# device "line-1" {` {
			in = true
		}
		if !in {
			continue
		}
		l := strings.TrimPrefix(line, "# ")
		if t := strings.TrimSpace(l); strings.HasPrefix(t, "# ") {
			opt := strings.TrimPrefix(t, "# ")
			key, _, _ := strings.Cut(opt, " ")
			switch key {
			case "stale_after", "username", "password", "scale", "offset", "sampling_interval", "deadband", "deadband_type":
				l = opt // the optional keys it documents, uncommented too
			}
		}
		block = append(block, l)
		if line == "# }" {
			break
		}
	}
	if len(block) < 10 {
		t.Fatalf("no opcua example in gateway.hcl (found %d lines)", len(block))
	}
	src := strings.Join(block, "\n")
	src = strings.Replace(src, `mode     = "poll"`, `mode     = "subscribe"`, 1)
	src = strings.Replace(src, `auth = "anonymous"`, `auth = "username"`, 1)
	src = strings.Replace(src, `env("OPCUA_PASSWORD")`, `"secret"`, 1)
	cfg, diags := config.Parse([]byte(src), "gateway.hcl")
	if diags.HasErrors() {
		t.Fatalf("%s\n%s", diags.Error(), src)
	}
	if o := cfg.Devices[0].Settings.(*config.OPCUADevice); len(o.Nodes) != 2 || o.Nodes[0].Deadband != 0.5 || o.StaleAfter == 0 {
		t.Errorf("got %+v, want the example's two nodes, its deadband and stale_after", o)
	}
}
