package system

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgw/iotgw/actors/rule"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// WindowsBucket holds the open windows an aggregate rule's gateway hands on when its devices move to another
// gateway (actors/rule/handover.go): one entry per handoff of a device, read and deleted by its new owner.
const WindowsBucket = "IOTGW_WINDOWS"

// windowsTTL is how long a handed-on window waits for its new owner in the bucket. A handoff is read within
// milliseconds while another gateway runs; a gateway alone that stops and starts again reads its own back, if
// it is back within this time. Entries (and the markers their deletion leaves) go after it, so unique keys do
// not pile up.
const windowsTTL = 24 * time.Hour

var windowSeq atomic.Uint64

// windowKV is the rule.WindowStore on the bucket IOTGW_WINDOWS, keyed
// {base64url(rule)}.{base64url(device)}.{base64url(gateway)}.{sequence}.
type windowKV struct {
	bus *Bus
	log zerolog.Logger

	mu     sync.Mutex
	kv     jetstream.KeyValue
	stream jetstream.Stream
}

var _ rule.WindowStore = (*windowKV)(nil)

// open opens the bucket, waiting for JetStream (bounded by ctx) only when wait is set: a stop hands windows on
// when JetStream is there, and is not held up when it is not (every aggregate rule would wait in turn).
func (w *windowKV) open(ctx context.Context, wait bool) (jetstream.KeyValue, jetstream.Stream, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.kv != nil {
		return w.kv, w.stream, nil
	}
	select {
	case <-w.bus.JetStreamReady():
	default:
		if !wait {
			return nil, nil, fmt.Errorf("JetStream bucket %s: JetStream not ready", WindowsBucket)
		}
		select {
		case <-w.bus.JetStreamReady():
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("JetStream bucket %s: JetStream not ready: %w", WindowsBucket, ctx.Err())
		}
	}
	kv, err := w.bus.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: WindowsBucket,
		Description: "iotgw open windows handed between gateways", History: 1, TTL: windowsTTL})
	if err != nil {
		return nil, nil, fmt.Errorf("JetStream bucket %s: %w", WindowsBucket, err)
	}
	st, err := w.bus.JS.Stream(ctx, "KV_"+WindowsBucket)
	if err != nil {
		return nil, nil, fmt.Errorf("JetStream bucket %s: %w", WindowsBucket, err)
	}
	w.kv, w.stream = kv, st
	return kv, st, nil
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func (w *windowKV) Save(ctx context.Context, rl string, states []rule.WindowState) error {
	kv, _, err := w.open(ctx, false)
	if err != nil {
		return err
	}
	for i := range states {
		data, err := json.Marshal(&states[i])
		if err != nil {
			return fmt.Errorf("windows of %s: %w", states[i].Device, err) // a sum beyond float64 (±Inf) is not JSON
		}
		key := b64(rl) + "." + b64(states[i].Device) + "." + b64(states[i].Gateway) + "." +
			strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatUint(windowSeq.Add(1), 36)
		if _, err := kv.Put(ctx, key, data); err != nil {
			return fmt.Errorf("windows of %s: %w", states[i].Device, err)
		}
	}
	return nil
}

func (w *windowKV) Take(ctx context.Context, rl string, owns func(string) bool) ([]rule.WindowState, error) {
	kv, st, err := w.open(ctx, true)
	if err != nil {
		return nil, err
	}
	prefix := "$KV." + WindowsBucket + "."
	// One STREAM.INFO with the rule's subjects, as alertKV.keys does, rather than a consumer per read.
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(prefix+b64(rl)+".>"))
	if err != nil {
		return nil, err
	}
	var out []rule.WindowState
	for subject := range info.State.Subjects {
		key := strings.TrimPrefix(subject, prefix)
		tokens := strings.Split(key, ".")
		if len(tokens) != 4 {
			continue
		}
		dev, err := base64.RawURLEncoding.DecodeString(tokens[1])
		if err != nil || !owns(string(dev)) {
			continue
		}
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // taken already (its deletion marker is still a subject)
		}
		if err != nil {
			return out, err
		}
		// Deleted before it is merged: if this gateway dies in between, the windows are lost, never counted twice.
		if err := kv.Purge(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return out, err
		}
		var s rule.WindowState
		if err := json.Unmarshal(e.Value(), &s); err != nil {
			w.log.Error().Str("key", key).Err(err).Msg("handed-on windows cannot be read; dropped")
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

// windowMemory is the rule.WindowStore without JetStream: it hands windows on across restarts of a rule's actor
// (a crash, a reload that keeps the rule's windows' settings), not between gateways or across a gateway restart.
type windowMemory struct {
	mu     sync.Mutex
	states map[string][]rule.WindowState // by rule
}

var _ rule.WindowStore = (*windowMemory)(nil)

func newWindowMemory() *windowMemory { return &windowMemory{states: map[string][]rule.WindowState{}} }

func (m *windowMemory) Save(_ context.Context, rl string, states []rule.WindowState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.states[rl] = append(m.states[rl], states...)
	return nil
}

// forget drops the windows a removed rule handed on.
func (m *windowMemory) forget(rl string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.states, rl)
}

func (m *windowMemory) Take(_ context.Context, rl string, owns func(string) bool) ([]rule.WindowState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out, keep []rule.WindowState
	for _, s := range m.states[rl] {
		if owns(s.Device) {
			out = append(out, s)
		} else {
			keep = append(keep, s)
		}
	}
	m.states[rl] = keep
	if len(keep) == 0 {
		delete(m.states, rl)
	}
	return out, nil
}
