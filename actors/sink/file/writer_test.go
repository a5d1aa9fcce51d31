package file

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// clock is a test's settable time.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func testSettings(t *testing.T, edit func(s *Settings)) *Settings {
	t.Helper()
	s := NewSettings().(*Settings)
	s.RotateSize, s.RotateAge, s.IdleTimeout, s.SyncInterval, s.Retry = 64<<20, 24*time.Hour, time.Minute, time.Second, 10*time.Millisecond
	if edit != nil {
		edit(s)
	}
	tm, err := parseTemplate(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	s.tmpl = tm
	return s
}

// millNow runs the mill's jobs at once, in the test's goroutine.
type millNow struct {
	m    *mill
	errs []error
}

func newMillNow(s *Settings) *millNow {
	mn := &millNow{}
	mn.m = newMill(s.Compress, s.MaxFiles, func(err error) { mn.errs = append(mn.errs, err) })
	return mn
}

func (mn *millNow) add(path string) { mn.m.job(make(chan struct{}), path) }

// contents reads path's backups, oldest first (gunzipped), then path itself.
func contents(t *testing.T, path string) (text string, backups []string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := backupOf(path, e.Name()); ok {
			backups = append(backups, e.Name())
		}
	}
	sort.Strings(backups)
	var sb strings.Builder
	for _, b := range backups {
		data, err := os.ReadFile(filepath.Join(filepath.Dir(path), b))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(b, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			if data, err = io.ReadAll(zr); err != nil {
				t.Fatalf("%s: %v", b, err)
			}
		}
		sb.Write(data)
	}
	if data, err := os.ReadFile(path); err == nil {
		sb.Write(data)
	}
	return sb.String(), backups
}

func lines(n, from int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`{"n":%d,"pad":"%s"}`, from+i, strings.Repeat("x", 80)) + "\n"
	}
	return out
}

func TestRotateBySizeKeepsEveryLineInOrder(t *testing.T) {
	dir := t.TempDir()
	s := testSettings(t, func(s *Settings) { s.RotateSize = 4096; s.MaxFiles = 1000 })
	mn := newMillNow(s)
	c := &clock{time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	w := newWriter(s, c.now, mn.add)
	path := filepath.Join(dir, "d", "plc-1.jsonl")
	want := lines(500, 0)
	for _, l := range want {
		c.t = c.t.Add(time.Millisecond)
		if err := w.write([]byte(path), []byte(l)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.closeAll(); err != nil {
		t.Fatal(err)
	}
	got, backups := contents(t, path)
	if got != strings.Join(want, "") {
		t.Fatalf("the files do not hold every line once, in order (%d bytes, want %d)", len(got), len(strings.Join(want, "")))
	}
	if len(backups) < 10 {
		t.Fatalf("got %d backups, want a rotation every ~4 KB of 50 KB", len(backups))
	}
	for _, b := range backups {
		if !strings.HasSuffix(b, ".jsonl.gz") {
			t.Fatalf("backup %s is not compressed", b)
		}
		zr, _ := gzip.NewReader(must(os.Open(filepath.Join(dir, "d", b))))
		n, _ := io.Copy(io.Discard, zr)
		if n > 4096 {
			t.Fatalf("backup %s holds %d bytes, more than rotate_size", b, n)
		}
	}
	if len(mn.errs) > 0 {
		t.Fatal(mn.errs)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestMaxFilesPrunesTheOldest(t *testing.T) {
	dir := t.TempDir()
	s := testSettings(t, func(s *Settings) { s.RotateSize = 4096; s.MaxFiles = 3; s.Compress = false })
	mn := newMillNow(s)
	c := &clock{time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	w := newWriter(s, c.now, mn.add)
	path := filepath.Join(dir, "plc-1.jsonl")
	all := lines(400, 0)
	for _, l := range all {
		c.t = c.t.Add(time.Millisecond)
		if err := w.write([]byte(path), []byte(l)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.closeAll(); err != nil {
		t.Fatal(err)
	}
	got, backups := contents(t, path)
	if len(backups) != 3 {
		t.Fatalf("got backups %v, want 3", backups)
	}
	if !strings.HasSuffix(strings.Join(all, ""), got) || got == "" {
		t.Fatalf("what is kept is not the newest data")
	}
	if strings.Contains(got, `"n":0,`) {
		t.Fatalf("the oldest data was kept")
	}
}

func TestRotateByAge(t *testing.T) {
	dir := t.TempDir()
	s := testSettings(t, func(s *Settings) { s.RotateAge = time.Hour; s.Compress = false })
	mn := newMillNow(s)
	c := &clock{time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	w := newWriter(s, c.now, mn.add)
	path := filepath.Join(dir, "plc-1.jsonl")
	must(0, w.write([]byte(path), []byte(lines(1, 0)[0])))
	c.t = c.t.Add(59 * time.Minute)
	must(0, w.write([]byte(path), []byte(lines(1, 1)[0])))
	must(0, w.housekeeping())
	if _, backups := contents(t, path); len(backups) != 0 {
		t.Fatalf("rotated before rotate_age: %v", backups)
	}
	c.t = c.t.Add(time.Minute)
	must(0, w.housekeeping()) // a quiet file is rotated by the tick, not only by a write
	_, backups := contents(t, path)
	if len(backups) != 1 || backups[0] != "plc-1-2026-12-01T01-00-00.000.jsonl" {
		t.Fatalf("got backups %v, want one named for the rotation time", backups)
	}
	must(0, w.write([]byte(path), []byte(lines(1, 2)[0])))
	must(0, w.closeAll())
	if got, _ := contents(t, path); got != strings.Join(lines(3, 0), "") {
		t.Fatalf("got %q", got)
	}
}

// A file whose last line was torn (a power cut during a write) is closed with a newline before the next line.
func TestTornLastLineIsClosed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "plc-1.jsonl")
	if err := os.WriteFile(path, []byte("{\"n\":1}\n{\"n\":2,\"tor"), 0o640); err != nil {
		t.Fatal(err)
	}
	s := testSettings(t, nil)
	w := newWriter(s, time.Now, nil)
	must(0, w.write([]byte(path), []byte("{\"n\":3}\n")))
	must(0, w.closeAll())
	got, _ := os.ReadFile(path)
	if string(got) != "{\"n\":1}\n{\"n\":2,\"tor\n{\"n\":3}\n" {
		t.Fatalf("got %q", got)
	}
}

func TestCSVHeaderOncePerFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "plc-1.csv")
	s := testSettings(t, func(s *Settings) { s.Format = FormatCSV })
	for range 2 { // the second writer appends to the file the first left: no second header
		w := newWriter(s, time.Now, nil)
		must(0, w.write([]byte(path), []byte("a,b\n")))
		must(0, w.closeAll())
	}
	got, _ := os.ReadFile(path)
	if string(got) != csvHeader+"a,b\na,b\n" {
		t.Fatalf("got %q", got)
	}
}

func TestMaxOpenFiles(t *testing.T) {
	dir := t.TempDir()
	s := testSettings(t, func(s *Settings) { s.MaxOpenFiles = 2 })
	c := &clock{time.Now()}
	w := newWriter(s, c.now, nil)
	for round := range 3 {
		for d := range 5 {
			c.t = c.t.Add(time.Millisecond)
			must(0, w.write([]byte(filepath.Join(dir, fmt.Sprintf("d%d.jsonl", d))), []byte(fmt.Sprintf("%d\n", round))))
			if len(w.files) > 2 {
				t.Fatalf("%d files open, max_open_files is 2", len(w.files))
			}
		}
	}
	must(0, w.closeAll())
	for d := range 5 {
		if got, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("d%d.jsonl", d))); string(got) != "0\n1\n2\n" {
			t.Fatalf("d%d: got %q", d, got)
		}
	}
}

// A backup left uncompressed (the gateway died before its mill ran) is compressed, and more than max_files
// pruned, the first time its path is opened again.
func TestLeftoverBackupsAreMilledAtOpen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "plc-1.jsonl")
	for i := range 4 {
		name := backupName(path, time.Date(2026, 12, 1, 0, 0, i, 0, time.UTC))
		if err := os.WriteFile(name, []byte(fmt.Sprintf("old %d\n", i)), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "plc-1-not-a-backup.jsonl"), []byte("x"), 0o640)
	os.WriteFile(filepath.Join(dir, "plc-2-2026-12-01T00-00-00.000.jsonl"), []byte("other device"), 0o640)
	s := testSettings(t, func(s *Settings) { s.MaxFiles = 2 })
	mn := newMillNow(s)
	w := newWriter(s, time.Now, mn.add)
	must(0, w.write([]byte(path), []byte("new\n")))
	must(0, w.closeAll())
	got, backups := contents(t, path)
	if got != "old 2\nold 3\nnew\n" || len(backups) != 2 || !strings.HasSuffix(backups[0], ".gz") {
		t.Fatalf("got %q from %v", got, backups)
	}
	for _, other := range []string{"plc-1-not-a-backup.jsonl", "plc-2-2026-12-01T00-00-00.000.jsonl"} {
		if _, err := os.Stat(filepath.Join(dir, other)); err != nil {
			t.Fatalf("the mill touched %s, which is not a backup of %s: %v", other, path, err)
		}
	}
}

// The directory replaced by a regular file (what the target-down tests do, since chmod does not stop root): the
// write fails with an error, and once the directory is back the writer writes again.
func TestUnwritableDirectoryThenBack(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "points")
	path := filepath.Join(sub, "plc-1.jsonl")
	s := testSettings(t, nil)
	w := newWriter(s, time.Now, nil)
	must(0, w.write([]byte(path), []byte("1\n")))
	must(0, w.sync())
	must(0, w.closeAll())
	if err := os.Rename(sub, sub+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sub, []byte("in the way"), 0o640); err != nil {
		t.Fatal(err)
	}
	err := w.write([]byte(path), []byte("2\n"))
	if err == nil {
		err = w.sync()
	}
	if err == nil {
		t.Fatal("got no error writing under a regular file")
	}
	os.Remove(sub)
	os.Rename(sub+".away", sub)
	must(0, w.write([]byte(path), []byte("2\n")))
	must(0, w.closeAll())
	if got, _ := os.ReadFile(path); string(got) != "1\n2\n" {
		t.Fatalf("got %q", got)
	}
}

func TestBackupNames(t *testing.T) {
	for _, tc := range []struct {
		path, name string
		ok, gz     bool
	}{
		{"/d/plc-1.jsonl", "plc-1-2026-12-01T00-00-00.000.jsonl", true, false},
		{"/d/plc-1.jsonl", "plc-1-2026-12-01T00-00-00.000.jsonl.gz", true, true},
		{"/d/plc-1.jsonl", "plc-1-2026-12-01T00-00-00.000.jsonl.gz.tmp", false, false},
		{"/d/plc-1.jsonl", "plc-1-2026-13-01T00-00-00.000.jsonl", false, false},
		{"/d/plc-1.jsonl", "plc-1.jsonl", false, false},
		{"/d/plc-1.jsonl", "plc-10-2026-12-01T00-00-00.000.jsonl", false, false},
		{"/d/plc-1.jsonl", "plc-1-2026-12-01T00-00-00.000.csv", false, false},
		{"/d/all", "all-2026-12-01T00-00-00.000", true, false},
	} {
		gz, ok := backupOf(tc.path, tc.name)
		if ok != tc.ok || gz != tc.gz {
			t.Errorf("backupOf(%q, %q) = %v, %v; want %v, %v", tc.path, tc.name, gz, ok, tc.gz, tc.ok)
		}
	}
}

// The directory moved away (and a regular file put at its path) while a file in it is open: the writes since the
// last good sync went into a file nobody will find at the path. The sync says so, and cuts them off again, so
// that when the directory comes back it holds what was acknowledged and nothing that will come again.
func TestMovedFileIsReportedAndCutBack(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "points")
	path := filepath.Join(sub, "plc-1.jsonl")
	s := testSettings(t, nil)
	w := newWriter(s, time.Now, nil)
	must(0, w.write([]byte(path), []byte("1\n")))
	must(0, w.sync())
	if err := os.Rename(sub, sub+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sub, []byte("in the way"), 0o640); err != nil {
		t.Fatal(err)
	}
	must(0, w.write([]byte(path), []byte("2\n"))) // buffered: nothing fails yet
	if err := w.sync(); err == nil {
		t.Fatal("got no error from a sync of a file that is no longer at its path")
	}
	if got, _ := os.ReadFile(filepath.Join(sub+".away", "plc-1.jsonl")); string(got) != "1\n" {
		t.Fatalf("the moved file holds %q, want only what was synced before", got)
	}
	if err := w.write([]byte(path), []byte("2\n")); err == nil {
		t.Fatal("got no error opening under a regular file")
	}
	os.Remove(sub)
	os.Rename(sub+".away", sub)
	must(0, w.write([]byte(path), []byte("2\n")))
	must(0, w.closeAll())
	if got, _ := os.ReadFile(path); string(got) != "1\n2\n" {
		t.Fatalf("got %q, want each line once", got)
	}
}

// After a failure the pending deliveries are handed back, so abort cuts every file back to its last good sync,
// the ones that did not fail too: nothing of what will come again stays behind.
func TestAbortCutsEveryFileBack(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	w := newWriter(testSettings(t, nil), time.Now, nil)
	must(0, w.write([]byte(a), []byte("a1\n")))
	must(0, w.write([]byte(b), []byte("b1\n")))
	must(0, w.sync())
	must(0, w.write([]byte(a), []byte("a2\n")))
	must(0, w.write([]byte(b), []byte("b2\n")))
	must(0, w.flushFile(w.files[a])) // a2 reached the file, b2 is still buffered
	w.abort()
	must(0, w.write([]byte(a), []byte("a2\n")))
	must(0, w.write([]byte(b), []byte("b2\n")))
	must(0, w.closeAll())
	for path, want := range map[string]string{a: "a1\na2\n", b: "b1\nb2\n"} {
		if got, _ := os.ReadFile(path); string(got) != want {
			t.Errorf("%s: got %q, want %q", filepath.Base(path), got, want)
		}
	}
}
