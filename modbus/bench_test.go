package modbus

import (
	"fmt"
	"testing"

	"github.com/iotgw/iotgw/isp"
)

// BenchmarkDecodePoll decodes one poll of the 30-register power meter: every request's answer, every field.
// It must not allocate (the map has one string register; the benchmark leaves it out so allocs/op stays the
// numeric path's, which is what a poll of numbers costs).
func BenchmarkDecodePoll(b *testing.B) {
	var regs []Register
	for _, r := range powerMeter() {
		if r.Type != TypeString {
			regs = append(regs, r)
		}
	}
	for len(regs) < 30 {
		r := regs[0]
		r.Key, r.Address = fmt.Sprintf("extra%d", len(regs)), 600+uint16(2*len(regs))
		regs = append(regs, r)
	}
	reqs, err := Plan(regs, PlanOptions{})
	if err != nil {
		b.Fatal(err)
	}
	resps := make([][]byte, len(reqs))
	for i, q := range reqs {
		resps[i] = make([]byte, q.ResponseLen())
		for j := range resps[i] {
			resps[i][j] = byte(0x41 + i + j)
		}
	}
	out := make([]isp.Value, len(regs))
	bad := 0
	emit := func(i int, v isp.Value, err error) {
		out[i] = v
		if err != nil {
			bad++
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for i := range reqs {
			if err := reqs[i].Decode(regs, resps[i], emit); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	perPoll := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(perPoll/float64(len(regs)), "ns/point")
	b.ReportMetric(float64(testing.AllocsPerRun(100, func() {
		for i := range reqs {
			_ = reqs[i].Decode(regs, resps[i], emit)
		}
	}))/float64(len(regs)), "allocs/point")
	b.ReportMetric(1e9/perPoll*float64(len(regs)), "points/s")
}

func BenchmarkPlan(b *testing.B) {
	for _, n := range []int{30, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			regs := make([]Register, n)
			for i := range regs {
				typ := []Type{TypeUint16, TypeFloat32, TypeInt32, TypeFloat64}[i%4]
				regs[i] = Register{Key: fmt.Sprintf("r%d", i), SlaveID: uint8(i % 4), Function: uint8(3 + i%2),
					Address: uint16((i * 7919) % 20000), Type: typ, Bit: NoBit}
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Plan(regs, PlanOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/register")
		})
	}
}
