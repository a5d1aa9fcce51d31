package testenv

import (
	"os"
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
