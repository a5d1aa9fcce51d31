package batch

import "strings"

// The sinks' reading of a data subject: whether its message is a batch ({"points":[…]}) or one point, and which
// device it belongs to when a point does not name its own. One home for the console, file, mqtt and network sinks
// (three copies of it disagreed: only the mqtt sink knew that a rule's output is a batch).

// IsBatch reports whether a message carries a batch: by its subject where DESIGN.md fixes the shape
// (iot.processed.batch.{device}, iot.raw.{protocol}.{device}, a rule's iot.rules.{rule}.{device}), else by its
// payload, whose first member is "points" (a forward rule's own subject template, a sidecar's point subjects).
// A payload that only looks like a batch is still checked whole by the decoder; a wrong guess is an error for that
// message, never a silent loss.
func IsBatch(subject string, data []byte) bool {
	switch {
	case strings.HasPrefix(subject, "iot.processed.batch."), strings.HasPrefix(subject, "iot.raw."):
		return true
	case strings.HasPrefix(subject, "iot.rules.") && strings.Count(subject, ".") == 3:
		return true
	}
	return startsWithPoints(data)
}

// startsWithPoints: the JSON object's first member is named "points" (JSON whitespace allowed around it).
func startsWithPoints(b []byte) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	const name = `"points"`
	if len(b)-i < len(name) || string(b[i:i+len(name)]) != name {
		return false
	}
	i = skipSpace(b, i+len(name))
	return i < len(b) && b[i] == ':'
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// SubjectDevice is the device token of a data subject (iot.processed.batch.{device}, iot.processed.{device}.{key},
// iot.raw.{protocol}.{device}, iot.rules.{rule}.{device}), for a point without its device_id; "" when there is
// none. It allocates nothing: the device is a substring of the subject.
func SubjectDevice(subject string) string {
	var tok [5]string
	n := 0
	for rest := subject; n < len(tok); n++ {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			tok[n] = rest
			n++
			break
		}
		tok[n], rest = rest[:i], rest[i+1:]
		if n == len(tok)-1 {
			return "" // more than four tokens
		}
	}
	if n != 4 || tok[0] != "iot" || tok[3] == "" {
		return ""
	}
	switch {
	case tok[1] == "processed" && tok[2] == "batch":
		return tok[3]
	case tok[1] == "processed":
		return tok[2]
	case tok[1] == "raw", tok[1] == "rules":
		return tok[3]
	}
	return ""
}
