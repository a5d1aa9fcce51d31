package modbussim

import "sync/atomic"

// Stats is a snapshot of the server's counters since New.
type Stats struct {
	Requests    map[uint8]uint64 // well-framed requests by function code (only codes seen)
	Exceptions  uint64           // exception responses built (faults included)
	Faults      uint64           // faults that fired (a delay and another fault on one request count twice)
	BytesIn     uint64           // bytes of well-framed requests
	BytesOut    uint64           // bytes of responses written
	Connections uint64           // connections accepted and served
	Active      int64            // connections open now
	Rejected    uint64           // connections closed at once because MaxConns were open
	Dropped     uint64           // connections closed by FaultDrop
	BadFrames   uint64           // connections closed for a malformed or truncated frame
	Panics      uint64           // panics recovered (each closed its connection); should stay 0
}

// TotalRequests sums Requests.
func (st Stats) TotalRequests() uint64 {
	var n uint64
	for _, v := range st.Requests {
		n += v
	}
	return n
}

type counters struct {
	requests                                  [256]atomic.Uint64
	exceptions, faults, bytesIn, bytesOut     atomic.Uint64
	connections, rejected, dropped, badFrames atomic.Uint64
	panics                                    atomic.Uint64
	active                                    atomic.Int64
}

// Stats returns the counters; each is read atomically, the set is not one
// instant.
func (s *Server) Stats() Stats {
	st := Stats{Requests: map[uint8]uint64{}}
	for fc := range s.stats.requests {
		if n := s.stats.requests[fc].Load(); n > 0 {
			st.Requests[uint8(fc)] = n
		}
	}
	c := &s.stats
	st.Exceptions, st.Faults = c.exceptions.Load(), c.faults.Load()
	st.BytesIn, st.BytesOut = c.bytesIn.Load(), c.bytesOut.Load()
	st.Connections, st.Active, st.Rejected = c.connections.Load(), c.active.Load(), c.rejected.Load()
	st.Dropped, st.BadFrames, st.Panics = c.dropped.Load(), c.badFrames.Load(), c.panics.Load()
	return st
}
