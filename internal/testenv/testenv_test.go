package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckPymodbusNamesWhatIsMissing runs the check with stand-in interpreters that answer as Python does on a
// machine without python3-serial, without pymodbus, and with everything.
func TestCheckPymodbusNamesWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	fake := func(name, script string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name, python, want string
	}{
		{"no serial", fake("noserial", `echo "missing serial No module named 'serial'"; exit 3`), `Python module "serial"`},
		{"no serial_asyncio", fake("noasync", `echo "missing serial_asyncio No module named 'serial_asyncio'"; exit 3`), "install Debian's python3-serial-asyncio"},
		{"no pymodbus", fake("nopymodbus", `echo "missing pymodbus No module named 'pymodbus'"; exit 3`), "install Debian's python3-pymodbus"},
		{"no python", filepath.Join(dir, "absent"), "not found: install Debian's python3"},
		{"everything", fake("ok", `echo "ok 3.6.9"`), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := checkPymodbus(tc.python)
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want it to contain %q", got, tc.want)
			}
		})
	}
}

// TestCheckNodeOPCUANamesWhatIsMissing: without node_modules the check says to run npm ci in the server's folder.
func TestCheckNodeOPCUANamesWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "server.js"), []byte("// test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, problem := checkNodeOPCUA(dir); problem != "" && !strings.Contains(problem, "npm ci in "+dir) && !strings.Contains(problem, "install Debian's nodejs") {
		t.Errorf("got %q, want it to name npm ci in %s (or Debian's nodejs)", problem, dir)
	} else if problem == "" {
		t.Errorf("got no problem for a folder without node_modules")
	}
	if err := os.MkdirAll(filepath.Join(dir, "node_modules", "node-opcua"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "node_modules", "node-opcua", "package.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("node"); err == nil {
		if _, script, problem := checkNodeOPCUA(dir); problem != "" || script != filepath.Join(dir, "server.js") {
			t.Errorf("got %q, %q; want no problem and the script", script, problem)
		}
	}
}
