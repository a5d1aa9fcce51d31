package redis

import (
	"fmt"
	"net"
	"strings"

	"github.com/iotgw/iotgw/actors/sink/batch"
	"github.com/iotgw/iotgw/config"
)

// The schema of a `sink "name" { type = "redis" … }` block lives here, beside the actor, as the file sink's does
// (config.RegisterSink takes any settings with a Validate method).

// Settings is sink type "redis".
type Settings struct {
	// Subjects to consume, durably; default ["iot.processed.batch.>"] (every point once).
	Subjects []string `hcl:"subjects,optional"`
	// host:port of the Redis server (required).
	Address string `hcl:"address"`
	// ACL user and password (AUTH); both optional.
	Username string `hcl:"username,optional"`
	Password string `hcl:"password,optional"`
	// Database number (SELECT), default 0.
	DB int `hcl:"db,optional"`
	// The latest value of each key, a hash per device: {hash_prefix}{device}; "" for none. Default "iot:latest:".
	HashPrefix string `hcl:"hash_prefix,optional"`
	// A stream per device, {stream_prefix}{device}, one entry per point (XADD … MAXLEN ~ stream_max_len); "" for
	// none (the default).
	StreamPrefix string `hcl:"stream_prefix,optional"`
	// What a stream entry is: "point" (the default: one entry per point, fields key, value, ts, q, tag.{name}) or
	// "batch" (one entry per device and bus message — a poll, a DATA frame —, the keys as fields: {key},
	// {key}.ts, {key}.q, {key}.tag.{name}); a key that comes again in the same message starts a new entry.
	StreamEntry string `hcl:"stream_entry,optional"`
	// The approximate length each stream is trimmed to (default 100000), in entries.
	StreamMaxLen int64 `hcl:"stream_max_len,optional"`
	// PUBLISH each point's JSON on {channel_prefix}{device}; "" for none (the default).
	ChannelPrefix string `hcl:"channel_prefix,optional"`

	// Batching and retries (actors/sink/batch).
	BatchSize     int    `hcl:"batch_size,optional"`      // points per pipeline, default 1000
	FlushInterval string `hcl:"flush_interval,optional"`  // default "100ms"
	MaxAckPending int    `hcl:"max_ack_pending,optional"` // default 4096
	Retry         string `hcl:"retry,optional"`           // default "500ms"
	MaxRetry      string `hcl:"max_retry,optional"`       // default "30s"
	Timeout       string `hcl:"timeout,optional"`         // one pipeline, default "5s"

	opts batch.Options
}

// The values of stream_entry.
const (
	EntryPoint = "point"
	EntryBatch = "batch"
)

// NewSettings returns the settings of a redis sink block with their defaults.
func NewSettings() config.SinkSettings {
	return &Settings{
		Subjects:      []string{"iot.processed.batch.>"},
		HashPrefix:    "iot:latest:",
		StreamEntry:   EntryPoint,
		StreamMaxLen:  100_000,
		BatchSize:     1000,
		FlushInterval: "100ms",
		MaxAckPending: 4096,
		Retry:         "500ms",
		MaxRetry:      "30s",
		Timeout:       "5s",
	}
}

// maxPrefix bounds a key prefix: Redis takes keys of 512 MB, an operator means a few words.
const maxPrefix = 256

// Validate implements config.SinkSettings.
func (s *Settings) Validate(v *config.Validator) {
	s.opts = batch.Parse(v, batch.Texts{Subjects: s.Subjects, BatchSize: s.BatchSize, FlushInterval: s.FlushInterval,
		MaxAckPending: s.MaxAckPending, Retry: s.Retry, MaxRetry: s.MaxRetry, Timeout: s.Timeout})
	if err := validAddress(s.Address); err != nil {
		v.Errorf("address", "%v", err)
	}
	if s.DB < 0 || s.DB > 1<<20 {
		v.Errorf("db", "db is %d: a database number from 0", s.DB)
	}
	for _, a := range []struct{ attr, val string }{{"hash_prefix", s.HashPrefix}, {"stream_prefix", s.StreamPrefix}, {"channel_prefix", s.ChannelPrefix}} {
		if len(a.val) > maxPrefix || strings.ContainsAny(a.val, "\x00\r\n") {
			v.Errorf(a.attr, "%s must be at most %d characters, without NUL or line breaks", a.attr, maxPrefix)
		}
	}
	if s.HashPrefix == "" && s.StreamPrefix == "" && s.ChannelPrefix == "" {
		v.Errorf("hash_prefix", "The sink writes nothing: set hash_prefix, stream_prefix or channel_prefix.")
	}
	if s.StreamEntry != EntryPoint && s.StreamEntry != EntryBatch {
		v.Errorf("stream_entry", "stream_entry is %q: %q (an entry per point) or %q (an entry per device and message)", s.StreamEntry, EntryPoint, EntryBatch)
	}
	if s.StreamMaxLen < 1 {
		v.Errorf("stream_max_len", "stream_max_len is %d: at least 1", s.StreamMaxLen)
	}
}

func validAddress(a string) error {
	if a == "" {
		return fmt.Errorf(`address is empty: write the server's host:port, like "127.0.0.1:6379"`)
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("address %q is not host:port, like \"127.0.0.1:6379\"", a)
	}
	return nil
}
