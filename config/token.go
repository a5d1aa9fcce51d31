package config

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxTokenLen is the longest device id, point key or sink name, in characters. Subjects are built from them
// (iot.processed.{device}.{key}) and end up in logs and on dashboards; 64 is plenty for a name.
const MaxTokenLen = 64

// ErrInvalidToken and ErrInvalidSubject classify the errors of ValidToken and ValidSubject.
var (
	ErrInvalidToken   = errors.New("invalid subject token")
	ErrInvalidSubject = errors.New("invalid subject")
)

// ValidToken reports whether s can be one token of a NATS subject, such as a device id in
// iot.processed.{device}.{key}: non-empty, valid UTF-8, at most MaxTokenLen characters, and no '.', '*', '>',
// whitespace or control characters.
func ValidToken(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidToken)
	}
	if n := utf8.RuneCountInString(s); n > MaxTokenLen {
		return fmt.Errorf("%w: %d characters long, at most %d allowed", ErrInvalidToken, n, MaxTokenLen)
	}
	for _, r := range s {
		switch {
		case r == '.':
			return fmt.Errorf("%w: %s contains '.', which separates subject tokens", ErrInvalidToken, quote(s))
		case r == '*' || r == '>':
			return fmt.Errorf("%w: %s contains the wildcard %q", ErrInvalidToken, quote(s), r)
		}
		if err := badRune(r); err != "" {
			return fmt.Errorf("%w: %s contains %s", ErrInvalidToken, quote(s), err)
		}
	}
	return nil
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

// badRune describes why r cannot be in a subject, or returns "".
func badRune(r rune) string {
	switch {
	case r == utf8.RuneError:
		return "invalid UTF-8"
	case unicode.IsSpace(r):
		return fmt.Sprintf("the space character %U", r)
	case unicode.IsControl(r):
		return fmt.Sprintf("the control character %U", r)
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
