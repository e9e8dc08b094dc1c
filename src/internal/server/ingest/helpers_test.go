package ingest

import (
	"compress/flate"
	"debug/elf"
	"encoding/base64"
	"encoding/binary"
	"io"
	"testing"
)

func flateWriter(w io.Writer) (io.WriteCloser, error) {
	return flate.NewWriter(w, flate.BestCompression)
}

func basic(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

// corruptSectionSizes makes every section header and PT_NOTE of a little-endian ELF64 claim
// a size far beyond the file.
func corruptSectionSizes(t *testing.T, b []byte) {
	t.Helper()
	if elf.Class(b[elf.EI_CLASS]) != elf.ELFCLASS64 {
		t.Skip("fixture is not ELF64")
	}
	le := binary.LittleEndian
	shoff, shentsize, shnum := le.Uint64(b[0x28:]), uint64(le.Uint16(b[0x3a:])), uint64(le.Uint16(b[0x3c:]))
	for i := uint64(0); i < shnum; i++ {
		le.PutUint64(b[shoff+i*shentsize+0x20:], 1<<46) // sh_size
	}
	phoff, phentsize, phnum := le.Uint64(b[0x20:]), uint64(le.Uint16(b[0x36:])), uint64(le.Uint16(b[0x38:]))
	for i := uint64(0); i < phnum; i++ {
		p := b[phoff+i*phentsize:]
		if elf.ProgType(le.Uint32(p)) == elf.PT_NOTE {
			le.PutUint64(p[0x20:], 1<<46) // p_filesz
		}
	}
}
