package system

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/internal/testca"
	"github.com/iotgw/iotgw/internal/testenv"
)

// mosquittoPasswd writes a mosquitto password file for one user with Debian's mosquitto_passwd.
func mosquittoPasswd(t *testing.T, user, password string) string {
	t.Helper()
	const bin = "/usr/bin/mosquitto_passwd"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found: install Debian package mosquitto (CI is set)", bin)
		}
		t.Skipf("%s not found: install Debian package mosquitto", bin)
	}
	file := filepath.Join(t.TempDir(), "passwd")
	if out, err := exec.Command(bin, "-c", "-b", file, user, password).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	return file
}

// TestMQTTTLSAndCredentials: a broker with TLS (a test CA) and a password file: the device verifies the
// broker's certificate against its ca, logs in, and receives; a CA that did not sign the broker's certificate,
// and a wrong password, are peer failures whose reason the tree shows (the device retries, disconnected).
func TestMQTTTLSAndCredentials(t *testing.T) {
	ca := testca.New(t, "mqtt-test-ca")
	srv := ca.Server("mosquitto")
	passwd := mosquittoPasswd(t, "gateway", "s3cret-pass")
	broker := testenv.Mosquitto(t, fmt.Sprintf("cafile %s\ncertfile %s\nkeyfile %s\npassword_file %s\nallow_anonymous false\n",
		ca.CAFile, srv.Cert, srv.Key, passwd))
	url := "ssl://" + broker.Addr()
	other := testca.New(t, "other-ca")
	tests := []struct {
		name, extra, want string
	}{
		{"verified", fmt.Sprintf("username = \"gateway\"\n  password = \"s3cret-pass\"\n  tls { ca = %q }", ca.CAFile), ""},
		{"verified, MQTT 5", fmt.Sprintf("protocol = \"5\"\n  username = \"gateway\"\n  password = \"s3cret-pass\"\n  tls { ca = %q }", ca.CAFile), ""},
		{"unknown CA, MQTT 5", fmt.Sprintf("protocol = \"5\"\n  tls { ca = %q }", other.CAFile), "certificate"},
		{"wrong password, MQTT 5", fmt.Sprintf("protocol = \"5\"\n  username = \"gateway\"\n  password = \"not-the-pass\"\n  tls { ca = %q }", ca.CAFile), "the broker refused the connection: reason 0x87 (not authorized)"},
		{"unknown CA", fmt.Sprintf("username = \"gateway\"\n  password = \"s3cret-pass\"\n  tls { ca = %q }", other.CAFile), "certificate"},
		{"wrong password", fmt.Sprintf("username = \"gateway\"\n  password = \"not-the-pass\"\n  tls { ca = %q }", ca.CAFile), "connect"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := startRuntime(t, parseConfig(t, mqttConfig(url, tc.extra)))
			nc := client(t, rt.Bus().URL)
			if tc.want != "" {
				checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
					n := find(tree(t, nc), "devices/line1")
					if n == nil || n.State != StateDisconnected || !strings.Contains(n.LastError, tc.want) {
						return fmt.Errorf("devices/line1: %+v", n)
					}
					t.Logf("%s: %s", tc.name, n.LastError)
					return nil
				})
				return
			}
			l := watchBatches(t, nc)
			creds := []string{"--cafile", ca.CAFile, "-u", "gateway", "-P", "s3cret-pass"}
			waitFlowing(t, nc, broker, creds...)
			broker.Publish(t, "plant/secure/temp", []byte("12.5"), creds...)
			if v, _ := l.wait(t, "secure", "temp")["temp"].Value.Float(); v != 12.5 {
				t.Errorf("temp %v, want 12.5", v)
			}
		})
	}
}

// TestMQTTClientCertificate: a broker that requires a client certificate (require_certificate) takes the
// device's tls { cert, key }, on 3.1.1 and 5; without one the device shows disconnected.
func TestMQTTClientCertificate(t *testing.T) {
	ca := testca.New(t, "mqtt-mtls")
	srv, cli := ca.Server("mosquitto"), ca.Client("gateway")
	broker := testenv.Mosquitto(t, fmt.Sprintf("cafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n", ca.CAFile, srv.Cert, srv.Key))
	url := "ssl://" + broker.Addr()
	pub := []string{"--cafile", ca.CAFile, "--cert", cli.Cert, "--key", cli.Key}
	for _, proto := range []string{"3.1.1", "5"} {
		t.Run(proto, func(t *testing.T) {
			rt := startRuntime(t, parseConfig(t, mqttConfig(url, fmt.Sprintf("protocol = %q\n  tls {\n    ca = %q\n    cert = %q\n    key = %q\n  }", proto, ca.CAFile, cli.Cert, cli.Key))))
			nc := client(t, rt.Bus().URL)
			waitFlowing(t, nc, broker, pub...)
		})
		t.Run(proto+" without a certificate", func(t *testing.T) {
			rt := startRuntime(t, parseConfig(t, mqttConfig(url, fmt.Sprintf("protocol = %q\n  tls { ca = %q }", proto, ca.CAFile))))
			nc := client(t, rt.Bus().URL)
			checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
				n := find(tree(t, nc), "devices/line1")
				if n == nil || n.State != StateDisconnected || n.LastError == "" {
					return fmt.Errorf("devices/line1: %+v", n)
				}
				t.Logf("without a certificate: %s", n.LastError)
				return nil
			})
		})
	}
}
