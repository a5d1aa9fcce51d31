package system

import (
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
func browseTarget(subject string) (id string, ok bool) { return deviceTarget(subject, ".browse") }

// routeBrowse forwards a browse request to the device it names when that device browses, and otherwise answers
// it at once: no such device, a device failed or stopped, a driver that cannot browse, too many waiting.
func (c *control) routeBrowse(ctx actor.SenderContext, msg *nats.Msg, id string) {
	pid, busy := c.rt.tree.forwardBrowse(GroupDevices + "/" + id)
	if pid != nil {
		ctx.Send(pid, &device.Browse{Msg: msg})
		return
	}
	reply := device.BrowseReply{Device: id, Error: c.unrouted(id, busy, "nothing answers its browse requests", "does not support browsing")}
	c.respond(msg, reply)
}
