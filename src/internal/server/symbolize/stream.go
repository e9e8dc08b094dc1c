package symbolize

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
)

// A stream is a big DWARF section that lookups read piece by piece
// (.debug_info, .debug_abbrev, .debug_line): read(off, n) returns the bytes
// [off, off+n) and keeps none of the section but a window. Reading the part
// of glibc's .debug_info in front of a unit (most of its 5.8 MB) then costs
// inflating it, not holding it: a process holds the units it uses, not
// the megabytes before them.
//
// A zlib stream is inflated forward by one inflater (the frontier), which
// keeps the last 32 KiB and the piece being read, and leaves a checkpoint
// every streamCheckEvery bytes of output; a read behind the frontier starts
// another inflater at the checkpoint before it. An uncompressed stream reads
// the file in chunks. A small section, or a zstd one, is read whole once.
type stream struct {
	name string
	size int

	mu  sync.Mutex
	err error // sticky: the stream is broken

	mem []byte // the whole section, when read whole (then the rest is unused)

	// The section's bytes (or its zlib stream, zlen bytes) are at off in r.
	r    io.ReaderAt
	off  int64
	zlen int64

	// Uncompressed: win holds [winOff, winOff+len(win)).
	win    []byte
	winOff int

	// zlib.
	z           *inflater // the frontier
	spare       *inflater // the last one resumed from a checkpoint, for its buffers
	checkpoints []checkpoint
	nextCheck   int

	// whole, if not nil, reads the whole section (zstd).
	whole func() ([]byte, error)
}

const (
	streamCheckEvery = 256 << 10 // output between checkpoints: 32 KiB each
	streamStep       = 64 << 10  // output per step: the window slides between steps (small: fresh memory costs)
	streamChunk      = 256 << 10 // file bytes read at once (uncompressed)
)

// errStreamClosed is the error of reads after close.
var errStreamClosed = errors.New("file closed")

func (s *stream) len() int {
	if s == nil {
		return 0
	}
	return s.size
}

// read returns the bytes [off, off+n) of the section, fewer at its end.
// The result may share memory with the stream and must not be modified.
func (s *stream) read(off, n int) ([]byte, error) {
	if s == nil || off < 0 || n < 0 || off >= s.size {
		return nil, nil
	}
	n = min(n, s.size-off)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	var b []byte
	var err error
	switch {
	case s.mem != nil:
		b = s.mem[off : off+n]
	case s.whole != nil:
		if s.mem, err = s.whole(); err == nil {
			s.whole = nil
			b = s.mem[off : off+n]
		}
	case s.z != nil:
		b, err = s.inflated(off, n)
	default:
		b, err = s.fileBytes(off, n)
	}
	if err != nil {
		s.err = fmt.Errorf("section %s: %w", s.name, err)
		s.release()
		return nil, s.err
	}
	return b, nil
}

// appendTo appends the bytes [off, off+n) of the section (fewer at its end)
// to dst, without a copy in between.
func (s *stream) appendTo(dst []byte, off, n int) ([]byte, error) {
	if s == nil || off < 0 || n < 0 || off >= s.size {
		return dst, nil
	}
	n = min(n, s.size-off)
	s.mu.Lock()
	if s.z != nil && s.err == nil && off >= s.z.base {
		// From the frontier's window.
		defer s.mu.Unlock()
		if err := s.advance(s.z, off, off+n); err != nil {
			s.err = fmt.Errorf("section %s: %w", s.name, err)
			s.release()
			return dst, s.err
		}
		return append(dst, s.z.bytesAt(off, n)...), nil
	}
	s.mu.Unlock()
	b, err := s.read(off, n)
	return append(dst, b...), err
}

// all returns the whole section, read once and kept.
func (s *stream) all() ([]byte, error) {
	if s == nil {
		return nil, nil
	}
	s.mu.Lock()
	if z := s.z; z != nil && s.err == nil && z.base == 0 && z.o == 0 {
		// Not started: inflate straight into a buffer of the section's size.
		defer s.mu.Unlock()
		z.out = make([]byte, s.size+fastOutGap)
		if err := z.fill(s.size + 1); err != nil {
			s.err = fmt.Errorf("section %s: %w", s.name, inflateError(err, s.size))
			s.release()
			return nil, s.err
		}
		s.mem = z.out[:s.size:s.size]
		s.release()
		return s.mem, nil
	}
	s.mu.Unlock()
	b, err := s.read(0, s.size)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mem == nil {
		s.mem = b // a copy: read returns fresh bytes unless they are mem's
		s.release()
	}
	return s.mem, nil
}

func (s *stream) fileBytes(off, n int) ([]byte, error) {
	if off >= s.winOff && off+n <= s.winOff+len(s.win) {
		return bytes.Clone(s.win[off-s.winOff : off-s.winOff+n]), nil
	}
	if n >= streamChunk/2 {
		b := make([]byte, n)
		return b, readFull(s.r, b, s.off+int64(off))
	}
	c := min(streamChunk, s.size-off)
	if cap(s.win) < c {
		s.win = make([]byte, c)
	}
	s.win = s.win[:c]
	s.winOff = off
	if err := readFull(s.r, s.win, s.off+int64(off)); err != nil {
		s.win = s.win[:0]
		return nil, err
	}
	return bytes.Clone(s.win[:n]), nil
}

// inflated returns [off, off+n) from the frontier, or from an inflater
// resumed at the last checkpoint before off.
func (s *stream) inflated(off, n int) ([]byte, error) {
	z := s.z
	if off < z.base {
		var c *checkpoint
		for i := range s.checkpoints {
			if s.checkpoints[i].pos <= off {
				c = &s.checkpoints[i]
			}
		}
		// The last inflater resumed goes on when it is at or before off and
		// no checkpoint is nearer: reads behind the frontier in order go
		// forward too.
		sp := s.spare
		switch {
		case sp != nil && off >= sp.base && (c == nil || c.pos <= sp.base+sp.o) && !sp.last:
			z = sp
		case c != nil:
			z = z.resume(*c, sp)
		default:
			z = newInflater(s.r, s.off, s.zlen, s.size)
			z.sum = nil // seen once already, by the frontier
		}
		s.spare = z
	}
	if err := s.advance(z, off, off+n); err != nil {
		return nil, err
	}
	return bytes.Clone(z.bytesAt(off, n)), nil
}

// advance inflates with z until it holds [keep, want), in steps that slide
// its window and, on the frontier, leave checkpoints.
//
// The frontier is not checksummed: piece by piece, a read rarely reaches the stream's end,
// where the adler-32 is checked, and summing the bytes on the way costs 5-10% of the
// inflating. A section read whole in one go (all) is checked. Either way every structure
// decoded from the bytes is checked by its reader.
func (s *stream) advance(z *inflater, keep, want int) error {
	if z == s.z && z.base == 0 && z.summed == 0 {
		z.sum = nil
	}
	for z.base+z.o < want {
		z.slide(keep)
		if err := z.fill(min(want, z.base+z.o+streamStep)); err != nil {
			return inflateError(err, s.size)
		}
		if z == s.z && z.base+z.o >= s.nextCheck {
			if c, ok := z.save(); ok {
				s.checkpoints = append(s.checkpoints, c)
				s.nextCheck = c.pos + streamCheckEvery
			}
		}
		if z.base+z.o == s.size && z == s.z {
			// The end: check that the stream ends here, and its checksum.
			if err := z.fill(s.size + 1); err != nil {
				return inflateError(err, s.size)
			}
		}
		if z.last && z.base+z.o < want {
			return z.fill(want) // reports the short stream
		}
	}
	return nil
}

func inflateError(err error, size int) error {
	if errors.Is(err, errLonger) {
		return fmt.Errorf("decompressed more than %#x bytes, header says %#x", size, size)
	}
	return err
}

// release drops what reading needs once it cannot go on (broken, closed or
// read whole); s.mu is held.
func (s *stream) release() {
	s.z, s.spare, s.checkpoints, s.win, s.whole = nil, nil, nil, nil, nil
	if s.mem == nil && s.err == nil {
		s.err = fmt.Errorf("section %s: %w", s.name, errStreamClosed)
	}
}

// close stops reading; later reads fail, unless the section was read whole.
func (s *stream) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.release()
}

// through returns how far the section was read forward (its size once read whole).
func (s *stream) through() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.mem != nil:
		return s.size
	case s.z != nil:
		return s.z.base + s.z.o
	}
	return s.winOff + len(s.win)
}
