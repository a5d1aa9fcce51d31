package system

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/iotgw/iotgw/config"
	"github.com/rs/zerolog"
)

// TestEnvLogNamesTheActor: an actor's logger (Env.Log) names the actor in every event, at its levels, and a
// logger derived from it does too.
func TestEnvLogNamesTheActor(t *testing.T) {
	var buf bytes.Buffer
	r := New(config.Default(), WithLogger(zerolog.New(&buf).Level(zerolog.InfoLevel)))
	r.bus = &Bus{}
	env := r.env("devices/meter-1")
	env.Log.Warn().Str("key", "r1").Msg("timeout")
	env.Log.Debug().Msg("not written")
	derived := env.Log.With().Str("library", "x").Logger()
	derived.Error().Msg("derived")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{"timeout", "derived"} {
		var ev map[string]any
		if err := json.Unmarshal(lines[i], &ev); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, lines[i])
		}
		if ev["actor"] != "devices/meter-1" || ev["message"] != want {
			t.Errorf("line %d: %s, want actor devices/meter-1 and message %q", i, lines[i], want)
		}
	}
}
