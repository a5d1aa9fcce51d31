package system

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
)

// The push endpoint: POST /api/v1/points/{device} with a point or a batch in the gateway's own JSON (the body of
// iot.raw.* and iot.processed.*, so `curl -d '{"key":"temp","value":21.5}'` works), published on
// iot.raw.http.{device} so it flows through the processor like a poll.
//
// Only a declared device takes pushes: a device block with driver = "http" and mode = "push". A request for any
// other id is refused (404), so a client cannot invent devices — the same rule as for the device ids of the config
// (ThingsBoard's HTTP API keys devices by an access token for the same reason; here the gateway's own HTTP token,
// and TLS beyond loopback, protect the endpoint like every other path: system/http.go's authorize). A request is
// all or nothing: any point that is not valid fails it with 400 naming the point and why, and nothing of it is
// published, so the client can fix and resend without duplicating the valid part.

// PushPathPrefix is the push endpoint's path without its device.
const PushPathPrefix = "/api/v1/points/"

// maxPushPoints bounds the points of one push.
const maxPushPoints = 10000

// pushTarget is a device's settings that take pushes (actors/device/http in mode push).
type pushTarget interface {
	AcceptsPush() bool
	PushTags() map[string]string
	PushLimit() int64
}

// PushReply answers a push.
type PushReply struct {
	Accepted int    `json:"accepted,omitempty"`
	Device   string `json:"device,omitempty"`
	Subject  string `json:"subject,omitempty"`
	Error    string `json:"error,omitempty"`
}

func writePushReply(w http.ResponseWriter, status int, r PushReply) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	data, _ := json.Marshal(r)
	_, _ = w.Write(append(data, '\n'))
}

// pushDevice returns the push settings of a declared push device, or an error to answer with.
func (r *Runtime) pushDevice(id string) (pushTarget, int, error) {
	if err := config.ValidToken(id); err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("device id: %w", err)
	}
	r.devices.mu.Lock()
	e, ok := r.devices.entries[id]
	r.devices.mu.Unlock()
	if !ok {
		return nil, http.StatusNotFound, fmt.Errorf("no device %q: declare it with device %q { driver = \"http\" mode = \"push\" }", id, id)
	}
	pt, ok := e.dev.Settings.(pushTarget)
	if !ok || !pt.AcceptsPush() {
		return nil, http.StatusNotFound, fmt.Errorf("device %q (driver %s) does not take pushes: only driver = \"http\" with mode = \"push\" does", id, e.dev.Driver)
	}
	return pt, 0, nil
}

func (m *monitor) push(w http.ResponseWriter, req *http.Request) {
	id := req.PathValue("device")
	target, status, err := m.rt.pushDevice(id)
	if err != nil {
		writePushReply(w, status, PushReply{Error: err.Error()})
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			writePushReply(w, http.StatusUnsupportedMediaType, PushReply{Device: id, Error: fmt.Sprintf("content type %.64q: send application/json", ct)})
			return
		}
	}
	limit := target.PushLimit()
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writePushReply(w, http.StatusRequestEntityTooLarge, PushReply{Device: id, Error: fmt.Sprintf("body larger than the device's max_body (%d bytes)", limit)})
			return
		}
		writePushReply(w, http.StatusBadRequest, PushReply{Device: id, Error: "read the body: " + err.Error()})
		return
	}
	pts, err := decodePush(body, id, target.PushTags(), time.Now())
	if err != nil {
		writePushReply(w, http.StatusBadRequest, PushReply{Device: id, Error: err.Error()})
		return
	}
	conn := m.rt.bus.Conn
	if conn == nil || !conn.IsConnected() {
		writePushReply(w, http.StatusServiceUnavailable, PushReply{Device: id, Error: "the gateway's bus is not connected: retry"})
		return
	}
	msg := &nats.Msg{Subject: "iot.raw.http." + id, Header: nats.Header{}, Data: isp.AppendBatch(nil, pts)}
	msg.Header.Set(actors.HeaderSource, "http")
	msg.Header.Set(actors.HeaderSchema, actors.SchemaVersion)
	msg.Header.Set(actors.HeaderTraceID, actors.NewTraceID())
	if err := conn.PublishMsg(msg); err != nil {
		writePushReply(w, http.StatusServiceUnavailable, PushReply{Device: id, Error: "publish: " + err.Error()})
		return
	}
	m.metrics.PointsOut("devices/"+id, len(pts))
	writePushReply(w, http.StatusAccepted, PushReply{Accepted: len(pts), Device: id, Subject: msg.Subject})
}

// decodePush reads a push body — a point, or a batch {"points":[…]} — and checks every point: its device is the
// URL's (or absent), its key a valid name, its quality 1, 0 or -1. Points get the device, source http, the
// device's tags they lack, and now when they carry no timestamp.
func decodePush(body []byte, device string, tags map[string]string, now time.Time) ([]isp.Point, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, errors.New(`empty body: send a point {"key":…,"value":…} or a batch {"points":[…]}`)
	}
	var pts []isp.Point
	var err error
	if bytes.Contains(trimmed, []byte(`"points"`)) {
		pts, err = isp.DecodeBatch(trimmed)
	} else {
		var p isp.Point
		p, err = isp.DecodePoint(trimmed)
		pts = []isp.Point{p}
	}
	if err != nil {
		return nil, fmt.Errorf(`not a point {"key":…,"value":…} or a batch {"points":[…]}: %w`, err)
	}
	if len(pts) == 0 {
		return nil, errors.New("a batch without points")
	}
	if len(pts) > maxPushPoints {
		return nil, fmt.Errorf("%d points in one push: at most %d", len(pts), maxPushPoints)
	}
	deviceTags := isp.MergeTags(tags, nil, "")
	for i := range pts {
		p := &pts[i]
		switch {
		case p.DeviceID != "" && p.DeviceID != device:
			return nil, fmt.Errorf("point %d: device_id %.64q: a push to %s%s carries only that device's points", i, p.DeviceID, PushPathPrefix, device)
		case isp.ValidToken(p.Key) != nil:
			return nil, fmt.Errorf("point %d: key: %v", i, isp.ValidToken(p.Key))
		case p.Quality != isp.QualityGood && p.Quality != isp.QualityBad && p.Quality != isp.QualityUnknown:
			return nil, fmt.Errorf("point %d (%s): quality %d: 1 good, 0 bad or -1 unknown", i, p.Key, p.Quality)
		case p.Timestamp < 0:
			return nil, fmt.Errorf("point %d (%s): negative timestamp", i, p.Key)
		}
		p.DeviceID = device
		if p.Source == "" {
			p.Source = "http"
		}
		if p.Timestamp == 0 {
			p.Timestamp = now.UnixNano()
		}
		p.Tags = withTags(p.Tags, deviceTags)
	}
	return pts, nil
}

// withTags adds the device's tags a point lacks (the point's own win), in a new slice.
func withTags(own, device []isp.Tag) []isp.Tag {
	if len(device) == 0 {
		return own
	}
	out := append(make([]isp.Tag, 0, len(own)+len(device)), own...)
	for _, t := range device {
		found := false
		for _, o := range own {
			if o.Key == t.Key {
				found = true
				break
			}
		}
		if !found {
			out = append(out, t)
		}
	}
	return out
}
