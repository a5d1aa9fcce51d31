package mock

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
)

// TestTagsOneKeyOnce: a point tag and a device tag of the same name, and a unit beside a "unit" tag, give one
// key each in the point's JSON: the point's tag over the device's, the unit over both.
func TestTagsOneKeyOnce(t *testing.T) {
	m := &mock{cfg: &config.MockDevice{
		Tags:   map[string]string{"site": "plant-1", "line": "2", "unit": "K"},
		Points: []config.MockPoint{{Key: "temp", Unit: "°C", Tags: map[string]string{"site": "plant-9"}}},
	}}
	p := isp.Point{Key: "temp", Value: isp.Float(1), Tags: m.tags(0)}
	data := isp.AppendPoint(nil, &p)
	for _, key := range []string{`"site":`, `"unit":`, `"line":`} {
		if n := strings.Count(string(data), key); n != 1 {
			t.Errorf("%s has %s %d times, want once", data, key, n)
		}
	}
	var got struct{ Tags map[string]string }
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Tags["site"] != "plant-9" || got.Tags["unit"] != "°C" || got.Tags["line"] != "2" {
		t.Errorf("tags %v, want site=plant-9 (the point's), unit=°C (the point's unit), line=2", got.Tags)
	}
}
