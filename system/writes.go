package system

import (
	"fmt"
	"slices"
	"strings"

	"github.com/iotgw/iotgw/actors/device"
	"github.com/nats-io/nats.go"
)

// SubjectDevicesWrite is every device's write subject, iot.control.devices.{id}.write. The control actor listens
// on it beside the devices to answer the writes no device will.
const SubjectDevicesWrite = "iot.control.devices.*.write"

// writeTarget returns the device id of a write subject.
func writeTarget(subject string) (id string, ok bool) {
	rest, ok := strings.CutPrefix(subject, "iot.control.devices.")
	if !ok {
		return "", false
	}
	id, ok = strings.CutSuffix(rest, ".write")
	if !ok || id == "" || strings.Contains(id, ".") {
		return "", false
	}
	return id, true
}

// answerWrite answers a write addressed to an id that no running device listens on, so the requester gets an
// error at once instead of waiting out its timeout: no such device, a device failed or stopped for good, or a
// driver that has no write subject. A device whose actor listens on its write subject (running, starting or
// restarting: its subscription outlives restarts) answers itself, and this stays silent.
//
// Both subscriptions receive every write, so the two answers could cross when a device is added or removed at the
// same moment: a device whose node appears just after this check answers too. The requester takes the first reply
// (nats.Conn.Request ignores the others), so at worst a write that raced a hot-add is told "no device" and can be
// retried; a device never gets a write without answering it, and no write waits for a timeout in steady state.
func (c *control) answerWrite(msg *nats.Msg, id string) {
	if n, ok := c.rt.tree.Get(GroupDevices + "/" + id); ok && n.State != StateFailed && n.State != StateStopped &&
		slices.Contains(n.Subjects, msg.Subject) {
		return // the device answers
	}
	reply := device.WriteReply{Device: id, Error: fmt.Sprintf("no device %q", id)}
	c.rt.devices.mu.Lock()
	e, known := c.rt.devices.entries[id]
	c.rt.devices.mu.Unlock()
	if known {
		info := c.rt.deviceInfo(e)
		reply.Error = fmt.Sprintf("device %q is %s: nothing takes its writes", id, info.State)
		if info.State != StateFailed && info.State != StateStopped {
			reply.Error = fmt.Sprintf("driver %s does not support writes", e.dev.Driver)
		}
	}
	c.respond(msg, reply)
}
