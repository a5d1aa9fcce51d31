package actors

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// Respond answers a request with v as JSON, the one way every actor answers a request (control, writes, sidecar
// status). A message without a reply subject is not answered. A reply that cannot be encoded is answered with
// {"error": …} instead, and one that cannot be sent is logged: the requester only sees its timeout, so the log is
// the only trace of why.
func Respond(log zerolog.Logger, msg *nats.Msg, v any) {
	if msg.Reply == "" {
		log.Debug().Str("subject", msg.Subject).Msg("request without a reply subject not answered")
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		data = fmt.Appendf(nil, `{"error":%q}`, "encode reply: "+err.Error())
	}
	if err := msg.Respond(data); err != nil {
		log.Warn().Err(err).Str("subject", msg.Subject).Str("reply", msg.Reply).Msg("cannot send reply")
	}
}
