package isp

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Defaults of the protocol and of Client and Server.
const (
	DefaultPort                 = 50052
	DefaultMaxLineSize          = 1 << 20 // bytes in one line, not counting its line ending
	DefaultHeartbeatInterval    = 15 * time.Second
	DefaultMaxMissedHeartbeats  = 3                // silence longer than this many intervals ends a connection
	DefaultWriteTimeout         = 10 * time.Second // one line must be written within this, or the connection is broken
	DefaultDialTimeout          = 5 * time.Second
	DefaultRequestTimeout       = 10 * time.Second
	DefaultServerAddress        = "127.0.0.1:50052" // loopback: a sidecar serves the gateway beside it
	maxNesting                  = 64                // depth of JSON a line may hold, so a hostile line costs bounded stack
	maxRegisterQuantity         = 125
	maxRegisterFunction         = 4
	defaultReaderBufferSize     = 4096
	maxRetainedWriterBufferSize = 4 * DefaultMaxLineSize
)

// Message types. The seed defines the first five; METRICS is iotgw's addition (sidecar → gateway counters).
const (
	TypeConfig    = "CONFIG"    // gateway → sidecar, payload ConfigPayload, answered by a RESPONSE
	TypeData      = "DATA"      // sidecar → gateway, payload {"points":[…]}
	TypeStatus    = "STATUS"    // gateway → sidecar request, answered by a RESPONSE
	TypeResponse  = "RESPONSE"  // both ways, payload Response, id of the request it answers
	TypeHeartbeat = "HEARTBEAT" // both ways; one with an id is answered by a success RESPONSE
	TypeMetrics   = "METRICS"   // sidecar → gateway, payload MetricsPayload
)

// Message is one line of the protocol. The JSON field order on the wire is type, id, timestamp, payload.
type Message struct {
	Type      string          `json:"type"`
	ID        string          `json:"id,omitempty"`      // pairs a request with its RESPONSE
	Timestamp int64           `json:"timestamp"`         // Unix nanoseconds
	Payload   json.RawMessage `json:"payload,omitempty"` // nil when absent or null
}

// Clone returns a copy of m that shares no memory with it. Use it to keep a message a LineReader returned
// beyond the next call to Next.
func (m *Message) Clone() *Message {
	c := *m
	if m.Payload != nil {
		c.Payload = append(json.RawMessage(nil), m.Payload...)
	}
	return &c
}

// Response decodes the payload of a RESPONSE message. Fields beside success and error stay in m.Payload.
func (m *Message) Response() (*Response, error) {
	if m.Type != TypeResponse {
		return nil, fmt.Errorf("isp: %s message is not a %s", m.Type, TypeResponse)
	}
	var r Response
	if len(m.Payload) == 0 {
		return nil, fmt.Errorf("isp: %s %q: %w", m.Type, m.ID, ErrMissingField)
	}
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		return nil, fmt.Errorf("isp: %s %q: %w: %v", m.Type, m.ID, ErrBadPayload, err)
	}
	return &r, nil
}

// ConfigPayload is the payload of a CONFIG message: what a (Modbus) sidecar polls and how often.
type ConfigPayload struct {
	Mode       string     `json:"mode"`    // tcp, rtu, rtu-over-tcp for Modbus; other sidecars define their own
	Address    string     `json:"address"` // host:port or serial device
	TimeoutMS  int        `json:"timeout_ms"`
	IntervalMS int        `json:"interval_ms"`
	Registers  []Register `json:"registers"`
	// iotgw's additions, the connection settings of the direct Modbus driver; a sidecar that does not know them
	// ignores them.
	Retries int     `json:"retries,omitempty"` // extra attempts of a request that timed out or got a garbled reply
	Serial  *Serial `json:"serial,omitempty"`  // the serial line of mode rtu; absent: 9600 8N1
}

// Serial is a serial line's settings in a CONFIG. A zero field takes its default (9600, 8, "N", 1).
type Serial struct {
	BaudRate int    `json:"baud_rate,omitempty"`
	DataBits int    `json:"data_bits,omitempty"`
	Parity   string `json:"parity,omitempty"` // N, E or O
	StopBits int    `json:"stop_bits,omitempty"`
}

// Register is one value a sidecar polls.
type Register struct {
	Key      string            `json:"key"`
	Address  uint16            `json:"address"`
	Quantity uint16            `json:"quantity"` // registers (or coils) to read, 1..125
	Type     string            `json:"type"`     // see RegisterTypes
	Function uint8             `json:"function"` // Modbus function code 1..4
	Scale    float64           `json:"scale,omitempty"`
	DeviceID uint8             `json:"device_id"`
	Tags     map[string]string `json:"tags,omitempty"`
}

// RegisterTypes are the values Register.Type may take.
var RegisterTypes = []string{"bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"}

// ErrInvalidConfig is wrapped by every error ConfigPayload.Validate returns.
var ErrInvalidConfig = errors.New("isp: invalid config")

// Validate checks what a sidecar cannot work without. It collects every problem, not only the first; each
// names the register by index and field, e.g. `registers[2].function: 7 is not in 1..4`. The mode is free-form
// (not only Modbus's tcp, rtu and rtu-over-tcp) but must be set. A config without registers is valid.
func (c *ConfigPayload) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.Mode == "" {
		add("mode: missing")
	}
	if c.TimeoutMS < 0 {
		add("timeout_ms: %d is negative", c.TimeoutMS)
	}
	if c.IntervalMS < 0 {
		add("interval_ms: %d is negative", c.IntervalMS)
	}
	if c.Retries < 0 {
		add("retries: %d is negative", c.Retries)
	}
	if sp := c.Serial; sp != nil {
		if sp.BaudRate < 0 || sp.DataBits < 0 || sp.StopBits < 0 {
			add("serial: baud_rate %d, data_bits %d, stop_bits %d: none may be negative", sp.BaudRate, sp.DataBits, sp.StopBits)
		}
		if sp.Parity != "" && sp.Parity != "N" && sp.Parity != "E" && sp.Parity != "O" {
			add("serial.parity: %q is not N, E or O", sp.Parity)
		}
	}
	seen := make(map[string]int, len(c.Registers))
	for i := range c.Registers {
		r := &c.Registers[i]
		if r.Key == "" {
			add("registers[%d].key: missing", i)
		} else if j, dup := seen[r.Key]; dup {
			add("registers[%d].key: %q is also registers[%d].key", i, r.Key, j)
		} else {
			seen[r.Key] = i
		}
		if r.Function < 1 || r.Function > maxRegisterFunction {
			add("registers[%d].function: %d is not in 1..%d", i, r.Function, maxRegisterFunction)
		}
		if r.Quantity < 1 || r.Quantity > maxRegisterQuantity {
			add("registers[%d].quantity: %d is not in 1..%d", i, r.Quantity, maxRegisterQuantity)
		}
		if !validRegisterType(r.Type) {
			add("registers[%d].type: %q is not one of %v", i, r.Type, RegisterTypes)
		}
	}
	return errors.Join(errs...)
}

func validRegisterType(t string) bool {
	for _, s := range RegisterTypes {
		if t == s {
			return true
		}
	}
	return false
}

// Response is the payload of a RESPONSE message. A STATUS reply usually carries more fields than these; they
// are in the Message's Payload, which Client.Status returns whole.
type Response struct {
	Success bool            `json:"success"`
	Error   string          `json:"error,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// MetricsPayload is the payload of a METRICS message: counters a sidecar reports, by name.
type MetricsPayload struct {
	Counters map[string]float64 `json:"counters"`
}

// appendMessage appends m as one line, newline included. The payload must be compact JSON (no raw newline).
func appendMessage(dst []byte, typ, id string, ts int64, payload []byte) []byte {
	dst = append(dst, `{"type":`...)
	dst = appendString(dst, typ)
	if id != "" {
		dst = append(dst, `,"id":`...)
		dst = appendString(dst, id)
	}
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	if len(payload) > 0 {
		dst = append(dst, `,"payload":`...)
		dst = append(dst, payload...)
	}
	return append(dst, '}', '\n')
}

// appendResponsePayload appends {"success":…,"error":…} (error omitted when empty).
func appendResponsePayload(dst []byte, success bool, errMsg string) []byte {
	if success {
		dst = append(dst, `{"success":true`...)
	} else {
		dst = append(dst, `{"success":false`...)
	}
	if errMsg != "" {
		dst = append(dst, `,"error":`...)
		dst = appendString(dst, errMsg)
	}
	return append(dst, '}')
}
