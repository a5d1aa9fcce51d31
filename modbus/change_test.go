package modbus

import (
	"math"
	"testing"

	"github.com/iotgw/iotgw/isp"
)

func TestChangeFilter(t *testing.T) {
	type poll struct {
		v       isp.Value
		quality int
		want    bool
	}
	good := isp.QualityGood
	tests := []struct {
		name   string
		filter ChangeFilter
		polls  []poll
	}{
		{"zero value reports every change", ChangeFilter{}, []poll{
			{isp.Int(1), good, true}, {isp.Int(1), good, false}, {isp.Int(2), good, true}, {isp.Int(2), good, false},
		}},
		{"deadband is exclusive", ChangeFilter{Deadband: 0.5}, []poll{
			{isp.Float(20), good, true}, {isp.Float(20.5), good, false}, {isp.Float(19.5), good, false},
			{isp.Float(20.6), good, true},
		}},
		{"drift adds up from the last report", ChangeFilter{Deadband: 1}, []poll{
			{isp.Float(10), good, true}, {isp.Float(10.4), good, false}, {isp.Float(10.8), good, false},
			{isp.Float(11.2), good, true}, {isp.Float(11.6), good, false},
		}},
		{"ints against a deadband", ChangeFilter{Deadband: 2}, []poll{
			{isp.Int(100), good, true}, {isp.Int(102), good, false}, {isp.Int(97), good, true},
		}},
		{"forced every 3 polls", ChangeFilter{ForceEvery: 3}, []poll{
			{isp.Int(7), good, true}, {isp.Int(7), good, false}, {isp.Int(7), good, false}, {isp.Int(7), good, true},
			{isp.Int(7), good, false}, {isp.Int(8), good, true}, {isp.Int(8), good, false}, {isp.Int(8), good, false},
			{isp.Int(8), good, true},
		}},
		{"quality change is reported", ChangeFilter{Deadband: 100}, []poll{
			{isp.Float(1), good, true}, {isp.Float(1), isp.QualityBad, true}, {isp.Float(1), isp.QualityBad, false},
			{isp.Float(1), good, true},
		}},
		{"kind change is reported", ChangeFilter{}, []poll{
			{isp.Int(1), good, true}, {isp.Float(1), good, true}, {isp.Null(), good, true}, {isp.Null(), good, false},
		}},
		{"bools and strings", ChangeFilter{Deadband: 5}, []poll{
			{isp.Bool(false), good, true}, {isp.Bool(false), good, false}, {isp.Bool(true), good, true},
			{isp.String("a"), good, true}, {isp.String("a"), good, false}, {isp.String("b"), good, true},
		}},
		{"NaN and Inf", ChangeFilter{Deadband: 1}, []poll{
			{isp.Float(math.NaN()), isp.QualityBad, true}, {isp.Float(math.NaN()), isp.QualityBad, false},
			{isp.Float(math.Inf(1)), isp.QualityBad, true}, {isp.Float(math.Inf(1)), isp.QualityBad, false},
			{isp.Float(1), isp.QualityBad, true},
		}},
		{"exact beyond 2^53", ChangeFilter{}, []poll{
			{isp.Int(1 << 60), good, true}, {isp.Int(1<<60 + 1), good, true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.filter
			for i, p := range tc.polls {
				if got := f.Report(p.v, p.quality); got != p.want {
					t.Fatalf("poll %d (%v, quality %d): got %v, want %v", i, p.v, p.quality, got, p.want)
				}
			}
		})
	}
	t.Run("reset", func(t *testing.T) {
		var f ChangeFilter
		f.Report(isp.Int(1), good)
		f.Reset()
		if !f.Report(isp.Int(1), good) {
			t.Fatal("got false after Reset, want true")
		}
	})
}
