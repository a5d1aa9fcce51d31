package redis

import (
	"reflect"
	"testing"

	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/internal/testenv"
)

// TestGatewayHCLBlock: the commented redis block of gateway.hcl is valid config, and the values it shows are the
// defaults (the documentation says what a block without them does).
func TestGatewayHCLBlock(t *testing.T) {
	src := testenv.CommentedBlock(t, `sink "latest"`)
	cfg, diags := config.Parse([]byte(src), "gateway.hcl")
	if diags.HasErrors() {
		t.Fatalf("%s\n%s", diags.Error(), src)
	}
	got := cfg.Sinks[0].Settings.(*Settings)
	want := NewSettings().(*Settings)
	want.Address = got.Address
	want.opts = got.opts
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the documented block differs from the defaults:\n got %+v\nwant %+v", got, want)
	}
}
