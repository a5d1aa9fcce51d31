package config

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/iotgw/iotgw/isp"
)

// MaxTokenLen is the longest device id, point key or name, in characters (isp.MaxTokenLen).
const MaxTokenLen = isp.MaxTokenLen

// ErrInvalidToken and ErrInvalidSubject classify the errors of ValidToken and ValidSubject.
var (
	ErrInvalidToken   = isp.ErrInvalidToken
	ErrInvalidSubject = errors.New("invalid subject")
)

// ValidToken checks a name the gateway puts into subjects: an id, key or name of the config file. It is
// isp.ValidToken, the gateway's one name validator, so that what a sidecar or device sends meets the rule the
// file's names meet (config may import isp; isp, and the sidecars, cannot import config).
func ValidToken(s string) error { return isp.ValidToken(s) }

// checkKey reports a device's point key (what: "point", "register"; title: the same capitalised) that cannot be
// a subject token or that the device uses twice; first holds the block of each key seen so far.
func checkKey(v *Validator, what, title, key string, first map[string]*Validator) {
	if err := ValidToken(key); err != nil {
		v.Errorf("", "The %s key becomes a NATS subject token: %v.", what, err)
	} else if f, dup := first[key]; dup {
		v.Errorf("", "%s key %s is used twice in this device; the first is at %s.", title, quote(key), f.DefRange())
	} else {
		first[key] = v
	}
}

// ValidSubject reports whether s is a NATS subject: dot-separated non-empty tokens without whitespace or
// control characters. With wildcards, a token may be "*" and the last token may be ">" (for subscriptions);
// without, neither may appear (for publishing).
func ValidSubject(s string, wildcards bool) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidSubject)
	}
	tokens := strings.Split(s, ".")
	for i, tok := range tokens {
		if tok == "" {
			return fmt.Errorf("%w: %s has an empty token (leading, trailing or double '.')", ErrInvalidSubject, quote(s))
		}
		for _, r := range tok {
			if err := badRune(r); err != "" {
				return fmt.Errorf("%w: %s contains %s", ErrInvalidSubject, quote(s), err)
			}
			if r != '*' && r != '>' {
				continue
			}
			switch {
			case !wildcards:
				return fmt.Errorf("%w: %s contains the wildcard %q, not allowed here", ErrInvalidSubject, quote(s), r)
			case len(tok) != 1:
				return fmt.Errorf("%w: %s: the wildcard %q must be a whole token", ErrInvalidSubject, quote(s), r)
			case r == '>' && i != len(tokens)-1:
				return fmt.Errorf("%w: %s: '>' must be the last token", ErrInvalidSubject, quote(s))
			}
		}
	}
	return nil
}

// badRune describes why r cannot be in a subject (in the words of isp.ValidToken's errors), or returns "".
func badRune(r rune) string {
	if r == utf8.RuneError || unicode.IsSpace(r) || unicode.IsControl(r) {
		return isp.DescribeRune(r)
	}
	return ""
}

// quote is %q for user input that ends up in an error message: a 5 MB value must not make a 5 MB message.
func quote(s string) string {
	const max = 64
	if utf8.RuneCountInString(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q…", string([]rune(s)[:max]))
}
