package system

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hashicorp/hcl/v2/hclwrite"
)

// ruleBlocks are the nested blocks of a rule block in a JSON request.
var ruleBlocks = blockKinds{labeled: map[string]bool{"derive": true}, unlabeled: map[string]bool{"match": true}}

var errRuleJSON = errors.New(`want {"name": "…", "type": "…", …} or the HCL text of a rule block`)

// ruleHCL turns a JSON rule request, {"name":"hot","type":"alert","when":"value > 85","match":{"keys":["t"]}},
// into the HCL text of the same rule block (as deviceHCL does for devices), so it is validated by the same code as
// the file; positions in the diagnostics then refer to this text, which the error reply includes.
func ruleHCL(body []byte) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, fmt.Errorf("%w: %v", errRuleJSON, err)
	}
	var name string
	if err := json.Unmarshal(obj["name"], &name); err != nil || name == "" {
		return nil, fmt.Errorf("%w: missing \"name\"", errRuleJSON)
	}
	delete(obj, "name")
	f := hclwrite.NewEmptyFile()
	if err := writeBody(f.Body().AppendNewBlock("rule", []string{name}).Body(), obj, ruleBlocks); err != nil {
		return nil, err
	}
	return f.Bytes(), nil
}
