// Package device holds what every device driver shares: the write subject and its request and reply, and small
// helpers. Each driver is a folder below (mock/, modbus/, …); this package must never name one.
package device

import (
	"encoding/json"
	"sort"

	"github.com/nats-io/nats.go"
)

// WriteSubject is where an operator writes a device's register or coil: iot.control.devices.{id}.write. Every
// device actor answers its own write subject (a driver without writes with an error); the control actor answers
// for an id no running device listens on.
func WriteSubject(id string) string { return "iot.control.devices." + id + ".write" }

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

// SortedKeys returns m's keys in order, so tags come out the same way every time.
func SortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
