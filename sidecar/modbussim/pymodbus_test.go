package modbussim

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/iotgw/iotgw/internal/testenv"
)

// TestPymodbusClient reads the simulator with an independent implementation.
func TestPymodbusClient(t *testing.T) {
	testenv.Pymodbus(t)
	s := startServer(t, Config{Units: []Unit{{ID: 7, Signals: []Signal{
		{Table: Holding, Address: 4, Type: "float32", Order: "CDAB", Value: 123.456},
	}}}})
	s.SetRegister(7, Holding, 0, 1, 2, 0xFFFF, 0x8000)
	s.SetRegister(7, Holding, 6, 6, 7, 8, 9)
	s.SetBit(7, Coil, 0, true, false, true, true)
	s.SetBit(7, Coil, 15, true)

	host, port, _ := net.SplitHostPort(s.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, testenv.Python, "testdata/pymodbus_read.py", host, port, "7").Output()
	if err != nil {
		t.Fatalf("pymodbus_read.py: %v\n%s", err, out)
	}
	var got struct {
		Holding   []uint16
		Coils     []bool
		Exception *int
		Error     string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("decoding %q: %v", out, err)
	}
	if got.Error != "" {
		t.Fatalf("pymodbus: %s", got.Error)
	}
	wantRegs := []uint16{1, 2, 0xFFFF, 0x8000, 0xE979, 0x42F6, 6, 7, 8, 9}
	if !slices.Equal(got.Holding, wantRegs) {
		t.Errorf("holding: got %04X, want %04X", got.Holding, wantRegs)
	}
	wantCoils := make([]bool, 16)
	wantCoils[0], wantCoils[2], wantCoils[3], wantCoils[15] = true, true, true, true
	if !slices.Equal(got.Coils, wantCoils) {
		t.Errorf("coils: got %v, want %v", got.Coils, wantCoils)
	}
	if got.Exception == nil || *got.Exception != 2 {
		t.Errorf("read past the end: got exception %v, want 2", got.Exception)
	}
}
