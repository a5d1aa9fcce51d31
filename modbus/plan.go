package modbus

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/iotgw/iotgw/isp"
)

// Request coalescing, compared with the peers:
//
//   - Telegraf's default (plugins/inputs/modbus/request.go, groupFieldsToRequests) merges only fields whose
//     addresses are contiguous, up to the batch size; its opt-in "max_insert" optimization also reads up to
//     optimization_max_register_fill unrequested registers to join ranges.
//   - Neuron (plugins/modbus/modbus_point.c, modbus_tag_sort) sorts points by slave, area, address and size and
//     merges contiguous or overlapping points under a byte limit, never across a gap.
//
// We do what both do for contiguous and overlapping registers, and like Telegraf's max_insert we also bridge small
// gaps, on by default: over Modbus TCP a request and its answer cost about 21 bytes of framing plus a round trip
// (often milliseconds through a serial gateway), while each register of gap costs 2 bytes, so bridging 10 registers
// breaks even on bytes and wins on latency. Coil and discrete-input gaps cost an eighth of a byte per bit, so their
// default gap is larger. Some devices answer exception 2 (illegal data address) for unmapped addresses inside a
// gap; for those set MaxGap and MaxBitGap to -1 (a driver can also re-plan that way after such an exception).
//
// The merge is greedy over addresses sorted ascending (longest first on ties), which gives the fewest requests for
// interval covering with a span limit: a request only ends when the next register is too far away or would make it
// too long. A register is never split across two requests; one longer than the limit (possible only with a
// MaxRegisters below the protocol's) gets a request of its own.

// Defaults of PlanOptions.
const (
	DefaultMaxGap    = 10  // registers
	DefaultMaxBitGap = 128 // bits: 16 bytes of answer
)

// PlanOptions bound the requests Plan makes. The zero value is the protocol's limits with the default gaps.
type PlanOptions struct {
	// MaxRegisters caps the registers of one read of holding or input registers. 0 or more than 125 means 125.
	// Lower it for devices that cannot answer full-size reads.
	MaxRegisters int
	// MaxBits caps the bits of one read of coils or discrete inputs. 0 or more than 2000 means 2000.
	MaxBits int
	// MaxGap is how many unrequested registers a request may read (and discard) to join two ranges. 0 means
	// DefaultMaxGap; a negative value means never: only contiguous or overlapping registers share a request.
	MaxGap int
	// MaxBitGap is MaxGap for coils and discrete inputs, in bits. 0 means DefaultMaxBitGap; negative means never.
	MaxBitGap int
}

func (o PlanOptions) limits(bit bool) (span, gap int) {
	if bit {
		span, gap = o.MaxBits, o.MaxBitGap
		if span <= 0 || span > MaxReadBits {
			span = MaxReadBits
		}
		if gap == 0 {
			gap = DefaultMaxBitGap
		}
	} else {
		span, gap = o.MaxRegisters, o.MaxGap
		if span <= 0 || span > MaxReadRegisters {
			span = MaxReadRegisters
		}
		if gap == 0 {
			gap = DefaultMaxGap
		}
	}
	return span, max(gap, 0)
}

// Request is one read a poll sends: function Function for Quantity registers (or bits) from Address on slave
// SlaveID. Fields lists the registers it serves, in address order.
type Request struct {
	SlaveID  uint8
	Function uint8
	Address  uint16
	Quantity uint16
	Fields   []Field
}

// Field is one register a Request serves.
type Field struct {
	// Index is the register's index in the slice given to Plan, so the caller can find its register, its point
	// and its change filter, and mark exactly the fields of a failed request bad.
	Index int
	// Offset is how many registers (or bits) after the request's Address the register starts.
	Offset uint16
}

// ResponseLen returns the data bytes a complete answer to the request carries: two per register, or one per eight
// bits rounded up. A shorter answer is malformed.
func (q *Request) ResponseLen() int {
	if q.Function == FuncCoils || q.Function == FuncDiscreteInputs {
		return (int(q.Quantity) + 7) / 8
	}
	return 2 * int(q.Quantity)
}

// Decode decodes every field of the request from resp, the data bytes of the answer (after the byte count, as
// goburrow/modbus returns them), calling emit with each field's register index and its value or error, in
// address order. regs must be the slice given to Plan. A value with an error wrapping ErrNotFinite is still the
// decoded value, for a caller that publishes it with quality bad.
//
// When resp is shorter than ResponseLen, Decode emits nothing and returns an error wrapping ErrShortResponse: the
// whole answer is suspect, and the caller marks all of q.Fields bad as for any failed request.
// Decode allocates nothing unless a field is a string or fails.
func (q *Request) Decode(regs []Register, resp []byte, emit func(index int, v isp.Value, err error)) error {
	if want := q.ResponseLen(); len(resp) < want {
		return fmt.Errorf("slave %d function %d address %d quantity %d: need %d bytes, got %d: %w",
			q.SlaveID, q.Function, q.Address, q.Quantity, want, len(resp), ErrShortResponse)
	}
	for _, f := range q.Fields {
		v, err := DecodeAt(&regs[f.Index], resp, f.Offset)
		emit(f.Index, v, err)
	}
	return nil
}

// Plan groups the registers into the fewest read requests within opt's limits. Registers of one slave and one
// function are merged when they are contiguous, overlap (two keys on one address, bits of one register) or lie at
// most the maximum gap apart; different slaves and functions are never merged. Every register is served by exactly
// one Field of one Request. Requests come sorted by slave, function and address; regs is not modified.
//
// Plan validates every register first and returns all problems joined (and no plan), including duplicate keys,
// which would make two points indistinguishable.
func Plan(regs []Register, opt PlanOptions) ([]Request, error) {
	var errs []error
	seen := make(map[string]int, len(regs))
	for i := range regs {
		if err := regs[i].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("register %d: %w", i, err))
		}
		if j, dup := seen[regs[i].Key]; dup {
			errs = append(errs, fmt.Errorf("register %d: key %q already used by register %d: %w", i, regs[i].Key, j, ErrInvalidRegister))
		} else {
			seen[regs[i].Key] = i
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	order := make([]int, len(regs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		ra, rb := &regs[a], &regs[b]
		return cmp.Or(
			cmp.Compare(ra.SlaveID, rb.SlaveID),
			cmp.Compare(ra.Function, rb.Function),
			cmp.Compare(ra.Address, rb.Address),
			cmp.Compare(rb.Quantity(), ra.Quantity()), // longest first, so shorter ones at its address fit inside
			cmp.Compare(a, b),                         // stable: equal registers keep the caller's order
		)
	})

	// All Fields share one backing array, sized once: appending never moves it, so earlier requests' Fields stay valid.
	fields := make([]Field, 0, len(regs))
	var reqs []Request
	var start, end int // the current request's span [start, end), in registers or bits
	first := 0         // where the current request's fields start in fields
	closeLast := func() {
		if len(reqs) > 0 {
			reqs[len(reqs)-1].Fields = fields[first:len(fields):len(fields)]
		}
	}
	for _, i := range order {
		r := &regs[i]
		a, n := int(r.Address), int(r.Quantity())
		span, gap := opt.limits(r.IsBit())
		if len(reqs) > 0 {
			q := &reqs[len(reqs)-1]
			// A register wholly inside the current span always joins it: reading it costs nothing more, even when
			// the span is a lone register longer than the limit.
			inside := a+n <= end
			if q.SlaveID == r.SlaveID && q.Function == r.Function && (inside || a-end <= gap && max(end, a+n)-start <= span) {
				end = max(end, a+n)
				q.Quantity = uint16(end - start)
				fields = append(fields, Field{Index: i, Offset: uint16(a - start)})
				continue
			}
		}
		closeLast()
		start, end, first = a, a+n, len(fields)
		reqs = append(reqs, Request{SlaveID: r.SlaveID, Function: r.Function, Address: r.Address, Quantity: uint16(n)})
		fields = append(fields, Field{Index: i})
	}
	closeLast()
	return reqs, nil
}
