package system

import (
	"fmt"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors/device"
	"github.com/nats-io/nats.go"
)

// SubjectDevicesWrite is every device's write subject, iot.control.devices.{id}.write. The control actor's one
// subscription to it routes every device's writes (see routeWrite); no device subscribes itself.
const SubjectDevicesWrite = "iot.control.devices.*.write"

// maxWaitingWrites bounds the writes forwarded to one device and not yet taken from its mailbox (a device that
// restarts, or waits on a slow Modbus line): past it a write is refused at once rather than queued unbounded.
const maxWaitingWrites = 64

// writeTarget returns the device id of a write subject.
func writeTarget(subject string) (id string, ok bool) { return deviceTarget(subject, ".write") }

// deviceTarget returns the device id of a per-device control subject, iot.control.devices.{id}{suffix}: a write
// (here) or a browse (browse.go).
func deviceTarget(subject, suffix string) (id string, ok bool) {
	rest, ok := strings.CutPrefix(subject, "iot.control.devices.")
	if !ok {
		return "", false
	}
	id, ok = strings.CutSuffix(rest, suffix)
	if !ok || id == "" || strings.Contains(id, ".") {
		return "", false
	}
	return id, true
}

// unrouted says why a per-device request (a write, a browse) was not forwarded to device id: busy is what the
// tree said (too many waiting), nobody is what to say of a failed or stopped device, unsupported of a driver
// without the capability.
func (c *control) unrouted(id, busy, nobody, unsupported string) string {
	c.rt.devices.mu.Lock()
	e, known := c.rt.devices.entries[id]
	c.rt.devices.mu.Unlock()
	switch {
	case busy != "":
		return fmt.Sprintf("device %q %s", id, busy)
	case !known:
		return fmt.Sprintf("no device %q", id)
	}
	if info := c.rt.deviceInfo(e); info.State == StateFailed || info.State == StateStopped {
		return fmt.Sprintf("device %q is %s: %s", id, info.State, nobody)
	}
	return fmt.Sprintf("driver %s %s", e.dev.Driver, unsupported)
}

// routeWrite forwards a write to the actor of the device it names when that is a device.Writer that runs (or
// starts, or restarts: the write waits in its mailbox), and otherwise answers it at once, so the requester never
// waits out its timeout: no such device, a device failed or stopped for good, a driver without writes, or too many
// writes waiting. The routing reads the tree, which the supervisors keep current, so a write that races a hot-add
// or a removal may be told "no device" and can be retried.
func (c *control) routeWrite(ctx actor.SenderContext, msg *nats.Msg, id string) {
	pid, busy := c.rt.tree.forwardWrite(GroupDevices + "/" + id)
	if pid != nil {
		ctx.Send(pid, &device.Write{Msg: msg})
		return
	}
	reply := device.WriteReply{Device: id, Error: c.unrouted(id, busy, "nothing takes its writes", "does not support writes")}
	c.respond(msg, reply)
}
