// Package system is the gateway's runtime: it starts NATS (embedded or external, with JetStream when enabled),
// the actor system and the supervision tree, bridges subjects into actor mailboxes, serves the control subjects
// and shuts everything down in order.
//
// It is the only package that knows all the others; it never holds device, sink or protocol logic itself: that
// lives in actors/, and system only wires it.
package system

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Version is the gateway's version, set at build time with -ldflags "-X github.com/iotgw/iotgw/system.Version=…".
var Version = "0.1.0-dev"

const rootPath = "root"

// DefaultStopTimeout bounds a graceful shutdown (SIGINT/SIGTERM must exit within 5 s).
const DefaultStopTimeout = 4 * time.Second

// Runtime is one running gateway.
type Runtime struct {
	cfg           *config.Config
	log           zerolog.Logger
	stdout        io.Writer
	stopTimeout   time.Duration
	feedPartBytes int // WithFeedPartBytes

	bus *Bus
	sys *actor.ActorSystem
	// dispatch runs every actor's mailbox on long-lived goroutines (actors.Dispatcher: their grown stacks stay);
	// closed at Stop after the actor system.
	dispatch *actors.Dispatcher
	// stopBy is when a shutdown in progress must be over (Unix ns; 0 when none): every supervisor stopping its
	// children shares it, so nested supervisors together stay within the stop timeout.
	stopBy  atomic.Int64
	root    *actor.PID
	tree    *Tree
	budget  *pendingBudget // the subject mailboxes' share of buffered bus messages (budget.go)
	started time.Time
	// groups are the children of the root and of each group supervisor, kept here so that a supervisor that
	// restarts starts what it had (AddActor and RemoveActor keep them current); set in Start, then only read.
	groups map[string]*childList

	configPath  string // the file Reload reads again
	reloadMu    sync.Mutex
	store       deviceStore     // devices added at run time
	devices     *deviceRegistry // every device and where it came from
	endpoints   endpointSet     // the endpoint actors that run, by key
	fileDevices []config.Device // the device blocks of the file as last loaded (not the stored ones): what a reload compares
	faults      *faultManager
	rules       *ruleRegistry // the rules group's rules and their stores (rules.go)
	mon         *monitor      // health, metrics and the HTTP server (metrics.go, http.go)
	// incarnations numbers every incarnation of every actor (mailboxActor.incarnation).
	incarnations atomic.Uint64
	// quit is closed when Stop begins: a supervisor waiting for a child to start stops waiting.
	quit     chan struct{}
	quitOnce sync.Once
	// streams counts what the streams' limits discard (streams.go); nil with JetStream off.
	streams             *streamWatch
	streamWatchInterval time.Duration // 0: StreamWatchInterval
}

// Option configures a Runtime.
type Option func(*Runtime)

// WithLogger sets the logger (default: zerolog.Nop()).
func WithLogger(l zerolog.Logger) Option { return func(r *Runtime) { r.log = l } }

// WithStdout sets where the console sink prints (default os.Stdout).
func WithStdout(w io.Writer) Option { return func(r *Runtime) { r.stdout = w } }

// WithStopTimeout bounds Stop.
func WithStopTimeout(d time.Duration) Option { return func(r *Runtime) { r.stopTimeout = d } }

// WithConfigPath names the file the config came from, for Reload (SIGHUP, iot.control.reload).
func WithConfigPath(path string) Option { return func(r *Runtime) { r.configPath = path } }

// WithFeedPartBytes bounds each message of the dashboard's tree feed (iot.metrics.tree.{gateway}) to n bytes; a
// larger tree goes out in parts (dashfeed.go). The default, 0, is the connection's max_payload: the tests set it
// small to see a tree arrive in parts.
func WithFeedPartBytes(n int) Option { return func(r *Runtime) { r.feedPartBytes = n } }

// New builds a runtime for cfg; nothing starts before Start.
func New(cfg *config.Config, opts ...Option) *Runtime {
	r := &Runtime{cfg: cfg, log: zerolog.Nop(), stdout: os.Stdout, stopTimeout: DefaultStopTimeout, tree: newTree()}
	for _, o := range opts {
		o(r)
	}
	r.budget = newPendingBudget(cfg.NATS.PendingMessages, cfg.NATS.PendingBytes, r.log)
	r.tree.budget = r.budget
	return r
}

// Bus is the runtime's NATS connection (and embedded server), valid after Start.
func (r *Runtime) Bus() *Bus { return r.bus }

// Tree is the live supervision tree.
func (r *Runtime) Tree() *Tree { return r.tree }

// ErrNotStarted is returned by Stop before Start.
var ErrNotStarted = errors.New("runtime not started")

// Start connects the bus and starts the supervision tree. On error nothing is left running.
func (r *Runtime) Start(ctx context.Context) error {
	bus, err := StartBus(ctx, r.cfg.Gateway, r.cfg.NATS, r.log)
	if err != nil {
		return err
	}
	r.bus = bus
	r.tree.setUplink(bus.uplink)
	r.started = time.Now()
	r.faults = newFaultManager(r)
	if err := r.openDeviceStore(ctx); err != nil {
		r.bus.Close()
		return err
	}
	r.sys = actor.NewActorSystem(actorLogger(r.log))
	compactRegistry(r.sys)
	r.dispatch = actors.NewDispatcher(dispatchIdle)
	r.monitor().init() // before the first actor: Runtime.env hands out its metrics

	r.groups = map[string]*childList{}
	specs, err := r.topLevel()
	if err != nil {
		r.bus.Close()
		return err
	}
	r.quit = make(chan struct{})
	r.tree.add(rootPath, "supervisor", nil)
	r.groups[rootPath] = newChildList(specs)
	producer := newSupervisor(r, rootPath, r.cfg.Supervisor, r.groups[rootPath])
	up := make(chan struct{})
	var once sync.Once
	wrapped := func() actor.Actor {
		return &mailboxActor{inner: producer(), path: rootPath, tree: r.tree, started: func(error) { once.Do(func() { close(up) }) }}
	}
	pid, err := r.sys.Root.SpawnNamed(r.props(wrapped), rootPath)
	if err != nil {
		r.bus.Close()
		return fmt.Errorf("spawn supervision tree: %w", err)
	}
	r.root = pid
	// Every supervisor waits for its children to start, so the root is up when the whole tree is.
	select {
	case <-up:
	case <-ctx.Done():
		r.stopAfterFailedStart()
		return ctx.Err()
	}
	// The stream watcher is set before the HTTP server serves: a scrape of /metrics reads it (collectStreams).
	r.startStreamWatch()
	if err := r.mon.start(); err != nil {
		r.stopAfterFailedStart()
		return err
	}
	r.startLate() // NATS was not there with JetStream on: the device bucket is opened at the first connection
	r.log.Info().Str("gateway", r.cfg.Gateway.ID).Str("nats", r.bus.URL).Int("devices", len(r.cfg.Devices)).
		Int("sinks", len(r.cfg.Sinks)).Msg("gateway started")
	return nil
}

// props are the props of every actor the runtime spawns: its producer, on the runtime's dispatcher (protoactor's
// default when there is none, as in tests that build a supervisor without Start).
func (r *Runtime) props(p actor.Producer) *actor.Props {
	if r.dispatch == nil {
		return actor.PropsFromProducer(p)
	}
	return actor.PropsFromProducer(p, actor.WithDispatcher(r.dispatch))
}

// dispatchIdle is how many mailbox workers wait for work at most: more than the runs that are in progress at once
// on a busy gateway (a run lasts microseconds), few enough that their stacks are small beside the devices.
const dispatchIdle = 64

// Stop stops the actors leaves-first (devices, sidecars, rules, sinks: each drained, then stopped), then closes
// the bus. It returns within the stop timeout plus the bus's own close.
func (r *Runtime) Stop() error {
	if r.root == nil {
		return ErrNotStarted
	}
	r.quitOnce.Do(func() { close(r.quit) })
	r.mon.stop() // the HTTP server and the bus reports end first: they read what is stopped next
	r.stopLate()
	r.stopStreamWatch()
	r.stopBy.Store(time.Now().Add(r.stopTimeout - r.stopTimeout/8).UnixNano())
	defer r.stopBy.Store(0)
	f := r.sys.Root.PoisonFuture(r.root)
	done := make(chan error, 1)
	go func() { done <- f.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(r.stopTimeout):
		err = fmt.Errorf("supervision tree did not stop within %s", r.stopTimeout)
	}
	r.faults.stop()
	r.sys.Shutdown()
	r.dispatch.Close()
	r.bus.Close()
	r.root = nil
	r.log.Info().Msg("gateway stopped")
	return err
}

// stopBudget is how long a supervisor may wait for one child to stop: what is left of a shutdown, or half the
// stop timeout when one actor is removed from a running gateway.
func (r *Runtime) stopBudget() time.Duration {
	if by := r.stopBy.Load(); by != 0 {
		return max(time.Until(time.Unix(0, by)), 10*time.Millisecond)
	}
	return r.stopTimeout / 2
}

// Run starts the runtime and stops it when ctx is done.
func (r *Runtime) Run(ctx context.Context) error {
	if err := r.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	r.log.Info().Msg("shutting down")
	return r.Stop()
}

// durableEnv is what the durable inboxes of the subject mailboxes need.
func (r *Runtime) durableEnv() durableEnv {
	return durableEnv{bus: r.bus, buffer: r.cfg.NATS.JetStream.Buffer, log: r.log}
}

// env is what every actor constructor gets.
func (r *Runtime) env(component string) actors.Env {
	var stream actors.StreamPublisher
	var js func(ctx context.Context) (jetstream.JetStream, error)
	if r.cfg.NATS.JetStream.Enabled {
		stream = &streamPublisher{bus: r.bus, cfg: r.cfg.NATS.JetStream}
		js = func(ctx context.Context) (jetstream.JetStream, error) {
			select {
			case <-r.bus.JetStreamReady():
				return r.bus.JS, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return actors.Env{
		Bus:           r.bus.Publisher(),
		Stream:        stream,
		JetStream:     js,
		Log:           r.log.Hook(actorHook(component)),
		GatewayID:     r.cfg.Gateway.ID,
		PointSubjects: r.cfg.Gateway.PointSubjects,
		Stdout:        r.stdout,
		LogFormat:     r.cfg.Gateway.LogFormat,
		DataDir:       r.cfg.Gateway.DataDir,
		Metrics:       r.mon.actorMetrics(),
		LinkState:     func(state, detail string) { r.tree.link(component, state, detail) },
		Schedule:      r.schedule,
		InStream:      r.inStream,
	}
}

// actorHook adds the actor's name ("actor": "devices/meter-1") to each of its log events. A hook, not a context
// field: zerolog's With gives each logger a 500-byte context buffer, and every device and endpoint gets a logger
// (1 KB of a Modbus device's memory). The field comes after the event's own fields instead of before them.
type actorHook string

func (h actorHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) { e.Str("actor", string(h)) }

// inStream says whether IOT_DATA keeps subject (Env.InStream): with JetStream on, its subjects.
func (r *Runtime) inStream(subject string) bool {
	if !r.cfg.NATS.JetStream.Enabled {
		return false
	}
	for _, p := range streamSubjects {
		if actors.MatchSubject(p, subject) {
			return true
		}
	}
	return false
}

// schedule runs fn on the dispatcher's long-lived workers (Env.Schedule).
func (r *Runtime) schedule(fn func()) {
	if r.dispatch == nil {
		go fn()
		return
	}
	r.dispatch.Schedule(fn)
}

// topLevel is the root's children in start order: the control plane, then consumers before producers (sinks,
// rules, sidecars, endpoints, devices), so nothing a device publishes at start-up finds nobody listening. They stop in
// reverse order.
func (r *Runtime) topLevel() ([]ChildSpec, error) {
	sinks, err := r.sinkSpecs()
	if err != nil {
		return nil, err
	}
	endpoints, err := r.endpointSpecs()
	if err != nil {
		return nil, err
	}
	devices, err := r.deviceSpecs()
	if err != nil {
		return nil, err
	}
	group := func(name string, children []ChildSpec) ChildSpec {
		r.groups[name] = newChildList(children)
		return ChildSpec{Name: name, Kind: "supervisor", Producer: newSupervisor(r, name, r.cfg.Supervisor, r.groups[name])}
	}
	return []ChildSpec{
		{Name: ControlActor, Kind: "control", Producer: newControl(r)},
		group("sinks", sinks),
		group("rules", r.ruleSpecs()),
		group("sidecars", r.sidecarSpecs()),
		group(GroupEndpoints, endpoints),
		group(GroupDevices, devices),
	}, nil
}

// ControlActor is the name of the control actor under the root.
const ControlActor = "control"

// Supervisor groups under the root.
const (
	GroupDevices  = "devices"
	GroupSidecars = "sidecars"
	GroupRules    = "rules"
	GroupSinks    = "sinks"
	// GroupEndpoints holds what devices share (a serial line's or a TCP address's transport) and the in-process
	// simulators: started before the devices, stopped after them.
	GroupEndpoints = "endpoints"
)

// AddActor starts one more actor under a group's supervisor ("devices", "sinks", …) while the gateway runs. The
// actor is supervised like the configured ones.
func (r *Runtime) AddActor(group string, spec ChildSpec) error {
	return r.ask(group, &addChild{spec: spec})
}

// RemoveActor drains and stops an actor of a group and forgets it.
func (r *Runtime) RemoveActor(group, name string) error {
	if r.faults != nil {
		path := name
		if group != rootPath {
			path = group + "/" + name
		}
		r.faults.forget(path) // its faults end with it, not with one of its incarnations
	}
	return r.ask(group, &removeChild{name: name})
}

// ErrControlPlane refuses what would cut the control plane: a fault on, or a restart of, the control actor or the
// root, which the request itself goes through.
var ErrControlPlane = errors.New("serves the control plane: a fault or a restart there would cut it (no further control request, no reload)")

// RestartActor stops an actor and starts it afresh from its spec, its failures forgotten: a failed actor comes
// back, a stopped one starts, a running one restarts (a disconnected one retries now). path is as in the tree:
// "devices/plc-1", or a group ("devices"). The control actor and the root cannot be restarted this way.
func (r *Runtime) RestartActor(path string) error {
	path = strings.Trim(path, "/")
	group, name := rootPath, path
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		group, name = path[:i], path[i+1:]
	}
	if path == rootPath || path == ControlActor {
		return fmt.Errorf("%s %w", path, ErrControlPlane)
	}
	if _, ok := r.tree.Get(path); !ok || name == "" {
		return fmt.Errorf("no actor %q (see iot.control.tree)", path)
	}
	if group != rootPath {
		if n, ok := r.tree.Get(group); !ok || n.State != StateRunning {
			state := "gone"
			if ok {
				state = n.State
			}
			return fmt.Errorf("%s: its supervisor %s is %s: restart %s first", path, group, state, group)
		}
	}
	return r.ask(group, &restartChild{name: name})
}

func (r *Runtime) ask(group string, msg any) error {
	if r.root == nil {
		return ErrNotStarted
	}
	pid := r.root
	if group != rootPath {
		pid = r.sys.NewLocalPID(r.root.Id + "/" + group)
	}
	res, err := r.sys.Root.RequestFuture(pid, msg, r.stopTimeout).Result()
	if err != nil {
		return fmt.Errorf("supervisor %s: %w", group, err)
	}
	reply, ok := res.(*childReply)
	if !ok {
		return fmt.Errorf("supervisor %s: unexpected reply %T", group, res)
	}
	return reply.err
}

// stopAfterFailedStart stops what a start that fails has started; the start's error is what Start returns, so
// a failure to stop is logged.
func (r *Runtime) stopAfterFailedStart() {
	if err := r.Stop(); err != nil {
		r.log.Error().Err(err).Msg("stop after a failed start")
	}
}
