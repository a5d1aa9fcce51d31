package testenv

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

var gatewayBuild struct {
	once sync.Once
	bin  string
	err  error
}

// GatewayBinary builds `iotgw` from this module once per test binary, for tests that run the real gateway.
func GatewayBinary(t testing.TB) string {
	t.Helper()
	gatewayBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "iotgw-testenv")
		if err != nil {
			gatewayBuild.err = err
			return
		}
		gatewayBuild.bin = filepath.Join(dir, "iotgw")
		out, err := exec.Command("go", "build", "-o", gatewayBuild.bin, "github.com/iotgw/iotgw").CombinedOutput()
		if err != nil {
			gatewayBuild.err = fmt.Errorf("go build iotgw: %v\n%s", err, out)
		}
	})
	if gatewayBuild.err != nil {
		t.Fatal(gatewayBuild.err)
	}
	return gatewayBuild.bin
}

// Gateway runs `iotgw run` with the config text that cfg returns for a free port of its embedded NATS server
// (written to a temporary file); it is stopped when the test ends. The Server's Addr is that NATS server's
// host:port; the gateway's log is in the file named by the second result.
func Gateway(t testing.TB, cfg func(natsPort int) string) (*Server, string) {
	t.Helper()
	bin := GatewayBinary(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.hcl")
	log := filepath.Join(dir, "gateway.log")
	srv := startServer(t, "iotgw", 1, func(p []int) ([]string, string, string) {
		if err := os.WriteFile(path, []byte(cfg(p[0])), 0o644); err != nil {
			t.Fatal(err)
		}
		return []string{bin, "run", "-config", path, "-log-format", "json"}, log, fmt.Sprintf("127.0.0.1:%d", p[0])
	})
	return srv, log
}

// SinkFigures are the figures iot.control.sinks.get gives for one sink (system.SinkInfo, the part tests read).
type SinkFigures struct {
	State       string `json:"state"`
	Pending     uint64 `json:"pending"`
	AckPending  int    `json:"ack_pending"`
	Acked       uint64 `json:"acked"`
	DeadLetters uint64 `json:"dead_letters"`
	LastError   string `json:"last_error"`
	Written     uint64 `json:"written"`
	Failed      uint64 `json:"failed"`
	Reconnects  uint64 `json:"reconnects"`
	// Raw is the whole reply, for a test's log.
	Raw string `json:"-"`
}

// Sink asks the gateway at nc for the figures of sink name.
func Sink(nc *nats.Conn, name string) (SinkFigures, error) {
	req, _ := json.Marshal(map[string]string{"name": name})
	msg, err := nc.Request("iot.control.sinks.get", req, 5*time.Second)
	if err != nil {
		return SinkFigures{}, err
	}
	var reply struct {
		OK    bool         `json:"ok"`
		Error string       `json:"error"`
		Sink  *SinkFigures `json:"sink"`
	}
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return SinkFigures{}, fmt.Errorf("%v in %s", err, msg.Data)
	}
	if !reply.OK || reply.Sink == nil {
		return SinkFigures{}, fmt.Errorf("sinks.get %s: %s (%s)", name, reply.Error, msg.Data)
	}
	reply.Sink.Raw = string(msg.Data)
	return *reply.Sink, nil
}
