package config

import (
	"fmt"
	"strings"
	"testing"
)

// TestEndpointConflictAtValidate: devices on one endpoint must agree on its settings. Two devices on one serial
// line at different speeds are refused at the second, and the message points at the first; devices that agree,
// or that are on different endpoints, are fine.
func TestEndpointConflictAtValidate(t *testing.T) {
	dev := func(id, mode, addr, serial string) string {
		return "device \"" + id + "\" {\n  driver = \"modbus\"\n  mode = \"" + mode + "\"\n  address = \"" + addr + "\"\n" +
			serial + "  register \"r\" { address = 0 }\n}\n"
	}
	for _, tc := range []struct {
		name string
		src  string
		want []string // in the one error; none: no error
	}{
		{"two speeds on one line", dev("a", "rtu", "/dev/ttyS0", "") + dev("b", "rtu", "/dev/ttyS0", "  serial { baud_rate = 19200 }\n"),
			[]string{"t.hcl:7:1: Conflicting endpoint settings", `device "b"`, `device "a" at t.hcl:1,1-11`, "9600 baud 8N1", "19200 baud 8N1"}},
		{"two parities on one line", dev("a", "rtu", "/dev/ttyS0", "  serial { parity = \"E\" }\n") + dev("b", "rtu", "/dev/ttyS0", ""),
			[]string{"t.hcl:8:1: Conflicting endpoint settings", "8E1", "8N1"}},
		{"the same line written twice alike", dev("a", "rtu", "/dev/ttyS0", "") + dev("b", "rtu", "/dev/ttyS0", "  serial { baud_rate = 9600 }\n"), nil},
		{"two lines", dev("a", "rtu", "/dev/ttyS0", "") + dev("b", "rtu", "/dev/ttyS1", "  serial { baud_rate = 19200 }\n"), nil},
		{"one TCP address", dev("a", "tcp", "127.0.0.1:502", "") + dev("b", "tcp", "127.0.0.1:502", ""), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := Parse([]byte(tc.src), "t.hcl")
			if tc.want == nil {
				if diags.HasErrors() {
					t.Fatalf("got %v, want no error", diags)
				}
				return
			}
			if len(diags) != 1 {
				t.Fatalf("got %d diagnostics (%v), want 1", len(diags), diags)
			}
			got := (&Error{Diags: diags}).Error()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("got %q, want it to contain %q", got, w)
				}
			}
		})
	}
}

// manyModbusDevices is a gateway.hcl of n Modbus TCP devices of 30 registers each, one port each (TestPeer's
// 1,000-device workload).
func manyModbusDevices(n int) []byte {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "device \"meter-%d\" {\n  driver = \"modbus\"\n  address = \"127.0.0.1:%d\"\n  unit_id = 2\n  interval = \"1s\"\n", i, 20000+i)
		for r := range 30 {
			fmt.Fprintf(&b, "  register \"r%d\" {\n    address = %d\n    type = \"uint16\"\n  }\n", r, r)
		}
		b.WriteString("}\n")
	}
	return []byte(b.String())
}

// BenchmarkParse1000Devices: what loading a 1,000-device config costs (time and allocations per load).
func BenchmarkParse1000Devices(b *testing.B) {
	src := manyModbusDevices(1000)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, diags := Parse(src, "gateway.hcl"); diags.HasErrors() {
			b.Fatal(diags)
		}
	}
}
