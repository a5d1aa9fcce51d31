package mock

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
	"github.com/rs/zerolog"
)

func actorsEnv() actors.Env { return actors.Env{Log: zerolog.Nop()} }

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

// The counter counts by one from min at every poll, and its count is the device's, not one incarnation's: a
// restarted actor (a new mock from the same producer) goes on where the last one stopped.
func TestCounterCountsPollsAcrossIncarnations(t *testing.T) {
	dev := config.Device{ID: "c", Settings: &config.MockDevice{Points: []config.MockPoint{
		{Key: "n", Signal: "counter", Type: "int64", Min: 5},
		{Key: "f", Signal: "counter", Type: "float64"},
	}}}
	producer := New(dev, actorsEnv())
	var got []int64
	for range 2 {
		m := producer().(*mock)
		for range 3 {
			v, _ := m.value(0, time.Now()).Int()
			got = append(got, v)
		}
	}
	if want := []int64{5, 6, 7, 8, 9, 10}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	m := producer().(*mock)
	if f, _ := m.value(1, time.Now()).Float(); f != 0 {
		t.Fatalf("the second point's counter got %v, want 0: each point counts its own polls", f)
	}
}
