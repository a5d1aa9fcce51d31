package system

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/iotgw/iotgw/internal/backoff"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// A gateway with JetStream on whose NATS server is not there at start cannot read the bucket of the devices added
// at run time. It starts anyway, with the devices of its config file, and a lateStore in place of the bucket; at
// the first connection openLate sets the stream up, opens the bucket and starts the stored devices.
//
// Falling back to the file store meanwhile would lose devices: one added while on the file would be missing from
// the bucket at the next start, and the bucket's would be missing now. Nothing is lost by waiting instead: every
// device request arrives over NATS, so none can come before the connection, and one that arrives right after it
// waits (bounded by its own timeout) until the bucket is open.

// lateStore is the device store until the bucket is open; it then forwards to it.
type lateStore struct {
	ready chan struct{} // closed when store is set
	store deviceStore

	cancel context.CancelFunc // of openLate
	done   chan struct{}      // closed when openLate has returned
	once   sync.Once
}

func newLateStore() *lateStore { return &lateStore{ready: make(chan struct{})} }

func (l *lateStore) String() string { return "JetStream bucket " + DevicesBucket }

func (l *lateStore) get(ctx context.Context) (deviceStore, error) {
	select {
	case <-l.ready:
		return l.store, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("device store: bucket %s not open yet (no connection to NATS since start): %w", DevicesBucket, ctx.Err())
	}
}

func (l *lateStore) Load(ctx context.Context) (map[string][]byte, error) {
	s, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return s.Load(ctx)
}

func (l *lateStore) Put(ctx context.Context, id string, hcl []byte) error {
	s, err := l.get(ctx)
	if err != nil {
		return err
	}
	return s.Put(ctx, id, hcl)
}

func (l *lateStore) Delete(ctx context.Context, id string) error {
	s, err := l.get(ctx)
	if err != nil {
		return err
	}
	return s.Delete(ctx, id)
}

// devicesBucket opens (creating it when needed) the bucket of the devices added at run time.
func devicesBucket(ctx context.Context, js jetstream.JetStream, gateway string, log zerolog.Logger) (*kvStore, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: DevicesBucket, Description: "iotgw devices added at run time", History: 5})
	if err != nil {
		return nil, err
	}
	return &kvStore{kv: kv, gateway: gateway, log: log}, nil
}

// startLate starts openLate when the device store is late; Start calls it once the tree is up.
func (r *Runtime) startLate() {
	ls, ok := r.store.(*lateStore)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	ls.cancel, ls.done = cancel, make(chan struct{})
	go func() {
		defer close(ls.done)
		r.openLate(ctx, ls)
	}()
}

// stopLate stops openLate and waits for it (bounded: each of its steps is); Stop calls it first.
func (r *Runtime) stopLate() {
	ls, ok := r.store.(*lateStore)
	if !ok || ls.cancel == nil {
		return
	}
	ls.once.Do(func() {
		ls.cancel()
		<-ls.done
	})
}

func (r *Runtime) openLate(ctx context.Context, ls *lateStore) {
	js, err := r.bus.awaitJetStream(ctx, r.cfg.NATS.JetStream)
	if err != nil {
		return // stopped before the server came
	}
	var store *kvStore
	wait := backoff.Backoff{Policy: backoff.Policy{Initial: 500 * time.Millisecond, Max: 30 * time.Second}}
	for {
		kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		store, err = devicesBucket(kctx, js, r.cfg.Gateway.ID, r.log)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		delay := wait.Next()
		r.log.Error().Err(err).Stringer("retry_in", delay).Msg("device store: cannot open the JetStream bucket; retrying")
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
	ls.store = store
	close(ls.ready)

	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	stored, err := store.Load(lctx)
	cancel()
	if err != nil {
		r.log.Error().Err(err).Str("store", store.String()).Msg("device store: cannot read the devices added at run time; they do not run until the next start")
		return
	}
	r.devices.mu.Lock()
	defer r.devices.mu.Unlock()
	started := 0
	for _, e := range r.acceptStored(stored) {
		if ctx.Err() != nil {
			return
		}
		spec, err := r.deviceSpec(e.dev)
		if err == nil {
			err = r.ensureEndpoint(e.dev)
		}
		if err == nil {
			err = r.AddActor(GroupDevices, spec)
		}
		if err != nil {
			delete(r.devices.entries, e.dev.ID)
			r.log.Error().Err(err).Str("device", e.dev.ID).Msg("stored device could not start")
			continue
		}
		started++
	}
	r.log.Info().Str("store", store.String()).Int("devices", started).Msg("device store open at the first connection to NATS; stored devices started")
}
