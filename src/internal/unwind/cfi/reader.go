package cfi

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrNoFDE is returned when no entry of a table covers a pc: the expected absence that makes an
// unwinder fall back to another method.
var ErrNoFDE = errors.New("no FDE covers this pc")

// DecodeError is malformed input: Section names the table ("eh_frame", "debug_frame",
// "eh_frame_hdr", "ARM.exidx", "ARM.extab", "CFA program", "expression") and Offset is where in it
// the problem is.
type DecodeError struct {
	Section string
	Offset  uint64
	Msg     string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("%s at offset %#x: %s", e.Section, e.Offset, e.Msg)
}

// reader is a sticky-error cursor over one bounded slice. base is the offset of b[0] in the
// section, so errors and pc-relative pointers name section offsets. After the first underflow
// every read returns zero and err keeps the first failure.
type reader struct {
	b       []byte
	off     int
	base    uint64
	order   binary.ByteOrder
	section string
	err     error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = &DecodeError{Section: r.section, Offset: r.pos(), Msg: fmt.Sprintf(format, args...)}
	}
}

// failBack records an error about the n bytes just read.
func (r *reader) failBack(n int, format string, args ...any) {
	if r.err == nil && r.off >= n {
		r.off -= n
		r.fail(format, args...)
		r.off += n
	}
}

// pos is the section offset of the next byte.
func (r *reader) pos() uint64 { return r.base + uint64(r.off) }

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) need(n int, what string) bool {
	if r.err != nil {
		return false
	}
	if n < 0 || r.left() < n {
		r.fail("%s needs %d bytes, %d left", what, n, r.left())
		return false
	}
	return true
}

func (r *reader) u8() uint8 {
	if !r.need(1, "byte") {
		return 0
	}
	v := r.b[r.off]
	r.off++
	return v
}

func (r *reader) u16() uint16 {
	if !r.need(2, "2-byte value") {
		return 0
	}
	v := r.order.Uint16(r.b[r.off:])
	r.off += 2
	return v
}

func (r *reader) u32() uint32 {
	if !r.need(4, "4-byte value") {
		return 0
	}
	v := r.order.Uint32(r.b[r.off:])
	r.off += 4
	return v
}

func (r *reader) u64() uint64 {
	if !r.need(8, "8-byte value") {
		return 0
	}
	v := r.order.Uint64(r.b[r.off:])
	r.off += 8
	return v
}

// word reads an unsigned value of size 1, 2, 4 or 8.
func (r *reader) word(size int) uint64 {
	switch size {
	case 1:
		return uint64(r.u8())
	case 2:
		return uint64(r.u16())
	case 4:
		return uint64(r.u32())
	case 8:
		return r.u64()
	}
	r.fail("unsupported value size %d", size)
	return 0
}

func (r *reader) bytes(n uint64, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(r.left()) {
		r.fail("%s of %d bytes, %d left", what, n, r.left())
		return nil
	}
	v := r.b[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return v
}

// uleb reads an unsigned LEB128 number. Bits beyond 64 must be zero.
func (r *reader) uleb() uint64 {
	var v uint64
	var shift uint
	for {
		if !r.need(1, "LEB128 byte") {
			return 0
		}
		c := r.b[r.off]
		r.off++
		if shift < 64 {
			v |= uint64(c&0x7f) << shift
			if shift > 57 && c&0x7f>>(64-shift) != 0 {
				r.fail("LEB128 value overflows 64 bits")
				return 0
			}
		} else if c&0x7f != 0 {
			r.fail("LEB128 value overflows 64 bits")
			return 0
		}
		shift += 7
		if c&0x80 == 0 {
			return v
		}
		if shift >= 10*7 {
			r.fail("LEB128 value longer than 10 bytes")
			return 0
		}
	}
}

// sleb reads a signed LEB128 number.
func (r *reader) sleb() int64 {
	var v int64
	var shift uint
	var c byte
	for {
		if !r.need(1, "LEB128 byte") {
			return 0
		}
		c = r.b[r.off]
		r.off++
		if shift < 64 {
			v |= int64(c&0x7f) << shift
		}
		shift += 7
		if c&0x80 == 0 {
			break
		}
		if shift >= 10*7 {
			r.fail("LEB128 value longer than 10 bytes")
			return 0
		}
	}
	if shift < 64 && c&0x40 != 0 {
		v |= -1 << shift
	}
	return v
}

// cstring reads a NUL-terminated string.
func (r *reader) cstring(what string) string {
	if r.err != nil {
		return ""
	}
	for i := r.off; i < len(r.b); i++ {
		if r.b[i] == 0 {
			s := string(r.b[r.off:i])
			r.off = i + 1
			return s
		}
	}
	r.fail("%s is not NUL-terminated", what)
	return ""
}
