package modbussim_test

import (
	"context"
	"fmt"
	"time"

	"github.com/goburrow/modbus"

	"github.com/iotgw/iotgw/sidecar/modbussim"
)

// A fault-injection test: run the demo device, read it, then make unit 1
// busy and watch the client get exception 6.
func Example() {
	cfg := modbussim.Demo()
	cfg.Listen = "127.0.0.1:0"
	s, err := modbussim.New(cfg)
	if err != nil {
		panic(err)
	}
	if err := s.Start(context.Background()); err != nil {
		panic(err)
	}
	defer s.Stop()

	// A known float32 (123.456, ABCD) in the boiler's free registers.
	regs, _ := modbussim.Encode("float32", "ABCD", 123.456)
	s.SetRegister(1, modbussim.Holding, 100, regs...)

	h := modbus.NewTCPClientHandler(s.Addr().String())
	h.SlaveId = 1
	h.Timeout = 5 * time.Second
	defer h.Close()
	c := modbus.NewClient(h)

	b, err := c.ReadHoldingRegisters(100, 2)
	fmt.Printf("% X %v\n", b, err)

	s.SetFaults(modbussim.Fault{Kind: modbussim.FaultException, Unit: 1, Exception: 6})
	_, err = c.ReadHoldingRegisters(100, 2)
	fmt.Println(err)

	s.ClearFaults()
	b, err = c.ReadHoldingRegisters(100, 2)
	fmt.Printf("% X %v\n", b, err)
	// Output:
	// 42 F6 E9 79 <nil>
	// modbus: exception '6' (server device busy), function '131'
	// 42 F6 E9 79 <nil>
}
