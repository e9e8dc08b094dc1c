package debugpkg

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"
)

// elfMagic opens every ELF file.
var elfMagic = []byte{0x7f, 'E', 'L', 'F'}

// facts is what debugpkg needs to know of one ELF file.
type facts struct {
	buildID   string // lower-case hex, "" when none
	typ       string // exec, pie, shared, relocatable, core, other
	machine   string // x86_64, aarch64, arm, ...
	hasDebug  bool   // .debug_info (or .zdebug_info) with contents
	hasSymtab bool   // SHT_SYMTAB with at least one symbol past the null one
	hasUnwind bool   // .eh_frame or .debug_frame with contents
	ehFrame   bool   // .eh_frame with contents
	debugLink string // .gnu_debuglink file name
	linkCRC   uint32 // its CRC-32 of the debug file
	hasCRC    bool
	// separate is true for a separate debug file (objcopy --only-keep-debug, eu-strip -f):
	// DWARF or a symbol table, and no allocated section with contents other than notes.
	separate bool
}

// Limits on what is read of an ELF file's sections (the files are hostile input).
const (
	maxNoteSection = 1 << 20
	maxBuildID     = 64
	maxDebugLink   = 4096
)

// inspect reads the facts of the ELF file at p.
func inspect(p string) (facts, error) {
	f, err := os.Open(p)
	if err != nil {
		return facts{}, err
	}
	defer f.Close()
	return inspectReader(f)
}

// inspectReader reads the facts of an ELF file. A malformed file is an error, never a panic.
func inspectReader(r io.ReaderAt) (fs facts, err error) {
	defer func() {
		if p := recover(); p != nil {
			fs, err = facts{}, fmt.Errorf("malformed ELF file: %v", p)
		}
	}()
	ef, err := elf.NewFile(r)
	if err != nil {
		return facts{}, err
	}
	return readFacts(ef)
}

func readFacts(ef *elf.File) (facts, error) {
	fs := facts{
		typ:     elfType(ef),
		machine: strings.ToLower(strings.TrimPrefix(ef.Machine.String(), "EM_")),
	}
	var err error
	if fs.buildID, err = buildID(ef); err != nil {
		return facts{}, err
	}
	contents := false // an allocated section with contents other than notes
	for _, s := range ef.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 && s.Type != elf.SHT_NOBITS && s.Type != elf.SHT_NOTE && s.Size > 0 {
			contents = true
		}
		if s.Type == elf.SHT_NOBITS || s.Size == 0 {
			continue
		}
		switch {
		case s.Name == ".debug_info" || s.Name == ".zdebug_info":
			fs.hasDebug = true
		case s.Name == ".eh_frame":
			fs.hasUnwind, fs.ehFrame = true, true
		case s.Name == ".debug_frame":
			fs.hasUnwind = true
		case s.Type == elf.SHT_SYMTAB:
			ent := s.Entsize
			if ent == 0 {
				ent = 1
			}
			fs.hasSymtab = s.Size > ent
		}
	}
	fs.separate = !contents && (fs.hasDebug || fs.hasSymtab)
	if s := ef.Section(".gnu_debuglink"); s != nil && s.Type != elf.SHT_NOBITS && s.Size > 0 {
		if s.Size > maxDebugLink {
			return facts{}, fmt.Errorf(".gnu_debuglink: %d bytes", s.Size)
		}
		data, err := s.Data()
		if err != nil {
			return facts{}, fmt.Errorf(".gnu_debuglink: %w", err)
		}
		fs.debugLink, fs.linkCRC, fs.hasCRC = parseDebugLink(data, ef.ByteOrder)
	}
	return fs, nil
}

// parseDebugLink splits a .gnu_debuglink section: a NUL-terminated file name, padding to a
// multiple of 4, and the CRC-32 of the debug file in the file's byte order.
func parseDebugLink(data []byte, order binary.ByteOrder) (name string, crc uint32, ok bool) {
	n := bytes.IndexByte(data, 0)
	if n <= 0 {
		return "", 0, false
	}
	name = string(data[:n])
	off := (n + 1 + 3) &^ 3
	if off+4 > len(data) {
		return name, 0, false
	}
	return name, order.Uint32(data[off:]), true
}

func elfType(ef *elf.File) string {
	switch ef.Type {
	case elf.ET_EXEC:
		return "exec"
	case elf.ET_REL:
		return "relocatable"
	case elf.ET_CORE:
		return "core"
	case elf.ET_DYN:
		if flags, err := ef.DynValue(elf.DT_FLAGS_1); err == nil && len(flags) > 0 {
			if flags[0]&uint64(elf.DF_1_PIE) != 0 {
				return "pie"
			}
			return "shared"
		}
		// No DT_FLAGS_1 (older linkers, or a separate debug file whose .dynamic is NOBITS):
		// an interpreter makes an executable.
		for _, p := range ef.Progs {
			if p.Type == elf.PT_INTERP {
				return "pie"
			}
		}
		return "shared"
	}
	return "other"
}

// buildID finds the NT_GNU_BUILD_ID note: in the note sections, or in the PT_NOTE segments of
// a file without section headers.
func buildID(ef *elf.File) (string, error) {
	var readers []io.Reader
	var aligns []uint64
	for _, s := range ef.Sections {
		if s.Type == elf.SHT_NOTE && s.Size > 0 && s.Size <= maxNoteSection {
			readers = append(readers, s.Open())
			aligns = append(aligns, s.Addralign)
		}
	}
	if len(ef.Sections) == 0 {
		for _, p := range ef.Progs {
			if p.Type == elf.PT_NOTE && p.Filesz > 0 && p.Filesz <= maxNoteSection {
				readers = append(readers, p.Open())
				aligns = append(aligns, p.Align)
			}
		}
	}
	for i, r := range readers {
		data, err := io.ReadAll(r)
		if err != nil {
			return "", fmt.Errorf("read notes: %w", err)
		}
		if id, ok := gnuBuildID(data, aligns[i], ef.ByteOrder); ok {
			return id, nil
		}
	}
	return "", nil
}

// gnuBuildID walks the notes of one section or segment for name "GNU", type 3. Notes are
// 4-aligned unless the section says 8.
func gnuBuildID(data []byte, align uint64, order binary.ByteOrder) (string, bool) {
	a := 4
	if align == 8 {
		a = 8
	}
	pad := func(n int) int { return (n + a - 1) &^ (a - 1) }
	for off := 0; off+12 <= len(data); {
		namesz, descsz, typ := order.Uint32(data[off:]), order.Uint32(data[off+4:]), order.Uint32(data[off+8:])
		if namesz > uint32(len(data)) || descsz > uint32(len(data)) {
			return "", false
		}
		name := off + 12
		desc := name + pad(int(namesz))
		end := desc + pad(int(descsz))
		if desc+int(descsz) > len(data) || desc < name {
			return "", false
		}
		if typ == ntGNUBuildID && namesz == 4 && string(data[name:name+4]) == "GNU\x00" &&
			descsz > 0 && descsz <= maxBuildID {
			return fmt.Sprintf("%x", data[desc:desc+int(descsz)]), true
		}
		if end <= off {
			return "", false
		}
		off = end
	}
	return "", false
}

// fileCRC is the CRC-32 (IEEE, as .gnu_debuglink records it) of a file.
func fileCRC(p string) (uint32, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := crc32.NewIEEE()
	if _, err := io.Copy(h, f); err != nil {
		return 0, err
	}
	return h.Sum32(), nil
}

// ntGNUBuildID is the note type of a GNU build-id (NT_GNU_BUILD_ID in elf.h).
const ntGNUBuildID = 3
