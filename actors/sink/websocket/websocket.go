// Package websocket holds the pure half of the gateway's WebSocket endpoint (/ws?subject=…): which subject
// filters a client may stream, and the JSON frame each bus message becomes. The endpoint itself — the HTTP
// handler, one core subscription per connection, the bounded queue and the drop of a slow client — is the
// runtime's (system/websocket.go), beside /metrics, because a connection lives as long as an HTTP request and
// a live view reads core subjects, not a durable inbox; it is not a sink actor of the registry.
//
// It must never let a filter through that could match the gateway's control plane, JetStream's API, the
// server's system account or anybody's reply inbox.
package websocket

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/iotgw/iotgw/actors/sink/jetstream"
	"github.com/iotgw/iotgw/config"
)

// Closed are the subjects no WebSocket client may stream, whatever it is granted: the control plane (requests
// carry device definitions and credentials of sidecars, replies the tree), JetStream's, KV's and the object
// store's API, the system account, and every reply inbox.
var Closed = []string{"iot.control.>", "$JS.>", "$KV.>", "$O.>", "$SYS.>", "$G.>", "_INBOX.>", "iot.raw.>"}

// MaxFilters bounds the subject parameters of one connection; MaxFilterLen one filter.
const (
	MaxFilters   = 8
	MaxFilterLen = 256
)

// ErrFilter is the error of a filter a client may not stream.
var ErrFilter = errors.New("subject filter refused")

// CheckFilter says whether filter may be streamed by a client allowed to read allowed (the data subjects of a
// non-admin NATS user, plus its grants). A filter must be a valid subject (wildcards allowed), covered by one of
// allowed, and must not overlap any Closed subject (a grant of ">" does not open them).
func CheckFilter(filter string, allowed []string) error {
	if len(filter) > MaxFilterLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrFilter, len(filter), MaxFilterLen)
	}
	if err := config.ValidSubject(filter, true); err != nil {
		return fmt.Errorf("%w: %v", ErrFilter, err)
	}
	for _, c := range Closed {
		if Overlap(c, filter) {
			return fmt.Errorf("%w: %q could match %s, which no WebSocket client may read", ErrFilter, filter, c)
		}
	}
	for _, a := range allowed {
		if jetstream.SubjectCovers(a, filter) {
			return nil
		}
	}
	return fmt.Errorf("%w: %q is not within the readable subjects %s", ErrFilter, filter, strings.Join(allowed, ", "))
}

// Overlap says whether some subject matches both a and b (either may have wildcards).
func Overlap(a, b string) bool {
	x, y := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		inX, inY := i < len(x), i < len(y)
		switch {
		case !inX && !inY:
			return true
		case inX && x[i] == ">":
			return inY // > stands for one token or more
		case inY && y[i] == ">":
			return inX
		case !inX || !inY:
			return false
		case x[i] != "*" && y[i] != "*" && x[i] != y[i]:
			return false
		}
	}
}

// AppendFrame appends the JSON frame of one bus message: {"subject":…,"data":…}, data the message's JSON as it
// is (a point, a batch, an alert) or, when the body is not JSON, a string of it.
func AppendFrame(dst []byte, subject string, data []byte) []byte {
	dst = append(dst, `{"subject":`...)
	s, _ := json.Marshal(subject)
	dst = append(dst, s...)
	dst = append(dst, `,"data":`...)
	if json.Valid(data) {
		dst = append(dst, data...)
	} else {
		q, _ := json.Marshal(string(data))
		dst = append(dst, q...)
	}
	return append(dst, '}')
}
