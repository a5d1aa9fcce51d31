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

// BrowseSubject is where an operator browses a device's address space to find what to configure:
// iot.control.devices.{id}.browse. It is routed as writes are: one wildcard subscription of the runtime forwards
// each request, as a *Browse, to the device actor it names when that actor is a Browser, and answers the others
// itself.
func BrowseSubject(id string) string { return "iot.control.devices." + id + ".browse" }

// Browse is a browse request forwarded to the device actor it names; answer Msg with actors.Respond.
type Browse struct{ Msg *nats.Msg }

// Browser is a device actor that answers browse requests: its Receive handles *Browse.
type Browser interface {
	TakesBrowse()
}

// BrowseRequest is the body of iot.control.devices.{id}.browse; every field may be left out.
type BrowseRequest struct {
	NodeID   string `json:"node_id,omitempty"`   // where to start; the driver's default (OPC UA: the Objects folder)
	Depth    int    `json:"depth,omitempty"`     // levels below it; 0: the driver's default
	MaxNodes int    `json:"max_nodes,omitempty"` // nodes in the reply at most; 0: the driver's default
}

// BrowseReply answers a browse request.
type BrowseReply struct {
	OK        bool         `json:"ok"`
	Device    string       `json:"device"`
	NodeID    string       `json:"node_id,omitempty"` // where it started
	Nodes     []BrowseNode `json:"nodes,omitempty"`
	Truncated bool         `json:"truncated,omitempty"` // max_nodes was reached: narrow node_id or depth
	Error     string       `json:"error,omitempty"`
}

// BrowseNode is one node found by browsing.
type BrowseNode struct {
	NodeID      string `json:"node_id"`
	BrowseName  string `json:"browse_name"`
	DisplayName string `json:"display_name,omitempty"`
	Class       string `json:"class"`               // Object, Variable, Method, …
	DataType    string `json:"data_type,omitempty"` // a variable's, when the server says
	Path        string `json:"path"`                // browse names from the start, joined by "/"
	Depth       int    `json:"depth"`               // 1 for the start's children
}
