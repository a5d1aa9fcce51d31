package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// CommentedBlock returns the block of the repository's gateway.hcl that starts with the commented line
// `# {header} {` and ends at its `# }`, uncommented one level (a line `#   # x` stays a comment), so a test can
// check that a documented example block that needs a server is valid config.
func CommentedBlock(t testing.TB, header string) string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(here), "..", "..", "gateway.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	start := -1
	for i, l := range lines {
		if l == "# "+header+" {" {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatalf("gateway.hcl has no line %q", "# "+header+" {")
	}
	var sb strings.Builder
	for _, l := range lines[start:] {
		if !strings.HasPrefix(l, "#") {
			t.Fatalf("gateway.hcl: block %s ends without its \"# }\" line", header)
		}
		l = strings.TrimPrefix(strings.TrimPrefix(l, "#"), " ")
		sb.WriteString(l + "\n")
		if l == "}" {
			return sb.String()
		}
	}
	t.Fatalf("gateway.hcl: block %s is not closed", header)
	return ""
}
