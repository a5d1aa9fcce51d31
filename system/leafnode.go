package system

// The uplink: the embedded server as a leaf node of a hub (nats { leafnode { … } }), with a JetStream domain of
// its own, and a watcher that makes the link's state and the hub's progress through IOT_DATA visible.
//
// This follows the NATS docs on JetStream and leaf nodes ("JetStream on Leaf Nodes"): every server set of its own
// gets its own domain, so the gateway's stream API is $JS.{domain}.API.> seen from the hub, and the hub's stream
// sources IOT_DATA with external.api set to that prefix. The hub pulls; the gateway never pushes, so an outage
// only delays data: the source consumer resumes at the hub's last sequence + 1 when the link is back. Where we
// depart from the docs' examples: they leave the leaf connection's permissions open; here the link refuses by
// default what the hub has no business sending (leafDenyImports) and hides what it has no business reading
// (leafDenyExports).

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/iotgw/iotgw/config"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// CheckUplink names the uplink's readiness check. It never fails: the WAN is not a condition of the gateway's
// work (devices, rules and local sinks run without it, and IOT_DATA keeps what the hub has not yet got); its
// detail says whether the hub is connected and since when.
const CheckUplink = "uplink"

// SubjectUplinkDiscarded is where the gateway reports IOT_DATA messages its stream's limits discarded before the
// hub got them (JSON UplinkDiscarded). The hub can no longer get them: that is the one loss the uplink has.
const SubjectUplinkDiscarded = "iot.errors.uplink.discarded"

// What the uplink state shows of the hub's streams, which come from the hub's consumer metadata.
const (
	maxHubStreams = 16
	maxHubName    = 255 // nats-server's limit on a stream name
)

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// The metadata nats-server puts on a source consumer: the sourcing stream's name and JetStream domain.
const (
	sourceMetaStream = "_nats.src.stream"
	sourceMetaDomain = "_nats.src.domain"
)

// applyLeafnode makes the embedded server a leaf of the hub, when the config has a leafnode block.
func applyLeafnode(opts *server.Options, gw config.Gateway, cfg config.NATS) error {
	l := cfg.Leafnode
	if l == nil {
		return nil
	}
	domain := l.JetStreamDomain(gw)
	remote := &server.RemoteLeafOpts{
		Credentials: l.Credentials,
		DenyImports: leafDenyImports(domain, l.AllowControl),
		DenyExports: leafDenyExports(l.AllowControl),
	}
	for _, s := range l.URLs {
		u, err := url.Parse(s)
		if err != nil { // config checked it
			return fmt.Errorf("nats: leafnode url %s: %w", redact(s), err)
		}
		if l.User != "" {
			u.User = url.UserPassword(l.User, l.Password)
		}
		remote.URLs = append(remote.URLs, u)
		if u.Scheme == "tls" || u.Scheme == "wss" {
			remote.TLS = true
		}
	}
	if t := l.TLS; t != nil {
		tc, err := leafTLS(t)
		if err != nil {
			return err
		}
		remote.TLS, remote.TLSConfig = true, tc
	}
	opts.LeafNode.Remotes = []*server.RemoteLeafOpts{remote}
	opts.LeafNode.ReconnectInterval = l.ReconnectWait
	// nats-server logs every failed reconnect by default: at one attempt a second, a day's outage would be 86,400
	// error lines. Once a minute says the same; the uplink's own state says since when.
	reports := max(1, int(time.Minute/max(l.ReconnectWait, time.Millisecond)))
	opts.ConnectErrorReports, opts.ReconnectErrorReports = reports, reports
	opts.JetStreamDomain = domain
	return nil
}

// leafTLS is the client side of the link's TLS: the hub's certificate checked against ca (else the system's
// roots), and a client certificate when the hub asks for one. The server name is the URL's host (nats-server).
func leafTLS(t *config.TLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("nats: leafnode tls ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("nats: leafnode tls ca %s: no PEM certificate", t.CA)
		}
	}
	if t.Cert != "" {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("nats: leafnode tls cert: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// leafDenyImports is what the link refuses to take from the hub (nats-server's deny_imports of a remote: the
// gateway neither sends interest for these nor delivers them):
//
//   - iot.control.> unless allow_control: the hub cannot drive the gateway (add devices, inject faults);
//   - every other iot subject: the hub, or another gateway on the same hub account, must not publish into this
//     gateway's data, its stream (which keeps iot.processed.batch.>) or its rules. The hub is told these denies
//     (nats-server sends them in the leaf's CONNECT) and applies them to the link both ways, so hub subscribers
//     get no live iot data either: the hub's data is its sourced stream;
//   - the gateway's own inboxes (forged replies), $KV and $O (its buckets: the stored devices), $JS.ACK (the
//     acknowledgements of its sinks' durable consumers), and the stream and account API of its domain
//     (deleting or purging IOT_DATA, reading the devices bucket with direct gets or a consumer, pulling a sink's
//     messages).
//
// What stays open is what sourcing needs: $JS.{domain}.API.CONSUMER.CREATE and .DELETE (the hub makes and
// removes its source consumer on IOT_DATA) and $JS.FC.> (flow control). A hub account can therefore still make
// or delete a consumer of the gateway's streams; the hub operator narrows that with the leaf user's permissions
// on the hub's side. nats-server itself denies $JS.API.> across the link when the domains differ.
func leafDenyImports(domain string, allowControl bool) []string {
	api := "$JS." + domain + ".API."
	deny := []string{
		GatewayInboxPrefix + ".>", "$KV.>", "$O.>", "$JS.ACK.>",
		api + "STREAM.>", api + "DIRECT.>", api + "ACCOUNT.>", api + "META.>", api + "SERVER.>", api + "INFO",
		api + "CONSUMER.MSG.NEXT.>", api + "CONSUMER.DURABLE.CREATE.>", api + "CONSUMER.LEADER.>",
		api + "CONSUMER.PAUSE.>", api + "CONSUMER.UNPIN.>",
		// Consumers of the devices bucket would read the stored device definitions.
		api + "CONSUMER.CREATE.KV_" + DevicesBucket, api + "CONSUMER.CREATE.KV_" + DevicesBucket + ".>",
		"iot.raw.>",
	}
	deny = append(deny, dataSubjects...)
	if !allowControl {
		deny = append(deny, "iot.control.>")
	}
	return deny
}

// leafDenyExports is what the link never gives the hub: the gateway's own inboxes (its JetStream
// acknowledgements and control replies), and unless allow_control the control requests made on the gateway
// (they carry device definitions). Data subjects flow to hub subscribers that ask for them (live data); the
// durable copy is the hub's sourced stream.
func leafDenyExports(allowControl bool) []string {
	deny := []string{GatewayInboxPrefix + ".>"}
	if !allowControl {
		deny = append(deny, "iot.control.>")
	}
	return deny
}

// uplink watches the link to the hub and the hub's progress through IOT_DATA. Its goroutine belongs to the bus:
// it starts after the stream is set up and stops in Bus.Close, before the server.
type uplink struct {
	ns     *server.Server
	js     bool       // JetStream is on: there is an IOT_DATA to watch
	nc     *nats.Conn // for the discard reports
	gw     string
	domain string
	log    zerolog.Logger
	every  time.Duration

	mu    sync.Mutex
	state UplinkState
	// counted are the IOT_DATA sequences counted as discarded, so no message is counted twice.
	counted seqRanges

	stopCh chan struct{}
	done   chan struct{}
}

// UplinkState is the uplink in /readyz's detail, iot.metrics.health and /metrics.
type UplinkState struct {
	Connected   bool      `json:"connected"`
	Since       time.Time `json:"since"`         // of the current state (the gateway's start while never connected)
	Hub         string    `json:"hub,omitempty"` // the hub server's name while connected
	Domain      string    `json:"domain"`        // the gateway's JetStream domain: the hub sources $JS.{domain}.API
	Connects    uint64    `json:"connects"`
	Disconnects uint64    `json:"disconnects"`
	// HubStreams are the hub's streams that source IOT_DATA, as their source consumers on the gateway say.
	HubStreams []string `json:"hub_streams,omitempty"`
	// Delivered is the last IOT_DATA sequence the hub has got (the least of its sourcing streams); Behind is how
	// many messages of IOT_DATA the hub has still to get. Both are known once a hub stream has sourced once
	// since the gateway started (Known).
	Known     bool   `json:"known"`
	Delivered uint64 `json:"delivered_seq,omitempty"`
	Behind    uint64 `json:"behind"`
	// Discarded counts IOT_DATA messages the stream's limits (max age, max bytes) discarded before the hub got
	// them: lost for the hub, and reported on iot.errors.uplink.discarded.
	Discarded uint64 `json:"discarded"`
}

// UplinkDiscarded is the body of iot.errors.uplink.discarded.
type UplinkDiscarded struct {
	Gateway   string `json:"gateway"`
	Stream    string `json:"stream"`
	FromSeq   uint64 `json:"from_seq"`
	ToSeq     uint64 `json:"to_seq"`
	Count     uint64 `json:"count"`
	Total     uint64 `json:"total"`
	Timestamp int64  `json:"timestamp"` // Unix ns
}

// uplinkCheckEvery is how often the watcher looks at the link and, every progressEvery ticks, at the source
// consumers of IOT_DATA; both are calls into the embedded server, no request over the bus.
const (
	uplinkCheckEvery = 250 * time.Millisecond
	progressEvery    = 8
)

func startUplink(ns *server.Server, js bool, nc *nats.Conn, gw config.Gateway, l *config.Leafnode, log zerolog.Logger) *uplink {
	u := &uplink{
		ns: ns, js: js, nc: nc, gw: gw.ID, domain: l.JetStreamDomain(gw), every: uplinkCheckEvery,
		log:    log.With().Str("component", "uplink").Logger(),
		stopCh: make(chan struct{}), done: make(chan struct{}),
	}
	u.state = UplinkState{Since: time.Now(), Domain: u.domain}
	if l.TLS == nil {
		for _, s := range l.URLs {
			if pu, err := url.Parse(s); err == nil && pu.Scheme != "tls" && pu.Scheme != "wss" && !config.IsLoopback(pu.Hostname()) {
				u.log.Warn().Str("url", pu.Redacted()).Msg("uplink: this hub URL is encrypted only if the hub requires TLS; write a tls:// URL or tls { ca = … } to insist on it")
			}
		}
	}
	u.log.Info().Str("hub", l.String()).Str("domain", u.domain).Bool("allow_control", l.AllowControl).
		Msg("uplink: the embedded server is a leaf node of the hub; the hub's stream sources " + StreamName + " through $JS." + u.domain + ".API")
	go u.run()
	return u
}

func (u *uplink) run() {
	defer close(u.done)
	t := time.NewTicker(u.every)
	defer t.Stop()
	for tick := 0; ; tick++ {
		u.checkLink()
		if u.js && tick%progressEvery == 0 {
			u.checkProgress()
		}
		select {
		case <-u.stopCh:
			return
		case <-t.C:
		}
	}
}

// stop ends the watcher and waits for it (a check in flight is a local call into the server); it may be called
// twice, and on a nil uplink.
func (u *uplink) stop() {
	if u == nil {
		return
	}
	select {
	case <-u.stopCh:
	default:
		close(u.stopCh)
	}
	<-u.done
}

func (u *uplink) checkLink() {
	// The embedded server has no leafnode listener: any leaf connection it has is its link to the hub.
	lz, err := u.ns.Leafz(nil)
	connected, hub := false, ""
	if err == nil && len(lz.Leafs) > 0 {
		connected, hub = true, lz.Leafs[0].Name
	}
	u.mu.Lock()
	changed := connected != u.state.Connected
	if changed {
		u.state.Connected, u.state.Since = connected, time.Now()
		if connected {
			u.state.Connects++
		} else {
			u.state.Disconnects++
		}
	}
	u.state.Hub = hub
	st := u.state
	u.mu.Unlock()
	switch {
	case changed && connected:
		u.log.Info().Str("hub_server", hub).Uint64("connects", st.Connects).Msg("uplink connected: the hub sources what it has not got yet")
	case changed:
		u.log.Warn().Uint64("behind", st.Behind).Msg("uplink down: the gateway works on; " + StreamName + " keeps the data until the hub is back")
	}
}

// checkProgress reads the hub's source consumers on IOT_DATA from the embedded server (Jsz: a local call, no
// request; they are "direct" consumers, which the JetStream API's consumer list leaves out): how far the hub has
// got, and whether the stream's limits discarded anything it had not got yet.
func (u *uplink) checkProgress() {
	jsz, err := u.ns.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true, DirectConsumer: true, Config: true})
	if err != nil {
		return
	}
	var stream *server.StreamDetail
	for _, acc := range jsz.AccountDetails {
		for i := range acc.Streams {
			if acc.Streams[i].Name == StreamName {
				stream = &acc.Streams[i]
			}
		}
	}
	if stream == nil {
		return
	}
	// One hub stream may have two consumers for a while: the one of before an outage lingers until its
	// inactivity threshold while the new one delivers. The newest speaks for its hub stream; the hub as a whole
	// has got what its furthest-behind stream has.
	type progress struct {
		created time.Time
		got     uint64
		skipped [2]uint64 // a range the consumer skipped at its start: gone before it could deliver it
	}
	byHub := map[string]progress{}
	for _, ci := range stream.DirectConsumer {
		if ci == nil || ci.Config == nil {
			continue
		}
		hub, ok := ci.Config.Metadata[sourceMetaStream]
		if !ok {
			continue
		}
		hub += "@" + ci.Config.Metadata[sourceMetaDomain]
		p := progress{created: ci.Created, got: ci.Delivered.Stream}
		if ci.Config.DeliverPolicy == server.DeliverByStartSequence && ci.Config.OptStartSeq > 0 {
			// The hub makes its consumer to start at its last sequence + 1: that is what it has got, even
			// before a message is delivered. The consumer delivers IOT_DATA (no filter, no redelivery) in one
			// run ending at Delivered.Stream, Delivered.Consumer messages long: whatever lay between the start
			// asked for and that run's first message was gone before the hub could have it.
			resume := ci.Config.OptStartSeq
			p.got = max(p.got, resume-1)
			if n := ci.Delivered.Consumer; n > 0 && ci.Delivered.Stream >= n {
				if first := ci.Delivered.Stream - n + 1; first > resume {
					p.skipped = [2]uint64{resume, first - 1}
				}
			}
		}
		if prev, seen := byHub[hub]; !seen || p.created.After(prev.created) {
			byHub[hub] = p
		}
	}
	var hubs []string
	var least uint64
	var skipped [][2]uint64
	seen := 0
	for hub, p := range byHub {
		if seen++; seen == 1 || p.got < least {
			least = p.got
		}
		// The metadata comes from the hub: what is shown of it is bounded; every hub stream counts.
		if name, _, _ := strings.Cut(hub, "@"); len(hubs) < maxHubStreams {
			hubs = append(hubs, truncate(name, maxHubName))
		}
		if p.skipped[1] > 0 {
			skipped = append(skipped, p.skipped)
		}
	}
	slices.Sort(hubs)
	found := len(byHub) > 0
	first, last := stream.State.FirstSeq, stream.State.LastSeq
	u.mu.Lock()
	if found {
		u.state.HubStreams = hubs
		u.state.Delivered = least
		u.state.Known = true
	}
	var report *UplinkDiscarded
	if u.state.Known {
		u.state.Behind = 0
		if last > u.state.Delivered {
			u.state.Behind = last - u.state.Delivered
		}
		// The stream now starts at first: whatever lies between what the hub has got and first is gone for it;
		// and so is what a hub's new consumer skipped at its start. Each sequence is counted once.
		missing := skipped
		if first > u.state.Delivered+1 {
			missing = append(missing, [2]uint64{u.state.Delivered + 1, first - 1})
		}
		var n, lo, hi uint64
		for _, m := range missing {
			if added := u.counted.add(m[0], m[1]); added > 0 {
				n += added
				if lo == 0 || m[0] < lo {
					lo = m[0]
				}
				hi = max(hi, m[1])
			}
		}
		if n > 0 {
			u.state.Discarded += n
			report = &UplinkDiscarded{Gateway: u.gw, Stream: StreamName, FromSeq: lo, ToSeq: hi, Count: n,
				Total: u.state.Discarded, Timestamp: time.Now().UnixNano()}
		}
	}
	u.mu.Unlock()
	if report != nil {
		u.log.Error().Uint64("count", report.Count).Uint64("from_seq", report.FromSeq).Uint64("to_seq", report.ToSeq).
			Uint64("total", report.Total).Msg("uplink: " + StreamName + "'s limits discarded messages the hub had not got; they are lost for the hub")
		if data, err := json.Marshal(report); err == nil {
			if err := u.nc.Publish(SubjectUplinkDiscarded+"."+u.gw, data); err != nil {
				u.log.Warn().Err(err).Msg("cannot publish the uplink discard report")
			}
		}
	}
}

// seqRanges is a set of sequences as sorted, disjoint, non-adjacent ranges. It keeps at most maxSeqRanges; past
// that the lowest go (the stream's first sequence only grows, so they are not asked about again).
type seqRanges [][2]uint64

const maxSeqRanges = 64

// add puts lo..hi into the set and returns how many of its sequences were not in it.
func (r *seqRanges) add(lo, hi uint64) uint64 {
	if hi < lo {
		return 0
	}
	n := hi - lo + 1
	var out seqRanges
	for _, x := range *r {
		if x[1]+1 < lo || x[0] > hi+1 { // apart: kept as it is
			out = append(out, x)
			continue
		}
		if a, b := max(x[0], lo), min(x[1], hi); a <= b { // overlap: already counted
			n -= b - a + 1
		}
		lo, hi = min(lo, x[0]), max(hi, x[1])
	}
	out = append(out, [2]uint64{lo, hi})
	slices.SortFunc(out, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
	if len(out) > maxSeqRanges {
		out = out[len(out)-maxSeqRanges:]
	}
	*r = out
	return n
}

// snapshot is the uplink's state now.
func (u *uplink) snapshot() UplinkState {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.state
	s.HubStreams = append([]string(nil), s.HubStreams...)
	return s
}

// check is the uplink's readiness check: always OK, with the state in its detail.
func (u *uplink) check() Check {
	s := u.snapshot()
	since := s.Since.UTC().Format(time.RFC3339)
	if s.Connected {
		return Check{OK: true, Detail: fmt.Sprintf("hub %s connected since %s; %s", s.Hub, since, s.behindText())}
	}
	what := "hub not connected since " + since
	if s.Connects == 0 {
		what = "hub not reached yet (since " + since + ")"
	}
	return Check{OK: true, Detail: what + "; the gateway works without it and " + StreamName + " keeps the data for it; " + s.behindText()}
}

func (s UplinkState) behindText() string {
	if !s.Known {
		return "no hub stream has sourced " + StreamName + " since the start"
	}
	return fmt.Sprintf("the hub is %d messages behind", s.Behind)
}

// setUplink shows u on the tree's root (nil: none).
func (t *Tree) setUplink(u *uplink) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.uplink = u
}

// Uplink is the uplink's state; ok is false when the gateway has no leafnode block.
func (b *Bus) Uplink() (UplinkState, bool) {
	if b == nil || b.uplink == nil {
		return UplinkState{}, false
	}
	return b.uplink.snapshot(), true
}

var (
	descUplinkConnected   = prometheus.NewDesc("iotgw_uplink_connected", "1 while the embedded server's leaf link to the hub is up.", nil, nil)
	descUplinkSince       = prometheus.NewDesc("iotgw_uplink_state_since_seconds", "Unix time the uplink entered its current state (connected or not).", nil, nil)
	descUplinkConnects    = prometheus.NewDesc("iotgw_uplink_connects_total", "Times the leaf link to the hub came up.", nil, nil)
	descUplinkDisconnects = prometheus.NewDesc("iotgw_uplink_disconnects_total", "Times the leaf link to the hub went down.", nil, nil)
	descUplinkBehind      = prometheus.NewDesc("iotgw_uplink_behind_messages", "IOT_DATA messages the hub's sourcing stream has not got yet (once known).", nil, nil)
	descUplinkDiscarded   = prometheus.NewDesc("iotgw_uplink_discarded_total", "IOT_DATA messages the stream's limits discarded before the hub got them.", nil, nil)
)

// uplinkCollector reads the uplink's state at scrape time; it reports nothing without a leafnode block.
type uplinkCollector struct{ rt *Runtime }

var _ prometheus.Collector = uplinkCollector{}

func (c uplinkCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUplinkConnected, descUplinkSince, descUplinkConnects, descUplinkDisconnects, descUplinkBehind, descUplinkDiscarded} {
		ch <- d
	}
}

func (c uplinkCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.rt.bus.Uplink()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(descUplinkConnected, prometheus.GaugeValue, boolFloat(s.Connected))
	ch <- prometheus.MustNewConstMetric(descUplinkSince, prometheus.GaugeValue, float64(s.Since.UnixNano())/1e9)
	ch <- prometheus.MustNewConstMetric(descUplinkConnects, prometheus.CounterValue, float64(s.Connects))
	ch <- prometheus.MustNewConstMetric(descUplinkDisconnects, prometheus.CounterValue, float64(s.Disconnects))
	if s.Known {
		ch <- prometheus.MustNewConstMetric(descUplinkBehind, prometheus.GaugeValue, float64(s.Behind))
	}
	ch <- prometheus.MustNewConstMetric(descUplinkDiscarded, prometheus.CounterValue, float64(s.Discarded))
}
