package influxdb

import (
	"testing"

	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/internal/testenv"
)

// TestGatewayHCLBlock: the commented influxdb block of gateway.hcl is valid config, and the values it shows are
// the defaults (the documentation says what a block without them does).
func TestGatewayHCLBlock(t *testing.T) {
	src := testenv.CommentedBlock(t, `sink "tsdb"`)
	cfg, diags := config.Parse([]byte(src), "gateway.hcl")
	if diags.HasErrors() {
		t.Fatalf("%s\n%s", diags.Error(), src)
	}
	got := cfg.Sinks[0].Settings.(*Settings)
	want := NewSettings().(*Settings)
	if got.Measurement != want.Measurement || got.Field != want.Field || got.Gzip != want.Gzip ||
		got.BatchSize != want.BatchSize || got.FlushInterval != want.FlushInterval || got.MaxAckPending != want.MaxAckPending ||
		got.Retry != want.Retry || got.MaxRetry != want.MaxRetry || got.Timeout != want.Timeout || got.v2 {
		t.Fatalf("the documented block differs from the defaults:\n got %+v\nwant %+v", got, want)
	}
}
