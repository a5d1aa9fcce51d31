package device

import (
	"encoding/json"
	"time"

	"github.com/rs/zerolog"
)

// Event is an error or state event of a device driver that is not Modbus (mqtt, http), published on
// iot.errors.{protocol}.{device}. It reads like the Modbus driver's events (device, kind, error, keys,
// timestamp, the same kinds where they mean the same: stale, write), with the source of what failed beside them:
// the topic of an MQTT message, the URL of an HTTP poll.
type Event struct {
	Device    string   `json:"device"`
	Kind      string   `json:"kind"` // mqtt: payload, topic, too_large, subscribe, overflow, stale, write; http: http, timeout, status, too_large, payload, stale, injected
	Error     string   `json:"error"`
	Topic     string   `json:"topic,omitempty"`
	URL       string   `json:"url,omitempty"`
	Keys      []string `json:"keys,omitempty"` // the points it concerns
	Timestamp int64    `json:"timestamp"`
}

// EventPublisher is what PublishEvent needs of the bus.
type EventPublisher interface {
	Publish(subject string, data []byte) error
}

// maxEventTopic bounds the topic (or URL) an event repeats: it came from outside.
const maxEventTopic = 256

// PublishEvent stamps ev and publishes it on subject, logging a failure to publish.
func PublishEvent(bus EventPublisher, log zerolog.Logger, subject string, ev Event) {
	ev.Timestamp = time.Now().UnixNano()
	if len(ev.Topic) > maxEventTopic {
		ev.Topic = ev.Topic[:maxEventTopic] + "…"
	}
	if len(ev.URL) > maxEventTopic {
		ev.URL = ev.URL[:maxEventTopic] + "…"
	}
	data, _ := json.Marshal(ev)
	if err := bus.Publish(subject, data); err != nil {
		log.Warn().Err(err).Str("subject", subject).Msg("cannot publish device event")
	}
}
