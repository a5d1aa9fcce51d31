package actors

import (
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamWriter is an actor's acknowledged publishes into JetStream (Env.Stream): each message is published
// asynchronously with a message id (Nats-Msg-Id) in a bounded window; a worker waits for the acknowledgements in
// publish order and counts them; a publish that was not acknowledged (a timeout, a stalled window) is published
// again with the same id on a tick, while the stream's duplicate window makes that safe, so the stream keeps it
// once; a message the stream refused (full with discard "new") or that is still unacknowledged then is counted
// lost (iotgw_errors_total{kind="store_lost"}) and reported on ErrSubject as a StoreEvent. A full or failing store
// is known to the gateway, not guessed.
//
// The processing stage's batches go through one, and so do the rule results that land in IOT_DATA
// (iot.rules.>): one mechanism for everything the gateway writes into its stream. Like nats.go's own
// PublishAsync window (PublishAsyncMaxPending, set by the runtime to the same bound), the window blocks the actor
// when it is full: backpressure into its mailbox, never an unbounded queue of futures.
//
// Without JetStream (Env.Stream nil), and while JetStream is configured but not there yet, a message is published
// on the bus instead (its reconnect buffer keeps it; the stream, when it comes, stores what is published then).
//
// It is used from its actor's Receive only: Start on Started (its worker and tick are the actor's Workers, so they
// stop with it), Handle for each message first, Close on Stopping and Restarting after the Workers' Stop.
type StreamWriter struct {
	env        Env
	path       string // the actor's path in the tree: its metrics label
	errSubject string // where a message the stream did not store is reported
	what       string // what it writes, for the log ("batch", "rule result")

	ctx     actor.Context // its actor's, from Start: what begin starts the workers with
	workers *Workers
	acks    chan *streamPending // nil until the first acknowledged publish
	retries []*streamPending
	tick    *Tick
	// Retried and Lost count this incarnation's retries and losses (the metrics have the totals).
	Retried, Lost uint64
	// stored and duplicates are counted by the acks worker.
	stored, duplicates atomic.Uint64
}

// StoreEvent is published on a StreamWriter's error subject for a message the stream did not store.
type StoreEvent struct {
	Subject   string `json:"subject"`
	MsgID     string `json:"msg_id"`
	Error     string `json:"error"`
	Attempts  int    `json:"attempts"`
	Refused   bool   `json:"refused"` // the stream answered no (full, say); else no answer within the duplicate window
	Timestamp int64  `json:"timestamp"`
}

// streamPending is one message published into the stream and not yet acknowledged.
type streamPending struct {
	msg      *nats.Msg // a copy: the actor reuses its own
	id       string    // Nats-Msg-Id, the same on every retry
	future   jetstream.PubAckFuture
	attempts int
	first    time.Time
}

// streamFailed is the acks worker's report of a publish the stream did not acknowledge.
type streamFailed struct {
	p   *streamPending
	err error
}

// NewStreamWriter returns the writer of the actor at path (its metrics label), which reports what the stream did
// not store on errSubject; what names its messages in the log.
func NewStreamWriter(env Env, path, errSubject, what string) *StreamWriter {
	return &StreamWriter{env: env, path: path, errSubject: errSubject, what: what}
}

// Acknowledged says whether the writer publishes with acknowledgements (JetStream on).
func (w *StreamWriter) Acknowledged() bool { return w.env.Stream != nil }

// Start readies the writer for the actor of ctx: its worker that waits for the acknowledgements in order and its
// tick that publishes the retries again are the actor's Workers, started with the first acknowledged publish, so
// an actor that never writes into the stream (an alert rule, whose events are not kept there) has neither.
func (w *StreamWriter) Start(ctx actor.Context, workers *Workers) {
	w.ctx, w.workers = ctx, workers
}

// begin starts the acks worker and the retry tick.
func (w *StreamWriter) begin() {
	acks := make(chan *streamPending, w.env.Stream.Window())
	w.acks = acks
	w.workers.Go(w.ctx, "acks", func(done <-chan struct{}, send func(any)) error {
		for {
			select {
			case <-done:
				return nil
			case pd := <-acks:
				select {
				case <-done:
					return nil
				case ack := <-pd.future.Ok():
					// Counted here: a message to the actor for every stored message would cost a hand-off each.
					w.stored.Add(1)
					if ack.Duplicate {
						w.duplicates.Add(1) // a retry of one the stream had stored: dropped by its message id
						w.env.Metrics.Error(w.path, "store_duplicate")
					}
				case err := <-pd.future.Err():
					send(&streamFailed{p: pd, err: err})
				}
			}
		}
	})
	w.tick = w.workers.Tick(w.ctx, "store retry", 250*time.Millisecond)
}

// Handle takes the writer's own messages (a failed publish, its retry tick) and says whether msg was one.
func (w *StreamWriter) Handle(msg any) bool {
	switch m := msg.(type) {
	case *streamFailed:
		w.failed(m.p, m.err)
		return true
	case *Tick:
		if m != w.tick || m == nil {
			return false
		}
		m.Ack()
		retries := w.retries
		w.retries = nil
		for _, pd := range retries {
			w.publishAsync(pd)
		}
		return true
	}
	return false
}

// Publish stores a copy of m in the stream under the message id id (with JetStream on; else on the bus). A
// message published again with the same id within the stream's duplicate window is stored once: give the same id
// to the same message only.
func (w *StreamWriter) Publish(m *nats.Msg, id string) {
	if w.env.Stream == nil {
		w.send(m)
		return
	}
	c := &nats.Msg{Subject: m.Subject, Data: append([]byte(nil), m.Data...), Header: make(nats.Header, len(m.Header)+1)}
	for k, vs := range m.Header {
		c.Header[k] = append([]string(nil), vs...)
	}
	w.publishAsync(&streamPending{msg: c, id: id, first: time.Now()})
}

func (w *StreamWriter) publishAsync(pd *streamPending) {
	if w.acks == nil {
		if w.workers == nil {
			panic("actors: StreamWriter.Publish before Start")
		}
		w.begin()
	}
	pd.attempts++
	f, err := w.env.Stream.PublishMsgAsync(pd.msg, jetstream.WithMsgID(pd.id))
	if errors.Is(err, ErrStreamNotReady) {
		w.send(pd.msg) // JetStream not there yet: the bus (its reconnect buffer) keeps it, the stream stores it later
		return
	}
	if err != nil {
		w.failed(pd, err)
		return
	}
	pd.future = f
	w.acks <- pd // blocks while the window is full: backpressure
}

// failed publishes a message again while a retry is safe (a timeout or a stalled window, within the stream's
// duplicate window), or counts it lost and reports it when the stream refused it (full with discard "new", say).
func (w *StreamWriter) failed(pd *streamPending, err error) {
	var api *jetstream.APIError
	refused := errors.As(err, &api)
	// Retries are bounded too: past four windows' worth, a message is counted lost rather than kept.
	dup := w.env.Stream.DuplicateWindow()
	if !refused && len(w.retries) < 4*w.env.Stream.Window() && time.Since(pd.first)+dup/4 < dup {
		w.Retried++
		w.env.Metrics.Error(w.path, "store_retry")
		w.retries = append(w.retries, pd)
		return
	}
	w.Lost++
	w.env.Metrics.Error(w.path, "store_lost")
	w.env.Log.Warn().Err(err).Str("subject", pd.msg.Subject).Str("msg_id", pd.id).Int("attempts", pd.attempts).
		Msg(w.what + " not stored in the stream")
	data, _ := json.Marshal(StoreEvent{Subject: pd.msg.Subject, MsgID: pd.id, Error: err.Error(), Attempts: pd.attempts,
		Refused: refused, Timestamp: time.Now().UnixNano()})
	if err := w.env.Bus.Publish(w.errSubject, data); err != nil {
		w.env.Log.Warn().Err(err).Msg("cannot publish store event")
	}
}

func (w *StreamWriter) send(m *nats.Msg) {
	if err := w.env.Bus.PublishMsg(m); err != nil {
		w.env.Log.Warn().Err(err).Str("subject", m.Subject).Msgf("cannot publish %s", w.what)
	}
}

// Close logs the incarnation's figures (after the actor's Workers stopped): stored, duplicates, retried, lost and
// what was still unacknowledged, a warning when something is.
func (w *StreamWriter) Close(name string) {
	if w.env.Stream == nil {
		return
	}
	ev := w.env.Log.Info()
	n := len(w.acks) + len(w.retries)
	if n > 0 || w.Lost > 0 {
		ev = w.env.Log.Warn()
	}
	ev.Uint64("stored", w.stored.Load()).Uint64("duplicates", w.duplicates.Load()).Uint64("retried", w.Retried).
		Uint64("lost", w.Lost).Int("unacknowledged", n).Msg(name + ": acknowledged publishes of this incarnation")
}
