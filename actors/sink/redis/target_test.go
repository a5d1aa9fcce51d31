package redis

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/iotgw/actors/sink/batch"
	"github.com/iotgw/iotgw/internal/testenv"
	"github.com/iotgw/iotgw/isp"
	goredis "github.com/redis/go-redis/v9"
)

func testSettings(addr string) *Settings {
	s := NewSettings().(*Settings)
	s.Address, s.StreamPrefix, s.ChannelPrefix = addr, "s:", "c:"
	s.opts = batch.Options{Timeout: 5 * time.Second}
	return s
}

// TestWrongType: a key that holds another type (someone's string where the device's hash goes) makes Redis refuse
// the HSET for good (WRONGTYPE): the points of that device are refused, each by its entry, and the rest of the
// pipeline (the other device, the streams) is written.
func TestWrongType(t *testing.T) {
	srv := testenv.Redis(t)
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr, DisableIdentity: true})
	defer rc.Close()
	ctx := context.Background()
	if err := rc.Set(ctx, "iot:latest:bad", "a string", 0).Err(); err != nil {
		t.Fatal(err)
	}
	tg := newTarget(testSettings(srv.Addr))
	defer tg.Close()
	b := tg.NewBatch()
	pts := []isp.Point{
		{DeviceID: "good", Key: "a", Value: isp.Float(1), Timestamp: 1},
		{DeviceID: "bad", Key: "a", Value: isp.Float(2), Timestamp: 2},
		{DeviceID: "good", Key: "b", Value: isp.String("x\r\ny"), Quality: isp.QualityGood, Timestamp: 3, Tags: []isp.Tag{{Key: "t", Value: "\x00"}}},
		{DeviceID: "bad", Key: "b", Value: isp.Null(), Quality: isp.QualityBad, Timestamp: 4},
	}
	if n, err := b.Add("iot.processed.batch.x", pts); err != nil || n != 4 {
		t.Fatalf("Add: %d, %v", n, err)
	}
	err := tg.Write(ctx, b)
	var r *batch.Refused
	if !errors.As(err, &r) || len(r.Entries) != 2 || !strings.Contains(r.Entries[1], "WRONGTYPE") || r.Entries[3] == "" {
		t.Fatalf("got %v (%+v), want entries 1 and 3 refused with WRONGTYPE", err, r)
	}
	h, err := rc.HGetAll(ctx, "iot:latest:good").Result()
	if err != nil || h["a"] != "1" || h["b"] != "x\r\ny" || h["b.q"] != "1" || h["b.ts"] != "3" {
		t.Fatalf("good's hash %v (%v)", h, err)
	}
	if n, err := rc.XLen(ctx, "s:bad").Result(); err != nil || n != 2 {
		t.Fatalf("bad's stream has %d entries (%v), want 2: only the hash was refused", n, err)
	}
	entries, err := rc.XRange(ctx, "s:good", "-", "+").Result()
	if err != nil || len(entries) != 2 || entries[1].Values["tag.t"] != "\x00" {
		t.Fatalf("good's stream %v (%v)", entries, err)
	}
}

// TestServerGone: a server that does not answer is a failure to try again, never a refusal.
func TestServerGone(t *testing.T) {
	srv := testenv.Redis(t)
	srv.Stop()
	tg := newTarget(testSettings(srv.Addr))
	defer tg.Close()
	b := tg.NewBatch()
	if _, err := b.Add("s", []isp.Point{{DeviceID: "d", Key: "k", Value: isp.Int(1)}}); err != nil {
		t.Fatal(err)
	}
	err := tg.Write(context.Background(), b)
	var r *batch.Refused
	if err == nil || errors.As(err, &r) || permanent(err) {
		t.Fatalf("got %v, want a failure to retry", err)
	}
}
