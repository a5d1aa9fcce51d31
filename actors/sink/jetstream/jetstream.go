// Package jetstream is the JetStream sink of the seed: it keeps chosen subjects in a JetStream stream, with the
// stream's own limits, or in the gateway's IOT_DATA (the default: then no second copy is kept).
//
// It copies nothing itself: the NATS server stores what is published on the subjects a stream captures, in order
// and acknowledged to nobody but the server's own store, and a stream copies from another stream by sourcing it
// (JetStream "sources" with a subject filter: a server-side, resumable, ordered copy). So the actor only declares
// the stream when it starts and again after a failure, and shows whether it could:
//
//   - stream = "IOT_DATA" (default): the sink's subjects are added to IOT_DATA's, unless IOT_DATA keeps them already;
//   - a stream of its own: a subject no other stream keeps is captured directly; a subject another stream keeps
//     already (JetStream forbids two streams capturing one subject) is sourced from that stream, filtered by the
//     subject — e.g. iot.processed.batch.> from IOT_DATA into a stream kept for 30 days.
//
// This departs from the seed's picture of a sink that subscribes and republishes each message: that would be a
// second, unacknowledged hop for every message, and nothing would resume after a crash. The streams' limits are
// counted by the runtime's stream watcher (their description starts with "iotgw"): whatever they discard is
// reported on iot.errors.natsjs.discarded and in iotgw_stream_discarded_total.
package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/internal/backoff"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

func init() {
	actors.RegisterSink("jetstream", actors.SinkKind{Settings: config.NewJetStreamSink, New: New})
}

// ErrNoJetStream: the sink is configured on a gateway with JetStream off.
var ErrNoJetStream = errors.New("the jetstream sink needs JetStream: nats { jetstream { enabled = true } }")

// sink is the actor of a jetstream sink: it declares its stream in a worker, retrying at a capped backoff while the
// server refuses (a state, shown as the link: disconnected with the error), and is done once it is declared.
type sink struct {
	name    string
	cfg     *config.JetStreamSink
	env     actors.Env
	workers actors.Workers
}

// declared is the worker's report.
type declared struct {
	stream  string
	sources []string
}

// New returns the producer of a jetstream sink's actor.
func New(s config.Sink, env actors.Env) actor.Producer {
	cfg := s.Settings.(*config.JetStreamSink)
	return func() actor.Actor { return &sink{name: s.Name, cfg: cfg, env: env} }
}

func (s *sink) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if s.env.JetStream == nil {
			panic(fmt.Errorf("sink %q: %w", s.name, ErrNoJetStream))
		}
		s.workers.Go(ctx, "declare", s.declareLoop)
	case *declared:
		s.env.Link(actors.LinkConnected, "")
		ev := s.env.Log.Info().Str("stream", m.stream).Strs("subjects", s.cfg.Subjects)
		if len(m.sources) > 0 {
			ev = ev.Strs("sourced_from", m.sources)
		}
		ev.Msg("jetstream sink: stream declared")
	case *actor.Stopping, *actor.Restarting:
		s.workers.Stop()
	}
}

// declareLoop declares the stream until it succeeds, then waits for the actor to stop (a worker that returns
// early would count as a failure).
func (s *sink) declareLoop(done <-chan struct{}, send func(any)) error {
	wait := backoff.Backoff{Policy: backoff.Policy{Initial: 500 * time.Millisecond, Max: 30 * time.Second}}
	for {
		// One bounded attempt at a time, so done is seen between them without a goroutine of its own.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		d, err := s.attempt(ctx)
		cancel()
		if err == nil {
			send(d)
			<-done
			return nil
		}
		s.env.Link(actors.LinkDisconnected, err.Error())
		s.env.Log.Warn().Err(err).Str("stream", s.cfg.Stream).Msg("jetstream sink: cannot declare its stream; retrying")
		select {
		case <-done:
			return nil
		case <-time.After(wait.Next()):
		}
	}
}

func (s *sink) attempt(ctx context.Context) (*declared, error) {
	js, err := s.env.JetStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("JetStream not there yet: %w", err)
	}
	return s.declare(ctx, js)
}

func (s *sink) declare(ctx context.Context, js natsjs.JetStream) (*declared, error) {
	if s.cfg.Stream == config.DefaultJetStreamSinkStream {
		return s.extendDefault(ctx, js)
	}
	var subjects []string
	var sources []*natsjs.StreamSource
	var from []string
	for _, subj := range s.cfg.Subjects {
		other, err := js.StreamNameBySubject(ctx, subj)
		switch {
		case errors.Is(err, natsjs.ErrStreamNotFound) || other == s.cfg.Stream:
			subjects = append(subjects, subj)
		case err != nil:
			return nil, fmt.Errorf("subject %q: find the stream that keeps it: %w", subj, err)
		default:
			sources = append(sources, &natsjs.StreamSource{Name: other, FilterSubject: subj})
			from = append(from, other+" ("+subj+")")
		}
	}
	cfg := natsjs.StreamConfig{
		Name:        s.cfg.Stream,
		Description: "iotgw jetstream sink " + s.name,
		Subjects:    subjects,
		Sources:     sources,
		MaxAge:      s.cfg.Age,
		MaxBytes:    s.cfg.Bytes,
		Discard:     natsjs.DiscardOld,
		Storage:     natsjs.FileStorage,
	}
	if s.cfg.Discard == "new" {
		cfg.Discard = natsjs.DiscardNew
	}
	if s.cfg.Storage == "memory" {
		cfg.Storage = natsjs.MemoryStorage
	}
	if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return nil, fmt.Errorf("stream %s: %w", s.cfg.Stream, err)
	}
	return &declared{stream: s.cfg.Stream, sources: from}, nil
}

// extendDefault adds the sink's subjects to IOT_DATA's, those it does not keep already.
func (s *sink) extendDefault(ctx context.Context, js natsjs.JetStream) (*declared, error) {
	st, err := js.Stream(ctx, config.DefaultJetStreamSinkStream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", config.DefaultJetStreamSinkStream, err)
	}
	cfg := st.CachedInfo().Config
	added := false
	for _, subj := range s.cfg.Subjects {
		if !slices.ContainsFunc(cfg.Subjects, func(have string) bool { return SubjectCovers(have, subj) }) {
			cfg.Subjects = append(cfg.Subjects, subj)
			added = true
		}
	}
	if added {
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("stream %s: add subjects %q: %w", config.DefaultJetStreamSinkStream, s.cfg.Subjects, err)
		}
	}
	return &declared{stream: config.DefaultJetStreamSinkStream}, nil
}

// SubjectCovers says whether every subject matching sub matches pattern too (both may have wildcards).
func SubjectCovers(pattern, sub string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(sub, ".")
	for i, pt := range p {
		if pt == ">" {
			return i < len(s)
		}
		if i >= len(s) {
			return false
		}
		switch {
		case pt == "*":
			if s[i] == ">" {
				return false
			}
		case pt != s[i]:
			return false
		}
	}
	return len(p) == len(s)
}
