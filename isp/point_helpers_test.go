package isp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// sameValue reports whether a and b are the same value, treating a whole Float and the Int it encodes to as
// equal: AppendPoint writes Float(25) as 25, which reads back as Int(25).
func sameValue(a, b Value) bool {
	if a.kind == b.kind {
		return a == b
	}
	if (a.kind == KindFloat && b.kind == KindInt) || (a.kind == KindInt && b.kind == KindFloat) {
		fa, _ := a.Float()
		fb, _ := b.Float()
		return fa == fb
	}
	return false
}

// samePoint compares two points field by field (values by sameValue, nil and empty tags alike) and says how
// they differ.
func samePoint(a, b *Point) error {
	switch {
	case a.DeviceID != b.DeviceID:
		return fmt.Errorf("device_id: %q vs %q", a.DeviceID, b.DeviceID)
	case a.Key != b.Key:
		return fmt.Errorf("key: %q vs %q", a.Key, b.Key)
	case !sameValue(a.Value, b.Value):
		return fmt.Errorf("value: %s (%s) vs %s (%s)", a.Value, a.Value.Kind(), b.Value, b.Value.Kind())
	case a.Type != b.Type:
		return fmt.Errorf("type: %q vs %q", a.Type, b.Type)
	case a.Quality != b.Quality:
		return fmt.Errorf("quality: %d vs %d", a.Quality, b.Quality)
	case a.Timestamp != b.Timestamp:
		return fmt.Errorf("timestamp: %d vs %d", a.Timestamp, b.Timestamp)
	case a.Source != b.Source:
		return fmt.Errorf("source: %q vs %q", a.Source, b.Source)
	case len(a.Tags) != len(b.Tags):
		return fmt.Errorf("tags: %v vs %v", a.Tags, b.Tags)
	}
	for i := range a.Tags {
		if a.Tags[i] != b.Tags[i] {
			return fmt.Errorf("tags: %v vs %v", a.Tags, b.Tags)
		}
	}
	return nil
}

// jsonObjects decodes data with encoding/json (numbers as json.Number) into the point objects it holds: the
// object itself, or the elements of its "points".
func jsonObjects(data []byte, batch bool) ([]map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var top map[string]any
	if err := dec.Decode(&top); err != nil {
		return nil, err
	}
	if !batch {
		return []map[string]any{top}, nil
	}
	list, _ := top["points"].([]any)
	out := make([]map[string]any, len(list))
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("points[%d] is %T", i, e)
		}
		out[i] = m
	}
	return out, nil
}

// agreesWithJSON checks a decoded point against encoding/json's reading of the same object.
func agreesWithJSON(p *Point, m map[string]any) error {
	str := func(field, got string) error {
		v, present := m[field]
		want, _ := v.(string)
		if (present && v != want) || got != want {
			return fmt.Errorf("%s: got %q, encoding/json %#v", field, got, v)
		}
		return nil
	}
	for field, got := range map[string]string{"device_id": p.DeviceID, "key": p.Key, "type": p.Type, "source": p.Source} {
		if err := str(field, got); err != nil {
			return err
		}
	}
	integer := func(field string, got, absent int64) error {
		v, present := m[field]
		if !present {
			if got != absent {
				return fmt.Errorf("%s: got %d, absent in input", field, got)
			}
			return nil
		}
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("%s: got %d, encoding/json %#v", field, got, v)
		}
		if want, err := n.Int64(); err != nil || want != got {
			return fmt.Errorf("%s: got %d, encoding/json %s", field, got, n)
		}
		return nil
	}
	if err := integer("quality", int64(p.Quality), QualityGood); err != nil {
		return err
	}
	if err := integer("timestamp", p.Timestamp, 0); err != nil {
		return err
	}
	if err := valueAgrees(p.Value, m["value"]); err != nil {
		return err
	}
	tags, _ := m["tags"].(map[string]any)
	if v, present := m["tags"]; present && v != nil && tags == nil {
		return fmt.Errorf("tags: encoding/json %#v", v)
	}
	if len(tags) != len(p.Tags) {
		return fmt.Errorf("tags: got %v, encoding/json %v", p.Tags, tags)
	}
	for k, v := range tags {
		if got, ok := p.Tag(k); !ok || v != got {
			return fmt.Errorf("tag %q: got %q, encoding/json %#v", k, got, v)
		}
	}
	return nil
}

func valueAgrees(v Value, j any) error {
	ok := false
	switch j := j.(type) {
	case nil:
		ok = v.Kind() == KindNull
	case bool:
		b, isBool := v.Bool()
		ok = v.Kind() == KindBool && isBool && b == j
	case string:
		s, _ := v.Str()
		ok = v.Kind() == KindString && s == j
	case json.Number:
		switch v.Kind() {
		case KindInt:
			i, _ := v.Int()
			ok = j.String() == strconv.FormatInt(i, 10) || (j.String() == "-0" && i == 0)
		case KindFloat:
			want, err := strconv.ParseFloat(j.String(), 64)
			got, _ := v.Float()
			ok = err == nil && (got == want || (math.IsNaN(got) && math.IsNaN(want)))
		}
	}
	if !ok {
		return fmt.Errorf("value: got %s (%s), encoding/json %#v", v, v.Kind(), j)
	}
	return nil
}
