package isp

import (
	"errors"
	"strings"
	"testing"
)

func TestValidToken(t *testing.T) {
	tests := []struct {
		name, s string
		want    string // "" for valid, else a part of the error
	}{
		{"plain", "plc-1", ""},
		{"underscore and digits", "Boiler_2", ""},
		{"longest", strings.Repeat("z", MaxTokenLen), ""},
		{"empty", "", "empty"},
		{"dot", "a.b", "separates subject tokens"},
		{"wildcard", "a*", "wildcard"},
		{"slash", "boiler/evil", "supervision tree"},
		{"space", "a b", "space character U+0020"},
		{"zero-width space", "watch\u200b", "U+200B"},
		{"right-to-left override", "ab\u202ecd", "invisible formatting character U+202E"},
		{"non-ASCII letter", "températur", "non-ASCII character U+00E9"},
		{"invalid UTF-8", "a\xff", "invalid UTF-8"},
		// 64 characters but more bytes: the old processor's count and config's disagreed here.
		{"64 runes of 2 bytes", strings.Repeat("é", 64), "non-ASCII"},
		{"too long", strings.Repeat("z", MaxTokenLen+1), "65 characters long, at most 64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidToken(tc.s)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("got %v, want nil", err)
			case tc.want != "" && (!errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want ErrInvalidToken containing %q", err, tc.want)
			}
		})
	}
}

// TestValidTokenLongInput: an error about a huge name does not repeat it whole.
func TestValidTokenLongInput(t *testing.T) {
	err := ValidToken(strings.Repeat("x", 5<<20) + ".")
	if err == nil {
		t.Fatal("got nil, want an error")
	}
	if len(err.Error()) > 300 {
		t.Errorf("error of %d bytes, want a short one", len(err.Error()))
	}
}
