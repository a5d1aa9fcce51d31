package device

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/goburrow/modbus"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
)

// Errors of Modbus transactions. A device actor classifies a failed transaction with errors.Is/As: a
// *modbus.ModbusError is an exception reply from the device.
var (
	ErrTimeout  = errors.New("modbus: no reply in time")
	ErrMismatch = errors.New("modbus: reply does not match the request") // transaction id, unit id or CRC
	ErrDown     = errors.New("modbus: connection down")                  // waiting out the reconnect backoff
	ErrBusy     = errors.New("modbus: transport queue full")
)

// ModbusTx is one transaction for a transport actor: a read (functions 1-4) or a write (5, 6, 15, 16).
type ModbusTx struct {
	Slave    uint8
	Function uint8
	Address  uint16
	Quantity uint16
	Value    []byte // writes: the encoded value (2 bytes for 5 and 6, packed bits for 15, registers for 16)
	Timeout  time.Duration
	Retries  int
	Pause    time.Duration // quiet time after the transaction, for devices that need it
	Tag      any           // the caller's correlation, returned in the result

	drop  bool          // fault injection: close the connection first
	delay time.Duration // fault injection: wait first
}

// ModbusTxResult answers a ModbusTx, sent to the actor that asked.
type ModbusTxResult struct {
	Tag  any
	Data []byte // reads: the response's data bytes
	Err  error
	Took time.Duration
}

// TransportName is the actor name of the transport of a device's endpoint: devices with the same mode and address
// (one serial line, one TCP gateway or PLC) share it.
func TransportName(d *config.ModbusDevice) string {
	r := strings.NewReplacer("/", "_", ":", "_", ".", "_")
	return "modbus-" + d.Mode + "-" + r.Replace(d.Address)
}

// transport is the actor of one Modbus endpoint. Its worker goroutine owns the connection and runs the
// transactions one at a time in arrival order, so devices sharing a serial line or a TCP endpoint never
// interleave on the wire; each transaction carries its own device's timeout, so a dead slave costs only its own
// timeout (× its retries) and the others keep their timing.
//
// After a failed connect the endpoint is down for a backoff that doubles from 100 ms to 5 s; transactions in that
// time fail at once with ErrDown instead of each waiting a connect timeout. A timeout or a mismatched reply closes
// the connection, so a late answer can never be taken for the next request's.
type transport struct {
	dev     config.ModbusDevice // the first device on the endpoint: mode, address, serial settings
	env     actors.Env
	workers actors.Workers
	queue   chan queued
	faults  actors.Faults
}

var _ actors.FaultTarget = (*transport)(nil)

// InjectFault: drop closes the connection before the next transaction(s); latency delays each transaction.
func (t *transport) InjectFault(_ actor.Context, f *actors.Fault) error {
	if f.Kind != actors.FaultDrop && f.Kind != actors.FaultLatency {
		return actors.ErrFaultUnsupported
	}
	t.faults.Add(f)
	return nil
}

// ClearFault ends a fault.
func (t *transport) ClearFault(_ actor.Context, id string) { t.faults.Remove(id) }

type queued struct {
	tx   *ModbusTx
	from *actor.PID
}

// queueSize bounds the transactions waiting for the wire.
const queueSize = 4096

// NewTransport returns the producer of the transport actor of d's endpoint.
func NewTransport(d config.ModbusDevice, env actors.Env) actor.Producer {
	return func() actor.Actor { return &transport{dev: d, env: env} }
}

func (t *transport) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		t.queue = make(chan queued, queueSize)
		q := t.queue
		t.workers.Go(ctx, "wire", func(done <-chan struct{}, _ func(any)) error { return t.run(ctx.ActorSystem().Root, q, done) })
	case *actor.Stopping, *actor.Restarting:
		t.workers.Stop()
	case *ModbusTx:
		// Faults are decided here, on the actor's goroutine, and travel with the transaction to the wire worker.
		if f := t.faults.Hit(actors.FaultDrop); f != nil {
			m.drop = true
		}
		if f := t.faults.Hit(actors.FaultLatency); f != nil {
			m.delay = f.Latency
		}
		select {
		case t.queue <- queued{tx: m, from: ctx.Sender()}:
		default:
			if ctx.Sender() != nil {
				ctx.Respond(&ModbusTxResult{Tag: m.Tag, Err: ErrBusy})
			}
		}
	}
}

func (t *transport) run(root *actor.RootContext, q <-chan queued, done <-chan struct{}) error {
	w := newWire(&t.dev)
	defer w.close()
	for {
		select {
		case <-done:
			return nil
		case item := <-q:
			start := time.Now()
			if item.tx.drop {
				w.close()
			}
			if item.tx.delay > 0 {
				select {
				case <-done:
					return nil
				case <-time.After(item.tx.delay):
				}
			}
			data, err := w.do(item.tx)
			if item.from != nil {
				root.Send(item.from, &ModbusTxResult{Tag: item.tx.Tag, Data: data, Err: err, Took: time.Since(start)})
			}
			if item.tx.Pause > 0 {
				select {
				case <-done:
					return nil
				case <-time.After(item.tx.Pause):
				}
			}
		}
	}
}

// wire is the connection of a transport: a goburrow handler, reopened after failures with backoff.
type wire struct {
	dev       *config.ModbusDevice
	handler   modbus.ClientHandler
	client    modbus.Client
	setSlave  func(uint8)
	setTime   func(time.Duration)
	downUntil time.Time
	backoff   time.Duration
}

func newWire(d *config.ModbusDevice) *wire {
	w := &wire{dev: d}
	switch d.Mode {
	case "rtu":
		h := modbus.NewRTUClientHandler(d.Address)
		h.BaudRate, h.DataBits, h.Parity, h.StopBits = d.Serial.BaudRate, d.Serial.DataBits, d.Serial.Parity, d.Serial.StopBits
		w.handler, w.setSlave, w.setTime = h, func(s uint8) { h.SlaveId = s }, func(t time.Duration) { h.Timeout = t }
	case "rtu-over-tcp":
		h := &rtuOverTCP{address: d.Address}
		w.handler, w.setSlave, w.setTime = h, func(s uint8) { h.slave = s }, func(t time.Duration) { h.timeout = t }
	default:
		h := &tcpHandler{modbus.NewTCPClientHandler(d.Address)}
		h.IdleTimeout = time.Minute
		w.handler, w.setSlave, w.setTime = h, func(s uint8) { h.SlaveId = s }, func(t time.Duration) { h.Timeout = t }
	}
	w.client = modbus.NewClient(w.handler)
	return w
}

func (w *wire) close() {
	if c, ok := w.handler.(io.Closer); ok {
		_ = c.Close()
	}
}

func (w *wire) do(tx *ModbusTx) ([]byte, error) {
	if now := time.Now(); now.Before(w.downUntil) {
		return nil, fmt.Errorf("%w: reconnecting to %s in %s", ErrDown, w.dev.Address, w.downUntil.Sub(now).Round(time.Millisecond))
	}
	w.setSlave(tx.Slave)
	w.setTime(tx.Timeout)
	var data []byte
	var err error
	for attempt := 0; attempt <= tx.Retries; attempt++ {
		data, err = w.once(tx)
		if err == nil {
			w.backoff = 0
			return data, nil
		}
		var exc *modbus.ModbusError
		if errors.As(err, &exc) {
			return nil, err // the device answered: retrying will not change its mind
		}
		w.close() // a timeout or a garbled reply: start the next attempt on a fresh connection
		if isConnectError(err) {
			w.backoff = min(max(2*w.backoff, 100*time.Millisecond), 5*time.Second)
			w.downUntil = time.Now().Add(w.backoff)
			return nil, fmt.Errorf("%w: %v", ErrDown, err)
		}
	}
	return nil, classify(err)
}

func (w *wire) once(tx *ModbusTx) ([]byte, error) {
	c := w.client
	switch tx.Function {
	case 1:
		return c.ReadCoils(tx.Address, tx.Quantity)
	case 2:
		return c.ReadDiscreteInputs(tx.Address, tx.Quantity)
	case 3:
		return c.ReadHoldingRegisters(tx.Address, tx.Quantity)
	case 4:
		return c.ReadInputRegisters(tx.Address, tx.Quantity)
	case 5:
		return c.WriteSingleCoil(tx.Address, binary.BigEndian.Uint16(tx.Value))
	case 6:
		return c.WriteSingleRegister(tx.Address, binary.BigEndian.Uint16(tx.Value))
	case 15:
		return c.WriteMultipleCoils(tx.Address, tx.Quantity, tx.Value)
	case 16:
		return c.WriteMultipleRegisters(tx.Address, tx.Quantity, tx.Value)
	default:
		return nil, fmt.Errorf("modbus: function %d not supported", tx.Function)
	}
}

func isConnectError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// classify wraps a transport error with the sentinel that names it.
func classify(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, ErrMismatch):
		return err
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%w: %v", ErrTimeout, err)
	default:
		return err
	}
}

// tcpHandler is goburrow's TCP handler with its reply check classified: a transaction or unit id that does not
// match is ErrMismatch (goburrow returns it as plain text).
type tcpHandler struct{ *modbus.TCPClientHandler }

func (h *tcpHandler) Verify(req, resp []byte) error {
	if err := h.TCPClientHandler.Verify(req, resp); err != nil {
		return fmt.Errorf("%w: %v", ErrMismatch, err)
	}
	return nil
}

// rtuOverTCP frames Modbus RTU (unit, PDU, CRC-16) over a TCP connection, as serial device servers do; goburrow
// v0.1.0 has no such handler. An RTU frame has no length field, so the reply's length is worked out from its
// function code as it arrives.
type rtuOverTCP struct {
	address string
	slave   uint8
	timeout time.Duration
	mu      sync.Mutex
	conn    net.Conn
}

var _ modbus.ClientHandler = (*rtuOverTCP)(nil)

func (h *rtuOverTCP) Encode(pdu *modbus.ProtocolDataUnit) ([]byte, error) {
	adu := make([]byte, 0, len(pdu.Data)+4)
	adu = append(adu, h.slave, pdu.FunctionCode)
	adu = append(adu, pdu.Data...)
	crc := crc16(adu)
	return append(adu, byte(crc), byte(crc>>8)), nil
}

func (h *rtuOverTCP) Decode(adu []byte) (*modbus.ProtocolDataUnit, error) {
	if len(adu) < 4 {
		return nil, fmt.Errorf("%w: rtu frame of %d bytes", ErrMismatch, len(adu))
	}
	n := len(adu)
	if crc := crc16(adu[:n-2]); byte(crc) != adu[n-2] || byte(crc>>8) != adu[n-1] {
		return nil, fmt.Errorf("%w: crc", ErrMismatch)
	}
	return &modbus.ProtocolDataUnit{FunctionCode: adu[1], Data: adu[2 : n-2]}, nil
}

func (h *rtuOverTCP) Verify(req, resp []byte) error {
	if len(resp) < 4 || resp[0] != req[0] {
		return fmt.Errorf("%w: unit id", ErrMismatch)
	}
	return nil
}

func (h *rtuOverTCP) Send(req []byte) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn == nil {
		c, err := net.DialTimeout("tcp", h.address, h.timeout)
		if err != nil {
			return nil, err
		}
		h.conn = c
	}
	if h.timeout > 0 {
		_ = h.conn.SetDeadline(time.Now().Add(h.timeout))
	}
	if _, err := h.conn.Write(req); err != nil {
		return nil, err
	}
	head := make([]byte, 3, 260)
	if _, err := io.ReadFull(h.conn, head); err != nil {
		return nil, err
	}
	var rest int
	switch fn := head[1]; {
	case fn&0x80 != 0:
		rest = 2 // exception code already read as head[2]; CRC follows
	case fn >= 1 && fn <= 4:
		rest = int(head[2]) + 2
	default:
		rest = 5 // echo of address and value/quantity (4 bytes, one already read) + CRC
	}
	resp := head[:3+rest]
	if _, err := io.ReadFull(h.conn, resp[3:]); err != nil {
		return nil, err
	}
	return resp, nil
}

func (h *rtuOverTCP) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn != nil {
		err := h.conn.Close()
		h.conn = nil
		return err
	}
	return nil
}

// crc16 is Modbus RTU's CRC (polynomial 0xA001, initial 0xFFFF), sent low byte first.
func crc16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, x := range b {
		crc ^= uint16(x)
		for i := 0; i < 8; i++ {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}
