package symbolize

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/adler32"
	"io"
	"math/bits"
)

// inflater decodes one zlib stream (RFC 1950/1951), forward and on demand:
// fill decodes whole deflate blocks until a wanted stream offset is reached
// and can be called again to go on. out holds the stream's bytes from
// offset base: the history the matches copy from (at least the last 32 KiB,
// see slide) and what fill just decoded. Matches copy within out, so
// nothing is copied out of a separate window, and the hot loop reads 8
// input bytes and writes 8 output bytes at a time. The adler-32 of the
// output is checked when the stream ends (unless the inflater was started
// from a checkpoint, mid-stream). A checkpoint (see save) lets another
// inflater start at a block boundary of this one, later.
//
// Input is untrusted: every table, length and distance is checked, and an
// invalid stream is an error, never a panic.
type inflater struct {
	src    io.ReaderAt // the compressed stream
	srcOff int64       // offset of the next byte to read from src
	srcEnd int64       // offset just past the stream

	in  []byte // input bytes read, in[pos:] not consumed yet
	pos int

	bits  uint64 // bit buffer, LSB first
	nbits uint   // valid bits in bits
	over  int    // zero bytes fed past the end of the input

	size   int    // declared size of the whole output
	out    []byte // stream bytes from base; grows as needed
	base   int
	o      int  // bytes of out decoded
	last   bool // the final block was decoded
	done   bool // the stream ended (and its checksum matched)
	sum    hash.Hash32
	summed int // out[:summed] is in sum (nil sum: not checked)

	started         bool
	lit, dist       huffTable
	litBuf, distBuf []uint32 // tables of dynamic blocks (lit and dist point at them or at the fixed ones)
	lens            [maxLitLen + maxDist]uint8
}

// window is how far back a deflate match reaches.
const window = 32 << 10

const (
	maxLitLen  = 288
	maxDist    = 32
	litBits    = 11 // primary table bits
	distBits   = 8
	inChunk    = 32 << 10
	fastOutGap = 258 + 8 // room the fast loop needs: a longest match and one word of overrun
)

// Table entries: bits 0-3 code length (bits to consume), 4-7 extra bits or
// subtable bits, 8-10 kind, 16-31 value (literal, length or distance base,
// or subtable start).
const (
	kLiteral = 1 << 8
	kLength  = 2 << 8 // also distance codes
	kEnd     = 3 << 8
	kSub     = 4 << 8
	kInvalid = 5 << 8
	kindMask = 7 << 8
)

type huffTable struct {
	t       []uint32
	primary uint
}

// What a table's symbols are.
type tableKind int

const (
	litTable     tableKind = iota // literals, end of block, lengths
	distTable                     // distances
	precodeTable                  // code lengths (values 0-18 as literals)
)

var (
	errZlibHeader = errors.New("zlib: invalid header")
	errCorrupt    = errors.New("flate: corrupt input")
	errTooFar     = errors.New("flate: distance too far back")
	errShortInput = errors.New("flate: unexpected end of input")
	errChecksum   = errors.New("zlib: invalid checksum")
)

// errLonger means the stream holds more than the declared size.
var errLonger = errors.New("stream longer than declared")

var (
	lengthBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lengthExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase    = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra   = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	precodeOrd  = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
)

// newInflater prepares to inflate the n-byte zlib stream at off of src,
// which declares size bytes.
func newInflater(src io.ReaderAt, off, n int64, size int) *inflater {
	return &inflater{src: src, srcOff: off, srcEnd: off + n, size: size, sum: adler32.New()}
}

// checkpoint is an inflater's state at a block boundary.
type checkpoint struct {
	pos     int    // stream offset
	history []byte // the window before pos
	inOff   int64  // offset in src of the first input byte not in bits
	bits    uint64
	nbits   uint
	last    bool
}

// save returns the state to start another inflater from, or false when
// there is none to take (mid-stream errors, input padded past its end).
func (z *inflater) save() (checkpoint, bool) {
	if !z.started || z.over > 0 || z.done {
		return checkpoint{}, false
	}
	h := max(z.o-window, 0)
	return checkpoint{
		pos:     z.base + z.o,
		history: bytes.Clone(z.out[h:z.o]),
		inOff:   z.srcOff - int64(len(z.in)-z.pos),
		bits:    z.bits & (1<<z.nbits - 1), // the bits above were read ahead from in[pos:]
		nbits:   z.nbits,
		last:    z.last,
	}, true
}

// resume returns an inflater that goes on from c, reusing the buffers of
// spare (when not nil). Its output is not checksummed: it did not see the
// start of the stream.
func (z *inflater) resume(c checkpoint, spare *inflater) *inflater {
	var out, in []byte
	if spare != nil {
		out, in = spare.out, spare.in[:0]
	}
	if len(out) < len(c.history)+fastOutGap {
		out = make([]byte, len(c.history)+256<<10)
	}
	copy(out, c.history)
	return &inflater{src: z.src, srcOff: c.inOff, srcEnd: z.srcEnd, in: in, bits: c.bits, nbits: c.nbits,
		size: z.size, out: out, base: c.pos - len(c.history), o: len(c.history), last: c.last, started: true}
}

// slide drops the output before stream offset keep (or before the last
// window, whichever is earlier), keeping the buffer's storage.
func (z *inflater) slide(keep int) {
	from := min(keep, z.base+z.o-window) - z.base
	if from <= 0 {
		return
	}
	if z.sum != nil {
		z.sum.Write(z.out[z.summed:z.o])
		z.summed = z.o
	}
	n := copy(z.out, z.out[from:z.o])
	z.base += from
	z.o = n
	z.summed = n
}

// bytesAt returns the decoded bytes [off, off+n) (within out).
func (z *inflater) bytesAt(off, n int) []byte {
	if off < z.base || off+n > z.base+z.o {
		return nil
	}
	return z.out[off-z.base : off-z.base+n]
}

// grow makes room for n more bytes of output.
func (z *inflater) grow(n int) {
	if z.o+n+fastOutGap <= len(z.out) {
		return
	}
	c := max(2*len(z.out), z.o+n+fastOutGap, 64<<10)
	out := make([]byte, c)
	copy(out, z.out[:z.o])
	z.out = out
}

// readMore appends up to inChunk input bytes; false at the end of the input.
func (z *inflater) readMore() (bool, error) {
	if z.srcOff >= z.srcEnd {
		return false, nil
	}
	if z.pos > 0 {
		z.in = append(z.in[:0], z.in[z.pos:]...)
		z.pos = 0
	}
	n := min(int64(inChunk), z.srcEnd-z.srcOff)
	if cap(z.in)-len(z.in) < int(n) {
		z.in = append(make([]byte, 0, len(z.in)+int(n)), z.in...)
	}
	start := len(z.in)
	z.in = z.in[:start+int(n)]
	if err := readFull(z.src, z.in[start:], z.srcOff); err != nil {
		z.in = z.in[:start]
		return false, err
	}
	z.srcOff += n
	return true, nil
}

// need makes at least n (≤ 57) bits available, byte by byte; past the end of
// the input it feeds zero bytes, which is an error once they are consumed.
func (z *inflater) need(n uint) error {
	for z.nbits < n {
		if z.pos >= len(z.in) {
			more, err := z.readMore()
			if err != nil {
				return err
			}
			if !more {
				z.over++
				z.nbits += 8
				continue
			}
		}
		z.bits |= uint64(z.in[z.pos]) << z.nbits
		z.pos++
		z.nbits += 8
	}
	return nil
}

// take consumes n bits (n ≤ 32), which must be available.
func (z *inflater) take(n uint) uint32 {
	v := uint32(z.bits & (1<<n - 1))
	z.bits >>= n
	z.nbits -= n
	return v
}

// overrun reports consumed zero bytes fed past the end of the input.
func (z *inflater) overrun() bool { return z.over > 0 && int(z.nbits)/8 < z.over }

// header reads the zlib header.
func (z *inflater) header() error {
	if err := z.need(16); err != nil {
		return err
	}
	cmf, flg := z.take(8), z.take(8)
	if z.overrun() || cmf&0x0f != 8 || cmf>>4 > 7 || (cmf<<8|flg)%31 != 0 || flg&0x20 != 0 {
		return errZlibHeader
	}
	return nil
}

// fill decodes blocks until the output reaches stream offset want, or,
// when want is past the declared size, to the end of the stream, whose
// length and checksum it then checks.
func (z *inflater) fill(want int) error {
	if !z.started {
		z.started = true
		if err := z.header(); err != nil {
			return err
		}
	}
	for !z.last && (z.base+z.o < want || want > z.size) {
		if err := z.block(); err != nil {
			return err
		}
	}
	if z.last && !z.done && (want > z.size || z.base+z.o < want) {
		return z.trailer()
	}
	return nil
}

// trailer checks the stream's end: the declared size reached, then the adler-32.
func (z *inflater) trailer() error {
	if n := z.base + z.o; n != z.size {
		return fmt.Errorf("decompressed %#x bytes, header says %#x", n, z.size)
	}
	z.take(z.nbits % 8)
	if err := z.need(32); err != nil {
		return err
	}
	sum := z.take(8)<<24 | z.take(8)<<16 | z.take(8)<<8 | z.take(8)
	if z.overrun() {
		return errShortInput
	}
	if z.sum != nil {
		z.sum.Write(z.out[z.summed:z.o])
		z.summed = z.o
		if sum != z.sum.Sum32() {
			return errChecksum
		}
	}
	z.done = true
	z.in = nil
	return nil
}

// block decodes one deflate block.
func (z *inflater) block() error {
	if err := z.need(3); err != nil {
		return err
	}
	z.last = z.take(1) == 1
	switch z.take(2) {
	case 0:
		return z.stored()
	case 1:
		z.fixedTables()
	case 2:
		if err := z.dynamicTables(); err != nil {
			return err
		}
	default:
		return errCorrupt
	}
	if z.overrun() {
		return errShortInput
	}
	return z.huffmanBlock()
}

func (z *inflater) stored() error {
	z.take(z.nbits % 8)
	if err := z.need(32); err != nil {
		return err
	}
	n, nn := z.take(16), z.take(16)
	if z.overrun() {
		return errShortInput
	}
	if n != ^nn&0xffff {
		return errCorrupt
	}
	// Bytes still in the bit buffer come first; then the bits beyond those
	// (read ahead from in[pos:]) are stale.
	if z.base+z.o+int(n) > z.size {
		return errLonger
	}
	z.grow(int(n))
	for ; n > 0 && z.nbits >= 8; n-- {
		z.out[z.o] = byte(z.take(8))
		z.o++
	}
	if n > 0 {
		z.bits = 0
	}
	for n > 0 {
		if z.pos >= len(z.in) {
			more, err := z.readMore()
			if err != nil {
				return err
			}
			if !more {
				return errShortInput
			}
		}
		k := min(int(n), len(z.in)-z.pos)
		copy(z.out[z.o:], z.in[z.pos:z.pos+k])
		z.o += k
		z.pos += k
		n -= uint32(k)
	}
	return nil
}

var fixedLit, fixedDist huffTable

func init() {
	var lens [maxLitLen]uint8
	for i := range lens {
		switch {
		case i < 144:
			lens[i] = 8
		case i < 256:
			lens[i] = 9
		case i < 280:
			lens[i] = 7
		default:
			lens[i] = 8
		}
	}
	if err := fixedLit.build(nil, lens[:], litBits, litTable); err != nil {
		panic(err)
	}
	var dl [maxDist]uint8
	for i := range dl {
		dl[i] = 5
	}
	if err := fixedDist.build(nil, dl[:], distBits, distTable); err != nil {
		panic(err)
	}
}

func (z *inflater) fixedTables() {
	z.lit.t, z.lit.primary = fixedLit.t, fixedLit.primary
	z.dist.t, z.dist.primary = fixedDist.t, fixedDist.primary
}

func (z *inflater) dynamicTables() error {
	if err := z.need(14); err != nil {
		return err
	}
	nlit := int(z.take(5)) + 257
	ndist := int(z.take(5)) + 1
	ncode := int(z.take(4)) + 4
	if nlit > 286 || ndist > 30 {
		return errCorrupt
	}
	var pl [19]uint8
	for i := 0; i < ncode; i++ {
		if err := z.need(3); err != nil {
			return err
		}
		pl[precodeOrd[i]] = uint8(z.take(3))
	}
	var pre huffTable
	var preBuf [128]uint32
	if err := pre.build(preBuf[:0], pl[:], 7, precodeTable); err != nil {
		return err
	}
	lens := z.lens[:nlit+ndist]
	for i := 0; i < len(lens); {
		if err := z.need(7 + 7); err != nil {
			return err
		}
		e := pre.t[z.bits&127]
		if e&kindMask != kLiteral {
			return errCorrupt
		}
		z.take(uint(e & 15))
		sym := e >> 16
		if sym < 16 {
			lens[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				return errCorrupt
			}
			rep, val = 3+int(z.take(2)), lens[i-1]
		case 17:
			rep = 3 + int(z.take(3))
		default:
			rep = 11 + int(z.take(7))
		}
		if i+rep > len(lens) {
			return errCorrupt
		}
		for ; rep > 0; rep-- {
			lens[i] = val
			i++
		}
	}
	if z.overrun() {
		return errShortInput
	}
	if lens[256] == 0 {
		return errCorrupt // no end-of-block code
	}
	if err := z.lit.build(z.litBuf[:0], lens[:nlit], litBits, litTable); err != nil {
		return err
	}
	z.litBuf = z.lit.t
	err := z.dist.build(z.distBuf[:0], lens[nlit:], distBits, distTable)
	z.distBuf = z.dist.t
	return err
}

// build makes the decoding table of a canonical Huffman code in t's
// storage. Like compress/flate, a code must be complete, except a single
// code of length 1, and a distance code may be empty (then any match is an
// error).
func (h *huffTable) build(t []uint32, lens []uint8, primary uint, kind tableKind) error {
	var count [16]int
	maxLen := 0
	for _, l := range lens {
		count[l]++
		maxLen = max(maxLen, int(l))
	}
	count[0] = 0
	h.primary = primary
	size := 1 << primary
	if cap(t) >= size {
		t = t[:size]
	} else {
		t = make([]uint32, size)
	}
	for i := range t {
		t[i] = kInvalid
	}
	h.t = t
	if maxLen == 0 {
		if kind != distTable {
			return errCorrupt
		}
		return nil
	}
	left := 1
	for l := 1; l <= 15; l++ {
		left = left<<1 - count[l]
		if left < 0 {
			return errCorrupt // over-subscribed
		}
	}
	if left > 0 && maxLen != 1 {
		return errCorrupt // incomplete
	}
	if maxLen > int(primary) && kind == precodeTable {
		return errCorrupt
	}
	// Canonical codes, then bit-reversed: the stream is read LSB first.
	var next [16]int
	code := 0
	for l := 1; l <= 15; l++ {
		code = (code + count[l-1]) << 1
		next[l] = code
	}
	var rev [maxLitLen]uint16
	for sym, l := range lens {
		if l != 0 {
			rev[sym] = uint16(reverse(next[l], uint(l)))
			next[l]++
		}
	}
	// Codes longer than primary go to a subtable per primary index, as big
	// as the longest of them needs.
	if maxLen > int(primary) {
		var subBits [1 << litBits]uint8
		for sym, l := range lens {
			if int(l) > int(primary) {
				p := int(rev[sym]) & (size - 1)
				subBits[p] = max(subBits[p], l-uint8(primary))
			}
		}
		for p := 0; p < size; p++ {
			if b := subBits[p]; b != 0 {
				start := len(t)
				for k := 0; k < 1<<b; k++ {
					t = append(t, kInvalid)
				}
				t[p] = uint32(start)<<16 | kSub | uint32(b)<<4 | uint32(primary)
			}
		}
		h.t = t
	}
	for sym, l := range lens {
		if l == 0 {
			continue
		}
		r := int(rev[sym])
		e := entryFor(sym, kind)
		if int(l) <= int(primary) {
			e |= uint32(l)
			for i := r; i < size; i += 1 << l {
				t[i] = e
			}
			continue
		}
		sub := t[r&(size-1)]
		start, b := int(sub>>16), uint(sub>>4&15)
		step := uint(l) - primary
		e |= uint32(step)
		for i := r >> primary; i < 1<<b; i += 1 << step {
			t[start+i] = e
		}
	}
	return nil
}

func entryFor(sym int, kind tableKind) uint32 {
	switch {
	case kind == precodeTable:
		return uint32(sym)<<16 | kLiteral
	case kind == distTable && sym < 30:
		return uint32(distBase[sym])<<16 | kLength | uint32(distExtra[sym])<<4
	case kind == distTable:
		return kInvalid
	case sym < 256:
		return uint32(sym)<<16 | kLiteral
	case sym == 256:
		return kEnd
	case sym < 286:
		return uint32(lengthBase[sym-257])<<16 | kLength | uint32(lengthExtra[sym-257])<<4
	}
	return kInvalid
}

// reverse returns the n low bits of c in reverse order.
func reverse(c int, n uint) int {
	return int(bits.Reverse16(uint16(c)) >> (16 - n))
}

// huffmanBlock decodes the symbols of one block.
func (z *inflater) huffmanBlock() error {
	lit, dist := z.lit.t, z.dist.t
	if z.lit.primary != litBits || z.dist.primary != distBits || len(lit) < 1<<litBits || len(dist) < 1<<distBits {
		return errCorrupt // cannot happen: every table is built with these
	}
	// The primary tables as arrays: indexes masked to their size need no
	// bounds check.
	litPrim, distPrim := (*[1 << litBits]uint32)(lit), (*[1 << distBits]uint32)(dist)
	const litMask, distMask = 1<<litBits - 1, 1<<distBits - 1
	const litPrimary, distPrimary = litBits, distBits
	for {
		// Fast path: 8 input bytes, and room for a longest match plus a word
		// in out and for a longest match before the declared size.
		out, in, pos, o := z.out, z.in, z.pos, z.o
		fastEnd := min(len(out)-fastOutGap, z.size-z.base-258)
		bits, nbits := z.bits, z.nbits
		var err error
		for pos+8 <= len(in) && o <= fastEnd {
			// Shift counts are masked to 63 so that the compiler needs no
			// check for counts of 64 or more; none of them reaches 64.
			bits |= binary.LittleEndian.Uint64(in[pos:]) << (nbits & 63)
			pos += int(63-nbits) >> 3
			nbits |= 56
			e := litPrim[bits&litMask]
			if e&kindMask == kSub {
				bits >>= litPrimary & 63
				nbits -= litPrimary
				e = lit[uint64(e>>16)+bits&(1<<(e>>4&15)-1)]
			}
			n := uint(e & 15)
			bits >>= n & 63
			nbits -= n
			if e&kindMask == kLiteral {
				out[o] = byte(e >> 16)
				o++
				// At least 41 bits are left: a second literal needs no refill.
				e = litPrim[bits&litMask]
				if e&kindMask == kLiteral {
					n = uint(e & 15)
					bits >>= n & 63
					nbits -= n
					out[o] = byte(e >> 16)
					o++
				}
				continue
			}
			if e&kindMask != kLength {
				if e&kindMask != kEnd {
					err = errCorrupt
				} else {
					err = errEndOfBlock
				}
				break
			}
			x := uint(e >> 4 & 15)
			length := int(e>>16) + int(bits&(1<<x-1))
			bits >>= x & 63
			nbits -= x
			d := distPrim[bits&distMask]
			if d&kindMask == kSub {
				bits >>= distPrimary & 63
				nbits -= distPrimary
				d = dist[uint64(d>>16)+bits&(1<<(d>>4&15)-1)]
			}
			if d&kindMask != kLength {
				err = errCorrupt
				break
			}
			n = uint(d & 15)
			bits >>= n & 63
			nbits -= n
			x = uint(d >> 4 & 15)
			distance := int(d>>16) + int(bits&(1<<x-1))
			bits >>= x & 63
			nbits -= x
			if distance > o {
				err = errTooFar
				break
			}
			src := o - distance
			if distance >= 8 {
				for k := 0; k < length; k += 8 {
					binary.LittleEndian.PutUint64(out[o+k:], binary.LittleEndian.Uint64(out[src+k:]))
				}
			} else {
				for k := 0; k < length; k++ {
					out[o+k] = out[src+k]
				}
			}
			o += length
		}
		z.pos, z.o, z.bits, z.nbits = pos, o, bits, nbits
		if err == nil {
			// Careful path, near the end of the input or of the output.
			err = z.slowSymbol()
		}
		if err == errEndOfBlock {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

var errEndOfBlock = errors.New("end of block")

// slowSymbol decodes one symbol with every check.
func (z *inflater) slowSymbol() error {
	if err := z.need(48); err != nil {
		return err
	}
	e := z.lit.t[int(z.bits)&(1<<z.lit.primary-1)]
	if e&kindMask == kSub {
		z.take(z.lit.primary)
		e = z.lit.t[int(e>>16)+int(z.bits)&(1<<(e>>4&15)-1)]
	}
	z.take(uint(e & 15))
	if z.overrun() {
		return errShortInput
	}
	switch e & kindMask {
	case kLiteral:
		if z.base+z.o >= z.size {
			return errLonger
		}
		z.grow(1)
		z.out[z.o] = byte(e >> 16)
		z.o++
		return nil
	case kEnd:
		return errEndOfBlock
	case kLength:
	default:
		return errCorrupt
	}
	length := int(e>>16) + int(z.take(uint(e>>4&15)))
	d := z.dist.t[int(z.bits)&(1<<z.dist.primary-1)]
	if d&kindMask == kSub {
		z.take(z.dist.primary)
		d = z.dist.t[int(d>>16)+int(z.bits)&(1<<(d>>4&15)-1)]
	}
	if d&kindMask != kLength {
		return errCorrupt
	}
	z.take(uint(d & 15))
	distance := int(d>>16) + int(z.take(uint(d>>4&15)))
	if z.overrun() {
		return errShortInput
	}
	if distance > z.o {
		return errTooFar
	}
	if z.base+z.o+length > z.size {
		return errLonger
	}
	z.grow(length)
	for k := 0; k < length; k++ {
		z.out[z.o+k] = z.out[z.o-distance+k]
	}
	z.o += length
	return nil
}
