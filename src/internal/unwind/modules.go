package unwind

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"

	"meta-memfault-go/internal/elfcore"
)

// Module is one mapped ELF file of the process.
type Module struct {
	Start, End uint64 // runtime address range of all of the module's mappings
	Bias       uint64 // runtime address = link-time address + Bias
	Path       string // from NT_FILE; "[vdso]" for the vDSO
	BuildID    string // GNU build-id in lower-case hex, "" when the core does not hold it
	Tables     *Tables
}

// offset names an address inside the module for messages: "/lib/libc.so.6+0x1234".
func (m *Module) offset(pc uint64) string {
	return fmt.Sprintf("%s+%#x", m.Path, pc-m.Start)
}

// Modules finds the module holding a runtime address.
type Modules interface {
	ModuleAt(pc uint64) *Module // nil when pc is in no known module
}

// ModuleSet is a set of modules sorted by address; lookups are a binary search.
type ModuleSet struct {
	mods   []*Module
	maxEnd []uint64 // maxEnd[i] = max(mods[0..i].End): lookups stay exact when ranges nest
}

// NewModuleSet sorts mods by start address. Empty ranges are dropped; where ranges overlap (the
// vDSO can sit in a gap between a library's mappings) the module starting later wins.
func NewModuleSet(mods []*Module) *ModuleSet {
	s := &ModuleSet{}
	for _, m := range mods {
		if m != nil && m.End > m.Start {
			s.mods = append(s.mods, m)
		}
	}
	sort.SliceStable(s.mods, func(i, j int) bool { return s.mods[i].Start < s.mods[j].Start })
	s.maxEnd = make([]uint64, len(s.mods))
	var m uint64
	for i, mod := range s.mods {
		m = max(m, mod.End)
		s.maxEnd[i] = m
	}
	return s
}

// ModuleAt implements Modules.
func (s *ModuleSet) ModuleAt(pc uint64) *Module {
	if s == nil {
		return nil
	}
	i := sort.Search(len(s.mods), func(i int) bool { return s.mods[i].Start > pc }) - 1
	for n := 0; i >= 0 && s.maxEnd[i] > pc && n < 64; i, n = i-1, n+1 {
		if pc < s.mods[i].End {
			return s.mods[i]
		}
	}
	return nil
}

// Modules returns the modules in address order.
func (s *ModuleSet) Modules() []*Module {
	if s == nil {
		return nil
	}
	return s.mods
}

// Limits on what ModulesFromCore reads from the core's memory.
const (
	maxPhnum       = 512
	maxNoteSegment = 64 << 10
	maxVDSOImage   = 1 << 20
)

// ModulesFromCore builds the module list of a crashed process: one module per file mapped from
// offset 0 in NT_FILE (later mappings of the same file join it), with the load bias and GNU
// build-id read from the ELF header, program headers and PT_NOTE that the core's memory holds
// (the kernel dumps the first page of every ELF mapping with the default coredump_filter, and
// the threads capture strategy keeps exactly these). A file whose header is not in memory gets
// a bias assuming its link-time addresses equal its file offsets and no build-id.
//
// The vDSO (AT_SYSINFO_EHDR) is added as "[vdso]" with its Tables loaded from memory, since no
// file exists for it. The caller attaches the Tables of every other module by build-id.
func ModulesFromCore(p *elfcore.Process, mem elfcore.Memory, class elf.Class, order binary.ByteOrder) []*Module {
	r := &imageReader{mem: mem, class: class, order: order}
	var out []*Module
	type open struct {
		m      *Module
		extent uint64 // end of the PT_LOADs at the module's bias, 0 when unknown
	}
	current := map[string]*open{}
	files := append([]elfcore.FileMapping(nil), p.Files...)
	sort.SliceStable(files, func(i, j int) bool { return files[i].Start < files[j].Start })
	for _, f := range files {
		if f.End <= f.Start {
			continue
		}
		// A later mapping of the same file belongs to its module when the module's program
		// headers place it there (a segment can map file offset 0 again, as ARM binaries'
		// data segments do), or, without headers, when it maps a later part of the file.
		if o := current[f.Path]; o != nil && f.Start >= o.m.Start &&
			(o.extent != 0 && f.Start < o.extent || o.extent == 0 && f.Offset != 0) {
			o.m.End = max(o.m.End, f.End)
			continue
		}
		o := &open{m: &Module{Start: f.Start, End: f.End, Path: f.Path, Bias: f.Start - f.Offset}}
		if f.Offset == 0 {
			if h, err := r.header(f.Start); err == nil {
				if bias, ok := h.bias(f.Start); ok {
					o.m.Bias = bias
					o.m.BuildID = r.buildID(h, bias)
					o.extent = h.extent(bias)
				}
			}
		}
		current[f.Path] = o
		out = append(out, o.m)
	}
	if addr, ok := p.Aux(elfcore.AT_SYSINFO_EHDR); ok && addr != 0 {
		if m := r.vdso(addr); m != nil {
			out = append(out, m)
		}
	}
	return out
}

// imageReader reads ELF structures of mapped files from process memory.
type imageReader struct {
	mem   elfcore.Memory
	class elf.Class
	order binary.ByteOrder
}

type imageHeader struct {
	progs            []elfcore.Prog
	shoff            uint64
	shnum, shentsize uint64
}

func (r *imageReader) read(addr uint64, n uint64) ([]byte, error) {
	b := make([]byte, n)
	got, err := r.mem.ReadMemory(b, addr)
	if uint64(got) < n {
		if err == nil {
			err = errors.New("short read")
		}
		return nil, err
	}
	return b, nil
}

// header reads the ELF header and program headers mapped at addr.
func (r *imageReader) header(addr uint64) (*imageHeader, error) {
	ehsize, phent := uint64(52), uint64(32)
	if r.class == elf.ELFCLASS64 {
		ehsize, phent = 64, 56
	}
	eh, err := r.read(addr, ehsize)
	if err != nil {
		return nil, err
	}
	if string(eh[:4]) != elf.ELFMAG || elf.Class(eh[elf.EI_CLASS]) != r.class {
		return nil, errors.New("not an ELF file of the core's class")
	}
	if d := elf.Data(eh[elf.EI_DATA]); (d == elf.ELFDATA2MSB) != (r.order == binary.BigEndian) {
		return nil, errors.New("ELF file of the other byte order")
	}
	h := &imageHeader{}
	var phoff, phnum, phentsize uint64
	if r.class == elf.ELFCLASS64 {
		phoff = r.order.Uint64(eh[32:])
		h.shoff = r.order.Uint64(eh[40:])
		phentsize = uint64(r.order.Uint16(eh[54:]))
		phnum = uint64(r.order.Uint16(eh[56:]))
		h.shentsize = uint64(r.order.Uint16(eh[58:]))
		h.shnum = uint64(r.order.Uint16(eh[60:]))
	} else {
		phoff = uint64(r.order.Uint32(eh[28:]))
		h.shoff = uint64(r.order.Uint32(eh[32:]))
		phentsize = uint64(r.order.Uint16(eh[42:]))
		phnum = uint64(r.order.Uint16(eh[44:]))
		h.shentsize = uint64(r.order.Uint16(eh[46:]))
		h.shnum = uint64(r.order.Uint16(eh[48:]))
	}
	if phnum == 0 || phnum > maxPhnum || phentsize != phent || phoff > maxVDSOImage {
		return nil, fmt.Errorf("implausible program headers (%d of %d bytes at %#x)", phnum, phentsize, phoff)
	}
	b, err := r.read(addr+phoff, phnum*phent)
	if err != nil {
		return nil, err
	}
	for i := uint64(0); i < phnum; i++ {
		h.progs = append(h.progs, elfcore.DecodeProg(b[i*phent:], r.class, r.order))
	}
	return h, nil
}

// bias computes the load bias from the mapping of file offset 0 at start: it holds the PT_LOAD
// whose file range starts within the first page.
func (h *imageHeader) bias(start uint64) (uint64, bool) {
	for _, p := range h.progs {
		if p.Type == elf.PT_LOAD {
			if p.Offset >= 1<<16 || p.Vaddr < p.Offset {
				return 0, false
			}
			return start - (p.Vaddr - p.Offset), true
		}
	}
	return 0, false
}

// extent is the end of the highest PT_LOAD at bias, rounded up to a page.
func (h *imageHeader) extent(bias uint64) uint64 {
	var end uint64
	for _, p := range h.progs {
		if p.Type == elf.PT_LOAD {
			end = max(end, bias+p.Vaddr+p.Memsz)
		}
	}
	return (end + 0xfff) &^ 0xfff
}

// buildID finds the NT_GNU_BUILD_ID note in the file's PT_NOTE segments.
func (r *imageReader) buildID(h *imageHeader, bias uint64) string {
	for _, p := range h.progs {
		if p.Type != elf.PT_NOTE || p.Filesz == 0 || p.Filesz > maxNoteSegment {
			continue
		}
		b, err := r.read(bias+p.Vaddr, p.Filesz)
		if err != nil {
			continue
		}
		notes, err := elfcore.ParseNotes(b, r.order)
		if err != nil && len(notes) == 0 {
			continue // the notes before a malformed one still count
		}
		for _, n := range notes {
			if n.Name == "GNU" && n.Type == elfcore.NT_GNU_BUILD && len(n.Desc) > 0 {
				return hex.EncodeToString(n.Desc)
			}
		}
	}
	// No PT_NOTE holds it (Go binaries): look through the first page, as the capture does.
	// A small core holds only pieces of that page: read what is there, piece by piece.
	first := make([]byte, 4096)
	base := bias + h.firstLoadVaddr()
	for off := 0; off < len(first); {
		n, _ := r.mem.ReadMemory(first[off:], base+uint64(off))
		off += n
		off = (off + 4) &^ 3 // skip the unreadable word; notes are 4-byte aligned
	}
	if _, _, id := elfcore.ScanBuildIDNote(first, r.order); id != "" {
		return id
	}
	return ""
}

// vdso describes the vDSO mapped at addr and loads its tables from the image in memory.
func (r *imageReader) vdso(addr uint64) *Module {
	h, err := r.header(addr)
	if err != nil {
		return nil
	}
	bias, ok := h.bias(addr)
	if !ok {
		return nil
	}
	m := &Module{Start: addr, Path: "[vdso]", Bias: bias}
	for _, p := range h.progs {
		if p.Type == elf.PT_LOAD && bias+p.Vaddr+p.Memsz > m.End {
			m.End = bias + p.Vaddr + p.Memsz
		}
	}
	if m.End <= m.Start {
		return nil
	}
	m.BuildID = r.buildID(h, bias)
	// The image is the whole file, section headers included.
	size := h.shoff + h.shnum*h.shentsize
	if h.shnum == 0 || h.shoff > maxVDSOImage || size > maxVDSOImage {
		return m
	}
	img, err := r.read(addr, size)
	if err != nil {
		return m
	}
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		return m
	}
	if t, err := LoadTables(f); err == nil {
		m.Tables = t
	}
	return m
}

// firstLoadVaddr is the link-time address of file offset 0 (the first PT_LOAD's page).
func (h *imageHeader) firstLoadVaddr() uint64 {
	for _, p := range h.progs {
		if p.Type == elf.PT_LOAD {
			return (p.Vaddr - p.Offset) &^ 0xfff
		}
	}
	return 0
}
