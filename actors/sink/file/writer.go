package file

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// writer keeps the sink's open files: it appends lines to them through a buffer of its own, rotates a file by
// size and age, and flushes and fsyncs when the actor asks (the actor decides when, by its sync mode, and acks
// after). It is used from the actor's goroutine only; rotated files are compressed and pruned by the mill, in a
// worker of the actor.
//
// How it compares with the anchors:
//   - lumberjack (the usual Go rotating writer): rotation before a write that would pass the size, backups named
//     {stem}-{UTC time with ms}{ext}, gzip and pruning of old backups after the rotation, out of the write path,
//     and the same again for leftovers when a file is opened. Departs: it has no fsync and no age rotation, it
//     starts its own goroutine per logger, and it counts the age of backups in days; here the age is of the
//     active file, and the mill is a worker the actor owns.
//   - Telegraf's outputs.file: rotation_interval counted from when the file was opened, rotation_max_size,
//     rotation_max_archives. Same here (rotate_age, rotate_size, max_files), but one file per device and date.
//   - Vector's file sink: a path template per event and idle files closed after idle_timeout_secs. Same here
//     (idle_timeout, and max_open_files so a thousand devices cannot exhaust file descriptors); Vector does
//     not rotate by size, and acknowledges after write without fsync.
//
// Beyond them: a file opened again whose last line was torn (a power cut in the middle of a write) gets a newline
// first, so the torn line stays one bad line instead of corrupting the next; a new file's directory is fsynced
// too (unless sync is never), so the file itself survives a power cut and not only its contents.
type writer struct {
	format     string
	rotateSize int64         // 0: never by size
	rotateAge  time.Duration // 0: never by age
	maxOpen    int
	idle       time.Duration
	fsync      bool // fsync at sync points (sync always and interval); never leaves it to the OS
	now        func() time.Time
	// mill is told a path after it rotated, and the first time it is opened: its backups need compressing and
	// pruning.
	mill func(path string)

	files  map[string]*openFile
	seen   map[string]struct{} // paths milled once since the start
	last   *openFile           // the file of the previous line: a batch usually goes to one
	dirty  []*openFile         // files written since the last sync or flush
	closed []*openFile         // reused structs
	// failed are the paths whose sync failed in the last sync: the others made it, and the deliveries that
	// wrote only to them may be acknowledged (a directory can go away between two files of one sync).
	failed []string
}

type openFile struct {
	path string
	f    *os.File
	info os.FileInfo // of f when opened: the path must still name this file when the sink acks what it wrote
	buf  []byte      // written to f at flush, or when it reaches bufferSize
	size int64       // the file's size with buf
	// good is the file's size at its last sync that succeeded: what is beyond it is not acknowledged yet, and is
	// cut off again when a write, an fsync or the check fails, so the deliveries handed back leave no copy.
	good    int64
	opened  time.Time
	used    time.Time
	dirty   bool // in writer.dirty
	unsync  bool // written to f since its last fsync
	newFile bool // created by this open: its directory must be synced with it
}

// bufferSize is each open file's buffer: large enough that a sync interval's lines cost few write calls.
const bufferSize = 64 << 10

// File and directory permissions: points are plant data, readable by the gateway's group, not by everyone.
const (
	fileMode = 0o640
	dirMode  = 0o750
)

func newWriter(s *Settings, now func() time.Time, mill func(string)) *writer {
	return &writer{
		format:     s.Format,
		rotateSize: s.RotateSize,
		rotateAge:  s.RotateAge,
		maxOpen:    s.MaxOpenFiles,
		idle:       s.IdleTimeout,
		fsync:      s.Sync != SyncNever,
		now:        now,
		mill:       mill,
		files:      map[string]*openFile{},
		seen:       map[string]struct{}{},
	}
}

// write appends one line (with its newline) to the file at path, opening or rotating it first as needed.
// path may be a scratch buffer: it is copied only when a file is opened.
func (w *writer) write(path []byte, line []byte) error { return w.writeAt(path, line, w.now()) }

// writeAt is write at the time now: the sink reads its clock once per message, not once per line (a clock read
// was 3% of the Modbus path's CPU at 30 lines per batch).
func (w *writer) writeAt(path []byte, line []byte, now time.Time) error {
	of := w.last
	if of == nil || of.path != string(path) {
		of = w.files[string(path)]
	}
	if of != nil && w.rotateAge > 0 && now.Sub(of.opened) >= w.rotateAge {
		if err := w.rotate(of); err != nil {
			return err
		}
		of = nil
	}
	if of != nil && w.rotateSize > 0 && of.size > 0 && of.size+int64(len(line)) > w.rotateSize {
		if err := w.rotate(of); err != nil {
			return err
		}
		of = nil
	}
	if of == nil {
		var err error
		if of, err = w.open(string(path), now); err != nil {
			return err
		}
		if w.rotateSize > 0 && of.size > 0 && of.size+int64(len(line)) > w.rotateSize {
			if err := w.rotate(of); err != nil { // an existing file, full already
				return err
			}
			if of, err = w.open(string(path), now); err != nil {
				return err
			}
		}
	}
	w.last = of
	of.used = now
	if !of.dirty {
		of.dirty = true
		w.dirty = append(w.dirty, of)
	}
	of.buf = append(of.buf, line...)
	of.size += int64(len(line))
	if len(of.buf) >= bufferSize {
		return w.flushFile(of)
	}
	return nil
}

// open opens (appending) or creates the file at path, closing the least recently used one first when
// max_open_files are open.
func (w *writer) open(path string, now time.Time) (*openFile, error) {
	if len(w.files) >= w.maxOpen {
		var lru *openFile
		for _, of := range w.files {
			if lru == nil || of.used.Before(lru.used) {
				lru = of
			}
		}
		if err := w.close(lru); err != nil {
			return nil, err
		}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("file sink: create directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, fileMode)
	if err != nil {
		return nil, fmt.Errorf("file sink: open: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("file sink: stat: %w", err)
	}
	if !info.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("file sink: %s is not a regular file", path)
	}
	of := w.reuse()
	*of = openFile{path: path, f: f, info: info, buf: of.buf[:0], size: info.Size(), good: info.Size(), opened: now, used: now,
		newFile: info.Size() == 0}
	if of.size > 0 {
		// A torn last line (a power cut during a write) is closed with a newline, so the next line starts clean.
		var last [1]byte
		if r, err := os.Open(path); err == nil {
			if _, err := r.ReadAt(last[:], of.size-1); err == nil && last[0] != '\n' {
				of.buf = append(of.buf, '\n')
				of.size++
			}
			_ = r.Close()
		}
	} else if w.format == FormatCSV {
		of.buf = append(of.buf, csvHeader...)
		of.size += int64(len(csvHeader))
	}
	w.files[path] = of
	if _, ok := w.seen[path]; !ok {
		w.seen[path] = struct{}{}
		if w.mill != nil {
			w.mill(path) // backups left by an earlier run may still need compressing or pruning
		}
	}
	return of, nil
}

func (w *writer) reuse() *openFile {
	if n := len(w.closed); n > 0 {
		of := w.closed[n-1]
		w.closed = w.closed[:n-1]
		return of
	}
	return &openFile{}
}

// flushFile writes of's buffer to the file.
func (w *writer) flushFile(of *openFile) error {
	if len(of.buf) == 0 {
		return nil
	}
	n, err := of.f.Write(of.buf)
	if n > 0 {
		of.unsync = true
	}
	if err != nil {
		w.fail(of)
		return fmt.Errorf("file sink: write %s: %w", of.path, err)
	}
	of.buf = of.buf[:0]
	return nil
}

// syncFile flushes of and, when the sink fsyncs, makes it durable (and its directory, for a new file); then it
// checks that the path still names the file written, since a file moved or removed while open takes writes that
// nobody will find. After it returns nil, what was written to of is at its path (and on disk, unless never).
func (w *writer) syncFile(of *openFile) error {
	if err := w.flushFile(of); err != nil {
		return err
	}
	if !of.unsync {
		return nil
	}
	if w.fsync {
		if err := of.f.Sync(); err != nil {
			w.fail(of)
			return fmt.Errorf("file sink: fsync %s: %w", of.path, err)
		}
		if of.newFile {
			if err := syncDir(filepath.Dir(of.path)); err != nil {
				w.fail(of)
				return err
			}
			of.newFile = false
		}
	}
	if info, err := os.Stat(of.path); err != nil || !os.SameFile(info, of.info) {
		w.fail(of)
		if err == nil {
			err = ErrMoved
		}
		return fmt.Errorf("file sink: %s: %w", of.path, err)
	}
	of.unsync = false
	of.good = of.size
	return nil
}

// ErrMoved is the error of a file that was replaced, moved or removed under the sink while it was open.
var ErrMoved = errors.New("the file was moved or replaced while open")

// fail closes of after a failed write, fsync or check, first cutting it back to its last good sync (best
// effort: after an I/O error the truncate may fail too), so that the deliveries handed back, which come again,
// are not also left in it; a torn line at worst stays, closed by the next open.
func (w *writer) fail(of *openFile) {
	if of.f != nil {
		_ = of.f.Truncate(of.good)
	}
	w.drop(of)
}

// sync flushes every file written since the last sync and, unless sync is never, fsyncs it: what was written
// before it returns nil is on disk. On an error it still tries the other files, and returns the first error.
func (w *writer) sync() error {
	var first error
	w.failed = w.failed[:0]
	for _, of := range w.dirty {
		of.dirty = false
		if of.f == nil {
			continue // dropped after an error: its failure was reported then
		}
		if err := w.syncFile(of); err != nil {
			w.failed = append(w.failed, of.path)
			if first == nil {
				first = err
			}
		}
	}
	clear(w.dirty)
	w.dirty = w.dirty[:0]
	return first
}

// abort discards what was written since the last good sync, in every file (each is cut back and closed): the
// deliveries it belonged to were handed back and will come again, so no copy of them may stay behind — in a
// file that is still open and would otherwise be flushed later, or in one moved away that comes back.
func (w *writer) abort() {
	for _, of := range w.dirty {
		of.dirty = false
	}
	clear(w.dirty)
	w.dirty = w.dirty[:0]
	for _, of := range w.files {
		if len(of.buf) > 0 || of.size != of.good {
			w.fail(of)
		}
	}
}

// flush is sync for sync never: the same writes and checks, without fsync (w.fsync is false then).
func (w *writer) flush() error { return w.sync() }

// rotate syncs and closes of, renames it to its backup name and hands the path to the mill.
func (w *writer) rotate(of *openFile) error {
	path := of.path
	if err := w.close(of); err != nil {
		return err
	}
	backup := backupName(path, w.now())
	for i := 1; ; i++ { // two rotations in one millisecond: the second backup gets a suffix
		if _, err := os.Lstat(backup); errors.Is(err, os.ErrNotExist) {
			break
		}
		backup = backupName(path, w.now().Add(time.Duration(i)*time.Millisecond))
	}
	if err := os.Rename(path, backup); err != nil {
		return fmt.Errorf("file sink: rotate: %w", err)
	}
	if w.fsync {
		if err := syncDir(filepath.Dir(path)); err != nil {
			return err
		}
	}
	if w.mill != nil {
		w.mill(path)
	}
	return nil
}

// close syncs and closes of.
func (w *writer) close(of *openFile) error {
	err := w.syncFile(of)
	if of.f == nil {
		return err // dropped by the failed sync
	}
	cerr := of.f.Close()
	w.forget(of)
	if err == nil && cerr != nil {
		err = fmt.Errorf("file sink: close %s: %w", of.path, cerr)
	}
	return err
}

// drop closes of without writing its buffer: after a failed write or fsync nothing more goes into it.
func (w *writer) drop(of *openFile) {
	if of.f != nil {
		_ = of.f.Close()
	}
	w.forget(of)
}

func (w *writer) forget(of *openFile) {
	if w.files[of.path] == of {
		delete(w.files, of.path)
	}
	if w.last == of {
		w.last = nil
	}
	of.f = nil
	if !of.dirty { // still listed in dirty otherwise: reused after the next sync
		w.closed = append(w.closed, of)
	}
}

// housekeeping rotates files past rotate_age and closes those idle for idle_timeout (synced first), so that a
// file of a device that went quiet is still rotated and compressed, and file descriptors stay few.
func (w *writer) housekeeping() error {
	now := w.now()
	var first error
	for _, of := range w.files {
		var err error
		switch {
		case w.rotateAge > 0 && now.Sub(of.opened) >= w.rotateAge:
			err = w.rotate(of)
		case now.Sub(of.used) >= w.idle:
			err = w.close(of)
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}

// closeAll syncs and closes every file, for the actor's stop.
func (w *writer) closeAll() error {
	var first error
	for _, of := range w.files {
		if err := w.close(of); err != nil && first == nil {
			first = err
		}
	}
	w.dirty = w.dirty[:0]
	return first
}

// syncDir fsyncs a directory, so that a file created or renamed in it survives a power cut.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("file sink: open directory to sync: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("file sink: sync directory %s: %w", dir, err)
	}
	return nil
}
