package symbolize

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// debugSections are the DWARF sections this package reads.
type debugSections struct {
	info, abbrev, line, str, ranges     *stream
	addr, lineStr, strOffsets, rngLists *stream
	aranges                             *stream
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
		secs := []*stream{ds.str, ds.lineStr, ds.ranges, ds.rngLists, ds.addr, ds.strOffsets}
		errs := make([]error, len(secs))
		var wg sync.WaitGroup
		for i, s := range secs {
			if s == nil {
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
		ds.strS, ds.lineStrS = sharedString(str), sharedString(lineStr) // read whole: kept, never written
	})
	return ds.err
}

// eagerBytes: sections up to this size are read (and their streams checked)
// when the file is opened; reading them later would save nothing.
const eagerBytes = 64 << 10

// newStream prepares section s of f for reading on demand: the compression
// header is checked here, the contents are read later, except for small
// sections, read (and their streams checked) now. nil for an empty section.
func newStream(r io.ReaderAt, f *elf.File, s *elf.Section, fileSize int64, ds *debugSections) (*stream, error) {
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
	st := &stream{name: s.Name, r: r, off: off}
	switch {
	case s.Flags&elf.SHF_COMPRESSED != 0:
		var hdr int64
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
		typ := elf.CompressionType(f.ByteOrder.Uint32(b[0:4]))
		var size uint64
		if hdr == 12 {
			size = uint64(f.ByteOrder.Uint32(b[4:8]))
		} else {
			size = f.ByteOrder.Uint64(b[8:16])
		}
		if typ != elf.COMPRESS_ZLIB && typ != elf.COMPRESS_ZSTD {
			return nil, fmt.Errorf("section %s: unknown compression type %d", s.Name, typ)
		}
		if err := st.compressed(off+hdr, n-hdr, size, typ == elf.COMPRESS_ZSTD); err != nil {
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
		if err := st.compressed(off+12, n-12, binary.BigEndian.Uint64(b[4:12]), false); err != nil {
			return nil, err
		}
	default:
		st.size = int(n)
	}
	if err := ds.charge(int64(st.size), s.Name); err != nil {
		return nil, err
	}
	if st.size == 0 {
		return nil, nil
	}
	if st.size <= eagerBytes {
		if _, err := st.all(); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// compressed sets st up to inflate the n-byte stream at off into size bytes.
func (st *stream) compressed(off, n int64, size uint64, isZstd bool) error {
	if size/maxCompressionRatio > uint64(n) {
		return fmt.Errorf("section %s: declared size %#x is over %dx its %#x compressed bytes", st.name, size, maxCompressionRatio, n)
	}
	if size > maxDebugBytes {
		return fmt.Errorf("section %s: debug data over %d bytes", st.name, int64(maxDebugBytes))
	}
	st.size, st.off, st.zlen = int(size), off, n
	if !isZstd {
		st.z = newInflater(st.r, off, n, st.size)
		st.nextCheck = streamCheckEvery
		return nil
	}
	r := st.r
	st.whole = func() ([]byte, error) {
		// A ByteReader, so that the decompressor reads no further than its stream.
		in := bufio.NewReaderSize(io.NewSectionReader(r, off, n), 64<<10)
		// The window the frame may ask for is bounded like the output.
		limit := max(size+1, readChunk)
		zr, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(limit), zstd.WithDecoderMaxWindow(limit))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		var out bytes.Buffer
		out.Grow(int(min(size+1, 16*uint64(n)+readChunk)))
		if _, err := out.ReadFrom(io.LimitReader(zr, int64(size)+1)); err != nil {
			return nil, fmt.Errorf("decompress: %w", err)
		}
		if uint64(out.Len()) != size {
			return nil, fmt.Errorf("decompressed %#x bytes, header says %#x", out.Len(), size)
		}
		return out.Bytes(), nil
	}
	return nil
}

// loadDebugSections finds the DWARF sections this package reads and reads
// the small ones. It returns nil (and no error) when the file has no
// .debug_info.
func loadDebugSections(r io.ReaderAt, f *elf.File, fileSize int64) (*debugSections, error) {
	ds := &debugSections{}
	targets := map[string]**stream{
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
		sec, err := newStream(r, f, s, fileSize, ds)
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
	for _, s := range []*stream{ds.info, ds.abbrev, ds.line, ds.str, ds.ranges, ds.addr, ds.lineStr, ds.strOffsets, ds.rngLists, ds.aranges} {
		s.close()
	}
}
