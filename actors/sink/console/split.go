package console

// splitBatch finds each element of a batch {"points":[…]} as the bytes it was sent as, without decoding
// it: the processing stage has validated and encoded every point of an iot.processed.batch message with the same
// encoder the console's JSON format uses (isp.AppendPoint), so printing its elements verbatim prints the same
// lines for a fraction of the cost of decoding and encoding them again (the console's share of a poll's CPU fell
// from about 15% to a few; see the README's Modbus measurements).
//
// It accepts only what keeps the output one JSON object per line: the batch object with the one member
// "points", an array of objects, strings closed, brackets balanced (at most maxSplitDepth deep) and no control
// byte anywhere inside an element (so no element can print as two lines). Anything else returns false having
// no spans, and the caller decodes the message as before. It checks structure, not meaning: an element is
// printed as its publisher encoded it.
//
// spans is scratch space; the elements are data[s[0]:s[1]] for each returned span.
func splitBatch(data []byte, spans [][2]int) ([][2]int, bool) {
	spans = spans[:0]
	i := skipWS(data, 0)
	const head = `"points"`
	if i >= len(data) || data[i] != '{' {
		return spans[:0], false
	}
	i = skipWS(data, i+1)
	if len(data)-i < len(head) || string(data[i:i+len(head)]) != head {
		return spans[:0], false
	}
	i = skipWS(data, i+len(head))
	if i >= len(data) || data[i] != ':' {
		return spans[:0], false
	}
	i = skipWS(data, i+1)
	if i >= len(data) || data[i] != '[' {
		return spans[:0], false
	}
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == ']' {
		i++
	} else {
		for {
			if i >= len(data) || data[i] != '{' {
				return spans[:0], false
			}
			end, ok := objectEnd(data, i)
			if !ok {
				return spans[:0], false
			}
			spans = append(spans, [2]int{i, end})
			i = skipWS(data, end)
			if i >= len(data) {
				return spans[:0], false
			}
			if data[i] == ']' {
				i++
				break
			}
			if data[i] != ',' {
				return spans[:0], false
			}
			i = skipWS(data, i+1)
		}
	}
	i = skipWS(data, i)
	if i >= len(data) || data[i] != '}' {
		return spans[:0], false
	}
	if skipWS(data, i+1) != len(data) {
		return spans[:0], false
	}
	return spans, true
}

// maxSplitDepth bounds the nesting inside one element (a point's tags are one level deep).
const maxSplitDepth = 8

// objectEnd returns the index just past the object that starts at data[start] ('{').
func objectEnd(data []byte, start int) (int, bool) {
	var open [maxSplitDepth]byte // the closing bracket each open one wants
	depth := 0
	for i := start; i < len(data); i++ {
		c := data[i]
		switch {
		case c < 0x20:
			return 0, false
		case c == '"':
			for i++; ; i++ {
				for i < len(data) && plain[data[i]] { // the bytes that need no look: most of a string
					i++
				}
				if i >= len(data) || data[i] < 0x20 {
					return 0, false
				}
				if data[i] == '\\' {
					i++ // the escaped byte, whatever it is, cannot close the string
					if i < len(data) && data[i] < 0x20 {
						return 0, false
					}
					continue
				}
				break // data[i] is the closing quote
			}
		case c == '{' || c == '[':
			if depth == maxSplitDepth {
				return 0, false
			}
			open[depth] = c + 2 // '{'+2 is '}', '['+2 is ']'
			depth++
		case c == '}' || c == ']':
			if depth == 0 || open[depth-1] != c {
				return 0, false
			}
			if depth--; depth == 0 {
				return i + 1, true
			}
		}
	}
	return 0, false
}

// plain marks the bytes of a string that neither end it nor escape nor break a line.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func skipWS(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}
