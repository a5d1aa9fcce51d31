package config

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// DriverSettings is what a device driver reads from its block. The value returned by the driver's
// constructor is decoded with gohcl (so it must be a pointer to a struct with `hcl` tags, pre-filled with its
// defaults); Validate then checks it, fills the defaults that depend on what was written and resolves
// durations, reporting each problem through v.
type DriverSettings interface{ Validate(v *Validator) }

// SinkSettings is DriverSettings for sinks.
type SinkSettings interface{ Validate(v *Validator) }

// The registries are written only by init functions, then only read. A kind registers in its own package, once,
// with actors.RegisterDevice or actors.RegisterSink, which hand its schema to RegisterDriver or RegisterSink
// here: this package decodes blocks and must not import the actors (DESIGN.md's arrows), so it keeps the
// schema half of the registration and the actors package the whole.
var (
	drivers   = map[string]func() DriverSettings{}
	sinkTypes = map[string]func() SinkSettings{}
)

// RegisterDriver makes a device driver known: `driver = name` in a device block decodes into newSettings().
// It is meant for init functions and panics on a duplicate name or settings gohcl cannot decode into.
func RegisterDriver(name string, newSettings func() DriverSettings) {
	if _, dup := drivers[name]; dup {
		panic(fmt.Sprintf("config: driver %q registered twice", name))
	}
	mustBeStructPointer("driver", name, newSettings())
	drivers[name] = newSettings
}

// RegisterSink makes a sink type known: `type = name` in a sink block decodes into newSettings().
// It is meant for init functions and panics on a duplicate name or settings gohcl cannot decode into.
func RegisterSink(name string, newSettings func() SinkSettings) {
	if _, dup := sinkTypes[name]; dup {
		panic(fmt.Sprintf("config: sink type %q registered twice", name))
	}
	mustBeStructPointer("sink type", name, newSettings())
	sinkTypes[name] = newSettings
}

// Drivers returns the registered driver names, sorted.
func Drivers() []string { return sortedKeys(drivers) }

// SinkTypes returns the registered sink types, sorted.
func SinkTypes() []string { return sortedKeys(sinkTypes) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func mustBeStructPointer(kind, name string, v any) {
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct || reflect.ValueOf(v).IsNil() {
		panic(fmt.Sprintf("config: %s %q: settings must be a non-nil pointer to a struct, got %T", kind, name, v))
	}
}

// oneOf formats a list of choices for an error message: "a, b, c".
func oneOf(choices []string) string { return strings.Join(choices, ", ") }

// isOneOf reports whether s is one of the choices.
func isOneOf(s string, choices []string) bool { return slices.Contains(choices, s) }

// commonDevice checks the attributes every driver reads with the same meaning (a driver must keep them so), in a
// device block whose driver is unknown: interval, a duration of at least 1ms, and tags, a map of strings.
var commonDevice = map[string]func(v *Validator, expr hcl.Expression, ctx *hcl.EvalContext, diags *hcl.Diagnostics){
	"interval": func(v *Validator, expr hcl.Expression, ctx *hcl.EvalContext, diags *hcl.Diagnostics) {
		var text string
		if d := gohcl.DecodeExpression(expr, ctx, &text); d.HasErrors() {
			*diags = append(*diags, d...)
			return
		}
		minDuration(v, "interval", text, time.Millisecond)
	},
	"tags": func(_ *Validator, expr hcl.Expression, ctx *hcl.EvalContext, diags *hcl.Diagnostics) {
		var tags map[string]string
		*diags = append(*diags, gohcl.DecodeExpression(expr, ctx, &tags)...)
	},
}

// checkWithoutKind reports what can be checked in a block whose kind (driver, sink type) is unknown or missing,
// so that `validate` lists the block's other problems beside it: every expression must evaluate (an env() with
// bad arguments, an unknown variable or function), and a device's common attributes must be well formed. The
// block's id, and whether it is a duplicate, are checked by the caller as for any block.
func checkWithoutKind(body hcl.Body, ctx *hcl.EvalContext, v *Validator, kindAttr string, device bool, diags *hcl.Diagnostics) {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return
	}
	evalAll(sb, ctx, func(a *hclsyntax.Attribute) bool {
		if a.Name == kindAttr { // reported already
			return true
		}
		if check := commonDevice[a.Name]; device && check != nil {
			check(v, a.Expr, ctx, diags)
			return true
		}
		return false
	}, diags)
}

// evalAll evaluates every attribute of body and of its nested blocks in source order, but those of body that
// checked reports it has checked itself.
func evalAll(body *hclsyntax.Body, ctx *hcl.EvalContext, checked func(*hclsyntax.Attribute) bool, diags *hcl.Diagnostics) {
	attrs := make([]*hclsyntax.Attribute, 0, len(body.Attributes))
	for _, a := range body.Attributes {
		attrs = append(attrs, a)
	}
	slices.SortFunc(attrs, func(a, b *hclsyntax.Attribute) int { return a.SrcRange.Start.Byte - b.SrcRange.Start.Byte })
	for _, a := range attrs {
		if checked != nil && checked(a) {
			continue
		}
		_, d := a.Expr.Value(ctx)
		*diags = append(*diags, d...)
	}
	for _, b := range body.Blocks {
		evalAll(b.Body, ctx, nil, diags)
	}
}
