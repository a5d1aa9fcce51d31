package file

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTemplatePaths(t *testing.T) {
	ts := time.Date(2026, 12, 1, 7, 30, 0, 0, time.UTC)
	b := binding{dataDir: "/srv/data", sink: "files"}
	for _, tc := range []struct {
		tmpl, device, want, base string
	}{
		{"{data_dir}/points/{date}/{device}.jsonl", "plc-1", "/srv/data/points/2026-12-01/plc-1.jsonl", "/srv/data/points"},
		{"/var/log/{sink}/{date}-{hour}/{device}.csv", "m_2", "/var/log/files/2026-12-01-07/m_2.csv", "/var/log/files"},
		{"{data_dir}/all.jsonl", "plc-1", "/srv/data/all.jsonl", "/srv/data"},
		{"rel/{device}/x.lp", "a", "rel/a/x.lp", "rel"},
		{"{device}.jsonl", "a", "a.jsonl", "."},
		{"{data_dir}/p-{device}.jsonl", "a", "/srv/data/p-a.jsonl", "/srv/data"},
	} {
		tm, err := parseTemplate(tc.tmpl)
		if err != nil {
			t.Fatalf("%s: %v", tc.tmpl, err)
		}
		got, err := tm.appendPath(nil, b, tc.device, ts)
		if err != nil || string(got) != tc.want {
			t.Fatalf("%s: got %q, %v, want %q", tc.tmpl, got, err, tc.want)
		}
		if base := tm.base(b); base != tc.base || !within(base, string(got)) {
			t.Fatalf("%s: base %q (path %q within: %v), want %q", tc.tmpl, base, got, within(base, string(got)), tc.base)
		}
	}
}

// A device id off the bus is never trusted: anything that is not a token is refused before a path is made.
func TestTemplateRefusesHostileDevices(t *testing.T) {
	tm, err := parseTemplate("{data_dir}/{device}.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	for _, dev := range []string{"", "..", ".", "../../etc/passwd", "a/b", "/abs", `a\b`, "a\x00b", "dev ice",
		strings.Repeat("x", 65), "café", "a.b", "\u202eevil"} {
		if _, err := tm.appendPath(nil, binding{dataDir: "/d"}, dev, time.Now()); !errors.Is(err, ErrPath) {
			t.Errorf("device %q: got %v, want ErrPath", dev, err)
		}
	}
}

func TestWithin(t *testing.T) {
	for _, tc := range []struct {
		dir, path string
		want      bool
	}{
		{"/a", "/a/b", true}, {"/a", "/a/b/../c", true}, {"/a", "/a/../b", false}, {"/a", "/ab", false},
		{"/a", "/a", true}, {".", "x/y", true}, {".", "../x", false}, {"rel", "rel/x", true}, {"rel", "/abs", false},
	} {
		if got := within(tc.dir, tc.path); got != tc.want {
			t.Errorf("within(%q, %q) = %v, want %v", tc.dir, tc.path, got, tc.want)
		}
	}
}

// FuzzParseTemplate: whatever the template, the parser does not panic, and a template it accepts gives, for any
// valid device, a path inside its base directory with no ".." element.
func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{"{data_dir}/points/{date}/{device}.jsonl", "/x/{sink}/{hour}/{device}.csv", "{device}",
		"a/../{device}", "{", "}", "{{device}}", "{data_dir}{data_dir}", "/tmp/{device}/", "..{device}", "{device}/..x"} {
		f.Add(s, "plc-1")
	}
	f.Fuzz(func(t *testing.T, text, device string) {
		tm, err := parseTemplate(text)
		if err != nil {
			if !errors.Is(err, ErrTemplate) {
				t.Fatalf("error %v is not ErrTemplate", err)
			}
			return
		}
		b := binding{dataDir: "/srv/data", sink: "files"}
		path, err := tm.appendPath(nil, b, device, time.Unix(1700000000, 0))
		if err != nil {
			if !errors.Is(err, ErrPath) {
				t.Fatalf("error %v is not ErrPath", err)
			}
			return
		}
		base := tm.base(b)
		if !within(base, string(path)) {
			t.Fatalf("template %q, device %q: path %q is outside %q", text, device, path, base)
		}
		for _, e := range strings.Split(filepath.ToSlash(string(path)), "/") {
			if e == ".." {
				t.Fatalf("template %q, device %q: path %q has a \"..\" element", text, device, path)
			}
		}
	})
}
