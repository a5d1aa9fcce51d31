package rule

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// AlertStore keeps alert state across restarts (the runtime's is the JetStream KV bucket IOTGW_ALERTS; without
// JetStream, none). Put and Delete are called from the actor's store worker, Load from its Started.
type AlertStore interface {
	// Load returns the stored alerts of a rule.
	Load(ctx context.Context, rule string) ([]Alert, error)
	Put(ctx context.Context, a *Alert) error
	Delete(ctx context.Context, a *Alert) error
}

// HeaderGateway names the gateway whose rule made a message: with several gateways sharing a rule, which one
// took the batch.
const HeaderGateway = "Iot-Gateway"

// TickInterval is how often a rule with time in it (alert, aggregate) looks at the clock: the precision of `for`,
// no_data, repeat and of windows closing without new points.
const TickInterval = 100 * time.Millisecond

// storeQueue bounds the alert changes waiting to be stored; past it the actor fails (and restarts from the
// store), since a change that is not stored could fire again after a restart.
const storeQueue = 1024

// ruleActor runs one rule: it reads batches from its input subject (the processed batches, or the output of the
// rule it chains from) in its queue group, and hands them to its Engine.
type ruleActor struct {
	cfg     config.Rule
	env     actors.Env
	store   AlertStore
	windows WindowStore // aggregate rules partitioned by device: where open windows are handed on (handover.go)
	path    string
	eng     *Engine
	dec     isp.Decoder
	points  []isp.Point
	workers actors.Workers
	ticker  *actors.Tick
	changes chan AlertChange
	out     *msgOutput
	results *actors.StreamWriter // the acknowledged publishes of its results into the stream
	figures *Figures
	members *membership // partition = "device" only
	joining []*nats.Msg // batches that came while joining (partition.go)
	sentUp  bool
	version uint64 // the membership version the alerts were last taken over at
}

var _ actors.Listener = (*ruleActor)(nil)

// New returns the producer of a rule's actor. store may be nil (alert state then lives as long as the actor), and
// so may windows (an aggregate's open windows are then dropped when its devices move); figures, when not nil,
// receives the rule's Stats after every batch and tick. The figures of an incarnation start where the previous
// one's ended, so a restart does not reset the counters.
func New(r config.Rule, env actors.Env, store AlertStore, windows WindowStore, figures *Figures) actor.Producer {
	return func() actor.Actor {
		ra := &ruleActor{cfg: r, env: env, store: store, path: "rules/" + r.Name, figures: figures}
		ra.results = actors.NewStreamWriter(env, ra.path, SubjectErrorStore, "rule result")
		if r.Type == config.RuleAggregate && r.Partition == config.PartitionDevice {
			ra.windows = windows
		}
		return ra
	}
}

func (a *ruleActor) Inboxes() []actors.Inbox {
	if a.cfg.Partition == config.PartitionDevice {
		// Every gateway reads every batch and keeps the devices it owns (partition.go): no queue group.
		return []actors.Inbox{{Subject: config.RuleInput(&a.cfg)}, {Subject: SubjectMembersPrefix + a.cfg.Name}}
	}
	return []actors.Inbox{{Subject: config.RuleInput(&a.cfg), Queue: a.cfg.Queue}}
}

// msgOutput publishes an engine's messages with the schema header and the trace id of the batch they came from.
// What the gateway's stream keeps (iot.rules.>, Env.InStream) goes through the rule's StreamWriter, acknowledged,
// with a message id made of the batch's trace id, the subject and the output's number within the batch: the same
// batch delivered again after a restart makes the same ids, and the stream keeps each result once.
type msgOutput struct {
	env   *actors.Env
	store *actors.StreamWriter
	msg   *nats.Msg
	trace string
	seq   int // outputs since the trace was set
}

// from sets the trace id of the batch (or "" for the clock) the next outputs come from.
func (o *msgOutput) from(trace string) { o.trace, o.seq = trace, 0 }

func (o *msgOutput) Publish(subject string, data []byte) error {
	o.msg.Subject, o.msg.Data = subject, data
	if o.trace == "" {
		delete(o.msg.Header, actors.HeaderTraceID) // no empty header: the batch had none (a tick's output has none)
	} else {
		actors.SetHeader(o.msg.Header, actors.HeaderTraceID, o.trace)
	}
	if o.store.Acknowledged() && o.env.Stored(subject) {
		o.seq++
		id := o.trace
		if id == "" {
			id = actors.NewTraceID() // born of the clock: no batch to be delivered again
		}
		o.store.Publish(o.msg, id+":"+subject+":"+strconv.Itoa(o.seq))
		return nil
	}
	return o.env.Bus.PublishMsg(o.msg)
}

func (a *ruleActor) Receive(ctx actor.Context) {
	if a.results.Handle(ctx.Message()) {
		return
	}
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		leaving := a.members != nil && a.members.active
		if leaving {
			a.handOn(nil) // every open window, stored before the "leave" the others read them at
		}
		a.workers.Stop() // waits for the alert store worker to drain its queue: those writes come before the "leave" too
		if leaving {
			a.announce("leave") // the others take this gateway's devices, and read their state, from this message on
		}
		a.results.Close("rule " + a.cfg.Name)
	case *nats.Msg:
		if a.members != nil {
			a.partitioned(msg)
			a.takeOver()
			return
		}
		a.batch(msg)
	case *actors.Tick:
		msg.Ack()
		if msg == a.ticker {
			a.out.from("") // what the clock makes (a window closing, a no-data alert) comes from no batch
			now := time.Now()
			a.memberTick(now)
			a.takeOver()
			if a.members == nil || a.members.active { // a joining gateway owns nothing yet
				a.eng.Tick(now)
			}
			a.figures.set(a.stats())
		}
	case *ListAlerts:
		ctx.Respond(&AlertList{Alerts: a.eng.Alerts()})
	case *AckAlert:
		ctx.Respond(&AckReply{Found: a.eng.Ack(msg.Key, msg.By, time.Now())})
		a.figures.set(a.eng.Stats())
	case *GetStats:
		ctx.Respond(&StatsReply{Stats: a.eng.Stats()})
	}
}

func (a *ruleActor) start(ctx actor.Context) {
	m := &nats.Msg{Header: nats.Header{}}
	m.Header.Set(actors.HeaderSchema, actors.SchemaVersion)
	m.Header.Set(actors.HeaderSource, "rule:"+a.cfg.Name)
	m.Header.Set(HeaderGateway, a.env.GatewayID)
	a.results.Start(ctx, &a.workers)
	a.out = &msgOutput{env: &a.env, store: a.results, msg: m}
	a.eng = NewEngine(&a.cfg, a.out)
	a.eng.stats = a.figures.Get()
	a.eng.stats.Alerts, a.eng.stats.Series = 0, 0
	if a.cfg.Type == config.RuleAlert && a.store != nil {
		lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		stored, err := a.store.Load(lctx, a.cfg.Name)
		cancel()
		if err != nil {
			// Starting without them could fire a firing alert again: fail, and let the supervisor retry.
			panic(fmt.Errorf("rule %s: load alert state: %w", a.cfg.Name, err))
		}
		a.eng.Restore(stored)
		a.changes = make(chan AlertChange, storeQueue)
		changes, store, log := a.changes, a.store, a.env.Log
		a.eng.OnAlertChange(func(c AlertChange) {
			select {
			case changes <- c:
			default:
				panic(fmt.Errorf("rule %s: %d alert changes wait to be stored", a.cfg.Name, storeQueue))
			}
		})
		a.workers.Go(ctx, "alert store", func(done <-chan struct{}, _ func(any)) error {
			for {
				select {
				case <-done:
					drain(changes, store, log)
					return nil
				case c := <-changes:
					put(store, c, log)
				}
			}
		})
	}
	if a.cfg.Partition == config.PartitionDevice {
		a.members = newMembership(a.env.GatewayID, a.cfg.Name)
		a.eng.SetOwner(a.members.owns)
		a.members.joinedAt = time.Now()
		a.announce("join")
	}
	if a.cfg.Type == config.RuleAlert || a.cfg.Type == config.RuleAggregate || a.members != nil {
		a.ticker = a.workers.Tick(ctx, "clock", TickInterval)
	}
}

func (a *ruleActor) announce(state string) {
	if err := a.env.Bus.Publish(a.members.subject, a.members.message(state)); err != nil {
		a.env.Log.Warn().Err(err).Str("state", state).Msg("cannot announce rule membership")
	}
	a.members.lastSent = time.Now()
}

// memberTick says "up" once the join has settled, then every memberInterval, and forgets silent members.
func (a *ruleActor) memberTick(now time.Time) {
	m := a.members
	if m == nil {
		return
	}
	switch {
	case !m.active && !a.sentUp && now.Sub(m.joinedAt) >= joinSettle:
		a.announce("up")
		a.sentUp = true
	case m.active && now.Sub(m.lastSent) >= memberInterval:
		a.announce("up")
	}
	m.expire(now)
}

// takeOver hands alerts on when the gateways sharing an alert rule change: the alerts of devices this gateway no
// longer owns are dropped (their new owner reads them), and those of devices it now owns are read from the store.
// With the embedded server each gateway has its own store, so only the dropping happens; with a shared JetStream
// (gateways in client mode on one server or cluster) the state moves with the device. The read is synchronous, on
// purpose: the next batch of a device taken over must find its firing alert in place, or it would fire again.
func (a *ruleActor) takeOver() {
	m := a.members
	if m == nil || m.version == a.version {
		return
	}
	a.version = m.version
	if a.windows != nil && m.active {
		if a.handOn(m.owns) {
			a.announce("handoff")
		}
		a.takeWindows()
	}
	if a.cfg.Type != config.RuleAlert {
		return
	}
	a.eng.DropForeign()
	if a.store == nil || !m.active {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	stored, err := a.store.Load(ctx, a.cfg.Name)
	if err != nil {
		panic(fmt.Errorf("rule %s: take over alert state: %w", a.cfg.Name, err)) // the supervisor retries
	}
	a.eng.Restore(stored)
}

// handOn stores the open windows of the devices for which keep is false (all with nil) and drops them, reporting
// whether there were any. The write is synchronous: the message that tells the others to read it comes after it.
// A failed write loses those windows (logged): the device has moved, and its next owner cannot wait for this one.
func (a *ruleActor) handOn(keep func(string) bool) bool {
	if a.windows == nil {
		return false
	}
	states := a.eng.TakeWindows(keep)
	if len(states) == 0 {
		return false
	}
	for i := range states {
		states[i].Gateway = a.env.GatewayID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.windows.Save(ctx, a.cfg.Name, states); err != nil {
		a.env.Log.Error().Err(err).Int("devices", len(states)).Msg("open windows not handed on: their points are lost from them")
		return false
	}
	a.env.Log.Debug().Int("devices", len(states)).Msg("open windows handed on")
	return true
}

// takeWindows merges the stored windows of the devices this gateway owns into its own. Synchronous, like the
// alerts' takeOver: the points of a device's next batch go into the window it was handed.
func (a *ruleActor) takeWindows() {
	if a.windows == nil || !a.members.active {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	states, err := a.windows.Take(ctx, a.cfg.Name, a.members.owns)
	if err != nil {
		a.env.Log.Error().Err(err).Msg("handed-on windows cannot be read; they stay in the store until the next change")
		return
	}
	if n := a.eng.MergeWindows(states); n > 0 {
		a.env.Log.Debug().Int("devices", n).Msg("open windows taken over")
	}
}

// partitioned handles a message of a rule partitioned by device: membership, or a batch it may own.
func (a *ruleActor) partitioned(msg *nats.Msg) {
	m := a.members
	if msg.Subject == m.subject {
		reply, activated := m.heard(msg.Data, time.Now())
		if reply != "" {
			a.announce(reply)
		}
		if m.handoff {
			m.handoff = false
			a.takeWindows() // another gateway has just stored windows of devices it gave up
		}
		if activated {
			a.takeOver() // the alerts of the devices it owns now, before any batch of theirs
			buffered := a.joining
			a.joining = nil
			if !m.others { // no one else was active: the batches that came while joining are this gateway's
				for _, b := range buffered {
					a.partitioned(b)
				}
			}
		}
		return
	}
	if !m.active {
		if len(a.joining) < maxJoinBuffer {
			a.joining = append(a.joining, msg)
		} else {
			a.eng.stats.Dropped++
		}
		return
	}
	if !m.owns(deviceOf(msg.Subject)) {
		a.eng.stats.NotOwned++
		return
	}
	a.batch(msg)
}

func (a *ruleActor) stats() Stats {
	s := a.eng.Stats()
	if a.members != nil {
		s.Members = len(a.members.ids)
	}
	return s
}

func put(store AlertStore, c AlertChange, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	if c.Deleted {
		err = store.Delete(ctx, c.Alert)
	} else {
		err = store.Put(ctx, c.Alert)
	}
	if err != nil {
		log.Warn().Err(err).Str("alert", c.Alert.Key).Msg("cannot store alert state")
	}
}

// drain stores what is queued when the actor stops, so a stop right after a change does not lose it.
func drain(changes chan AlertChange, store AlertStore, log zerolog.Logger) {
	for {
		select {
		case c := <-changes:
			put(store, c, log)
		default:
			return
		}
	}
}

func (a *ruleActor) batch(msg *nats.Msg) {
	// A batch's subject ends in its device (iot.processed.batch.{device}, iot.rules.{rule}.{device}), as the
	// partitioning reads it: a device the rule cannot match costs no decoding.
	if !a.cfg.Match.MatchesDevice(deviceOf(msg.Subject)) {
		a.eng.stats.Skipped++
		return
	}
	now := time.Now()
	a.out.from(msg.Header.Get(actors.HeaderTraceID))
	before := a.eng.stats
	// A rule that reads no tags runs on the batch's bytes when they are in the encoder's form (raw.go); any
	// other batch is decoded, and one that is not a batch reported, here.
	n, ok := a.eng.ProcessRaw(msg.Data, now)
	if !ok {
		if !a.decode(msg) {
			return
		}
		a.eng.ProcessBatch(a.points, msg.Data, now)
		n = len(a.points)
	}
	a.env.Metrics.PointsIn(a.path, n)
	if n := int(a.eng.stats.Out - before.Out); n > 0 {
		a.env.Metrics.PointsOut(a.path, n)
	}
	if n := a.eng.stats.Errors - before.Errors; n > 0 {
		for range n {
			a.env.Metrics.Error(a.path, "expression")
		}
	}
	a.figures.set(a.stats())
}

// decode decodes a batch into a.points. One that is not a batch is counted, and reported on iot.errors.rules.
func (a *ruleActor) decode(msg *nats.Msg) bool {
	var err error
	a.points, err = a.dec.DecodeBatch(msg.Data, a.points[:0])
	if err == nil {
		return true
	}
	a.env.Metrics.Error(a.path, "decode")
	a.eng.stats.Errors++
	if !a.eng.AllowErrorEvent() {
		return false
	}
	body := msg.Data
	if len(body) > 256 {
		body = body[:256]
	}
	data, _ := json.Marshal(struct {
		Rule    string `json:"rule"`
		Subject string `json:"subject"`
		Error   string `json:"error"`
		Body    string `json:"body"`
	}{a.cfg.Name, msg.Subject, err.Error(), string(body)})
	_ = a.env.Bus.Publish(SubjectErrors, data)
	return false
}
