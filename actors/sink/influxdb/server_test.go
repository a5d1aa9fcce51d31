package influxdb

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/actors/sink/batch"
	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/iotgw/iotgw/isp"
	"github.com/rs/zerolog"
)

// testSettings are a sink's settings as Validate leaves them.
func testSettings(t *testing.T, edit func(s *Settings)) *Settings {
	t.Helper()
	s := NewSettings().(*Settings)
	edit(s)
	var err error
	if s.measurement, err = parseTemplate(s.Measurement); err != nil {
		t.Fatal(err)
	}
	if s.field, err = parseTemplate(s.Field); err != nil {
		t.Fatal(err)
	}
	s.v2 = s.Bucket != ""
	return s
}

// influxQL runs q against the server at addr and returns the series of its first result.
func influxQL(t *testing.T, addr, db, q string) []series {
	t.Helper()
	resp, err := http.PostForm("http://"+addr+"/query", url.Values{"db": {db}, "q": {q}, "epoch": {"ns"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Results []struct {
			Series []series `json:"series"`
			Error  string   `json:"error"`
		} `json:"results"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Error != "" || len(r.Results) == 0 || r.Results[0].Error != "" {
		t.Fatalf("%s: %v %s", q, err, body)
	}
	return r.Results[0].Series
}

type series struct {
	Name    string            `json:"name"`
	Tags    map[string]string `json:"tags"`
	Columns []string          `json:"columns"`
	Values  [][]any           `json:"values"`
}

func startInflux(t *testing.T) *testenv.Server {
	srv := testenv.Influxd(t)
	influxQL(t, srv.Addr, "", "CREATE DATABASE t")
	return srv
}

// TestServerReadsBackExactly writes names and values a line protocol encoder gets wrong (spaces, commas, equals
// signs, backslashes, quotes, line breaks in strings, non-ASCII) into a real InfluxDB 1.x and reads them back with
// InfluxQL: every name and value as it was sent.
func TestServerReadsBackExactly(t *testing.T) {
	srv := startInflux(t)
	cfg := testSettings(t, func(s *Settings) { s.URL = "http://" + srv.Addr; s.Database = "t"; s.DeviceTag = "device" })
	tg, err := newTarget("sinks/x", cfg, actors.Env{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	b := tg.NewBatch()
	hostile := []isp.Point{
		{DeviceID: "plant 1,line=2", Key: "temp value", Value: isp.Float(21.25), Timestamp: 1_000, Tags: []isp.Tag{{Key: "site name", Value: "a,b=c d"}}},
		{DeviceID: `c:\dir\x`, Key: `key\q`, Value: isp.String("q\"uote\\d\nline two"), Timestamp: 2_000, Tags: []isp.Tag{{Key: "ü", Value: "日本 語"}}},
		{DeviceID: "m=eq", Key: "n", Value: isp.Int(-42), Type: "int32", Timestamp: 3_000, Tags: []isp.Tag{{Key: "t", Value: `back\\slash`}}},
		{DeviceID: "bool", Key: "on", Value: isp.Bool(true), Timestamp: 4_000},
	}
	if n, err := b.Add("iot.processed.batch.x", hostile); err != nil || n != len(hostile) {
		t.Fatalf("Add: %d, %v", n, err)
	}
	if err := tg.Write(context.Background(), b); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got := influxQL(t, srv.Addr, "t", `SELECT * FROM /.*/ GROUP BY *`)
	sort.Slice(got, func(i, j int) bool { return got[i].Name < got[j].Name })
	want := append([]isp.Point(nil), hostile...)
	sort.Slice(want, func(i, j int) bool { return want[i].DeviceID < want[j].DeviceID })
	if len(got) != len(want) {
		t.Fatalf("got %d series %+v, want %d", len(got), got, len(want))
	}
	for i, p := range want {
		s := got[i]
		if s.Name != p.DeviceID {
			t.Errorf("measurement %q, want %q", s.Name, p.DeviceID)
		}
		wantTags := map[string]string{"device": p.DeviceID}
		for _, tag := range p.Tags {
			wantTags[tag.Key] = tag.Value
		}
		for k, v := range s.Tags {
			if v == "" {
				delete(s.Tags, k) // SELECT * across measurements lists every tag key
			}
		}
		if fmt.Sprint(s.Tags) != fmt.Sprint(wantTags) {
			t.Errorf("%q: tags %q, want %q", p.DeviceID, s.Tags, wantTags)
		}
		col := -1
		for c, name := range s.Columns {
			if name == p.Key {
				col = c
			} else if c > 0 && len(s.Values) == 1 && s.Values[0][c] != nil {
				t.Errorf("%q: column %q has %v, want nothing", p.DeviceID, name, s.Values[0][c])
			}
		}
		if len(s.Values) != 1 || col < 0 {
			t.Errorf("%q: columns %q values %v, want one value of %q", p.DeviceID, s.Columns, s.Values, p.Key)
			continue
		}
		if ts := fmt.Sprint(s.Values[0][0]); ts != fmt.Sprint(p.Timestamp) {
			t.Errorf("%q: time %s, want %d", p.DeviceID, ts, p.Timestamp)
		}
		if v := fmt.Sprint(s.Values[0][col]); v != p.Value.String() && v != fmt.Sprint(p.Value.Any()) {
			t.Errorf("%q: value %q, want %q", p.DeviceID, v, p.Value.String())
		}
	}
}

// TestPartialWrite: a field that is a float in InfluxDB, written as an integer, is refused by the server; the
// sink names the line and accepts the others.
func TestPartialWrite(t *testing.T) {
	srv := startInflux(t)
	cfg := testSettings(t, func(s *Settings) { s.URL = "http://" + srv.Addr; s.Database = "t"; s.Gzip = false })
	tg, err := newTarget("sinks/x", cfg, actors.Env{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	b := tg.NewBatch()
	if _, err := b.Add("s", []isp.Point{{DeviceID: "d", Key: "k", Value: isp.Float(1.5), Timestamp: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := tg.Write(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if _, err := b.Add("s", []isp.Point{{DeviceID: "d", Key: "k", Value: isp.Float(2.5), Timestamp: 2},
		{DeviceID: "d", Key: "k", Value: isp.Int(3), Type: "int64", Timestamp: 3},
		{DeviceID: "d", Key: "k", Value: isp.Float(4.5), Timestamp: 4}}); err != nil {
		t.Fatal(err)
	}
	err = tg.Write(context.Background(), b)
	var r *batch.Refused
	if !errors.As(err, &r) || len(r.Entries) != 1 || !strings.Contains(r.Entries[1], "field type conflict") {
		t.Fatalf("got %v (%+v), want line 1 refused for its type", err, r)
	}
	got := influxQL(t, srv.Addr, "t", `SELECT * FROM d`)
	if len(got) != 1 || len(got[0].Values) != 3 {
		t.Fatalf("got %+v, want the 3 float points", got)
	}
}

// TestNoDatabase: a database that does not exist (404 from a real influxd) keeps the data for a retry, naming
// InfluxDB's words; once it exists the same batch is written.
func TestNoDatabase(t *testing.T) {
	srv := testenv.Influxd(t)
	cfg := testSettings(t, func(s *Settings) { s.URL = "http://" + srv.Addr; s.Database = "later" })
	tg, _ := newTarget("sinks/x", cfg, actors.Env{Log: zerolog.Nop()})
	b := tg.NewBatch()
	if _, err := b.Add("s", []isp.Point{{DeviceID: "d", Key: "k", Value: isp.Float(1), Timestamp: 5}}); err != nil {
		t.Fatal(err)
	}
	err := tg.Write(context.Background(), b)
	var r *batch.Refused
	if err == nil || errors.As(err, &r) || !strings.Contains(err.Error(), "database not found") {
		t.Fatalf("got %v, want a failure to retry naming the missing database", err)
	}
	influxQL(t, srv.Addr, "", "CREATE DATABASE later")
	if err := tg.Write(context.Background(), b); err != nil {
		t.Fatalf("after CREATE DATABASE: %v", err)
	}
	if got := influxQL(t, srv.Addr, "later", `SELECT * FROM d`); len(got) != 1 || len(got[0].Values) != 1 {
		t.Fatalf("got %+v, want the point", got)
	}
}

// TestServerDown: a server that is not there is a failure to try again, not a refusal.
func TestServerDown(t *testing.T) {
	cfg := testSettings(t, func(s *Settings) { s.URL = fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t)); s.Database = "t" })
	tg, _ := newTarget("sinks/x", cfg, actors.Env{Log: zerolog.Nop()})
	b := tg.NewBatch()
	if _, err := b.Add("s", []isp.Point{{DeviceID: "d", Key: "k", Value: isp.Float(1)}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := tg.Write(ctx, b)
	var r *batch.Refused
	if err == nil || errors.As(err, &r) {
		t.Fatalf("got %v, want a failure to retry", err)
	}
}

// TestV2Write checks the 2.x write path against a test server that checks the request as InfluxDB 2.x's API
// documents POST /api/v2/write (org and bucket in the query, precision, "Authorization: Token …", gzip'ed line
// protocol, 204 on success, a JSON {"code","message"} on failure): InfluxDB 1.6, the one packaged here, has no
// /api/v2/write (it answers 404; the compatibility endpoint came with 1.8).
func TestV2Write(t *testing.T) {
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case r.Method != http.MethodPost || r.URL.Path != "/api/v2/write":
			http.Error(w, `{"code":"not found","message":"path not found"}`, http.StatusNotFound)
			return
		case q.Get("org") != "acme" || q.Get("bucket") != "plant/raw" || q.Get("precision") != "ns":
			http.Error(w, `{"code":"invalid","message":"org, bucket or precision"}`, http.StatusBadRequest)
			return
		case r.Header.Get("Authorization") != "Token s3cr3t":
			http.Error(w, `{"code":"unauthorized","message":"unauthorized access"}`, http.StatusUnauthorized)
			return
		case r.Header.Get("Content-Encoding") != "gzip" || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain"):
			http.Error(w, `{"code":"invalid","message":"encoding"}`, http.StatusBadRequest)
			return
		}
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, `{"code":"invalid","message":"gzip"}`, http.StatusBadRequest)
			return
		}
		body, _ := io.ReadAll(zr)
		if strings.Contains(string(body), "bad") {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"code":"invalid","message":"partial write error (1 accepted): unable to parse '%s': invalid field format"}`,
				strings.Split(strings.TrimSpace(string(body)), "\n")[1])
			return
		}
		bodies = append(bodies, string(body))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg := testSettings(t, func(s *Settings) {
		s.URL = srv.URL
		s.Org, s.Bucket, s.Token = "acme", "plant/raw", "s3cr3t"
		s.Measurement, s.Field, s.DeviceTag = "gateway", "{device}_{key}", "device"
	})
	tg, _ := newTarget("sinks/x", cfg, actors.Env{Log: zerolog.Nop()})
	b := tg.NewBatch()
	if _, err := b.Add("s", []isp.Point{{DeviceID: "d1", Key: "temp", Value: isp.Float(1.5), Timestamp: 10}}); err != nil {
		t.Fatal(err)
	}
	if err := tg.Write(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if len(bodies) != 1 || bodies[0] != "gateway,device=d1 d1_temp=1.5 10\n" {
		t.Fatalf("server got %q", bodies)
	}
	b.Reset()
	if _, err := b.Add("s", []isp.Point{{DeviceID: "d1", Key: "ok", Value: isp.Float(1), Timestamp: 11},
		{DeviceID: "d1", Key: "bad", Value: isp.Float(2), Timestamp: 12}}); err != nil {
		t.Fatal(err)
	}
	var r *batch.Refused
	if err := tg.Write(context.Background(), b); !errors.As(err, &r) || len(r.Entries) != 1 || r.Entries[1] == "" {
		t.Fatalf("got %v, want line 1 refused", err)
	}
	cfg.Token = "wrong"
	if err := tg.Write(context.Background(), b); err == nil || errors.As(err, &r) || !strings.Contains(err.Error(), "unauthorized") {
		t.Fatalf("got %v, want a failure to retry naming the 401", err)
	}
}
