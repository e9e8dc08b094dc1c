package archive

import (
	"bytes"
	"fmt"
	"io"
)

// xzGuard walks the structure of an xz stream as its bytes pass on their way to the decoder,
// and refuses a block whose LZMA2 dictionary is larger than the window limit before the decoder
// sees that block's header (github.com/ulikunitz/xz allocates whatever the header asks for, up
// to 4 GiB). It reads no compressed data: LZMA2 chunks carry their packed sizes, so the walk
// only decodes headers (stream header, block headers, chunk headers, index, footer).
//
// Format: https://tukaani.org/xz/xz-file-format.txt (sections 2 and 3) and the LZMA2 chunk
// headers as liblzma's lzma2_decoder.c reads them.
type xzGuard struct {
	r       io.Reader
	maxDict int64
	err     error

	skip int64                   // bytes to pass without looking
	need int                     // bytes to collect before calling step
	have int                     // collected so far
	buf  [1024]byte              // a block header is at most 1024 bytes
	step func(b []byte) error    // consumes the need collected bytes and sets the next state
	pre  [4]byte                 // first 4 bytes of a stream header seen while in stream padding
	vli  struct{ v, n uint64 }   // index VLI being decoded
	idx  struct{ left, n int64 } // index: VLIs left to read, index size so far

	check  int64 // size of the current stream's check field
	blockN int64 // compressed bytes of the current block so far
	blocks int
}

var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}

func newXZGuard(r io.Reader, maxDict int64) *xzGuard {
	g := &xzGuard{r: r, maxDict: maxDict}
	g.expect(12, g.streamHeader)
	return g
}

func (g *xzGuard) expect(n int, step func([]byte) error) {
	g.need, g.have, g.step = n, 0, step
}

func (g *xzGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	for i := 0; i < n; {
		if g.skip > 0 {
			k := int64(n - i)
			if k > g.skip {
				k = g.skip
			}
			i += int(k)
			g.skip -= k
			continue
		}
		k := copy(g.buf[g.have:g.need], p[i:n])
		g.have += k
		i += k
		if g.have == g.need {
			if e := g.step(g.buf[:g.need]); e != nil {
				// Hand over nothing of this read: the decoder must not see the header.
				g.err = fmt.Errorf("xz block %d: %w", g.blocks, e)
				return 0, g.err
			}
		}
	}
	return n, err
}

func xzCorrupt(format string, args ...any) error {
	return fmt.Errorf("%w: xz: "+format, append([]any{ErrCorrupt}, args...)...)
}

func (g *xzGuard) streamHeader(b []byte) error {
	if !bytes.Equal(b[:6], xzMagic) {
		return xzCorrupt("bad stream header magic")
	}
	if b[6] != 0 || b[7]&0xf0 != 0 {
		return xzCorrupt("unsupported stream flags %#02x%02x", b[6], b[7])
	}
	if id := b[7] & 0x0f; id != 0 {
		g.check = 4 << ((id - 1) / 3)
	} else {
		g.check = 0
	}
	g.expect(1, g.blockStart)
	return nil
}

func (g *xzGuard) blockStart(b []byte) error {
	if b[0] == 0 { // index indicator
		g.idx.n = 1
		g.idx.left = -1 // the record count comes first
		g.vli.v, g.vli.n = 0, 0
		g.expect(1, g.indexByte)
		return nil
	}
	g.blocks++
	g.buf[0] = b[0]
	size := (int(b[0]) + 1) * 4
	g.need, g.have, g.step = size, 1, g.blockHeader
	return nil
}

// readVLI decodes a multibyte integer of the xz format from b at *pos.
func readVLI(b []byte, pos *int) (uint64, error) {
	var v uint64
	for i := 0; i < 9; i++ {
		if *pos >= len(b) {
			return 0, xzCorrupt("block header too short")
		}
		c := b[*pos]
		*pos++
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				return 0, xzCorrupt("non-minimal integer in block header")
			}
			return v, nil
		}
	}
	return 0, xzCorrupt("integer too long in block header")
}

const xzLZMA2 = 0x21

func (g *xzGuard) blockHeader(b []byte) error {
	flags := b[1]
	if flags&0x3c != 0 {
		return xzCorrupt("reserved block flags %#02x", flags)
	}
	pos := 2
	for _, bit := range []byte{0x40, 0x80} { // compressed size, uncompressed size
		if flags&bit != 0 {
			if _, err := readVLI(b[:len(b)-4], &pos); err != nil {
				return err
			}
		}
	}
	nf := int(flags&3) + 1
	for i := 0; i < nf; i++ {
		id, err := readVLI(b[:len(b)-4], &pos)
		if err != nil {
			return err
		}
		psize, err := readVLI(b[:len(b)-4], &pos)
		if err != nil {
			return err
		}
		if psize > uint64(len(b)-4-pos) {
			return xzCorrupt("filter properties overrun the block header")
		}
		props := b[pos : pos+int(psize)]
		pos += int(psize)
		if id != xzLZMA2 {
			return fmt.Errorf("%w: xz filter %#x (only LZMA2 alone is read; BCJ and delta filters are not)", ErrUnsupported, id)
		}
		if i != nf-1 || psize != 1 {
			return xzCorrupt("misplaced LZMA2 filter")
		}
		d := props[0]
		if d > 40 {
			return xzCorrupt("LZMA2 dictionary size code %d", d)
		}
		dict := int64(0xffffffff)
		if d < 40 {
			dict = int64(2|d&1) << (d/2 + 11)
		}
		if dict > g.maxDict {
			return fmt.Errorf("%w: xz dictionary of %d MiB, more than MaxWindow (%d MiB)", ErrLimit, dict>>20, g.maxDict>>20)
		}
	}
	g.blockN = 0
	g.expect(1, g.chunk)
	return nil
}

func (g *xzGuard) chunk(b []byte) error {
	c := b[0]
	g.blockN++
	switch {
	case c == 0: // end of the LZMA2 data: block padding, check
		g.skip = (4-g.blockN%4)%4 + g.check
		g.expect(1, g.blockStart)
	case c == 1 || c == 2: // uncompressed chunk
		g.expect(2, func(b []byte) error {
			n := int64(b[0])<<8 | int64(b[1]) + 1
			g.blockN += 2 + n
			g.skip = n
			g.expect(1, g.chunk)
			return nil
		})
	case c >= 0x80: // LZMA chunk: unpacked size (2 bytes), packed size (2), props if c >= 0xc0
		n := 4
		if c >= 0xc0 {
			n = 5
		}
		g.expect(n, func(b []byte) error {
			packed := int64(b[2])<<8 | int64(b[3]) + 1
			g.blockN += int64(len(b)) + packed
			g.skip = packed
			g.expect(1, g.chunk)
			return nil
		})
	default:
		return xzCorrupt("invalid LZMA2 chunk control byte %#02x", c)
	}
	return nil
}

// indexByte reads the index one byte at a time: the record count, then two integers per record.
func (g *xzGuard) indexByte(b []byte) error {
	c := b[0]
	g.idx.n++
	g.vli.v |= uint64(c&0x7f) << (7 * g.vli.n)
	g.vli.n++
	if c&0x80 != 0 {
		if g.vli.n == 9 {
			return xzCorrupt("integer too long in index")
		}
		g.expect(1, g.indexByte)
		return nil
	}
	v := g.vli.v
	g.vli.v, g.vli.n = 0, 0
	if g.idx.left < 0 {
		if v > 1<<40 {
			return xzCorrupt("index of %d records", v)
		}
		g.idx.left = 2 * int64(v)
	} else {
		g.idx.left--
	}
	if g.idx.left > 0 {
		g.expect(1, g.indexByte)
		return nil
	}
	g.skip = (4-g.idx.n%4)%4 + 4 // index padding, CRC32
	g.expect(12, g.footer)
	return nil
}

func (g *xzGuard) footer(b []byte) error {
	if b[10] != 'Y' || b[11] != 'Z' {
		return xzCorrupt("bad stream footer magic")
	}
	g.expect(4, g.streamPadding)
	return nil
}

// streamPadding: zero bytes in groups of four, or the next stream.
func (g *xzGuard) streamPadding(b []byte) error {
	if bytes.Equal(b, []byte{0, 0, 0, 0}) {
		g.expect(4, g.streamPadding)
		return nil
	}
	copy(g.pre[:], b)
	g.expect(8, func(b []byte) error {
		var h [12]byte
		copy(h[:4], g.pre[:])
		copy(h[4:], b)
		return g.streamHeader(h[:])
	})
	return nil
}
