package file

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// The mill compresses and prunes rotated files (lumberjack's name for the same job), in one worker goroutine the
// actor owns, so a large gzip never holds up the writes and their acks. Each job names an active path and is
// idempotent: it scans the path's directory for that path's backups, so a job lost in a crash is done again the
// next time the path is opened or rotated. Nothing it does can lose a point: a backup is removed only after its
// compressed copy is fsynced and renamed into place, or when it is beyond max_files.

// backupTime is the time in a backup's name, UTC with milliseconds, lumberjack's layout (sorts by time as text).
const backupTime = "2006-01-02T15-04-05.000"

// backupName is path's backup name for a rotation at t: dir/{stem}-{time}{ext}.
func backupName(path string, t time.Time) string {
	dir, name := filepath.Split(path)
	ext := filepath.Ext(name)
	return filepath.Join(dir, strings.TrimSuffix(name, ext)+"-"+t.UTC().Format(backupTime)+ext)
}

// backupOf says whether name (in path's directory) is a backup of path: {stem}-{time}{ext}, optionally .gz.
func backupOf(path, name string) (compressed, ok bool) {
	base := filepath.Base(path)
	ext := filepath.Ext(base)
	stem := strings.TrimSuffix(base, ext) + "-"
	rest, found := strings.CutPrefix(name, stem)
	if !found {
		return false, false
	}
	rest, compressed = strings.CutSuffix(rest, ".gz")
	ts, found := strings.CutSuffix(rest, ext)
	if !found {
		return false, false
	}
	if _, err := time.Parse(backupTime, ts); err != nil {
		return false, false
	}
	return compressed, true
}

// mill is the queue of jobs and the worker's loop.
type mill struct {
	compress bool
	maxFiles int
	// report is told each failure; the worker keeps going (a file left uncompressed loses nothing).
	report func(err error)

	mu      sync.Mutex
	pending map[string]struct{}
	order   []string
	wake    chan struct{}
}

func newMill(compress bool, maxFiles int, report func(error)) *mill {
	return &mill{compress: compress, maxFiles: maxFiles, report: report, pending: map[string]struct{}{}, wake: make(chan struct{}, 1)}
}

// add queues a job for path (once, however often it is added before the worker takes it).
func (m *mill) add(path string) {
	m.mu.Lock()
	if _, ok := m.pending[path]; !ok {
		m.pending[path] = struct{}{}
		m.order = append(m.order, path)
	}
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// run is the worker: it does the queued jobs until done is closed.
func (m *mill) run(done <-chan struct{}) error {
	for {
		select {
		case <-done:
			return nil
		case <-m.wake:
		}
		for {
			m.mu.Lock()
			if len(m.order) == 0 {
				m.mu.Unlock()
				break
			}
			path := m.order[0]
			m.order = m.order[1:]
			delete(m.pending, path)
			m.mu.Unlock()
			m.job(done, path)
			select {
			case <-done:
				return nil
			default:
			}
		}
	}
}

// job compresses path's uncompressed backups and removes the oldest beyond max_files.
func (m *mill) job(done <-chan struct{}, path string) {
	dir := filepath.Dir(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			m.report(fmt.Errorf("file sink: list backups of %s: %w", path, err))
		}
		return
	}
	type backup struct {
		name       string
		compressed bool
	}
	var backups []backup
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if c, ok := backupOf(path, e.Name()); ok {
			backups = append(backups, backup{e.Name(), c})
		}
	}
	// Oldest first; a backup and its compressed copy (a crash between the copy's rename and the original's
	// removal) sort together and count once.
	sort.Slice(backups, func(i, j int) bool { return backups[i].name < backups[j].name })
	for i := range backups {
		b := &backups[i]
		if !m.compress || b.compressed {
			continue
		}
		select {
		case <-done:
			return
		default:
		}
		if err := gzipFile(filepath.Join(dir, b.name)); err != nil {
			m.report(err)
			continue
		}
		b.name += ".gz"
		b.compressed = true
	}
	// Count each rotation once: "x.jsonl" and "x.jsonl.gz" are one.
	var names []string
	for i, b := range backups {
		if i+1 < len(backups) && backups[i+1].name == b.name {
			continue
		}
		names = append(names, b.name)
	}
	for len(names) > m.maxFiles {
		old := filepath.Join(dir, names[0])
		if err := os.Remove(old); err != nil && !errors.Is(err, os.ErrNotExist) {
			m.report(fmt.Errorf("file sink: remove old backup: %w", err))
		}
		names = names[1:]
	}
}

// gzipFile writes src.gz (through src.gz.tmp, fsynced, renamed) and then removes src.
func gzipFile(src string) error {
	in, err := os.Open(src)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // done already by an earlier job
		}
		return fmt.Errorf("file sink: compress: %w", err)
	}
	defer in.Close()
	tmp := src + ".gz.tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fileMode)
	if err != nil {
		return fmt.Errorf("file sink: compress: %w", err)
	}
	zw := gzip.NewWriter(out)
	zw.Name = filepath.Base(src)
	_, err = io.Copy(zw, in)
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, src+".gz")
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("file sink: compress %s: %w", src, err)
	}
	if err := syncDir(filepath.Dir(src)); err != nil {
		return err // the original stays: removing it before the rename is durable could leave neither
	}
	if err := os.Remove(src); err != nil {
		return fmt.Errorf("file sink: remove compressed backup: %w", err)
	}
	return nil
}
