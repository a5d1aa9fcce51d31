package mqtt

import "time"

// The messages the device's goroutines send to its actor.

// inMessage is one message from the broker, handed over by the client's goroutine.
type inMessage struct {
	topic   string
	payload []byte // nil when it was larger than max_payload
	size    int
	arrival time.Time
}

// connected says the session is up and subscribed; refused are the filters the broker refused.
type connected struct {
	sess    session
	refused []error
}
