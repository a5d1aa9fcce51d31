package config

import (
	"fmt"
	"strings"
	"testing"

	mb "github.com/iotgw/iotgw/modbus"
)

// A mock device that is valid, for cases about something else.
const okDevice = `device "d1" {
  driver = "mock"
  point "p" { signal = "sine" }
}
`

// brokenCases are configurations with one problem each: the position it must be reported at and a substring
// of its "summary: detail". They also seed FuzzParse.
var brokenCases = []struct {
	name string
	src  string
	pos  string // file:line:col
	want string
}{
	{"syntax error", "gateway {\n  id = \n}\n", "broken.hcl:2:8", "Invalid expression"},
	{"unknown block", "gatway {\n}\n", "broken.hcl:1:1", `Unsupported block type: Blocks of type "gatway" are not expected here. Did you mean "gateway"?`},
	{"unknown top-level attribute", "log_level = \"info\"\n", "broken.hcl:1:1", `Unsupported argument: An argument named "log_level" is not expected here.`},
	{"unknown gateway attribute", "gateway {\n  idd = \"x\"\n}\n", "broken.hcl:2:3", `Unsupported argument: An argument named "idd" is not expected here. Did you mean "id"?`},
	{"unknown device attribute", "device \"d1\" {\n  driver = \"mock\"\n  colour = \"red\"\n  point \"p\" { signal = \"sine\" }\n}\n", "broken.hcl:3:3", `An argument named "colour" is not expected here`},
	{"unknown point attribute", "device \"d1\" {\n  driver = \"mock\"\n  point \"p\" {\n    signal = \"sine\"\n    scale = 2\n  }\n}\n", "broken.hcl:5:5", `An argument named "scale" is not expected here`},
	{"duplicate device id", okDevice + okDevice, "broken.hcl:5:1", `Duplicate device id: Device ids must be unique: "d1" is already used; the first is at broken.hcl:1,1-12.`},
	{"duplicate sink", "sink \"out\" {\n  type = \"console\"\n}\nsink \"out\" {\n  type = \"console\"\n}\n", "broken.hcl:4:1", `Duplicate sink name: Sink names must be unique: "out" is already used; the first is at broken.hcl:1,1-11.`},
	{"id with dot", strings.Replace(okDevice, `"d1"`, `"plc.1"`, 1), "broken.hcl:1:8", `Invalid device id: The device id becomes a NATS subject token: invalid subject token: "plc.1" contains '.'`},
	{"id with star", strings.Replace(okDevice, `"d1"`, `"plc*"`, 1), "broken.hcl:1:8", `contains the wildcard '*'`},
	{"id with gt", strings.Replace(okDevice, `"d1"`, `"plc>"`, 1), "broken.hcl:1:8", `contains the wildcard '>'`},
	{"id with space", strings.Replace(okDevice, `"d1"`, `"plc 1"`, 1), "broken.hcl:1:8", `contains the space character U+0020`},
	{"empty id", strings.Replace(okDevice, `"d1"`, `""`, 1), "broken.hcl:1:8", `Invalid device id: The device id becomes a NATS subject token: invalid subject token: empty`},
	{"id too long", strings.Replace(okDevice, `"d1"`, `"`+strings.Repeat("x", 65)+`"`, 1), "broken.hcl:1:8", `65 characters long, at most 64 allowed`},
	{"reserved batch", strings.Replace(okDevice, `"d1"`, `"batch"`, 1), "broken.hcl:1:8", `Reserved device id: The device id "batch" is reserved: iot.processed.batch.{device}`},
	{"missing device label", "device {\n  driver = \"mock\"\n}\n", "broken.hcl:1:8", `Missing id for device: All device blocks must have 1 labels (id).`},
	{"bad duration", "nats {\n  reconnect_wait = \"2 secs\"\n}\n", "broken.hcl:2:20", `Invalid value for "reconnect_wait": "2 secs" is not a duration`},
	{"negative duration", "nats {\n  timeout = \"-1s\"\n}\n", "broken.hcl:2:13", `Invalid value for "timeout": "-1s" is negative`},
	{"zero timeout", "nats {\n  timeout = \"0s\"\n}\n", "broken.hcl:2:13", `the connect timeout must be > 0`},
	{"bad size", "nats {\n  jetstream {\n    max_memory = \"1XB\"\n  }\n}\n", "broken.hcl:3:18", `Invalid value for "max_memory": invalid size "1XB": unknown unit "XB"`},
	{"size not a number", "nats {\n  jetstream {\n    max_file = \"lots\"\n  }\n}\n", "broken.hcl:3:16", `invalid size "lots": want a whole number of bytes`},
	{"two jetstream blocks", "nats {\n  jetstream {}\n  jetstream {}\n}\n", "broken.hcl:3:3", `Duplicate jetstream block`},
	{"unknown discard policy", "nats {\n  jetstream {\n    discard = \"oldest\"\n  }\n}\n", "broken.hcl:3:15", `unknown discard policy "oldest"; known: old, new`},
	{"unknown persist mode", "nats {\n  jetstream {\n    persist_mode = \"lazy\"\n  }\n}\n", "broken.hcl:3:20", `unknown persist_mode "lazy"; known: default, async`},
	{"zero max_bytes", "nats {\n  jetstream {\n    max_bytes = \"0\"\n  }\n}\n", "broken.hcl:3:17", `max_bytes must be > 0`},
	{"max_bytes beyond max_file", "nats {\n  jetstream {\n    max_file  = \"1GB\"\n    max_bytes = \"1GB\"\n  }\n}\n", "broken.hcl:4:17", `are more than max_file (1073741824 bytes)`},
	{"max_bytes hostile size", "nats {\n  jetstream {\n    max_bytes = \"99999999999999999999GB\"\n  }\n}\n", "broken.hcl:3:17", `Invalid value for "max_bytes"`},
	{"zero duplicate window", "nats {\n  jetstream {\n    duplicate_window = \"0s\"\n  }\n}\n", "broken.hcl:3:24", `duplicate_window must be > 0`},
	{"duplicate window beyond max_age", "nats {\n  jetstream {\n    max_age          = \"1m\"\n    duplicate_window = \"2m\"\n  }\n}\n", "broken.hcl:4:24", `duplicate_window (2m0s) is longer than max_age (1m0s)`},
	{"publish window zero", "nats {\n  jetstream {\n    publish_window = 0\n  }\n}\n", "broken.hcl:3:22", `publish_window is 0: from 1 to 65536`},
	{"publish window huge", "nats {\n  jetstream {\n    publish_window = 1000000000\n  }\n}\n", "broken.hcl:3:22", `publish_window is 1000000000`},
	{"zero publish timeout", "nats {\n  jetstream {\n    publish_timeout = \"0s\"\n  }\n}\n", "broken.hcl:3:23", `publish_timeout must be > 0`},
	{"negative buffer", "nats {\n  jetstream {\n    buffer = -5\n  }\n}\n", "broken.hcl:3:14", `buffer is -5: from 1 to 10000000 messages`},
	{"buffer not a number", "nats {\n  jetstream {\n    buffer = \"many\"\n  }\n}\n", "broken.hcl:3:15", `Unsuitable value type`},
	{"dead letters zero bytes", "nats {\n  jetstream {\n    dead_letter_max_bytes = \"0\"\n  }\n}\n", "broken.hcl:3:29", `dead_letter_max_bytes must be > 0`},
	{"sync never", "nats {\n  jetstream {\n    sync = \"never\"\n  }\n}\n", "broken.hcl:3:12", `"never" is not a duration`},
	{"sync zero", "nats {\n  jetstream {\n    sync = \"0s\"\n  }\n}\n", "broken.hcl:3:12", `sync must be "always" or a duration > 0`},
	{"discard truncated", "nats {\n  jetstream {\n    discard = \"ne", "broken.hcl:3:18", `Unterminated template string`},
	{"unknown driver", "device \"d1\" {\n  driver = \"modbus-rtu\"\n}\n", "broken.hcl:2:12", `Invalid value for "driver": unknown driver "modbus-rtu"; known: mock`},
	{"missing driver", "device \"d1\" {\n  point \"p\" { signal = \"sine\" }\n}\n", "broken.hcl:1:1", `Invalid device "d1": The driver attribute is required; known: mock, modbus.`},
	{"unknown sink type", "sink \"s\" {\n  type = \"kafka\"\n}\n", "broken.hcl:2:10", `unknown type "kafka"; known: console, file, jetstream`},
	{"missing sink type", "sink \"s\" {\n  format = \"json\"\n}\n", "broken.hcl:1:1", `Invalid sink "s": The type attribute is required; known: console, file, jetstream.`},
	{"unknown strategy", "supervisor {\n  strategy = \"rest_for_one\"\n}\n", "broken.hcl:2:14", `unknown strategy "rest_for_one"; known: one_for_one, all_for_one`},
	{"negative max_restarts", "supervisor {\n  max_restarts = -1\n}\n", "broken.hcl:2:18", `max_restarts is -1, must be >= 0`},
	{"backoff initial > max", "supervisor {\n  backoff {\n    initial = \"20s\"\n    max = \"10s\"\n  }\n}\n", "broken.hcl:3:15", `Invalid value for "initial": initial (20s) is greater than max (10s)`},
	{"backoff initial > default max", "supervisor {\n  backoff {\n    initial = \"1m\"\n  }\n}\n", "broken.hcl:3:15", `initial (1m0s) is greater than max (10s)`},
	{"jitter 2", "supervisor {\n  backoff {\n    jitter = 2\n  }\n}\n", "broken.hcl:3:14", `jitter is 2: a fraction from 0 to 1`},
	{"bad log level", "gateway {\n  log_level = \"loud\"\n}\n", "broken.hcl:2:15", `unknown log level "loud"; known: trace, debug, info, warn, error`},
	{"bad log format", "gateway {\n  log_format = \"xml\"\n}\n", "broken.hcl:2:16", `unknown log format "xml"; known: console, json`},
	{"bad gateway id", "gateway {\n  id = \"gw.1\"\n}\n", "broken.hcl:2:8", `the gateway id is used in subjects`},
	{"bad http address", "gateway {\n  http_address = \"8080\"\n}\n", "broken.hcl:2:18", `"8080" is not host:port`},
	{"bad nats url scheme", "nats {\n  url = \"nats://a:4222, http://b:4222\"\n}\n", "broken.hcl:2:9", `"http://b:4222": unsupported scheme "http"`},
	{"port 70000", "nats {\n  port = 70000\n}\n", "broken.hcl:2:10", `port 70000 is out of range: 0 to 65535, or -1 for a random port`},
	{"port not a number", "nats {\n  port = \"high\"\n}\n", "broken.hcl:2:11", `Unsuitable value type: Unsuitable value: a number is required`},
	{"two gateway blocks", "gateway {\n}\ngateway {\n}\n", "broken.hcl:3:1", `Duplicate gateway block: Only one gateway block is allowed; the first is at broken.hcl:1,1-8.`},
	{"env non-string arg", "gateway {\n  id = env(1)\n}\n", "broken.hcl:2:12", `Invalid function argument: Invalid value for "name" parameter: must be a string, not number.`},
	{"env three args", "gateway {\n  id = env(\"A\", \"b\", \"c\")\n}\n", "broken.hcl:2:23", `env takes a variable name and an optional default, not 3 arguments`},
	{"unknown function", "gateway {\n  id = envv(\"A\")\n}\n", "broken.hcl:2:8", `Call to unknown function`},
	{"point min > max", "device \"d1\" {\n  driver = \"mock\"\n  point \"p\" {\n    signal = \"sine\"\n    min = 10\n    max = 5\n  }\n}\n", "broken.hcl:5:11", `Invalid value for "min": min (10) is greater than max (5)`},
	{"unknown signal", "device \"d1\" {\n  driver = \"mock\"\n  point \"p\" {\n    signal = \"square\"\n  }\n}\n", "broken.hcl:4:14", `unknown signal "square"; known: sine, ramp, random, constant, step`},
	{"missing signal", "device \"d1\" {\n  driver = \"mock\"\n  point \"p\" {\n    min = 1\n  }\n}\n", "broken.hcl:3:3", `Invalid point "p": The signal attribute is required`},
	{"unknown point type", "device \"d1\" {\n  driver = \"mock\"\n  point \"p\" {\n    signal = \"sine\"\n    type = \"uint8\"\n  }\n}\n", "broken.hcl:5:12", `unknown type "uint8"; known: float64, int64, bool`},
	{"duplicate point key", "device \"d1\" {\n  driver = \"mock\"\n  point \"p\" { signal = \"sine\" }\n  point \"p\" { signal = \"ramp\" }\n}\n", "broken.hcl:4:3", `Point key "p" is used twice in this device; the first is at broken.hcl:3,3-12.`},
	{"point key with gt", "device \"d1\" {\n  driver = \"mock\"\n  point \"a>\" { signal = \"sine\" }\n}\n", "broken.hcl:3:3", `The point key becomes a NATS subject token`},
	{"device without points", "device \"d1\" {\n  driver = \"mock\"\n}\n", "broken.hcl:1:1", `A mock device needs at least one point block`},
	{"device interval too short", "device \"d1\" {\n  driver = \"mock\"\n  interval = \"10us\"\n  point \"p\" { signal = \"sine\" }\n}\n", "broken.hcl:3:14", `"10us" is too short: at least 1ms`},
	{"point period zero", "device \"d1\" {\n  driver = \"mock\"\n  point \"p\" {\n    signal = \"sine\"\n    period = \"0s\"\n  }\n}\n", "broken.hcl:5:14", `"0s" is too short`},
	{"negative fail_after", "device \"d1\" {\n  driver = \"mock\"\n  fail_after = -1\n  point \"p\" { signal = \"sine\" }\n}\n", "broken.hcl:3:16", `fail_after is -1`},
	{"invalid console subject", "sink \"s\" {\n  type = \"console\"\n  subjects = [\"iot.>\", \"iot..x\"]\n}\n", "broken.hcl:3:24", `invalid subject: "iot..x" has an empty token`},
	{"console subject gt not last", "sink \"s\" {\n  type = \"console\"\n  subjects = [\"iot.>.x\"]\n}\n", "broken.hcl:3:15", `'>' must be the last token`},
	{"console no subjects", "sink \"s\" {\n  type = \"console\"\n  subjects = []\n}\n", "broken.hcl:3:14", `needs at least one subject`},
	{"console format", "sink \"s\" {\n  type = \"console\"\n  format = \"xml\"\n}\n", "broken.hcl:3:12", `unknown format "xml"; known: auto, text, json`},
	{"sink name with dot", "sink \"a.b\" {\n  type = \"console\"\n}\n", "broken.hcl:1:6", `Invalid sink name`},
	{"sidecar without plugin or address", "sidecar \"s\" {\n  config { mode = \"tcp\" }\n}\n", "broken.hcl:1:1", `Write plugin = "name"`},
	{"sidecar with both", "sidecar \"s\" {\n  plugin = \"modbus\"\n  address = \"127.0.0.1:1\"\n  config { mode = \"tcp\" }\n}\n", "broken.hcl:3:13", "not both"},
	{"sidecar bad address", "sidecar \"s\" {\n  address = \"nowhere\"\n  config { mode = \"tcp\" }\n}\n", "broken.hcl:2:13", "nowhere"},
	{"sidecar without config", "sidecar \"s\" {\n  plugin = \"modbus\"\n}\n", "broken.hcl:1:1", "needs a config block"},
	{"sidecar bad heartbeat", "sidecar \"s\" {\n  plugin = \"modbus\"\n  heartbeat_interval = \"soon\"\n  config { mode = \"tcp\" }\n}\n", "broken.hcl:3:24", `"soon" is not a duration`},
	{"sidecar unknown attribute", "sidecar \"s\" {\n  plugin = \"modbus\"\n  retries = 3\n  config { mode = \"tcp\" }\n}\n", "broken.hcl:3:3", `An argument named "retries" is not expected here`},
	{"register function 5", "sidecar \"s\" {\n  plugin = \"m\"\n  config {\n    mode = \"tcp\"\n    register \"t\" {\n      address = 0\n      function = 5\n    }\n  }\n}\n", "broken.hcl:7:18", "function 5"},
	{"register unknown type", "sidecar \"s\" {\n  plugin = \"m\"\n  config {\n    mode = \"tcp\"\n    register \"t\" {\n      address = 0\n      type = \"float16\"\n    }\n  }\n}\n", "broken.hcl:7:14", `unknown type "float16"`},
	{"register coil not bool", "sidecar \"s\" {\n  plugin = \"m\"\n  config {\n    mode = \"tcp\"\n    register \"t\" {\n      address = 0\n      function = 1\n      type = \"int16\"\n    }\n  }\n}\n", "broken.hcl:8:14", "must be bool"},
	{"register float32 one register", "sidecar \"s\" {\n  plugin = \"m\"\n  config {\n    mode = \"tcp\"\n    register \"t\" {\n      address = 0\n      type = \"float32\"\n      quantity = 1\n    }\n  }\n}\n", "broken.hcl:8:18", "needs 2 registers"},
	{"register past 65535", "sidecar \"s\" {\n  plugin = \"m\"\n  config {\n    mode = \"tcp\"\n    register \"t\" {\n      address = 65535\n      type = \"float32\"\n    }\n  }\n}\n", "broken.hcl:5:5", "runs past register 65535"},
	{"register duplicate key", "sidecar \"s\" {\n  plugin = \"m\"\n  config {\n    mode = \"tcp\"\n    register \"t\" { address = 0 }\n    register \"t\" { address = 1 }\n  }\n}\n", "broken.hcl:6:5", `duplicate register key "t"`},
	{"duplicate sidecar", "sidecar \"s\" {\n  plugin = \"m\"\n  config { mode = \"tcp\" }\n}\nsidecar \"s\" {\n  plugin = \"m\"\n  config { mode = \"tcp\" }\n}\n", "broken.hcl:5:1", "Duplicate sidecar name"},
	{"user without secret", "nats {\n  authorization {\n    user \"a\" {}\n  }\n}\n", "broken.hcl:3:5", "needs a password or an nkey"},
	{"short password", "nats {\n  authorization {\n    user \"a\" { password = \"x\" }\n  }\n}\n", "broken.hcl:3:27", "shorter than 8"},
	{"bad nkey", "nats {\n  authorization {\n    user \"a\" { nkey = \"SUXYZ\" }\n  }\n}\n", "broken.hcl:3:23", "not a user public key"},
	{"modbus without registers", "device \"m\" {\n  driver = \"modbus\"\n  address = \"127.0.0.1:502\"\n}\n", "broken.hcl:1:1", "at least one register"},
	{"modbus bad order", "device \"m\" {\n  driver = \"modbus\"\n  address = \"127.0.0.1:502\"\n  register \"r\" {\n    address = 0\n    order = \"ACBD\"\n  }\n}\n", "broken.hcl:6:13", "unknown byte order"},
	{"modbus coil typed", "device \"m\" {\n  driver = \"modbus\"\n  address = \"127.0.0.1:502\"\n  register \"r\" {\n    address = 0\n    table = \"coil\"\n    type = \"float32\"\n  }\n}\n", "broken.hcl:7:12", "its type is bool"},
	{"modbus unknown group", "device \"m\" {\n  driver = \"modbus\"\n  address = \"127.0.0.1:502\"\n  register \"r\" {\n    address = 0\n    group = \"fast\"\n  }\n}\n", "broken.hcl:6:13", "no group"},
	{"modbus rtu on tcp address", "device \"m\" {\n  driver = \"modbus\"\n  mode = \"rtu\"\n  address = \"127.0.0.1:502\"\n  register \"r\" { address = 0 }\n}\n", "broken.hcl:4:13", "serial port"},
	{"simulator bad kind", "simulator \"s\" {\n  unit \"1\" {\n    signal \"t\" {\n      address = 0\n      kind = \"wave\"\n    }\n  }\n}\n", "broken.hcl:5:14", "unknown kind"},
	{"serial line with two speeds", "device \"a\" {\n  driver = \"modbus\"\n  mode = \"rtu\"\n  address = \"/dev/ttyS0\"\n  register \"r\" { address = 0 }\n}\n" +
		"device \"b\" {\n  driver = \"modbus\"\n  mode = \"rtu\"\n  address = \"/dev/ttyS0\"\n  serial { baud_rate = 19200 }\n  register \"r\" { address = 0 }\n}\n",
		"broken.hcl:7:1", `device "a" at broken.hcl:1,1-11`},
	{"nested too deeply", "gateway {\n  id = " + strings.Repeat("[", 200) + "\n}\n", "broken.hcl:2:107", `Configuration nested too deeply`},
}

func TestBrokenConfigs(t *testing.T) {
	for _, tc := range brokenCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, diags := Parse([]byte(tc.src), "broken.hcl")
			if !diags.HasErrors() {
				t.Fatalf("got no error, want %s: %s", tc.pos, tc.want)
			}
			if cfg != nil {
				t.Errorf("got a Config with errors, want nil")
			}
			got := (&Error{Diags: diags}).Error()
			for _, line := range strings.Split(got, "\n") {
				if strings.HasPrefix(line, tc.pos+": ") && strings.Contains(line, tc.want) {
					return
				}
			}
			t.Errorf("got\n%s\nwant a line at %s containing %q", got, tc.pos, tc.want)
		})
	}
}

// TestModbusByteOrders: the 64-bit names of the byte orders fit 64-bit types only, the four-letter names every
// type; a name that does not fit is reported at the register's order.
func TestModbusByteOrders(t *testing.T) {
	src := func(typ, order string) string {
		return fmt.Sprintf("device \"m\" {\n  driver = \"modbus\"\n  address = \"127.0.0.1:502\"\n  register \"r\" {\n"+
			"    address = 0\n    type = %q\n    order = %q\n    length = %d\n  }\n}\n", typ, order, map[bool]int{true: 4}[typ == "string"])
	}
	var tests []struct{ typ, order, want string }
	for _, typ := range []string{"int64", "uint64", "float64"} {
		for _, o := range []string{"ABCDEFGH", "HGFEDCBA", "BADCFEHG", "ghefcdab", "ABCD", "CDAB"} {
			tests = append(tests, struct{ typ, order, want string }{typ, o, ""})
		}
	}
	for _, typ := range []string{"int32", "uint32", "float32", "int16", "uint16", "string"} {
		tests = append(tests,
			struct{ typ, order, want string }{typ, "DCBA", ""},
			struct{ typ, order, want string }{typ, "ABCDEFGH", `broken.hcl:7:13: Invalid value for "order": byte order "ABCDEFGH" names the 8 bytes of a 64-bit value (int64, uint64, float64), and a ` + typ + " register is"},
			struct{ typ, order, want string }{typ, "GHEFCDAB", "write CDAB"},
		)
	}
	tests = append(tests, struct{ typ, order, want string }{"float64", "ABCDEFHG", `broken.hcl:7:13: Invalid value for "order": unknown byte order "ABCDEFHG"; known: ABCD, DCBA, BADC, CDAB, and for 64-bit types ABCDEFGH, HGFEDCBA, BADCFEHG, GHEFCDAB`})
	for _, tc := range tests {
		t.Run(tc.typ+" "+tc.order, func(t *testing.T) {
			cfg, diags := Parse([]byte(src(tc.typ, tc.order)), "broken.hcl")
			got := (&Error{Diags: diags}).Error()
			if tc.want == "" {
				if diags.HasErrors() {
					t.Fatalf("got %s, want no error", got)
				}
				want, err := mb.ParseByteOrder(strings.ToUpper(tc.order))
				if err != nil {
					t.Fatal(err)
				}
				if o := cfg.Devices[0].Settings.(*ModbusDevice).Model[0].Order; o != want {
					t.Errorf("got order %v, want %v", o, want)
				}
				return
			}
			if !strings.Contains(got, tc.want) || len(diags) != 1 {
				t.Errorf("got\n%s\nwant one error containing %q", got, tc.want)
			}
		})
	}
}

// TestUnknownDriverHidesNothing: a block whose driver (or sink type) is unknown cannot be decoded, but what can be
// checked without its schema is reported beside it (its id, a duplicate, its common attributes, every
// expression in it), and so are the problems of every other block.
func TestUnknownDriverHidesNothing(t *testing.T) {
	src := `gateway {
  log_level = "loud"
}
device "a.b" {
  driver   = "opcua"
  interval = "1x"
  tags     = { line = [1] }
  endpoint = env(1)
  node "n" {
    id = nosuchvar
  }
}
device "a.b" {
  driver = "mock"
  point "t" { signal = "square" }
}
device "untyped" {
  interval = "0s"
}
sink "s" {
  type  = "kafka"
  topic = env("A", "b", "c")
}
`
	_, diags := Parse([]byte(src), "unknown.hcl")
	want := []string{
		`unknown.hcl:2:15: Invalid value for "log_level": unknown log level "loud"`,
		`unknown.hcl:4:8: Invalid device id`,
		`unknown.hcl:5:14: Invalid value for "driver": unknown driver "opcua"; known: mock, modbus`,
		`unknown.hcl:6:14: Invalid value for "interval": "1x" is not a duration`,
		`unknown.hcl:7:14: Unsuitable value type: Unsuitable value: element "line": string required`,
		`unknown.hcl:8:18: Invalid function argument: Invalid value for "name" parameter: must be a string, not number.`,
		`unknown.hcl:10:10: Variables not allowed`,
		`unknown.hcl:13:8: Invalid device id`,
		`unknown.hcl:15:24: Invalid value for "signal": unknown signal "square"`,
		`unknown.hcl:13:1: Duplicate device id: Device ids must be unique: "a.b" is already used; the first is at unknown.hcl:4,1-13.`,
		`unknown.hcl:17:1: Invalid device "untyped": The driver attribute is required; known: mock, modbus.`,
		`unknown.hcl:18:14: Invalid value for "interval": "0s" is too short: at least 1ms`,
		`unknown.hcl:21:11: Invalid value for "type": unknown type "kafka"; known: console, file, jetstream`,
		`unknown.hcl:22:26: Invalid function argument: Invalid value for "default" parameter: env takes a variable name and an optional default, not 3 arguments.`,
	}
	lines := strings.Split((&Error{Diags: diags}).Error(), "\n")
	if len(lines) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(lines), len(want), strings.Join(lines, "\n"))
	}
	for i := range min(len(lines), len(want)) {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("problem %d: got\n%s\nwant it to start with\n%s", i, lines[i], want[i])
		}
	}
}
