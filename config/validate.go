package config

import (
	"fmt"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Validator lets a block's Validate report problems at precise source positions without knowing HCL
// internals: at an attribute's value, at one element of a list, or at the block itself. It collects the
// diagnostics of the whole file, so validation reports every problem, not the first one.
type Validator struct {
	body  *hclsyntax.Body // nil when there is no block in the source (defaults only)
	def   hcl.Range       // where the block is defined: the fallback position
	what  string          // the block for messages: `device "plc-1"`, `point "temp"`, `nats block`
	label string          // the block's first label, if any
	diags *hcl.Diagnostics
}

func newValidator(block *hcl.Block, what string, diags *hcl.Diagnostics) *Validator {
	v := &Validator{def: block.DefRange, what: what, diags: diags}
	v.body, _ = block.Body.(*hclsyntax.Body)
	if len(block.Labels) > 0 {
		v.label = block.Labels[0]
	}
	return v
}

// Errorf reports an error at the value of attribute attr, or at the block's definition when attr is "" or not
// written in the block (a default value, or a missing required attribute).
func (v *Validator) Errorf(attr string, format string, args ...any) {
	v.errorAt(attr, v.rangeOf(attr), fmt.Sprintf(format, args...))
}

// ErrorfIndex is Errorf at the i-th element of attr when attr is written as a list ["a", "b"].
func (v *Validator) ErrorfIndex(attr string, i int, format string, args ...any) {
	rng := v.rangeOf(attr)
	if v.Has(attr) {
		if list, ok := v.body.Attributes[attr].Expr.(*hclsyntax.TupleConsExpr); ok && i >= 0 && i < len(list.Exprs) {
			rng = list.Exprs[i].Range()
		}
	}
	v.errorAt(attr, rng, fmt.Sprintf(format, args...))
}

func (v *Validator) errorAt(attr string, rng hcl.Range, detail string) {
	summary := "Invalid " + v.what
	if v.Has(attr) {
		summary = fmt.Sprintf("Invalid value for %q", attr)
	}
	v.add(summary, detail, rng)
}

// Has reports whether attribute attr is written in the block (so its value is not a default).
func (v *Validator) Has(attr string) bool {
	if v.body == nil || attr == "" {
		return false
	}
	_, ok := v.body.Attributes[attr]
	return ok
}

// Duration parses the text of a duration attribute ("250ms", "1m30s"), reporting a malformed or negative one at
// attr. ok is false when it reported a problem.
func (v *Validator) Duration(attr, text string) (d time.Duration, ok bool) {
	d, err := time.ParseDuration(text)
	if err != nil {
		v.Errorf(attr, "%s is not a duration: write a number and a unit (ns, us, ms, s, m, h), like \"250ms\" or \"1m30s\"", quote(text))
		return 0, false
	}
	if d < 0 {
		v.Errorf(attr, "%s is negative", quote(text))
		return 0, false
	}
	return d, true
}

// Block returns the validator of the first nested block typ with the given label ("" for an unlabeled
// block), such as Block("point", "temperature"). If there is none, problems are reported at this block.
func (v *Validator) Block(typ, label string) *Validator {
	for _, b := range v.Blocks(typ) {
		if label == "" || b.label == label {
			return b
		}
	}
	return &Validator{def: v.def, what: v.what, diags: v.diags}
}

// Blocks returns the validators of every nested block of type typ, in file order: the order of a gohcl
// `hcl:"typ,block"` slice decoded from the same body, so the i-th validator belongs to the i-th element.
func (v *Validator) Blocks(typ string) []*Validator {
	if v.body == nil {
		return nil
	}
	var out []*Validator
	for _, b := range v.body.Blocks {
		if b.Type != typ {
			continue
		}
		nv := &Validator{body: b.Body, def: b.DefRange(), what: typ + " block", diags: v.diags}
		if len(b.Labels) > 0 {
			nv.label = b.Labels[0]
			nv.what = fmt.Sprintf("%s %s", typ, quote(nv.label))
		}
		out = append(out, nv)
	}
	return out
}

// Label returns the block's first label ("temperature" for point "temperature"), or "".
func (v *Validator) Label() string { return v.label }

// DefRange returns where the block is defined, for messages that point somewhere else ("the first is at …").
func (v *Validator) DefRange() hcl.Range { return v.def }

func (v *Validator) rangeOf(attr string) hcl.Range {
	if v.Has(attr) {
		return v.body.Attributes[attr].Expr.Range()
	}
	return v.def
}

func (v *Validator) add(summary, detail string, rng hcl.Range) {
	*v.diags = append(*v.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   detail,
		Subject:  rng.Ptr(),
	})
}
