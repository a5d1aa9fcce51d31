package actors

import "strings"

// Control subjects addressed to one gateway. Every control request (iot.control.…) reaches every gateway that
// subscribes to it: on a server or hub shared by several gateways (client mode, or leaves of one hub with
// allow_control) a plain request is answered by each of them and the requester keeps the first reply, and a
// device added that way is added to all. The same request on iot.control.gw.{gateway}.… is answered by that gateway
// alone, and a NATS permission on that prefix can give an operator one gateway and not the others.
//
// This follows how NATS's own service API addresses one instance ($SRV.PING.{name}.{id} beside $SRV.PING.{name});
// the plain subjects stay as the seed has them, for a gateway alone on its server.
const (
	ControlPrefix        = "iot.control."
	gatewayControlPrefix = ControlPrefix + "gw."
)

// GatewayControl returns subject, an iot.control.… subject, addressed to one gateway: iot.control.gw.{gateway}.….
// A subject outside iot.control. is returned as it is.
func GatewayControl(gateway, subject string) string {
	rest, ok := strings.CutPrefix(subject, ControlPrefix)
	if !ok {
		return subject
	}
	return gatewayControlPrefix + gateway + "." + rest
}

// LocalControl returns the plain control subject of subject: iot.control.X for iot.control.gw.{gateway}.X, and any
// other subject unchanged. A subject addressed to another gateway is returned unchanged too (no subscription of
// this gateway receives one).
func LocalControl(gateway, subject string) string {
	if rest, ok := strings.CutPrefix(subject, gatewayControlPrefix+gateway+"."); ok {
		return ControlPrefix + rest
	}
	return subject
}
