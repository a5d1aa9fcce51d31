package isp

import (
	"errors"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// MaxTokenLen is the longest device id, point key or name, in characters. Subjects are built from them
// (iot.processed.{device}.{key}) and end up in logs and on dashboards; 64 is plenty for a name.
const MaxTokenLen = 64

// ErrInvalidToken classifies the errors of ValidToken.
var ErrInvalidToken = errors.New("invalid subject token")

// ValidToken is the one validator of the names the gateway puts into subjects and shows to people: device ids,
// point keys, rule, sink, sidecar and simulator names, user names, the gateway id. A valid name is 1 to
// MaxTokenLen ASCII letters, digits, '-' and '_'. It lives here, the lowest package, because every side must
// apply the same rule: config to the file's names (config.ValidToken is this function), the processor to what a
// device or sidecar sends, a sidecar to the register keys of a CONFIG.
//
// Why so strict: a name is a NATS subject token (iot.processed.{device}.{key}), where '.', '*' and '>' change the
// subject's meaning, and it is terminal and dashboard text, where Unicode deceives: "watch\u200b" (a zero-width
// space) looks like "watch", "ab\u202ecd" (a right-to-left override) reverses the rest of the line, "boiler/evil"
// is drawn as a child of boiler in the tree. Nothing a plant names its machines needs more than ASCII.
func ValidToken(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidToken)
	}
	for i := 0; i < len(s); i++ {
		if tokenByte[s[i]] {
			continue
		}
		r, _ := utf8.DecodeRuneInString(s[i:])
		return fmt.Errorf("%w: %s contains %s; use ASCII letters, digits, '-' and '_'", ErrInvalidToken,
			strconv.Quote(truncateString(s, MaxTokenLen)), DescribeRune(r))
	}
	if len(s) > MaxTokenLen { // all ASCII here: bytes are characters
		return fmt.Errorf("%w: %d characters long, at most %d allowed", ErrInvalidToken, len(s), MaxTokenLen)
	}
	return nil
}

// TokenByte reports whether c may stand in a name ValidToken accepts.
func TokenByte(c byte) bool { return tokenByte[c] }

// tokenByte holds the bytes ValidToken accepts (a table of 256: no bounds check, no branch on ASCII).
var tokenByte = func() (t [256]bool) {
	for c := range t {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
	}
	return t
}()

// DescribeRune names a character a name may not hold, saying what it would do.
func DescribeRune(r rune) string {
	switch {
	case r == '.':
		return "'.', which separates subject tokens"
	case r == '*' || r == '>':
		return fmt.Sprintf("the wildcard %q", r)
	case r == '/':
		return "'/', which separates the levels of the supervision tree"
	case r == utf8.RuneError:
		return "invalid UTF-8"
	case unicode.IsSpace(r):
		return fmt.Sprintf("the space character %U", r)
	case unicode.IsControl(r):
		return fmt.Sprintf("the control character %U", r)
	case unicode.Is(unicode.Cf, r):
		return fmt.Sprintf("the invisible formatting character %U", r)
	case r >= utf8.RuneSelf:
		return fmt.Sprintf("the non-ASCII character %U", r)
	}
	return fmt.Sprintf("the character %q", r)
}
