package config

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"
)

// NewOPCUADevice returns the settings of an opcua device block with their defaults, for the driver's
// registration (actors/device/opcua).
//
// The schema lives here beside the other drivers' rather than in the driver's folder: it shares config's
// validation helpers (keys, durations, quoting) so its messages read like every other block's, and it parses
// node ids with gopcua's own parser (github.com/gopcua/opcua/ua, a leaf package of the library the driver uses),
// so a malformed node id is reported at its file:line:column, not at run time.
func NewOPCUADevice() DriverSettings {
	return &OPCUADevice{
		SecurityPolicy: "None", SecurityMode: "None", Auth: "anonymous", Mode: "poll",
		IntervalText: "1s", TimeoutText: "5s",
	}
}

// OPCUADevice is driver "opcua": an OPC UA server read by the gateway with gopcua, on an interval (mode "poll")
// or through a subscription with monitored items (mode "subscribe").
type OPCUADevice struct {
	Endpoint       string            `hcl:"endpoint"`                 // opc.tcp://host:port[/path]
	SecurityPolicy string            `hcl:"security_policy,optional"` // None (default) | Basic256Sha256
	SecurityMode   string            `hcl:"security_mode,optional"`   // None (default) | Sign | SignAndEncrypt
	Auth           string            `hcl:"auth,optional"`            // anonymous (default) | username | certificate
	Username       string            `hcl:"username,optional"`
	Password       string            `hcl:"password,optional"`
	Certificate    string            `hcl:"certificate,optional"` // the gateway's client certificate (PEM or DER)
	PrivateKey     string            `hcl:"private_key,optional"` // its RSA key (PEM)
	ServerCerts    []string          `hcl:"server_certificates,optional"`
	ServerCA       string            `hcl:"server_ca,optional"`
	Mode           string            `hcl:"mode,optional"` // poll (default) | subscribe
	Tags           map[string]string `hcl:"tags,optional"`
	Nodes          []OPCUANode       `hcl:"node,block"`

	Interval   time.Duration // poll interval, or the subscription's publishing interval; default 1s
	Timeout    time.Duration // dial and request timeout; default 5s
	StaleAfter time.Duration // a point without a good value for this long is stale; default 3 × interval

	IntervalText   string `hcl:"interval,optional"`
	TimeoutText    string `hcl:"timeout,optional"`
	StaleAfterText string `hcl:"stale_after,optional"`
}

// OPCUANode is one `node "key"` block.
type OPCUANode struct {
	Key          string            `hcl:"key,label"`
	NodeIDText   string            `hcl:"node_id"`
	Type         string            `hcl:"type,optional"` // float64 (default) | int64 | bool | string
	Scale        float64           `hcl:"scale,optional"`
	Offset       float64           `hcl:"offset,optional"`
	Unit         string            `hcl:"unit,optional"`
	Tags         map[string]string `hcl:"tags,optional"`
	Deadband     float64           `hcl:"deadband,optional"`      // subscribe: the data-change filter's deadband
	DeadbandType string            `hcl:"deadband_type,optional"` // absolute (default when deadband is set) | percent

	SamplingInterval     time.Duration // subscribe: the monitored item's; default the device's interval
	SamplingIntervalText string        `hcl:"sampling_interval,optional"`
	NodeID               *ua.NodeID    // parsed from NodeIDText
}

var (
	opcuaPolicies  = []string{"None", "Basic256Sha256"}
	opcuaModes     = []string{"None", "Sign", "SignAndEncrypt"}
	opcuaAuths     = []string{"anonymous", "username", "certificate"}
	opcuaReadModes = []string{"poll", "subscribe"}
	opcuaTypes     = []string{"float64", "int64", "bool", "string"}
	opcuaDeadbands = []string{"absolute", "percent"}
)

// SecurityPolicyURI is the policy's URI as OPC UA names it.
func (o *OPCUADevice) SecurityPolicyURI() string {
	if o.SecurityPolicy == "Basic256Sha256" {
		return ua.SecurityPolicyURIBasic256Sha256
	}
	return ua.SecurityPolicyURINone
}

// Secure says whether the channel is signed (and maybe encrypted), so both ends present certificates.
func (o *OPCUADevice) Secure() bool { return o.SecurityMode != "None" }

// Validate implements DriverSettings.
func (o *OPCUADevice) Validate(v *Validator) {
	o.Interval = minDuration(v, "interval", o.IntervalText, time.Millisecond)
	o.Timeout = minDuration(v, "timeout", o.TimeoutText, time.Millisecond)
	if o.StaleAfterText != "" {
		o.StaleAfter = minDuration(v, "stale_after", o.StaleAfterText, time.Millisecond)
	}
	if u, err := url.Parse(o.Endpoint); err != nil || u.Scheme != "opc.tcp" || u.Host == "" {
		v.Errorf("endpoint", "endpoint %s is not an OPC UA address like \"opc.tcp://plc.local:4840\"", quote(o.Endpoint))
	} else if err := checkHostPort(u.Host); err != nil {
		v.Errorf("endpoint", "endpoint %s: %v (write the port: OPC UA's default is 4840)", quote(o.Endpoint), err)
	}
	policyOK := isOneOf(o.SecurityPolicy, opcuaPolicies)
	if !policyOK {
		v.Errorf("security_policy", "unknown security_policy %s; known: %s", quote(o.SecurityPolicy), oneOf(opcuaPolicies))
	}
	modeOK := isOneOf(o.SecurityMode, opcuaModes)
	if !modeOK {
		v.Errorf("security_mode", "unknown security_mode %s; known: %s", quote(o.SecurityMode), oneOf(opcuaModes))
	}
	if policyOK && modeOK && (o.SecurityPolicy == "None") != (o.SecurityMode == "None") {
		attr := "security_mode"
		if !v.Has(attr) {
			attr = "security_policy"
		}
		v.Errorf(attr, "security_policy %s and security_mode %s do not go together: None with None, Basic256Sha256 with Sign or SignAndEncrypt",
			quote(o.SecurityPolicy), quote(o.SecurityMode))
	}
	switch {
	case !isOneOf(o.Auth, opcuaAuths):
		v.Errorf("auth", "unknown auth %s; known: %s", quote(o.Auth), oneOf(opcuaAuths))
	case o.Auth == "username" && o.Username == "":
		v.Errorf("username", "auth = \"username\" needs username (and password)")
	case o.Auth != "username" && (o.Username != "" || o.Password != ""):
		v.Errorf("username", "username and password apply to auth = \"username\"")
	case o.Auth == "certificate" && o.Certificate == "":
		v.Errorf("certificate", "auth = \"certificate\" signs with the client certificate: give certificate and private_key")
	}
	if (o.Certificate == "") != (o.PrivateKey == "") {
		v.Errorf("certificate", "certificate and private_key go together (leave both out to have one generated into data_dir)")
	}
	for _, f := range []struct{ attr, path string }{{"certificate", o.Certificate}, {"private_key", o.PrivateKey}, {"server_ca", o.ServerCA}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			v.Errorf(f.attr, "cannot read %s: %v", quote(f.path), err)
		}
	}
	for i, p := range o.ServerCerts {
		if _, err := os.Stat(p); err != nil {
			v.ErrorfIndex("server_certificates", i, "cannot read %s: %v", quote(p), err)
		}
	}
	if o.Secure() && modeOK && len(o.ServerCerts) == 0 && o.ServerCA == "" {
		v.Errorf("security_mode", "security_mode %s checks the server's certificate: name it in server_certificates = [\"server.der\"] (trusted as it is) or give the CA that signed it in server_ca",
			quote(o.SecurityMode))
	}
	if !o.Secure() && (len(o.ServerCerts) > 0 || o.ServerCA != "") {
		v.Errorf("server_certificates", "server_certificates and server_ca apply to a signed channel (security_mode Sign or SignAndEncrypt)")
	}
	if !isOneOf(o.Mode, opcuaReadModes) {
		v.Errorf("mode", "unknown mode %s; known: %s", quote(o.Mode), oneOf(opcuaReadModes))
	}
	if len(o.Nodes) == 0 {
		v.Errorf("", `An opcua device needs at least one node block, like node "temperature" { node_id = "ns=2;s=Temperature" }.`)
	}
	nv := v.Blocks("node")
	first := map[string]*Validator{}
	for i := range o.Nodes {
		n := &o.Nodes[i]
		vv := v
		if i < len(nv) {
			vv = nv[i]
		}
		checkKey(vv, "node", "Node", n.Key, first)
		n.validate(vv, o)
	}
}

// ParseNodeID reads a node id in OPC UA's string form, "ns=<namespace>;<i|s|g|b>=<identifier>" (the namespace
// may be left out for 0). gopcua's own parser also takes a bare word as a string id in namespace 0, which in a
// config is nearly always a forgotten "ns=2;s=": that is refused here.
func ParseNodeID(s string) (*ua.NodeID, error) {
	idPart := s
	if rest, ok := strings.CutPrefix(s, "ns="); ok {
		_, after, found := strings.Cut(rest, ";")
		if !found {
			return nil, fmt.Errorf("%q: a namespace, then ';' and the identifier", s)
		}
		idPart = after
	}
	if len(idPart) < 2 || idPart[1] != '=' || !strings.ContainsRune("isgb", rune(idPart[0])) {
		return nil, fmt.Errorf("%q: the identifier starts with i=, s=, g= or b=", s)
	}
	return ua.ParseNodeID(s)
}

func (n *OPCUANode) validate(v *Validator, o *OPCUADevice) {
	id, err := ParseNodeID(n.NodeIDText)
	if err != nil || n.NodeIDText == "" {
		v.Errorf("node_id", "node_id %s is not an OPC UA node id like \"ns=2;s=Line1.Temperature\" or \"i=2258\" (browse the server with iot.control.devices.{id}.browse to find them)",
			quote(n.NodeIDText))
	} else {
		n.NodeID = id
	}
	if n.Type == "" {
		n.Type = "float64"
	}
	if !isOneOf(n.Type, opcuaTypes) {
		v.Errorf("type", "unknown type %s; known: %s", quote(n.Type), oneOf(opcuaTypes))
	}
	if (n.Scale != 0 || n.Offset != 0) && (n.Type == "bool" || n.Type == "string") {
		v.Errorf("scale", "scale and offset do not apply to a %s", n.Type)
	}
	if n.SamplingIntervalText != "" {
		n.SamplingInterval, _ = v.Duration("sampling_interval", n.SamplingIntervalText)
		if n.SamplingInterval < 0 {
			v.Errorf("sampling_interval", "sampling_interval must not be negative")
		}
	} else {
		n.SamplingInterval = o.Interval
	}
	if n.Deadband < 0 {
		v.Errorf("deadband", "deadband must be >= 0")
	}
	if n.DeadbandType == "" {
		n.DeadbandType = "absolute"
	} else if !isOneOf(n.DeadbandType, opcuaDeadbands) {
		v.Errorf("deadband_type", "unknown deadband_type %s; known: %s", quote(n.DeadbandType), oneOf(opcuaDeadbands))
	}
	if n.DeadbandType == "percent" && n.Deadband > 100 {
		v.Errorf("deadband", "a percent deadband is 0..100, not %v", n.Deadband)
	}
	if (n.Deadband != 0 || v.Has("sampling_interval") || v.Has("deadband_type")) && o.Mode != "subscribe" {
		v.Errorf("deadband", "sampling_interval, deadband and deadband_type apply to mode = \"subscribe\"")
	}
	if n.Deadband != 0 && (n.Type == "bool" || n.Type == "string") {
		v.Errorf("deadband", "a deadband applies to numbers, not to a %s", n.Type)
	}
}
