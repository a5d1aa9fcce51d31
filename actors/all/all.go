// Package all plugs in every kind the gateway is built with: each blank import runs the kind's init, which
// registers its schema and its actor (actors.RegisterDevice, actors.RegisterSink). Adding a kind is its folder
// and one line here; the runtime imports this package and never names a kind.
package all

import (
	_ "github.com/iotgw/iotgw/actors/device/http"
	_ "github.com/iotgw/iotgw/actors/device/mock"
	_ "github.com/iotgw/iotgw/actors/device/modbus"
	_ "github.com/iotgw/iotgw/actors/device/mqtt"
	_ "github.com/iotgw/iotgw/actors/device/opcua"
	_ "github.com/iotgw/iotgw/actors/sink/console"
	_ "github.com/iotgw/iotgw/actors/sink/file"
	_ "github.com/iotgw/iotgw/actors/sink/influxdb"
	_ "github.com/iotgw/iotgw/actors/sink/jetstream"
	_ "github.com/iotgw/iotgw/actors/sink/mqtt"
	_ "github.com/iotgw/iotgw/actors/sink/redis"
)
