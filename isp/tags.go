package isp

import (
	"maps"
	"slices"
)

// MergeTags is the one way a point's tags are made from configuration: the device's tags, then the point's (a
// register's) over them, then unit (when not empty) as the tag "unit" over both, sorted by key. A key appears
// once: JSON with a key twice is read differently by different decoders. It returns nil when there are none.
//
// It allocates; callers compute a point's tags once, at configuration, and reuse them for every poll.
func MergeTags(device, point map[string]string, unit string) []Tag {
	m := make(map[string]string, len(device)+len(point)+1)
	maps.Copy(m, device)
	maps.Copy(m, point)
	if unit != "" {
		m["unit"] = unit
	}
	if len(m) == 0 {
		return nil
	}
	out := make([]Tag, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, Tag{Key: k, Value: m[k]})
	}
	return out
}
