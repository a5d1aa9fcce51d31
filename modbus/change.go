package modbus

import (
	"math"

	"github.com/iotgw/iotgw/isp"
)

// ChangeFilter decides, poll by poll, whether a register's value is worth reporting: report on change, with an
// absolute deadband for numbers, and a forced report every so many polls so that consumers can tell a steady value
// from a dead device (a point not reported for ForceEvery polls is stale). Keep one per register; the zero value
// reports every change and never forces.
//
// A change is measured from the last reported value, not the last polled one, so a slow drift in steps smaller than
// the deadband is still reported once it adds up.
type ChangeFilter struct {
	// Deadband is the absolute change a number must exceed to be reported; 0 reports any change.
	Deadband float64
	// ForceEvery reports the value on the ForceEvery-th poll after the last report even if it has not changed;
	// 0 never forces. With polls every second and ForceEvery 60, a steady value is sent once a minute.
	ForceEvery int

	last    isp.Value
	quality int
	polls   int  // polls since the last report
	primed  bool // a value has been reported
}

// Report tells whether the value polled now, with its quality, should be reported, and if so remembers it. The first
// value, any change of quality or kind, a number beyond the deadband, any other change of a bool or string, and a
// forced report are reported.
func (f *ChangeFilter) Report(v isp.Value, quality int) bool {
	f.polls++
	if f.primed && quality == f.quality && !f.changed(v) && (f.ForceEvery <= 0 || f.polls < f.ForceEvery) {
		return false
	}
	f.last, f.quality, f.polls, f.primed = v, quality, 0, true
	return true
}

// Reset forgets the last report, so the next value is reported whatever it is (after a reconnect, say).
func (f *ChangeFilter) Reset() { f.last, f.quality, f.polls, f.primed = isp.Value{}, 0, 0, false }

func (f *ChangeFilter) changed(v isp.Value) bool {
	if v.Kind() != f.last.Kind() {
		return true
	}
	switch v.Kind() {
	case isp.KindFloat, isp.KindInt:
		if v.Kind() == isp.KindInt && f.Deadband == 0 {
			a, _ := v.Int()
			b, _ := f.last.Int()
			return a != b // exact, also beyond 2^53
		}
		a, _ := v.Float()
		b, _ := f.last.Float()
		if math.IsNaN(a) || math.IsNaN(b) {
			return math.IsNaN(a) != math.IsNaN(b)
		}
		if math.IsInf(a, 0) || math.IsInf(b, 0) {
			return a != b
		}
		return math.Abs(a-b) > f.Deadband
	case isp.KindBool:
		a, _ := v.Bool()
		b, _ := f.last.Bool()
		return a != b
	case isp.KindString:
		a, _ := v.Str()
		b, _ := f.last.Str()
		return a != b
	}
	return false
}
