package modbus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
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
	ErrTimeout      = errors.New("modbus: no reply in time")
	ErrMismatch     = errors.New("modbus: reply does not match the request") // transaction id, unit id or CRC
	ErrDisconnected = errors.New("modbus: cannot connect")                   // dial or serial port open failed
	ErrDown         = errors.New("modbus: connection down")                  // waiting out the reconnect backoff
	ErrBusy         = errors.New("modbus: transport queue full")
	ErrExpired      = fmt.Errorf("%w: the caller gave up before it was sent", ErrTimeout) // past its Deadline
)

// errOpen marks a serial port that could not be opened (the adapter unplugged, the device busy): like a refused
// TCP connection, the endpoint is unreachable.
var errOpen = errors.New("open serial port")

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
	// Deadline is when the caller gives up waiting for the result (zero: never). A transaction still queued, or
	// still held by a latency fault, at its deadline is answered ErrExpired and never reaches the wire: the queue
	// behind a slow or faulted endpoint does not replay answers nobody waits for.
	Deadline time.Time

	drop     bool            // fault injection: close the connection first
	delay    time.Duration   // fault injection: wait first
	delayEnd <-chan struct{} // closed when the latency fault is cleared: stop waiting
}

// expired says whether the caller has given up on tx.
func (tx *ModbusTx) expired(now time.Time) bool {
	return !tx.Deadline.IsZero() && !now.Before(tx.Deadline)
}

// ModbusTxResult answers a ModbusTx, sent to the actor that asked.
type ModbusTxResult struct {
	Tag  any
	Data []byte // reads: the response's data bytes
	Err  error
	Took time.Duration
}

// transport is the actor of one Modbus endpoint. Its worker goroutine owns the connection and runs the
// transactions one at a time in arrival order, so devices sharing a serial line or a TCP endpoint never
// interleave on the wire; each transaction carries its own device's timeout, so a dead slave costs only its own
// timeout (× its retries) and the others keep their timing.
//
// After a failed connect (ErrDisconnected) the endpoint is down for a backoff that doubles from 100 ms to 5 s;
// transactions in that time fail at once with ErrDown instead of each waiting a connect timeout. A timeout or a
// mismatched reply closes the connection, so a late answer can never be taken for the next request's. The link
// state (Env.Link) follows: disconnected when a connect fails, connected when a transaction reaches the device.
// A transaction whose caller has given up (ModbusTx.Deadline) is dropped, not sent.
type transport struct {
	dev     config.ModbusEndpoint // mode, address, serial settings: what the devices on it agree on
	env     actors.Env
	workers actors.Workers
	queue   chan queued
	faults  actors.Faults
	cuts    map[string]chan struct{} // per latency fault: closed when it is cleared
}

// linkChange is sent by the wire worker when the endpoint becomes reachable or unreachable.
type linkChange struct{ state, detail string }

var _ actors.FaultTarget = (*transport)(nil)

// InjectFault: drop closes the connection before the next transaction(s); latency delays each transaction.
func (t *transport) InjectFault(_ actor.Context, f *actors.Fault) error {
	if f.Kind != actors.FaultDrop && f.Kind != actors.FaultLatency {
		return actors.ErrFaultUnsupported
	}
	t.faults.Add(f)
	if f.Kind == actors.FaultLatency {
		if t.cuts == nil {
			t.cuts = map[string]chan struct{}{}
		}
		if _, ok := t.cuts[f.ID]; !ok {
			t.cuts[f.ID] = make(chan struct{})
		}
	}
	return nil
}

// ClearFault ends a fault. A latency fault's delays end at once, also for the transactions it already holds.
func (t *transport) ClearFault(_ actor.Context, id string) {
	t.faults.Remove(id)
	if c, ok := t.cuts[id]; ok {
		close(c)
		delete(t.cuts, id)
	}
}

type queued struct {
	tx   *ModbusTx
	from *actor.PID
}

// queueSize bounds the transactions waiting for the wire.
const queueSize = 4096

// NewEndpoint returns the producer of the transport actor of a Modbus endpoint (config.ModbusDevice.Endpoint).
func NewEndpoint(ep config.Endpoint, env actors.Env) actor.Producer {
	return NewTransport(ep.Settings.(config.ModbusEndpoint), env)
}

// NewTransport returns the producer of the transport actor of endpoint e.
func NewTransport(e config.ModbusEndpoint, env actors.Env) actor.Producer {
	return func() actor.Actor { return &transport{dev: e, env: env} }
}

func (t *transport) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		t.queue = make(chan queued, queueSize)
		q := t.queue
		t.workers.Go(ctx, "wire", func(done <-chan struct{}, send func(any)) error {
			return t.run(ctx.ActorSystem().Root, q, done, send)
		})
	case *actor.Stopping, *actor.Restarting:
		t.workers.Stop()
	case *linkChange:
		t.env.Link(m.state, m.detail)
	case *ModbusTx:
		// Faults are decided here, on the actor's goroutine, and travel with the transaction to the wire worker.
		if f := t.faults.Hit(actors.FaultDrop); f != nil {
			m.drop = true
		}
		if f := t.faults.Hit(actors.FaultLatency); f != nil {
			m.delay, m.delayEnd = f.Latency, t.cuts[f.ID]
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

func (t *transport) run(root *actor.RootContext, q <-chan queued, done <-chan struct{}, send func(any)) error {
	w := newWire(&t.dev)
	defer w.close()
	link := "" // unknown until the first transaction
	for {
		select {
		case <-done:
			return nil
		case item := <-q:
			start := time.Now()
			if item.tx.expired(start) {
				t.expire(root, item, start)
				continue
			}
			if item.tx.drop {
				w.close()
			}
			if item.tx.delay > 0 {
				timer := time.NewTimer(item.tx.delay)
				select {
				case <-done:
					timer.Stop()
					return nil
				case <-timer.C:
				case <-item.tx.delayEnd: // the fault was cleared: go on at once
					timer.Stop()
				}
				if item.tx.expired(time.Now()) {
					t.expire(root, item, start)
					continue
				}
			}
			data, err := w.do(item.tx)
			if state, detail := linkState(err); state != "" && state != link {
				link = state
				send(&linkChange{state: state, detail: detail})
			}
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

// expire answers a transaction whose caller has given up without sending it.
func (t *transport) expire(root *actor.RootContext, item queued, start time.Time) {
	if item.from != nil {
		root.Send(item.from, &ModbusTxResult{Tag: item.tx.Tag, Err: ErrExpired, Took: time.Since(start)})
	}
}

// linkState is what a transaction's outcome says about the link: connected when the device answered (an
// exception reply too), disconnected when the endpoint could not be reached; "" when it says nothing (a timeout
// on an open connection, the backoff, a garbled reply).
func linkState(err error) (state, detail string) {
	var exc *modbus.ModbusError
	switch {
	case err == nil, errors.As(err, &exc):
		return actors.LinkConnected, ""
	case errors.Is(err, ErrDisconnected):
		return actors.LinkDisconnected, err.Error()
	default:
		return "", ""
	}
}

// wire is the connection of a transport: a goburrow handler, reopened after failures with backoff.
type wire struct {
	dev       *config.ModbusEndpoint
	handler   modbus.ClientHandler
	client    modbus.Client
	setSlave  func(uint8)
	setTime   func(time.Duration)
	downUntil time.Time
	backoff   time.Duration
}

func newWire(d *config.ModbusEndpoint) *wire {
	w := &wire{dev: d}
	switch d.Mode {
	case "rtu":
		h := modbus.NewRTUClientHandler(d.Address)
		h.BaudRate, h.DataBits, h.Parity, h.StopBits = d.Serial.BaudRate, d.Serial.DataBits, d.Serial.Parity, d.Serial.StopBits
		w.handler, w.setSlave, w.setTime = &serialHandler{h}, func(s uint8) { h.SlaveId = s }, func(t time.Duration) { h.Timeout = t }
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
			return nil, fmt.Errorf("%w to %s: %w", ErrDisconnected, w.dev.Address, err)
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
	return errors.As(err, &op) && op.Op == "dial" || errors.Is(err, errOpen)
}

// serialHandler is goburrow's RTU handler with the port's open failure told apart from the transaction's (goburrow
// returns the bare errno of open(2), indistinguishable from a read error).
type serialHandler struct{ *modbus.RTUClientHandler }

func (h *serialHandler) Send(req []byte) ([]byte, error) {
	if err := h.Connect(); err != nil {
		return nil, fmt.Errorf("%w %s: %w", errOpen, h.Address, err)
	}
	return h.RTUClientHandler.Send(req)
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
