package system

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/isp"
)

// TestReadmeSidecar runs the minimal Python sidecar printed in the README, as a plugin: what sidecar authors copy
// must work.
func TestReadmeSidecar(t *testing.T) {
	needPython(t)
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "<!-- minimal-sidecar -->\n```python\n")
	if !ok {
		t.Fatal("README has no minimal sidecar block")
	}
	code, _, ok := strings.Cut(rest, "\n```")
	if !ok {
		t.Fatal("README's minimal sidecar block is not closed")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mini.py"), []byte(code+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	manifest := `{"name":"mini","version":"1.0.0","type":"adapter","mode":"isp-sidecar","entry":"mini.py","description":"README","isp_port":50052}`
	if err := os.WriteFile(filepath.Join(dir, "mini-isp.json"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
gateway { plugins_dir = %q }
sidecar "mini" {
  plugin = "mini"
  port   = %d
  config {
    mode     = "tcp"
    interval = "100ms"
    register "temperature" {
      address = 0
      type    = "float32"
    }
  }
}`, dir, freePort(t))))
	nc := client(t, rt.Bus().URL)
	sub, err := nc.SubscribeSync("iot.processed.batch.mini")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatalf("no data from the README's sidecar: %v", err)
	}
	pts, err := isp.DecodeBatch(msg.Data)
	if err != nil || len(pts) != 1 || pts[0].Key != "temperature" {
		t.Fatalf("batch %s (%v), want the temperature point", msg.Data, err)
	}
	st := sidecarStatus(t, nc, "mini")
	if resp, _ := st["response"].(map[string]any); resp["configured"] != true {
		t.Errorf("status %v, want configured", st)
	}
}
