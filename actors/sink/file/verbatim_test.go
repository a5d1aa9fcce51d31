package file

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// A sink that writes what write() makes of messages into a directory of its own, without an actor: the verbatim
// path against decoding, compared file by file.
type pathSink struct {
	k   *sink
	dir string
}

func newPathSink(t *testing.T, path string, decodeOnly bool) *pathSink {
	t.Helper()
	s := testSettings(t, func(s *Settings) { s.Path, s.Sync = path, SyncNever })
	dir := t.TempDir()
	now := func() time.Time { return time.Unix(1751200000, 0) } // one clock for both, for points without a timestamp
	k := newSink("files", s, actors.Env{Log: zerolog.Nop(), DataDir: dir}, now)
	k.base = s.tmpl.base(k.bind)
	k.w = newWriter(s, now, nil)
	k.decodeOnly = decodeOnly
	t.Cleanup(func() { _ = k.w.closeAll() })
	return &pathSink{k: k, dir: dir}
}

// files returns every file under the sink's directory and its contents, after a flush.
func (p *pathSink) files(t *testing.T) map[string]string {
	t.Helper()
	if err := p.k.w.flush(); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	err := filepath.Walk(p.dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		rel, _ := filepath.Rel(p.dir, path)
		got[rel] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func sameFiles(t *testing.T, got, want map[string]string) {
	t.Helper()
	var names []string
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(got) != len(want) {
		t.Fatalf("got %d files, want %d (%v)", len(got), len(want), names)
	}
	for _, n := range names {
		if got[n] != want[n] {
			t.Fatalf("%s: got\n%s\nwant\n%s", n, got[n], want[n])
		}
	}
}

// The jsonl files are the same whether the points are written as they are or decoded and encoded again: the
// processor's batches (which go verbatim), bare points, points without a device id or timestamp, a path with the
// date and hour of each point's timestamp, and batches in other forms (which are decoded).
func TestVerbatimWritesWhatDecodingWrites(t *testing.T) {
	pts := make([]isp.Point, 30)
	for i := range pts {
		pts[i] = isp.Point{DeviceID: "plc-" + strconv.Itoa(i%3), Key: "reg" + strconv.Itoa(i), Type: "float32",
			Value: isp.Float(float64(float32(20 + float64(i)/10))), Quality: 1, Source: "modbus",
			Timestamp: 1751200001000000000 + int64(i)*3600e9, Tags: []isp.Tag{{Key: "unit", Value: "°C \"x\"\n"}}}
	}
	pts[3].DeviceID = "" // the subject's device
	pts[4].Timestamp = 0 // now
	pts[5].Value = isp.Float(math.NaN())
	pts[6].Value = isp.String("a\\b\x01")
	processed := isp.AppendBatch(nil, pts)
	messages := []*nats.Msg{
		{Subject: "iot.processed.batch.plc-9", Data: processed},
		{Subject: "iot.processed.plc-1.reg0", Data: isp.AppendPoint(nil, &pts[0])},
		{Subject: "iot.processed.plc-1.reg3", Data: isp.AppendPoint(nil, &pts[3])},
		// Verbatim: space in the envelope, which is not written.
		{Subject: "iot.processed.batch.plc-1", Data: []byte(` {"points": [{"device_id":"plc-1","key":"a","value":1,"quality":1,"timestamp":1751200001000000000}] }`)},
		// Decoded: space inside a point, a float in a form the encoder does not write, an unknown member.
		{Subject: "iot.processed.batch.plc-1", Data: []byte(`{"points":[{"device_id":"plc-1", "key":"a","value":1,"quality":1,"timestamp":1751200001000000000}]}`)},
		{Subject: "iot.processed.batch.plc-1", Data: []byte(`{"points":[{"device_id":"plc-1","key":"a","value":2.50,"quality":1,"timestamp":1751200001000000000}]}`)},
		{Subject: "iot.processed.batch.plc-1", Data: []byte(`{"points":[{"device_id":"plc-1","key":"a","value":1,"quality":1,"timestamp":1751200001000000000,"x":[1]}]}`)},
	}
	for _, path := range []string{"{data_dir}/{date}/{hour}/{device}.jsonl", "{data_dir}/all.jsonl"} {
		t.Run(path, func(t *testing.T) {
			fast, slow := newPathSink(t, path, false), newPathSink(t, path, true)
			for _, m := range messages {
				nf, errf := fast.k.write(m)
				ns, errs := slow.k.write(m)
				if errf != nil || errs != nil || nf != ns {
					t.Fatalf("%s: verbatim wrote %d (%v), decoding %d (%v)", m.Data, nf, errf, ns, errs)
				}
			}
			if want := len(pts) + 3; fast.k.verbatim != want {
				t.Fatalf("%d points written verbatim, want %d (the processor's batch, the bare points, the spaced envelope)", fast.k.verbatim, want)
			}
			if slow.k.verbatim != 0 {
				t.Fatal("decodeOnly wrote verbatim")
			}
			sameFiles(t, fast.files(t), slow.files(t))
		})
	}
}

// A batch written verbatim is refused as a decoded one is: a device id that is no token names no file, and nothing
// of the batch is written.
func TestVerbatimRefusesUnsafeDevice(t *testing.T) {
	k := newPathSink(t, "{data_dir}/{device}.jsonl", false)
	pts := []isp.Point{{DeviceID: "plc-1", Key: "a", Value: isp.Int(1), Quality: 1}, {DeviceID: "..", Key: "b", Value: isp.Int(2), Quality: 1}}
	if _, err := k.k.write(&nats.Msg{Subject: "iot.processed.batch.plc-1", Data: isp.AppendBatch(nil, pts)}); !errors.Is(err, ErrPath) {
		t.Fatalf("got %v, want ErrPath", err)
	}
	if files := k.files(t); len(files) != 0 {
		t.Fatalf("got %v, want nothing written", files)
	}
}

// FuzzVerbatim: for any batch (or bare point), the sink writes the same files, or refuses it the same way,
// whether it writes the points as they are or decodes them.
func FuzzVerbatim(f *testing.F) {
	pts := []isp.Point{{DeviceID: "plc-1", Key: "k", Value: isp.Float(25.530000686645508), Type: "float32", Quality: 1,
		Timestamp: 1751200001000000000, Tags: []isp.Tag{{Key: "unit", Value: "C"}}, Source: "modbus"},
		{Key: "n", Value: isp.String("x\ty"), Quality: -1}}
	f.Add(isp.AppendBatch(nil, pts), true)
	f.Add(isp.AppendPoint(nil, &pts[0]), false)
	f.Add([]byte(`{"points":[{"device_id":"a/b","key":"k","value":1e-7,"quality":1,"timestamp":5}]}`), true)
	f.Fuzz(func(t *testing.T, data []byte, batched bool) {
		if len(data) > 1<<14 {
			return
		}
		subject := "iot.processed.plc-2.k"
		if batched {
			subject = "iot.processed.batch.plc-2"
		}
		fast := newPathSink(t, "{data_dir}/{date}/{device}.jsonl", false)
		slow := newPathSink(t, "{data_dir}/{date}/{device}.jsonl", true)
		nf, errf := fast.k.write(&nats.Msg{Subject: subject, Data: data})
		ns, errs := slow.k.write(&nats.Msg{Subject: subject, Data: data})
		if nf != ns || errors.Is(errf, ErrPath) != errors.Is(errs, ErrPath) || errors.Is(errf, errNotPoints) != errors.Is(errs, errNotPoints) ||
			(errf == nil) != (errs == nil) {
			t.Fatalf("verbatim wrote %d (%v), decoding %d (%v)", nf, errf, ns, errs)
		}
		sameFiles(t, fast.files(t), slow.files(t))
	})
}
