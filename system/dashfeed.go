package system

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/iotgw/iotgw/actors/rule"
	"github.com/iotgw/iotgw/system/dashboard"
)

// The dashboard (system/dashboard) reads each view once and is then pushed from the bus through /ws. Device
// values are on iot.processed.batch.> and alerts on iot.alerts.> already; the live tree and the sinks' figures
// were only answers to control requests, which non-admin users may not make. The feed publishes them:
//
//   - iot.metrics.tree.{gateway}: every actor (TreeFeed) when the tree changes (a state, a restart, an error, a
//     fault), at most every feedMinGap, and every feedPeriod for the figures that move without a change of
//     state (mailbox depth, rule figures);
//   - iot.metrics.sinks.{gateway}: the sinks as iot.control.sinks.list shows them (state, lag), at the same times;
//     the lag is asked of JetStream (a consumer info request per durable inbox) every feedPeriod only: at every
//     change it would be a JetStream API request each 250 ms while a sink restarts in a loop (an outage), which
//     slowed the sink's own consumer enough to change what actors/sink/mqtt's TestBrokerOutage saw; between
//     periods a change carries the sink's state with the lag of the last period.
//
// Both lie within iot.metrics.>, which every user may read (as iot.metrics.health, which already names failed
// actors and their errors); the devices' definitions stay behind iot.control.
const (
	SubjectMetricsTree  = "iot.metrics.tree"
	SubjectMetricsSinks = "iot.metrics.sinks"
	feedMinGap          = 250 * time.Millisecond
	feedPeriod          = 2 * time.Second
)

// TreeFeed is the body of iot.metrics.tree.{gateway}: the tree flattened, parents before their children.
//
// A tree larger than the connection's max_payload (1 MB on a default nats-server, which a gateway in client mode
// reaches at some 7,000 actors; the embedded server allows 8 MB) goes out in parts: messages with the same
// timestamp, Part 1 to Parts, each holding the next run of actors in order. A reader joins them when all parts of
// one timestamp are in and drops an incomplete set when a newer timestamp begins (the dashboard does both).
type TreeFeed struct {
	Gateway   string      `json:"gateway"`
	Timestamp int64       `json:"timestamp"`
	Part      int         `json:"part,omitempty"`  // 1-based, when the tree is in parts
	Parts     int         `json:"parts,omitempty"` // how many, when more than one
	Actors    []FeedActor `json:"actors"`
}

// FeedActor is one actor of TreeFeed: Node without its subjects and with only the mailbox's depth and capacity,
// so a tree of thousands of devices stays well under NATS's payload limit.
type FeedActor struct {
	Path        string      `json:"path"`
	Kind        string      `json:"kind"`
	State       string      `json:"state"`
	Restarts    int         `json:"restarts"`
	LastError   string      `json:"last_error,omitempty"`
	LastErrorAt *time.Time  `json:"last_error_at,omitempty"`
	Since       *time.Time  `json:"since,omitempty"`
	Depth       int         `json:"depth"`
	Capacity    int         `json:"capacity,omitempty"`
	Faults      []string    `json:"faults,omitempty"`
	Rule        *rule.Stats `json:"rule,omitempty"`
}

func (r *Runtime) treeFeed() TreeFeed {
	nodes := flatten(r.withRuleFigures(r.tree.Snapshot()), nil)
	out := TreeFeed{Gateway: r.cfg.Gateway.ID, Timestamp: time.Now().UnixNano(), Actors: make([]FeedActor, 0, len(nodes))}
	for _, n := range nodes {
		a := FeedActor{Path: n.Path, Kind: n.Kind, State: n.State, Restarts: n.Restarts, LastError: n.LastError,
			LastErrorAt: n.LastErrorAt, Since: n.Since, Faults: n.Faults, Rule: n.Rule}
		if n.Mailbox != nil {
			a.Depth, a.Capacity = n.Mailbox.Depth, n.Mailbox.Capacity
		}
		out.Actors = append(out.Actors, a)
	}
	return out
}

// feedLoop publishes the feed until stop is closed: at once when the tree changes after a quiet spell, then at
// most every feedMinGap while changes keep coming (a change during the gap is sent right after it), and every
// feedPeriod without changes.
func (m *monitor) feedLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	gw := m.rt.cfg.Gateway.ID
	period := time.NewTicker(feedPeriod)
	defer period.Stop()
	gap := time.NewTimer(0)
	defer gap.Stop()
	live := true               // the sinks' lag is asked of JetStream at the period only, not at every change
	lag := map[string]uint64{} // and kept from the last period for the changes in between
	for {
		m.sendTree(SubjectMetricsTree+"."+gw, m.rt.treeFeed())
		sinks := m.rt.sinkInfos(live)
		for i := range sinks {
			if live {
				lag[sinks[i].Name] = sinks[i].Pending
			} else if sinks[i].Pending == 0 {
				sinks[i].Pending = lag[sinks[i].Name]
			}
		}
		m.send(SubjectMetricsSinks+"."+gw, ControlReply{OK: true, Sinks: sinks})
		gap.Reset(feedMinGap)
		select {
		case <-stop:
			return
		case <-gap.C:
		}
		select {
		case <-stop:
			return
		case <-period.C:
			live = true
		case <-m.rt.tree.changed:
			live = false
		}
	}
}

// sendTree publishes the tree feed, in parts when one message would exceed the connection's max_payload (or
// WithFeedPartBytes).
func (m *monitor) sendTree(subject string, f TreeFeed) {
	limit := m.rt.feedPartBytes
	if limit <= 0 {
		limit = int(m.rt.bus.Conn.MaxPayload())
	}
	if limit <= 0 {
		limit = 1 << 20 // not connected yet: nats-server's default
	}
	parts, err := treeParts(f, limit)
	if err != nil {
		m.log.Error().Err(err).Str("subject", subject).Msg("cannot encode report")
		return
	}
	for _, p := range parts {
		if err := m.rt.bus.Conn.Publish(subject, p); err != nil {
			m.log.Warn().Err(err).Str("subject", subject).Int("bytes", len(p)).Msg("cannot publish report")
			return
		}
	}
}

// treeParts encodes f as one message when it fits in limit bytes, otherwise as parts that each fit: the same
// gateway and timestamp, Part and Parts set, and the actors in order, as many per part as fit. A part holds at
// least one actor, so a single actor larger than limit goes alone (and its publish fails, logged, as before).
func treeParts(f TreeFeed, limit int) ([][]byte, error) {
	whole, err := json.Marshal(f)
	if err != nil || len(whole) <= limit {
		return [][]byte{whole}, err
	}
	enc := make([][]byte, len(f.Actors))
	for i := range f.Actors {
		if enc[i], err = json.Marshal(&f.Actors[i]); err != nil {
			return nil, err
		}
	}
	// The header of a part with the largest part numbers it could carry, ending in "actors":[]}: each part is
	// that header without its last two bytes, the actors joined by commas, and "]}".
	head := func(part, parts int) ([]byte, error) {
		return json.Marshal(TreeFeed{Gateway: f.Gateway, Timestamp: f.Timestamp, Part: part, Parts: parts, Actors: []FeedActor{}})
	}
	widest, err := head(len(enc), len(enc))
	if err != nil {
		return nil, err
	}
	var groups [][2]int // [from, to) into enc
	for from := 0; from < len(enc); {
		size, to := len(widest), from
		for to < len(enc) && (to == from || size+len(enc[to])+1 <= limit) {
			size += len(enc[to]) + 1
			to++
		}
		groups = append(groups, [2]int{from, to})
		from = to
	}
	out := make([][]byte, 0, len(groups))
	for i, g := range groups {
		h, err := head(i+1, len(groups))
		if err != nil {
			return nil, err
		}
		b := append([]byte(nil), h[:len(h)-2]...)
		for j := g[0]; j < g[1]; j++ {
			if j > g[0] {
				b = append(b, ',')
			}
			b = append(b, enc[j]...)
		}
		out = append(out, append(b, "]}"...))
	}
	return out, nil
}

// dashboard builds the page's handler from the config: the NATS users with a password may sign in, the http
// token signs in as an admin, and the API asks the control plane over the gateway's own connection.
func (m *monitor) dashboard() *dashboard.Dashboard {
	cfg := m.rt.cfg
	var users []dashboard.User
	for _, u := range cfg.NATS.Users {
		if u.Password != "" {
			users = append(users, dashboard.User{Name: u.Name, Password: u.Password, Admin: u.Admin})
		}
	}
	return dashboard.New(dashboard.Options{
		Gateway: cfg.Gateway.ID, Version: Version, Faults: cfg.Faults.Enabled, Users: users, Token: cfg.HTTP.Token,
		Secure: cfg.HTTP.TLS != nil,
		Request: func(ctx context.Context, subject string, body []byte) ([]byte, error) {
			if m.rt.bus == nil || m.rt.bus.Conn == nil {
				return nil, fmt.Errorf("the bus is not connected")
			}
			msg, err := m.rt.bus.Conn.RequestWithContext(ctx, subject, body)
			if err != nil {
				return nil, fmt.Errorf("request %s: %w", subject, err)
			}
			return msg.Data, nil
		},
		Index: func(w io.Writer) {
			fmt.Fprintf(w, "iotgw %s (gateway %s)\n/ (the dashboard, in a browser)\n/healthz\n/readyz\n/metrics\nPOST %s{device}\n/ws?subject=iot.alerts.>\n", Version, cfg.Gateway.ID, PushPathPrefix)
		},
	})
}
