package mqtt

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"
)

// TestFailedConnectsLeakNothing checks paho.mqtt.golang's known leak (eclipse-paho/paho.mqtt.golang#675:
// goroutines left behind when a connection attempt fails) and paho.golang's the same way, the way the driver
// uses them: one client per attempt, no library reconnect. Attempts against a port nobody listens on and
// against a peer that accepts and hangs up before CONNACK, fifty each; afterwards the goroutines are back to
// what they were.
func TestFailedConnectsLeakNothing(t *testing.T) {
	refused := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}()
	hangup, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hangup.Close()
	go func() { // the test's peer: ends when the listener closes
		for {
			c, err := hangup.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 64)
			_, _ = c.Read(buf) // the CONNECT, then hang up
			c.Close()
		}
	}()
	for _, proto := range []string{Protocol311, Protocol5} {
		for _, addr := range []string{refused, hangup.Addr().String()} {
			t.Run(fmt.Sprintf("%s %s", proto, addr), func(t *testing.T) {
				s := &Settings{Protocol: proto, HostPort: addr, Clean: true, KeepAlive: 30 * time.Second,
					ConnectTimeout: 2 * time.Second, MaxPayload: 1 << 20}
				before := runtime.NumGoroutine()
				for i := 0; i < 50; i++ {
					sess, err := dial(context.Background(), s, "leak-test", func(string, []byte) {})
					if err == nil {
						sess.close()
						t.Fatalf("attempt %d connected to a peer that is no broker", i)
					}
				}
				var now int
				deadline := time.Now().Add(20 * time.Second)
				for time.Now().Before(deadline) {
					if now = runtime.NumGoroutine(); now <= before+2 {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				t.Logf("goroutines: %d before 50 failed attempts, %d after", before, now)
				if now > before+2 {
					buf := make([]byte, 1<<20)
					t.Fatalf("%d goroutines before, %d after 50 failed attempts:\n%s", before, now, buf[:runtime.Stack(buf, true)])
				}
			})
		}
	}
}

// TestBacklogBounds: past the message bound or the byte bound a message is dropped and counted; what the actor
// takes makes room again.
func TestBacklogBounds(t *testing.T) {
	var b backlog
	for i := 0; i < maxBacklogMessages; i++ {
		if !b.admit(10) {
			t.Fatalf("message %d refused below the bound", i)
		}
	}
	if b.admit(10) || b.dropped.Load() != 1 {
		t.Fatalf("message past %d admitted (dropped %d)", maxBacklogMessages, b.dropped.Load())
	}
	b.taken(10)
	if !b.admit(10) {
		t.Fatal("no room after a message was taken")
	}
	var big backlog
	if !big.admit(maxBacklogBytes - 1) {
		t.Fatal("a message below the byte bound refused")
	}
	if big.admit(2) || big.dropped.Load() != 1 {
		t.Fatal("a message past the byte bound admitted")
	}
}
