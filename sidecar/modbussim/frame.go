package modbussim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// MBAP framing: transaction id (2), protocol id (2, always 0), length (2,
// counting the unit id and the PDU), unit id (1), then the PDU.
const (
	headerLen = 7
	// maxLength is the largest length field accepted. The spec's largest ADU
	// is 260 bytes (length 254); 255..260 are read and answered (exception 3
	// for an oversized write) rather than treated as hostile.
	maxLength = 260
	maxFrame  = 6 + maxLength
)

// Exception codes.
const (
	exIllegalFunction = 1
	exIllegalAddress  = 2
	exIllegalValue    = 3
	exSlaveFailure    = 4
	exGatewayTarget   = 11 // no unit answers this unit id
)

// Spec limits on quantities per request.
const (
	maxReadBits   = 2000
	maxReadRegs   = 125
	maxWriteBits  = 1968
	maxWriteRegs  = 123
	coilOn        = 0xFF00
	exceptionFlag = 0x80
)

var (
	errProtocol = errors.New("protocol id is not 0")
	errLength   = errors.New("length field outside 2..260")
	errShort    = errors.New("frame shorter than its length field")
)

// checkHeader validates an MBAP header and returns the whole frame's size.
func checkHeader(h []byte) (int, error) {
	if p := binary.BigEndian.Uint16(h[2:]); p != 0 {
		return 0, fmt.Errorf("%w: %d", errProtocol, p)
	}
	n := binary.BigEndian.Uint16(h[4:])
	if n < 2 || n > maxLength {
		return 0, fmt.Errorf("%w: %d", errLength, n)
	}
	return 6 + int(n), nil
}

// action is what the connection does with a frame's result.
type action uint8

const (
	actReply   action = iota // write resp
	actNoReply               // write nothing, keep reading
	actClose                 // close the connection
)

type result struct {
	resp  []byte // the response ADU, appended to the dst given to serveFrame
	act   action
	delay time.Duration // wait this long before acting
}

// serveFrame answers one complete ADU, appending the response to dst. It
// returns an error only for a frame that must close the connection; every
// Modbus-level problem is an exception response instead.
func (s *Server) serveFrame(dst, adu []byte) (result, error) {
	if len(adu) < headerLen+1 {
		return result{}, errShort
	}
	n, err := checkHeader(adu)
	if err != nil {
		return result{}, err
	}
	if n != len(adu) {
		return result{}, errShort
	}
	unitID, pdu := adu[6], adu[headerLen:]
	fc := pdu[0]
	s.stats.requests[fc].Add(1)

	hasAddr, lo, hi := addrRange(pdu)
	v := s.judge(unitID, hasAddr, lo, hi)
	res := result{delay: v.delay}
	switch v.kind {
	case FaultDrop:
		res.act = actClose
		return res, nil
	case FaultNoReply:
		res.act = actNoReply
		// The request is still carried out: the answer is what gets lost.
	}

	start := len(dst)
	dst = append(dst, adu[:headerLen]...) // tx id, protocol 0, length (set below), unit
	body := len(dst)
	switch u := s.route(unitID); {
	case v.kind == FaultException:
		dst = append(dst, fc|exceptionFlag, v.code)
	case u == nil:
		dst = append(dst, fc|exceptionFlag, exGatewayTarget)
	default:
		dst = s.execute(dst, u, pdu)
	}
	if dst[body]&exceptionFlag != 0 {
		s.stats.exceptions.Add(1)
	}
	switch v.kind {
	case FaultCorrupt:
		for i := body + 1; i < len(dst); i++ {
			dst[i] = ^dst[i]
		}
	case FaultWrongTxID:
		dst[start] ^= 0xFF
		dst[start+1] ^= 0xFF
	}
	binary.BigEndian.PutUint16(dst[start+4:], uint16(len(dst)-start-6))
	res.resp = dst[start:]
	return res, nil
}

// addrRange is the address range a request touches, for address-limited faults.
func addrRange(pdu []byte) (ok bool, lo, hi int) {
	if len(pdu) < 5 {
		return false, 0, 0
	}
	addr := int(binary.BigEndian.Uint16(pdu[1:]))
	qty := int(binary.BigEndian.Uint16(pdu[3:]))
	switch pdu[0] {
	case 1, 2, 3, 4, 15, 16:
		if qty == 0 {
			qty = 1
		}
		return true, addr, addr + qty - 1
	case 5, 6:
		return true, addr, addr
	}
	return false, 0, 0
}

// route finds the unit that answers unitID: its own, else the catch-all unit 0.
func (s *Server) route(unitID uint8) *unit {
	if u := s.units[unitID]; u != nil {
		return u
	}
	return s.units[0]
}

// execute carries out the PDU on u and appends the response PDU.
func (s *Server) execute(dst []byte, u *unit, pdu []byte) []byte {
	fc := pdu[0]
	switch fc {
	case 1, 2:
		return s.readBits(dst, u, Table(fc), pdu)
	case 3, 4:
		return s.readRegs(dst, u, Table(fc), pdu)
	case 5:
		return writeCoil(dst, u, pdu)
	case 6:
		return writeReg(dst, u, pdu)
	case 15:
		return writeCoils(dst, u, pdu)
	case 16:
		return writeRegs(dst, u, pdu)
	}
	return append(dst, fc|exceptionFlag, exIllegalFunction)
}

func exception(dst []byte, fc, code byte) []byte { return append(dst, fc|exceptionFlag, code) }

// addrQty reads a request's address and quantity, with the checks every
// function shares, in the spec's order: exception 3 for a quantity outside
// 1..max (or a byte count that disagrees, for writes), then
// 2 for a range past the table.
func addrQty(u *unit, t Table, pdu []byte, max int, write bool) (addr, qty int, ex byte) {
	addr = int(binary.BigEndian.Uint16(pdu[1:]))
	qty = int(binary.BigEndian.Uint16(pdu[3:]))
	if qty < 1 || qty > max || (write && !byteCountOK(t, qty, pdu)) {
		return 0, 0, exIllegalValue
	}
	if addr+qty > u.size(t) {
		return 0, 0, exIllegalAddress
	}
	return addr, qty, 0
}

// byteCountOK checks a multiple write's byte count against its quantity and
// against the bytes actually sent.
func byteCountOK(t Table, qty int, pdu []byte) bool {
	want := 2 * qty
	if t.isBits() {
		want = (qty + 7) / 8
	}
	return int(pdu[5]) == want && len(pdu) == 6+want
}

func (s *Server) readBits(dst []byte, u *unit, t Table, pdu []byte) []byte {
	if len(pdu) != 5 {
		return exception(dst, pdu[0], exIllegalValue)
	}
	addr, qty, ex := addrQty(u, t, pdu, maxReadBits, false)
	if ex != 0 {
		return exception(dst, pdu[0], ex)
	}
	nbytes := (qty + 7) / 8
	dst = append(dst, pdu[0], byte(nbytes))
	at := len(dst)
	dst = append(dst, make([]byte, nbytes)...) // append(make) of a small size does not allocate
	u.mu.Lock()
	u.refresh(t, addr, qty, s.elapsed())
	for i, b := range u.bits[t-1][addr : addr+qty] {
		if b {
			dst[at+i/8] |= 1 << (i % 8)
		}
	}
	u.mu.Unlock()
	return dst
}

func (s *Server) readRegs(dst []byte, u *unit, t Table, pdu []byte) []byte {
	if len(pdu) != 5 {
		return exception(dst, pdu[0], exIllegalValue)
	}
	addr, qty, ex := addrQty(u, t, pdu, maxReadRegs, false)
	if ex != 0 {
		return exception(dst, pdu[0], ex)
	}
	dst = append(dst, pdu[0], byte(2*qty))
	u.mu.Lock()
	u.refresh(t, addr, qty, s.elapsed())
	for _, r := range u.regs[t-3][addr : addr+qty] {
		dst = binary.BigEndian.AppendUint16(dst, r)
	}
	u.mu.Unlock()
	return dst
}

func writeCoil(dst []byte, u *unit, pdu []byte) []byte {
	if len(pdu) != 5 {
		return exception(dst, pdu[0], exIllegalValue)
	}
	addr := int(binary.BigEndian.Uint16(pdu[1:]))
	val := binary.BigEndian.Uint16(pdu[3:])
	if val != coilOn && val != 0 {
		return exception(dst, pdu[0], exIllegalValue)
	}
	if addr >= u.size(Coil) {
		return exception(dst, pdu[0], exIllegalAddress)
	}
	u.mu.Lock()
	u.bits[Coil-1][addr] = val == coilOn
	u.mu.Unlock()
	return append(dst, pdu...)
}

func writeReg(dst []byte, u *unit, pdu []byte) []byte {
	if len(pdu) != 5 {
		return exception(dst, pdu[0], exIllegalValue)
	}
	addr := int(binary.BigEndian.Uint16(pdu[1:]))
	if addr >= u.size(Holding) {
		return exception(dst, pdu[0], exIllegalAddress)
	}
	u.mu.Lock()
	u.regs[Holding-3][addr] = binary.BigEndian.Uint16(pdu[3:])
	u.mu.Unlock()
	return append(dst, pdu...)
}

func writeCoils(dst []byte, u *unit, pdu []byte) []byte {
	if len(pdu) < 6 {
		return exception(dst, pdu[0], exIllegalValue)
	}
	addr, qty, ex := addrQty(u, Coil, pdu, maxWriteBits, true)
	if ex != 0 {
		return exception(dst, pdu[0], ex)
	}
	data := pdu[6:]
	u.mu.Lock()
	bits := u.bits[Coil-1][addr : addr+qty]
	for i := range bits {
		bits[i] = data[i/8]&(1<<(i%8)) != 0
	}
	u.mu.Unlock()
	return append(dst, pdu[:5]...)
}

func writeRegs(dst []byte, u *unit, pdu []byte) []byte {
	if len(pdu) < 6 {
		return exception(dst, pdu[0], exIllegalValue)
	}
	addr, qty, ex := addrQty(u, Holding, pdu, maxWriteRegs, true)
	if ex != 0 {
		return exception(dst, pdu[0], ex)
	}
	data := pdu[6:]
	u.mu.Lock()
	regs := u.regs[Holding-3][addr : addr+qty]
	for i := range regs {
		regs[i] = binary.BigEndian.Uint16(data[2*i:])
	}
	u.mu.Unlock()
	return append(dst, pdu[:5]...)
}
