// Package sidecar runs sidecars as programs: it reads plugin manifests ({name}-isp.json in the plugins
// directory, as the ISP seed describes them), launches a sidecar's entry with ISP_PORT and LOG_LEVEL set, logs
// what it prints under its name, waits for its port, and stops or kills it. It also holds the reference sidecars
// (modbus/). It speaks ISP only through package isp and never imports the runtime.
package sidecar

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/iotgw/iotgw/isp"
)

// ManifestSuffix names a plugin manifest: {name}-isp.json.
const ManifestSuffix = "-isp.json"

// ModeISPSidecar is the only plugin mode this gateway runs.
const ModeISPSidecar = "isp-sidecar"

// SelfEntry as a manifest's entry means the running iotgw binary itself (with Args such as ["sidecar","modbus"]),
// so the reference sidecars ship inside the gateway and need no separate build.
const SelfEntry = "@iotgw"

// maxManifestSize bounds a manifest file; they are a few hundred bytes.
const maxManifestSize = 64 << 10

// Manifest is a plugin's {name}-isp.json, the seed's fields plus optional Args.
type Manifest struct {
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	Type        string   `json:"type"`
	Mode        string   `json:"mode"`
	Entry       string   `json:"entry"` // relative to the plugins directory, absolute, or SelfEntry
	Args        []string `json:"args,omitempty"`
	Description string   `json:"description"`
	ISPPort     int      `json:"isp_port"`

	// Path is the manifest file, Dir the plugins directory it was found in.
	Path string `json:"-"`
	Dir  string `json:"-"`
}

// Errors of manifests.
var (
	ErrNoPlugin    = errors.New("no such plugin")
	ErrBadManifest = errors.New("invalid plugin manifest")
)

// LoadManifest reads and checks one manifest file.
func LoadManifest(path string) (*Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("plugin manifest: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("plugin manifest %s: %w", path, err)
	}
	if len(data) > maxManifestSize {
		return nil, fmt.Errorf("plugin manifest %s: larger than %d bytes: %w", path, maxManifestSize, ErrBadManifest)
	}
	var m Manifest
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("plugin manifest %s: %v: %w", path, err, ErrBadManifest)
	}
	m.Path, m.Dir = path, filepath.Dir(path)
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("plugin manifest %s: %w", path, err)
	}
	return &m, nil
}

// Validate checks the fields the gateway relies on.
func (m *Manifest) Validate() error {
	var problems []string
	if err := isp.ValidToken(m.Name); err != nil { // the rule of the sidecar block's plugin name it must equal
		problems = append(problems, fmt.Sprintf("name %q: %v", m.Name, err))
	}
	if m.Mode != ModeISPSidecar {
		problems = append(problems, fmt.Sprintf("mode %q: want %q", m.Mode, ModeISPSidecar))
	}
	if m.Entry == "" {
		problems = append(problems, "entry: missing: the program to launch")
	}
	if m.ISPPort < 1 || m.ISPPort > 65535 {
		problems = append(problems, fmt.Sprintf("isp_port %d: want 1..65535", m.ISPPort))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s: %w", strings.Join(problems, "; "), ErrBadManifest)
	}
	return nil
}

// Executable is the path of the program to launch.
func (m *Manifest) Executable() (string, error) {
	switch {
	case m.Entry == SelfEntry:
		return os.Executable()
	case filepath.IsAbs(m.Entry):
		return m.Entry, nil
	default:
		return filepath.Join(m.Dir, filepath.FromSlash(m.Entry)), nil
	}
}

// FindPlugin loads {name}-isp.json from dir.
func FindPlugin(dir, name string) (*Manifest, error) {
	path := filepath.Join(dir, name+ManifestSuffix)
	if _, err := os.Stat(path); err != nil {
		known, _ := ListPlugins(dir)
		names := make([]string, len(known))
		for i, k := range known {
			names[i] = k.Name
		}
		return nil, fmt.Errorf("plugin %q: no %s in %s (found: %s): %w", name, filepath.Base(path), dir, strings.Join(names, ", "), ErrNoPlugin)
	}
	m, err := LoadManifest(path)
	if err != nil {
		return nil, err
	}
	if m.Name != name {
		return nil, fmt.Errorf("plugin manifest %s names plugin %q, not %q: %w", path, m.Name, name, ErrBadManifest)
	}
	return m, nil
}

// ListPlugins loads every manifest in dir, sorted by name; manifests that do not load are skipped and returned as
// errors beside the good ones.
func ListPlugins(dir string) ([]*Manifest, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*"+ManifestSuffix))
	if err != nil {
		return nil, err
	}
	var out []*Manifest
	var errs []error
	for _, p := range paths {
		m, err := LoadManifest(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, errors.Join(errs...)
}
