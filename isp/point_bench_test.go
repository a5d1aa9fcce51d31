package isp

import (
	"encoding/json"
	"runtime"
	"strconv"
	"testing"
)

// benchBatch is a poll of n registers of one device, as a Modbus sidecar sends it.
func benchBatch(n int) []Point {
	pts := make([]Point, n)
	for i := range pts {
		pts[i] = Point{
			DeviceID:  "plc-01",
			Key:       "reg" + strconv.Itoa(i),
			Value:     Float(20 + float64(i)/10 + 0.03),
			Type:      "float32",
			Quality:   QualityGood,
			Timestamp: 1751200001000000000 + int64(i),
			Tags:      []Tag{{"unit", "°C"}, {"line", "A"}},
			Source:    "modbus",
		}
	}
	return pts
}

var benchSizes = []int{1, 10, 100}

// perPoint reports ns, allocations and bytes per point; run between b.ResetTimer and the end of the loop.
type perPoint struct {
	points int
	ms     runtime.MemStats
}

func startPerPoint(b *testing.B, points int) *perPoint {
	b.ReportAllocs()
	pp := &perPoint{points: points}
	runtime.ReadMemStats(&pp.ms)
	b.ResetTimer()
	return pp
}

func (pp *perPoint) stop(b *testing.B) {
	b.StopTimer()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	n := float64(b.N) * float64(pp.points)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/point")
	b.ReportMetric(float64(ms.Mallocs-pp.ms.Mallocs)/n, "allocs/point")
	b.ReportMetric(n/b.Elapsed().Seconds(), "points/s")
}

func BenchmarkAppendBatch(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("points="+strconv.Itoa(n), func(b *testing.B) {
			pts := benchBatch(n)
			buf := AppendBatch(nil, pts)
			b.SetBytes(int64(len(buf)))
			pp := startPerPoint(b, n)
			for range b.N {
				buf = AppendBatch(buf[:0], pts)
			}
			pp.stop(b)
		})
	}
}

func BenchmarkDecodeBatch(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("points="+strconv.Itoa(n), func(b *testing.B) {
			data := AppendBatch(nil, benchBatch(n))
			var d Decoder
			out, err := d.DecodeBatch(data, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			pp := startPerPoint(b, n)
			for range b.N {
				out, err = d.DecodeBatch(data, out)
			}
			pp.stop(b)
			if err != nil || len(out) != n {
				b.Fatalf("got %d points, %v", len(out), err)
			}
		})
	}
}

// BenchmarkDecodePoint is a bare point, as on iot.processed.{device}.{key}.
func BenchmarkDecodePoint(b *testing.B) {
	data := AppendPoint(nil, &benchBatch(1)[0])
	var d Decoder
	var p Point
	b.SetBytes(int64(len(data)))
	pp := startPerPoint(b, 1)
	for range b.N {
		if err := d.DecodePoint(data, &p); err != nil {
			b.Fatal(err)
		}
	}
	pp.stop(b)
}

// jsonPoint is the point as encoding/json sees it, for comparison.
type jsonPoint struct {
	DeviceID  string            `json:"device_id,omitempty"`
	Key       string            `json:"key"`
	Value     any               `json:"value"`
	Type      string            `json:"type,omitempty"`
	Quality   int               `json:"quality"`
	Timestamp int64             `json:"timestamp"`
	Tags      map[string]string `json:"tags,omitempty"`
	Source    string            `json:"source,omitempty"`
}

type jsonBatch struct {
	Points []jsonPoint `json:"points"`
}

func toJSONBatch(pts []Point) jsonBatch {
	out := jsonBatch{Points: make([]jsonPoint, len(pts))}
	for i, p := range pts {
		tags := make(map[string]string, len(p.Tags))
		for _, t := range p.Tags {
			tags[t.Key] = t.Value
		}
		out.Points[i] = jsonPoint{p.DeviceID, p.Key, p.Value.Any(), p.Type, p.Quality, p.Timestamp, tags, p.Source}
	}
	return out
}

func BenchmarkEncodingJSONMarshalBatch(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("points="+strconv.Itoa(n), func(b *testing.B) {
			batch := toJSONBatch(benchBatch(n))
			pp := startPerPoint(b, n)
			for range b.N {
				if _, err := json.Marshal(&batch); err != nil {
					b.Fatal(err)
				}
			}
			pp.stop(b)
		})
	}
}

func BenchmarkEncodingJSONUnmarshalBatch(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("points="+strconv.Itoa(n), func(b *testing.B) {
			data := AppendBatch(nil, benchBatch(n))
			pp := startPerPoint(b, n)
			for range b.N {
				var batch jsonBatch
				if err := json.Unmarshal(data, &batch); err != nil {
					b.Fatal(err)
				}
			}
			pp.stop(b)
		})
	}
}
