// Package isp is the ISP wire protocol between the gateway and its sidecars, and the JSON shapes the gateway puts
// on the bus: data points and batches of them ({"points":[…]}, the DATA payload and the batch message alike).
//
// Points are encoded and decoded by a hand-written codec rather than encoding/json, because the hot path carries
// hundreds of thousands of points a second and reflection costs microseconds per point: AppendPoint and
// AppendBatch append to a caller's buffer, and a Decoder parses in one pass, reusing its scratch space and
// interning repeated strings, so a steady stream of batches decodes without allocating.
//
// isp is the bottom of the project: it imports nothing from the project and knows nothing of NATS or actors.
package isp
