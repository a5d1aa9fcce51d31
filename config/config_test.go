package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

func TestFullConfig(t *testing.T) {
	cfg, err := Load("testdata/full.hcl")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &Config{
		Gateway: Gateway{ID: "gw-7", LogLevel: "debug", LogFormat: "json", DataDir: "/var/lib/iotgw", HTTPAddress: "", PointSubjects: false, PluginsDir: "./plugins"},
		NATS: NATS{
			URL: "nats://a:4222, tls://b:4443", Host: "0.0.0.0", Port: -1, MaxReconnect: 5,
			ReconnectWait: 250 * time.Millisecond, Timeout: 3 * time.Second, PingInterval: time.Second, MaxPingsOut: 4, InProcess: true,
			PendingMessages: 5000, PendingBytes: 16 << 20,
			JetStream: JetStream{Enabled: true, StoreDir: "/tmp/js", MaxMemory: 512 << 20, MaxFile: 2 << 30, MaxAge: time.Hour,
				MaxBytes: (2 << 30) / 4 * 3, Sync: "2m", SyncInterval: 2 * time.Minute, Discard: "old", DuplicateWindow: 2 * time.Minute, DeadLetterMaxAge: 7 * 24 * time.Hour,
				DeadLetterMaxBytes: 128 << 20, PublishWindow: 256, PublishTimeout: 5 * time.Second, Buffer: 10000, PersistMode: "default"},
		},
		Supervisor: Supervisor{
			Strategy: "all_for_one", MaxRestarts: 0, Within: 30 * time.Second,
			Backoff: Backoff{Initial: 50 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.5},
		},
	}
	got := *cfg
	got.Devices, got.Sinks = nil, nil
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, *want)
	}

	if len(cfg.Devices) != 1 {
		t.Fatalf("got %d devices, want 1", len(cfg.Devices))
	}
	dev := cfg.Devices[0]
	if dev.ID != "plc-1" || dev.Driver != "mock" || dev.DefRange.String() != "testdata/full.hcl:43,1-15" {
		t.Errorf("got device %q driver %q at %s, want plc-1 mock at testdata/full.hcl:43,1-15", dev.ID, dev.Driver, dev.DefRange)
	}
	mock := dev.Settings.(*MockDevice)
	if mock.Interval != 500*time.Millisecond || mock.FailAfter != 3 || mock.FailMode != "worker" || mock.Tags["line"] != "A" {
		t.Errorf("got %+v, want interval 500ms, fail_after 3, fail_mode worker, tags line=A", mock)
	}
	wantPoints := []MockPoint{
		{Key: "temperature", Signal: "sine", Type: "float64", Unit: "°C", Min: 20, Max: 30, Value: 20,
			Period: 10 * time.Second, Interval: 100 * time.Millisecond, Tags: map[string]string{"sensor": "t1"},
			PeriodText: "10s", IntervalText: "100ms"},
		{Key: "count", Signal: "constant", Type: "int64", Min: 0, Max: 100, Value: 7, Period: time.Minute, PeriodText: "60s"},
	}
	for i := range mock.Points {
		if len(mock.Points[i].Tags) == 0 {
			mock.Points[i].Tags = nil // absent and empty mean the same
		}
	}
	if !reflect.DeepEqual(mock.Points, wantPoints) {
		t.Errorf("got points\n%+v\nwant\n%+v", mock.Points, wantPoints)
	}

	if len(cfg.Sinks) != 1 {
		t.Fatalf("got %d sinks, want 1", len(cfg.Sinks))
	}
	sink := cfg.Sinks[0]
	wantSink := &ConsoleSink{Subjects: []string{"iot.processed.batch.>", "iot.alerts.*.plc-1"}, Format: "json", Queue: "printers"}
	if sink.Name != "console" || sink.Type != "console" || !reflect.DeepEqual(sink.Settings, wantSink) {
		t.Errorf("got sink %q type %q %+v, want console console %+v", sink.Name, sink.Type, sink.Settings, wantSink)
	}
}

// The shipped gateway.hcl must always load: it is what `go run . run` uses.
func TestShippedGatewayHCL(t *testing.T) {
	if _, err := Load("../gateway.hcl"); err != nil {
		t.Fatalf("Load(../gateway.hcl):\n%v", err)
	}
}

func TestDefaults(t *testing.T) {
	cfg, diags := Parse(nil, "empty.hcl")
	if diags.HasErrors() {
		t.Fatalf("empty config: %v", diags)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("empty config: got %+v, want Default() %+v", cfg, Default())
	}
	// Blocks present but empty mean the same as no blocks.
	cfg2, diags := Parse([]byte("gateway {}\nnats {\n  jetstream {}\n}\nsupervisor {\n  backoff {}\n}\n"), "empty-blocks.hcl")
	if diags.HasErrors() {
		t.Fatalf("empty blocks: %v", diags)
	}
	if !reflect.DeepEqual(cfg2, cfg) {
		t.Errorf("empty blocks: got %+v, want %+v", cfg2, cfg)
	}

	tests := []struct {
		field string
		got   any
		want  any
	}{
		{"Gateway.LogLevel", cfg.Gateway.LogLevel, "info"},
		{"Gateway.LogFormat", cfg.Gateway.LogFormat, "console"},
		{"Gateway.DataDir", cfg.Gateway.DataDir, "./data"},
		{"Gateway.HTTPAddress", cfg.Gateway.HTTPAddress, "127.0.0.1:8080"},
		{"Gateway.PointSubjects", cfg.Gateway.PointSubjects, true},
		{"Gateway.PluginsDir", cfg.Gateway.PluginsDir, "./plugins"},
		{"NATS.URL", cfg.NATS.URL, "embedded"},
		{"NATS.Host", cfg.NATS.Host, "127.0.0.1"},
		{"NATS.Port", cfg.NATS.Port, 4222},
		{"NATS.MaxReconnect", cfg.NATS.MaxReconnect, -1},
		{"NATS.ReconnectWait", cfg.NATS.ReconnectWait, 2 * time.Second},
		{"NATS.Timeout", cfg.NATS.Timeout, 5 * time.Second},
		{"NATS.PingInterval", cfg.NATS.PingInterval, 5 * time.Second},
		{"NATS.MaxPingsOut", cfg.NATS.MaxPingsOut, 2},
		{"NATS.InProcess", cfg.NATS.InProcess, true},
		{"NATS.JetStream.Enabled", cfg.NATS.JetStream.Enabled, true},
		{"NATS.JetStream.StoreDir", cfg.NATS.JetStream.StoreDir, ""},
		{"NATS.JetStream.MaxMemory", cfg.NATS.JetStream.MaxMemory, int64(1 << 30)},
		{"NATS.JetStream.MaxFile", cfg.NATS.JetStream.MaxFile, int64(10 << 30)},
		{"NATS.JetStream.MaxAge", cfg.NATS.JetStream.MaxAge, 24 * time.Hour},
		{"NATS.JetStream.MaxBytes", cfg.NATS.JetStream.MaxBytes, int64(10<<30) / 4 * 3},
		{"NATS.JetStream.Discard", cfg.NATS.JetStream.Discard, "old"},
		{"NATS.JetStream.DuplicateWindow", cfg.NATS.JetStream.DuplicateWindow, 2 * time.Minute},
		{"NATS.JetStream.PublishWindow", cfg.NATS.JetStream.PublishWindow, 256},
		{"NATS.JetStream.Buffer", cfg.NATS.JetStream.Buffer, 10000},
		{"NATS.JetStream.SyncInterval", cfg.NATS.JetStream.SyncInterval, 2 * time.Minute},
		{"Supervisor.Strategy", cfg.Supervisor.Strategy, "one_for_one"},
		{"Supervisor.MaxRestarts", cfg.Supervisor.MaxRestarts, 10},
		{"Supervisor.Within", cfg.Supervisor.Within, time.Minute},
		{"Supervisor.Backoff.Initial", cfg.Supervisor.Backoff.Initial, 100 * time.Millisecond},
		{"Supervisor.Backoff.Max", cfg.Supervisor.Backoff.Max, 10 * time.Second},
		{"Supervisor.Backoff.Jitter", cfg.Supervisor.Backoff.Jitter, 0.2},
		{"Devices", len(cfg.Devices), 0},
		{"Sinks", len(cfg.Sinks), 0},
	}
	for _, tc := range tests {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.field, tc.got, tc.want)
		}
	}
	if err := ValidToken(cfg.Gateway.ID); err != nil {
		t.Errorf("default Gateway.ID %q: %v", cfg.Gateway.ID, err)
	}
}

func TestKindDefaults(t *testing.T) {
	src := `
device "d" {
  driver = "mock"
  point "p" { signal = "random" }
}
sink "s" { type = "console" }
`
	cfg, diags := Parse([]byte(src), "kinds.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	m := cfg.Devices[0].Settings.(*MockDevice)
	if m.Interval != time.Second || m.FailAfter != 0 || m.FailMode != "receive" {
		t.Errorf("mock device: got interval %v fail_after %d fail_mode %q, want 1s 0 receive", m.Interval, m.FailAfter, m.FailMode)
	}
	p := m.Points[0]
	if p.Type != "float64" || p.Min != 0 || p.Max != 100 || p.Value != 0 || p.Period != time.Minute || p.Interval != 0 {
		t.Errorf("mock point: got %+v, want float64 0..100 value 0 period 1m interval 0", p)
	}
	c := cfg.Sinks[0].Settings.(*ConsoleSink)
	if want := (&ConsoleSink{Subjects: []string{"iot.processed.batch.>"}, Format: "auto"}); !reflect.DeepEqual(c, want) {
		t.Errorf("console sink: got %+v, want %+v", c, want)
	}
}

func TestEnv(t *testing.T) {
	t.Setenv("IOTGW_TEST_ID", "gw-env")
	t.Setenv("IOTGW_TEST_DIR", "/srv/data")
	os.Unsetenv("IOTGW_TEST_UNSET")
	src := `
gateway {
  id           = env("IOTGW_TEST_ID", "ignored")
  data_dir     = "${env("IOTGW_TEST_DIR")}/gw"
  log_level    = env("IOTGW_TEST_UNSET", "warn")
  http_address = env("IOTGW_TEST_UNSET")
}
`
	cfg, diags := Parse([]byte(src), "env.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	g := cfg.Gateway
	if g.ID != "gw-env" || g.DataDir != "/srv/data/gw" || g.LogLevel != "warn" || g.HTTPAddress != "" {
		t.Errorf("got id %q data_dir %q log_level %q http_address %q, want gw-env /srv/data/gw warn \"\"",
			g.ID, g.DataDir, g.LogLevel, g.HTTPAddress)
	}
}

func TestParseDevice(t *testing.T) {
	dev, diags := ParseDevice([]byte(okDevice), "hot.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if dev.ID != "d1" || dev.Driver != "mock" || len(dev.Settings.(*MockDevice).Points) != 1 {
		t.Errorf("got %+v, want device d1, driver mock, one point", dev)
	}

	// The same bad block gives the same errors alone and in a whole configuration.
	for _, tc := range brokenCases {
		if !strings.HasPrefix(tc.src, "device") || strings.Count(tc.src, "device ") != 1 {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			_, alone := ParseDevice([]byte(tc.src), "broken.hcl")
			_, whole := Parse([]byte(tc.src), "broken.hcl")
			got, want := (&Error{Diags: alone}).Error(), (&Error{Diags: whole}).Error()
			if got != want || got == "" {
				t.Errorf("ParseDevice: got\n%s\nwant (as Parse)\n%s", got, want)
			}
		})
	}

	for _, tc := range []struct{ name, src, want string }{
		{"none", "# nothing\n", "hot.hcl:1:1: Missing device block"},
		{"two", okDevice + strings.Replace(okDevice, "d1", "d2", 1), "hot.hcl:5:1: More than one device block"},
		{"other block", "gateway {}\n", `hot.hcl:1:1: Unsupported block type: Blocks of type "gateway" are not expected here.`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev, diags := ParseDevice([]byte(tc.src), "hot.hcl")
			if got := (&Error{Diags: diags}).Error(); dev != nil || !strings.Contains(got, tc.want) {
				t.Errorf("got %v and\n%s\nwant nil and %q", dev, got, tc.want)
			}
		})
	}
}

func TestAllProblemsReported(t *testing.T) {
	src := `gateway {
  log_level = "loud"
}
nats {
  port = 70000
  jetstream {
    max_age = "forever"
  }
}
supervisor {
  backoff {
    jitter = -1
  }
}
device "a.b" {
  driver = "mock"
  point "p" {
    signal = "square"
    min    = 5
    max    = 1
  }
}
device "a.b" {
  driver = "opcua"
}
sink "s" {
  type     = "console"
  subjects = ["iot..x"]
}
`
	_, diags := Parse([]byte(src), "many.hcl")
	want := []string{
		`many.hcl:2:15: Invalid value for "log_level": unknown log level "loud"`,
		`many.hcl:5:10: Invalid value for "port": port 70000 is out of range`,
		`many.hcl:7:15: Invalid value for "max_age": "forever" is not a duration`,
		`many.hcl:12:14: Invalid value for "jitter": jitter is -1`,
		`many.hcl:15:8: Invalid device id`,
		`many.hcl:18:14: Invalid value for "signal": unknown signal "square"`,
		`many.hcl:19:14: Invalid value for "min": min (5) is greater than max (1)`,
		`many.hcl:23:8: Invalid device id`,
		`many.hcl:24:12: Invalid value for "driver": unknown driver "opcua"`,
		`many.hcl:23:1: Duplicate device id: Device ids must be unique: "a.b" is already used; the first is at many.hcl:15,1-13.`,
		`many.hcl:28:15: Invalid value for "subjects": invalid subject: "iot..x"`,
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

func TestErrorOutput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.hcl")
	if err := os.WriteFile(path, []byte("nats {\n  port = 70000\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("got %T %v, want *Error", err, err)
	}
	if want := path + ":2:10: Invalid value for \"port\": port 70000 is out of range: 0 to 65535, or -1 for a random port"; err.Error() != want {
		t.Errorf("Error(): got\n%s\nwant\n%s", err, want)
	}
	var b strings.Builder
	if err := cerr.WriteText(&b, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Error: Invalid value for \"port\"", "line 2", "port = 70000"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("WriteText: got\n%s\nwant it to contain %q", b.String(), want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(filepath.Join(dir, "missing.hcl"))
	var cerr *Error
	if !errors.As(err, &cerr) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: got %T %v, want *Error wrapping fs.ErrNotExist", err, err)
	}

	big := sparseFile(t, dir, "big.hcl", MaxFileSize+1)
	_, err = Load(big)
	if !errors.As(err, &cerr) || !errors.Is(err, errTooLarge) || !strings.Contains(err.Error(), "file too large") {
		t.Errorf("big file: got %v, want a file too large *Error", err)
	}
}

// TestLoadSizeLimit checks the size limit at its boundary, on the size check alone (readFile): parsing megabytes
// is TestHostileInput's job at a size that is quick under -race.
func TestLoadSizeLimit(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		size int64
		ok   bool
	}{{MaxFileSize, true}, {MaxFileSize + 1, false}} {
		src, err := readFile(sparseFile(t, dir, fmt.Sprintf("%d.hcl", tc.size), tc.size))
		switch {
		case tc.ok && (err != nil || int64(len(src)) != tc.size):
			t.Errorf("%d bytes: got %d bytes, %v; want the whole file", tc.size, len(src), err)
		case !tc.ok && !errors.Is(err, errTooLarge):
			t.Errorf("%d bytes: got %v, want %v", tc.size, err, errTooLarge)
		}
	}
	// A source without a size (a pipe) is limited by the read.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _ = w.Write(make([]byte, MaxFileSize+1))
		w.Close()
	}()
	defer r.Close()
	if _, err := readFile(fmt.Sprintf("/dev/fd/%d", r.Fd())); !errors.Is(err, errTooLarge) {
		t.Errorf("pipe of %d bytes: got %v, want %v", MaxFileSize+1, err, errTooLarge)
	}
}

// sparseFile makes a file of size bytes that takes no disk space.
func sparseFile(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return path
}

// maxMessage is the longest error message a hostile input may produce: the input must not be echoed whole.
const maxMessage = 64 << 10

// TestHostileInput: input shaped to exhaust the parser or to be echoed back is refused with a short message at
// its position. The long values are twice maxMessage, which is what the no-echo check needs: a larger one only
// makes the parser work longer (5 MB took 20 s each under -race) and checks nothing more. How large a file may
// be at all is Load's size check, tested at its boundary in TestLoadSizeLimit.
func TestHostileInput(t *testing.T) {
	long := 2 * maxMessage
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"long string", "gateway {\n  id = \"" + strings.Repeat("x", long) + "\"\n}\n", "hostile.hcl:2:8: Invalid value for \"id\""},
		{"long string in a subject", "sink \"s\" {\n  type = \"console\"\n  subjects = [\"" + strings.Repeat("a.", long/2) + ".\"]\n}\n", "hostile.hcl:3:15: Invalid value for \"subjects\""},
		{"deep brackets", "x = " + strings.Repeat("[", 1<<17) + "\n", "Configuration nested too deeply"},
		{"deep blocks", strings.Repeat("a {\n", 1<<16), "Configuration nested too deeply"},
		{"deep parentheses", "x = " + strings.Repeat("(", 1<<17) + "1\n", "Configuration nested too deeply"},
		{"deep interpolation", "x = " + strings.Repeat("\"${", 1<<16) + "\n", "Configuration nested too deeply"},
		{"unary chain", "x = " + strings.Repeat("!", 1<<17) + "true\n", "Configuration nested too deeply"},
		{"conditional chain", "x = " + strings.Repeat("true ? 1 : ", 1<<16) + "2\n", "Configuration nested too deeply"},
		{"template directives", "x = \"" + strings.Repeat("%{ if true }", 1<<16) + "\"\n", "Configuration nested too deeply"},
		{"invalid UTF-8 in a value", "gateway {\n  id = \"gw\xff\xfe\"\n}\n", "hostile.hcl:2:"},
		{"invalid UTF-8 in a label", "device \"d\xff\" {\n  driver = \"mock\"\n}\n", "hostile.hcl:1:"},
		{"NUL bytes", "gateway {\x00\x00\n}\n", "hostile.hcl:1:"},
		{"128 KB of NUL", strings.Repeat("\x00", long), "hostile.hcl:1:1:"},
		{"binary", "\x7fELF\x02\x01\x01\x00\x00\x00" + strings.Repeat("\xff\x00\x13", 1000), "hostile.hcl:1:1:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, diags := Parse([]byte(tc.src), "hostile.hcl")
			if !diags.HasErrors() || cfg != nil {
				t.Fatalf("got no error, want %q", tc.want)
			}
			if len(diags) > maxDiagnostic+1 {
				t.Errorf("got %d diagnostics, want at most %d", len(diags), maxDiagnostic+1)
			}
			got := (&Error{Diags: diags}).Error()
			if !strings.Contains(got, tc.want) {
				t.Errorf("got\n%.2000s\nwant it to contain %q", got, tc.want)
			}
			if len(got) > maxMessage {
				t.Errorf("got a %d byte message: the input must not be echoed whole", len(got))
			}
		})
	}
}

func ExampleParse() {
	src := []byte(`
gateway {
  id = "gw-1"
}
device "boiler-1" {
  driver = "mock"
  point "temperature" {
    signal = "sine"
    min    = 60
    max    = 90
  }
}
device "boiler.2" {
  driver = "mock"
}
`)
	if _, diags := Parse(src, "gateway.hcl"); diags.HasErrors() {
		fmt.Println(&Error{Diags: diags})
	}

	cfg, _ := Parse(src[:strings.Index(string(src), `device "boiler.2"`)], "gateway.hcl")
	p := cfg.Devices[0].Settings.(*MockDevice).Points[0]
	fmt.Println(cfg.Gateway.ID, cfg.Devices[0].ID, p.Key, p.Min, p.Max, p.Period)
	// Output:
	// gateway.hcl:13:8: Invalid device id: The device id becomes a NATS subject token: invalid subject token: "boiler.2" contains '.', which separates subject tokens; use ASCII letters, digits, '-' and '_'.
	// gateway.hcl:13:1: Invalid device "boiler.2": A mock device needs at least one point block, like point "temperature" { signal = "sine" }.
	// gw-1 boiler-1 temperature 60 90 1m0s
}

func FuzzParse(f *testing.F) {
	for _, tc := range brokenCases {
		if len(tc.src) < 4096 {
			f.Add([]byte(tc.src))
		}
	}
	if full, err := os.ReadFile("testdata/full.hcl"); err == nil {
		f.Add(full)
	}
	// The run-time parser must never read the environment: whatever the input, the secret does not reach a device.
	const secret = "fuzz-secret-7f3a"
	os.Setenv("IOTGW_FUZZ_SECRET", secret)
	f.Add([]byte(`device "d" {
  driver = "mock"
  tags   = { x = env("IOTGW_FUZZ_SECRET") }
  point "t" { signal = "sine" }
}`))
	f.Fuzz(func(t *testing.T, src []byte) {
		if dev, diags := ParseRuntimeDevice(src, "request"); diags.HasErrors() != (dev == nil) {
			t.Fatalf("ParseRuntimeDevice: got device %v with errors %v", dev != nil, diags.HasErrors())
		} else if dev != nil && strings.Contains(fmt.Sprintf("%+v %+v", *dev, dev.Settings), secret) && !strings.Contains(string(src), secret) {
			t.Fatalf("ParseRuntimeDevice read the environment: %+v", *dev)
		}
		cfg, file, diags := parse(src, "fuzz.hcl")
		if diags.HasErrors() != (cfg == nil) {
			t.Fatalf("got cfg %v with errors %v", cfg != nil, diags.HasErrors())
		}
		_ = (&Error{Diags: diags}).Error()
		var b strings.Builder
		if err := (&Error{Diags: diags, Files: map[string]*hcl.File{"fuzz.hcl": file}}).WriteText(&b, false); err != nil {
			t.Fatal(err)
		}
		dev, diags := ParseDevice(src, "fuzz.hcl")
		if diags.HasErrors() != (dev == nil) {
			t.Fatalf("ParseDevice: got device %v with errors %v", dev != nil, diags.HasErrors())
		}
	})
}

func TestSidecarBlock(t *testing.T) {
	cfg, diags := Parse([]byte(`
gateway { plugins_dir = "/opt/iotgw/plugins" }
sidecar "plc-a" {
  plugin             = "modbus"
  port               = 50100
  heartbeat_interval = "5s"
  config {
    mode     = "tcp"
    address  = "127.0.0.1:5020"
    interval = "500ms"
    register "temperature" {
      address = 10
      type    = "float32"
      scale   = 0.1
      unit    = "°C"
      tags    = { zone = "north" }
    }
    register "running" {
      address  = 3
      function = 1
      type     = "bool"
    }
  }
}
sidecar "remote" {
  address = "10.0.0.5:50052"
  config { mode = "rtu" }
}
`), "sc.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if cfg.Gateway.PluginsDir != "/opt/iotgw/plugins" || len(cfg.Sidecars) != 2 {
		t.Fatalf("plugins_dir %q, %d sidecars", cfg.Gateway.PluginsDir, len(cfg.Sidecars))
	}
	a := cfg.Sidecars[0]
	if a.Name != "plc-a" || a.Plugin != "modbus" || a.Port != 50100 || a.HeartbeatInterval != 5*time.Second ||
		a.MaxMissedHeartbeats != 3 || a.RequestTimeout != 10*time.Second || a.MaxLineSize != 1<<20 {
		t.Errorf("sidecar %+v", a)
	}
	c := a.Config
	if c.Mode != "tcp" || c.Address != "127.0.0.1:5020" || c.Interval != 500*time.Millisecond || c.Timeout != 3*time.Second || len(c.Registers) != 2 {
		t.Fatalf("config %+v", c)
	}
	want := SidecarRegister{Key: "temperature", Address: 10, Quantity: 2, Type: "float32", Function: 3, Scale: 0.1, DeviceID: 1,
		Tags: map[string]string{"zone": "north", "unit": "°C"}}
	if !reflect.DeepEqual(c.Registers[0], want) {
		t.Errorf("register %+v, want %+v", c.Registers[0], want)
	}
	if r := c.Registers[1]; r.Function != 1 || r.Type != "bool" || r.Quantity != 1 {
		t.Errorf("coil register %+v", r)
	}
	if b := cfg.Sidecars[1]; b.Address != "10.0.0.5:50052" || b.Plugin != "" || b.Config.Mode != "rtu" {
		t.Errorf("remote sidecar %+v", b)
	}
}
