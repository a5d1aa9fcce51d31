package actors

import "fmt"

// WorkerFailed is sent to an actor when one of its goroutines (see Workers) returned an error or panicked. The
// runtime turns it into a panic inside the actor's Receive, so the supervisor sees the failure and restarts the
// actor; an actor that wants to handle it itself can do so before the runtime sees it.
type WorkerFailed struct {
	Worker string
	Err    error
	Panic  any    // the recovered value when the goroutine panicked
	Stack  []byte // the goroutine's stack at the panic
}

func (w *WorkerFailed) Error() string {
	if w.Panic != nil {
		return fmt.Sprintf("worker %s panicked: %v", w.Worker, w.Panic)
	}
	return fmt.Sprintf("worker %s: %v", w.Worker, w.Err)
}

func (w *WorkerFailed) Unwrap() error { return w.Err }
