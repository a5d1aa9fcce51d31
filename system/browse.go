package system

import (
	"fmt"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors/device"
	"github.com/nats-io/nats.go"
)

// SubjectDevicesBrowse is every device's browse subject, iot.control.devices.{id}.browse, routed like writes
// (writes.go): the control actor's one subscription forwards each request to the device's actor when it is a
// device.Browser (the OPC UA driver), and answers the others at once.
const SubjectDevicesBrowse = "iot.control.devices.*.browse"

// maxWaitingBrowses bounds the browse requests forwarded to one device and not yet taken from its mailbox.
const maxWaitingBrowses = 16

// browseTarget returns the device id of a browse subject.
func browseTarget(subject string) (id string, ok bool) {
	rest, ok := strings.CutPrefix(subject, "iot.control.devices.")
	if !ok {
		return "", false
	}
	id, ok = strings.CutSuffix(rest, ".browse")
	if !ok || id == "" || strings.Contains(id, ".") {
		return "", false
	}
	return id, true
}

// routeBrowse forwards a browse request to the device it names when that device browses, and otherwise answers
// it at once: no such device, a device failed or stopped, a driver that cannot browse, too many waiting.
func (c *control) routeBrowse(ctx actor.SenderContext, msg *nats.Msg, id string) {
	pid, busy := c.rt.tree.forwardBrowse(GroupDevices + "/" + id)
	if pid != nil {
		ctx.Send(pid, &device.Browse{Msg: msg})
		return
	}
	reply := device.BrowseReply{Device: id, Error: fmt.Sprintf("no device %q", id)}
	c.rt.devices.mu.Lock()
	e, known := c.rt.devices.entries[id]
	c.rt.devices.mu.Unlock()
	switch {
	case busy != "":
		reply.Error = fmt.Sprintf("device %q %s", id, busy)
	case known:
		info := c.rt.deviceInfo(e)
		reply.Error = fmt.Sprintf("device %q is %s: nothing answers its browse requests", id, info.State)
		if info.State != StateFailed && info.State != StateStopped {
			reply.Error = fmt.Sprintf("driver %s does not support browsing", e.dev.Driver)
		}
	}
	c.respond(msg, reply)
}
