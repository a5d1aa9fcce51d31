// Package modbussim is a Modbus TCP server whose registers follow signals
// (sine, ramp, random, counter, …) and which injects faults on demand
// (exceptions, delays, dropped connections, corrupt frames, silence, wrong
// transaction ids). It is the device that `iotgw sim modbus` runs, that the
// out-of-the-box gateway.hcl polls (see [Demo] for its register map), and the
// target of the gateway's fault-injection tests.
//
// The simulator works on raw 16-bit registers and bits and encodes its
// signals itself, so it stays independent of the gateway's own Modbus codec
// (sidecar/modbus): a bug there cannot hide behind the same bug here.
//
// It must never import the runtime (system/, actors/) nor any Modbus
// library: it is a standalone device, and its wire code is its own.
//
// Hostile input is part of its job: a frame with a bad protocol id, a length
// outside 2..260, a truncated header or garbage closes that one connection;
// it never panics and never disturbs other connections.
package modbussim
