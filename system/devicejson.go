package system

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Nested block types of a device block, labeled (`point "t" {…}`) or not (`serial {…}`). A JSON request writes a
// labeled block as an object of label → body.
var deviceBlocks = blockKinds{
	labeled:   map[string]bool{"point": true, "register": true, "group": true},
	unlabeled: map[string]bool{"serial": true},
}

// blockKinds are the nested block types of a block a JSON request describes (a device's, a rule's: rules_json.go).
type blockKinds struct{ labeled, unlabeled map[string]bool }

// errDeviceJSON is a JSON device request that is not an object with an "id".
var errDeviceJSON = errors.New(`want {"id": "…", "driver": "…", …} or the HCL text of a device block`)

// deviceHCL turns a JSON device request, {"id":"plc-9","driver":"mock","interval":"1s","point":{"t":{"signal":"sine"}}},
// into the HCL text of the same device block, so JSON and HCL requests are validated by the same code as
// gateway.hcl (config.ParseDevice) and give the same messages. Positions in those messages then refer to this
// text, which the error reply includes.
func deviceHCL(body []byte) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, fmt.Errorf("%w: %v", errDeviceJSON, err)
	}
	var id string
	if err := json.Unmarshal(obj["id"], &id); err != nil || id == "" {
		return nil, fmt.Errorf("%w: missing \"id\"", errDeviceJSON)
	}
	delete(obj, "id")
	f := hclwrite.NewEmptyFile()
	dev := f.Body().AppendNewBlock("device", []string{id}).Body()
	if err := writeBody(dev, obj, deviceBlocks); err != nil {
		return nil, err
	}
	return f.Bytes(), nil
}

func writeBody(b *hclwrite.Body, obj map[string]json.RawMessage, kinds blockKinds) error {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys) // attributes in a stable order; "driver" first reads best
	first := func(k string) bool { return k == "driver" || k == "type" }
	sort.SliceStable(keys, func(i, j int) bool { return first(keys[i]) && !first(keys[j]) })
	for _, k := range keys {
		raw := obj[k]
		switch {
		case kinds.labeled[k]:
			var byLabel map[string]map[string]json.RawMessage
			if err := json.Unmarshal(raw, &byLabel); err != nil {
				return fmt.Errorf("%q: want an object of name → block: %v", k, err)
			}
			labels := make([]string, 0, len(byLabel))
			for l := range byLabel {
				labels = append(labels, l)
			}
			sort.Strings(labels)
			for _, l := range labels {
				if err := writeBody(b.AppendNewBlock(k, []string{l}).Body(), byLabel[l], kinds); err != nil {
					return fmt.Errorf("%s %q: %w", k, l, err)
				}
			}
		case kinds.unlabeled[k]:
			var inner map[string]json.RawMessage
			if err := json.Unmarshal(raw, &inner); err != nil {
				return fmt.Errorf("%q: want an object: %v", k, err)
			}
			if err := writeBody(b.AppendNewBlock(k, nil).Body(), inner, kinds); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		default:
			v, err := ctyValue(raw)
			if err != nil {
				return fmt.Errorf("%q: %v", k, err)
			}
			b.SetAttributeValue(k, v)
		}
	}
	return nil
}

func ctyValue(raw json.RawMessage) (cty.Value, error) {
	raw = bytes.TrimSpace(raw)
	t, err := ctyjson.ImpliedType(raw)
	if err != nil {
		return cty.NilVal, err
	}
	return ctyjson.Unmarshal(raw, t)
}
