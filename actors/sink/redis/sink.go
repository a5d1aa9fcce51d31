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
	cfg   *Settings
	c     *goredis.Client
	names *names // shared by the target's batches, used by Add alone (pointBatch)
}

func newTarget(cfg *Settings) *target {
	return &target{cfg: cfg, names: newNames(cfg), c: goredis.NewClient(&goredis.Options{
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

func (t *target) NewBatch() batch.Batch { return &pointBatch{cfg: t.cfg, names: t.names} }

// A batch's commands are made as its points arrive (Add, on the sink's actor), so the write (on the batch
// worker, one at a time to keep the order) only hands them to go-redis and waits for Redis: building them was
// half the write's CPU, on the path every pipeline waits on. Each argument is an interface value, and boxing a
// string or a number is an allocation: names and tags are boxed once per key (names), a value's text is written
// into the batch's own buffer and passed as a pointer (text), which boxes for free.

// names are the boxed strings commands are made of, kept from batch to batch: each key's hash and stream field
// names ({key}, {key}.ts, {key}.q, {key}.tag.{name}), each device's Redis keys, the per-point entry's tag fields
// (tag.{name}) and tag values. Bounded: a table past maxNames starts again, so a source inventing keys costs
// allocations, not memory.
type names struct {
	keys   map[string]*keyNames
	devs   map[string]*devNames
	tags   map[string]any // tag name → "tag.{name}"
	values map[string]any // tag value → boxed
	maxLen any            // stream_max_len, boxed
}

// keyNames are one key's field names, boxed; tags are its "{key}.tag.{name}" (stream_entry = "batch").
type keyNames struct {
	key, ts, q any
	tags       []tagName
}

type tagName struct {
	tag   string
	field any
}

// devNames are one device's Redis keys, boxed.
type devNames struct{ hash, stream, channel any }

const maxNames = 4096

func newNames(cfg *Settings) *names { return &names{maxLen: cfg.StreamMaxLen} }

func (n *names) key(key string) *keyNames {
	if k := n.keys[key]; k != nil {
		return k
	}
	if n.keys == nil || len(n.keys) >= maxNames {
		n.keys = make(map[string]*keyNames, 64)
	}
	k := &keyNames{key: key, ts: key + fieldTimestamp, q: key + fieldQuality}
	n.keys[key] = k
	return k
}

// tagField is "{key}.tag.{name}".
func (k *keyNames) tagField(tag string) any {
	for i := range k.tags {
		if k.tags[i].tag == tag {
			return k.tags[i].field
		}
	}
	f := any(k.key.(string) + ".tag." + tag)
	if len(k.tags) < 8 { // a key's tags are few; one with more boxes the rest each time
		k.tags = append(k.tags, tagName{tag: tag, field: f})
	}
	return f
}

func (n *names) dev(cfg *Settings, dev string) *devNames {
	if d := n.devs[dev]; d != nil {
		return d
	}
	if n.devs == nil || len(n.devs) >= maxNames {
		n.devs = make(map[string]*devNames, 64)
	}
	d := &devNames{hash: cfg.HashPrefix + dev, stream: cfg.StreamPrefix + dev, channel: cfg.ChannelPrefix + dev}
	n.devs[dev] = d
	return d
}

// box returns s boxed from table t (made or started again as needed).
func box(t *map[string]any, s string, make1 func(string) string) any {
	if v, ok := (*t)[s]; ok {
		return v
	}
	if *t == nil || len(*t) >= maxNames {
		*t = make(map[string]any, 64)
	}
	v := any(make1(s))
	(*t)[s] = v
	return v
}

func (n *names) tagField(tag string) any {
	return box(&n.tags, tag, func(s string) string { return "tag." + s })
}

func (n *names) tagValue(v string) any { return box(&n.values, v, func(s string) string { return s }) }

// boxedQualities are the quality codes as boxed strings, from isp.QualityUnknown (-1) to isp.QualityGood (1):
// the three a point has, without an allocation each.
var boxedQualities = [...]any{"-1", "0", "1"}

func boxedQuality(q int) any {
	if i := q + 1; i >= 0 && i < len(boxedQualities) {
		return boxedQualities[i]
	}
	return strconv.Itoa(q)
}

// text is an argument's bytes in its batch's buffer; go-redis writes it as a bulk string (its writer takes an
// encoding.BinaryMarshaler), and a pointer boxes without an allocation.
type text struct{ b []byte }

func (t *text) MarshalBinary() ([]byte, error) { return t.b, nil }

// command is one queued Redis command and the batch's entries (points) it writes.
type command struct {
	args    []any
	entries []int
}

// pointBatch is a batch's Redis commands, made as its points are added.
type pointBatch struct {
	cfg   *Settings
	names *names
	n     int // entries (points) added

	hashes map[string]*command // the batch's HSET per device
	order  []*command          // the HSETs in the order their devices came
	rest   []*command          // XADDs and PUBLISHes, in the order of their points
	free   []*command          // commands of earlier batches, for reuse

	buf    []byte // the texts' bytes
	texts  []text
	lastTS int64 // the newest timestamp's text, shared by the points that have it
	tsText *text
	json   []byte // the points' JSON back to back, for PUBLISH

	// stream_entry = "batch": the message's open entry per device, and the keys in each
	open  map[string]*openEntry
	spare []*openEntry
}

type openEntry struct {
	c    *command
	keys map[string]struct{}
}

func (b *pointBatch) command(capacity int) *command {
	if n := len(b.free); n > 0 {
		c := b.free[n-1]
		b.free = b.free[:n-1]
		return c
	}
	return &command{args: make([]any, 0, capacity)}
}

// textOf appends a value's text to the batch's buffer, as Redis stores it: numbers and booleans as their text, a
// string as it is, null as "" (its quality says why).
func (b *pointBatch) textOf(v isp.Value) *text {
	start := len(b.buf)
	switch v.Kind() {
	case isp.KindFloat:
		f, _ := v.Float()
		b.buf = strconv.AppendFloat(b.buf, f, 'g', -1, 64)
	case isp.KindInt:
		i, _ := v.Int()
		b.buf = strconv.AppendInt(b.buf, i, 10)
	case isp.KindBool:
		x, _ := v.Bool()
		b.buf = strconv.AppendBool(b.buf, x)
	case isp.KindString:
		s, _ := v.Str()
		b.buf = append(b.buf, s...)
	}
	return b.newText(start)
}

// newText is the text of b.buf[start:]. A text keeps its slice of the buffer as it was when made (a buffer that
// grows leaves the earlier bytes where they are), and the texts' slice grows the same way, so a pointer to a
// text stays good for the batch's life.
func (b *pointBatch) newText(start int) *text {
	if len(b.texts) == cap(b.texts) {
		b.texts = make([]text, 0, max(64, 2*cap(b.texts)))
	}
	b.texts = append(b.texts, text{b: b.buf[start:len(b.buf):len(b.buf)]})
	return &b.texts[len(b.texts)-1]
}

func (b *pointBatch) timestamp(ts int64) *text {
	if b.tsText == nil || ts != b.lastTS {
		start := len(b.buf)
		b.buf = strconv.AppendInt(b.buf, ts, 10)
		b.lastTS, b.tsText = ts, b.newText(start)
	}
	return b.tsText
}

// Add implements batch.Batch: a point whose device id or key is not a token is refused with its whole message
// (they name Redis keys and hash fields, and a ':' or a space in them would write into another device's key).
// The points' commands are made here: one HSET per device for the batch (its keys' latest values in batch order,
// so the last point of a key wins), then an XADD and a PUBLISH per point, or an XADD per device and message, as
// configured.
func (b *pointBatch) Add(_ string, points []isp.Point) (int, error) {
	for i := range points {
		if err := isp.ValidToken(points[i].DeviceID); err != nil {
			return 0, fmt.Errorf("point %d: device id: %w", i, err)
		}
		if err := isp.ValidToken(points[i].Key); err != nil {
			return 0, fmt.Errorf("point %d: key: %w", i, err)
		}
	}
	cfg := b.cfg
	entries := cfg.StreamPrefix != "" && cfg.StreamEntry == EntryBatch
	for i := range points {
		p := &points[i]
		e := b.n + i
		kn, dn := b.names.key(p.Key), b.names.dev(cfg, p.DeviceID)
		val, ts, q := b.textOf(p.Value), b.timestamp(p.Timestamp), boxedQuality(p.Quality)
		if cfg.HashPrefix != "" {
			h := b.hashes[p.DeviceID]
			if h == nil {
				if b.hashes == nil {
					b.hashes = map[string]*command{}
				}
				h = b.command(2 + 6*len(points))
				h.args = append(h.args, "hset", dn.hash)
				b.hashes[p.DeviceID] = h
				b.order = append(b.order, h)
			}
			h.args = append(h.args, kn.key, val, kn.ts, ts, kn.q, q)
			h.entries = append(h.entries, e)
		}
		if entries {
			b.addToEntry(p, e, kn, dn, val, ts, q, len(points))
		}
		if cfg.StreamPrefix != "" && cfg.StreamEntry == EntryPoint {
			c := b.command(14 + 2*len(p.Tags))
			c.args = append(c.args, "xadd", dn.stream, "maxlen", "~", b.names.maxLen, "*",
				"key", kn.key, "value", val, "ts", ts, "q", q)
			for _, tag := range p.Tags {
				c.args = append(c.args, b.names.tagField(tag.Key), b.names.tagValue(tag.Value))
			}
			c.entries = append(c.entries, e)
			b.rest = append(b.rest, c)
		}
		if cfg.ChannelPrefix != "" {
			start := len(b.json)
			b.json = isp.AppendPoint(b.json, p)
			c := b.command(3)
			c.args = append(c.args, "publish", dn.channel, b.json[start:len(b.json):len(b.json)])
			c.entries = append(c.entries, e)
			b.rest = append(b.rest, c)
		}
	}
	for _, o := range b.open {
		clear(o.keys)
		o.c = nil // queued: it is the batch's now
		b.spare = append(b.spare, o)
	}
	clear(b.open)
	b.n += len(points)
	return len(points), nil
}

// addToEntry puts a point into its device's entry of this message (stream_entry = "batch": the keys of its
// points as fields, {key}, {key}.ts, {key}.q, {key}.tag.{name}, in point order); a key that comes again within
// the message closes the device's entry and opens the next, so an entry never holds a key twice.
func (b *pointBatch) addToEntry(p *isp.Point, e int, kn *keyNames, dn *devNames, val *text, ts, q any, n int) {
	o := b.open[p.DeviceID]
	if o != nil {
		if _, again := o.keys[p.Key]; again {
			clear(o.keys)
			o.c = nil
		}
	} else {
		if k := len(b.spare); k > 0 {
			o = b.spare[k-1]
			b.spare = b.spare[:k-1]
		} else {
			o = &openEntry{keys: map[string]struct{}{}}
		}
		if b.open == nil {
			b.open = map[string]*openEntry{}
		}
		b.open[p.DeviceID] = o
	}
	if o.c == nil {
		o.c = b.command(6 + 6*n)
		o.c.args = append(o.c.args, "xadd", dn.stream, "maxlen", "~", b.names.maxLen, "*")
		b.rest = append(b.rest, o.c)
	}
	o.keys[p.Key] = struct{}{}
	o.c.args = append(o.c.args, kn.key, val, kn.ts, ts, kn.q, q)
	for _, tag := range p.Tags {
		o.c.args = append(o.c.args, kn.tagField(tag.Key), b.names.tagValue(tag.Value))
	}
	o.c.entries = append(o.c.entries, e)
}

func (b *pointBatch) Reset() {
	for _, cs := range [][]*command{b.order, b.rest} {
		for _, c := range cs {
			clear(c.args) // the strings of this batch's points, not to be held until the next
			c.args, c.entries = c.args[:0], c.entries[:0]
			b.free = append(b.free, c)
		}
	}
	clear(b.hashes)
	clear(b.order)
	clear(b.rest)
	clear(b.texts)
	b.order, b.rest, b.texts, b.buf, b.json, b.n, b.tsText = b.order[:0], b.rest[:0], b.texts[:0], b.buf[:0], b.json[:0], 0, nil
}

// Field names beside a key's value in the device's hash: keys are tokens (letters, digits, '-', '_'), so a name
// with a '.' is never a key.
const (
	fieldTimestamp = ".ts"
	fieldQuality   = ".q"
)

// Write implements batch.Target: the batch's commands in one pipeline, the HSETs first.
func (t *target) Write(ctx context.Context, bb batch.Batch) error {
	b := bb.(*pointBatch)
	pipe := t.c.Pipeline()
	owners := make([][]int, 0, len(b.order)+len(b.rest)) // entries of each queued command, by position
	for _, cs := range [][]*command{b.order, b.rest} {
		for _, c := range cs {
			pipe.Do(ctx, c.args...)
			owners = append(owners, c.entries)
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
