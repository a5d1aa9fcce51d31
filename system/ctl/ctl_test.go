package ctl

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/iotgw/internal/testca"
	"github.com/iotgw/iotgw/system"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// startCtlServer runs an embedded NATS server on a random port, like nats-server's RunBasicServer.
func startCtlServer(t *testing.T, opts server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, true
	s, err := server.NewServer(&opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats server did not start")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// ctlResponder stands in for the gateway's control plane: it answers every iot.control.> request with one canned
// reply and records what it was asked. An empty reply means no answer at all, to make the client time out.
type ctlResponder struct {
	mu    sync.Mutex
	reply string
	got   []*nats.Msg
}

func startCtlResponder(t *testing.T, url string, opts ...nats.Option) *ctlResponder {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	r := &ctlResponder{}
	_, err = nc.Subscribe("iot.control.>", func(m *nats.Msg) {
		r.mu.Lock()
		r.got = append(r.got, m)
		reply := r.reply
		r.mu.Unlock()
		if reply != "" {
			_ = m.Respond([]byte(reply))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // the subscription is in place before any request
		t.Fatal(err)
	}
	return r
}

// set arms the next reply and returns the requests seen since the last call.
func (r *ctlResponder) set(reply string) []*nats.Msg {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.reply, r.got = reply, nil
	return got
}

func runCtl(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

const ctlTreeReply = `{"name":"root","path":"root","kind":"supervisor","state":"running","restarts":0,"children":[
 {"name":"control","path":"control","kind":"control","state":"running","restarts":0,"subjects":["iot.control.ping"],
  "mailbox":{"capacity":64,"depth":0,"pending":0,"delivered":3,"blocked":0,"dropped":0}},
 {"name":"devices","path":"devices","kind":"supervisor","state":"running","restarts":0,"children":[
  {"name":"plc-1","path":"devices/plc-1","kind":"modbus","state":"restarting","restarts":3,
   "last_error":"dial tcp 10.0.0.5:502:\n  connection refused","last_error_at":"2025-01-02T03:04:05Z"},
  {"name":"boiler-2","path":"devices/boiler-2","kind":"modbus","state":"failed","restarts":10,"last_error":"panic: boom"}]},
 {"name":"sinks","path":"sinks","kind":"supervisor","state":"running","restarts":0,"children":[
  {"name":"file","path":"sinks/file","kind":"sink","state":"running","restarts":0}]}]}`

const ctlTreeDrawing = `ACTOR             KIND        STATE       RESTARTS  LAST ERROR
root              supervisor  running     0
├── control       control     running     0
├── devices       supervisor  running     0
│   ├── plc-1     modbus      restarting  3         dial tcp 10.0.0.5:502: connection refused
│   └── boiler-2  modbus      failed      10        panic: boom
└── sinks         supervisor  running     0
    └── file      sink        running     0
`

const ctlDevicesReply = `{"ok":true,"devices":[
 {"id":"plc-1","driver":"modbus","source":"config","state":"running","restarts":0},
 {"id":"boiler-2","driver":"modbus","source":"runtime","state":"restarting","restarts":2}]}`

const ctlDevicesTable = `ID        DRIVER  SOURCE   STATE       RESTARTS
plc-1     modbus  config   running     0
boiler-2  modbus  runtime  restarting  2
`

const ctlDeviceHCL = "device \"plc-9\" {\n  driver = \"modbus\"\n  address = \"10.0.0.9:502\"\n}\n"

func TestCtlCommands(t *testing.T) {
	s := startCtlServer(t, server.Options{})
	url := s.ClientURL()
	resp := startCtlResponder(t, url)
	devFile := filepath.Join(t.TempDir(), "dev.hcl")
	if err := os.WriteFile(devFile, []byte(ctlDeviceHCL), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name        string
		args        []string // after "iotgw ctl -s URL"
		reply       string
		wantSubject string // "" when nothing may be sent
		wantBody    string
		wantCode    int
		wantOut     string // the whole stdout, when set
		wantErr     string // in stderr, when set
	}{
		{
			name: "ping", args: []string{"ping"},
			reply:       `{"pong":true,"gateway":"gw-1","version":"1.2.3","uptime_s":1.5,"timestamp":1}`,
			wantSubject: "iot.control.ping", wantOut: "pong from gw-1 (iotgw 1.2.3), up 1.5s\n",
		},
		{
			name: "ping json before the command", args: []string{"-json", "ping"},
			reply:       `{"pong":true,"gateway":"gw-1"}`,
			wantSubject: "iot.control.ping", wantOut: "{\n  \"pong\": true,\n  \"gateway\": \"gw-1\"\n}\n",
		},
		{
			name: "ping one gateway", args: []string{"-gateway", "gw-b", "ping"},
			reply:       `{"pong":true,"gateway":"gw-b","version":"1.2.3","uptime_s":1.5,"timestamp":1}`,
			wantSubject: "iot.control.gw.gw-b.ping", wantOut: "pong from gw-b (iotgw 1.2.3), up 1.5s\n",
		},
		{
			name: "write on one gateway", args: []string{"devices", "write", "plc-1", "setpoint", "75", "-gateway", "line_3"},
			reply:       `{"ok":true,"device":"plc-1","key":"setpoint","value":75}`,
			wantSubject: "iot.control.gw.line_3.devices.plc-1.write", wantBody: `{"key":"setpoint","value":75}`,
		},
		{
			name: "hostile gateway id", args: []string{"-gateway", "a.>", "ping"}, wantCode: 2,
			wantErr: `-gateway "a.>" is not a gateway id`,
		},
		{
			name: "tree", args: []string{"tree"}, reply: ctlTreeReply,
			wantSubject: "iot.control.tree", wantOut: ctlTreeDrawing,
		},
		{
			name: "tree json after the command", args: []string{"tree", "-json", "-timeout", "2s"},
			reply:       `{"name":"root","state":"running","children":[{"name":"a"}]}`,
			wantSubject: "iot.control.tree",
			wantOut:     "{\n  \"name\": \"root\",\n  \"state\": \"running\",\n  \"children\": [\n    {\n      \"name\": \"a\"\n    }\n  ]\n}\n",
		},
		{
			name: "tree empty", args: []string{"tree"}, reply: `null`,
			wantSubject: "iot.control.tree", wantOut: "the tree is empty\n",
		},
		{
			name: "devices list", args: []string{"devices", "list"}, reply: ctlDevicesReply,
			wantSubject: "iot.control.devices.list", wantOut: ctlDevicesTable,
		},
		{
			name: "devices list empty", args: []string{"devices", "list"}, reply: `{"ok":true,"devices":[]}`,
			wantSubject: "iot.control.devices.list", wantOut: "no devices\n",
		},
		{
			name: "devices get", args: []string{"devices", "get", "plc-9"},
			reply:       `{"ok":true,"device":{"id":"plc-9","driver":"modbus","source":"runtime","state":"running","restarts":1,"hcl":` + strconv.Quote(ctlDeviceHCL) + `}}`,
			wantSubject: "iot.control.devices.get", wantBody: `{"id":"plc-9"}`,
			wantOut: "id:        plc-9\ndriver:    modbus\nsource:    runtime\nstate:     running\nrestarts:  1\n\n" + ctlDeviceHCL,
		},
		{
			name: "devices add sends the file as it is", args: []string{"devices", "add", "-f", devFile},
			reply:       `{"ok":true,"id":"plc-9"}`,
			wantSubject: "iot.control.devices.add", wantBody: ctlDeviceHCL, wantOut: "added device plc-9\n",
		},
		{
			name: "devices update with -f first", args: []string{"-f", devFile, "devices", "update"},
			reply:       `{"ok":true,"id":"plc-9"}`,
			wantSubject: "iot.control.devices.update", wantBody: ctlDeviceHCL, wantOut: "updated device plc-9\n",
		},
		{
			name: "devices add refused with diagnostics", args: []string{"devices", "add", "-f", devFile},
			reply: `{"ok":false,"error":"device \"plc-9\": 2 problems","diagnostics":[` +
				`{"pos":"dev.hcl:3:3","summary":"Unsupported argument","detail":"An argument named \"adress\" is not expected here."},` +
				`{"pos":"dev.hcl:1:1","summary":"Missing register"}]}`,
			wantSubject: "iot.control.devices.add", wantBody: ctlDeviceHCL, wantCode: 1, wantOut: "",
			wantErr: "iotgw ctl: device \"plc-9\": 2 problems\n" +
				"dev.hcl:3:3: Unsupported argument: An argument named \"adress\" is not expected here.\n" +
				"dev.hcl:1:1: Missing register\n",
		},
		{
			name: "devices remove", args: []string{"devices", "remove", "plc-9"}, reply: `{"ok":true,"id":"plc-9"}`,
			wantSubject: "iot.control.devices.remove", wantBody: `{"id":"plc-9"}`, wantOut: "removed device plc-9\n",
		},
		{
			name: "devices write a number", args: []string{"devices", "write", "boiler-2", "setpoint", "75"},
			reply:       `{"ok":true,"device":"boiler-2","key":"setpoint","value":75}`,
			wantSubject: "iot.control.devices.boiler-2.write", wantBody: `{"key":"setpoint","value":75}`,
			wantOut: "wrote boiler-2 setpoint = 75\n",
		},
		{
			name: "devices write a negative number", args: []string{"devices", "write", "boiler-2", "offset", "-5"},
			reply:       `{"ok":true,"device":"boiler-2","key":"offset","value":-5}`,
			wantSubject: "iot.control.devices.boiler-2.write", wantBody: `{"key":"offset","value":-5}`,
		},
		{
			name: "devices write a word is a string", args: []string{"devices", "write", "boiler-2", "mode", "auto"},
			reply:       `{"ok":true,"device":"boiler-2","key":"mode","value":"auto"}`,
			wantSubject: "iot.control.devices.boiler-2.write", wantBody: `{"key":"mode","value":"auto"}`,
		},
		{
			name: "devices write a bool", args: []string{"devices", "write", "boiler-2", "pump", "true"},
			reply:       `{"ok":true,"device":"boiler-2","key":"pump","value":true}`,
			wantSubject: "iot.control.devices.boiler-2.write", wantBody: `{"key":"pump","value":true}`,
		},
		{
			name: "devices write refused", args: []string{"devices", "write", "boiler-2", "x", "1"},
			reply:       `{"ok":false,"error":"unknown key \"x\""}`,
			wantSubject: "iot.control.devices.boiler-2.write", wantBody: `{"key":"x","value":1}`,
			wantCode: 1, wantErr: "iotgw ctl: unknown key \"x\"\n",
		},
		{
			name: "devices browse", args: []string{"devices", "browse", "line-1", "ns=1;s=Plant", "-depth", "2"},
			reply: `{"ok":true,"device":"line-1","node_id":"ns=1;s=Plant","nodes":[` +
				`{"node_id":"ns=1;s=Line1","browse_name":"1:Line1","class":"Object","path":"1:Line1","depth":1},` +
				`{"node_id":"ns=1;s=Temperature","browse_name":"1:Temperature","class":"Variable","data_type":"Double","path":"1:Line1/1:Temperature","depth":2}],"truncated":true}`,
			wantSubject: "iot.control.devices.line-1.browse", wantBody: `{"node_id":"ns=1;s=Plant","depth":2}`,
			wantOut: "NODE ID             CLASS     DATA TYPE  PATH\n" +
				"ns=1;s=Line1        Object    -          1:Line1\n" +
				"ns=1;s=Temperature  Variable  Double     1:Line1/1:Temperature\n" +
				"(truncated at -max: narrow NODE_ID or -depth)\n",
		},
		{
			name: "devices browse refused", args: []string{"devices", "browse", "m1", "-max", "5"},
			reply:       `{"ok":false,"device":"m1","error":"driver mock does not support browsing"}`,
			wantSubject: "iot.control.devices.m1.browse", wantBody: `{"max_nodes":5}`,
			wantCode: 1, wantErr: "iotgw ctl: driver mock does not support browsing\n",
		},
		{
			name: "fault inject with flags after the arguments",
			args: []string{"fault", "inject", "crash", "devices/plc-1", "--for", "30s", "--probability", "0.5", "--latency=200ms"},
			reply: `{"ok":true,"fault":{"id":"f-1","kind":"crash","target":"devices/plc-1","until":"2025-01-02T03:04:35Z",` +
				`"probability":0.5,"latency":"200ms"}}`,
			wantSubject: "iot.control.faults.inject",
			wantBody:    `{"kind":"crash","target":"devices/plc-1","duration":"30s","probability":0.5,"latency":"200ms"}`,
			wantOut:     "injected f-1: crash on devices/plc-1 until 2025-01-02T03:04:35Z (probability=0.5 latency=200ms)\n",
		},
		{
			name: "fault inject without options", args: []string{"fault", "inject", "drop", "devices/plc-1"},
			reply:       `{"ok":true,"fault":{"id":"f-2","kind":"drop","target":"devices/plc-1"}}`,
			wantSubject: "iot.control.faults.inject", wantBody: `{"kind":"drop","target":"devices/plc-1"}`,
			wantOut: "injected f-2: drop on devices/plc-1\n",
		},
		{
			name: "fault clear by id", args: []string{"fault", "clear", "f-1"}, reply: `{"ok":true,"cleared":1}`,
			wantSubject: "iot.control.faults.clear", wantBody: `{"id":"f-1"}`, wantOut: "cleared 1 fault\n",
		},
		{
			name: "fault clear by target", args: []string{"fault", "clear", "devices/plc-1"}, reply: `{"ok":true,"cleared":2}`,
			wantSubject: "iot.control.faults.clear", wantBody: `{"target":"devices/plc-1"}`, wantOut: "cleared 2 faults\n",
		},
		{
			name: "fault clear all", args: []string{"fault", "clear"}, reply: `{"ok":true,"cleared":0}`,
			wantSubject: "iot.control.faults.clear", wantBody: `{}`, wantOut: "cleared 0 faults\n",
		},
		{
			name: "fault list", args: []string{"fault", "list"},
			reply: `{"ok":true,"faults":[{"id":"f-1","kind":"latency","target":"devices/plc-1","until":"2025-01-02T03:04:35Z","latency":200000000},` +
				`{"id":"f-12","kind":"crash","target":"sinks/file","probability":0.25}]}`,
			wantSubject: "iot.control.faults.list",
			wantOut: "ID    KIND     TARGET         UNTIL                 OPTIONS\n" +
				"f-1   latency  devices/plc-1  2025-01-02T03:04:35Z  latency=200000000\n" +
				"f-12  crash    sinks/file     -                     probability=0.25\n",
		},
		{
			name: "fault list empty", args: []string{"fault", "list"}, reply: `{"ok":true,"faults":[]}`,
			wantSubject: "iot.control.faults.list", wantOut: "no faults\n",
		},
		{
			name: "reload", args: []string{"reload"},
			reply:       `{"ok":true,"added":["plc-9"],"changed":["plc-1","boiler-2"],"removed":[],"failed":[]}`,
			wantSubject: "iot.control.reload", wantOut: "added:    plc-9\nchanged:  plc-1, boiler-2\n",
		},
		{
			name: "reload with nothing to do", args: []string{"reload"}, reply: `{"ok":true,"added":[],"changed":[],"removed":[],"failed":[]}`,
			wantSubject: "iot.control.reload", wantOut: "nothing changed\n",
		},
		{
			name: "reload as the gateway nests it", args: []string{"reload"},
			reply:       `{"ok":true,"reload":{"added":[],"changed":["devices/plc-1"],"removed":[],"failed":[],"restart":[],"restarted":["rules/processor"]}}`,
			wantSubject: "iot.control.reload", wantOut: "changed:    devices/plc-1\nrestarted:  rules/processor\n",
		},
		{
			name: "restart", args: []string{"restart", "devices/plc-1"},
			reply:       `{"ok":true,"path":"devices/plc-1","state":"running"}`,
			wantSubject: "iot.control.actors.restart", wantBody: `{"path":"devices/plc-1"}`,
			wantOut: "restarted devices/plc-1 (running)\n",
		},
		{
			name: "restart refused", args: []string{"restart", "control"},
			reply:       `{"ok":false,"error":"restart control: control serves the control plane"}`,
			wantSubject: "iot.control.actors.restart", wantBody: `{"path":"control"}`,
			wantCode: 1, wantErr: "iotgw ctl: restart control: control serves the control plane\n",
		},
		{
			name: "restart without a path", args: []string{"restart"}, wantCode: 2,
			wantErr: "restart wants the path of an actor",
		},
		{
			name: "reload refused", args: []string{"reload"}, reply: `{"ok":false,"error":"gateway.hcl:4:3: bad"}`,
			wantSubject: "iot.control.reload", wantCode: 1, wantErr: "iotgw ctl: gateway.hcl:4:3: bad\n",
		},
		{
			name: "sidecars status", args: []string{"sidecars", "status", "modbus"},
			reply: `{"sidecar":"modbus","pid":4242,"stats":{"lines_in":10,"reconnects":0,"last_error":"eof"},` +
				`"response":{"success":true,"configured":true}}`,
			wantSubject: "iot.control.sidecars.modbus.status",
			wantOut: "sidecar:  modbus\npid:      4242\nstats:\n  last_error  eof\n  lines_in    10\n  reconnects  0\n" +
				"response:\n  configured  true\n  success     true\n",
		},
		{
			name: "sidecars status not connected", args: []string{"sidecars", "status", "line-3"}, reply: `{"error":"not connected"}`,
			wantSubject: "iot.control.sidecars.line-3.status", wantCode: 1, wantErr: "iotgw ctl: not connected\n",
		},
		{
			name: "failure with -json prints the reply too", args: []string{"sidecars", "status", "line-3", "-json"},
			reply:       `{"error":"not connected"}`,
			wantSubject: "iot.control.sidecars.line-3.status", wantCode: 1,
			wantOut: "{\n  \"error\": \"not connected\"\n}\n", wantErr: "iotgw ctl: not connected\n",
		},
		{
			name: "sinks list", args: []string{"sinks", "list"},
			reply: `{"ok":true,"sinks":[{"name":"archive","type":"file","state":"running","pending":120,"ack_pending":8,` +
				`"redeliveries":3,"dead_letters":1,"dropped":0,"last_delivered":"2025-01-02T03:04:05Z","last_error":"disk full"},` +
				`{"name":"out","type":"console","state":"running"}]}`,
			wantSubject: "iot.control.sinks.list",
			wantOut: "NAME     TYPE     STATE    PENDING  UNACKED  REDELIVERED  DEAD  DROPPED  LAST DELIVERED        LAST ERROR\n" +
				"archive  file     running  120      8        3            1     0        2025-01-02T03:04:05Z  disk full\n" +
				"out      console  running  0        0        0            0     0        -                     -\n",
		},
		{
			name: "sinks list empty", args: []string{"sinks", "list"}, reply: `{"ok":true}`,
			wantSubject: "iot.control.sinks.list", wantOut: "no sinks\n",
		},
		{
			name: "sinks get", args: []string{"sinks", "get", "archive"},
			reply: `{"ok":true,"sink":{"name":"archive","type":"file","state":"running","pending":2,"acked":40,` +
				`"durable":[{"name":"archive","backend":"jetstream","stream":"IOT_DATA","subjects":["iot.processed.batch.>"],"state":"holding","pending":2,"naked":5}]}}`,
			wantSubject: "iot.control.sinks.get", wantBody: `{"name":"archive"}`,
			wantOut: "name:            archive\ntype:            file\nstate:           running\nrestarts:        0\npending:         2\n" +
				"unacked:         0\ndelivered:       0\nacked:           40\nredelivered:     0\ndead letters:    0\ndropped:         0\n" +
				"last delivered:  -\nlast error:      -\n\n" +
				"inbox archive (jetstream IOT_DATA): holding, subjects iot.processed.batch.>, pending 2, unacked 0, naked 5\n",
		},
		{
			name: "sinks get unknown", args: []string{"sinks", "get", "nope"}, reply: `{"ok":false,"error":"no sink \"nope\""}`,
			wantSubject: "iot.control.sinks.get", wantBody: `{"name":"nope"}`, wantCode: 1, wantErr: "iotgw ctl: no sink \"nope\"\n",
		},
		{
			name: "sinks get hostile name", args: []string{"sinks", "get", "a.>"}, wantCode: 2,
			wantErr: `sink name "a.>" is not a sink block's name`,
		},
		{
			name: "sinks get without a name", args: []string{"sinks", "get"}, wantCode: 2, wantErr: "sinks get wants a sink name",
		},
		{
			name: "malformed reply", args: []string{"ping"}, reply: `pong!`,
			wantSubject: "iot.control.ping", wantCode: 1, wantErr: `malformed reply on iot.control.ping: "pong!"`,
		},
		{
			name: "reply of the wrong shape", args: []string{"devices", "list"}, reply: `{"ok":true,"devices":"plc-1"}`,
			wantSubject: "iot.control.devices.list", wantCode: 1, wantErr: "malformed reply on iot.control.devices.list",
		},
		{
			name: "no reply in time", args: []string{"-timeout", "200ms", "tree"}, reply: "",
			wantSubject: "iot.control.tree", wantCode: 1, wantErr: "iotgw ctl: no reply on iot.control.tree within 200ms\n",
		},

		// Usage errors: exit 2, nothing sent.
		{name: "no command", args: nil, wantCode: 2, wantErr: "Usage: iotgw ctl"},
		{name: "unknown command", args: []string{"frob"}, wantCode: 2, wantErr: `unknown command "frob"`},
		{name: "unknown subcommand", args: []string{"devices", "frob"}, wantCode: 2, wantErr: `unknown command "devices frob"`},
		{name: "group without subcommand", args: []string{"fault"}, wantCode: 2, wantErr: "fault wants one of: inject, clear, list"},
		{name: "extra argument", args: []string{"ping", "now"}, wantCode: 2, wantErr: "ping wants no arguments"},
		{name: "get without id", args: []string{"devices", "get"}, wantCode: 2, wantErr: "devices get wants a device id"},
		{name: "write without value", args: []string{"devices", "write", "b", "k"}, wantCode: 2, wantErr: "devices write wants ID KEY VALUE"},
		{name: "browse without id", args: []string{"devices", "browse"}, wantCode: 2, wantErr: "devices browse wants ID [NODE_ID]"},
		{name: "browse a dotted id", args: []string{"devices", "browse", "a.b"}, wantCode: 2, wantErr: `device id "a.b" cannot be part of a subject`},
		{name: "browse with -f", args: []string{"devices", "browse", "a", "-f", "x"}, wantCode: 2, wantErr: `-f does not apply to "devices browse"`},
		{name: "write to a dotted id", args: []string{"devices", "write", "a.b", "k", "1"}, wantCode: 2, wantErr: `device id "a.b" cannot be part of a subject`},
		{name: "add without -f", args: []string{"devices", "add"}, wantCode: 2, wantErr: "devices add wants -f FILE"},
		{name: "inject without target", args: []string{"fault", "inject", "crash"}, wantCode: 2, wantErr: "fault inject wants KIND TARGET"},
		{name: "inject bad duration", args: []string{"fault", "inject", "crash", "t", "--for", "3x"}, wantCode: 2, wantErr: `-for "3x" is not a duration`},
		{name: "inject bad probability", args: []string{"fault", "inject", "crash", "t", "-probability", "2"}, wantCode: 2, wantErr: "-probability 2 is not between 0 and 1"},
		{name: "flag of another command", args: []string{"ping", "--for", "30s"}, wantCode: 2, wantErr: `-for does not apply to "ping"`},
		{name: "unknown flag", args: []string{"ping", "-bogus"}, wantCode: 2, wantErr: "flag provided but not defined: -bogus"},
		{name: "flag without value", args: []string{"fault", "inject", "crash", "t", "--for"}, wantCode: 2, wantErr: "flag needs an argument: -for"},
		{name: "password without user", args: []string{"-password", "p", "ping"}, wantCode: 2, wantErr: "-password wants -user"},
		{name: "two ways to log in", args: []string{"-user", "u", "-creds", "x.creds", "ping"}, wantCode: 2, wantErr: "give one of -user/-password, -creds and -nkey"},
		{name: "clear too many", args: []string{"fault", "clear", "f-1", "f-2"}, wantCode: 2, wantErr: "fault clear wants at most one ID or TARGET"},
		{name: "missing file", args: []string{"devices", "add", "-f", "/nonexistent/dev.hcl"}, wantCode: 1, wantErr: "/nonexistent/dev.hcl"},
		{name: "help", args: []string{"help"}, wantCode: 0, wantOut: ctlUsage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp.set(tc.reply)
			code, out, errOut := runCtl(append([]string{"-s", url}, tc.args...)...)
			got := resp.set("")
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, errOut)
			}
			if tc.wantOut != "" || tc.wantCode != 0 {
				if out != tc.wantOut {
					t.Errorf("stdout:\n%s\nwant:\n%s", out, tc.wantOut)
				}
			}
			if !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("stderr %q, want it to contain %q", errOut, tc.wantErr)
			}
			if tc.wantErr == "" && errOut != "" {
				t.Errorf("stderr %q, want nothing", errOut)
			}
			switch {
			case tc.wantSubject == "" && len(got) > 0:
				t.Errorf("sent %s, want nothing sent", got[0].Subject)
			case tc.wantSubject != "" && len(got) != 1:
				t.Errorf("sent %d requests, want 1 on %s", len(got), tc.wantSubject)
			case tc.wantSubject != "":
				if got[0].Subject != tc.wantSubject || string(got[0].Data) != tc.wantBody {
					t.Errorf("sent %s %q, want %s %q", got[0].Subject, got[0].Data, tc.wantSubject, tc.wantBody)
				}
			}
		})
	}
}

func TestCtlTreeColour(t *testing.T) {
	var out bytes.Buffer
	if err := renderTree(&out, []byte(ctlTreeReply), true); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\x1b[33mrestarting  \x1b[0m3", "\x1b[31mfailed      \x1b[0m10", "running     0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("got\n%q\nwant it to contain %q", out.String(), want)
		}
	}
	if strings.Contains(out.String(), "\x1b[31mrunning") || strings.Contains(out.String(), "\x1b[33mrunning") {
		t.Errorf("running is coloured:\n%q", out.String())
	}
}

// TestCtlTreeUplink: a tree with the uplink on its root shows it under the actors.
func TestCtlTreeUplink(t *testing.T) {
	reply := `{"name":"root","path":"root","kind":"supervisor","state":"running","restarts":0,` +
		`"uplink":{"connected":false,"since":"2026-12-01T22:15:14Z","domain":"gw1","connects":1,"disconnects":1,"known":true,"behind":139,"discarded":0}}`
	var out bytes.Buffer
	if err := renderTree(&out, []byte(reply), false); err != nil {
		t.Fatal(err)
	}
	want := "uplink (domain gw1): hub not connected since 2026-12-01T22:15:14Z; behind: 139 messages; discarded before delivery: 0; connects 1, disconnects 1\n"
	if !strings.HasSuffix(out.String(), want) {
		t.Errorf("got\n%s\nwant it to end with\n%s", out.String(), want)
	}
}

func TestCtlNoResponders(t *testing.T) {
	url := startCtlServer(t, server.Options{}).ClientURL()
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"ping"}, "iotgw ctl: no gateway answers iot.control.ping (is it running?)\n"},
		{[]string{"fault", "list"}, "iotgw ctl: no gateway answers iot.control.faults.list (is it running? are faults enabled?)\n"},
		{[]string{"sidecars", "status", "line-3"}, "iotgw ctl: no gateway answers iot.control.sidecars.line-3.status (is it running? is there a sidecar \"line-3\"?)\n"},
		{[]string{"devices", "write", "plc-1", "k", "1"}, "iotgw ctl: no gateway answers iot.control.devices.plc-1.write (is it running? is there a Modbus device \"plc-1\"?)\n"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, errOut := runCtl(append([]string{"-s", url}, tc.args...)...)
			if code != 1 || errOut != tc.wantErr {
				t.Errorf("exit %d, stderr %q; want 1, %q", code, errOut, tc.wantErr)
			}
		})
	}
}

func TestCtlNoServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens here now
	code, _, errOut := runCtl("-s", "nats://ops:secret@"+addr, "-timeout", "1s", "ping")
	want := "iotgw ctl: cannot reach the gateway at nats://ops:xxxxx@" + addr + ": "
	if code != 1 || !strings.HasPrefix(errOut, want) {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, want)
	}
	if strings.Contains(errOut, "secret") {
		t.Errorf("stderr shows the password: %q", errOut)
	}
}

func TestCtlServerFromEnv(t *testing.T) {
	url := startCtlServer(t, server.Options{}).ClientURL()
	resp := startCtlResponder(t, url)
	resp.set(`{"pong":true,"gateway":"gw-env","version":"x","uptime_s":61.2}`)
	t.Setenv("NATS_URL", url)
	code, out, errOut := runCtl("ping")
	if want := "pong from gw-env (iotgw x), up 1m1s\n"; code != 0 || out != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want 0, %q", code, out, errOut, want)
	}
}

func TestCtlAuth(t *testing.T) {
	const pong = `{"pong":true,"gateway":"gw-1","version":"x","uptime_s":1}`
	t.Run("user and password", func(t *testing.T) {
		url := startCtlServer(t, server.Options{Username: "ops", Password: "s3cret"}).ClientURL()
		startCtlResponder(t, url, nats.UserInfo("ops", "s3cret")).set(pong)
		if code, _, errOut := runCtl("-s", url, "-user", "ops", "-password", "s3cret", "ping"); code != 0 {
			t.Errorf("with the password: exit %d, stderr %q; want 0", code, errOut)
		}
		code, _, errOut := runCtl("-s", url, "ping")
		if want := "cannot reach the gateway at " + url; code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("without: exit %d, stderr %q; want 1 and %q", code, errOut, want)
		}
	})
	t.Run("nkey", func(t *testing.T) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		seedFile := filepath.Join(t.TempDir(), "user.nk")
		if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		url := startCtlServer(t, server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}}).ClientURL()
		opt, err := nats.NkeyOptionFromSeed(seedFile)
		if err != nil {
			t.Fatal(err)
		}
		startCtlResponder(t, url, opt).set(pong)
		if code, _, errOut := runCtl("ping", "-s", url, "-nkey", seedFile); code != 0 {
			t.Errorf("exit %d, stderr %q; want 0", code, errOut)
		}
	})
}

// TestCtlInboxAndTLS: -user makes ctl read its replies on _INBOX.{user}, the only inbox a non-admin may read, and
// -tlsca/-tlscert/-tlskey reach a server that requires client certificates.
func TestCtlInboxAndTLS(t *testing.T) {
	const pong = `{"pong":true,"gateway":"gw-1","version":"x","uptime_s":1}`
	t.Run("own inbox", func(t *testing.T) {
		ops := &server.User{Username: "ops", Password: "ops-secret", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{"iot.control.ping"}},
			Subscribe: &server.SubjectPermission{Allow: []string{system.UserInbox("ops") + ".>"}},
		}}
		gw := &server.User{Username: "gw", Password: "gw-secret"}
		url := startCtlServer(t, server.Options{Users: []*server.User{ops, gw}}).ClientURL()
		startCtlResponder(t, url, nats.UserInfo("gw", "gw-secret")).set(pong)
		if code, _, errOut := runCtl("-s", url, "-user", "ops", "-password", "ops-secret", "ping"); code != 0 {
			t.Errorf("exit %d, stderr %q; want 0", code, errOut)
		}
		if code, _, _ := runCtl("-s", url, "-user", "ops", "-password", "ops-secret", "-inbox-prefix", "_INBOX", "-timeout", "500ms", "ping"); code == 0 {
			t.Error("a reply arrived on the shared _INBOX, which ops may not read: the test proves nothing")
		}
		if code, _, errOut := runCtl("-s", url, "-inbox-prefix", "_INBOX.>", "ping"); code != 2 || !strings.Contains(errOut, "-inbox-prefix") {
			t.Errorf("a wildcard prefix: exit %d, stderr %q; want a usage error", code, errOut)
		}
	})
	t.Run("tls", func(t *testing.T) {
		ca := testca.New(t, "ctl")
		srv, cli := ca.Server("nats"), ca.Client("ctl")
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: srv.Cert, KeyFile: srv.Key, CaFile: ca.CAFile, Verify: true})
		if err != nil {
			t.Fatal(err)
		}
		s := startCtlServer(t, server.Options{TLS: true, TLSVerify: true, TLSConfig: tc, TLSTimeout: 2})
		url := s.ClientURL()
		startCtlResponder(t, url, nats.RootCAs(ca.CAFile), nats.ClientCert(cli.Cert, cli.Key)).set(pong)
		if code, _, errOut := runCtl("-s", url, "-tlsca", ca.CAFile, "-tlscert", cli.Cert, "-tlskey", cli.Key, "ping"); code != 0 {
			t.Errorf("exit %d, stderr %q; want 0", code, errOut)
		}
		if code, _, _ := runCtl("-s", url, "-tlsca", ca.CAFile, "ping"); code != 1 {
			t.Errorf("without a client certificate: exit %d, want 1", code)
		}
		if code, _, errOut := runCtl("-s", url, "-tlscert", cli.Cert, "ping"); code != 2 || !strings.Contains(errOut, "-tlskey") {
			t.Errorf("-tlscert alone: exit %d, stderr %q; want a usage error", code, errOut)
		}
	})
}
