package config

import (
	"strings"
	"testing"
)

// gateway.memory_limit is a size; unset is 0 (no limit); 0, a negative or a malformed size is refused at the value.
func TestGatewayMemoryLimit(t *testing.T) {
	cfg, diags := Parse([]byte("gateway {\n  memory_limit = \"96MB\"\n}\n"), "t.hcl")
	if diags.HasErrors() {
		t.Fatalf("parse: %v", diags)
	}
	if got, want := cfg.Gateway.MemoryLimit, int64(96<<20); got != want {
		t.Fatalf("memory_limit = %d, want %d", got, want)
	}
	cfg, diags = Parse([]byte("gateway {\n}\n"), "t.hcl")
	if diags.HasErrors() {
		t.Fatalf("parse: %v", diags)
	}
	if cfg.Gateway.MemoryLimit != 0 {
		t.Fatalf("memory_limit unset = %d, want 0", cfg.Gateway.MemoryLimit)
	}
	for _, bad := range []string{`"0MB"`, `"lots"`, `"-5MB"`} {
		_, diags := Parse([]byte("gateway {\n  memory_limit = "+bad+"\n}\n"), "t.hcl")
		if !diags.HasErrors() || !strings.Contains(diags.Error(), "memory_limit") {
			t.Errorf("memory_limit = %s: %v, want an error at memory_limit", bad, diags)
		}
	}
}
