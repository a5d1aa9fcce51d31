package system

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// TestUsersRestrictControl: with users configured the embedded server refuses anonymous clients, a non-admin user
// can read data but not reach iot.control.>, an admin (password or nkey) can.
func TestUsersRestrictControl(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	rt := startRuntime(t, parseConfig(t, fmt.Sprintf(`
nats {
  authorization {
    user "admin" {
      password = "admin-secret-1"
      admin    = true
    }
    user "reader" { password = "reader-secret-1" }
    user "ops" {
      nkey  = %q
      admin = true
    }
  }
}
device "d1" {
  driver   = "mock"
  interval = "20ms"
  point "x" { signal = "sine" }
}`, pub)))
	url := rt.Bus().URL

	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("anonymous connect: %v, want an authorization error", err)
	}

	reader, err := nats.Connect(url, nats.UserInfo("reader", "reader-secret-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	sub, err := reader.SubscribeSync("iot.processed.batch.d1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Errorf("reader gets no data: %v", err)
	}
	if _, err := reader.Request(SubjectPing, nil, time.Second); err == nil {
		t.Error("a non-admin user reached iot.control.ping")
	}
	if _, err := reader.Request(SubjectDevicesRemove, []byte(`{"id":"d1"}`), time.Second); err == nil {
		t.Error("a non-admin user reached iot.control.devices.remove")
	}
	if _, ok := rt.Tree().Get("devices/d1"); !ok {
		t.Error("the device is gone")
	}

	admin, err := nats.Connect(url, nats.UserInfo("admin", "admin-secret-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Request(SubjectPing, nil, 5*time.Second); err != nil {
		t.Errorf("admin ping: %v", err)
	}

	ops, err := nats.Connect(url, nats.Nkey(pub, kp.Sign))
	if err != nil {
		t.Fatal(err)
	}
	defer ops.Close()
	if _, err := ops.Request(SubjectTree, nil, 5*time.Second); err != nil {
		t.Errorf("nkey admin tree: %v", err)
	}
	if _, err := nats.Connect(url, nats.UserInfo("admin", "wrong-password")); err == nil {
		t.Error("a wrong password connected")
	}
}
