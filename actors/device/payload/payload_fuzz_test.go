package payload

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/iotgw/iotgw/isp"
)

// FuzzMap: the mapper never panics, accepts a JSON document only when encoding/json does too, and every point it
// returns has a valid key and a value its type describes.
func FuzzMap(f *testing.F) {
	for _, s := range []string{`21.5`, `true`, `{"a":1,"b":{"c":[1,2.5,true]}}`, `{"value":1,"ts":1700000000000}`,
		`[[[[1]]]]`, `{"a":"\u00e9\n"}`, `{"a":1,}`, `-0.5e+3`, `{"s":"x"}`} {
		f.Add([]byte(s))
	}
	specs := []Spec{{Key: "k"}, {Fields: []Field{{Path: "a"}, {Path: "b.c.1", Type: "float64"}}, TimeField: "ts"}, {ValueField: "value", TimeField: "ts", Key: "k"}}
	mappers := make([]*Mapper, len(specs))
	for i, s := range specs {
		mappers[i], _ = New(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, m := range mappers {
			pts, err := m.Map(nil, data, "", arrival)
			if err == nil && len(data) > 0 && (trimSpace(data)[0] == '{' || trimSpace(data)[0] == '[') && !json.Valid(data) {
				t.Fatalf("accepted invalid JSON %q", data)
			}
			if errors.Is(err, ErrSyntax) && json.Valid(data) && m.spec.Format != FormatValue {
				t.Fatalf("refused valid JSON %q: %v", data, err)
			}
			for _, p := range pts {
				if err := isp.ValidToken(p.Key); err != nil {
					t.Fatalf("point key %q: %v", p.Key, err)
				}
				if p.Value.Kind().String() == "null" {
					t.Fatalf("null value in %+v", p)
				}
			}
		}
	})
}
