package payload

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/isp"
)

// BenchmarkMap: the mapper alone, on a message of n numeric fields, flattened and with field paths.
func BenchmarkMap(b *testing.B) {
	for _, n := range []int{1, 30} {
		var sb strings.Builder
		sb.WriteString(`{"ts":1700000000000,"data":{`)
		fields := make([]Field, n)
		for i := 0; i < n; i++ {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `"f%d":%d.25`, i, i)
			fields[i] = Field{Path: fmt.Sprintf("data.f%d", i)}
		}
		sb.WriteString(`}}`)
		msg := []byte(sb.String())
		for _, c := range []struct {
			name string
			spec Spec
		}{{"flattened", Spec{TimeField: "ts"}}, {"fields", Spec{Fields: fields, TimeField: "ts"}}} {
			b.Run(fmt.Sprintf("%s/fields=%d", c.name, n), func(b *testing.B) {
				m, err := New(c.spec)
				if err != nil {
					b.Fatal(err)
				}
				var dst []isp.Point
				now := time.Now()
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if dst, err = m.Map(dst[:0], msg, "", now); err != nil || len(dst) != n {
						b.Fatalf("%d points, %v", len(dst), err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/point")
			})
		}
	}
}
