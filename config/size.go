package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrInvalidSize classifies the errors of ParseSize.
var ErrInvalidSize = errors.New("invalid size")

// sizeUnits maps a unit, lower-cased, to its power of 1024. KB and KiB are the same on purpose: nats-server
// reads "1GB" as 1024³ bytes, and these sizes go straight into its JetStream limits, so a different reading
// here would surprise the operator who knows nats-server.
var sizeUnits = map[string]uint{
	"": 0, "b": 0,
	"k": 1, "kb": 1, "kib": 1,
	"m": 2, "mb": 2, "mib": 2,
	"g": 3, "gb": 3, "gib": 3,
	"t": 4, "tb": 4, "tib": 4,
}

// ParseSize parses a byte size: a whole number with an optional unit, "1024", "512MB", "1GB", "10GiB", "2 tb".
// K, M, G and T (with or without B or iB) are powers of 1024, as in nats-server.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%w %s: want a whole number of bytes with an optional unit, like \"512MB\" or \"10GiB\"", ErrInvalidSize, quote(s))
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w %s: number too large", ErrInvalidSize, quote(s))
	}
	unit := strings.ToLower(strings.TrimSpace(t[i:]))
	pow, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("%w %s: unknown unit %s; known: B, KB, MB, GB, TB (or KiB … TiB, the same)", ErrInvalidSize, quote(s), quote(t[i:]))
	}
	mul := int64(1) << (10 * pow)
	if n > math.MaxInt64/mul {
		return 0, fmt.Errorf("%w %s: too large", ErrInvalidSize, quote(s))
	}
	return n * mul, nil
}
