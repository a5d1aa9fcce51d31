// Package bench holds iotgw's end-to-end benchmarks: points from a device through the bus and the processing stage
// to a counting sink, beside the raw NATS rate measured in the same run on the same machine. The figures and the
// report they write (REPORT.md, linked from the README) are how performance is judged here; no test asserts a
// time.
//
//	go test -run '^$' -bench . -benchtime 200000x ./bench/      # print the figures
//	IOTGW_BENCH_REPORT=1 go test -run TestReport -v ./bench/    # also write bench/REPORT.md
package bench

import (
	"net"
	"sort"
	"syscall"
	"time"
)

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// percentile of sorted-in-place samples, p in 0..100.
func percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	i := int(float64(len(samples)-1) * p / 100)
	return samples[i]
}

// freePort is a free TCP port on loopback.
func freePort(tb interface{ Fatal(...any) }) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
