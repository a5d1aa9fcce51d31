package opcua

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
)

// The session worker owns the device's connection for one incarnation of the actor: it connects, then polls or
// runs the subscription, and reports everything to the actor as messages. When the session is lost, or cannot
// be opened, it returns a peer failure: the supervisor restarts the device after its capped backoff, for ever,
// and shows it disconnected meanwhile; the next incarnation opens a new session and creates its subscription
// afresh.
//
// gopcua's own reconnect (AutoReconnect) is off on purpose. It restores the old session and transfers or
// re-creates the subscription inside the library, and when one step of that fails it gives up for good: in
// Telegraf's opcua_listener a subscription re-created after a restart whose registration failed with
// StatusBadNodeIDUnknown for one node left the input disconnected until Telegraf was restarted
// (influxdata/telegraf#19186). Here every reconnect is a whole new session and subscription built by the same
// code as the first, each monitored item is accepted or refused on its own (a refused node is an event and a bad
// point, the others are monitored), and a failure of any step is one more retry at the backoff, never the end.

// sessionOptions are a connection's settings resolved at the actor's start.
type sessionOptions struct {
	cfg    *config.OPCUADevice
	trust  *trust
	cert   *clientCert
	appURI string
}

// run is the session worker: connect, then serve until done or the session is lost.
func (d *opcuaDevice) run(ctx context.Context, o *sessionOptions, done <-chan struct{}, send func(any)) error {
	states := make(chan opcua.ConnState, 64)
	c, kind, err := connect(ctx, o, states)
	if err != nil {
		select {
		case <-done:
			return nil
		default:
		}
		send(&connectFailed{kind: kind, err: err})
		return actors.PeerFailure(err)
	}
	defer func() {
		// states holds more than a session's transitions, so Close's report of Closed never blocks on it.
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = c.Close(cctx)
	}()
	if o.cfg.Mode == "subscribe" {
		return d.subscribe(ctx, c, o.cfg, states, done, send)
	}
	return d.poll(ctx, c, o.cfg, states, done, send)
}

// connect opens a session: the endpoint that matches the configured policy and mode, its certificate checked,
// then the channel and the session with the configured identity. kind classifies a failure for its event.
func connect(ctx context.Context, o *sessionOptions, states chan opcua.ConnState) (*opcua.Client, string, error) {
	cfg := o.cfg
	dctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	eps, err := opcua.GetEndpoints(dctx, cfg.Endpoint, opcua.DialTimeout(cfg.Timeout))
	if err != nil {
		return nil, "disconnected", fmt.Errorf("get endpoints of %s: %w", cfg.Endpoint, err)
	}
	mode := ua.MessageSecurityModeFromString(cfg.SecurityMode)
	var ep *ua.EndpointDescription
	for _, e := range eps {
		if e.SecurityPolicyURI == cfg.SecurityPolicyURI() && e.SecurityMode == mode {
			ep = e
			break
		}
	}
	if ep == nil {
		var offered []string
		for _, e := range eps {
			offered = append(offered, fmt.Sprintf("%s/%s", policyName(e.SecurityPolicyURI), e.SecurityMode))
		}
		return nil, "security", fmt.Errorf("%s offers no endpoint with security_policy %s and security_mode %s (it offers %v)",
			cfg.Endpoint, cfg.SecurityPolicy, cfg.SecurityMode, offered)
	}
	if cfg.Secure() {
		if err := o.trust.verify(ep.ServerCertificate, time.Now()); err != nil {
			return nil, "certificate", fmt.Errorf("%s: %w", cfg.Endpoint, err)
		}
	}
	tokenType := ua.UserTokenTypeAnonymous
	opts := []opcua.Option{
		opcua.AutoReconnect(false), // see above: a lost session is the supervisor's to retry
		opcua.DialTimeout(cfg.Timeout),
		opcua.RequestTimeout(cfg.Timeout),
		opcua.StateChangedCh(states),
		opcua.ApplicationName("iotgw"),
		opcua.ApplicationURI(o.appURI),
		opcua.ProductURI("urn:iotgw"),
		opcua.SessionName("iotgw"),
		opcua.SecurityPolicy(cfg.SecurityPolicyURI()),
		opcua.SecurityMode(mode),
	}
	if o.cert != nil {
		opts = append(opts, opcua.Certificate(o.cert.der), opcua.PrivateKey(o.cert.key))
	}
	switch cfg.Auth {
	case "username":
		tokenType = ua.UserTokenTypeUserName
		opts = append(opts, opcua.AuthUsername(cfg.Username, cfg.Password))
	case "certificate":
		tokenType = ua.UserTokenTypeCertificate
		opts = append(opts, opcua.AuthCertificate(o.cert.der), opcua.AuthPrivateKey(o.cert.key))
	default:
		opts = append(opts, opcua.AuthAnonymous())
	}
	if !offersToken(ep, tokenType) {
		return nil, "auth", fmt.Errorf("%s does not accept auth %q on this endpoint", cfg.Endpoint, cfg.Auth)
	}
	opts = append(opts, opcua.SecurityFromEndpoint(ep, tokenType))
	c, err := opcua.NewClient(cfg.Endpoint, opts...)
	if err != nil {
		return nil, "security", fmt.Errorf("client for %s: %w", cfg.Endpoint, err)
	}
	cctx, cancel2 := context.WithTimeout(ctx, 2*cfg.Timeout)
	defer cancel2()
	if err := c.Connect(cctx); err != nil {
		closeCtx, cancel3 := context.WithTimeout(context.Background(), time.Second)
		defer cancel3()
		_ = c.Close(closeCtx)
		kind := connectKind(err)
		if kind == "security" && o.cert != nil {
			// Most often the server does not trust the gateway yet: say which certificate to trust there.
			return nil, kind, fmt.Errorf("connect to %s: %w (if the server does not trust the gateway yet, trust its certificate %s, thumbprint %s, on the server)",
				cfg.Endpoint, err, o.cert.file, thumbprint(o.cert.der))
		}
		return nil, kind, fmt.Errorf("connect to %s: %w", cfg.Endpoint, err)
	}
	return c, "", nil
}

func offersToken(ep *ua.EndpointDescription, t ua.UserTokenType) bool {
	for _, tok := range ep.UserIdentityTokens {
		if tok.TokenType == t {
			return true
		}
	}
	return false
}

// connectKind classifies a failed connect: the server refused the identity (auth), the security (security), or
// could not be reached or answered otherwise (disconnected).
func connectKind(err error) string {
	var sc ua.StatusCode
	if errors.As(err, &sc) {
		switch sc {
		case ua.StatusBadUserAccessDenied, ua.StatusBadIdentityTokenInvalid, ua.StatusBadIdentityTokenRejected,
			ua.StatusBadUserSignatureInvalid:
			return "auth"
		case ua.StatusBadSecurityChecksFailed, ua.StatusBadCertificateInvalid, ua.StatusBadCertificateUntrusted,
			ua.StatusBadSecurityPolicyRejected, ua.StatusBadCertificateURIInvalid, ua.StatusBadCertificateUseNotAllowed:
			return "security"
		}
	}
	return "disconnected"
}

func policyName(uri string) string {
	if uri == ua.SecurityPolicyURINone {
		return "None"
	}
	if uri == ua.SecurityPolicyURIBasic256Sha256 {
		return "Basic256Sha256"
	}
	return uri
}

// maxBacklog bounds the reads and notifications sent to the actor and not yet handled by it: past it the worker
// skips polls (poll) or drops notifications (subscribe), counted in overruns and reported as an "overrun" event,
// so a slow actor never makes its mailbox grow without bound.
const maxBacklog = 16

// chunkLimit is how many nodes one Read, or monitored items one CreateMonitoredItems, carries at most: the
// server's own limit (Server.ServerCapabilities.OperationLimits, read once per session; 0 there means none) and
// never more than defaultChunk, so a device with thousands of nodes does not meet BadTooManyOperations or a
// message size limit. Telegraf's opcua input does the same for reads since influxdata/telegraf#19609 (it sent all
// nodes in one request before); monitored items are split here too.
func chunkLimit(ctx context.Context, c *opcua.Client, timeout time.Duration, limitNode uint32) int {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := c.Read(rctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{
		NodeID: ua.NewNumericNodeID(0, limitNode), AttributeID: ua.AttributeIDValue}}})
	if err == nil && len(res.Results) == 1 && res.Results[0] != nil && res.Results[0].Status == ua.StatusOK && res.Results[0].Value != nil {
		if n, ok := integer(res.Results[0].Value.Value()); ok && n > 0 && n < defaultChunk {
			return int(n)
		}
	}
	return defaultChunk
}

// defaultChunk bounds a request's nodes when the server states no lower limit.
const defaultChunk = 1000

// lost says whether a connection state ends the session.
func lost(s opcua.ConnState) bool { return s == opcua.Disconnected || s == opcua.Closed }

// poll reads every node each interval, one Read request for all of them.
func (d *opcuaDevice) poll(ctx context.Context, c *opcua.Client, cfg *config.OPCUADevice, states <-chan opcua.ConnState,
	done <-chan struct{}, send func(any)) error {
	chunk := chunkLimit(ctx, c, cfg.Timeout, id.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead)
	send(&connected{client: c})
	var reqs []*ua.ReadRequest // one per chunk of nodes, in node order
	for i, n := range cfg.Nodes {
		if i%chunk == 0 {
			reqs = append(reqs, &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnBoth})
		}
		req := reqs[len(reqs)-1]
		req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: n.NodeID, AttributeID: ua.AttributeIDValue})
	}
	tk := time.NewTicker(cfg.Interval)
	defer tk.Stop()
	for {
		if d.backlog.Load() >= maxBacklog {
			// The actor has not taken the last reads yet: skip this one rather than queue it (counted).
			d.overruns.Add(1)
			select {
			case <-done:
				return nil
			case <-tk.C:
				continue
			}
		}
		at := time.Now()
		values, err := readAll(ctx, c, reqs, cfg.Timeout)
		answered := err != nil && serverAnswered(err) && c.State() == opcua.Connected
		if stopped(done) {
			return nil
		}
		if err == nil || answered {
			d.backlog.Add(1) // a readResult follows: the actor takes it off
		}
		switch {
		case err == nil && len(values) != len(cfg.Nodes):
			send(&readResult{at: at, err: fmt.Errorf("read: %d results for %d nodes", len(values), len(cfg.Nodes))})
		case err == nil:
			send(&readResult{at: at, values: values})
		case answered:
			send(&readResult{at: at, err: fmt.Errorf("read: %w", err)})
		default:
			send(&sessionLost{err: fmt.Errorf("read: %w", err)})
			return actors.PeerFailure(err)
		}
		select {
		case <-done:
			return nil
		case s := <-states:
			if lost(s) {
				err := fmt.Errorf("connection to %s %s", cfg.Endpoint, s)
				send(&sessionLost{err: err})
				return actors.PeerFailure(err)
			}
		case <-tk.C:
		}
	}
}

// readAll sends the reads of one poll, one after the other, and returns their values in node order.
func readAll(ctx context.Context, c *opcua.Client, reqs []*ua.ReadRequest, timeout time.Duration) ([]*ua.DataValue, error) {
	if len(reqs) == 1 { // the common case: no copy
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		res, err := c.Read(rctx, reqs[0])
		if err != nil {
			return nil, err
		}
		return res.Results, nil
	}
	var values []*ua.DataValue
	for _, req := range reqs {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		res, err := c.Read(rctx, req)
		cancel()
		if err != nil {
			return nil, err
		}
		if len(res.Results) != len(req.NodesToRead) {
			return nil, fmt.Errorf("%d results for %d nodes", len(res.Results), len(req.NodesToRead))
		}
		values = append(values, res.Results...)
	}
	return values, nil
}

// refusedKind is the event kind of a failed subscription set-up: "subscription" when the server answered with a
// refusal (BadTooManySubscriptions, BadTooManyOperations: retried too, but it is no lost link), else "" (lost).
func refusedKind(err error, c *opcua.Client) string {
	if serverAnswered(err) && c.State() == opcua.Connected {
		return "subscription"
	}
	return ""
}

// serverAnswered says whether err is the server's answer (a status code), not a failure to reach it.
func serverAnswered(err error) bool {
	var sc ua.StatusCode
	return errors.As(err, &sc) && sc != ua.StatusBadTimeout && sc != ua.StatusBadConnectionClosed &&
		sc != ua.StatusBadSecureChannelClosed && sc != ua.StatusBadSessionIDInvalid && sc != ua.StatusBadSessionClosed &&
		sc != ua.StatusBadServerNotConnected && sc != ua.StatusBadCommunicationError
}

// subscribe creates the subscription and a monitored item per node, then forwards its notifications.
func (d *opcuaDevice) subscribe(ctx context.Context, c *opcua.Client, cfg *config.OPCUADevice, states <-chan opcua.ConnState,
	done <-chan struct{}, send func(any)) error {
	notes := make(chan *opcua.PublishNotificationData, 64)
	sctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	sub, err := c.Subscribe(sctx, &opcua.SubscriptionParameters{Interval: cfg.Interval}, notes)
	cancel()
	if err != nil {
		err = fmt.Errorf("create subscription: %w", err)
		send(&sessionLost{kind: refusedKind(err, c), err: err})
		return actors.PeerFailure(err)
	}
	items := make([]*ua.MonitoredItemCreateRequest, len(cfg.Nodes))
	for i := range cfg.Nodes {
		n := &cfg.Nodes[i]
		items[i] = opcua.NewMonitoredItemCreateRequestWithDefaults(n.NodeID, ua.AttributeIDValue, uint32(i))
		items[i].RequestedParameters.SamplingInterval = float64(n.SamplingInterval) / float64(time.Millisecond)
		if n.Deadband > 0 {
			kind := uint32(ua.DeadbandTypeAbsolute)
			if n.DeadbandType == "percent" {
				kind = uint32(ua.DeadbandTypePercent)
			}
			items[i].RequestedParameters.Filter = ua.NewExtensionObject(&ua.DataChangeFilter{
				Trigger: ua.DataChangeTriggerStatusValue, DeadbandType: kind, DeadbandValue: n.Deadband,
			})
		}
	}
	chunk := chunkLimit(ctx, c, cfg.Timeout, id.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall)
	for first := 0; first < len(items); first += chunk {
		part := items[first:min(first+chunk, len(items))]
		mctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		res, err := sub.Monitor(mctx, ua.TimestampsToReturnBoth, part...)
		cancel()
		if err == nil && len(res.Results) != len(part) {
			err = fmt.Errorf("%d results for %d items", len(res.Results), len(part))
		}
		if err != nil {
			err = fmt.Errorf("create monitored items: %w", err)
			send(&sessionLost{kind: refusedKind(err, c), err: err})
			return actors.PeerFailure(err)
		}
		// Each item stands on its own: a node the server refuses is reported, the others are monitored.
		for j, r := range res.Results {
			if r.StatusCode != ua.StatusOK {
				send(&itemFailed{node: first + j, status: r.StatusCode})
			}
		}
	}
	send(&connected{client: c, subscription: sub.SubscriptionID})
	for {
		select {
		case <-done:
			return nil
		case s := <-states:
			if lost(s) {
				err := fmt.Errorf("connection to %s %s", cfg.Endpoint, s)
				send(&sessionLost{err: err})
				return actors.PeerFailure(err)
			}
		case n := <-notes:
			if n.Error != nil {
				if serverAnswered(n.Error) && c.State() == opcua.Connected {
					send(&subscriptionError{err: n.Error})
					continue
				}
				err := fmt.Errorf("subscription %d: %w", sub.SubscriptionID, n.Error)
				send(&sessionLost{err: err})
				return actors.PeerFailure(err)
			}
			dc, ok := n.Value.(*ua.DataChangeNotification)
			if !ok {
				continue // events and status changes: the session's state says what matters
			}
			ch := &dataChange{at: time.Now()}
			for _, it := range dc.MonitoredItems {
				if it == nil || int(it.ClientHandle) >= len(cfg.Nodes) {
					continue
				}
				ch.nodes = append(ch.nodes, int(it.ClientHandle))
				ch.values = append(ch.values, it.Value)
			}
			if len(ch.nodes) > 0 {
				if d.backlog.Load() >= maxBacklog {
					d.overruns.Add(1) // the actor lags behind the server: dropped, counted and reported
					continue
				}
				d.backlog.Add(1)
				send(ch)
			}
		}
	}
}

func stopped(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}
