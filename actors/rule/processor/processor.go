// Package processor is the rule stage's built-in first step, between the devices and the rules: it takes what
// devices and sidecars publish raw, validates it, and republishes it as processed data.
package processor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
)

// Subjects of the processing stage.
const (
	SubjectRaw = "iot.raw.>"
	// QueueGroup lets several gateways on one NATS cluster share the processing.
	QueueGroup          = "iotgw.processor"
	SubjectBatchPrefix  = "iot.processed.batch."
	SubjectPointPrefix  = "iot.processed."
	SubjectErrorInvalid = "iot.errors.processor.invalid"
	SubjectErrorDecode  = "iot.errors.processor.decode"
	// SubjectErrorStore reports a batch the stream did not store (refused, or not acknowledged within the
	// duplicate window however often it was retried): StoreEvent.
	SubjectErrorStore = "iot.errors.processor.store"
)

// maxErrorBody is how much of an undecodable message goes into its error event.
const maxErrorBody = 256

// processor validates raw points and republishes them: each raw message (a batch {"points":[…]} or a bare point)
// on iot.raw.{protocol}.{device} becomes one batch per device on iot.processed.batch.{device} and, when enabled,
// one message per point on iot.processed.{device}.{key}.
//
// A point is stamped (timestamp now when 0, source = protocol when empty, device = the subject's when empty) and
// its type made to describe its value (see conform); a point that cannot be published (bad key or device id, bad
// quality, a bool that is not one) is dropped with an event on iot.errors.processor.invalid naming why; the rest
// of its batch goes on. The processed messages carry the raw message's Iot-Trace-Id (a new one when it had none). A message that is not a point or a batch
// gives an event on iot.errors.processor.decode. The actor never fails on bad input.
type processor struct {
	env actors.Env

	dec     isp.Decoder
	points  []isp.Point
	out     []isp.Point
	batch   *nats.Msg
	point   *nats.Msg
	buf     []byte
	invalid uint64
	seal    Sealer // checks the seals of batches sealed in this process

	// Acknowledged publishes (JetStream on): actors.StreamWriter, per incarnation.
	workers actors.Workers
	store   *actors.StreamWriter
}

// StoreEvent is published on iot.errors.processor.store for a batch the stream did not store.
type StoreEvent = actors.StoreEvent

var _ actors.Listener = (*processor)(nil)

// New returns the producer of the processing stage's actor.
func New(env actors.Env) actor.Producer {
	return func() actor.Actor {
		p := &processor{env: env, store: actors.NewStreamWriter(env, actorPath, SubjectErrorStore, "batch")}
		p.batch = &nats.Msg{Header: nats.Header{}}
		p.batch.Header.Set(actors.HeaderSchema, actors.SchemaVersion)
		p.point = &nats.Msg{Header: nats.Header{}}
		p.point.Header.Set(actors.HeaderSchema, actors.SchemaVersion)
		return p
	}
}

func (p *processor) Inboxes() []actors.Inbox {
	return []actors.Inbox{{Subject: SubjectRaw, Queue: QueueGroup}}
}

func (p *processor) Receive(ctx actor.Context) {
	if p.store.Handle(ctx.Message()) {
		return
	}
	switch m := ctx.Message().(type) {
	case *nats.Msg:
		p.process(m)
	case *actor.Started:
		p.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		p.workers.Stop()
		p.store.Close("processing stage")
	}
}

// start sets the acknowledged publishes up (actors.StreamWriter).
func (p *processor) start(ctx actor.Context) {
	p.store.Start(ctx, &p.workers)
}

// errSubject is a raw subject that is not iot.raw.{protocol}.{device}.
var errSubject = errors.New("want iot.raw.{protocol}.{device}")

func (p *processor) process(msg *nats.Msg) {
	protocol, device, err := parseRaw(msg.Subject)
	if err != nil {
		p.decodeError(msg, err)
		return
	}
	source := msg.Header.Get(actors.HeaderSource)
	if source == "" {
		source = protocol
	}
	trace := msg.Header.Get(actors.HeaderTraceID)
	if n, ok := p.seal.sealed(msg); ok && trace != "" && p.forwardSealed(msg, device, source, trace, n) {
		return
	}
	if trace == "" { // published by hand (nats pub): its batch is born here
		trace = actors.NewTraceID()
	}
	p.points, err = decode(&p.dec, msg.Data, p.points[:0])
	if err != nil {
		p.env.Metrics.Error(actorPath, "decode")
		p.decodeError(msg, err)
		return
	}
	p.env.Metrics.PointsIn(actorPath, len(p.points))
	now := time.Now().UnixNano()
	p.out = p.out[:0]
	for i := range p.points {
		pt := &p.points[i]
		if pt.DeviceID == "" {
			pt.DeviceID = device
		}
		if pt.Source == "" {
			pt.Source = source
		}
		if pt.Timestamp == 0 {
			pt.Timestamp = now
		}
		if err := Check(pt); err != nil {
			p.invalidPoint(msg.Subject, trace, i, pt, err)
			continue
		}
		p.out = append(p.out, *pt)
	}
	p.publish(source, trace)
	p.env.Metrics.PointsOut(actorPath, len(p.out))
}

// actorPath is the processor's path in the tree, its metrics label.
const actorPath = "rules/processor"

// publish sends the valid points: one batch per device (a poll or a DATA frame is normally one device), then the
// per-point subjects when enabled.
func (p *processor) publish(source, trace string) {
	p.setHeaders(source, trace)
	for start := 0; start < len(p.out); {
		dev := p.out[start].DeviceID
		end := start + 1
		for end < len(p.out) && p.out[end].DeviceID == dev {
			end++
		}
		p.batch.Subject = SubjectBatchPrefix + dev
		p.batch.Data = isp.AppendBatch(p.batch.Data[:0], p.out[start:end])
		p.storeBatch(p.batch, trace)
		start = end
	}
	if p.env.PointSubjects {
		p.publishPoints()
	}
}

// forwardSealed publishes a batch sealed by a driver of this process (Sealer) as the device's processed batch,
// its bytes as they came: its points passed Check where they were born, so they are neither decoded, checked nor
// encoded again. Only the per-point subjects need the points, and decode them. It reports false (then the batch
// takes the full path) for a batch whose points are not what its seal says, which a driver's bug alone can cause.
func (p *processor) forwardSealed(msg *nats.Msg, device, source, trace string, n int) bool {
	if p.env.PointSubjects {
		out, err := p.dec.DecodeBatch(msg.Data, p.out[:0])
		p.out = out
		if err != nil || len(out) != n {
			return false
		}
	}
	p.env.Metrics.PointsIn(actorPath, n)
	p.setHeaders(source, trace)
	p.batch.Subject = SubjectBatchPrefix + device
	p.batch.Data = append(p.batch.Data[:0], msg.Data...)
	p.storeBatch(p.batch, trace)
	if p.env.PointSubjects {
		p.publishPoints()
	}
	p.env.Metrics.PointsOut(actorPath, n)
	return true
}

// publishPoints publishes every point of p.out on iot.processed.{device}.{key}.
func (p *processor) publishPoints() {
	for i := range p.out {
		pt := &p.out[i]
		p.buf = append(append(append(p.buf[:0], SubjectPointPrefix...), pt.DeviceID...), '.')
		p.buf = append(p.buf, pt.Key...)
		p.point.Subject = string(p.buf)
		p.point.Data = isp.AppendPoint(p.point.Data[:0], pt)
		p.send(p.point)
	}
}

// setHeaders gives the processed messages the raw message's source and trace id.
func (p *processor) setHeaders(source, trace string) {
	for _, m := range [...]*nats.Msg{p.batch, p.point} {
		actors.SetHeader(m.Header, actors.HeaderSource, source)
		actors.SetHeader(m.Header, actors.HeaderTraceID, trace)
	}
}

// storeBatch publishes a batch into the stream with an acknowledgement when JetStream is on (else on the bus).
// Its message id is the raw message's trace id and the subject: a retry, or the same raw message delivered twice
// after a hung link (system's replay), is stored once.
func (p *processor) storeBatch(m *nats.Msg, trace string) {
	p.store.Publish(m, trace+":"+m.Subject)
}

func (p *processor) send(m *nats.Msg) {
	if err := p.env.Bus.PublishMsg(m); err != nil {
		p.env.Log.Warn().Err(err).Str("subject", m.Subject).Msg("cannot publish processed data")
	}
}

// decode reads a batch, or a bare point when the body is not a batch (so `nats pub iot.raw.x.d1 '{"key":…}'` works).
// Bad input is decoded twice; good input once.
func decode(d *isp.Decoder, data []byte, dst []isp.Point) ([]isp.Point, error) {
	out, err := d.DecodeBatch(data, dst)
	batch := bytes.Contains(data, []byte(`"points"`))
	if err == nil && (len(out) > 0 || batch) {
		return out, nil
	}
	dst = oneSlot(dst)
	if perr := d.DecodePoint(data, &dst[0]); perr != nil {
		if err == nil || !batch {
			err = perr
		}
		return dst[:0], err
	}
	return dst, nil
}

// oneSlot returns dst with one point slot, reusing the first one's memory (the decoder reuses its strings and tags).
func oneSlot(dst []isp.Point) []isp.Point {
	if cap(dst) == 0 {
		return make([]isp.Point, 1)
	}
	return dst[:1]
}

func parseRaw(subject string) (protocol, device string, err error) {
	rest, ok := strings.CutPrefix(subject, "iot.raw.")
	if !ok {
		return "", "", fmt.Errorf("subject %q: %w", subject, errSubject)
	}
	protocol, device, ok = strings.Cut(rest, ".")
	if !ok || protocol == "" || device == "" || strings.Contains(device, ".") {
		return "", "", fmt.Errorf("subject %q: %w", subject, errSubject)
	}
	return protocol, device, nil
}

// validate checks what makes a point publishable: subject tokens and the seed's quality codes.
func validate(pt *isp.Point) error {
	if err := token("device_id", pt.DeviceID); err != nil {
		return err
	}
	if err := token("key", pt.Key); err != nil {
		return err
	}
	if pt.Quality < isp.QualityUnknown || pt.Quality > isp.QualityGood {
		return fmt.Errorf("quality %d: want 1, 0 or -1", pt.Quality)
	}
	if pt.Timestamp < 0 {
		return fmt.Errorf("timestamp %d: want Unix nanoseconds", pt.Timestamp)
	}
	return nil
}

// integerTypes are the point types whose values are whole numbers.
var integerTypes = map[string]bool{"int16": true, "uint16": true, "int32": true, "uint32": true, "int64": true, "uint64": true}

// conform makes a point's type describe its value, since a consumer reads the value by its type:
//   - a bool point's value is true, false or null; 0 and 1 (a coil sent as a number) become false and true, and
//     any other value (37, 0.5, "on") is an error: the point is dropped with an event, never published as a bool
//     that is not one;
//   - an integer-typed point whose value has a fraction (a scaled register, 25.5 typed int16) is typed float64;
//     a whole number keeps its type, so a sidecar should type a scaled register float64 itself, as the Modbus
//     driver does, or its type changes with its value.
func conform(pt *isp.Point) error {
	switch {
	case pt.Type == "bool":
		switch pt.Value.Kind() {
		case isp.KindBool, isp.KindNull:
			return nil
		case isp.KindInt, isp.KindFloat:
			if f, _ := pt.Value.Float(); f == 0 || f == 1 {
				pt.Value = isp.Bool(f == 1)
				return nil
			}
		}
		return fmt.Errorf("type bool: value %s is not a bool (want true, false, 0 or 1)", pt.Value)
	case pt.Value.Kind() == isp.KindFloat && integerTypes[pt.Type]:
		if _, whole := pt.Value.Int(); !whole {
			pt.Type = "float64"
		}
	}
	return nil
}

// token checks a device id or key with the gateway's one name validator: what a device or sidecar sends must
// meet the rule the config file's names meet.
func token(field, s string) error {
	if err := config.ValidToken(s); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}

// InvalidEvent is published on iot.errors.processor.invalid for a point that was dropped.
type InvalidEvent struct {
	Subject   string `json:"subject"`
	Index     int    `json:"index"`
	DeviceID  string `json:"device_id,omitempty"`
	Key       string `json:"key,omitempty"`
	Error     string `json:"error"`
	TraceID   string `json:"trace_id,omitempty"` // the Iot-Trace-Id of the batch it came in
	Timestamp int64  `json:"timestamp"`
}

// DecodeEvent is published on iot.errors.processor.decode for a raw message that is not a point or a batch.
type DecodeEvent struct {
	Subject   string `json:"subject"`
	Error     string `json:"error"`
	Body      string `json:"body"` // at most 256 bytes of it
	Size      int    `json:"size"`
	Timestamp int64  `json:"timestamp"`
}

func (p *processor) invalidPoint(subject, trace string, i int, pt *isp.Point, err error) {
	p.invalid++
	p.env.Metrics.Error(actorPath, "invalid")
	p.env.Log.Debug().Err(err).Str("subject", subject).Int("index", i).Msg("invalid point dropped")
	data, _ := json.Marshal(InvalidEvent{
		Subject: subject, Index: i, DeviceID: pt.DeviceID, Key: pt.Key, Error: err.Error(), TraceID: trace,
		Timestamp: time.Now().UnixNano(),
	})
	if err := p.env.Bus.Publish(SubjectErrorInvalid, data); err != nil {
		p.env.Log.Warn().Err(err).Msg("cannot publish invalid-point event")
	}
}

func (p *processor) decodeError(msg *nats.Msg, err error) {
	p.env.Log.Warn().Err(err).Str("subject", msg.Subject).Int("size", len(msg.Data)).Msg("raw message rejected")
	body := msg.Data
	if len(body) > maxErrorBody {
		body = body[:maxErrorBody]
	}
	data, _ := json.Marshal(DecodeEvent{
		Subject: msg.Subject, Error: err.Error(), Body: string(body), Size: len(msg.Data),
		Timestamp: time.Now().UnixNano(),
	})
	if err := p.env.Bus.Publish(SubjectErrorDecode, data); err != nil {
		p.env.Log.Warn().Err(err).Msg("cannot publish decode event")
	}
}
