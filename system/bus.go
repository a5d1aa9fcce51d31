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
	"time"

	"github.com/iotgw/iotgw/config"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// StreamName is the JetStream stream that keeps processed data and rule results (seed: IOT_DATA).
const StreamName = "IOT_DATA"

// streamSubjects are the seed's "iot.processed.*" and "iot.rules.*", written with ">" because a
// {device}.{key} subject has two tokens and "*" would match nothing there (DESIGN.md, "Data on the bus").
var streamSubjects = []string{"iot.processed.>", "iot.rules.>"}

// Bus is the gateway's connection to NATS: the embedded server when the config says "embedded", and one client
// connection every actor publishes through and the subject mailboxes subscribe on.
type Bus struct {
	Server *server.Server // nil with an external server
	Conn   *nats.Conn
	JS     jetstream.JetStream // nil unless JetStream is enabled
	URL    string              // what a client (nats sub, iotgw ctl) connects to

	log zerolog.Logger
}

// ErrBusStart is returned when the embedded server does not come up.
var ErrBusStart = errors.New("nats: embedded server did not start")

// StartBus starts the embedded server (when cfg.URL is "embedded") and connects to it or to the external URL.
//
// The embedded server listens on TCP loopback by default, like nats-server, for every other client (nats sub,
// iotgw ctl, other gateways). The gateway's own connection to it is in-process by default (nats.InProcessServer):
// an earlier throwaway harness saw in-process p99 collapse under load, so bench/ measures both, and here it did
// not: at saturation the two are level, at a steady rate in-process halves CPU per point and p99 latency (see
// bench/REPORT.md). nats { in_process = false } goes back to TCP loopback.
func StartBus(ctx context.Context, gw config.Gateway, cfg config.NATS, log zerolog.Logger) (*Bus, error) {
	b := &Bus{log: log.With().Str("component", "nats").Logger()}
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
		nats.ReconnectBufSize(64 << 20),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // our own Close
			}
			b.log.Warn().Err(err).Msg("disconnected from NATS; reconnecting")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
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

	if cfg.JetStream.Enabled {
		if err := b.setupJetStream(ctx, cfg.JetStream); err != nil {
			b.Close()
			return nil, err
		}
	}
	return b, nil
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

func (b *Bus) setupJetStream(ctx context.Context, cfg config.JetStream) error {
	js, err := jetstream.New(b.Conn)
	if err != nil {
		return fmt.Errorf("nats: jetstream: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "iotgw processed data and rule results",
		Subjects:    streamSubjects,
		Storage:     jetstream.FileStorage,
		MaxAge:      cfg.MaxAge,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return fmt.Errorf("nats: jetstream stream %s: %w", StreamName, err)
	}
	b.JS = js
	b.log.Info().Str("stream", StreamName).Strs("subjects", streamSubjects).Msg("JetStream stream ready")
	return nil
}

// Close flushes what the gateway published, closes the connection and shuts the embedded server down.
func (b *Bus) Close() {
	if b.Conn != nil && !b.Conn.IsClosed() {
		_ = b.Conn.FlushTimeout(time.Second)
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
