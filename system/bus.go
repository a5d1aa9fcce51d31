package system

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/internal/backoff"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// StreamName is the JetStream stream that keeps processed data and rule results (seed: IOT_DATA).
const StreamName = "IOT_DATA"

// streamSubjects are the seed's "iot.processed.*" and "iot.rules.*", narrowed to the batches: the per-point
// subjects (point_subjects) carry the same points again, one message each, so the stream would keep every point
// twice. Written with ">" because a subject below iot.rules has several tokens.
var streamSubjects = []string{"iot.processed.batch.>", "iot.rules.>"}

// Bus is the gateway's connection to NATS: the embedded server when the config says "embedded", and one client
// connection every actor publishes through and the subject mailboxes subscribe on.
type Bus struct {
	Server *server.Server // nil with an external server
	Conn   *nats.Conn
	// JS is nil unless JetStream is enabled. It is set by StartBus when the server was there at start; when it
	// was not, it is set once the gateway has connected and set the stream up, before JetStreamReady is closed.
	JS  jetstream.JetStream
	URL string // what a client (nats sub, iotgw ctl) connects to
	// jetStream: the config enables JetStream (JS may still be nil: the server was not there at start).
	jetStream bool

	log       zerolog.Logger
	connected chan struct{} // closed at the first connection to the server
	jsReady   chan struct{} // closed when JS is set
	// confirmed is what actors publish through in client mode (replay.go); nil with the embedded server.
	confirmed atomic.Pointer[confirmedPublisher]
	uplink    *uplink // the leaf link's watcher (leafnode.go); nil without a leafnode block
}

// Publisher is what actors publish through: the embedded server's connection, or, with an external server, the
// confirmed publisher in front of it (replay.go), which also keeps what is published before the first connection
// (nats.go would refuse the messages with headers, all data, until the server's first INFO says it takes them).
func (b *Bus) Publisher() actors.Publisher {
	if c := b.confirmed.Load(); c != nil {
		return c
	}
	return b.Conn
}

// jetStreamNow is JS once it is set, else nil: safe from any goroutine (JS is written before jsReady is closed).
func (b *Bus) jetStreamNow() jetstream.JetStream {
	select {
	case <-b.jsReady:
		return b.JS
	default:
		return nil
	}
}

// JetStreamReady is closed once JS is set (at once when the server was there at start).
func (b *Bus) JetStreamReady() <-chan struct{} { return b.jsReady }

// Connected is closed at the gateway's first connection to the server (at once when it was there at start).
func (b *Bus) Connected() <-chan struct{} { return b.connected }

// ErrBusStart is returned when the embedded server does not come up.
var ErrBusStart = errors.New("nats: embedded server did not start")

// StartBus starts the embedded server (when cfg.URL is "embedded") and connects to it or to the external URL.
//
// The embedded server listens on TCP loopback by default, like nats-server, for every other client (nats sub,
// iotgw ctl, other gateways). The gateway's own connection to it is in-process by default (nats.InProcessServer):
// an earlier throwaway harness saw in-process p99 collapse under load, so bench/ measures both, and here it did
// not: at saturation the two are level, at a steady rate in-process halves CPU per point and p99 latency (see
// bench/REPORT.md). nats { in_process = false } goes back to TCP loopback.
//
// An external server that is not there at start does not stop the gateway: the connection retries every
// reconnect_wait (nats.go RetryOnFailedConnect), what actors publish meanwhile waits in the confirmed publisher's
// queue (replay.go), the subscriptions go out when it connects, and /readyz is not ready until then. With JetStream on, the stream is set
// up at the first connection (awaitJetStream); the runtime opens the devices bucket then.
func StartBus(ctx context.Context, gw config.Gateway, cfg config.NATS, log zerolog.Logger) (*Bus, error) {
	b := &Bus{log: log.With().Str("component", "nats").Logger(), connected: make(chan struct{}), jsReady: make(chan struct{}),
		jetStream: cfg.JetStream.Enabled}
	var firstConnect sync.Once
	var lastReason string // of the failed first connects; used by nats.go's one callback goroutine
	markConnected := func() { firstConnect.Do(func() { close(b.connected) }) }
	url := cfg.URL
	var internal *server.User
	if url == "embedded" || url == "" {
		if len(cfg.Users) > 0 {
			internal = internalUser()
		}
		if missing := config.NATSExposure(cfg); missing != "" {
			// config refuses this unless the operator wrote insecure = true: say it at every start.
			b.log.Warn().Str("host", cfg.Host).Str("missing", missing).Msg("INSECURE: the embedded NATS server listens beyond loopback without " + missing + " (nats { insecure = true }): anyone who reaches it can read the data and, without users, drive iot.control.>")
		}
		ns, err := startEmbedded(gw, cfg, internal, b.log)
		if err != nil {
			return nil, err
		}
		b.Server = ns
		url = ns.ClientURL()
		b.log.Info().Str("url", url).Bool("jetstream", cfg.JetStream.Enabled).Msg("embedded NATS server listening")
	}
	b.URL = url

	opts := []nats.Option{
		nats.Name("iotgw " + gw.ID),
		nats.MaxReconnects(cfg.MaxReconnect),
		nats.ReconnectWait(cfg.ReconnectWait),
		nats.Timeout(cfg.Timeout),
		// The client's default is a ping every 2 minutes: far too long to notice a dead link on a plant network.
		nats.PingInterval(cfg.PingInterval),
		nats.MaxPingsOutstanding(cfg.MaxPingsOut),
		// Keep what actors publish while the link is down, up to a bound, and deliver it after reconnecting.
		nats.ReconnectBufSize(reconnectBuffer),
		// An external server that is down at start is retried like one that went down later. The embedded one is
		// in this process: failing to reach it is a bug, reported at once.
		nats.RetryOnFailedConnect(b.Server == nil),
		nats.ConnectHandler(func(nc *nats.Conn) {
			markConnected()
			b.log.Info().Str("url", nc.ConnectedUrlRedacted()).Msg("connected to NATS")
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			select {
			case <-b.connected:
			default:
				// Each new reason once (a refused connection, then an authorization violation, say); repeats quietly.
				ev := b.log.Debug()
				if reason := err.Error(); reason != lastReason {
					lastReason, ev = reason, b.log.Warn()
				}
				ev.Err(err).Msg("NATS not reachable yet; retrying")
			}
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // our own Close
			}
			b.log.Warn().Err(err).Msg("disconnected from NATS; reconnecting")
			if c := b.confirmed.Load(); c != nil {
				c.disconnected()
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			markConnected()
			b.log.Info().Str("url", nc.ConnectedUrlRedacted()).Uint64("reconnects", nc.Stats().Reconnects).Msg("reconnected to NATS")
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil {
				b.log.Error().Err(err).Msg("NATS connection closed")
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := b.log.Warn().Err(err)
			if sub != nil {
				dropped, _ := sub.Dropped()
				ev = ev.Str("subject", sub.Subject).Int("dropped", dropped)
			}
			ev.Msg("NATS asynchronous error")
		}),
	}
	if internal != nil {
		opts = append(opts, nats.UserInfo(internal.Username, internal.Password))
	}
	// The gateway's replies (JetStream acknowledgements, its own requests) come to an inbox no user may read.
	opts = append(opts, nats.CustomInboxPrefix(GatewayInboxPrefix+"."+gw.ID))
	if t := cfg.ClientTLS; t != nil && b.Server == nil {
		opts = append(opts, clientTLS(t)...)
	}
	connectURL := url
	if cfg.InProcess && b.Server != nil {
		opts = append(opts, nats.InProcessServer(b.Server))
		// In-process there is no wire to encrypt, and the server does not ask for TLS there; a tls:// URL would
		// make the client insist on it.
		connectURL = strings.Replace(url, "tls://", "nats://", 1)
	}
	nc, err := nats.Connect(connectURL, opts...)
	if err != nil {
		b.shutdownServer()
		return nil, fmt.Errorf("nats: connect %s: %w", redact(url), err)
	}
	b.Conn = nc
	if !nc.IsConnected() {
		b.startConfirmed()
		ev := b.log.Warn().Str("url", redact(url)).Stringer("retry_every", cfg.ReconnectWait).
			Str("buffer", fmt.Sprintf("%d MiB", reconnectBuffer>>20))
		if cfg.JetStream.Enabled {
			ev = ev.Str("jetstream", "set up at the first connection")
		}
		ev.Msg("NATS server not reachable at start: the gateway runs, keeps what it publishes (bounded) and connects when the server is there; /readyz is not ready until then")
		return b, nil
	}
	markConnected()
	b.startConfirmed()

	if cfg.JetStream.Enabled {
		if err := b.setupJetStream(ctx, cfg.JetStream); err != nil {
			b.Close()
			return nil, err
		}
	}
	if cfg.Leafnode != nil && b.Server != nil {
		b.uplink = startUplink(b.Server, cfg.JetStream.Enabled, b.Conn, gw, cfg.Leafnode, b.log)
	}
	return b, nil
}

// reconnectBuffer bounds what the client keeps of what actors publish while it is not connected; past it a
// publish fails (and the actor logs it).
const reconnectBuffer = 64 << 20

// awaitJetStream waits for the first connection, then sets the stream up, retrying with a capped backoff while
// the server refuses (JetStream not enabled there, not ready yet); it returns when JS is set or ctx ends. It is
// for a gateway whose server was not there at start; otherwise JS is already set.
func (b *Bus) awaitJetStream(ctx context.Context, cfg config.JetStream) (jetstream.JetStream, error) {
	select {
	case <-b.jsReady:
		return b.JS, nil
	case <-b.connected:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	wait := backoff.Backoff{Policy: backoff.Policy{Initial: 500 * time.Millisecond, Max: 30 * time.Second}}
	for {
		err := b.setupJetStream(ctx, cfg)
		if err == nil {
			return b.JS, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		delay := wait.Next()
		b.log.Error().Err(err).Stringer("retry_in", delay).Msg("JetStream not ready on the server; retrying")
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
	}
}

func startEmbedded(gw config.Gateway, cfg config.NATS, internal *server.User, log zerolog.Logger) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "iotgw-" + gw.ID,
		Host:       cfg.Host,
		Port:       cfg.Port,
		NoSigs:     true, // the gateway owns signal handling
		MaxPayload: 8 << 20,
	}
	if internal != nil {
		opts.Users, opts.Nkeys = serverUsers(cfg.Users, internal)
	}
	if t := cfg.TLS; t != nil {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: t.Cert, KeyFile: t.Key, CaFile: t.CA, Verify: t.Verify})
		if err != nil {
			return nil, fmt.Errorf("nats: embedded server tls: %w", err)
		}
		opts.TLS, opts.TLSConfig, opts.TLSVerify, opts.TLSTimeout = true, tc, t.Verify, 2
		opts.TLSCert, opts.TLSKey, opts.TLSCaCert = t.Cert, t.Key, t.CA
	}
	if cfg.JetStream.Enabled {
		opts.JetStream = true
		opts.StoreDir = cfg.JetStream.StoreDir
		if opts.StoreDir == "" {
			opts.StoreDir = filepath.Join(gw.DataDir, "jetstream")
		}
		opts.JetStreamMaxMemory = cfg.JetStream.MaxMemory
		opts.JetStreamMaxStore = cfg.JetStream.MaxFile
		opts.SyncInterval, opts.SyncAlways = cfg.JetStream.SyncInterval, cfg.JetStream.SyncAlways
	}
	if err := applyLeafnode(opts, gw, cfg); err != nil {
		return nil, err
	}
	if cfg.Port > 0 {
		// nats-server reports a taken port only in its log and then never becomes ready: say it plainly, at once.
		addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%w: cannot listen on %s (another gateway or nats-server running? set nats { port = … }): %v", ErrBusStart, addr, err)
		}
		_ = l.Close()
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: embedded server: %w", err)
	}
	ns.SetLoggerV2(natsLogger{log}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("%w on %s", ErrBusStart, net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	}
	return ns, nil
}

// streamPublisher is the processing stage's acknowledged publisher (actors.StreamPublisher).
type streamPublisher struct {
	bus *Bus
	cfg config.JetStream
}

var _ actors.StreamPublisher = (*streamPublisher)(nil)

func (p *streamPublisher) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	select {
	case <-p.bus.jsReady:
	default:
		return nil, actors.ErrStreamNotReady
	}
	return p.bus.JS.PublishMsgAsync(m, opts...)
}

func (p *streamPublisher) Window() int { return p.cfg.PublishWindow }

func (p *streamPublisher) DuplicateWindow() time.Duration { return p.cfg.DuplicateWindow }

func (b *Bus) setupJetStream(ctx context.Context, cfg config.JetStream) error {
	// The async publish window and the ack timeout bound the processing stage's acknowledged publishes
	// (nats.go PublishAsyncMaxPending; a future that sees no ack within the timeout fails and is retried).
	js, err := jetstream.New(b.Conn, jetstream.WithPublishAsyncMaxPending(max(cfg.PublishWindow, 1)),
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout))
	if err != nil {
		return fmt.Errorf("nats: jetstream: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err = js.CreateOrUpdateStream(ctx, dataStreamConfig(cfg)); err != nil {
		return fmt.Errorf("nats: jetstream stream %s: %w", StreamName, err)
	}
	if _, err = js.CreateOrUpdateStream(ctx, deadLetterStreamConfig(cfg)); err != nil {
		return fmt.Errorf("nats: jetstream stream %s: %w", DeadLetterStream, err)
	}
	b.JS = js
	close(b.jsReady)
	b.log.Info().Str("stream", StreamName).Strs("subjects", streamSubjects).Msg("JetStream stream ready")
	return nil
}

// dataStreamConfig is IOT_DATA's: file storage, bounded in bytes and age, with the configured discard policy and
// a duplicate window for the processing stage's message ids.
func dataStreamConfig(cfg config.JetStream) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "iotgw processed data and rule results",
		Subjects:    streamSubjects,
		Storage:     jetstream.FileStorage,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    cfg.MaxBytes,
		Discard:     discardPolicy(cfg.Discard),
		Duplicates:  cfg.DuplicateWindow,
		PersistMode: persistMode(cfg.PersistMode),
	}
}

// persistMode is IOT_DATA's: "default" (nats-server's flush in place: each message is written to the block file,
// one write(2), before its publish is acknowledged, so an acknowledged message survives kill -9) or "async"
// (acknowledged from the server's write cache, which its flusher writes in batches of 16 KiB or after 8 ms:
// a quarter to a half of what JetStream adds per point at 30 points per batch, for a crash window of those 8 ms).
func persistMode(s string) jetstream.PersistModeType {
	if s == "async" {
		return jetstream.AsyncPersistMode
	}
	return jetstream.DefaultPersistMode
}

// deadLetterStreamConfig is IOT_DEADLETTER's: what durable inboxes gave up on, with the reason in headers. Discard
// old: a dead letter must never make a sink's Term fail for want of room.
func deadLetterStreamConfig(cfg config.JetStream) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "iotgw dead letters: messages a durable inbox gave up on (Iot-Dead-Reason says why)",
		Subjects:    []string{SubjectDeadLetterPrefix + ">"},
		Storage:     jetstream.FileStorage,
		MaxAge:      cfg.DeadLetterMaxAge,
		MaxBytes:    cfg.DeadLetterMaxBytes,
		Discard:     jetstream.DiscardOld,
		Duplicates:  time.Minute,
	}
}

func discardPolicy(s string) jetstream.DiscardPolicy {
	if s == "new" {
		return jetstream.DiscardNew
	}
	return jetstream.DiscardOld
}

// startConfirmed puts the confirmed publisher in front of an external server's connection (replay.go).
func (b *Bus) startConfirmed() {
	if b.Server != nil {
		return
	}
	b.confirmed.Store(newConfirmedPublisher(b.Conn, b.Conn, reconnectBuffer, b.log))
}

// replayed is how many messages the confirmed publisher wrote again after disconnects.
func (b *Bus) replayed() uint64 {
	if c := b.confirmed.Load(); c != nil {
		return c.replays.Load()
	}
	return 0
}

// Close flushes what the gateway published, closes the connection and shuts the embedded server down.
func (b *Bus) Close() {
	if c := b.confirmed.Load(); c != nil {
		c.close(time.Second)
	}
	b.uplink.stop()
	if b.Conn != nil && !b.Conn.IsClosed() {
		if b.Conn.IsConnected() { // a flush while reconnecting would only wait out its timeout
			_ = b.Conn.FlushTimeout(time.Second)
		}
		b.Conn.Close()
	}
	b.shutdownServer()
}

func (b *Bus) shutdownServer() {
	if b.Server != nil {
		b.Server.Shutdown()
		b.Server.WaitForShutdown()
	}
}

// redact hides a password in a URL for logs and errors.
func redact(s string) string {
	u, err := neturl.Parse(s)
	if err != nil {
		return s
	}
	return u.Redacted()
}

// GatewayInboxPrefix starts the gateway's own reply inboxes: _IOTGW_INBOX.{gateway id}.…. Non-admin users may
// neither subscribe nor publish there, whatever their publish and subscribe grants, so they can neither read the
// gateway's replies nor forge them. (allow_responses, off by default, lets a user answer a request it received,
// wherever its reply subject points: that is what it is for.)
const GatewayInboxPrefix = "_IOTGW_INBOX"

// dataSubjects are what every user may read: the gateway's output. Not iot.raw.> (unvalidated input) and not
// iot.control.> (requests carry device definitions, replies the tree and stored devices).
var dataSubjects = []string{"iot.processed.>", "iot.rules.>", "iot.alerts.>", "iot.aggregated.>", "iot.errors.>", "iot.metrics.>"}

// UserInbox is the inbox prefix of a non-admin user: the only reply subjects it may subscribe to. iotgw ctl
// -user sets it; with the nats CLI write --inbox-prefix _INBOX.{user}.
func UserInbox(user string) string { return "_INBOX." + user }

// internalUser is the gateway's own account on its embedded server when users are configured: a random password
// made at every start, never written anywhere.
func internalUser() *server.User {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return &server.User{Username: "iotgw-internal", Password: hex.EncodeToString(b)}
}

// serverUsers turns the configured users into the server's, in nats-server's own permission model (allow lists,
// deny lists, allow_responses), so the server enforces them and refuses with a "Permissions Violation":
//
//   - the internal user and admins may do anything;
//   - any other user may subscribe to dataSubjects and its own inbox _INBOX.{name}.> and publish nothing, plus
//     what its block's publish and subscribe grant. Everything else is closed by being absent from the allow
//     lists: iot.raw.> and the rest of iot.> for publishing, iot.control.>, other users' inboxes, $JS.>, $KV.>,
//     $O.>, $SYS.>. The gateway's inboxes and the other users' _INBOX.{name}.> are denied outright, so no grant
//     opens them.
//
// allow_responses stays off unless a user asks for it: a user that may read data would otherwise be allowed to
// answer any request whose message it received, for example a JetStream publish acknowledgement.
func serverUsers(users []config.User, internal *server.User) ([]*server.User, []*server.NkeyUser) {
	out := []*server.User{internal}
	var nkeys []*server.NkeyUser
	for _, u := range users {
		var perms *server.Permissions
		if !u.Admin {
			perms = userPermissions(u, users)
		}
		if u.NKey != "" {
			nkeys = append(nkeys, &server.NkeyUser{Nkey: u.NKey, Permissions: perms})
			continue
		}
		out = append(out, &server.User{Username: u.Name, Password: u.Password, Permissions: perms})
	}
	return out, nkeys
}

// userPermissions are a non-admin's. The deny lists hold the gateway's inboxes and the other configured users'
// inboxes, so that even a grant of ">" reads none of their replies.
func userPermissions(u config.User, users []config.User) *server.Permissions {
	closed := []string{GatewayInboxPrefix + ".>"}
	for _, o := range users {
		if o.Name != u.Name {
			closed = append(closed, UserInbox(o.Name)+".>")
		}
	}
	sub := append(append(append([]string{}, dataSubjects...), UserInbox(u.Name)+".>"), u.Subscribe...)
	p := &server.Permissions{
		// A non-nil empty allow list allows nothing; the deny list is the floor a grant cannot lower.
		Publish:   &server.SubjectPermission{Allow: append([]string{}, u.Publish...), Deny: closed},
		Subscribe: &server.SubjectPermission{Allow: sub, Deny: closed},
	}
	if u.AllowResponses {
		p.Response = &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
	}
	return p
}

// clientTLS is the TLS of the connection to an external server.
func clientTLS(t *config.TLS) []nats.Option {
	var opts []nats.Option
	if t.CA != "" {
		opts = append(opts, nats.RootCAs(t.CA))
	}
	if t.Cert != "" {
		opts = append(opts, nats.ClientCert(t.Cert, t.Key))
	}
	return opts
}
