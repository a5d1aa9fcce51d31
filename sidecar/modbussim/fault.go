package modbussim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// FaultKind is what a fault does to a request that it hits.
type FaultKind uint8

// Fault kinds.
const (
	// FaultException answers with exception code Fault.Exception (default 4,
	// slave device failure) instead of the data.
	FaultException FaultKind = iota + 1
	// FaultDelay holds the response back for Fault.Delay, then answers
	// normally (or as another fault that hits the same request says).
	FaultDelay
	// FaultDrop closes the connection instead of answering.
	FaultDrop
	// FaultCorrupt answers with a well-framed MBAP header (so the stream
	// stays in step) whose PDU bytes after the function code are inverted:
	// byte counts and echoed addresses no longer match the request.
	FaultCorrupt
	// FaultNoReply reads the request and never answers it; the connection
	// stays open and later requests are served.
	FaultNoReply
	// FaultWrongTxID answers with a transaction id that is not the request's.
	FaultWrongTxID
)

var faultNames = [...]string{FaultException: "exception", FaultDelay: "delay", FaultDrop: "drop",
	FaultCorrupt: "corrupt", FaultNoReply: "no_reply", FaultWrongTxID: "wrong_txid"}

// String returns the kind's name as [ParseFaultKind] accepts it.
func (k FaultKind) String() string {
	if int(k) < len(faultNames) && faultNames[k] != "" {
		return faultNames[k]
	}
	return fmt.Sprintf("fault(%d)", uint8(k))
}

// ParseFaultKind reads a fault kind by name ("exception", "delay", "drop",
// "corrupt", "no_reply", "wrong_txid"), for control requests and config.
func ParseFaultKind(s string) (FaultKind, error) {
	for k, name := range faultNames {
		if name != "" && name == s {
			return FaultKind(k), nil
		}
	}
	return 0, fmt.Errorf("modbussim: unknown fault kind %q", s)
}

// Fault makes some requests misbehave. Zero fields mean "everything": unit 0
// is every unit, Probability 0 is always (1), and To 0 is up to 65535.
type Fault struct {
	Kind      FaultKind
	Unit      uint8         // unit id of the request; 0 = every unit
	Exception uint8         // FaultException's code: 2 illegal address, 4 slave failure (default), 6 busy, …
	Delay     time.Duration // FaultDelay's wait
	// Probability that a matching request is hit, 0..1; 0 means 1.
	Probability float64
	// From..To (inclusive) limits the fault to requests whose address range
	// overlaps it, in whichever table. A request without an address (an
	// unknown function) is hit only by faults that cover every address.
	From, To uint16
}

// normalize returns f with its defaults filled in.
func (f Fault) normalize() Fault {
	if f.Probability <= 0 || f.Probability > 1 {
		f.Probability = 1
	}
	if f.To == 0 {
		f.To = 0xFFFF
	}
	if f.Kind == FaultException && f.Exception == 0 {
		f.Exception = exSlaveFailure
	}
	return f
}

// SetFaults replaces the active faults; it is safe while serving and takes
// effect from the next request. A request can be hit by several faults:
// delays add up, and the first other fault that fires decides the answer.
func (s *Server) SetFaults(f ...Fault) {
	fs := make([]Fault, len(f))
	for i := range f {
		fs[i] = f[i].normalize()
	}
	s.faults.Store(&fs)
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() { s.faults.Store(nil) }

// Faults returns a copy of the active faults, defaults filled in.
func (s *Server) Faults() []Fault {
	if p := s.faults.Load(); p != nil {
		return slices.Clone(*p)
	}
	return nil
}

// verdict is what the faults decided for one request.
type verdict struct {
	delay time.Duration
	kind  FaultKind // 0 = answer normally (after delay)
	code  uint8
}

// judge runs the active faults against a request. hasAddr is false when the
// request carries no address range (lo..hi is then ignored).
func (s *Server) judge(unitID uint8, hasAddr bool, lo, hi int) verdict {
	var v verdict
	p := s.faults.Load()
	if p == nil {
		return v
	}
	for i := range *p {
		f := &(*p)[i]
		if f.Unit != 0 && f.Unit != unitID {
			continue
		}
		if hasAddr {
			if hi < int(f.From) || lo > int(f.To) {
				continue
			}
		} else if f.From != 0 || f.To != 0xFFFF {
			continue
		}
		if f.Kind == FaultDelay {
			if f.Probability >= 1 || rand.Float64() < f.Probability {
				v.delay += f.Delay
				s.stats.faults.Add(1)
			}
			continue
		}
		if v.kind != 0 {
			continue
		}
		if f.Probability >= 1 || rand.Float64() < f.Probability {
			v.kind, v.code = f.Kind, f.Exception
			s.stats.faults.Add(1)
		}
	}
	return v
}
