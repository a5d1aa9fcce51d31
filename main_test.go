package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/nats-io/nats.go"
)

// TestMain lets a test run this binary as the iotgw command (the test binary re-executes itself).
func TestMain(m *testing.M) {
	if os.Getenv("IOTGW_RUN_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"version"}, &out, io.Discard); code != 0 || !strings.HasPrefix(out.String(), "iotgw ") {
		t.Errorf("version: exit %d, output %q", code, out.String())
	}
}

func TestUnknownCommand(t *testing.T) {
	var errOut bytes.Buffer
	if code := run([]string{"frobnicate"}, io.Discard, &errOut); code != 2 || !strings.Contains(errOut.String(), `unknown command "frobnicate"`) {
		t.Errorf("exit %d, stderr %q; want 2 and the unknown command named", code, errOut.String())
	}
}

func TestValidate(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", "gateway.hcl"}, &out, &errOut); code != 0 {
		t.Fatalf("validate gateway.hcl: exit %d\n%s", code, errOut.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.hcl")
	src := "gateway {\n  log_level = \"loud\"\n}\ndevice \"a.b\" {\n  driver = \"mock\"\n  point \"x\" { signal = \"sine\" }\n}\n"
	if err := os.WriteFile(bad, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	code := run([]string{"validate", bad}, &out, &errOut)
	if code != 1 {
		t.Errorf("validate bad config: exit %d, want 1", code)
	}
	// Every problem is listed, each with its position.
	for _, want := range []string{"bad.hcl:2", "loud", "bad.hcl:4", "a.b"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("validate output lacks %q:\n%s", want, errOut.String())
		}
	}
}

// gatewayProcess is `iotgw run` as a process (this test binary re-executed), its console lines and the bus URL it
// printed at start-up.
type gatewayProcess struct {
	path  string // its config file
	cmd   *exec.Cmd
	url   string
	lines chan string // stdout
	logs  chan string // stderr
	start time.Time
}

func startGatewayProcess(t *testing.T, cfg string) *gatewayProcess {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, os.Args[0], "run", "-config", path)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "IOTGW_RUN_MAIN=1", "LOG_LEVEL=info")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	g := &gatewayProcess{path: path, cmd: cmd, lines: make(chan string, 1000), logs: make(chan string, 1000), start: time.Now()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGINT)
			_ = cmd.Wait()
		}
	})
	urlCh := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`url=(nats://[0-9.:]+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if testing.Verbose() {
				t.Log("stderr:", sc.Text())
			}
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case urlCh <- m[1]:
				default:
				}
			}
			select {
			case g.logs <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case g.lines <- sc.Text():
			default:
			}
		}
	}()
	select {
	case g.url = <-urlCh:
	case <-time.After(30 * time.Second):
		t.Fatal("the gateway did not print the embedded server's address")
	}
	return g
}

// TestRunShowsPointsAndStopsOnSignal runs the real command on a copy of the shipped gateway.hcl: points appear on
// the console and on the bus at the address the gateway prints, and SIGINT stops it with exit 0 within 5 s.
func TestRunShowsPointsAndStopsOnSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the gateway as a process; skipped with -short")
	}
	src, err := os.ReadFile("gateway.hcl")
	if err != nil {
		t.Fatal(err)
	}
	// Same config, but on a random port so the test never collides with a gateway already running here.
	cfg := strings.Replace(string(src), "port = 4222", "port = -1", 1)
	cfg = strings.ReplaceAll(cfg, "127.0.0.1:5020", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	cfg = strings.Replace(cfg, `http_address = "127.0.0.1:8080"`, `http_address = "127.0.0.1:0"`, 1)
	g := startGatewayProcess(t, cfg)
	select {
	case line := <-g.lines:
		t.Logf("first console line after %s: %s", time.Since(g.start).Round(time.Millisecond), line)
		if !regexp.MustCompile(`boiler-1|boiler-2|mixer-1|meter-1`).MatchString(line) {
			t.Errorf("console line %q names no configured device", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no point on the console within 10 s")
	}

	nc, err := nats.Connect(g.url)
	if err != nil {
		t.Fatalf("connect to the printed address %s: %v", g.url, err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("iot.processed.boiler-1.temperature")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Errorf("no point on iot.processed.boiler-1.temperature at %s: %v", g.url, err)
	}

	if err := g.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	stopAt := time.Now()
	err = g.cmd.Wait()
	took := time.Since(stopAt)
	t.Logf("exited %v after SIGINT in %s", err, took.Round(time.Millisecond))
	if err != nil {
		t.Errorf("exit after SIGINT: %v, want 0", err)
	}
	if took > 5*time.Second {
		t.Errorf("took %s to exit after SIGINT, want under 5s", took)
	}
}

// TestModbusSidecarPlugin: the gateway launches the reference Modbus sidecar from plugins/modbus-isp.json (the
// gateway binary itself, `iotgw sidecar modbus`), which polls an independent Modbus server (Debian's
// python3-pymodbus); the values arrive on the bus under the sidecar's name.
func TestModbusSidecarPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the gateway as a process; skipped with -short")
	}
	testenv.Pymodbus(t)
	mbPort, ispPort := freePort(t), freePort(t)
	srv := exec.Command(testenv.Python, "testdata/pymodbus_server.py", strconv.Itoa(mbPort), `{"hr":[17142,59769]}`)
	out, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	if !bufio.NewScanner(out).Scan() {
		t.Fatal("pymodbus server did not start")
	}
	plugins, err := filepath.Abs("plugins")
	if err != nil {
		t.Fatal(err)
	}
	g := startGatewayProcess(t, fmt.Sprintf(`
gateway {
  plugins_dir    = %q
  point_subjects = true
  http_address   = "127.0.0.1:0"
}
nats { port = -1 }
sidecar "plc" {
  plugin = "modbus"
  port   = %d
  config {
    mode     = "tcp"
    address  = "127.0.0.1:%d"
    interval = "100ms"
    register "temperature" {
      address = 0
      type    = "float32"
      unit    = "C"
    }
  }
}
`, plugins, ispPort, mbPort))
	nc, err := nats.Connect(g.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("iot.processed.plc.temperature")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(20 * time.Second)
	if err != nil {
		t.Fatalf("no point from the Modbus sidecar: %v", err)
	}
	var p struct {
		Value   float64 `json:"value"`
		Quality int     `json:"quality"`
		Source  string  `json:"source"`
	}
	if err := json.Unmarshal(msg.Data, &p); err != nil {
		t.Fatal(err)
	}
	if math.Abs(p.Value-123.456) > 1e-4 || p.Quality != 1 || p.Source != "plc" {
		t.Errorf("point %s: want 123.456, good quality, source plc", msg.Data)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestSIGHUPReloads: a device added to the config file starts on SIGHUP, without a restart.
func TestSIGHUPReloads(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the gateway as a process; skipped with -short")
	}
	base := "gateway {\n  http_address = \"\"\n}\nnats { port = -1 }\n"
	g := startGatewayProcess(t, base)
	nc, err := nats.Connect(g.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("iot.processed.batch.late")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.path, []byte(base+"device \"late\" {\n  driver = \"mock\"\n  interval = \"50ms\"\n  point \"x\" { signal = \"sine\" }\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(15 * time.Second); err != nil {
		t.Fatalf("the device added to the file does not publish after SIGHUP: %v", err)
	}
}

// TestSIGHUPBrokenConfigIsLogged: a SIGHUP with a broken config file changes nothing and says why in the log,
// with the problem's position.
func TestSIGHUPBrokenConfigIsLogged(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the gateway as a process; skipped with -short")
	}
	base := "gateway {\n  http_address = \"\"\n}\nnats { port = -1 }\n"
	g := startGatewayProcess(t, base)
	if err := os.WriteFile(g.path, []byte(base+"device \"late\" {\n  driver = \"nosuch\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(15 * time.Second)
	for {
		select {
		case line := <-g.logs:
			if strings.Contains(line, "reload on SIGHUP failed") {
				for _, want := range []string{"gateway.hcl:6:", "nosuch"} {
					if !strings.Contains(line, want) {
						t.Errorf("log line %q lacks %q", line, want)
					}
				}
				return
			}
		case <-deadline:
			t.Fatal("no log line about the broken config within 15 s of SIGHUP")
		}
	}
}
