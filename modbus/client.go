package modbus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/goburrow/modbus"
	"github.com/iotgw/iotgw/internal/backoff"
)

// Errors of Client.Do. An exception reply from the device is a *modbus.ModbusError (goburrow's); ErrorKind
// names each for events and metrics.
var (
	ErrTimeout      = errors.New("modbus: no reply in time")
	ErrMismatch     = errors.New("modbus: reply does not match the request") // transaction id, unit id or CRC
	ErrDisconnected = errors.New("modbus: cannot connect")                   // dial or serial port open failed
	ErrDown         = errors.New("modbus: connection down")                  // waiting out the reconnect backoff
	ErrMode         = errors.New("modbus: unknown mode")
	ErrStopped      = fmt.Errorf("%w: the client was interrupted", ErrDown) // after Interrupt: no further attempt
)

// errOpen marks a serial port that could not be opened (the adapter unplugged, the device busy): like a refused
// TCP connection, the endpoint is unreachable.
var errOpen = errors.New("open serial port")

// The modes of an Endpoint.
const (
	ModeTCP        = "tcp"          // Modbus TCP (MBAP header)
	ModeRTU        = "rtu"          // Modbus RTU on a serial line
	ModeRTUOverTCP = "rtu-over-tcp" // RTU frames over a TCP connection, as serial device servers forward them
)

// Endpoint is where a Client connects and how: the connection settings the direct driver and the reference
// sidecar share.
type Endpoint struct {
	Mode    string // ModeTCP (also when empty), ModeRTU or ModeRTUOverTCP
	Address string // host:port, or the serial device (/dev/ttyUSB0) for ModeRTU
	Serial  Serial // ModeRTU only
}

// Serial is a serial line's settings; a zero field takes the default of 9600 baud, 8 data bits, parity N, 1 stop bit.
type Serial struct {
	BaudRate int
	DataBits int
	Parity   string // N, E or O
	StopBits int
}

// Call is one transaction: a read (functions 1-4) or a write (5, 6, 15, 16).
type Call struct {
	Slave    uint8
	Function uint8
	Address  uint16
	Quantity uint16
	Value    []byte        // writes: the encoded value (2 bytes for 5 and 6, packed bits for 15, registers for 16)
	Timeout  time.Duration // per attempt
	Retries  int           // extra attempts after a timeout or a garbled reply; an exception reply is final
}

// reconnect is the wait after a failed connect, during which calls fail at once with ErrDown.
var reconnect = backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}

// Client is the gateway's one Modbus client: its own framing for Modbus TCP (tcp.go: one write and one read per
// transaction, nothing allocated), goburrow/modbus for RTU, and RTU over TCP, which goburrow lacks, on goburrow's
// PDU client. It retries a call that timed out or got a garbled reply on a fresh connection (a late answer is never
// taken for the next request's), and after a failed connect it reports the endpoint down (ErrDown) for a
// backoff doubling from 100 ms to 5 s instead of making every call wait out a connect timeout.
//
// A Client runs one call at a time and is not safe for concurrent use: devices that share a line or an endpoint
// share one Client through one owner (the driver's transport actor, the sidecar's poller), so their requests
// never interleave on the wire.
type Client struct {
	ep        Endpoint
	handler   io.Closer     // the connection of the mode: goburrow's RTU handler, rtuOverTCP, or tcp
	client    modbus.Client // RTU and RTU over TCP: goburrow's PDU client on the handler
	tcp       *tcpClient    // ModeTCP: the client's own framing (tcp.go)
	setSlave  func(uint8)
	setTime   func(time.Duration)
	downUntil time.Time
	wait      backoff.Backoff
	stopped   atomic.Bool
}

// NewClient returns a client for e; it connects at the first call.
func NewClient(e Endpoint) (*Client, error) {
	c := &Client{ep: e, wait: backoff.Backoff{Policy: reconnect}}
	switch e.Mode {
	case ModeRTU:
		h := modbus.NewRTUClientHandler(e.Address)
		s := e.Serial
		h.BaudRate, h.DataBits, h.Parity, h.StopBits = or(s.BaudRate, 9600), or(s.DataBits, 8), or(s.Parity, "N"), or(s.StopBits, 1)
		sh := &serialHandler{h}
		c.handler, c.client, c.setSlave, c.setTime = sh, modbus.NewClient(sh), func(s uint8) { h.SlaveId = s }, func(t time.Duration) { h.Timeout = t }
	case ModeRTUOverTCP:
		h := &rtuOverTCP{address: e.Address}
		c.handler, c.client, c.setSlave, c.setTime = h, modbus.NewClient(h), func(s uint8) { h.slave = s }, func(t time.Duration) { h.timeout = t }
	case ModeTCP, "":
		h := &tcpClient{address: e.Address, idle: time.Minute}
		c.handler, c.tcp, c.setSlave, c.setTime = h, h, func(s uint8) { h.slave = s }, func(t time.Duration) { h.timeout = t }
	default:
		return nil, fmt.Errorf("%w %q (want %s, %s or %s)", ErrMode, e.Mode, ModeTCP, ModeRTU, ModeRTUOverTCP)
	}
	return c, nil
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Close closes the connection; the next call opens a new one.
func (c *Client) Close() {
	_ = c.handler.Close()
}

// Interrupt stops the client for good, from any goroutine: a TCP or RTU-over-TCP call blocked on the connection
// returns at once, and no further attempt or connection is made (ErrStopped). goburrow's serial handler cannot be
// cut short: on a serial line the attempt in hand runs out its timeout. An owner that stops (the transport actor)
// calls it so a silent peer cannot hold the stop for timeout × (retries+1).
func (c *Client) Interrupt() {
	c.stopped.Store(true)
	if h, ok := c.handler.(interface{ interrupt() }); ok {
		h.interrupt()
	}
}

// Do runs call and returns the data of the reply in a slice of its own: a read's data bytes, a write's echo.
func (c *Client) Do(call Call) ([]byte, error) { return c.DoAppend(nil, call) }

// DoAppend is Do with the reply's data appended to dst: over Modbus TCP a call into a dst with room for the reply
// allocates nothing (the driver's transport passes each request's own buffer).
func (c *Client) DoAppend(dst []byte, call Call) ([]byte, error) {
	if now := time.Now(); now.Before(c.downUntil) {
		return nil, fmt.Errorf("%w: reconnecting to %s in %s", ErrDown, c.ep.Address, c.downUntil.Sub(now).Round(time.Millisecond))
	}
	c.setSlave(call.Slave)
	c.setTime(call.Timeout)
	var data []byte
	var err error
	for attempt := 0; attempt <= call.Retries; attempt++ {
		if c.stopped.Load() {
			return nil, ErrStopped
		}
		data, err = c.once(dst, &call)
		if err == nil {
			c.wait.Reset()
			return data, nil
		}
		var exc *modbus.ModbusError
		if errors.As(err, &exc) {
			return nil, err // the device answered: retrying will not change its mind
		}
		c.Close() // a timeout or a garbled reply: start the next attempt on a fresh connection
		if isConnectError(err) {
			c.downUntil = time.Now().Add(c.wait.Next())
			return nil, fmt.Errorf("%w to %s: %w", ErrDisconnected, c.ep.Address, err)
		}
	}
	return nil, classify(err)
}

func (c *Client) once(dst []byte, call *Call) ([]byte, error) {
	if c.tcp != nil {
		return c.tcp.do(dst, call)
	}
	data, err := c.goburrow(call)
	if err != nil {
		return nil, err
	}
	return append(dst, data...), nil
}

func (c *Client) goburrow(call *Call) ([]byte, error) {
	m := c.client
	switch call.Function {
	case FuncCoils:
		return m.ReadCoils(call.Address, call.Quantity)
	case FuncDiscreteInputs:
		return m.ReadDiscreteInputs(call.Address, call.Quantity)
	case FuncHoldingRegisters:
		return m.ReadHoldingRegisters(call.Address, call.Quantity)
	case FuncInputRegisters:
		return m.ReadInputRegisters(call.Address, call.Quantity)
	case 5:
		return m.WriteSingleCoil(call.Address, binary.BigEndian.Uint16(call.Value))
	case 6:
		return m.WriteSingleRegister(call.Address, binary.BigEndian.Uint16(call.Value))
	case 15:
		return m.WriteMultipleCoils(call.Address, call.Quantity, call.Value)
	case 16:
		return m.WriteMultipleRegisters(call.Address, call.Quantity, call.Value)
	default:
		return nil, fmt.Errorf("modbus: function %d not supported", call.Function)
	}
}

func isConnectError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" || errors.Is(err, errOpen)
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

// ErrorKind is the one classifier of a failed Modbus call, for events, metrics and status: "exception" (the
// device answered with an exception code), "timeout", "mismatch" (a reply to another request), "down" (waiting
// out the reconnect backoff), "disconnected" (the connection was refused, reset or closed), "canceled",
// "invalid_reply" (a reply too short, or one goburrow's checks of sizes and codes refused), and "" for nil.
// Callers with failures of their own (a full queue, an injected fault) name those first.
func ErrorKind(err error) string {
	if err == nil {
		return "" // before the targets of errors.As: they escape, and a call per good request would allocate
	}
	var exc *modbus.ModbusError
	var ne net.Error
	switch {
	case errors.As(err, &exc):
		return "exception"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrMismatch):
		return "mismatch"
	case errors.Is(err, ErrDown):
		return "down"
	case errors.Is(err, ErrShortResponse):
		return "invalid_reply"
	case errors.Is(err, ErrDisconnected): // before the timeouts: a dial that timed out is a connect failure
		return "disconnected"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "disconnected"
	default:
		return "invalid_reply" // goburrow's checks of a reply's sizes and codes
	}
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

// link is a TCP connection that an owner may close from another goroutine while a call is blocked on it; once
// interrupted it opens no new one. Only the client's caller dials and sends.
type link struct {
	mu     sync.Mutex
	conn   net.Conn
	closed bool
}

// dial returns the open connection, or opens one.
func (l *link) dial(address string, timeout time.Duration) (net.Conn, error) {
	l.mu.Lock()
	c, closed := l.conn, l.closed
	l.mu.Unlock()
	switch {
	case closed:
		return nil, ErrStopped
	case c != nil:
		return c, nil
	}
	c, err := net.DialTimeout("tcp", address, timeout)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed { // interrupted while dialling
		_ = c.Close()
		return nil, ErrStopped
	}
	l.conn = c
	return c, nil
}

// Close closes the connection; the next call opens a new one.
func (l *link) Close() error {
	l.mu.Lock()
	c := l.conn
	l.conn = nil
	l.mu.Unlock()
	if c != nil {
		return c.Close()
	}
	return nil
}

// interrupt closes the connection for good: a read or write blocked on it returns at once.
func (l *link) interrupt() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	_ = l.Close()
}

// rtuOverTCP frames Modbus RTU (unit, PDU, CRC-16) over a TCP connection, as serial device servers do; goburrow
// v0.1.0 has no such handler. An RTU frame has no length field, so the reply's length is worked out from its
// function code as it arrives.
type rtuOverTCP struct {
	address string
	slave   uint8
	timeout time.Duration
	link    link
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
	c, err := h.link.dial(h.address, h.timeout)
	if err != nil {
		return nil, err
	}
	if h.timeout > 0 {
		_ = c.SetDeadline(time.Now().Add(h.timeout))
	}
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	head := make([]byte, 3, 260)
	if _, err := io.ReadFull(c, head); err != nil {
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
	if _, err := io.ReadFull(c, resp[3:]); err != nil {
		return nil, err
	}
	return resp, nil
}

func (h *rtuOverTCP) Close() error { return h.link.Close() }
func (h *rtuOverTCP) interrupt()   { h.link.interrupt() }

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
