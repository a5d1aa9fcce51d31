// Package redis is the Redis sink: the latest value of each device's keys in a hash per device, optionally a
// stream per device (XADD with MAXLEN ~) and PUBLISH of each point, written in pipelines from a durable inbox and
// acknowledged only once the pipeline succeeded (actors/sink/batch).
//
// It must never build a Redis key from a device id or point key that is not a valid token (they come off the
// bus), and never acknowledge a point Redis has not answered for.
//
// The client is github.com/redis/go-redis/v9, the Redis project's own Go client: pipelining, RESP3, ACL AUTH,
// its own pool and reconnects. Its retries are off (MaxRetries -1): a failed pipeline goes back to the stream and
// comes again at the sink's capped backoff, so there is one retry mechanism, not two.
package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/actors/sink/batch"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
	goredis "github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

func init() {
	actors.RegisterSink("redis", actors.SinkKind{Settings: NewSettings, New: New})
}

// sink is the redis sink's actor: the batching core with a Redis target.
type sink struct{ *batch.Sink }

var (
	_ actors.Listener = sink{}
	_ actor.Actor     = sink{}
	_ batch.Target    = (*target)(nil)
	_ batch.Batch     = (*pointBatch)(nil)
)

// New returns the producer of a redis sink's actor.
func New(s config.Sink, env actors.Env) actor.Producer {
	cfg := s.Settings.(*Settings)
	routeLogs.Do(func() { goredis.SetLogger(zlog{env.Log.With().Str("library", "go-redis").Logger()}) })
	return func() actor.Actor {
		return sink{batch.New(s.Name, "redis", cfg.opts, env, func() (batch.Target, error) { return newTarget(cfg), nil })}
	}
}

// routeLogs sends go-redis's own log lines (a pool that cannot dial, say) into the gateway's zerolog: its logger
// is one per process, so the first redis sink's logger takes them for all.
var routeLogs sync.Once

type zlog struct{ log zerolog.Logger }

func (z zlog) Printf(_ context.Context, format string, v ...any) { z.log.Debug().Msgf(format, v...) }

// target writes batches to one Redis server.
type target struct {
	cfg *Settings
	c   *goredis.Client
	// names are the hash and stream field names of each key seen ({key}, {key}.ts, {key}.q), made and boxed into
	// interface values once per key rather than once per point: Write runs on the batch worker alone, so it needs
	// no lock. Bounded: past maxNames keys it starts again, so a source inventing keys costs allocations, not memory.
	names map[string]*keyNames
}

// keyNames are one key's field names, boxed.
type keyNames struct{ key, ts, q any }

const maxNames = 4096

// boxedQualities are the quality codes as boxed strings, from isp.QualityUnknown (-1) to isp.QualityGood (1):
// the three a point has, without an allocation each.
var boxedQualities = [...]any{"-1", "0", "1"}

func (t *target) keyNames(key string) *keyNames {
	if n := t.names[key]; n != nil {
		return n
	}
	if t.names == nil || len(t.names) >= maxNames {
		t.names = make(map[string]*keyNames, 64)
	}
	n := &keyNames{key: key, ts: key + fieldTimestamp, q: key + fieldQuality}
	t.names[key] = n
	return n
}

func boxedQuality(q int) any {
	if i := q + 1; i >= 0 && i < len(boxedQualities) {
		return boxedQualities[i]
	}
	return strconv.Itoa(q)
}

func newTarget(cfg *Settings) *target {
	return &target{cfg: cfg, c: goredis.NewClient(&goredis.Options{
		Addr:            cfg.Address,
		Username:        cfg.Username,
		Password:        cfg.Password,
		DB:              cfg.DB,
		MaxRetries:      -1, // the stream is the retry buffer (package comment)
		DialTimeout:     cfg.opts.Timeout,
		PoolSize:        2, // one writer at a time, plus one for a connection being replaced
		DisableIdentity: true,
	})}
}

func (t *target) Close() error { return t.c.Close() }

func (t *target) NewBatch() batch.Batch { return &pointBatch{cfg: t.cfg} }

// pointBatch is the points of a batch, copied (the decoder reuses its own), each an entry.
type pointBatch struct {
	cfg    *Settings
	points []isp.Point
	tags   []isp.Tag
	json   []byte // the points' JSON back to back, for PUBLISH
	jend   []int
	mend   []int // the end of each message's points (stream_entry = "batch": an entry per device and message)
	fields []any // Write's hash fields, six per point, kept for the next batch
}

// Add implements batch.Batch: a point whose device id or key is not a token is refused with its whole message
// (they name Redis keys and hash fields, and a ':' or a space in them would write into another device's key).
func (b *pointBatch) Add(_ string, points []isp.Point) (int, error) {
	for i := range points {
		if err := isp.ValidToken(points[i].DeviceID); err != nil {
			return 0, fmt.Errorf("point %d: device id: %w", i, err)
		}
		if err := isp.ValidToken(points[i].Key); err != nil {
			return 0, fmt.Errorf("point %d: key: %w", i, err)
		}
	}
	for i := range points {
		p := points[i]
		start := len(b.tags)
		b.tags = append(b.tags, p.Tags...)
		p.Tags = b.tags[start:len(b.tags):len(b.tags)]
		b.points = append(b.points, p)
		if b.cfg.ChannelPrefix != "" {
			b.json = isp.AppendPoint(b.json, &p)
			b.jend = append(b.jend, len(b.json))
		}
	}
	b.mend = append(b.mend, len(b.points))
	return len(points), nil
}

func (b *pointBatch) Reset() {
	clear(b.points)
	clear(b.fields) // the strings of this batch's points, not to be held until the next
	b.points, b.tags, b.json, b.jend, b.mend, b.fields = b.points[:0], b.tags[:0], b.json[:0], b.jend[:0], b.mend[:0], b.fields[:0]
}

// Field names beside a key's value in the device's hash: keys are tokens (letters, digits, '-', '_'), so a name
// with a '.' is never a key.
const (
	fieldTimestamp = ".ts"
	fieldQuality   = ".q"
)

// valueText is a point's value as Redis stores it: numbers and booleans as their text, a string as it is, null
// as "" (its quality says why).
func valueText(v isp.Value) string {
	switch v.Kind() {
	case isp.KindFloat:
		f, _ := v.Float()
		return strconv.FormatFloat(f, 'g', -1, 64)
	case isp.KindInt:
		i, _ := v.Int()
		return strconv.FormatInt(i, 10)
	case isp.KindBool:
		if b, _ := v.Bool(); b {
			return "true"
		}
		return "false"
	case isp.KindString:
		s, _ := v.Str()
		return s
	}
	return ""
}

// Write implements batch.Target: one pipeline with one HSET per device (its keys' latest values in batch order,
// so the last point of a key wins), then an XADD and a PUBLISH per point as configured.
func (t *target) Write(ctx context.Context, bb batch.Batch) error {
	b := bb.(*pointBatch)
	pipe := t.c.Pipeline()
	var owners [][]int // entries of each queued command, by position
	// A point's six hash fields ({key} value, {key}.ts, {key}.q), made and boxed into interface values once: the
	// hash and a stream_entry = "batch" entry name them alike and share them (each string boxed is an allocation;
	// they were most of the sink's allocations per point).
	var fields []any
	if t.cfg.HashPrefix != "" || (t.cfg.StreamPrefix != "" && t.cfg.StreamEntry == EntryBatch) {
		if cap(b.fields) < 6*len(b.points) {
			b.fields = make([]any, 0, 6*len(b.points))
		}
		fields = b.fields[:0]
		for i := range b.points {
			p := &b.points[i]
			n := t.keyNames(p.Key)
			fields = append(fields, n.key, valueText(p.Value), n.ts, strconv.FormatInt(p.Timestamp, 10), n.q, boxedQuality(p.Quality))
		}
		b.fields = fields
	}
	if t.cfg.HashPrefix != "" {
		type hash struct {
			args    []any
			entries []int
		}
		var order []string
		hashes := map[string]*hash{}
		for i := range b.points {
			p := &b.points[i]
			h := hashes[p.DeviceID]
			if h == nil {
				h = &hash{}
				hashes[p.DeviceID] = h
				order = append(order, p.DeviceID)
			}
			h.args = append(h.args, fields[6*i:6*i+6]...)
			h.entries = append(h.entries, i)
		}
		for _, dev := range order {
			h := hashes[dev]
			pipe.HSet(ctx, t.cfg.HashPrefix+dev, h.args...)
			owners = append(owners, h.entries)
		}
	}
	if t.cfg.StreamPrefix != "" && t.cfg.StreamEntry == EntryBatch {
		owners = t.batchEntries(ctx, pipe, b, fields, owners)
	}
	for i := range b.points {
		p := &b.points[i]
		if t.cfg.StreamPrefix != "" && t.cfg.StreamEntry == EntryPoint {
			values := make([]any, 0, 8+2*len(p.Tags))
			values = append(values, "key", p.Key, "value", valueText(p.Value), "ts", p.Timestamp, "q", p.Quality)
			for _, tag := range p.Tags {
				values = append(values, "tag."+tag.Key, tag.Value)
			}
			pipe.XAdd(ctx, &goredis.XAddArgs{Stream: t.cfg.StreamPrefix + p.DeviceID, MaxLen: t.cfg.StreamMaxLen, Approx: true, Values: values})
			owners = append(owners, []int{i})
		}
		if t.cfg.ChannelPrefix != "" {
			start := 0
			if i > 0 {
				start = b.jend[i-1]
			}
			pipe.Publish(ctx, t.cfg.ChannelPrefix+p.DeviceID, b.json[start:b.jend[i]])
			owners = append(owners, []int{i})
		}
	}
	cmds, err := pipe.Exec(ctx)
	if err == nil {
		return nil
	}
	refused := map[int]string{}
	for i, c := range cmds {
		cerr := c.Err()
		if cerr == nil {
			continue
		}
		if !permanent(cerr) {
			return fmt.Errorf("redis %s: %w", t.cfg.Address, err) // the pipeline did not go through: all again
		}
		for _, e := range owners[i] {
			refused[e] = fmt.Sprintf("redis %s: %v", c.Name(), cerr)
		}
	}
	if len(refused) == 0 {
		return fmt.Errorf("redis %s: %w", t.cfg.Address, err)
	}
	return &batch.Refused{Entries: refused}
}

// batchEntries queues the XADDs of stream_entry = "batch": per message, one entry per device with the keys of
// its points as fields ({key}, {key}.ts, {key}.q, {key}.tag.{name}), in point order; a key that comes again
// within the message closes the device's entry and starts the next, so an entry never holds a key twice. It
// returns owners with each XADD's points appended.
func (t *target) batchEntries(ctx context.Context, pipe goredis.Pipeliner, b *pointBatch, fields []any, owners [][]int) [][]int {
	type entry struct {
		values  []any
		entries []int
		keys    map[string]struct{}
	}
	open := map[string]*entry{}
	var order []string // devices in the order their entries were opened, within the message
	flush := func(dev string, e *entry) {
		pipe.XAdd(ctx, &goredis.XAddArgs{Stream: t.cfg.StreamPrefix + dev, MaxLen: t.cfg.StreamMaxLen, Approx: true, Values: e.values})
		owners = append(owners, e.entries)
	}
	start := 0
	for _, end := range b.mend {
		for i := start; i < end; i++ {
			p := &b.points[i]
			e := open[p.DeviceID]
			if e != nil {
				if _, again := e.keys[p.Key]; again {
					flush(p.DeviceID, e)
					e = nil
				}
			}
			if e == nil {
				if _, seen := open[p.DeviceID]; !seen {
					order = append(order, p.DeviceID)
				}
				e = &entry{keys: map[string]struct{}{}}
				open[p.DeviceID] = e
			}
			e.keys[p.Key] = struct{}{}
			e.values = append(e.values, fields[6*i:6*i+6]...)
			for _, tag := range p.Tags {
				e.values = append(e.values, p.Key+".tag."+tag.Key, tag.Value)
			}
			e.entries = append(e.entries, i)
		}
		for _, dev := range order {
			flush(dev, open[dev])
		}
		clear(open)
		order = order[:0]
		start = end
	}
	return owners
}

// permanent says whether Redis refused a command for what it is (a key of another type, a value it cannot take),
// as opposed to a state of the server that passes (loading, read-only replica, out of memory, busy script,
// missing or wrong credentials) or a network error: those keep the data in the stream.
func permanent(err error) bool {
	var re goredis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := err.Error()
	for _, p := range []string{"LOADING", "READONLY", "OOM", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN",
		"NOAUTH", "WRONGPASS", "NOPERM", "MISCONF", "NOREPLICAS", "MOVED", "ASK"} {
		if strings.HasPrefix(msg, p) {
			return false
		}
	}
	return true
}
