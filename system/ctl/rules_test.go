package ctl

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/system"
	"github.com/nats-io/nats.go"
)

// TestCtlRulesAgainstAGateway: iotgw ctl rules and alerts against a running gateway, not a stand-in.
func TestCtlRulesAgainstAGateway(t *testing.T) {
	cfg, diags := config.Parse([]byte(`
rule "hot" {
  type = "alert"
  when = "value > 85"
  level = "critical"
}
`), "test.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	cfg.NATS.Port = -1
	cfg.Gateway.HTTPAddress = ""
	cfg.Gateway.DataDir = t.TempDir()
	rt := system.New(cfg)
	if err := rt.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Stop() })
	url := rt.Bus().URL

	code, out, errOut := runCtl("-s", url, "rules", "list")
	if code != 0 || !strings.HasPrefix(out, "NAME  TYPE   SOURCE  STATE    RESTARTS  IN  OUT  DROPPED  ERRORS  EVAL/POINT  ALERTS\nhot   alert  config  running  0         0   0    0        0       -           0\n") {
		t.Errorf("rules list: %d %q %q", code, out, errOut)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish("iot.processed.batch.d1", []byte(`{"points":[{"device_id":"d1","key":"t","value":90,"quality":1,"timestamp":1}]}`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out, _ = runCtl("-s", url, "alerts", "list")
		if strings.Contains(out, "hot:d1:t:when  firing  critical  d1") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != 0 || !strings.Contains(out, "hot:d1:t:when  firing  critical  d1      t") {
		t.Errorf("alerts list: %d %q", code, out)
	}
	if code, out, _ = runCtl("-s", url, "alerts", "ack", "hot:d1:t:when"); code != 0 || out != "acknowledged hot:d1:t:when\n" {
		t.Errorf("alerts ack: %d %q", code, out)
	}
	if code, _, errOut = runCtl("-s", url, "alerts", "ack", "nope"); code != 1 || !strings.Contains(errOut, "no active alert") {
		t.Errorf("ack of an unknown alert: %d %q", code, errOut)
	}
	file := filepath.Join(t.TempDir(), "r.hcl")
	if err := os.WriteFile(file, []byte("rule \"bad\" {\n  type = \"filter\"\n  when = \"valu > 1\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut = runCtl("-s", url, "rules", "add", "-f", file); code != 1 || !strings.Contains(errOut, "request:3:11") {
		t.Errorf("rules add of a bad rule: %d %q", code, errOut)
	}
	if err := os.WriteFile(file, []byte("rule \"ok\" {\n  type = \"filter\"\n  when = \"value > 1\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut = runCtl("-s", url, "rules", "add", "-f", file); code != 0 || out != "added rule ok\n" {
		t.Errorf("rules add: %d %q %q", code, out, errOut)
	}
	if code, out, _ = runCtl("-s", url, "rules", "get", "ok"); code != 0 || !strings.Contains(out, "source:    runtime") || !strings.Contains(out, `when = "value > 1"`) {
		t.Errorf("rules get: %d %q", code, out)
	}
	if code, _, _ = runCtl("-s", url, "rules", "get", "a.b"); code != 2 {
		t.Errorf("rules get of a bad name: exit %d, want 2", code)
	}
	if code, out, _ = runCtl("-s", url, "rules", "remove", "ok"); code != 0 || out != "removed rule ok\n" {
		t.Errorf("rules remove: %d %q", code, out)
	}
}
