// Package device holds what every device driver shares: the write subject and its request and reply, and small
// helpers. Each driver is a folder below (mock/, modbus/, …); this package must never name one.
package device

import (
	"encoding/json"

	"github.com/nats-io/nats.go"
)

// WriteSubject is where an operator writes a device's register or coil: iot.control.devices.{id}.write. No
// device subscribes to it: one wildcard subscription of the runtime takes every device's writes and forwards each,
// as a *Write, to the device actor it names when that actor is a Writer, and answers the others itself (no such
// device, a driver without writes), so the number of subscriptions does not grow with the devices.
func WriteSubject(id string) string { return "iot.control.devices." + id + ".write" }

// Write is a write request forwarded to the device actor it names. Msg is the request as it came from the bus:
// answer it with actors.Respond and a WriteReply.
type Write struct{ Msg *nats.Msg }

// Writer is a device actor that takes writes: its Receive handles *Write. The runtime forwards writes only to
// actors that are Writers.
type Writer interface {
	TakesWrites()
}

// WriteRequest is the body of iot.control.devices.{id}.write.
type WriteRequest struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// WriteReply answers a write.
type WriteReply struct {
	OK     bool   `json:"ok"`
	Device string `json:"device"`
	Key    string `json:"key,omitempty"`
	Value  any    `json:"value,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Reply answers a request on msg with v as JSON; a message without a reply subject gets none.
func Reply(msg *nats.Msg, v any) {
	if msg.Reply == "" {
		return
	}
	data, _ := json.Marshal(v)
	_ = msg.Respond(data)
}
