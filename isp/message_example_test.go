package isp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/iotgw/iotgw/isp"
)

func ExampleLineReader() {
	in := `{"type":"CONFIG","id":"test-001","timestamp":1751200000000000000,"payload":{"mode":"tcp","registers":[]}}
{"type":"PING","id":"p-1"}
{"type":"DATA","timestamp":1751200001000000000,"payload":{"points":[{"key":"temperature","value":25.5,"quality":1}]}}
`
	lr := isp.NewLineReader(strings.NewReader(in), 0)
	var points []isp.Point
	for {
		m, err := lr.Next()
		var le *isp.LineError
		switch {
		case errors.As(err, &le):
			fmt.Println("bad line:", le) // a Client or Server answers it with an error RESPONSE to le.ID
			continue
		case err == io.EOF:
			return
		case err != nil:
			fmt.Println(err)
			return
		}
		if m.Type == isp.TypeData {
			points, _ = lr.DecodeData(m, points)
			fmt.Println(m.Type, points[0].Key, points[0].Value)
			continue
		}
		fmt.Println(m.Type, m.ID, string(m.Payload))
	}
	// Output:
	// CONFIG test-001 {"mode":"tcp","registers":[]}
	// bad line: isp: line 2 (id "p-1"): unknown message type "PING"
	// DATA temperature 25.5
}

type exampleSidecar struct{}

func (exampleSidecar) Configure(ctx context.Context, cfg isp.ConfigPayload) error {
	if cfg.Address == "" {
		return errors.New("no device address")
	}
	return nil
}

func (exampleSidecar) Status(ctx context.Context) any {
	return map[string]any{"connected": true}
}

func ExampleServer() {
	srv := isp.NewServer(isp.ServerConfig{Address: "127.0.0.1:0", Name: "example"}, exampleSidecar{})
	if err := srv.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop()

	c, err := isp.Dial(context.Background(), isp.ClientConfig{Address: srv.Addr().String()}, isp.ClientEvents{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_, err = c.Configure(context.Background(), isp.ConfigPayload{Mode: "tcp"})
	fmt.Println(err, errors.Is(err, isp.ErrRejected))
	status, err := c.Status(context.Background())
	fmt.Println(string(status.Payload), err)
	// Output:
	// isp: rejected by sidecar: no device address true
	// {"success":true,"name":"example","connected":true} <nil>
}
