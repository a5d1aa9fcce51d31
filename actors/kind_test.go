package actors

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/config"
)

type noSettings struct{}

func (*noSettings) Validate(*config.Validator) {}

// TestRegisterRefusesHalfAKind: a kind registers its schema and its actor in one call, and a call without one of
// them panics at init, before anything runs.
func TestRegisterRefusesHalfAKind(t *testing.T) {
	settings := func() config.DriverSettings { return &noSettings{} }
	newActor := func(config.Device, Env) actor.Producer { return nil }
	newEndpoint := func(config.Endpoint, Env) actor.Producer { return nil }
	for _, tc := range []struct {
		name string
		kind DeviceKind
	}{
		{"no settings", DeviceKind{New: newActor}},
		{"no actor", DeviceKind{Settings: settings}},
		{"an endpoint actor without endpoint settings", DeviceKind{Settings: settings, New: newActor, NewEndpoint: newEndpoint}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("got no panic, want one")
				}
			}()
			RegisterDevice("test-"+tc.name, tc.kind)
		})
	}
	t.Run("sink without an actor", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Errorf("got no panic, want one")
			}
		}()
		RegisterSink("test-sink", SinkKind{Settings: func() config.SinkSettings { return &noSettings{} }})
	})
}
