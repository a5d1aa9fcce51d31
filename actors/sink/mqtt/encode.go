package mqtt

import (
	"strconv"

	"github.com/iotgw/iotgw/isp"
)

// outMsg is one MQTT message.
type outMsg struct {
	topic   string
	payload []byte
}

// encoder makes a delivery's messages from its points: per point when the topic has {key} or the payload is a
// point or a value, else one batch per topic (the points of one device, in their order).
type encoder struct {
	tmpl    *topicTemplate
	payload string
	vals    topicValues
	buf     []byte
}

// encode returns the messages of points; device is the subject's device, for points without device_id. The
// messages' topics and payloads are copied out of the encoder's buffer, since they are published by a worker.
func (e *encoder) encode(points []isp.Point, device string) ([]outMsg, error) {
	if e.payload == PayloadBatch {
		return e.batches(points, device)
	}
	type span struct{ t0, t1, p1 int }
	spans := make([]span, len(points))
	e.buf = e.buf[:0]
	for i := range points {
		p := &points[i]
		e.vals.device, e.vals.key = p.DeviceID, p.Key
		if e.vals.device == "" {
			e.vals.device = device
		}
		t0 := len(e.buf)
		var err error
		if e.buf, err = e.tmpl.append(e.buf, &e.vals); err != nil {
			return nil, err
		}
		t1 := len(e.buf)
		if e.payload == PayloadValue {
			e.buf = appendBareValue(e.buf, p.Value)
		} else {
			e.buf = isp.AppendPoint(e.buf, p)
		}
		spans[i] = span{t0, t1, len(e.buf)}
	}
	all := string(e.buf) // one copy for every topic and payload of the delivery
	msgs := make([]outMsg, len(points))
	for i, s := range spans {
		msgs[i] = outMsg{topic: all[s.t0:s.t1], payload: []byte(all[s.t1:s.p1])}
	}
	return msgs, nil
}

// batches makes one {"points":[…]} message per topic, in the order each topic first appears.
func (e *encoder) batches(points []isp.Point, device string) ([]outMsg, error) {
	var msgs []outMsg
	index := map[string]int{}
	var groups [][]int
	for i := range points {
		p := &points[i]
		e.vals.device, e.vals.key = p.DeviceID, p.Key
		if e.vals.device == "" {
			e.vals.device = device
		}
		var err error
		if e.buf, err = e.tmpl.append(e.buf[:0], &e.vals); err != nil {
			return nil, err
		}
		g, ok := index[string(e.buf)]
		if !ok {
			g = len(groups)
			index[string(e.buf)] = g
			groups = append(groups, nil)
			msgs = append(msgs, outMsg{topic: string(e.buf)})
		}
		groups[g] = append(groups[g], i)
	}
	for g, idx := range groups {
		b := append(make([]byte, 0, 64+len(idx)*128), `{"points":[`...)
		for n, i := range idx {
			if n > 0 {
				b = append(b, ',')
			}
			b = isp.AppendPoint(b, &points[i])
		}
		msgs[g].payload = append(b, "]}"...)
	}
	return msgs, nil
}

// appendBareValue writes a value as MQTT dashboards read it (Home Assistant's state topics, Node-RED): a number
// as its digits, a bool as true or false, a string as its bytes unquoted, no value as null.
func appendBareValue(b []byte, v isp.Value) []byte {
	switch v.Kind() {
	case isp.KindString:
		s, _ := v.Str()
		return append(b, s...)
	case isp.KindInt:
		i, _ := v.Int()
		return strconv.AppendInt(b, i, 10)
	}
	return append(b, v.String()...)
}
