package file

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/iotgw/iotgw/isp"
)

// The path template says where each point goes: literal text and placeholders in braces,
// "{data_dir}/points/{date}/{device}.jsonl". Like Vector's file sink (whose path is a template rendered per
// event) the date comes from the point's own timestamp, so points delivered late after an outage still land in
// the file of the day they were measured; unlike Vector it has a fixed, short list of placeholders instead of
// strftime and arbitrary fields, so that everything that can vary in a path is a validated token or a number.

// MaxTemplateLen bounds the path template (and so every path it gives, with 64-character device ids).
const MaxTemplateLen = 1024

// Placeholders of the path template.
const (
	phDataDir = "data_dir" // the gateway's data_dir; only at the start
	phSink    = "sink"     // the sink's name
	phDevice  = "device"   // the point's device id (a validated token)
	phDate    = "date"     // the point's date, UTC, 2006-01-02
	phHour    = "hour"     // the point's hour, UTC, 00-23
)

var placeholders = []string{phDataDir, phSink, phDevice, phDate, phHour}

// ErrTemplate classifies the errors of parseTemplate.
var ErrTemplate = errors.New("invalid path template")

// segment is a literal (ph == "") or a placeholder.
type segment struct {
	lit string
	ph  string
}

// template is a parsed path template.
type template struct {
	text string
	segs []segment
	// perPoint says whether the path depends on the point (device, date, hour), so each point must be resolved.
	perPoint bool
}

// parseTemplate parses and checks a path template: balanced braces, known placeholders, {data_dir} only at the
// start, no ".." element anywhere (the template must not climb out of the directory it names), a file name at
// the end, no control characters. It never touches the file system.
func parseTemplate(text string) (*template, error) {
	if text == "" {
		return nil, fmt.Errorf("%w: empty", ErrTemplate)
	}
	if len(text) > MaxTemplateLen {
		return nil, fmt.Errorf("%w: %d bytes long, at most %d", ErrTemplate, len(text), MaxTemplateLen)
	}
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("%w: not valid UTF-8", ErrTemplate)
	}
	for _, r := range text {
		if r < 0x20 || r == 0x7f {
			return nil, fmt.Errorf("%w: contains the control character %q", ErrTemplate, r)
		}
	}
	t := &template{text: text}
	rest := text
	for rest != "" {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			t.segs = append(t.segs, segment{lit: rest})
			break
		}
		if rest[open] == '}' {
			return nil, fmt.Errorf("%w: %q has a '}' without its '{'", ErrTemplate, text)
		}
		if open > 0 {
			t.segs = append(t.segs, segment{lit: rest[:open]})
		}
		end := strings.IndexAny(rest[open+1:], "{}")
		if end < 0 || rest[open+1+end] == '{' {
			return nil, fmt.Errorf("%w: %q has a '{' without its '}'", ErrTemplate, text)
		}
		name := rest[open+1 : open+1+end]
		known := false
		for _, p := range placeholders {
			known = known || p == name
		}
		if !known {
			return nil, fmt.Errorf("%w: unknown placeholder {%s}; known: {%s}", ErrTemplate, name, strings.Join(placeholders, "}, {"))
		}
		if name == phDataDir && len(t.segs) > 0 {
			return nil, fmt.Errorf("%w: {data_dir} may only start the path", ErrTemplate)
		}
		t.segs = append(t.segs, segment{ph: name})
		t.perPoint = t.perPoint || name == phDevice || name == phDate || name == phHour
		rest = rest[open+1+end+1:]
	}
	// What a placeholder becomes never holds a separator or a dot-only name (tokens, digits, a data_dir that is
	// checked on its own), so the elements of the template with each placeholder read as "x" are the elements of
	// every path it gives.
	var sample strings.Builder
	for _, s := range t.segs {
		if s.ph != "" && s.ph != phDataDir {
			sample.WriteString("x")
		} else if s.ph == phDataDir {
			sample.WriteString("/data")
		} else {
			sample.WriteString(s.lit)
		}
	}
	elems := strings.Split(filepath.ToSlash(sample.String()), "/")
	for _, e := range elems {
		if e == ".." {
			return nil, fmt.Errorf("%w: %q has a \"..\" element: the path must not leave its directory", ErrTemplate, text)
		}
	}
	if last := elems[len(elems)-1]; last == "" || last == "." {
		return nil, fmt.Errorf("%w: %q does not end with a file name", ErrTemplate, text)
	}
	return t, nil
}

// binding is what the placeholders of one sink stand for.
type binding struct {
	dataDir string
	sink    string
}

// base is the directory every path of the template lies in: the template up to its first placeholder that
// depends on the point, without the partial element after its last separator.
func (t *template) base(b binding) string {
	var sb strings.Builder
	for _, s := range t.segs {
		if s.ph == phDevice || s.ph == phDate || s.ph == phHour {
			break
		}
		sb.WriteString(t.fill(s, b, "", time.Time{}))
	}
	pre := sb.String()
	if !t.perPoint {
		return filepath.Dir(filepath.Clean(pre))
	}
	if i := strings.LastIndexByte(pre, '/'); i >= 0 {
		return filepath.Clean(pre[:i+1])
	}
	return "."
}

func (t *template) fill(s segment, b binding, device string, ts time.Time) string {
	switch s.ph {
	case "":
		return s.lit
	case phDataDir:
		return b.dataDir
	case phSink:
		return b.sink
	case phDevice:
		return device
	case phDate:
		return ts.Format("2006-01-02")
	case phHour:
		return ts.Format("15")
	}
	return ""
}

// appendSeg is fill without allocating, for the path of every point.
func (t *template) appendSeg(dst []byte, s segment, b binding, device string, ts time.Time) []byte {
	switch s.ph {
	case phDate:
		return ts.AppendFormat(dst, "2006-01-02")
	case phHour:
		return ts.AppendFormat(dst, "15")
	}
	return append(dst, t.fill(s, b, device, ts)...)
}

// ErrPath is the error of a path that the template would give outside its directory, or from a device id that
// cannot be a file name. Such a point can never be written (the delivery is terminated, not retried).
var ErrPath = errors.New("unsafe file path")

// appendPath appends the path of a point of device at time ts to dst. The device id must be a valid token (it
// came off the bus: checked here, not trusted), and the result must stay inside base.
func (t *template) appendPath(dst []byte, b binding, device string, ts time.Time) ([]byte, error) {
	if err := isp.ValidToken(device); err != nil {
		return dst, fmt.Errorf("%w: device id: %v", ErrPath, err)
	}
	ts = ts.UTC()
	for _, s := range t.segs {
		dst = t.appendSeg(dst, s, b, device, ts)
	}
	return dst, nil
}

// within reports whether path lies inside dir (both cleaned by the caller or not; it cleans).
func within(dir, path string) bool {
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}
