package processor

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"math"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/iotgw/iotgw/actors"
	"github.com/iotgw/iotgw/isp"
	"github.com/nats-io/nats.go"
)

// A sealed batch is a raw batch that a driver inside this gateway process built, validated and stamped itself
// with the processing stage's own checks (Check), so the processor forwards its bytes to
// iot.processed.batch.{device} without decoding, validating and encoding it again: a second pass over a batch
// that nothing outside the process touched (about 14% of the Modbus path's profile).
//
// The mark must not be forgeable from outside: a user granted iot.raw.{…} may set any header, and a user granted
// subscribe on iot.raw.> reads what the gateway publishes there, so a fixed or secret token in a header would leak
// and could be copied. The seal is therefore a message authentication code of the message (subject, trace id,
// source, point count and body) under a key made at random when the process starts and never leaving its memory:
// AES-GCM with no plaintext to hide (GMAC), which the CPU's AES and carry-less multiply instructions make about
// nine times cheaper than HMAC-SHA256 (0.6 against 5.2 µs for a 4 KiB batch of 30 points in a micro-benchmark; in
// a device's mailbox run most of the seal's cost is the fresh goroutine's stack growing at the cipher's call). A
// forged or altered batch fails the check and takes the full path like any raw message; so does
// a sealed batch reaching the processor of another gateway on the same cluster (a queue group shares iot.raw.>):
// its key is its own. Someone who reads iot.raw.> and may publish there can only replay a batch the gateway
// sealed, unchanged, on its own subject: a duplicate of valid data, as publishing the same body unsealed would be,
// and with JetStream on the stream drops it by its message id (trace id and subject).
//
// GCM's one condition is that a key never seals twice with the same nonce; the nonce is a counter shared by every
// Sealer of the process, so it never repeats while the key lives. The key and that counter are the package's only
// state: the key made once at init and read-only after, the counter only ever incremented.
//
// Every Sealer shares one AEAD of that key: it holds the AES key schedule and GCM's multiplication table, fixed
// when it is made and only read by Seal and Open (the AES block of crypto/internal/fips140/aes is documented as
// safe for concurrent use; the GCM around it keeps no other state). One per device was 730 bytes each, 0.7 MB of
// a 1,000-device gateway's heap.
var (
	sealKey    = newSealKey()
	sealAEAD   = newSealAEAD(sealKey)
	sealNonces atomic.Uint64
)

func newSealAEAD(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // a 16-byte key is always valid
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return gcm
}

func newSealKey() []byte {
	k := make([]byte, 16) // AES-128
	if _, err := rand.Read(k); err != nil {
		panic("processor: no randomness for the batch seal key: " + err.Error())
	}
	return k
}

// HeaderSealed carries a sealed batch's point count, nonce and tag: "{count}.{16 hex digits}.{32 hex digits}".
const HeaderSealed = "Iot-Sealed"

const (
	nonceLen = 12 // GCM's standard nonce: 4 zero bytes and the 8-byte counter
	tagLen   = 16
)

// Sealer seals raw batches (a driver) and checks seals (the processor). It keeps its buffers, so it allocates
// nothing per batch; like the actor that owns it, it is not safe for concurrent use.
type Sealer struct {
	in  []byte // the fields besides the body: authenticated as GCM's plaintext (the body as its additional data)
	out []byte
	hdr []byte
}

// tag computes the seal's tag of m with count points under nonce.
func (s *Sealer) tag(m *nats.Msg, count int, nonce []byte) []byte {
	// Each field length-prefixed, so no two different messages give the same input.
	s.in = s.in[:0]
	for _, f := range [...]string{m.Subject, m.Header.Get(actors.HeaderTraceID), m.Header.Get(actors.HeaderSource)} {
		s.in = binary.AppendUvarint(s.in, uint64(len(f)))
		s.in = append(s.in, f...)
	}
	s.in = binary.AppendUvarint(s.in, uint64(count))
	s.out = sealAEAD.Seal(s.out[:0], nonce, s.in, m.Data)
	return s.out[len(s.out)-tagLen:]
}

// Seal marks m, a batch of count points that passed Check, as sealed by this process. m's subject, trace id and
// source headers and body must be final: the seal covers them.
func (s *Sealer) Seal(m *nats.Msg, count int) {
	var nonce [nonceLen]byte
	binary.BigEndian.PutUint64(nonce[4:], sealNonces.Add(1))
	sum := s.tag(m, count, nonce[:])
	s.hdr = strconv.AppendInt(s.hdr[:0], int64(count), 10)
	s.hdr = append(s.hdr, '.')
	s.hdr = hex.AppendEncode(s.hdr, nonce[4:])
	s.hdr = append(s.hdr, '.')
	s.hdr = hex.AppendEncode(s.hdr, sum)
	actors.SetHeader(m.Header, HeaderSealed, string(s.hdr))
}

// Unseal strips m's seal, so a copy of a sealed message can be changed and published again.
func Unseal(m *nats.Msg) { m.Header.Del(HeaderSealed) }

// sealed returns the point count of m when m carries a valid seal of this process.
func (s *Sealer) sealed(m *nats.Msg) (int, bool) {
	v := m.Header.Get(HeaderSealed)
	if v == "" {
		return 0, false
	}
	n, rest, ok := strings.Cut(v, ".")
	if !ok {
		return 0, false
	}
	nonceHex, tagHex, ok := strings.Cut(rest, ".")
	if !ok || len(nonceHex) != 2*(nonceLen-4) || len(tagHex) != 2*tagLen {
		return 0, false
	}
	count, err := strconv.Atoi(n)
	if err != nil || count < 1 {
		return 0, false
	}
	var nonce [nonceLen]byte
	var got [tagLen]byte
	if _, err := hex.Decode(nonce[4:], []byte(nonceHex)); err != nil {
		return 0, false
	}
	if _, err := hex.Decode(got[:], []byte(tagHex)); err != nil {
		return 0, false
	}
	return count, subtle.ConstantTimeCompare(got[:], s.tag(m, count, nonce[:])) == 1
}

// Check applies the processing stage's checks to a point that is already stamped (device, source, timestamp
// set): a NaN or infinite float is bad quality, the point must be publishable (validate) and its type must describe
// its value (conform, which may change the point). The processor runs it on every raw point; a driver that seals
// its batches runs it where its points are born, so the two are one piece of code.
func Check(pt *isp.Point) error {
	if f, ok := pt.Value.Float(); ok && pt.Value.Kind() == isp.KindFloat && (math.IsNaN(f) || math.IsInf(f, 0)) {
		pt.Quality = isp.QualityBad
	}
	if err := validate(pt); err != nil {
		return err
	}
	return conform(pt)
}
