package opcua

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/actors/device"
	"github.com/iotgw/iotgw/config"
	"github.com/nats-io/nats.go"
)

// Writes and browsing run as tasks of the actor on the session's client (gopcua's client takes concurrent
// requests), so a slow server holds neither the actor's mailbox nor its reads; at most maxTasks run at once and a
// request past that is refused at once.

const (
	maxRequest = 4 << 10 // a write or browse request's body
	maxTasks   = 4

	defaultDepth    = 1
	maxDepth        = 10
	defaultMaxNodes = 1000
	maxMaxNodes     = 10000
)

// errBrowseRequest is the error of a malformed browse request.
var errBrowseRequest = errors.New("bad browse request")

// parseBrowseRequest reads and bounds a browse request: an empty body browses the Objects folder one level down.
func parseBrowseRequest(data []byte) (device.BrowseRequest, *ua.NodeID, error) {
	var req device.BrowseRequest
	if len(data) > maxRequest {
		return req, nil, fmt.Errorf("%w: %d bytes, at most %d", errBrowseRequest, len(data), maxRequest)
	}
	if len(bytes.TrimSpace(data)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return req, nil, fmt.Errorf(`%w: not {"node_id":…, "depth":…, "max_nodes":…}: %v`, errBrowseRequest, err)
		}
		if dec.More() {
			return req, nil, fmt.Errorf("%w: more than one JSON value", errBrowseRequest)
		}
	}
	switch {
	case req.Depth < 0 || req.Depth > maxDepth:
		return req, nil, fmt.Errorf("%w: depth %d: want 1..%d", errBrowseRequest, req.Depth, maxDepth)
	case req.MaxNodes < 0 || req.MaxNodes > maxMaxNodes:
		return req, nil, fmt.Errorf("%w: max_nodes %d: want 1..%d", errBrowseRequest, req.MaxNodes, maxMaxNodes)
	}
	if req.Depth == 0 {
		req.Depth = defaultDepth
	}
	if req.MaxNodes == 0 {
		req.MaxNodes = defaultMaxNodes
	}
	if req.NodeID == "" {
		req.NodeID = "i=" + strconv.Itoa(id.ObjectsFolder)
	}
	start, err := config.ParseNodeID(req.NodeID)
	if err != nil {
		return req, nil, fmt.Errorf("%w: node_id %q is not an OPC UA node id like \"ns=2;s=Line1\" or \"i=85\": %v",
			errBrowseRequest, req.NodeID, err)
	}
	return req, start, nil
}

// task runs fn as a task when the session is open and fewer than maxTasks run; otherwise it says why not.
func (d *opcuaDevice) task(ctx actor.Context, name string, fn func(c *opcua.Client) error) error {
	c := d.client
	if c == nil {
		return fmt.Errorf("not connected to %s: try again when the device is connected", d.cfg.Endpoint)
	}
	if d.tasks.Add(1) > maxTasks {
		d.tasks.Add(-1)
		return fmt.Errorf("%d requests running on this device: try again", maxTasks)
	}
	tasks := d.tasks
	if !d.workers.Task(ctx, name, func(<-chan struct{}) error {
		defer tasks.Add(-1)
		return fn(c)
	}) {
		tasks.Add(-1)
		return errors.New("the device is stopping")
	}
	return nil
}

func (d *opcuaDevice) browse(ctx actor.Context, msg *nats.Msg) {
	fail := func(err error) {
		actors.Respond(d.env.Log, msg, device.BrowseReply{Device: d.id, Error: err.Error()})
	}
	req, start, err := parseBrowseRequest(msg.Data)
	if err != nil {
		fail(err)
		return
	}
	parent := d.ctx
	if err := d.task(ctx, "browse", func(c *opcua.Client) error {
		bctx, cancel := context.WithTimeout(parent, 4*d.cfg.Timeout)
		defer cancel()
		reply := device.BrowseReply{OK: true, Device: d.id, NodeID: start.String()}
		var err error
		reply.Nodes, reply.Truncated, err = browseTree(bctx, c, start, req.Depth, req.MaxNodes)
		if err != nil {
			reply = device.BrowseReply{Device: d.id, NodeID: start.String(), Error: err.Error()}
		}
		actors.Respond(d.env.Log, msg, reply)
		return nil
	}); err != nil {
		fail(err)
	}
}

// browseTree walks the hierarchical references below start, breadth first, to depth levels and at most max nodes,
// then reads the data type of the variables it found. A start node the server does not know is an error.
func browseTree(ctx context.Context, c *opcua.Client, start *ua.NodeID, depth, max int) ([]device.BrowseNode, bool, error) {
	type item struct {
		id    *ua.NodeID
		path  string
		depth int
	}
	var out []device.BrowseNode
	var vars []int
	seen := map[string]bool{start.String(): true}
	level := []item{{id: start}}
	truncated := false
	for d := 1; d <= depth && len(level) > 0 && !truncated; d++ {
		var next []item
		for _, it := range level {
			refs, err := browseNode(ctx, c, it.id)
			if err != nil {
				if d == 1 {
					return nil, false, err
				}
				continue // a child that cannot be browsed further is still listed
			}
			for _, r := range refs {
				if r.NodeID == nil || r.NodeID.NodeID == nil {
					continue
				}
				nid := r.NodeID.NodeID.String()
				if seen[nid] {
					continue
				}
				if len(out) >= max {
					truncated = true
					break
				}
				seen[nid] = true
				name := qualified(r.BrowseName)
				path := name
				if it.path != "" {
					path = it.path + "/" + name
				}
				n := device.BrowseNode{NodeID: nid, BrowseName: name, Class: r.NodeClass.String(), Path: path, Depth: d}
				n.Class = strings.TrimPrefix(n.Class, "NodeClass")
				if r.DisplayName != nil {
					n.DisplayName = r.DisplayName.Text
				}
				if r.NodeClass == ua.NodeClassVariable {
					vars = append(vars, len(out))
				}
				out = append(out, n)
				next = append(next, item{id: r.NodeID.NodeID, path: path, depth: d})
			}
			if truncated {
				break
			}
		}
		level = next
	}
	if len(vars) > 0 {
		req := &ua.ReadRequest{}
		for _, i := range vars {
			nid, _ := ua.ParseNodeID(out[i].NodeID)
			req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: nid, AttributeID: ua.AttributeIDDataType})
		}
		if res, err := c.Read(ctx, req); err == nil && len(res.Results) == len(vars) {
			for j, i := range vars {
				if v := res.Results[j]; v != nil && v.Status == ua.StatusOK && v.Value != nil {
					out[i].DataType = dataTypeName(v.Value.NodeID())
				}
			}
		}
	}
	return out, truncated, nil
}

// browseNode returns the forward hierarchical references of one node, following continuation points.
func browseNode(ctx context.Context, c *opcua.Client, nid *ua.NodeID) ([]*ua.ReferenceDescription, error) {
	res, err := c.Browse(ctx, &ua.BrowseRequest{
		View:                          &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)},
		RequestedMaxReferencesPerNode: 0,
		NodesToBrowse: []*ua.BrowseDescription{{
			NodeID: nid, BrowseDirection: ua.BrowseDirectionForward,
			ReferenceTypeID: ua.NewNumericNodeID(0, id.HierarchicalReferences), IncludeSubtypes: true,
			NodeClassMask: 0, ResultMask: uint32(ua.BrowseResultMaskAll),
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("browse %s: %w", nid, err)
	}
	if len(res.Results) != 1 {
		return nil, fmt.Errorf("browse %s: %d results for 1 node", nid, len(res.Results))
	}
	r := res.Results[0]
	if r.StatusCode == ua.StatusBadNodeIDUnknown || r.StatusCode == ua.StatusBadNodeIDInvalid {
		return nil, fmt.Errorf("node %s does not exist on the server: %s", nid, statusName(r.StatusCode))
	}
	if r.StatusCode != ua.StatusOK {
		return nil, fmt.Errorf("browse %s: %s", nid, statusText(r.StatusCode))
	}
	refs := r.References
	cp := r.ContinuationPoint
	for pages := 0; len(cp) > 0 && pages < 100; pages++ {
		next, err := c.BrowseNext(ctx, &ua.BrowseNextRequest{ContinuationPoints: [][]byte{cp}})
		if err != nil || len(next.Results) != 1 {
			break
		}
		refs = append(refs, next.Results[0].References...)
		cp = next.Results[0].ContinuationPoint
	}
	if len(cp) > 0 { // give the server its continuation point back
		_, _ = c.BrowseNext(ctx, &ua.BrowseNextRequest{ReleaseContinuationPoints: true, ContinuationPoints: [][]byte{cp}})
	}
	return refs, nil
}

func qualified(q *ua.QualifiedName) string {
	if q == nil {
		return ""
	}
	if q.NamespaceIndex == 0 {
		return q.Name
	}
	return fmt.Sprintf("%d:%s", q.NamespaceIndex, q.Name)
}

// dataTypeName names a data type node: the built-in types by name (Double, Int32, …), others by node id.
func dataTypeName(nid *ua.NodeID) string {
	if nid == nil {
		return ""
	}
	if nid.Namespace() == 0 && nid.IntID() >= 1 && nid.IntID() <= 25 {
		return strings.TrimPrefix(ua.TypeID(nid.IntID()).String(), "TypeID")
	}
	return nid.String()
}

func (d *opcuaDevice) write(ctx actor.Context, msg *nats.Msg) {
	fail := func(format string, args ...any) {
		actors.Respond(d.env.Log, msg, device.WriteReply{Device: d.id, Error: fmt.Sprintf(format, args...)})
	}
	if len(msg.Data) > maxRequest {
		fail("request of %d bytes: at most %d", len(msg.Data), maxRequest)
		return
	}
	var req device.WriteRequest
	if err := json.Unmarshal(msg.Data, &req); err != nil {
		fail(`request is not {"key":…, "value":…}: %v`, err)
		return
	}
	i, ok := d.byKey[req.Key]
	if !ok {
		fail("no node %q on device %s", req.Key, d.id)
		return
	}
	n := &d.cfg.Nodes[i]
	if len(req.Value) == 0 {
		fail("value of %q: missing", req.Key)
		return
	}
	parent := d.ctx
	if err := d.task(ctx, "write", func(c *opcua.Client) error {
		wctx, cancel := context.WithTimeout(parent, 2*d.cfg.Timeout)
		defer cancel()
		value, err := writeNode(wctx, c, n.NodeID, func(t ua.TypeID) (*ua.Variant, any, error) { return writeVariant(n, req.Value, t) })
		if err != nil {
			err = fmt.Errorf("write %s (node %s): %w", req.Key, n.NodeIDText, err)
			d.event(Event{Kind: "write", Error: err.Error(), NodeID: n.NodeIDText, Keys: []string{req.Key}})
			actors.Respond(d.env.Log, msg, device.WriteReply{Device: d.id, Key: req.Key, Error: err.Error()})
			return nil
		}
		actors.Respond(d.env.Log, msg, device.WriteReply{OK: true, Device: d.id, Key: req.Key, Value: value})
		return nil
	}); err != nil {
		fail("%v", err)
	}
}

// writeNode writes a node's value as the type of its current value: OPC UA servers refuse a Double for a Float
// node (BadTypeMismatch), so the type is read first, then encode makes the variant.
func writeNode(ctx context.Context, c *opcua.Client, nid *ua.NodeID, encode func(ua.TypeID) (*ua.Variant, any, error)) (any, error) {
	res, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: nid, AttributeID: ua.AttributeIDValue}}})
	if err != nil {
		return nil, fmt.Errorf("read its type: %w", err)
	}
	if len(res.Results) != 1 || res.Results[0] == nil {
		return nil, errors.New("read its type: no result")
	}
	cur := res.Results[0]
	if cur.Status != ua.StatusOK && quality(cur.Status) == 0 {
		if cur.Status == ua.StatusBadNodeIDUnknown {
			return nil, fmt.Errorf("the node does not exist on the server: %s", statusName(cur.Status))
		}
		return nil, fmt.Errorf("read its type: %s", statusText(cur.Status))
	}
	if cur.Value == nil || cur.Value.Value() == nil {
		return nil, errors.New("the node has no value, so its type is unknown")
	}
	v, value, err := encode(cur.Value.Type())
	if err != nil {
		return nil, err
	}
	wres, err := c.Write(ctx, &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
		NodeID: nid, AttributeID: ua.AttributeIDValue,
		Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: v},
	}}})
	if err != nil {
		return nil, err
	}
	if len(wres.Results) != 1 {
		return nil, fmt.Errorf("%d results for 1 write", len(wres.Results))
	}
	if s := wres.Results[0]; s != ua.StatusOK {
		return nil, fmt.Errorf("the server refused it: %s", statusText(s))
	}
	return value, nil
}
