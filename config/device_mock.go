package config

import "time"

// NewMockDevice returns the settings of a mock device block with their defaults, for the driver's registration
// (actors/device/mock).
func NewMockDevice() DriverSettings { return &MockDevice{IntervalText: "1s", FailMode: "receive"} }

// MockDevice is driver "mock": a simulated device whose points follow a signal (sine, ramp, random, constant,
// step, counter). It runs without hardware, so it is the default in gateway.hcl and the work-horse of the tests.
//
// The fields with `hcl` tags are decoded as written; Validate then parses the *Text fields into their
// durations and fills the defaults that depend on what was written.
type MockDevice struct {
	Interval  time.Duration     // default poll interval of the points; default 1s, at least 1ms
	Tags      map[string]string `hcl:"tags,optional"` // added to every point
	Points    []MockPoint       `hcl:"point,block"`   // at least one, unique keys
	FailAfter int               `hcl:"fail_after,optional"`
	// FailMode says where FailAfter panics: "receive" (in the device actor, after FailAfter polls) or
	// "worker" (in one of its goroutines, after FailAfter intervals). A test hook for supervision.
	FailMode string `hcl:"fail_mode,optional"`

	IntervalText string `hcl:"interval,optional"` // interval as written
}

// MockPoint is a `point "key"` block of a mock device.
type MockPoint struct {
	Key    string  `hcl:"key,label"`
	Signal string  `hcl:"signal,optional"` // required; checked by Validate to say which signals exist
	Type   string  `hcl:"type,optional"`   // float64 (default) | int64 | bool
	Unit   string  `hcl:"unit,optional"`   // goes into the point's tags as unit
	Min    float64 `hcl:"min,optional"`    // default 0
	Max    float64 `hcl:"max,optional"`    // default 100, >= Min
	Value  float64 `hcl:"value,optional"`  // the constant signal's value; default Min
	// Period of sine, ramp and step; default 60s.
	Period time.Duration
	// Interval overrides the device's poll interval; 0 means the device's.
	Interval time.Duration
	Tags     map[string]string `hcl:"tags,optional"`

	PeriodText   string `hcl:"period,optional"`   // period as written
	IntervalText string `hcl:"interval,optional"` // interval as written
}

var (
	mockSignals   = []string{"sine", "ramp", "random", "constant", "step", "counter"}
	mockTypes     = []string{"float64", "int64", "bool"}
	mockFailModes = []string{"receive", "worker"}
)

// Validate implements DriverSettings.
func (m *MockDevice) Validate(v *Validator) {
	m.Interval = minDuration(v, "interval", m.IntervalText, time.Millisecond)
	if m.FailAfter < 0 {
		v.Errorf("fail_after", "fail_after is %d: write 0 to never fail, or a number of polls", m.FailAfter)
	}
	if !isOneOf(m.FailMode, mockFailModes) {
		v.Errorf("fail_mode", "unknown fail_mode %s; known: %s", quote(m.FailMode), oneOf(mockFailModes))
	}
	if len(m.Points) == 0 {
		v.Errorf("", `A mock device needs at least one point block, like point "temperature" { signal = "sine" }.`)
	}
	blocks := v.Blocks("point")
	first := map[string]*Validator{}
	for i := range m.Points {
		p := &m.Points[i]
		pv := v
		if i < len(blocks) {
			pv = blocks[i]
		}
		checkKey(pv, "point", "Point", p.Key, first)
		p.validate(pv)
	}
}

func (p *MockPoint) validate(v *Validator) {
	if !v.Has("signal") {
		v.Errorf("", "The signal attribute is required; known: %s.", oneOf(mockSignals))
	} else if !isOneOf(p.Signal, mockSignals) {
		v.Errorf("signal", "unknown signal %s; known: %s", quote(p.Signal), oneOf(mockSignals))
	}
	if p.Type == "" && !v.Has("type") {
		p.Type = "float64"
	}
	if !isOneOf(p.Type, mockTypes) {
		v.Errorf("type", "unknown type %s; known: %s", quote(p.Type), oneOf(mockTypes))
	}
	if !v.Has("max") {
		p.Max = 100
	}
	if p.Min > p.Max {
		attr := "min"
		if !v.Has("min") {
			attr = "max"
		}
		v.Errorf(attr, "min (%v) is greater than max (%v)", p.Min, p.Max)
	}
	if !v.Has("value") {
		p.Value = p.Min
	}
	if !v.Has("period") {
		p.PeriodText = "60s"
	}
	p.Period = minDuration(v, "period", p.PeriodText, time.Nanosecond)
	if v.Has("interval") {
		p.Interval = minDuration(v, "interval", p.IntervalText, time.Millisecond)
	}
}

// minDuration parses a duration attribute that must be at least min, reporting at attr.
func minDuration(v *Validator, attr, text string, min time.Duration) time.Duration {
	d, ok := v.Duration(attr, text)
	if ok && d < min {
		v.Errorf(attr, "%s is too short: at least %v", quote(text), min)
	}
	return d
}
