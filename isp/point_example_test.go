package isp_test

import (
	"errors"
	"fmt"

	"github.com/iotgw/iotgw/isp"
)

func ExampleAppendBatch() {
	points := []isp.Point{
		{DeviceID: "plc-1", Key: "temperature", Value: isp.Float(25.5), Type: "float32", Quality: isp.QualityGood,
			Timestamp: 1751200001000000000, Tags: []isp.Tag{{Key: "unit", Value: "°C"}}},
		{DeviceID: "plc-1", Key: "running", Value: isp.Bool(true), Quality: isp.QualityGood, Timestamp: 1751200001000000000},
	}
	var buf []byte // keep it between calls: appending into its capacity does not allocate
	buf = isp.AppendBatch(buf[:0], points)
	fmt.Println(string(buf))
	// Output:
	// {"points":[{"device_id":"plc-1","key":"temperature","value":25.5,"type":"float32","quality":1,"timestamp":1751200001000000000,"tags":{"unit":"°C"}},{"device_id":"plc-1","key":"running","value":true,"quality":1,"timestamp":1751200001000000000}]}
}

func ExampleDecoder() {
	var dec isp.Decoder // one per stream, kept between messages
	var points []isp.Point
	for _, msg := range []string{
		`{"points":[{"key":"temperature","value":25.5,"tags":{"unit":"°C"}},{"key":"count","value":42}]}`,
		`{"points":[{"key":"temperature","value":"n/a","quality":0}]}`,
		`{"points":[{"key":"temperature","quality":"good"}]}`,
	} {
		var err error
		points, err = dec.DecodeBatch([]byte(msg), points) // reuses the points of the last call
		if errors.Is(err, isp.ErrType) {
			fmt.Println(err)
			continue
		}
		for _, p := range points {
			fmt.Println(p.Key, p.Value, p.Value.Kind(), p.Quality, p.Tags)
		}
	}
	// Output:
	// temperature 25.5 float 1 [{unit °C}]
	// count 42 int 1 []
	// temperature "n/a" string 0 []
	// isp: point 0: field "quality": expected integer, got string at offset 42
}
