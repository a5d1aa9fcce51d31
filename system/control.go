package system

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	actorsidecar "github.com/iotgw/iotgw/actors/sidecar"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// Control subjects (request/reply, JSON).
const (
	SubjectPing          = "iot.control.ping"
	SubjectTree          = "iot.control.tree"
	SubjectDevicesList   = "iot.control.devices.list"
	SubjectDevicesGet    = "iot.control.devices.get"
	SubjectDevicesAdd    = "iot.control.devices.add"
	SubjectDevicesUpdate = "iot.control.devices.update"
	SubjectDevicesRemove = "iot.control.devices.remove"
	SubjectFaultsInject  = "iot.control.faults.inject"
	SubjectFaultsClear   = "iot.control.faults.clear"
	SubjectFaultsList    = "iot.control.faults.list"
	SubjectReload        = "iot.control.reload"
	SubjectActorsRestart = "iot.control.actors.restart"
)

// control is the actor behind iot.control.>: it answers requests about the running gateway. It is an actor with a
// subject mailbox like any other, supervised under the root.
type control struct {
	rt  *Runtime
	log zerolog.Logger
}

var _ actors.Listener = (*control)(nil)

func newControl(rt *Runtime) actor.Producer {
	return func() actor.Actor {
		return &control{rt: rt, log: rt.log.With().Str("actor", "control").Logger()}
	}
}

func (c *control) Inboxes() []actors.Inbox {
	subjects := []string{SubjectPing, SubjectTree, SubjectDevicesList, SubjectDevicesGet, SubjectDevicesAdd,
		SubjectDevicesUpdate, SubjectDevicesRemove, SubjectFaultsInject, SubjectFaultsClear, SubjectFaultsList, SubjectReload,
		SubjectActorsRestart, SubjectDevicesWrite, SubjectDevicesBrowse, SubjectSinksList, SubjectSinksGet}
	subjects = append(subjects, ruleSubjects...) // rules.go
	// And every request addressed to this gateway alone (actors.GatewayControl), in one inbox: an addressed
	// subject that is no request gets "unknown control subject", where a plain one gets no answer at all.
	subjects = append(subjects, actors.GatewayControl(c.rt.cfg.Gateway.ID, actors.ControlPrefix+">"))
	in := make([]actors.Inbox, len(subjects))
	for i, s := range subjects {
		in[i] = actors.Inbox{Subject: s}
	}
	return in
}

// Pong is the reply to iot.control.ping.
type Pong struct {
	Pong      bool    `json:"pong"`
	Gateway   string  `json:"gateway"`
	Version   string  `json:"version"`
	UptimeS   float64 `json:"uptime_s"`
	Timestamp int64   `json:"timestamp"`
}

// ErrorReply is the reply to a control request that failed.
type ErrorReply struct {
	Error string `json:"error"`
}

func (c *control) Receive(ctx actor.Context) {
	msg, ok := ctx.Message().(*nats.Msg)
	if !ok {
		return
	}
	subject := actors.LocalControl(c.rt.cfg.Gateway.ID, msg.Subject) // the same request, addressed or not
	if strings.HasPrefix(subject, actorsidecar.StatusPrefix) {
		// Addressed to a sidecar's own actor, which answers it (actors/sidecar: its inbox has both forms). Only the
		// addressed form reaches this actor, and it names one gateway: when that gateway runs no such sidecar, it
		// says so at once rather than leave the request to time out (the plain form, with no sidecar behind it,
		// gets the server's "no responders").
		name := strings.TrimSuffix(strings.TrimPrefix(subject, actorsidecar.StatusPrefix), ".status")
		if _, ok := c.rt.tree.Get(GroupSidecars + "/" + name); !ok {
			c.respond(msg, ErrorReply{Error: "no sidecar " + strconv.Quote(name) + " on gateway " + strconv.Quote(c.rt.cfg.Gateway.ID)})
		}
		return
	}
	if id, ok := writeTarget(subject); ok { // see writes.go
		c.routeWrite(ctx, msg, id)
		return
	}
	if id, ok := browseTarget(subject); ok { // see browse.go
		c.routeBrowse(ctx, msg, id)
		return
	}
	var reply any
	switch subject {
	case SubjectPing:
		reply = Pong{
			Pong: true, Gateway: c.rt.cfg.Gateway.ID, Version: Version,
			UptimeS: time.Since(c.rt.started).Seconds(), Timestamp: time.Now().UnixNano(),
		}
	case SubjectTree:
		reply = c.rt.withRuleFigures(c.rt.tree.Snapshot()) // rules.go
	case SubjectDevicesList:
		reply = c.rt.listDevices()
	case SubjectDevicesGet:
		reply = c.rt.getDevice(msg.Data)
	case SubjectDevicesAdd:
		reply = c.rt.addDevice(msg.Data, false)
	case SubjectDevicesUpdate:
		reply = c.rt.addDevice(msg.Data, true)
	case SubjectDevicesRemove:
		reply = c.rt.removeDevice(msg.Data)
	case SubjectFaultsInject:
		reply = c.rt.faults.inject(msg.Data)
	case SubjectFaultsClear:
		reply = c.rt.faults.clear(msg.Data)
	case SubjectFaultsList:
		reply = c.rt.faults.list()
	case SubjectReload:
		reply = c.rt.Reload()
	case SubjectActorsRestart:
		reply = c.rt.restartRequest(msg.Data)
	case SubjectSinksList:
		reply = c.rt.listSinks()
	case SubjectSinksGet:
		reply = c.rt.getSink(msg.Data)
	default:
		var ok bool
		if reply, ok = c.rt.controlRules(subject, msg.Data); !ok { // rules.go
			reply = ErrorReply{Error: "unknown control subject " + msg.Subject}
		}
	}
	c.respond(msg, reply)
}

func (c *control) respond(msg *nats.Msg, v any) { actors.Respond(c.log, msg, v) }

// restartRequest reads {"path":"devices/plc-1"} and restarts that actor.
func (r *Runtime) restartRequest(body []byte) ControlReply {
	var req struct {
		Path string `json:"path"`
	}
	if len(body) > 4<<10 {
		return failure("request of %d bytes: at most 4096", len(body))
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return failure(`request is not {"path":"…"}: %v`, err)
	}
	path := strings.Trim(req.Path, "/")
	if path == "" {
		return failure(`request lacks "path", the path of an actor like devices/plc-1 (see iot.control.tree)`)
	}
	if err := r.RestartActor(path); err != nil {
		return failure("restart %s: %v", path, err)
	}
	state := StateStopped
	if n, ok := r.tree.Get(path); ok {
		state = n.State
	}
	r.log.Info().Str("actor", path).Str("state", state).Msg("actor restarted through the control plane")
	return ControlReply{OK: true, Path: path, State: state}
}

// RequestReload asks the control actor to reload the config file, as SIGHUP does, so that reloads and the other
// control requests take turns. The reply's problems come back as the error: an invalid file with each of its
// diagnostics (file:line:column), or the components that failed to start and were rolled back.
func (r *Runtime) RequestReload(timeout time.Duration) error {
	msg, err := r.bus.Conn.Request(SubjectReload, nil, timeout)
	if err != nil {
		return fmt.Errorf("request %s: %w", SubjectReload, err)
	}
	var reply ControlReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return fmt.Errorf("reply on %s: %w", SubjectReload, err)
	}
	if reply.OK {
		return nil
	}
	problems := []string{reply.Error}
	for _, d := range reply.Diagnostics {
		p := d.Summary
		if d.Detail != "" {
			p += ": " + d.Detail
		}
		if d.Pos != "" {
			p = d.Pos + ": " + p
		}
		problems = append(problems, p)
	}
	if reply.Reload != nil {
		problems = append(problems, reply.Reload.Failed...)
	}
	return errors.New(strings.Join(problems, "; "))
}
