package symbolize

import (
	"bufio"
	"bytes"
	"cmp"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// A DWARF section is read on demand and from the front: ensure(n) makes its
// first n bytes available, reading or decompressing only as far as that.
// A lookup in a big compressed debug file (glibc's: 2.3 MB of zlib for 5.8 MB
// of .debug_info) then costs the part of each stream in front of the units
// it needs, not every stream in full, and a stream is continued, never
// restarted, when a later lookup needs more of it.
//
// The bytes live in one buffer of the declared size plus a trailing zero
// byte (so that offset `size` of .debug_abbrev is an empty abbreviation
// table, see dwarf.go). Bytes below done never change again, except unit
// header fields that dwarf.go rewrites under its own lock, so readers may
// keep slices of them while a writer fills the rest.
type section struct {
	name string
	size int // declared (decompressed) size

	done atomic.Int64 // bytes of buf filled

	mu      sync.Mutex // held while producing bytes; guards the fields below
	buf     []byte     // size+1 bytes, allocated on the first read
	open    func() (io.Reader, io.Closer, error)
	src     io.Reader // the stream being read, nil before the first read and after the last
	closer  io.Closer
	compr   bool      // src is a decompressor: its end is checked
	z       *inflater // the zlib stream being inflated (instead of src)
	patches []patch   // bytes the owner changed, by offset
	err     error
	want    int  // what the background reader is asked to reach
	running bool // a background reader runs
}

// patch is a change the section's owner made to bytes already read.
type patch struct {
	off       int
	orig, now []byte
}

// patch writes b at off (below the bytes read so far). The inflater reads
// back through the output for its matches, so it is shown the original
// bytes while it runs. Readers of these bytes must hold their own lock
// around patch and around reading them.
func (s *section) patch(off int, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, found := slices.BinarySearchFunc(s.patches, off, func(p patch, off int) int { return cmp.Compare(p.off, off) })
	if !found {
		if s.z == nil {
			copy(s.buf[off:], b) // nothing reads back through the section any more
			return
		}
		s.patches = slices.Insert(s.patches, i, patch{off: off, orig: bytes.Clone(s.buf[off : off+len(b)])})
	}
	p := &s.patches[i]
	p.now = bytes.Clone(b)
	copy(s.buf[off:], b)
}

// readStep is how much one locked step produces: small enough that a lookup
// waiting for another part of the section does not wait long.
const readStep = 256 << 10

// len returns the section's declared size.
func (s *section) len() int {
	if s == nil {
		return 0
	}
	return s.size
}

// ensure makes the first n bytes available (all of them when n is past the
// end) and returns every byte available so far.
func (s *section) ensure(n int) ([]byte, error) {
	if s == nil {
		return nil, nil
	}
	n = min(max(n, 0), s.size)
	for int(s.done.Load()) < n {
		s.mu.Lock()
		err := s.step(n)
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	return s.avail(), nil
}

// all returns the whole section, with its trailing zero byte left off.
func (s *section) all() ([]byte, error) { return s.ensure(s.len()) }

// avail returns the bytes read so far.
func (s *section) avail() []byte {
	if s == nil {
		return nil
	}
	// buf is set before done first grows, and done is atomic: no lock needed.
	d := s.done.Load()
	if d == 0 {
		return nil
	}
	return s.buf[:d]
}

// withSentinel returns the whole buffer including its trailing zero byte
// (offset len() reads as an empty abbreviation table). Only the bytes below
// done are meaningful.
func (s *section) withSentinel() []byte {
	if s == nil {
		return []byte{0}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buf == nil {
		s.buf = make([]byte, s.size+1)
	}
	return s.buf
}

// step produces up to readStep more bytes, toward n; s.mu is held.
func (s *section) step(n int) error {
	if s.err != nil {
		return s.err
	}
	done := int(s.done.Load())
	if done >= n {
		return nil
	}
	if s.buf == nil {
		s.buf = make([]byte, s.size+1)
	}
	if s.z != nil {
		s.z.out = s.buf[:s.size]
		return s.inflateStep(done, n)
	}
	if s.src == nil {
		src, closer, err := s.open()
		if err != nil {
			return s.fail(err)
		}
		s.src, s.closer = src, closer
	}
	end := min(done+readStep, s.size)
	got, err := io.ReadFull(s.src, s.buf[done:end])
	s.done.Store(int64(done + got))
	if err != nil {
		if s.compr && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)) {
			return s.fail(fmt.Errorf("section %s: decompressed %#x bytes, header says %#x", s.name, done+got, s.size))
		}
		return s.fail(fmt.Errorf("section %s: %w", s.name, err))
	}
	if end == s.size {
		// The stream must end here: one more byte means the header lied, and
		// reading to the end checks the stream's own checksum.
		if s.compr {
			var one [1]byte
			if k, err := io.ReadFull(s.src, one[:]); k > 0 {
				return s.fail(fmt.Errorf("section %s: decompressed more than %#x bytes, header says %#x", s.name, s.size, s.size))
			} else if err != nil && !errors.Is(err, io.EOF) {
				return s.fail(fmt.Errorf("section %s: decompress: %w", s.name, err))
			}
		}
		s.release()
	}
	return nil
}

// inflateStep inflates whole deflate blocks, toward n; s.mu is held.
func (s *section) inflateStep(done, n int) error {
	want := min(done+readStep, n)
	// The inflater's window: the last 32 KiB, shown as decoded.
	first, _ := slices.BinarySearchFunc(s.patches, done-32<<10-16, func(p patch, off int) int { return cmp.Compare(p.off, off) })
	for _, p := range s.patches[first:] {
		copy(s.buf[p.off:], p.orig)
	}
	got, err := s.z.fill(want)
	if err == nil && got == s.size {
		// The end: check that the stream ends here, and its checksum, over
		// the bytes as decoded.
		first = 0
		for _, p := range s.patches {
			copy(s.buf[p.off:], p.orig)
		}
		got, err = s.z.fill(s.size + 1)
	}
	for _, p := range s.patches[first:] {
		copy(s.buf[p.off:], p.now)
	}
	if err == nil && got <= done && got < n {
		err = errCorrupt // no progress: cannot happen, but must not loop
	}
	s.done.Store(int64(got))
	if err != nil {
		return s.fail(inflateError(s.name, s.size, err))
	}
	if s.z.done {
		s.release()
	}
	return nil
}

func inflateError(name string, size int, err error) error {
	if errors.Is(err, errLonger) {
		return fmt.Errorf("section %s: decompressed more than %#x bytes, header says %#x", name, size, size)
	}
	return fmt.Errorf("section %s: %w", name, err)
}

func (s *section) fail(err error) error {
	s.err = err
	s.release()
	return err
}

// release drops the stream once the section is complete or broken.
func (s *section) release() {
	if s.closer != nil {
		s.closer.Close()
	}
	s.src, s.closer, s.open, s.z, s.patches = nil, nil, nil, nil, nil
}

// prefetch asks a background goroutine to read the first n bytes, so that
// the section is ready when a lookup needs it while the lookup waits for
// another one. Errors are left for ensure to report.
func (s *section) prefetch(n int) {
	if s == nil {
		return
	}
	n = min(max(n, 0), s.size)
	if int(s.done.Load()) >= n {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want = max(s.want, n)
	if s.running || s.err != nil {
		return
	}
	s.running = true
	go func() {
		for {
			s.mu.Lock()
			if s.err != nil || int(s.done.Load()) >= s.want {
				s.running = false
				s.mu.Unlock()
				return
			}
			s.step(s.want)
			s.mu.Unlock()
		}
	}()
}

// close stops reading; later reads fail.
func (s *section) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil && int(s.done.Load()) < s.size {
		s.err = fmt.Errorf("section %s: file closed", s.name)
	}
	s.release()
}

// debugSections are the DWARF sections this package reads.
type debugSections struct {
	info, abbrev, line, str, ranges     *section
	addr, lineStr, strOffsets, rngLists *section
	aranges                             *section
	loaded                              int64 // declared bytes, against maxDebugBytes

	// strS and lineStrS are str and lineStr as strings, so that names taken
	// from them are substrings rather than copies; set by whole().
	once           sync.Once
	err            error
	strS, lineStrS string
}

// whole reads the sections that debug/dwarf and the line decoder index at
// arbitrary offsets (strings, range lists, address tables), in parallel.
func (ds *debugSections) whole() error {
	ds.once.Do(func() {
		secs := []*section{ds.str, ds.lineStr, ds.ranges, ds.rngLists, ds.addr, ds.strOffsets}
		errs := make([]error, len(secs))
		var wg sync.WaitGroup
		for i, s := range secs {
			if s == nil || int(s.done.Load()) == s.size {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = s.all()
			}()
		}
		wg.Wait()
		if ds.err = errors.Join(errs...); ds.err != nil {
			return
		}
		str, _ := ds.str.all()
		lineStr, _ := ds.lineStr.all()
		ds.strS, ds.lineStrS = string(str), string(lineStr)
	})
	return ds.err
}

// eagerBytes: sections up to this size are read (and their streams checked)
// when the file is opened; reading them later would save nothing.
const eagerBytes = 64 << 10

// newSection prepares s of f for reading on demand: the compression header
// is checked here, the contents are read later. nil for an empty section.
func newSection(r io.ReaderAt, f *elf.File, s *elf.Section, fileSize int64, ds *debugSections) (*section, error) {
	if s.Type == elf.SHT_NOBITS || s.FileSize == 0 {
		return nil, nil
	}
	if fileSize >= 0 && (s.Offset > uint64(fileSize) || s.FileSize > uint64(fileSize)-s.Offset) {
		return nil, fmt.Errorf("section %s: %#x bytes at %#x extend past end of file (%#x)", s.Name, s.FileSize, s.Offset, fileSize)
	}
	if s.FileSize > maxDebugBytes {
		return nil, fmt.Errorf("section %s: size %#x over limit", s.Name, s.FileSize)
	}
	off, n := int64(s.Offset), int64(s.FileSize)
	sec := &section{name: s.Name}
	var isZstd bool
	switch {
	case s.Flags&elf.SHF_COMPRESSED != 0:
		var hdr int64
		var typ uint32
		var size uint64
		switch f.Class {
		case elf.ELFCLASS32:
			hdr = 12
		case elf.ELFCLASS64:
			hdr = 24
		default:
			return nil, fmt.Errorf("section %s: unknown ELF class", s.Name)
		}
		if n < hdr {
			return nil, fmt.Errorf("section %s: short compression header", s.Name)
		}
		b, err := readAt(r, off, hdr)
		if err != nil {
			return nil, fmt.Errorf("read section %s: %w", s.Name, err)
		}
		typ = f.ByteOrder.Uint32(b[0:4])
		if hdr == 12 {
			size = uint64(f.ByteOrder.Uint32(b[4:8]))
		} else {
			size = f.ByteOrder.Uint64(b[8:16])
		}
		switch elf.CompressionType(typ) {
		case elf.COMPRESS_ZLIB:
		case elf.COMPRESS_ZSTD:
			isZstd = true
		default:
			return nil, fmt.Errorf("section %s: unknown compression type %d", s.Name, typ)
		}
		off, n = off+hdr, n-hdr
		if err := sec.compressed(r, off, n, size, isZstd); err != nil {
			return nil, err
		}
	case strings.HasPrefix(s.Name, ".zdebug_"):
		b, err := readAt(r, off, min(n, 12))
		if err != nil {
			return nil, fmt.Errorf("read section %s: %w", s.Name, err)
		}
		if len(b) < 12 || string(b[:4]) != "ZLIB" {
			return nil, fmt.Errorf("section %s: missing ZLIB header", s.Name)
		}
		if err := sec.compressed(r, off+12, n-12, binary.BigEndian.Uint64(b[4:12]), false); err != nil {
			return nil, err
		}
	default:
		sec.size = int(n)
		sec.open = func() (io.Reader, io.Closer, error) {
			return io.NewSectionReader(r, off, n), nil, nil
		}
	}
	if err := ds.charge(int64(sec.size), s.Name); err != nil {
		return nil, err
	}
	if sec.size == 0 {
		return nil, nil
	}
	if sec.size <= eagerBytes {
		if _, err := sec.all(); err != nil {
			return nil, err
		}
	}
	return sec, nil
}

// compressed sets sec up to inflate the n-byte stream at off into size bytes.
func (sec *section) compressed(r io.ReaderAt, off, n int64, size uint64, isZstd bool) error {
	if size/maxCompressionRatio > uint64(n) {
		return fmt.Errorf("section %s: declared size %#x is over %dx its %#x compressed bytes", sec.name, size, maxCompressionRatio, n)
	}
	if size > maxDebugBytes {
		return fmt.Errorf("section %s: debug data over %d bytes", sec.name, int64(maxDebugBytes))
	}
	sec.size, sec.compr = int(size), true
	if !isZstd {
		sec.z = newInflater(r, off, n, nil) // its output buffer is set on the first read
		return nil
	}
	name := sec.name
	sec.open = func() (io.Reader, io.Closer, error) {
		// A ByteReader, so that the decompressor reads no further than its stream.
		in := bufio.NewReaderSize(io.NewSectionReader(r, off, n), 64<<10)
		// The window the frame may ask for is bounded like the output.
		limit := max(size+1, readChunk)
		zr, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(limit), zstd.WithDecoderMaxWindow(limit))
		if err != nil {
			return nil, nil, fmt.Errorf("section %s: %w", name, err)
		}
		return zr, closerFunc(zr.Close), nil
	}
	return nil
}

type closerFunc func()

func (c closerFunc) Close() error { c(); return nil }

// loadDebugSections finds the DWARF sections this package reads and reads
// the small ones. It returns nil (and no error) when the file has no
// .debug_info.
func loadDebugSections(r io.ReaderAt, f *elf.File, fileSize int64) (*debugSections, error) {
	ds := &debugSections{}
	targets := map[string]**section{
		"info": &ds.info, "abbrev": &ds.abbrev, "line": &ds.line, "str": &ds.str,
		"ranges": &ds.ranges, "addr": &ds.addr, "line_str": &ds.lineStr,
		"str_offsets": &ds.strOffsets, "rnglists": &ds.rngLists, "aranges": &ds.aranges,
	}
	seen := map[string]bool{}
	for _, s := range f.Sections {
		var suffix string
		switch {
		case strings.HasPrefix(s.Name, ".debug_"):
			suffix = s.Name[len(".debug_"):]
		case strings.HasPrefix(s.Name, ".zdebug_"):
			suffix = s.Name[len(".zdebug_"):]
		default:
			continue
		}
		dst, ok := targets[suffix]
		if !ok || seen[suffix] {
			continue
		}
		sec, err := newSection(r, f, s, fileSize, ds)
		if err != nil {
			return nil, err
		}
		if sec != nil {
			seen[suffix] = true
			*dst = sec
		}
	}
	if ds.info == nil {
		return nil, nil
	}
	return ds, nil
}

// close stops every section's reading.
func (ds *debugSections) close() {
	for _, s := range []*section{ds.info, ds.abbrev, ds.line, ds.str, ds.ranges, ds.addr, ds.lineStr, ds.strOffsets, ds.rngLists, ds.aranges} {
		s.close()
	}
}
