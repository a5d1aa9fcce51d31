package modbussim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestHostileFrames sends malformed input on one connection each while a
// well-behaved client polls on another; only the bad connection may suffer.
func TestHostileFrames(t *testing.T) {
	baseline := runtime.NumGoroutine()
	s, err := New(Config{Listen: "127.0.0.1:0", Units: []Unit{{ID: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.SetRegister(1, Holding, 0, 7)

	// The good client polls throughout and must never fail.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var good int
	var goodErr error
	c, h := dial(t, s, 1, 5*time.Second)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer h.Close()
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := c.ReadHoldingRegisters(0, 1)
			if err != nil || !bytes.Equal(got, []byte{0, 7}) {
				goodErr = errors.Join(err, errors.New("wrong value"))
				return
			}
			good++
		}
	}()

	garbage := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	// Make sure the garbage's first header is invalid whatever the seed.
	garbage[2] = 0xAB

	tests := []struct {
		name string
		send []byte
		// close: the write side closes after sending (truncation).
		closeWrite bool
		// want is the response expected before the server closes; nil means
		// the server closes without answering.
		want []byte
	}{
		{name: "protocol id 1", send: []byte{0, 1, 0, 1, 0, 6, 1, 3, 0, 0, 0, 1}},
		{name: "length 0", send: []byte{0, 1, 0, 0, 0, 0, 1}},
		{name: "length 1", send: []byte{0, 1, 0, 0, 0, 1, 1}},
		{name: "length 5000", send: append([]byte{0, 1, 0, 0, 0x13, 0x88, 1}, make([]byte, 100)...)},
		{name: "truncated header then close", send: []byte{0, 1, 0}, closeWrite: true},
		{name: "truncated body then close", send: []byte{0, 1, 0, 0, 0, 6, 1, 3, 0}, closeWrite: true},
		{name: "1 MB of garbage", send: garbage},
		{name: "unknown function", send: adu(9, 1, 0x41, 1, 2, 3), want: adu(9, 1, 0xC1, 1)},
		{name: "good frame then garbage", send: append(adu(3, 1, 3, 0, 0, 0, 1), 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0), want: adu(3, 1, 3, 2, 0, 7)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := rawDial(t, s)
			// The server may close mid-write on the big ones: a write error is fine.
			go func() {
				c.Write(tc.send)
				if tc.closeWrite {
					c.(interface{ CloseWrite() error }).CloseWrite()
				}
			}()
			if tc.want != nil {
				got, err := readADU(c)
				if err != nil || !bytes.Equal(got, tc.want) {
					t.Errorf("got % X, %v, want % X", got, err, tc.want)
				}
				if tc.name == "unknown function" {
					return // a valid frame: the connection stays open
				}
			}
			// Then the server must close the connection (EOF or reset), not hang.
			if _, err := io.Copy(io.Discard, c); err != nil && !isReset(err) {
				t.Errorf("reading until close: %v", err)
			}
		})
	}
	close(stop)
	wg.Wait()
	if goodErr != nil {
		t.Fatalf("good client failed during hostile frames: %v", goodErr)
	}
	if good == 0 {
		t.Fatal("good client made no request")
	}
	st := s.Stats()
	if st.Panics != 0 || st.BadFrames < 7 {
		t.Errorf("stats: got %d panics, %d bad frames, want 0 and at least 7", st.Panics, st.BadFrames)
	}
	t.Logf("good client made %d requests meanwhile; stats %+v", good, st)

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	// Test-side connections close in Cleanup, after this point; the server's
	// own goroutines must all be gone now.
	waitFor(t, 5*time.Second, "goroutines back to baseline", func() bool {
		return runtime.NumGoroutine() <= baseline
	})
}

// isReset: a server that closes with unread input in its socket sends RST.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }
