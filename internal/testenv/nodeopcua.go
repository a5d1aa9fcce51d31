package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// OPCUAServerDir is the folder of the OPC UA test server (node-opcua), relative to the repository's root: its
// server.js, package.json and committed package-lock.json; `npm ci` there installs node-opcua into node_modules.
const OPCUAServerDir = "actors/device/opcua/testdata/server"

// NodeOPCUA checks that node is on PATH and node-opcua is installed beside the test server, and returns node's path
// and the server script's. Without them the test is skipped naming what to do (Debian's nodejs, or npm ci in the
// server's folder, which .ci/run does), or fails when CI is set.
func NodeOPCUA(t testing.TB) (node, script string) {
	t.Helper()
	node, script, problem := findNodeOPCUA()
	if problem == "" {
		return node, script
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set: a missing test server fails the run)", problem)
	}
	t.Skip(problem)
	return "", ""
}

func findNodeOPCUA() (node, script, problem string) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", "", "cannot locate the repository to find the OPC UA test server"
	}
	dir := filepath.Join(filepath.Dir(file), "..", "..", filepath.FromSlash(OPCUAServerDir))
	return checkNodeOPCUA(dir)
}

// checkNodeOPCUA says what is missing to run the server in dir, or "".
func checkNodeOPCUA(dir string) (node, script, problem string) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "", "", fmt.Sprintf("node not found (install Debian's nodejs and npm, then npm ci in %s): %v", dir, err)
	}
	script = filepath.Join(dir, "server.js")
	if _, err := os.Stat(script); err != nil {
		return "", "", fmt.Sprintf("the OPC UA test server is missing: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "node-opcua", "package.json")); err != nil {
		return "", "", fmt.Sprintf("node-opcua is not installed for the OPC UA test server: run npm ci in %s", dir)
	}
	return node, script, ""
}
