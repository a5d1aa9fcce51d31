package rule

import (
	"math"
	"strconv"
	"time"

	split "github.com/iotgw/iotgw/actors/sink/batch"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/isp"
)

// The undecoded path. A filter, a transform or a forward reads of a point only its device id, key, value, type,
// quality and timestamp when its expressions read no tags, no values of other keys and its match no tags. For
// such a rule the actor hands the engine the batch as it came (ProcessRaw): batch.SplitPoints proves every
// element is byte for byte isp.AppendPoint of the point the decoder reads from it, and gives each element's
// spans, so the engine reads those few fields from the bytes and never builds the point's tags and source.
// What it publishes is made of the elements' own bytes: a filter's or a forward's kept points as they came, a
// transform's (or a forward's rename) with only the key, value, type and quality encoded again, between the
// element's device id before and its timestamp, tags and source after. Since each element is its point's
// encoding, the output is byte for byte what decoding, the rule and isp.AppendBatch make (TestRawPathSameAsDecoded,
// FuzzRawPath). What SplitPoints cannot prove (another encoder's spacing or member order, an escape it does not
// write, an invalid batch) goes the decoding way, with its errors.

// undecoded is the state of the undecoded path, nil for a rule that cannot take it.
type undecoded struct {
	data  []byte          // the batch being processed
	els   []split.Element // its elements
	from  []int           // for each point in Engine.batch, the element it came from
	elem  []byte          // the element being processed: an error event's point
	p     isp.Point       // the point being processed (its tags and source are not read)
	dec   isp.Decoder     // for an element whose strings need unescaping, or whose value is a string
	names map[string]string
	slots []slot // per position in the batch, what the previous batch had there
}

// slot is what the point at one position of the previous batch had: its names and series. A stream of polls
// repeats them position by position (as isp's decoder guesses too), so comparing bytes with them is most often all
// it takes, instead of a lookup in names and two in the engine's series.
type slot struct {
	dev, key, typ string
	s             *series
}

// maxNames bounds the device ids, keys and types undecoded keeps one string of: past it a new name is made per
// point (as the decoder's table does), so a source inventing keys costs allocations, not memory.
const maxNames = 4096

// rawCapable says whether a rule can run on undecoded batches: a filter, a forward or a transform (without a unit,
// which rewrites the tags, or derived points, which read other keys) whose expressions and match read no tags
// and no values of other keys.
func rawCapable(r *config.Rule, needTags, needValues bool) bool {
	switch r.Type {
	case config.RuleFilter, config.RuleForward:
	case config.RuleTransform:
		if r.Transform.Unit != "" || len(r.Transform.Derive) > 0 {
			return false
		}
	default:
		return false
	}
	return len(r.Match.Tags) == 0 && !needTags && !needValues
}

// ProcessRaw runs the rule over a batch {"points":[…]} as it came, without decoding it, when the rule and the
// batch allow (see undecoded), returning its points and true. Otherwise it does nothing and returns false: the
// caller decodes the batch and calls ProcessBatch, which does the same. data is not kept.
func (e *Engine) ProcessRaw(data []byte, now time.Time) (int, bool) {
	u := e.undec
	if u == nil {
		return 0, false
	}
	els, ok := split.SplitPoints(data, u.els)
	u.els = els
	if !ok {
		return 0, false
	}
	u.data, u.from = data, u.from[:0]
	e.raw, e.rawLen = data, len(els)
	e.stats.In += uint64(len(els))
	e.batch = e.batch[:0]
	start := time.Now()
	for len(u.slots) < len(els) {
		u.slots = append(u.slots, slot{})
	}
	for i := range els {
		el, sl := &els[i], &u.slots[i]
		p, ok := u.point(el, sl)
		if !ok {
			e.stats.Errors++ // cannot be: SplitPoints proved the decoder reads the batch
			continue
		}
		u.elem = data[el.Start:el.End]
		n := len(e.batch)
		e.hint, e.cur = sl.s, nil
		e.point(p, nil, now)
		sl.s = e.cur // the point's series, or nil when it matched none
		if len(e.batch) > n {
			u.from = append(u.from, i)
		}
	}
	u.elem, e.hint = nil, nil
	e.flush()
	e.raw, u.data = nil, nil
	e.stats.EvalNs += uint64(time.Since(start))
	return len(els), true
}

// point reads the fields a rule of the undecoded path reads from an element. Strings with an escape and string
// values (which need unescaping) are decoded, as the decoder would, from the element alone.
func (u *undecoded) point(el *split.Element, sl *slot) (*isp.Point, bool) {
	data, p := u.data, &u.p
	if el.KeyEscaped || el.TypeEscaped || data[el.ValueStart] == '"' {
		p.Tags = nil // the points kept in Engine.batch may share the previous one's
		if err := u.dec.DecodePoint(data[el.Start:el.End], p); err != nil {
			return nil, false
		}
		return p, true
	}
	if b := data[el.DeviceStart:el.DeviceEnd]; string(b) != sl.dev {
		sl.dev = u.name(b)
	}
	if b := data[el.KeyStart+1 : el.KeyEnd-1]; string(b) != sl.key {
		sl.key = u.name(b)
	}
	if el.TypeEnd == el.TypeStart {
		sl.typ = ""
	} else if b := data[el.TypeStart+1 : el.TypeEnd-1]; string(b) != sl.typ {
		sl.typ = u.name(b)
	}
	p.DeviceID, p.Key, p.Type = sl.dev, sl.key, sl.typ
	p.Value = rawValue(data[el.ValueStart:el.ValueEnd])
	p.Quality, p.Timestamp = el.Quality, el.Timestamp
	p.Tags, p.Source = nil, ""
	return p, true
}

func (u *undecoded) name(b []byte) string {
	if s, ok := u.names[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(u.names) < maxNames {
		u.names[s] = s
	}
	return s
}

// rawValue reads a value SplitPoints has proven to be in the encoder's form (not a string): null, true, false,
// an integer literal that fits int64 (an Int, as the decoder reads it) or another number (a Float).
func rawValue(b []byte) isp.Value {
	switch b[0] {
	case 'n':
		return isp.Null()
	case 't':
		return isp.Bool(true)
	case 'f':
		return isp.Bool(false)
	}
	neg := b[0] == '-'
	digits := b
	if neg {
		digits = b[1:]
	}
	// mantissa, its digits and the digits after the point, while they fit: the common reading (20.5, -3, 1234.25)
	var m uint64
	n, frac, point := 0, 0, false
	for _, c := range digits {
		switch {
		case c >= '0' && c <= '9':
			if n == 19 {
				return parseFloat(b)
			}
			m = m*10 + uint64(c-'0')
			n++
			if point {
				frac++
			}
		case c == '.':
			point = true
		default: // an exponent
			return parseFloat(b)
		}
	}
	if !point {
		switch {
		case !neg && m <= math.MaxInt64:
			return isp.Int(int64(m))
		case neg && m <= 1<<63:
			return isp.Int(int64(-m))
		}
		return parseFloat(b) // beyond int64: a Float, as the decoder reads it
	}
	// Exact: a mantissa below 2^53 and a power of ten up to 1e22 are both exact float64s, so one division is
	// correctly rounded (strconv's own fast path, and the decoder's).
	if m < 1<<53 && frac <= 22 {
		f := float64(m) / pow10[frac]
		if neg {
			f = -f
		}
		return isp.Float(f)
	}
	return parseFloat(b)
}

var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
	1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

func parseFloat(b []byte) isp.Value {
	f, _ := strconv.ParseFloat(string(b), 64) // in range: SplitPoints proved the decoder reads it
	return isp.Float(f)
}

// appendRaw appends the encoding of e.batch[i]: its element as it came when the rule changes nothing, or else
// the element with its key, value, type and quality (what a transform or a forward's rename changes; the device
// id, timestamp, tags and source they keep) encoded again by isp.AppendMembers, as isp.AppendPoint writes them.
func (e *Engine) appendRaw(dst []byte, i int) []byte {
	u := e.undec
	el := &u.els[u.from[i]]
	if e.unchanged() {
		return append(dst, u.data[el.Start:el.End]...)
	}
	q := &e.batch[i]
	const keyMember = `"key":`
	dst = append(dst, u.data[el.Start:el.KeyStart-len(keyMember)]...) // '{' and the device id member
	dst = isp.AppendMembers(dst, q.Key, q.Value, q.Type, q.Quality)
	return append(dst, u.data[el.TimestampAt:el.End]...)
}
