package elfcore

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// ErrNoBuildID is returned for an ELF file without a GNU build-id note.
var ErrNoBuildID = errors.New("no GNU build-id")

const maxNoteRead = 64 << 10

// FileBuildID reads the GNU build-id of an ELF file of size bytes without trusting its headers:
// every note range is checked against the file size before it is read.
func FileBuildID(r io.ReaderAt, size int64) (string, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return "", fmt.Errorf("not an ELF file: %w", err)
	}
	type rng struct{ off, n uint64 }
	var notes []rng
	for _, p := range f.Progs {
		if p.Type == elf.PT_NOTE {
			notes = append(notes, rng{p.Off, p.Filesz})
		}
	}
	for _, s := range f.Sections {
		if s.Type == elf.SHT_NOTE {
			notes = append(notes, rng{s.Offset, s.Size})
		}
	}
	for _, n := range notes {
		if n.n == 0 || n.n > maxNoteRead || n.off > uint64(size) || n.n > uint64(size)-n.off {
			continue
		}
		b := make([]byte, n.n)
		if _, err := r.ReadAt(b, int64(n.off)); err != nil {
			continue
		}
		if id := findBuildID(b, f.ByteOrder); id != "" {
			return id, nil
		}
	}
	return "", ErrNoBuildID
}

func findBuildID(b []byte, bo binary.ByteOrder) string {
	for len(b) >= 12 {
		namesz, descsz, typ := uint64(bo.Uint32(b)), uint64(bo.Uint32(b[4:])), bo.Uint32(b[8:])
		nameEnd := 12 + namesz
		descOff := (nameEnd + 3) &^ 3
		descEnd := descOff + descsz
		if descEnd > uint64(len(b)) || nameEnd > uint64(len(b)) {
			return ""
		}
		if typ == 3 && bytes.Equal(bytes.TrimRight(b[12:nameEnd], "\x00"), []byte("GNU")) && descsz > 0 {
			return hex.EncodeToString(b[descOff:descEnd])
		}
		next := (descEnd + 3) &^ 3
		if next > uint64(len(b)) {
			return ""
		}
		b = b[next:]
	}
	return ""
}

// ScanBuildIDNote looks for a GNU build-id note anywhere in b (4-byte aligned): Go's linker,
// for one, puts .note.gnu.build-id outside every PT_NOTE segment, but still in the first page
// of the file, which is mapped and which cores keep. It returns the note's offset and length
// in b and the build-id in hex.
func ScanBuildIDNote(b []byte, bo binary.ByteOrder) (off, n int, id string) {
	for i := 0; i+16 <= len(b); i += 4 {
		if bo.Uint32(b[i:]) != 4 || bo.Uint32(b[i+8:]) != 3 || string(b[i+12:i+16]) != "GNU\x00" {
			continue
		}
		descsz := int(bo.Uint32(b[i+4:]))
		if descsz < 8 || descsz > 64 || i+16+descsz > len(b) {
			continue
		}
		return i, 16 + descsz, hex.EncodeToString(b[i+16 : i+16+descsz])
	}
	return 0, 0, ""
}
