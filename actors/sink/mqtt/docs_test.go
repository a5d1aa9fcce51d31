package mqtt_test

import (
	"os"
	"strings"
	"testing"

	"github.com/iotgw/iotgw/config"
)

// TestGatewayHCLExample: the commented-out mqtt sink block of gateway.hcl, uncommented, is valid config.
func TestGatewayHCLExample(t *testing.T) {
	data, err := os.ReadFile("../../../gateway.hcl")
	if err != nil {
		t.Fatal(err)
	}
	const first = `# sink "plant-broker" {`
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
		sb.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "#"), " ") + "\n")
	}
	if _, diags := config.Parse([]byte(sb.String()), "gateway.hcl"); diags.HasErrors() {
		t.Fatalf("%s\n%s", diags.Error(), sb.String())
	}
}
