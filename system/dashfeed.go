package system

import (
	"context"
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
type TreeFeed struct {
	Gateway   string      `json:"gateway"`
	Timestamp int64       `json:"timestamp"`
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
		m.send(SubjectMetricsTree+"."+gw, m.rt.treeFeed())
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
