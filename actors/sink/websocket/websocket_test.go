package websocket

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/iotgw/iotgw/config"
)

var data = []string{"iot.processed.>", "iot.rules.>", "iot.alerts.>", "iot.aggregated.>", "iot.errors.>", "iot.metrics.>"}

// An attacker with a valid non-admin login tries every way into what it may not read.
func TestCheckFilter(t *testing.T) {
	for _, tc := range []struct {
		filter  string
		allowed []string
		ok      bool
	}{
		{"iot.alerts.>", data, true},
		{"iot.alerts.critical.*", data, true},
		{"iot.processed.batch.plc-1", data, true},
		{">", data, false},
		{"iot.>", data, false},
		{"iot.*.>", data, false}, // would match iot.control.…
		{"*.control.>", data, false},
		{"iot.control.devices.list", data, false},
		{"iot.control.>", []string{">"}, false}, // a grant of > does not open the closed subjects
		{"$JS.API.>", []string{">"}, false},
		{"$SYS.>", []string{">"}, false},
		{"$KV.IOTGW_DEVICES.>", []string{">"}, false},
		{"_INBOX.>", []string{">"}, false},
		{"_INBOX.admin.*", []string{">"}, false},
		{"*.>", []string{">"}, false},
		{"iot.raw.modbus.plc-1", data, false}, // unvalidated input
		{"site.temps.>", []string{"site.>"}, true},
		{"iot..alerts", data, false},
		{"iot.alerts.>.x", data, false},
		{"iot.alerts. x", data, false},
		{"iot.alerts.\x00", data, false},
		{"", data, false},
		{strings.Repeat("a.", 200) + "b", []string{">"}, false},
	} {
		err := CheckFilter(tc.filter, tc.allowed)
		if (err == nil) != tc.ok {
			t.Errorf("CheckFilter(%q, %v) = %v, want ok %v", tc.filter, tc.allowed, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrFilter) {
			t.Errorf("CheckFilter(%q): %v is not an ErrFilter", tc.filter, err)
		}
	}
}

func TestOverlap(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"a.b", "a.b", true}, {"a.*", "a.b", true}, {"a.>", "a", false}, {"a.>", "a.b.c", true},
		{"a.*", "a.b.c", false}, {"*.b", "a.*", true}, {">", "x", true}, {"a.b", "a.c", false}, {"a.>", "*.>", true},
	} {
		if got := Overlap(tc.a, tc.b); got != tc.want {
			t.Errorf("Overlap(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := Overlap(tc.b, tc.a); got != tc.want {
			t.Errorf("Overlap(%q, %q) = %v, want %v (symmetric)", tc.b, tc.a, got, tc.want)
		}
	}
}

func TestAppendFrame(t *testing.T) {
	got := string(AppendFrame(nil, "iot.alerts.warning.d1", []byte(`{"event":"firing"}`)))
	if got != `{"subject":"iot.alerts.warning.d1","data":{"event":"firing"}}` {
		t.Errorf("frame %s", got)
	}
	got = string(AppendFrame(nil, "iot.x", []byte("not \"json\"\xff")))
	var f struct {
		Data string `json:"data"`
	}
	if err := json.Unmarshal([]byte(got), &f); err != nil || !strings.HasPrefix(f.Data, `not "json"`) {
		t.Errorf("frame %s: %v", got, err)
	}
}

// FuzzCheckFilter: no filter that could match a closed subject is ever accepted, even with a grant of >; any
// frame is valid JSON.
func FuzzCheckFilter(f *testing.F) {
	for _, s := range []string{"iot.alerts.>", "*.>", "iot.*.devices", "$JS.>", "_INBOX.x", "a..b", ">"} {
		f.Add(s, []byte(`{"a":1}`))
	}
	f.Fuzz(func(t *testing.T, filter string, body []byte) {
		if CheckFilter(filter, []string{">"}) == nil {
			if config.ValidSubject(filter, true) != nil {
				t.Fatalf("accepted invalid subject %q", filter)
			}
			for _, c := range Closed {
				probe := strings.TrimSuffix(c, ">") + "x"
				if Overlap(filter, probe) {
					t.Fatalf("accepted %q, which matches %s", filter, probe)
				}
			}
		}
		if !json.Valid(AppendFrame(nil, filter, body)) {
			t.Fatalf("frame of %q %q is not JSON", filter, body)
		}
	})
}
