// Package http is the HTTP device driver: a device the gateway polls — GET or POST a URL every interval and map
// the JSON it answers to points (actors/device/payload, as MQTT's messages) — or one that pushes its points to
// the gateway's /api/v1/points/{device} (the handler is the runtime's, system/push.go; this actor is the
// device's place in the tree and, with stale_after, watches its pushed keys go stale).
package http

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdhttp "net/http"
	"net/url"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/actors/device"
	"github.com/iotgw/iotgw/actors/device/payload"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
)

func init() {
	actors.RegisterDevice("http", actors.DeviceKind{Settings: NewSettings, New: New})
}

// httpDevice polls one URL (mode poll) or watches one push device's keys (mode push).
//
// Polling: one worker requests the URL every interval, sequentially (a slow server delays the next poll instead
// of piling requests up: Telegraf's http input does the same), and hands each result to the actor, which maps
// it and publishes one batch on iot.raw.http.{device}. A poll that fails — refused, timed out, a status that is
// not 2xx, a body larger than max_body, a body that does not map — gives an event on iot.errors.http.{device}
// naming the URL and why, and publishes the keys the device has delivered before with quality bad (stale=true
// once they have had no good value for stale_after), as Modbus does for a register it cannot read. A server that
// cannot be reached shows the device disconnected; the next good poll shows it connected.
type httpDevice struct {
	id  string
	cfg *Settings
	env actors.Env

	workers actors.Workers
	mapper  *payload.Mapper
	raw     *nats.Msg
	errSubj string
	tags    []isp.Tag
	keys    device.Keys
	out     []isp.Point
	link    string
	staleT  *actors.Tick
	dec     isp.Decoder
	pushed  []isp.Point
	polls   uint64
	faults  actors.Faults
}

var (
	_ actors.Listener    = (*httpDevice)(nil)
	_ actors.FaultTarget = (*httpDevice)(nil)
)

// errInjected fails a poll on an injected error fault.
var errInjected = errors.New("fault injected")

// InjectFault: error fails the polls (an event, the keys bad), bad_quality publishes the points with quality 0.
func (d *httpDevice) InjectFault(_ actor.Context, f *actors.Fault) error {
	if d.cfg.Mode != ModePoll || (f.Kind != actors.FaultError && f.Kind != actors.FaultBadQuality) {
		return actors.ErrFaultUnsupported
	}
	d.faults.Add(f)
	return nil
}

// ClearFault ends a fault.
func (d *httpDevice) ClearFault(_ actor.Context, id string) { d.faults.Remove(id) }

// New returns the producer of an http device's actor.
func New(dev config.Device, env actors.Env) actor.Producer {
	cfg := dev.Settings.(*Settings)
	return func() actor.Actor { return &httpDevice{id: dev.ID, cfg: cfg, env: env} }
}

// Inboxes: a push device with stale_after reads what is pushed to it, to know which keys go quiet.
func (d *httpDevice) Inboxes() []actors.Inbox {
	if d.cfg.Mode != ModePush || d.cfg.StaleAfter <= 0 {
		return nil
	}
	return []actors.Inbox{{Subject: RawSubject(d.id)}}
}

// RawSubject is where an http device's batches go: iot.raw.http.{device}.
func RawSubject(id string) string { return "iot.raw.http." + id }

func (d *httpDevice) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		d.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		d.workers.Stop()
	case *pollResult:
		d.result(m)
	case *nats.Msg:
		d.sawPush(m)
	case *actors.Tick:
		m.Ack()
		if m == d.staleT {
			d.checkPushStale(time.Now())
		}
	}
}

func (d *httpDevice) start(ctx actor.Context) {
	d.raw = &nats.Msg{Subject: RawSubject(d.id), Header: nats.Header{}}
	d.raw.Header.Set(actors.HeaderSource, "http")
	d.raw.Header.Set(actors.HeaderSchema, actors.SchemaVersion)
	d.errSubj = "iot.errors.http." + d.id
	d.tags = isp.MergeTags(d.cfg.Tags, nil, "")
	if d.cfg.Mode == ModePush {
		if d.cfg.StaleAfter > 0 {
			d.staleT = d.workers.Tick(ctx, "stale", max(d.cfg.StaleAfter/4, 10*time.Millisecond))
		}
		return
	}
	m, err := payload.New(d.cfg.Spec())
	if err != nil {
		panic(fmt.Errorf("device %q: %w", d.id, err)) // config validation checks the same
	}
	d.mapper = m
	client, err := newClient(d.cfg)
	if err != nil {
		panic(fmt.Errorf("device %q: %w", d.id, err)) // a CA file that went away since validation: a restart may find it
	}
	pctx, cancel := context.WithCancel(context.Background())
	d.workers.OnStop(cancel) // a request in flight gives up at stop
	d.workers.OnStop(client.CloseIdleConnections)
	cfg := d.cfg
	d.workers.Go(ctx, "poll", func(done <-chan struct{}, send func(any)) error {
		tk := time.NewTicker(cfg.Interval)
		defer tk.Stop()
		for {
			send(fetch(pctx, client, cfg))
			select {
			case <-done:
				return nil
			case <-tk.C:
			}
		}
	})
}

// newClient is the device's HTTP client: its own transport (its CA, its idle connections closed at stop).
func newClient(cfg *Settings) (*stdhttp.Client, error) {
	tr := stdhttp.DefaultTransport.(*stdhttp.Transport).Clone()
	tr.MaxIdleConnsPerHost = 1
	tr.ResponseHeaderTimeout = cfg.Timeout
	if cfg.TLS != nil {
		u, _ := url.Parse(cfg.URL)
		tc, err := cfg.TLS.ClientConfig(u.Hostname())
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	}
	return &stdhttp.Client{Transport: tr, Timeout: cfg.Timeout}, nil
}

// fetch performs one poll. It runs on the poll worker and reads only the settings.
func fetch(ctx context.Context, client *stdhttp.Client, cfg *Settings) *pollResult {
	res := &pollResult{started: time.Now()}
	defer func() { res.took = time.Since(res.started) }()
	rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var body io.Reader
	if cfg.Body != "" {
		body = strings.NewReader(cfg.Body)
	}
	req, err := stdhttp.NewRequestWithContext(rctx, cfg.Method, cfg.URL, body)
	if err != nil {
		res.kind, res.err = "http", err
		return res
	}
	req.Header.Set("Accept", "application/json, text/plain;q=0.9")
	if cfg.Body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range cfg.Headers {
		req.Header.Set(k, v)
	}
	switch {
	case cfg.Username != "":
		req.SetBasicAuth(cfg.Username, cfg.Password)
	case cfg.BearerToken != "":
		req.Header.Set("Authorization", "Bearer "+cfg.BearerToken)
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redact(ue.URL) // the query may hold an API key: not in events and logs
		}
		res.kind, res.err = "http", err
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			res.kind, res.err = "timeout", fmt.Errorf("no answer within %s: %w", cfg.Timeout, err)
		}
		return res
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, cfg.MaxBody+1))
	switch {
	case int64(len(data)) > cfg.MaxBody:
		res.kind, res.err = "too_large", fmt.Errorf("response larger than max_body (%d bytes)", cfg.MaxBody)
		return res
	case err != nil:
		res.kind, res.err = "http", fmt.Errorf("read the response: %w", err)
		return res
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		res.kind, res.err = "status", fmt.Errorf("HTTP %s: %s", resp.Status, excerpt(data))
		return res
	}
	res.body = data
	return res
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// excerpt is the start of a body for an error message.
func excerpt(b []byte) string {
	const max = 120
	s := strings.ToValidUTF8(string(b[:min(len(b), max)]), "\uFFFD")
	if len(b) > max {
		s += fmt.Sprintf("… (%d bytes)", len(b))
	}
	return fmt.Sprintf("%q", s)
}

func (d *httpDevice) event(ev device.Event) {
	ev.Device, ev.URL = d.id, redact(d.cfg.URL)
	device.PublishEvent(d.env.Bus, d.env.Log, d.errSubj, ev)
}

// redact drops a URL's query from events: it may hold an API key.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	return u.String()
}

func (d *httpDevice) setLink(state, detail string) {
	if d.link == state {
		return
	}
	d.link = state
	d.env.Link(state, detail)
}

func (d *httpDevice) result(r *pollResult) {
	d.polls++
	now := r.started
	if f := d.faults.Hit(actors.FaultError); f != nil && r.err == nil {
		r.kind, r.err = "injected", fmt.Errorf("%w: %s (error)", errInjected, f.ID)
	}
	if r.err != nil {
		if r.kind == "http" || r.kind == "timeout" {
			d.setLink(actors.LinkDisconnected, r.err.Error())
		} else {
			d.setLink(actors.LinkConnected, "")
		}
		d.event(device.Event{Kind: r.kind, Error: r.err.Error()})
		d.failed(now, nil)
		return
	}
	d.setLink(actors.LinkConnected, "")
	pts, err := d.mapper.Map(d.out[:0], r.body, "", now)
	d.out = pts[:0]
	bad := d.faults.Hit(actors.FaultBadQuality) != nil
	for i := range pts {
		pts[i].DeviceID, pts[i].Tags, pts[i].Source = d.id, d.tags, "http"
		if bad {
			pts[i].Quality = isp.QualityBad
			continue
		}
		d.keys.Good(device.PointID{Device: d.id, Key: pts[i].Key}, now)
	}
	if err != nil {
		d.event(device.Event{Kind: "payload", Error: err.Error()})
		pts = d.failed(now, pts) // the keys it did not deliver this time are bad
	}
	d.publish(pts)
}

// failed appends, to the points of a poll, the device's known keys it lacks, with quality bad and, once they are
// stale (no good value for stale_after), the stale tag; a key that becomes stale gives one stale event. With pts
// nil (the whole poll failed) it publishes them itself.
func (d *httpDevice) failed(now time.Time, pts []isp.Point) []isp.Point {
	own := pts == nil
	have := make(map[string]bool, len(pts))
	for _, p := range pts {
		have[p.Key] = true
	}
	after := actors.StaleAfter(d.cfg.StaleAfter, d.cfg.Interval)
	var newly []string
	for _, id := range d.keys.Stale(now, after) {
		newly = append(newly, id.Key)
	}
	for _, id := range d.keys.Tracked() {
		if have[id.Key] {
			continue
		}
		p := isp.Point{DeviceID: d.id, Key: id.Key, Value: isp.Null(), Quality: isp.QualityBad, Timestamp: now.UnixNano(),
			Tags: d.tags, Source: "http"}
		if d.keys.IsStale(id, now, after) {
			p.Tags = actors.MarkStale(d.tags)
		}
		pts = append(pts, p)
	}
	if len(newly) > 0 {
		d.event(device.Event{Kind: "stale", Keys: newly, Error: fmt.Sprintf("no good value for %s", after)})
	}
	if own {
		d.publish(pts)
		return nil
	}
	return pts
}

func (d *httpDevice) publish(pts []isp.Point) {
	if len(pts) == 0 {
		return
	}
	d.env.Metrics.PointsOut("devices/"+d.id, len(pts))
	d.raw.Data = isp.AppendBatch(d.raw.Data[:0], pts)
	actors.SetHeader(d.raw.Header, actors.HeaderTraceID, actors.NewTraceID()) // a poll is where this batch is born
	if err := d.env.Bus.PublishMsg(d.raw); err != nil {
		d.env.Log.Warn().Err(err).Str("subject", d.raw.Subject).Msg("cannot publish http poll")
	}
}

// sawPush records the good keys of a batch pushed to the device (its own inbox, push mode with stale_after).
func (d *httpDevice) sawPush(m *nats.Msg) {
	pts, err := d.dec.DecodeBatch(m.Data, d.pushed[:0])
	d.pushed = pts[:0]
	if err != nil {
		return // the push handler only publishes what it decoded: nothing to learn from anything else
	}
	now := time.Now()
	for _, p := range pts {
		if p.Quality == isp.QualityGood {
			d.keys.Good(device.PointID{Device: d.id, Key: p.Key}, now)
		}
	}
}

// checkPushStale publishes the pushed keys that have gone quiet for stale_after with quality bad and the stale
// tag, and one stale event naming them.
func (d *httpDevice) checkPushStale(now time.Time) {
	became := d.keys.Stale(now, d.cfg.StaleAfter)
	if len(became) == 0 {
		return
	}
	pts := make([]isp.Point, 0, len(became))
	keys := make([]string, 0, len(became))
	for _, id := range became {
		pts = append(pts, isp.Point{DeviceID: d.id, Key: id.Key, Value: isp.Null(), Quality: isp.QualityBad,
			Timestamp: now.UnixNano(), Tags: actors.MarkStale(d.tags), Source: "http"})
		keys = append(keys, id.Key)
	}
	d.publish(pts)
	d.event(device.Event{Kind: "stale", Keys: keys, Error: fmt.Sprintf("nothing pushed for %s", d.cfg.StaleAfter)})
}
