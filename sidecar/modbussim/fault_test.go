package modbussim

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault Fault
		check func(t *testing.T, s *Server, err error, took time.Duration)
	}{
		{"exception 6", Fault{Kind: FaultException, Exception: 6}, func(t *testing.T, s *Server, err error, _ time.Duration) {
			if got := exceptionCode(err); got != 6 {
				t.Errorf("got %v, want exception 6", err)
			}
		}},
		{"exception default", Fault{Kind: FaultException}, func(t *testing.T, s *Server, err error, _ time.Duration) {
			if got := exceptionCode(err); got != 4 {
				t.Errorf("got %v, want exception 4", err)
			}
		}},
		{"delay", Fault{Kind: FaultDelay, Delay: 150 * time.Millisecond}, func(t *testing.T, s *Server, err error, took time.Duration) {
			if err != nil {
				t.Errorf("got %v, want an answer", err)
			}
			if took < 150*time.Millisecond {
				t.Errorf("answered after %s, want at least 150ms", took)
			}
		}},
		{"drop", Fault{Kind: FaultDrop}, func(t *testing.T, s *Server, err error, _ time.Duration) {
			if err == nil || exceptionCode(err) != 0 {
				t.Errorf("got %v, want a connection error", err)
			}
			if st := s.Stats(); st.Dropped != 1 {
				t.Errorf("Stats.Dropped: got %d, want 1", st.Dropped)
			}
		}},
		{"corrupt", Fault{Kind: FaultCorrupt}, func(t *testing.T, s *Server, err error, _ time.Duration) {
			if err == nil || exceptionCode(err) != 0 {
				t.Errorf("got %v, want a decoding error", err)
			}
		}},
		{"no reply", Fault{Kind: FaultNoReply}, func(t *testing.T, s *Server, err error, _ time.Duration) {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("got %v, want a timeout", err)
			}
		}},
		{"wrong transaction id", Fault{Kind: FaultWrongTxID}, func(t *testing.T, s *Server, err error, _ time.Duration) {
			if err == nil || !strings.Contains(err.Error(), "transaction id") {
				t.Errorf("got %v, want a transaction id mismatch", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{Units: []Unit{{ID: 1}}})
			s.SetRegister(1, Holding, 0, 42)
			c, _ := dial(t, s, 1, 500*time.Millisecond)
			s.SetFaults(tc.fault)
			start := time.Now()
			_, err := c.ReadHoldingRegisters(0, 1)
			tc.check(t, s, err, time.Since(start))

			// Clearing restores normal answers (goburrow redials after a drop).
			s.ClearFaults()
			c2, _ := dial(t, s, 1, 5*time.Second)
			got, err := c2.ReadHoldingRegisters(0, 1)
			if err != nil || len(got) != 2 || got[1] != 42 {
				t.Errorf("after ClearFaults: got % X, %v, want 00 2A", got, err)
			}
		})
	}
}

// A request hit by no-reply is still answered for the requests after it on
// the same connection, in order.
func TestNoReplyKeepsConnection(t *testing.T) {
	s := startServer(t, Config{Units: []Unit{{ID: 1}}})
	s.SetFaults(Fault{Kind: FaultNoReply, From: 5, To: 5})
	c := rawDial(t, s)
	c.Write(append(adu(1, 1, 3, 0, 5, 0, 1), adu(2, 1, 3, 0, 6, 0, 1)...))
	resp, err := readADU(c)
	if err != nil || resp[1] != 2 {
		t.Fatalf("got % X, %v, want the answer to transaction 2", resp, err)
	}
}

func TestFaultProbability(t *testing.T) {
	s := startServer(t, Config{Units: []Unit{{ID: 1}}})
	c, _ := dial(t, s, 1, 5*time.Second)
	s.SetFaults(Fault{Kind: FaultException, Exception: 6, Probability: 0.5})
	hit := 0
	for range 200 {
		_, err := c.ReadHoldingRegisters(0, 1)
		switch code := exceptionCode(err); {
		case code == 6:
			hit++
		case err != nil:
			t.Fatalf("got %v, want an answer or exception 6", err)
		}
	}
	if hit < 50 || hit > 150 {
		t.Errorf("faults in 200 requests at p=0.5: got %d, want 50..150", hit)
	}
	if st := s.Stats(); st.Faults != uint64(hit) {
		t.Errorf("Stats.Faults: got %d, want %d", st.Faults, hit)
	}
}

func TestFaultScope(t *testing.T) {
	s := startServer(t, Config{Units: []Unit{{ID: 1}, {ID: 2}}})
	c1, _ := dial(t, s, 1, 5*time.Second)
	c2, _ := dial(t, s, 2, 5*time.Second)
	s.SetFaults(
		Fault{Kind: FaultException, Exception: 2, From: 100, To: 109},
		Fault{Kind: FaultException, Exception: 6, Unit: 2, From: 500},
	)
	tests := []struct {
		name string
		call func() error
		want byte
	}{
		{"below the range", func() error { _, err := c1.ReadHoldingRegisters(0, 10); return err }, 0},
		{"overlapping its start", func() error { _, err := c1.ReadHoldingRegisters(95, 10); return err }, 2},
		{"inside", func() error { _, err := c1.ReadInputRegisters(105, 1); return err }, 2},
		{"overlapping its end", func() error { _, err := c1.ReadCoils(109, 20); return err }, 2},
		{"write inside", func() error { _, err := c1.WriteSingleRegister(100, 1); return err }, 2},
		{"above the range", func() error { _, err := c1.ReadHoldingRegisters(110, 10); return err }, 0},
		{"other unit's fault, this unit", func() error { _, err := c1.ReadHoldingRegisters(600, 1); return err }, 0},
		{"other unit's fault, that unit", func() error { _, err := c2.ReadHoldingRegisters(600, 1); return err }, 6},
		{"open-ended To", func() error { _, err := c2.ReadHoldingRegisters(9999, 1); return err }, 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if got := exceptionCode(err); got != tc.want || (tc.want == 0 && err != nil) {
				t.Errorf("got %v (exception %d), want exception %d", err, got, tc.want)
			}
		})
	}
	if f := s.Faults(); len(f) != 2 || f[0].Probability != 1 || f[1].To != 0xFFFF {
		t.Errorf("Faults: got %+v, want both with defaults filled in", f)
	}
	s.ClearFaults()
	if f := s.Faults(); len(f) != 0 {
		t.Errorf("Faults after ClearFaults: got %+v", f)
	}
}

// Delays add up, and a delay combines with another fault.
func TestFaultDelayThenException(t *testing.T) {
	s := startServer(t, Config{Units: []Unit{{ID: 1}}})
	c, _ := dial(t, s, 1, 5*time.Second)
	s.SetFaults(
		Fault{Kind: FaultDelay, Delay: 60 * time.Millisecond},
		Fault{Kind: FaultDelay, Delay: 60 * time.Millisecond},
		Fault{Kind: FaultException, Exception: 6},
	)
	start := time.Now()
	_, err := c.ReadHoldingRegisters(0, 1)
	if exceptionCode(err) != 6 {
		t.Errorf("got %v, want exception 6", err)
	}
	if took := time.Since(start); took < 120*time.Millisecond {
		t.Errorf("answered after %s, want at least 120ms", took)
	}
}

// Stop does not wait out a long delay.
func TestStopDuringDelay(t *testing.T) {
	s := startServer(t, Config{Units: []Unit{{ID: 1}}})
	s.SetFaults(Fault{Kind: FaultDelay, Delay: time.Hour})
	c := rawDial(t, s)
	c.Write(adu(1, 1, 3, 0, 0, 0, 1))
	waitFor(t, 5*time.Second, "the request to arrive", func() bool { return s.Stats().TotalRequests() == 1 })
	done := make(chan struct{})
	go func() { s.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop still waiting on an hour-long delay after 10s")
	}
}

func TestParseFaultKind(t *testing.T) {
	for k := FaultException; k <= FaultWrongTxID; k++ {
		if got, err := ParseFaultKind(k.String()); got != k || err != nil {
			t.Errorf("ParseFaultKind(%q): got %v, %v", k.String(), got, err)
		}
	}
	if _, err := ParseFaultKind("meteor"); err == nil {
		t.Error("ParseFaultKind(meteor): got nil error")
	}
}
