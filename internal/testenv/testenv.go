// Package testenv says whether the machine has the external programs the tests start for real, and names the
// Debian package to install when it has not. Tests skip without them, and fail when the environment variable CI
// is set, so a CI machine that lacks one cannot pass by skipping. It also holds the few helpers that tests of
// several packages share (LinkLog).
//
// Only tests import it; it must never be imported by the gateway itself.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// Python is Debian's interpreter: the python3 first on PATH may be another install without Debian's packages.
const Python = "/usr/bin/python3"

// pymodbusImports are the imports of the test scripts that run pymodbus (testdata/pymodbus_server.py,
// sidecar/modbussim/testdata/pymodbus_read.py). "import pymodbus" alone is not enough: pymodbus.server and
// pymodbus.client import serial and serial_asyncio, which Debian's python3-pymodbus only recommends.
const pymodbusImports = `from pymodbus.server import StartTcpServer
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.transaction import ModbusRtuFramer
from pymodbus.client import ModbusTcpClient
`

// debianPackages maps a Python module to the Debian package that holds it.
var debianPackages = map[string]string{
	"pymodbus":       "python3-pymodbus",
	"serial":         "python3-serial",
	"serial_asyncio": "python3-serial-asyncio",
}

// checkScript imports what the tests use and prints the first missing module's name, or ok and pymodbus's version.
var checkScript = "import sys\ntry:\n" + indent(pymodbusImports) +
	"except ImportError as e:\n    print('missing', e.name or '', str(e).replace('\\n', ' '))\n    sys.exit(3)\n" +
	"import pymodbus\nprint('ok', pymodbus.__version__)\n"

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n    ") + "\n"
}

var pymodbus struct {
	once    sync.Once
	problem string // "" when everything imports
}

// Pymodbus checks that Debian's python3 can import everything the pymodbus test scripts use. Without it the test
// is skipped with the missing module and the Debian package that provides it, or fails when CI is set.
func Pymodbus(t testing.TB) {
	t.Helper()
	pymodbus.once.Do(func() { pymodbus.problem = checkPymodbus(Python) })
	if pymodbus.problem == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set: a missing test server fails the run)", pymodbus.problem)
	}
	t.Skip(pymodbus.problem)
}

// checkPymodbus returns what python is missing, or "".
func checkPymodbus(python string) string {
	out, err := exec.Command(python, "-c", checkScript).CombinedOutput()
	text := strings.TrimSpace(string(out))
	if strings.HasPrefix(text, "ok ") && err == nil {
		return ""
	}
	if rest, ok := strings.CutPrefix(text, "missing "); ok {
		module, detail, _ := strings.Cut(rest, " ")
		top, _, _ := strings.Cut(module, ".")
		pkg, known := debianPackages[top]
		if !known {
			pkg = "the package that provides it"
		}
		return fmt.Sprintf("%s cannot import Python module %q, which the pymodbus tests use (%s): install Debian's %s",
			python, module, detail, pkg)
	}
	if _, statErr := os.Stat(python); statErr != nil {
		return fmt.Sprintf("%s not found: install Debian's python3 and python3-pymodbus", python)
	}
	return fmt.Sprintf("%s cannot run the pymodbus check: %v: %s", python, err, text)
}

// Python3 checks that a python3 is on PATH (the stdlib-only sidecars of the tests need nothing else). Without it the
// test is skipped naming Debian's python3 package, or fails when CI is set.
func Python3(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("python3")
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("python3 not found (install Debian's python3): %v", err)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set: a missing test program fails the run)", msg)
	}
	t.Skip(msg)
	return ""
}
