package testenv

import "sync"

// LinkLog records the link states an actor reports (actors.Env.LinkState = log.Record), for tests that watch a
// connection go down and come back; safe for the actor's goroutine and the test's.
type LinkLog struct {
	mu     sync.Mutex
	states []string
}

// Record is an actors.Env.LinkState.
func (l *LinkLog) Record(state, _ string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.states = append(l.states, state)
}

// States returns every state recorded so far, in order.
func (l *LinkLog) States() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.states...)
}

// Last returns the latest state, "" before the first.
func (l *LinkLog) Last() string {
	s := l.States()
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}
