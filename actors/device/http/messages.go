package http

import "time"

// pollResult is one poll's outcome, sent by the poll worker to the device's actor.
type pollResult struct {
	body    []byte
	started time.Time
	took    time.Duration
	kind    string // "" when the poll succeeded; else timeout, http, status, too_large
	err     error
}
