package system

import (
	"os"
	"strings"
	"testing"

	"github.com/iotgw/iotgw/config"
)

// TestGatewayHCLSouthboundExamples: the commented-out mqtt and http device blocks of gateway.hcl, uncommented,
// are valid config: what an operator copies must work.
func TestGatewayHCLSouthboundExamples(t *testing.T) {
	data, err := os.ReadFile("../gateway.hcl")
	if err != nil {
		t.Fatal(err)
	}
	for _, first := range []string{`# device "plant-mqtt" {`, `# device "weather" {`, `# device "meter-push" {`} {
		t.Run(first, func(t *testing.T) {
			_, rest, ok := strings.Cut(string(data), "\n"+first+"\n")
			if !ok {
				t.Fatalf("gateway.hcl has no block %s", first)
			}
			body, _, ok := strings.Cut(rest, "\n# }\n")
			if !ok {
				t.Fatalf("block %s is not closed by a line \"# }\"", first)
			}
			var sb strings.Builder
			for _, line := range strings.Split(strings.TrimPrefix(first, "# ")+"\n"+body+"\n}", "\n") {
				line = strings.TrimPrefix(line, "#")
				sb.WriteString(strings.TrimPrefix(line, " ") + "\n")
			}
			if _, diags := config.Parse([]byte(sb.String()), "gateway.hcl"); diags.HasErrors() {
				t.Fatalf("%s\n%s", diags.Error(), sb.String())
			}
		})
	}
}
