package file

import (
	"slices"
	"strings"
	"time"

	"github.com/iotgw/iotgw/config"
)

// The schema of a `sink "name" { type = "file" … }` block lives here, in the kind's folder, beside the actor
// (config.RegisterSink takes any settings with a Validate method; config's exported Validator reports at the
// attribute's file:line:column).

// Sync modes.
const (
	SyncAlways   = "always"   // fsync after every delivery, then ack it
	SyncInterval = "interval" // fsync every sync_interval, then ack what it covered
	SyncNever    = "never"    // ack once written to the operating system; it flushes when it likes
)

var syncModes = []string{SyncAlways, SyncInterval, SyncNever}

// Settings is sink type "file".
type Settings struct {
	// Subjects to consume, durably; default ["iot.processed.batch.>"] (every point once).
	Subjects []string `hcl:"subjects,optional"`
	// Path template; default "{data_dir}/points/{date}/{device}.jsonl".
	Path string `hcl:"path,optional"`
	// jsonl (default) | influx | csv.
	Format string `hcl:"format,optional"`
	// Rotate a file before it grows past this size (default "64MB"; "0" never by size).
	RotateSizeText string `hcl:"rotate_size,optional"`
	// Rotate a file this long after the sink opened it (default "24h"; "0s" never by age).
	RotateAgeText string `hcl:"rotate_age,optional"`
	// Rotated files kept per path, the oldest removed first (default 10).
	MaxFiles int `hcl:"max_files,optional"`
	// Gzip rotated files (default true).
	Compress bool `hcl:"compress,optional"`
	// always | interval (default) | never.
	Sync string `hcl:"sync,optional"`
	// How often "interval" syncs (default "1s").
	SyncIntervalText string `hcl:"sync_interval,optional"`
	// Files kept open at once (default 64); past it the least recently written is synced and closed.
	MaxOpenFiles int `hcl:"max_open_files,optional"`
	// A file not written for this long is synced and closed (default "1m").
	IdleTimeoutText string `hcl:"idle_timeout,optional"`
	// Deliveries handed to the sink and not yet acknowledged (default 4096).
	MaxAckPending int `hcl:"max_ack_pending,optional"`
	// While the directory cannot be written, each delivery is asked again after this delay (default "1s").
	RetryText string `hcl:"retry,optional"`

	RotateSize   int64
	RotateAge    time.Duration
	SyncInterval time.Duration
	IdleTimeout  time.Duration
	Retry        time.Duration
	tmpl         *template
}

// NewSettings returns the settings of a file sink block with their defaults.
func NewSettings() config.SinkSettings {
	return &Settings{
		Subjects:         []string{"iot.processed.batch.>"},
		Path:             "{data_dir}/points/{date}/{device}.jsonl",
		Format:           FormatJSONL,
		RotateSizeText:   "64MB",
		RotateAgeText:    "24h",
		MaxFiles:         10,
		Compress:         true,
		Sync:             SyncInterval,
		SyncIntervalText: "1s",
		MaxOpenFiles:     64,
		IdleTimeoutText:  "1m",
		MaxAckPending:    4096,
		RetryText:        "1s",
	}
}

// Limits of the numbers an operator may write: generous, but not so large that a typo exhausts the machine.
const (
	maxMaxFiles      = 100_000
	maxOpenFilesCap  = 4096
	maxAckPendingCap = 1_000_000
)

// Validate implements config.SinkSettings.
func (s *Settings) Validate(v *config.Validator) {
	if len(s.Subjects) == 0 {
		v.Errorf("subjects", `A file sink needs at least one subject, like ["iot.processed.batch.>"].`)
	}
	for i, subj := range s.Subjects {
		if err := config.ValidSubject(subj, true); err != nil {
			v.ErrorfIndex("subjects", i, "%v", err)
		}
	}
	if t, err := parseTemplate(s.Path); err != nil {
		v.Errorf("path", "%v", err)
	} else {
		s.tmpl = t
	}
	if !slices.Contains(formats, s.Format) {
		v.Errorf("format", "unknown format %q; known: %s", s.Format, strings.Join(formats, ", "))
	}
	if n, err := config.ParseSize(s.RotateSizeText); err != nil {
		v.Errorf("rotate_size", "%v", err)
	} else if n != 0 && n < 4096 {
		v.Errorf("rotate_size", "rotate_size %q is too small: at least 4KB, or \"0\" to never rotate by size", s.RotateSizeText)
	} else {
		s.RotateSize = n
	}
	s.RotateAge, _ = v.Duration("rotate_age", s.RotateAgeText)
	if s.RotateAge != 0 && s.RotateAge < time.Second {
		v.Errorf("rotate_age", "rotate_age %q is too short: at least 1s, or \"0s\" to never rotate by age", s.RotateAgeText)
	}
	if s.MaxFiles < 1 || s.MaxFiles > maxMaxFiles {
		v.Errorf("max_files", "max_files is %d: keep from 1 to %d rotated files per path", s.MaxFiles, maxMaxFiles)
	}
	if !slices.Contains(syncModes, s.Sync) {
		v.Errorf("sync", "unknown sync mode %q; known: %s", s.Sync, strings.Join(syncModes, ", "))
	}
	var ok bool
	if s.SyncInterval, ok = v.Duration("sync_interval", s.SyncIntervalText); ok && s.SyncInterval < time.Millisecond {
		v.Errorf("sync_interval", "sync_interval %q is too short: at least 1ms", s.SyncIntervalText)
	}
	if s.MaxOpenFiles < 1 || s.MaxOpenFiles > maxOpenFilesCap {
		v.Errorf("max_open_files", "max_open_files is %d: from 1 to %d", s.MaxOpenFiles, maxOpenFilesCap)
	}
	if s.IdleTimeout, ok = v.Duration("idle_timeout", s.IdleTimeoutText); ok && s.IdleTimeout < time.Second {
		v.Errorf("idle_timeout", "idle_timeout %q is too short: at least 1s", s.IdleTimeoutText)
	}
	if s.MaxAckPending < 1 || s.MaxAckPending > maxAckPendingCap {
		v.Errorf("max_ack_pending", "max_ack_pending is %d: from 1 to %d", s.MaxAckPending, maxAckPendingCap)
	}
	if s.Retry, ok = v.Duration("retry", s.RetryText); ok && (s.Retry < time.Millisecond || s.Retry > time.Hour) {
		v.Errorf("retry", "retry %q is out of range: from 1ms to 1h", s.RetryText)
	}
}
