package symbolize

import (
	"encoding/binary"
	"fmt"
)

// cursor reads little pieces of a byte slice. The first underflow or bad
// value is recorded with its offset; later reads return zero values, so a
// decoder can check err once per record.
type cursor struct {
	b     []byte
	off   int
	order binary.ByteOrder
	err   error
	what  string // section name for errors
	base  int    // offset of b[0] in its section, for errors
}

func (c *cursor) fail(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("%s at %#x: %s", c.what, c.base+c.off, fmt.Sprintf(format, args...))
	}
	c.off = len(c.b)
}

func (c *cursor) left() int { return len(c.b) - c.off }

func (c *cursor) bytes(n int) []byte {
	if c.err != nil {
		return nil
	}
	if n < 0 || n > c.left() {
		c.fail("need %d bytes, have %d", n, c.left())
		return nil
	}
	v := c.b[c.off : c.off+n]
	c.off += n
	return v
}

func (c *cursor) u8() uint8 {
	if b := c.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (c *cursor) u16() uint16 {
	if b := c.bytes(2); b != nil {
		return c.order.Uint16(b)
	}
	return 0
}

func (c *cursor) u32() uint32 {
	if b := c.bytes(4); b != nil {
		return c.order.Uint32(b)
	}
	return 0
}

func (c *cursor) u64() uint64 {
	if b := c.bytes(8); b != nil {
		return c.order.Uint64(b)
	}
	return 0
}

// uint reads an unsigned integer of n bytes (1..8).
func (c *cursor) uint(n int) uint64 {
	switch n {
	case 1:
		return uint64(c.u8())
	case 2:
		return uint64(c.u16())
	case 4:
		return uint64(c.u32())
	case 8:
		return c.u64()
	}
	b := c.bytes(n)
	if b == nil {
		return 0
	}
	if n > 8 {
		c.fail("integer of %d bytes", n)
		return 0
	}
	var v uint64
	for i := range b {
		if c.order == binary.BigEndian {
			v = v<<8 | uint64(b[i])
		} else {
			v |= uint64(b[i]) << (8 * i)
		}
	}
	return v
}

// uleb reads an unsigned LEB128; bits past 64 are dropped.
func (c *cursor) uleb() uint64 {
	var v uint64
	var shift uint
	for {
		b := c.u8()
		if c.err != nil {
			return 0
		}
		if shift < 64 {
			v |= uint64(b&0x7f) << shift
		}
		shift += 7
		if b&0x80 == 0 {
			return v
		}
	}
}

// sleb reads a signed LEB128; bits past 64 are dropped.
func (c *cursor) sleb() int64 {
	var v int64
	var shift uint
	var b byte
	for {
		b = c.u8()
		if c.err != nil {
			return 0
		}
		if shift < 64 {
			v |= int64(b&0x7f) << shift
		}
		shift += 7
		if b&0x80 == 0 {
			break
		}
	}
	if shift < 64 && b&0x40 != 0 {
		v |= -1 << shift
	}
	return v
}

// cstr reads a NUL-terminated string.
func (c *cursor) cstr() string {
	if c.err != nil {
		return ""
	}
	for i := c.off; i < len(c.b); i++ {
		if c.b[i] == 0 {
			s := string(c.b[c.off:i])
			c.off = i + 1
			return s
		}
	}
	c.fail("unterminated string")
	return ""
}
