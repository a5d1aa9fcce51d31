package config

import (
	"fmt"
	"strings"
	"time"
)

// DefaultJetStreamSinkStream is the gateway's own stream (system.StreamName): a jetstream sink without a stream of
// its own adds its subjects to it rather than keeping a second copy.
const DefaultJetStreamSinkStream = "IOT_DATA"

// JetStreamSink is sink type "jetstream" (actors/sink/jetstream). Its schema lives here beside the console's, not
// in the kind's folder, so that this package's test of the shipped gateway.hcl, which has a jetstream sink, can
// decode it (a test here cannot import the actors).
type JetStreamSink struct {
	// Subjects the stream keeps, wildcards allowed, all below iot. (the gateway's own subjects).
	Subjects []string `hcl:"subjects"`
	// Stream is the stream's name; default IOT_DATA, whose limits are those of nats { jetstream { … } }.
	Stream string `hcl:"stream,optional"`
	// Limits of a stream of its own: max_age (default 24h, "0s" keeps for ever), max_bytes (default 1GB),
	// discard "old" (default) or "new", storage "file" (default) or "memory".
	MaxAge   *string `hcl:"max_age,optional"`
	MaxBytes *string `hcl:"max_bytes,optional"`
	Discard  string  `hcl:"discard,optional"`
	Storage  string  `hcl:"storage,optional"`

	// Age and Bytes are MaxAge and MaxBytes parsed by Validate (with their defaults).
	Age   time.Duration
	Bytes int64
}

// NewJetStreamSink returns the settings of a jetstream sink block with their defaults.
func NewJetStreamSink() SinkSettings {
	return &JetStreamSink{Stream: DefaultJetStreamSinkStream, Discard: "old", Storage: "file", Age: 24 * time.Hour, Bytes: 1 << 30}
}

// MaxStreamName bounds a stream name (JetStream's names are file names too).
const MaxStreamName = 64

// Validate implements SinkSettings.
func (s *JetStreamSink) Validate(v *Validator) {
	if len(s.Subjects) == 0 {
		v.Errorf("subjects", `A jetstream sink needs at least one subject, like ["iot.alerts.>"].`)
	}
	for i, subj := range s.Subjects {
		if err := checkSinkSubject(subj); err != nil {
			v.ErrorfIndex("subjects", i, "%v", err)
		}
	}
	if err := checkStreamName(s.Stream); err != nil {
		v.Errorf("stream", "%v", err)
	}
	own := s.Stream != DefaultJetStreamSinkStream
	for _, attr := range []string{"max_age", "max_bytes", "discard", "storage"} {
		if !own && v.Has(attr) {
			v.Errorf(attr, "%s is a limit of a stream of the sink's own: IOT_DATA's limits are set in nats { jetstream { … } }", attr)
		}
	}
	if s.MaxAge != nil {
		if d, ok := v.Duration("max_age", *s.MaxAge); ok {
			s.Age = d
		}
	}
	if s.MaxBytes != nil {
		n, err := ParseSize(*s.MaxBytes)
		switch {
		case err != nil:
			v.Errorf("max_bytes", "%v", err)
		case n < 1:
			v.Errorf("max_bytes", "max_bytes must be > 0: the stream is bounded in bytes")
		default:
			s.Bytes = n
		}
	}
	if s.Discard != "old" && s.Discard != "new" {
		v.Errorf("discard", "unknown discard policy %q; known: old, new (old deletes the oldest messages, new refuses new ones)", s.Discard)
	}
	if s.Storage != "file" && s.Storage != "memory" {
		v.Errorf("storage", "unknown storage %q; known: file, memory", s.Storage)
	}
}

// checkSubject admits the gateway's data subjects only: a stream that captured ">" or "$JS.>" would swallow the
// JetStream API and the gateway's own replies, and iot.control.> carries requests, not data.
func checkSinkSubject(s string) error {
	if err := ValidSubject(s, true); err != nil {
		return err
	}
	if !strings.HasPrefix(s, "iot.") || s == "iot.>" || strings.HasPrefix(s, "iot.*") {
		return fmt.Errorf("subject %q: a jetstream sink keeps the gateway's data subjects, below iot.{kind} (iot.alerts.>, iot.processed.batch.>, …)", s)
	}
	if strings.HasPrefix(s, "iot.control.") || strings.HasPrefix(s, "iot.deadletter.") {
		return fmt.Errorf("subject %q: iot.control.> carries control requests and iot.deadletter.> is IOT_DEADLETTER's, not data for a sink", s)
	}
	return nil
}

// checkStreamName follows JetStream's rules for stream names (no '.', '*', '>', path separators or spaces) and
// keeps them short and printable.
func checkStreamName(n string) error {
	if n == "" {
		return fmt.Errorf("the stream name is empty")
	}
	if len(n) > MaxStreamName {
		return fmt.Errorf("stream name %q is %d characters long, at most %d", n, len(n), MaxStreamName)
	}
	for _, r := range n {
		ok := r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-'
		if !ok {
			return fmt.Errorf("stream name %q contains %q: use letters, digits, '_' and '-'", n, r)
		}
	}
	if n == "IOT_DEADLETTER" || strings.HasPrefix(n, "KV_") || strings.HasPrefix(n, "OBJ_") {
		return fmt.Errorf("stream name %q is taken: IOT_DEADLETTER holds the dead letters, KV_ and OBJ_ streams are buckets", n)
	}
	return nil
}
