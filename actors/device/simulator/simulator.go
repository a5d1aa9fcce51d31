// Package simulator runs a Modbus TCP simulator inside the gateway as an actor, for demos and tests without
// hardware.
package simulator

import (
	"context"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/sidecar/modbussim"
)

// simulator runs a Modbus TCP simulator inside the gateway, as an actor under the devices supervisor, started
// before the devices that poll it. Its server owns its goroutines; Stop waits for them.
type simulator struct {
	cfg config.Simulator
	env actors.Env
	srv *modbussim.Server
}

// New returns the producer of a simulator's actor.
func New(sim config.Simulator, env actors.Env) actor.Producer {
	return func() actor.Actor { return &simulator{cfg: sim, env: env} }
}

func (s *simulator) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		cfg, err := Config(s.cfg)
		if err != nil {
			panic(err)
		}
		srv, err := modbussim.New(cfg)
		if err != nil {
			panic(fmt.Errorf("simulator %q: %w", s.cfg.Name, err))
		}
		if err := srv.Start(context.Background()); err != nil {
			panic(fmt.Errorf("simulator %q: %w", s.cfg.Name, err))
		}
		s.srv = srv
		s.env.Log.Info().Str("simulator", s.cfg.Name).Str("listen", srv.Addr().String()).Msg("Modbus simulator listening")
	case *actor.Stopping, *actor.Restarting:
		if s.srv != nil {
			_ = s.srv.Stop()
			s.srv = nil
		}
	}
}

// Config turns a simulator block into the simulator's config: the demo map without unit blocks.
func Config(sim config.Simulator) (modbussim.Config, error) {
	if len(sim.Units) == 0 {
		cfg := modbussim.Demo()
		cfg.Listen = sim.Listen
		return cfg, nil
	}
	cfg := modbussim.Config{Listen: sim.Listen}
	for _, u := range sim.Units {
		unit := modbussim.Unit{ID: uint8(u.ID)}
		for _, sg := range u.Signals {
			t, err := modbussim.ParseTable(sg.Table)
			if err != nil {
				return cfg, fmt.Errorf("simulator %q unit %d signal %q: %w", sim.Name, u.ID, sg.Name, err)
			}
			unit.Signals = append(unit.Signals, modbussim.Signal{
				Table: t, Address: uint16(sg.Address), Type: sg.Type, Order: sg.Order, Kind: sg.Kind,
				Min: sg.Min, Max: sg.Max, Value: sg.Value, Period: sg.Period,
			})
		}
		cfg.Units = append(cfg.Units, unit)
	}
	return cfg, nil
}
