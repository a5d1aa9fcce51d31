package config_test

// The file sink keeps its schema in its own folder (actors/sink/file), and the shipped gateway.hcl has a file
// sink block: this blank import registers that schema for TestShippedGatewayHCL, as kinds_test.go registers the
// schemas that live here. An external test package, so that importing the sink (which imports config) is no
// cycle.
import _ "github.com/iotgw/iotgw/actors/sink/file"
