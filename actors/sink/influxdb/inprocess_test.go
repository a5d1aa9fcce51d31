package influxdb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/iotgw/iotgw/system"
)

// TestInProcess runs the gateway in this test's process (so -race sees the sink's actor, its worker and the
// batching core), writes batches through JetStream into a real influxd with a restart of InfluxDB under load,
// and counts the points back with InfluxQL.
func TestInProcess(t *testing.T) {
	srv := testenv.Influxd(t)
	if resp, err := http.PostForm("http://"+srv.Addr+"/query", url.Values{"q": {"CREATE DATABASE t"}}); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	src := fmt.Sprintf(`
gateway {
  data_dir       = %q
  http_address   = ""
  point_subjects = false
}
nats {
  port = -1
  jetstream { enabled = true }
}
sink "i" {
  type           = "influxdb"
  url            = "http://%s"
  database       = "t"
  measurement    = "plant"
  device_tag     = "device"
  flush_interval = "20ms"
  retry          = "50ms"
  max_retry      = "200ms"
  timeout        = "2s"
}
`, t.TempDir(), srv.Addr)
	cfg, diags := config.Parse([]byte(src), "test.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	rt := system.New(cfg)
	if err := rt.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rt.Stop() }()
	select {
	case <-rt.Bus().JetStreamReady():
	case <-time.After(time.Minute):
		t.Fatal("JetStream not ready")
	}
	testenv.WaitFor(t, "the sink running", time.Minute, func() bool {
		n, ok := rt.Tree().Get("sinks/i")
		return ok && n.State == system.StateRunning
	})
	const batches = 300
	t0 := time.Now().UnixNano()
	for i := range batches {
		if i == batches/3 {
			srv.Stop()
		}
		if i == 2*batches/3 {
			srv.Start()
		}
		body := fmt.Sprintf(`{"points":[{"device_id":"p%d","key":"n","value":%d,"type":"int64","timestamp":%d}]}`, i%3, i, t0+int64(i))
		if err := rt.Bus().Conn.Publish(fmt.Sprintf("iot.processed.batch.p%d", i%3), []byte(body)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	count := func() (n int) {
		resp, err := http.PostForm("http://"+srv.Addr+"/query", url.Values{"db": {"t"}, "q": {`SELECT count("n"), sum("n") FROM plant`}})
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		var r struct {
			Results []struct {
				Series []struct {
					Values [][]any `json:"values"`
				} `json:"series"`
			} `json:"results"`
		}
		if json.Unmarshal(data, &r) != nil || len(r.Results) == 0 || len(r.Results[0].Series) == 0 {
			return 0
		}
		v := r.Results[0].Series[0].Values[0]
		c, _ := v[1].(float64)
		if s, _ := v[2].(float64); int(s) != batches*(batches-1)/2 && int(c) == batches {
			t.Fatalf("sum %v, want %d", s, batches*(batches-1)/2)
		}
		return int(c)
	}
	testenv.WaitFor(t, "every point in InfluxDB", 2*time.Minute, func() bool { return count() == batches })
}
