package rule

import (
	"context"
	"encoding/json"
	"fmt"
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
	path    string
	eng     *Engine
	dec     isp.Decoder
	points  []isp.Point
	workers actors.Workers
	ticker  *actors.Tick
	changes chan AlertChange
	out     *msgOutput
	figures *Figures
}

var _ actors.Listener = (*ruleActor)(nil)

// New returns the producer of a rule's actor. store may be nil (alert state then lives as long as the actor);
// figures, when not nil, receives the rule's Stats after every batch and tick. The figures of an incarnation
// start where the previous one's ended, so a restart does not reset the counters.
func New(r config.Rule, env actors.Env, store AlertStore, figures *Figures) actor.Producer {
	return func() actor.Actor {
		return &ruleActor{cfg: r, env: env, store: store, path: "rules/" + r.Name, figures: figures}
	}
}

func (a *ruleActor) Inboxes() []actors.Inbox {
	return []actors.Inbox{{Subject: config.RuleInput(&a.cfg), Queue: a.cfg.Queue}}
}

// msgOutput publishes an engine's messages with the schema header and the trace id of the batch they came from.
type msgOutput struct {
	bus   actors.Publisher
	msg   *nats.Msg
	trace string
}

func (o *msgOutput) Publish(subject string, data []byte) error {
	o.msg.Subject, o.msg.Data = subject, data
	actors.SetHeader(o.msg.Header, actors.HeaderTraceID, o.trace)
	return o.bus.PublishMsg(o.msg)
}

func (a *ruleActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		a.workers.Stop()
	case *nats.Msg:
		a.batch(msg)
	case *actors.Tick:
		msg.Ack()
		if msg == a.ticker {
			a.eng.Tick(time.Now())
			a.figures.set(a.eng.Stats())
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
	a.out = &msgOutput{bus: a.env.Bus, msg: m}
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
	if a.cfg.Type == config.RuleAlert || a.cfg.Type == config.RuleAggregate {
		a.ticker = a.workers.Tick(ctx, "clock", TickInterval)
	}
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
	var err error
	a.points, err = a.dec.DecodeBatch(msg.Data, a.points[:0])
	if err != nil {
		a.env.Metrics.Error(a.path, "decode")
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
		return
	}
	a.out.trace = msg.Header.Get(actors.HeaderTraceID)
	before := a.eng.stats
	a.eng.Process(a.points, time.Now())
	a.env.Metrics.PointsIn(a.path, len(a.points))
	if n := int(a.eng.stats.Out - before.Out); n > 0 {
		a.env.Metrics.PointsOut(a.path, n)
	}
	if n := a.eng.stats.Errors - before.Errors; n > 0 {
		for range n {
			a.env.Metrics.Error(a.path, "expression")
		}
	}
	a.figures.set(a.eng.Stats())
}
