package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

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
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
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
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

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
		}
	}()
	lineCh := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lineCh <- sc.Text():
			default:
			}
		}
	}()

	var url string
	select {
	case url = <-urlCh:
	case <-time.After(30 * time.Second):
		t.Fatal("the gateway did not print the embedded server's address")
	}
	select {
	case line := <-lineCh:
		t.Logf("first console line after %s: %s", time.Since(start).Round(time.Millisecond), line)
		if !strings.Contains(line, "boiler-1") && !strings.Contains(line, "meter-1") {
			t.Errorf("console line %q names no configured device", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no point on the console within 10 s")
	}

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect to the printed address %s: %v", url, err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("iot.processed.boiler-1.temperature")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Errorf("no point on iot.processed.boiler-1.temperature at %s: %v", url, err)
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	stopAt := time.Now()
	err = cmd.Wait()
	took := time.Since(stopAt)
	t.Logf("exited %v after SIGINT in %s", err, took.Round(time.Millisecond))
	if err != nil {
		t.Errorf("exit after SIGINT: %v, want 0", err)
	}
	if took > 5*time.Second {
		t.Errorf("took %s to exit after SIGINT, want under 5s", took)
	}
}
