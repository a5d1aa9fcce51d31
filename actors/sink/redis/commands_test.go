package redis

import (
	"fmt"
	"strings"
	"testing"

	"github.com/iotgw/iotgw/isp"
)

// render is a queued command as Redis receives its arguments, one per word.
func render(c *command) string {
	words := make([]string, len(c.args))
	for i, a := range c.args {
		switch a := a.(type) {
		case *text:
			words[i] = string(a.b)
		case []byte:
			words[i] = string(a)
		default:
			words[i] = fmt.Sprint(a)
		}
	}
	return strings.Join(words, " ") + fmt.Sprintf(" %v", c.entries)
}

// TestCommands: the commands a batch makes as its points are added, exactly, for each stream_entry, with a key
// twice in a message, two devices, tags and values of every kind; three times over on one batch (Reset keeps and
// reuses its commands and buffers, and nothing of a written batch may come back in the next).
func TestCommands(t *testing.T) {
	msgs := [][]isp.Point{
		{
			{DeviceID: "d1", Key: "k", Value: isp.Float(1.5), Timestamp: 10, Quality: isp.QualityGood, Tags: []isp.Tag{{Key: "unit", Value: "C"}}},
			{DeviceID: "d1", Key: "j", Value: isp.Int(-2), Timestamp: 10, Quality: isp.QualityBad},
			{DeviceID: "d2", Key: "k", Value: isp.Bool(true), Timestamp: 11, Quality: isp.QualityUnknown},
			{DeviceID: "d1", Key: "k", Value: isp.String("x y"), Timestamp: 12, Quality: isp.QualityGood},
		},
		{{DeviceID: "d1", Key: "n", Value: isp.Null(), Timestamp: 13, Quality: 7}},
	}
	hash := []string{
		"hset p:d1 k 1.5 k.ts 10 k.q 1 j -2 j.ts 10 j.q 0 k x y k.ts 12 k.q 1 n  n.ts 13 n.q 7 [0 1 3 4]",
		"hset p:d2 k true k.ts 11 k.q -1 [2]",
	}
	for _, tc := range []struct {
		entry   string
		channel bool
		want    []string
	}{
		{EntryPoint, false, append(hash[:2:2],
			"xadd s:d1 maxlen ~ 50 * key k value 1.5 ts 10 q 1 tag.unit C [0]",
			"xadd s:d1 maxlen ~ 50 * key j value -2 ts 10 q 0 [1]",
			"xadd s:d2 maxlen ~ 50 * key k value true ts 11 q -1 [2]",
			"xadd s:d1 maxlen ~ 50 * key k value x y ts 12 q 1 [3]",
			"xadd s:d1 maxlen ~ 50 * key n value  ts 13 q 7 [4]")},
		{EntryBatch, false, append(hash[:2:2],
			"xadd s:d1 maxlen ~ 50 * k 1.5 k.ts 10 k.q 1 k.tag.unit C j -2 j.ts 10 j.q 0 [0 1]",
			"xadd s:d2 maxlen ~ 50 * k true k.ts 11 k.q -1 [2]",
			"xadd s:d1 maxlen ~ 50 * k x y k.ts 12 k.q 1 [3]", // k again: the next entry
			"xadd s:d1 maxlen ~ 50 * n  n.ts 13 n.q 7 [4]")},  // the next message: the next entry
		{"", true, append(hash[:2:2],
			`publish c:d1 {"device_id":"d1","key":"k","value":1.5,"quality":1,"timestamp":10,"tags":{"unit":"C"}} [0]`,
			`publish c:d1 {"device_id":"d1","key":"j","value":-2,"quality":0,"timestamp":10} [1]`,
			`publish c:d2 {"device_id":"d2","key":"k","value":true,"quality":-1,"timestamp":11} [2]`,
			`publish c:d1 {"device_id":"d1","key":"k","value":"x y","quality":1,"timestamp":12} [3]`,
			`publish c:d1 {"device_id":"d1","key":"n","value":null,"quality":7,"timestamp":13} [4]`)},
	} {
		s := NewSettings().(*Settings)
		s.HashPrefix, s.StreamMaxLen, s.StreamEntry = "p:", 50, tc.entry
		if tc.entry != "" {
			s.StreamPrefix = "s:"
		}
		if tc.channel {
			s.ChannelPrefix = "c:"
		}
		b := (&target{cfg: s, names: newNames(s)}).NewBatch().(*pointBatch)
		for round := range 3 {
			for _, m := range msgs {
				if n, err := b.Add("iot.processed.batch.x", m); err != nil || n != len(m) {
					t.Fatalf("Add: %d, %v", n, err)
				}
			}
			var got []string
			for _, c := range append(b.order, b.rest...) {
				got = append(got, render(c))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("entry %q, round %d: commands\n%s\nwant\n%s", tc.entry, round, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			b.Reset()
		}
	}
}
