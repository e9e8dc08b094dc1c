package symbolize

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync/atomic"

	"compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// Limits on what an input file can make us read or allocate. Uncompressed
// section contents are bounded by the bytes actually present in the file;
// compressed ones by the ratio below, which is far above what real DWARF
// reaches (3-10x) and keeps a small hostile file from expanding into gigabytes.
const (
	readChunk           = 1 << 20 // grow buffers by at most this much per read
	maxCompressionRatio = 64      // declared uncompressed size / compressed size
	maxDebugBytes       = 2 << 30 // all loaded debug sections together
	// Names and paths built from the DWARF (line-table paths, function
	// names, scopes) may not exceed this plus 8 bytes per debug byte: many
	// references to one long string must not multiply memory.
	baseNameBudget = 64 << 20
)

// budget is a count of bytes that may still be spent, shared by lookups.
type budget struct{ left atomic.Int64 }

func newBudget(n int64) *budget {
	b := &budget{}
	b.left.Store(n)
	return b
}

// take spends n bytes; false when the budget is exhausted.
func (b *budget) take(n int) bool {
	return b.left.Add(-int64(n)) >= 0
}

// sizeOf reports the size of r when r can tell, or -1.
func sizeOf(r io.ReaderAt) int64 {
	switch v := r.(type) {
	case interface{ Size() int64 }:
		return v.Size()
	case interface{ Stat() (fs.FileInfo, error) }:
		if fi, err := v.Stat(); err == nil {
			return fi.Size()
		}
	}
	return -1
}

// readFull fills buf from off; a short read is io.ErrUnexpectedEOF.
func readFull(r io.ReaderAt, buf []byte, off int64) error {
	n, err := r.ReadAt(buf, off)
	if n == len(buf) {
		return nil // a ReaderAt may report io.EOF along with the last bytes
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// readAt reads exactly n bytes at off. The buffer grows with the data
// actually read, so a size field that lies about a short file fails with
// io.ErrUnexpectedEOF after at most one extra chunk of allocation.
func readAt(r io.ReaderAt, off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off+n < off {
		return nil, fmt.Errorf("invalid range %#x+%#x", off, n)
	}
	var buf []byte
	for done := int64(0); done < n || n == 0; {
		c := min(n-done, readChunk)
		buf = append(buf, make([]byte, c)...)
		if err := readFull(r, buf[done:done+c], off+done); err != nil {
			return nil, err
		}
		done += c
		if n == 0 {
			break
		}
	}
	return buf, nil
}

// sectionBytes returns the contents of s (decompressed when needed).
// NOBITS sections have no contents and yield nil. fileSize is -1 when unknown.
func sectionBytes(r io.ReaderAt, f *elf.File, s *elf.Section, fileSize int64, ds *debugSections) ([]byte, error) {
	if s.Type == elf.SHT_NOBITS || s.FileSize == 0 {
		return nil, nil
	}
	if fileSize >= 0 && (s.Offset > uint64(fileSize) || s.FileSize > uint64(fileSize)-s.Offset) {
		return nil, fmt.Errorf("section %s: %#x bytes at %#x extend past end of file (%#x)", s.Name, s.FileSize, s.Offset, fileSize)
	}
	if s.FileSize > maxDebugBytes {
		return nil, fmt.Errorf("section %s: size %#x over limit", s.Name, s.FileSize)
	}
	var raw []byte
	var err error
	if fileSize >= 0 { // checked against the file above: safe to allocate at once
		raw = make([]byte, s.FileSize)
		err = readFull(r, raw, int64(s.Offset))
	} else {
		raw, err = readAt(r, int64(s.Offset), int64(s.FileSize))
	}
	if err != nil {
		return nil, fmt.Errorf("read section %s: %w", s.Name, err)
	}
	switch {
	case s.Flags&elf.SHF_COMPRESSED != 0:
		return decompressELF(raw, f, s.Name, ds)
	case strings.HasPrefix(s.Name, ".zdebug_"):
		return decompressGNU(raw, s.Name, ds)
	}
	if err := ds.charge(int64(len(raw)), s.Name); err != nil {
		return nil, err
	}
	return raw, nil
}

func (ds *debugSections) charge(n int64, name string) error {
	if n > maxDebugBytes-ds.loaded {
		return fmt.Errorf("section %s: debug data over %d bytes", name, int64(maxDebugBytes))
	}
	ds.loaded += n
	return nil
}

// decompressELF handles SHF_COMPRESSED: an Elf32_Chdr/Elf64_Chdr, then the stream.
func decompressELF(raw []byte, f *elf.File, name string, ds *debugSections) ([]byte, error) {
	order := f.ByteOrder
	var typ uint32
	var size uint64
	var hdr int
	switch f.Class {
	case elf.ELFCLASS32:
		hdr = 12
		if len(raw) < hdr {
			return nil, fmt.Errorf("section %s: short compression header", name)
		}
		typ = order.Uint32(raw[0:4])
		size = uint64(order.Uint32(raw[4:8]))
	case elf.ELFCLASS64:
		hdr = 24
		if len(raw) < hdr {
			return nil, fmt.Errorf("section %s: short compression header", name)
		}
		typ = order.Uint32(raw[0:4])
		size = order.Uint64(raw[8:16])
	default:
		return nil, fmt.Errorf("section %s: unknown ELF class", name)
	}
	switch elf.CompressionType(typ) {
	case elf.COMPRESS_ZLIB:
		return inflate(raw[hdr:], size, false, name, ds)
	case elf.COMPRESS_ZSTD:
		return inflate(raw[hdr:], size, true, name, ds)
	}
	return nil, fmt.Errorf("section %s: unknown compression type %d", name, typ)
}

// decompressGNU handles the older .zdebug_* form: "ZLIB", 8-byte big-endian size, zlib stream.
func decompressGNU(raw []byte, name string, ds *debugSections) ([]byte, error) {
	if len(raw) < 12 || string(raw[:4]) != "ZLIB" {
		return nil, fmt.Errorf("section %s: missing ZLIB header", name)
	}
	return inflate(raw[12:], binary.BigEndian.Uint64(raw[4:12]), false, name, ds)
}

func inflate(stream []byte, size uint64, isZstd bool, name string, ds *debugSections) ([]byte, error) {
	if size/maxCompressionRatio > uint64(len(stream)) {
		return nil, fmt.Errorf("section %s: declared size %#x is over %dx its %#x compressed bytes", name, size, maxCompressionRatio, len(stream))
	}
	if err := ds.charge(int64(size), name); err != nil {
		return nil, err
	}
	var rd io.Reader
	if isZstd {
		// The window the frame may ask for is bounded like the output.
		limit := max(size+1, readChunk)
		zr, err := zstd.NewReader(bytes.NewReader(stream), zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(limit), zstd.WithDecoderMaxWindow(limit))
		if err != nil {
			return nil, fmt.Errorf("section %s: %w", name, err)
		}
		defer zr.Close()
		rd = zr
	} else {
		zr, err := zlib.NewReader(bytes.NewReader(stream))
		if err != nil {
			return nil, fmt.Errorf("section %s: %w", name, err)
		}
		defer zr.Close()
		rd = zr
	}
	// Real DWARF compresses 3-10x: reserve the declared size up to 16x the
	// stream, then grow with the data actually produced, stopping one byte
	// past the declared size.
	var out bytes.Buffer
	out.Grow(int(min(size+1, 16*uint64(len(stream))+readChunk)))
	if _, err := out.ReadFrom(io.LimitReader(rd, int64(size)+1)); err != nil {
		return nil, fmt.Errorf("section %s: decompress: %w", name, err)
	}
	if uint64(out.Len()) != size {
		return nil, fmt.Errorf("section %s: decompressed %#x bytes, header says %#x", name, out.Len(), size)
	}
	return out.Bytes(), nil
}
