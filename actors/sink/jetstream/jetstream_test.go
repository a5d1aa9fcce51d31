package jetstream

import (
	"testing"

	"github.com/iotgw/iotgw/config"
)

func TestSubjectCovers(t *testing.T) {
	for _, tc := range []struct {
		pattern, sub string
		want         bool
	}{
		{"iot.processed.batch.>", "iot.processed.batch.d1", true},
		{"iot.processed.batch.>", "iot.processed.batch.>", true},
		{"iot.processed.batch.>", "iot.processed.>", false},
		{"iot.alerts.*.d1", "iot.alerts.high.d1", true},
		{"iot.alerts.*.d1", "iot.alerts.*.d1", true},
		{"iot.alerts.*", "iot.alerts.>", false},
		{"iot.rules.>", "iot.rules", false},
		{"iot.a", "iot.a", true},
		{"iot.a", "iot.a.b", false},
	} {
		if got := SubjectCovers(tc.pattern, tc.sub); got != tc.want {
			t.Errorf("SubjectCovers(%q, %q) = %v, want %v", tc.pattern, tc.sub, got, tc.want)
		}
	}
}

// FuzzSubjectCovers: a pattern always covers itself, and never panics on anything.
func FuzzSubjectCovers(f *testing.F) {
	f.Add("iot.a.>", "iot.a.b")
	f.Add("*", ">")
	f.Add("", "..")
	f.Fuzz(func(t *testing.T, pattern, sub string) {
		_ = SubjectCovers(pattern, sub)
		if config.ValidSubject(pattern, true) == nil && !SubjectCovers(pattern, pattern) {
			t.Fatalf("%q does not cover itself", pattern)
		}
	})
}
