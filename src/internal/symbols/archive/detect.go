package archive

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Kind is a compression format.
type Kind int

const (
	None Kind = iota // a plain tar stream (or anything unrecognised: the tar reader judges it)
	Gzip
	Bzip2
	XZ
	Zstd
)

func (k Kind) String() string {
	switch k {
	case None:
		return "none"
	case Gzip:
		return "gzip"
	case Bzip2:
		return "bzip2"
	case XZ:
		return "xz"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// sniffLen is how many bytes Detect looks at: the longest magic (xz, 6 bytes).
const sniffLen = 6

// readerSize is the buffer between the file and the decompressor.
const readerSize = 256 << 10

// Detect looks at the first bytes of r and says how it is compressed. The returned reader
// replays those bytes followed by the rest of r; it buffers r and is an io.ByteReader. A format
// recognised but not supported (lz4, lzip, compress, zip, 7z) is an error wrapping
// ErrUnsupported. A stream shorter than any magic is Kind None.
func Detect(r io.Reader) (Kind, io.Reader, error) {
	return detect(r)
}

func detect(r io.Reader) (Kind, *bufio.Reader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok || br.Size() < sniffLen {
		br = bufio.NewReaderSize(r, readerSize)
	}
	head, err := br.Peek(sniffLen)
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		return None, br, fmt.Errorf("read magic: %w", err)
	}
	k, err := kindOf(head)
	return k, br, err
}

// unsupported magics, for a clear error instead of "invalid tar header".
var unsupported = []struct {
	magic []byte
	name  string
}{
	{[]byte{0x04, 0x22, 0x4d, 0x18}, "lz4"},
	{[]byte("LZIP"), "lzip"},
	{[]byte{0x1f, 0x9d}, "compress (.Z)"},
	{[]byte{0x1f, 0xa0}, "compress (LZH)"},
	{[]byte("PK\x03\x04"), "zip"},
	{[]byte("7z\xbc\xaf\x27\x1c"), "7z"},
	{[]byte{0x89, 'L', 'Z', 'O'}, "lzop"},
}

func kindOf(head []byte) (Kind, error) {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return Gzip, nil
	case len(head) >= 4 && bytes.HasPrefix(head, []byte("BZh")) && head[3] >= '1' && head[3] <= '9':
		return Bzip2, nil
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return XZ, nil
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return Zstd, nil
	case len(head) >= 4 && head[0]&0xf0 == 0x50 && bytes.Equal(head[1:4], []byte{0x2a, 0x4d, 0x18}):
		return Zstd, nil // a zstd skippable frame (0x184D2A5?) first, as pzstd writes
	}
	for _, u := range unsupported {
		if bytes.HasPrefix(head, u.magic) {
			return None, fmt.Errorf("%w: %s compression", ErrUnsupported, u.name)
		}
	}
	return None, nil
}

// ErrUnsupported is a compression or member type this package does not read.
var ErrUnsupported = errors.New("unsupported")
