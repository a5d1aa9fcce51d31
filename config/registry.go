package config

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
)

// DriverSettings is what a device driver reads from its block. The value returned by the driver's
// constructor is decoded with gohcl (so it must be a pointer to a struct with `hcl` tags, pre-filled with its
// defaults); Validate then checks it, fills the defaults that depend on what was written and resolves
// durations, reporting each problem through v.
type DriverSettings interface{ Validate(v *Validator) }

// SinkSettings is DriverSettings for sinks.
type SinkSettings interface{ Validate(v *Validator) }

// The registries are written only by init functions (RegisterDriver, RegisterSink), then only read.
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
