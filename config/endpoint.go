package config

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/hashicorp/hcl/v2"
)

// Endpoint is what devices of one driver share and the gateway runs once for all of them: a serial line, a
// Modbus TCP gateway, later an MQTT broker or an OPC UA server. The runtime keeps one endpoint actor per Key,
// started before the devices that use it and stopped after the last of them.
type Endpoint struct {
	// Key names the endpoint among all of the gateway's endpoints (it is the actor's name under endpoints/):
	// devices whose settings give the same key share the actor. A driver prefixes its keys with its name.
	Key string
	// Settings are what the devices on Key must agree on (a serial line's speed, framing); the driver's endpoint
	// actor is built from them. Two devices with the same Key and settings that are not reflect.DeepEqual are a
	// conflict.
	Settings any
}

// EndpointSettings is implemented by the settings of a driver whose devices share endpoints. ok is false for a
// device that needs none.
type EndpointSettings interface {
	Endpoint() (ep Endpoint, ok bool)
}

// EndpointOf returns the endpoint d needs, if its driver declares one.
func EndpointOf(d Device) (Endpoint, bool) {
	if s, ok := d.Settings.(EndpointSettings); ok && d.Settings != nil {
		return s.Endpoint()
	}
	return Endpoint{}, false
}

// ErrEndpointConflict is a device whose endpoint another device uses with other settings.
var ErrEndpointConflict = errors.New("endpoint used with other settings")

// EndpointConflict returns an error (ErrEndpointConflict) when d's endpoint is used by one of others (d itself,
// by id, excepted) with other settings, naming that device and where it is defined.
func EndpointConflict(d Device, others []Device) error {
	ep, ok := EndpointOf(d)
	if !ok {
		return nil
	}
	for _, o := range others {
		if o.ID == d.ID {
			continue
		}
		oe, ok := EndpointOf(o)
		if !ok || oe.Key != ep.Key || reflect.DeepEqual(oe.Settings, ep.Settings) {
			continue
		}
		return conflict(d, ep, o, oe)
	}
	return nil
}

// conflict is the error of d on ep against o on oe: the same key, other settings.
func conflict(d Device, ep Endpoint, o Device, oe Endpoint) error {
	where := ""
	if o.DefRange.Filename != "" {
		where = " at " + o.DefRange.String()
	}
	return fmt.Errorf("%w: device %s uses endpoint %s with %s, device %s%s with %s; devices on one endpoint must agree",
		ErrEndpointConflict, quote(d.ID), ep.Key, describeSettings(ep.Settings), quote(o.ID), where, describeSettings(oe.Settings))
}

// describeSettings prints endpoint settings for an error message; a driver's settings may say it better with
// a String method.
func describeSettings(s any) string {
	if st, ok := s.(fmt.Stringer); ok {
		return st.String()
	}
	return fmt.Sprintf("%+v", s)
}

// checkEndpoints reports, at the later device, every device of the file whose endpoint an earlier one uses with
// other settings: the message names both positions. Each device's endpoint is worked out once and compared only
// with the earlier devices of the same key (EndpointConflict against all earlier devices was quadratic: a
// million endpoint keys built for a 1,000-device file).
func checkEndpoints(cfg *Config, diags *hcl.Diagnostics) {
	byKey := map[string][]int{}
	eps := make([]Endpoint, len(cfg.Devices))
	for i, d := range cfg.Devices {
		ep, ok := EndpointOf(d)
		if !ok {
			continue
		}
		eps[i] = ep
		for _, j := range byKey[ep.Key] {
			o := cfg.Devices[j]
			if o.ID == d.ID || reflect.DeepEqual(eps[j].Settings, ep.Settings) {
				continue
			}
			*diags = append(*diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Conflicting endpoint settings",
				Detail:   conflict(d, ep, o, eps[j]).Error() + ".",
				Subject:  d.DefRange.Ptr(),
			})
			break
		}
		byKey[ep.Key] = append(byKey[ep.Key], i)
	}
}
