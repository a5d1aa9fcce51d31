package rule

import "sync"

// Requests a rule actor answers (from the runtime's control plane, through protoactor requests).

// ListAlerts asks an alert rule for its active alerts; the reply is an *AlertList.
type ListAlerts struct{}

// AlertList is the reply to ListAlerts.
type AlertList struct{ Alerts []Alert }

// AckAlert acknowledges the alert with this de-duplication key; the reply is an *AckReply.
type AckAlert struct {
	Key string
	By  string
}

// AckReply says whether the rule had the alert.
type AckReply struct{ Found bool }

// GetStats asks a rule for its figures; the reply is a *StatsReply.
type GetStats struct{}

// StatsReply is the reply to GetStats.
type StatsReply struct{ Stats Stats }

// Figures is a rule's Stats as last published by its actor, for the runtime to read from other goroutines (the
// tree, /metrics, iot.control.rules.list) without asking the actor. The zero value is ready.
type Figures struct {
	mu    sync.Mutex
	stats Stats
}

// Get returns the latest figures.
func (f *Figures) Get() Stats {
	if f == nil {
		return Stats{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

func (f *Figures) set(s Stats) {
	if f == nil {
		return
	}
	f.mu.Lock()
	f.stats = s
	f.mu.Unlock()
}
