// Package influxdb is the InfluxDB sink: line protocol to InfluxDB 1.x (/write: database, retention policy, user
// and password) or 2.x (/api/v2/write: org, bucket, token), batched by size and time, gzipped, from a durable
// inbox; a batch is acknowledged once InfluxDB answered 204, and a partial write is settled per line: the
// messages whose lines InfluxDB refused go to the dead letters with its reason, the others are acknowledged.
//
// It must never write a line it cannot write exactly (names from the bus are checked and escaped here, see
// lineproto.go), and never acknowledge what InfluxDB has not answered for.
//
// The client is net/http with this package's line protocol encoder, not influxdb-client-go: that library's
// non-blocking WriteAPI batches and retries in a memory buffer of its own (and drops from it when full), and its
// blocking one builds a write.Point per point; the durable inbox is the buffer here, and the encoder writes
// straight into the request body with no allocation per point.
package influxdb

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/actors/sink/batch"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
)

func init() {
	actors.RegisterSink("influxdb", actors.SinkKind{Settings: NewSettings, New: New})
}

// sink is the influxdb sink's actor: the batching core with an InfluxDB target.
type sink struct{ *batch.Sink }

var (
	_ actors.Listener = sink{}
	_ actor.Actor     = sink{}
	_ batch.Target    = (*target)(nil)
	_ batch.Batch     = (*lineBatch)(nil)
)

// New returns the producer of an influxdb sink's actor.
func New(s config.Sink, env actors.Env) actor.Producer {
	cfg := s.Settings.(*Settings)
	return func() actor.Actor {
		return sink{batch.New(s.Name, "influxdb", cfg.opts, env, func() (batch.Target, error) { return newTarget("sinks/"+s.Name, cfg, env) })}
	}
}

// target writes batches to one InfluxDB server.
type target struct {
	path   string // sinks/{name}, the metrics label
	cfg    *Settings
	env    actors.Env
	url    string
	client *http.Client
	gz     *gzip.Writer
	body   bytes.Buffer
}

func newTarget(path string, cfg *Settings, env actors.Env) (*target, error) {
	base := strings.TrimRight(cfg.URL, "/")
	q := url.Values{}
	q.Set("precision", "ns")
	var u string
	if cfg.v2 {
		q.Set("org", cfg.Org)
		q.Set("bucket", cfg.Bucket)
		u = base + "/api/v2/write?" + q.Encode()
	} else {
		q.Set("db", cfg.Database)
		if cfg.RetentionPolicy != "" {
			q.Set("rp", cfg.RetentionPolicy)
		}
		u = base + "/write?" + q.Encode()
	}
	gz, err := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2
	return &target{path: path, cfg: cfg, env: env, url: u, client: &http.Client{Transport: tr}, gz: gz}, nil
}

func (t *target) Close() error {
	t.client.CloseIdleConnections()
	return nil
}

func (t *target) NewBatch() batch.Batch { return &lineBatch{path: t.path, cfg: t.cfg, env: t.env} }

// lineBatch is a request body of line protocol; each line an entry.
type lineBatch struct {
	path  string
	cfg   *Settings
	env   actors.Env
	body  []byte
	ends  []int  // the end of each line in body (after its newline)
	kinds []byte // each line's field type: 'f' float, 'i' integer, 'b' boolean, 's' string
	tags  []isp.Tag
}

// integerTypes are the point types whose integer values are written as integers; any other integer value (a
// JSON number without a fraction, from a float register that read a whole number) as a float, so a field keeps
// one type in InfluxDB (a field type conflict refuses the line).
var integerTypes = map[string]bool{"int8": true, "int16": true, "int32": true, "int64": true, "uint8": true,
	"uint16": true, "uint32": true, "uint64": true, "int": true, "uint": true}

// Add implements batch.Batch: one line per point; a point without a value (null: its quality says why) is
// skipped and counted; a point whose names line protocol cannot carry refuses the whole message.
func (b *lineBatch) Add(_ string, points []isp.Point) (int, error) {
	start, startEnds := len(b.body), len(b.ends)
	now := time.Now().UnixNano()
	n := 0
	for i := range points {
		p := &points[i]
		if p.Value.Kind() == isp.KindNull {
			b.env.Metrics.Error(b.path, "null_value")
			continue
		}
		b.tags = append(b.tags[:0], p.Tags...)
		b.tags = addTag(b.tags, b.cfg.DeviceTag, p.DeviceID)
		b.tags = addTag(b.tags, b.cfg.KeyTag, p.Key)
		l := line{
			measurement: b.cfg.measurement.expand(p.DeviceID, p.Key),
			tags:        b.tags,
			field:       b.cfg.field.expand(p.DeviceID, p.Key),
			value:       p.Value,
			intField:    integerTypes[p.Type],
			ts:          p.Timestamp,
		}
		if l.ts == 0 {
			l.ts = now
		}
		var err error
		if b.body, err = appendLine(b.body, &l); err != nil {
			b.body, b.ends, b.kinds = b.body[:start], b.ends[:startEnds], b.kinds[:startEnds]
			return 0, fmt.Errorf("point %d (%s/%s): %w", i, truncate(p.DeviceID), truncate(p.Key), err)
		}
		b.ends = append(b.ends, len(b.body))
		b.kinds = append(b.kinds, kindOf(&l))
		n++
	}
	return n, nil
}

// addTag adds key=value unless key is "" or the point has that tag already (the point's own wins); a tag with an
// empty value is left out, as InfluxDB does.
func addTag(tags []isp.Tag, key, value string) []isp.Tag {
	if key == "" || value == "" {
		return tags
	}
	for _, t := range tags {
		if t.Key == key {
			return tags
		}
	}
	return append(tags, isp.Tag{Key: key, Value: value})
}

func kindOf(l *line) byte {
	switch l.value.Kind() {
	case isp.KindInt:
		if l.intField {
			return 'i'
		}
	case isp.KindBool:
		return 'b'
	case isp.KindString:
		return 's'
	}
	return 'f'
}

func (b *lineBatch) Reset() {
	b.body, b.ends, b.kinds = b.body[:0], b.ends[:0], b.kinds[:0]
}

func (b *lineBatch) line(i int) []byte {
	start := 0
	if i > 0 {
		start = b.ends[i-1]
	}
	return b.body[start : b.ends[i]-1]
}

// maxErrorBody bounds what is read of an error answer.
const maxErrorBody = 64 << 10

// Write implements batch.Target.
func (t *target) Write(ctx context.Context, bb batch.Batch) error {
	b := bb.(*lineBatch)
	if len(b.ends) == 0 {
		return nil // every point was null
	}
	body := b.body
	if t.cfg.Gzip {
		t.body.Reset()
		t.gz.Reset(&t.body)
		if _, err := t.gz.Write(b.body); err != nil {
			return err
		}
		if err := t.gz.Close(); err != nil {
			return err
		}
		body = t.body.Bytes()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	if t.cfg.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	switch {
	case t.cfg.v2:
		req.Header.Set("Authorization", "Token "+t.cfg.Token)
	case t.cfg.Username != "":
		req.SetBasicAuth(t.cfg.Username, t.cfg.Password)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return fmt.Errorf("influxdb %s: %w", t.cfg.URL, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody)) // keep the connection
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusOK:
		return nil
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		text := errorText(msg)
		refused := refusedLines(b, text)
		if len(refused) == 0 {
			// InfluxDB wrote the rest and named no line we can find (points beyond the retention policy, say):
			// nothing to terminate; counted and logged with its words.
			t.env.Metrics.Error(t.path, "dropped_by_server")
			t.env.Log.Warn().Str("url", t.cfg.URL).Str("error", text).Int("lines", len(b.ends)).
				Msg("influxdb sink: InfluxDB dropped points of a batch without naming them")
			return nil
		}
		return &batch.Refused{Entries: refused}
	case http.StatusRequestEntityTooLarge:
		return &batch.Refused{All: true, Reason: fmt.Sprintf("influxdb: request of %d bytes too large (lower batch_size): %s", len(body), errorText(msg))}
	}
	return fmt.Errorf("influxdb %s: %s: %s", t.cfg.URL, resp.Status, errorText(msg))
}

// errorText is the error of an InfluxDB answer: 1.x {"error": …}, 2.x {"code": …, "message": …}, else the body.
func errorText(body []byte) string {
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil {
		if e.Error != "" {
			return e.Error
		}
		if e.Message != "" {
			return e.Message
		}
	}
	if len(body) > 1024 {
		body = body[:1024]
	}
	return strings.TrimSpace(string(body))
}

// The parts of a partial write error that name lines (InfluxDB's models and coordinator errors, the same
// words in 1.x and 2.x): "unable to parse '<line>': <reason>" per line, and a field type conflict, which names
// the measurement and the field and the type the field has.
var (
	reConflict = regexp.MustCompile(`field type conflict: input field "((?:[^"\\]|\\.)*)" on measurement "((?:[^"\\]|\\.)*)" is type (\w+), already exists as type (\w+)`)
)

const unableToParse = "unable to parse '"

// refusedLines maps an error text of InfluxDB to the lines of b it names, each with its reason.
func refusedLines(b *lineBatch, text string) map[int]string {
	out := map[int]string{}
	// unable to parse: the line is quoted whole; the reason runs to the next "unable to parse" or " dropped=".
	var byText map[string][]int
	for rest := text; ; {
		i := strings.Index(rest, unableToParse)
		if i < 0 {
			break
		}
		rest = rest[i+len(unableToParse):]
		j := strings.Index(rest, "': ")
		if j < 0 {
			break
		}
		quoted := rest[:j]
		reason := rest[j+3:]
		if k := strings.Index(reason, unableToParse); k >= 0 {
			reason = reason[:k]
		}
		if k := strings.Index(reason, " dropped="); k >= 0 {
			reason = reason[:k]
		}
		if byText == nil {
			byText = make(map[string][]int, len(b.ends))
			for l := range b.ends {
				byText[string(b.line(l))] = append(byText[string(b.line(l))], l)
			}
		}
		for _, l := range byText[quoted] {
			out[l] = "influxdb: unable to parse: " + strings.TrimSpace(reason)
		}
		rest = rest[j+3:]
	}
	for _, m := range reConflict.FindAllStringSubmatch(text, -1) {
		field, meas, existing := unquote(m[1]), unquote(m[2]), m[4]
		for l := range b.ends {
			mm, _, ff, _, _, err := parseLine(string(b.line(l)))
			if err != nil || mm != meas || ff != field || typeName(b.kinds[l]) == existing {
				continue
			}
			out[l] = fmt.Sprintf("influxdb: field type conflict: field %q of measurement %q is %s, this value is %s", field, meas, existing, typeName(b.kinds[l]))
		}
	}
	return out
}

func unquote(s string) string { return strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(s) }

func typeName(k byte) string {
	switch k {
	case 'i':
		return "integer"
	case 'b':
		return "boolean"
	case 's':
		return "string"
	}
	return "float"
}
