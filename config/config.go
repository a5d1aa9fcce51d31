// Package config is the schema of gateway.hcl: it decodes the file with hashicorp/hcl/v2, applies defaults,
// validates every value and reports all problems at once as hcl.Diagnostics pointing at file:line:column.
//
// It is a leaf: it must never import the runtime (system, actors, sidecar) and never touch the network or
// start anything; of the project it imports only isp, for the rule names follow (isp.ValidToken). Turning a Config into running actors is someone else's job; this package only says what
// the operator asked for and whether it makes sense.
//
// Device drivers and sink types are kinds in a registry filled at init time by the kinds' own packages
// (actors.RegisterDevice, actors.RegisterSink, which call RegisterDriver and RegisterSink here). The schemas of
// the first kinds (device_mock.go, device_modbus.go, sink_console.go) still live here, beside the validation
// helpers and tests they share; a new kind keeps its schema in its own folder and uses the exported Validator.
package config

import (
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/iotgw/iotgw/isp"
)

// Config is a whole gateway.hcl, with defaults applied and validated.
type Config struct {
	Gateway    Gateway
	NATS       NATS
	Supervisor Supervisor
	Devices    []Device  // in file order
	Sinks      []Sink    // in file order
	Sidecars   []Sidecar // in file order
	Simulators []Simulator
	Rules      []Rule // in file order (rule.go)
	Faults     Faults
	HTTP       HTTP
}

// Faults is the `faults` block: fault injection through iot.control.faults.* is off unless enabled.
type Faults struct {
	Enabled bool
}

// Gateway is the `gateway` block.
type Gateway struct {
	ID            string // a valid subject token; default: the host name made into one, else "iotgw"
	LogLevel      string // trace | debug | info | warn | error
	LogFormat     string // console | json
	DataDir       string
	HTTPAddress   string // host:port; "" disables the HTTP server
	PointSubjects bool   // publish iot.processed.{device}.{key} beside the batches
	PluginsDir    string // where sidecar plugin manifests ({name}-isp.json) are
	// MemoryLimit is the Go runtime's soft memory limit in bytes (debug.SetMemoryLimit, GOMEMLIMIT), set at
	// start; 0: none. The GOMEMLIMIT environment variable overrides it.
	MemoryLimit int64
}

// NATS is the `nats` block: the embedded server or the external one, and the client options.
type NATS struct {
	URL           string // "embedded", or nats://, tls://, ws://, wss:// URLs, comma separated
	Host          string // embedded server listen host
	Port          int    // embedded server listen port; -1 picks a random one (tests)
	MaxReconnect  int    // -1 reconnects forever
	ReconnectWait time.Duration
	Timeout       time.Duration // connect timeout
	PingInterval  time.Duration
	MaxPingsOut   int
	InProcess     bool // the gateway's own connection to the embedded server is in-memory, not TCP loopback
	// PendingMessages and PendingBytes are the gateway-wide budget of bus messages buffered in the NATS client
	// for the actors' subject mailboxes, shared by their subscriptions in equal parts.
	PendingMessages int
	PendingBytes    int64
	JetStream       JetStream
	Users           []User // nats.authorization: the embedded server requires one of them when any is set
	TLS             *TLS   // the embedded server's client listener; nil: plain TCP
	ClientTLS       *TLS   // the gateway's connection to an external server (tls:// URLs)
	Insecure        bool   // acknowledge an embedded server beyond loopback without users and TLS

	Leafnode *Leafnode // the uplink to a hub (leafnode.go); nil: none
}

// JetStream is the `jetstream` block inside `nats`.
type JetStream struct {
	Enabled   bool
	StoreDir  string        // "" means <data_dir>/jetstream, resolved by the runtime
	MaxMemory int64         // bytes, the embedded server's limit for memory streams
	MaxFile   int64         // bytes, the embedded server's limit for file streams (all of them together)
	MaxAge    time.Duration // max age of the IOT_DATA stream; 0 keeps data forever
	// MaxBytes bounds the IOT_DATA stream on disk; Discard says what a full stream does: "old" deletes its oldest
	// messages (counted and reported), "new" refuses new ones (the processor's acknowledged publishes fail, counted
	// and reported).
	MaxBytes int64
	Discard  string
	// DuplicateWindow is how long the stream remembers message ids (Nats-Msg-Id) to drop a retried publish.
	DuplicateWindow time.Duration
	// DeadLetterMaxAge and DeadLetterMaxBytes bound the dead-letter stream IOT_DEADLETTER.
	DeadLetterMaxAge   time.Duration
	DeadLetterMaxBytes int64
	// PublishWindow bounds the processing stage's acknowledged publishes in flight; PublishTimeout is how long one
	// waits for its acknowledgement before it is retried (same message id, so the stream keeps it once).
	PublishWindow  int
	PublishTimeout time.Duration
	// Buffer bounds, in messages, the memory buffer of each durable inbox when JetStream is off.
	Buffer int
	// Sync is how the embedded server's store reaches the disk: "always" (fsync every write) or a duration (an
	// fsync at least that often; nats-server's default is 2m). It is the loss window of a power cut, not of a
	// crash of the process (the kernel keeps what was written).
	Sync string
	// SyncInterval is Sync parsed ("always": 0, with SyncAlways).
	SyncInterval time.Duration
	SyncAlways   bool
	// PersistMode is IOT_DATA's nats-server persist mode (2.12+): "default" writes each message to the store's
	// file before the publish is acknowledged, "async" acknowledges first and writes in batches (at 16 KiB or
	// within 8 ms), so a crash of the process loses what was acknowledged in those milliseconds. It cannot be
	// changed on an existing stream (nats-server refuses the update).
	PersistMode string
}

// Discard policies of a stream.
var DiscardPolicies = []string{"old", "new"}

// PersistModes of IOT_DATA, nats-server's names.
var PersistModes = []string{"default", "async"}

// Supervisor is the `supervisor` block: the restart policy of every supervised actor.
type Supervisor struct {
	Strategy    string // one_for_one | all_for_one
	MaxRestarts int    // 0 never restarts
	Within      time.Duration
	Backoff     Backoff
}

// Backoff is the `backoff` block inside `supervisor`: delay before restart n is Initial×2^(n-1), at most Max,
// varied by ±Jitter (a fraction).
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
	Jitter  float64
}

// Device is one `device "id"` block. Settings holds the driver's own settings, e.g. *MockDevice.
type Device struct {
	ID       string
	Driver   string
	Settings DriverSettings
	DefRange hcl.Range
}

// Sink is one `sink "name"` block. Settings holds the type's own settings, e.g. *ConsoleSink.
type Sink struct {
	Name     string
	Type     string
	Settings SinkSettings
	DefRange hcl.Range
}

// Default returns a Config with every default and no devices or sinks. It is what an empty gateway.hcl means.
func Default() *Config {
	return &Config{
		Gateway: Gateway{
			ID:            defaultID(),
			LogLevel:      "info",
			LogFormat:     "console",
			DataDir:       "./data",
			HTTPAddress:   "127.0.0.1:8080",
			PointSubjects: true,
			PluginsDir:    "./plugins",
		},
		NATS: NATS{
			URL:           "embedded",
			Host:          "127.0.0.1",
			Port:          4222,
			MaxReconnect:  -1,
			ReconnectWait: 2 * time.Second,
			Timeout:       5 * time.Second,
			// The client's own default is 2 minutes: far too long to notice a dead link on a gateway.
			PingInterval: 5 * time.Second,
			MaxPingsOut:  2,
			InProcess:    true,
			// One subscription's nats.go defaults (65,536 messages, 64 MiB) times two, for the whole gateway.
			PendingMessages: 131072,
			PendingBytes:    128 << 20,
			// On by default (issue 11): the stream is the gateway's disk, and every sink but the console reads a
			// durable consumer of it. Each gateway keeps its store under its own data_dir, so tests that run many
			// gateways give each a temporary data_dir (startRuntime does).
			JetStream: JetStream{
				Enabled:            true,
				MaxMemory:          1 << 30,
				MaxFile:            10 << 30,
				MaxAge:             24 * time.Hour,
				MaxBytes:           (10 << 30) / 4 * 3, // three quarters of max_file
				Discard:            "old",
				DuplicateWindow:    2 * time.Minute,
				DeadLetterMaxAge:   7 * 24 * time.Hour,
				DeadLetterMaxBytes: 256 << 20,
				PublishWindow:      256,
				PublishTimeout:     5 * time.Second,
				Buffer:             10000,
				Sync:               "2m",
				SyncInterval:       2 * time.Minute,
				PersistMode:        "default",
			},
		},
		Supervisor: Supervisor{
			Strategy:    "one_for_one",
			MaxRestarts: 10,
			Within:      time.Minute,
			Backoff: Backoff{
				Initial: 100 * time.Millisecond,
				Max:     10 * time.Second,
				Jitter:  0.2,
			},
		},
	}
}

// defaultID is the host name made into a valid subject token, or "iotgw" when there is nothing usable.
func defaultID() string {
	host, err := os.Hostname()
	if err != nil {
		return "iotgw"
	}
	// "plc-gw.example.com" is known as plc-gw on the floor; the domain adds nothing to a subject token.
	host, _, _ = strings.Cut(host, ".")
	id := strings.Map(func(r rune) rune {
		if r < utf8.RuneSelf && isp.TokenByte(byte(r)) {
			return r
		}
		return '-'
	}, host)
	if len(id) > MaxTokenLen { // ASCII only now
		id = id[:MaxTokenLen]
	}
	if ValidToken(id) != nil {
		return "iotgw"
	}
	return id
}
