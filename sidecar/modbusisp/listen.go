package modbusisp

import (
	"net"
	"strconv"

	"github.com/iotgw/iotgw/isp"
)

// DefaultListen is the address the reference sidecar listens on unless told otherwise: loopback on port, the
// ISP_PORT a gateway sets when it launches the sidecar, or on isp.DefaultPort when port is empty.
func DefaultListen(port string) string {
	if port == "" {
		port = strconv.Itoa(isp.DefaultPort)
	}
	return net.JoinHostPort("127.0.0.1", port)
}
