package isp

import (
	"reflect"
	"testing"
)

func TestMergeTags(t *testing.T) {
	tests := []struct {
		name          string
		device, point map[string]string
		unit          string
		want          []Tag
	}{
		{"none", nil, nil, "", nil},
		{"empty maps", map[string]string{}, map[string]string{}, "", nil},
		{"device only", map[string]string{"site": "a", "line": "2"}, nil, "", []Tag{{"line", "2"}, {"site", "a"}}},
		{"point only", nil, map[string]string{"zone": "z"}, "", []Tag{{"zone", "z"}}},
		{"unit only", nil, nil, "°C", []Tag{{"unit", "°C"}}},
		{"sorted across both", map[string]string{"b": "1"}, map[string]string{"a": "2", "c": "3"}, "",
			[]Tag{{"a", "2"}, {"b", "1"}, {"c", "3"}}},
		{"point over device", map[string]string{"site": "a", "zone": "d"}, map[string]string{"zone": "p"}, "",
			[]Tag{{"site", "a"}, {"zone", "p"}}},
		{"unit over a unit tag", map[string]string{"unit": "K"}, map[string]string{"unit": "F"}, "°C",
			[]Tag{{"unit", "°C"}}},
		{"unit tag kept without unit", map[string]string{"unit": "K"}, nil, "", []Tag{{"unit", "K"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := MergeTags(tc.device, tc.point, tc.unit); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
