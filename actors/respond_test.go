package actors

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRespond: a reply arrives as JSON; one that cannot be sent (the connection is gone) is logged, not dropped.
func TestRespond(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats server did not start")
	}
	defer s.Shutdown()
	responder, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer responder.Close()
	requester, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer requester.Close()
	sub, err := responder.SubscribeSync("q")
	if err != nil {
		t.Fatal(err)
	}
	if err := responder.Flush(); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	log := zerolog.New(&logs)

	got := make(chan string, 1)
	go func() {
		m, err := requester.Request("q", nil, 5*time.Second)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(m.Data)
	}()
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	Respond(log, msg, map[string]int{"n": 1})
	if reply := <-got; reply != `{"n":1}` {
		t.Errorf("reply %q, want {\"n\":1}", reply)
	}

	if err := requester.PublishRequest("q", "r.1", nil); err != nil {
		t.Fatal(err)
	}
	if msg, err = sub.NextMsg(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	responder.Close()
	Respond(log, msg, map[string]int{"n": 2})
	if !strings.Contains(logs.String(), "cannot send reply") || !strings.Contains(logs.String(), `"reply":"r.1"`) {
		t.Errorf("log %q: want the failed reply to r.1", logs.String())
	}
}
