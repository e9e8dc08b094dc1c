// Package capture decides what a new core keeps: it turns the headers and notes of the kernel's
// core plus access to the crashed process's memory into an elfcore.Layout, by one of the
// strategies of memfaultd's configuration (threads, kernel_selection).
package capture

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"meta-memfault-go/internal/elfcore"
)

// Input is what a strategy works from.
type Input struct {
	Core *elfcore.Core
	Proc *elfcore.Process
	Mem  elfcore.Memory
}

// Result is a planned core and what the strategy noticed on the way (for the capture log).
type Result struct {
	Layout *elfcore.Layout
	Notes  []string
}

func newLayout(in Input) *elfcore.Layout {
	notes := make([]byte, len(in.Core.Notes), len(in.Core.Notes)+4096)
	copy(notes, in.Core.Notes)
	return &elfcore.Layout{Header: in.Core.Header, Notes: notes}
}

// KernelSelection keeps every range the kernel chose to dump (its PT_LOADs with contents, as
// /proc/<pid>/coredump_filter selected them), with bytes re-read from memory.
func KernelSelection(in Input) Result {
	l := newLayout(in)
	for _, p := range in.Core.Loads() {
		if p.Filesz == 0 {
			continue
		}
		l.Segments = append(l.Segments, elfcore.Segment{Vaddr: p.Vaddr, Filesz: p.Filesz, Memsz: p.Memsz, Flags: p.Flags})
	}
	return Result{Layout: l}
}

// Limits on what the threads strategy reads while planning.
const (
	maxHeaderPhnum = 512      // program headers of a mapped ELF file
	maxDynamicSize = 64 << 10 // PT_DYNAMIC of the main program
	maxNoteSegment = 4 << 10  // a PT_NOTE segment searched for the build-id
	maxVDSOSize    = 64 << 10
	maxLinkMaps    = 4096
	maxPathLen     = 4096
)

// Threads keeps what a debugger needs for every thread's backtrace: each thread's stack from its
// stack pointer up (at most maxThreadSize bytes, never past the end of the stack's mapping) and,
// when a signal frame on it shows the thread was interrupted on another stack, that stack too
// (sigframe.go), the
// ELF header, program headers and build-id note of every mapped ELF file, the main program's
// program headers and dynamic section, the dynamic linker's r_debug and link_map list with each
// library name, and the vDSO.
func Threads(in Input, maxThreadSize uint64) (Result, error) {
	a := in.Proc.Arch
	if a == nil {
		return Result{}, fmt.Errorf("threads capture: unsupported machine %v (%v)", in.Core.Header.Machine, in.Core.Header.Class)
	}
	t := &threads{in: in, loads: in.Core.Loads(), ws: in.Core.Header.WordSize(), bo: in.Core.Header.ByteOrder()}
	for _, th := range in.Proc.Threads {
		sp := th.SP(a)
		seg, ok := t.loadAt(sp)
		if !ok {
			t.logf("thread %d: stack pointer %#x is in no mapping; stack not captured", th.TID, sp)
			continue
		}
		start := sp - min(a.RedZone, sp-seg.Vaddr)
		end := min(seg.End(), sp+maxThreadSize)
		t.add(start, end)
		t.signalFrames(sp, end, maxThreadSize, a.RedZone)
	}
	t.elfHeaders()
	t.dynamicLinker()
	t.vdso()
	return Result{Layout: t.layout(newLayout(in)), Notes: t.notes}, nil
}

type span struct{ start, end uint64 }

type threads struct {
	in    Input
	loads []elfcore.Prog
	ws    int
	bo    binary.ByteOrder
	spans []span
	notes []string
}

func (t *threads) logf(format string, args ...any) {
	if len(t.notes) < 64 {
		t.notes = append(t.notes, fmt.Sprintf(format, args...))
	}
}

func (t *threads) add(start, end uint64) {
	if end > start {
		t.spans = append(t.spans, span{start, end})
	}
}

// loadAt finds the kernel's mapping that holds addr.
func (t *threads) loadAt(addr uint64) (elfcore.Prog, bool) {
	i := sort.Search(len(t.loads), func(i int) bool { return t.loads[i].End() > addr })
	if i < len(t.loads) && t.loads[i].Vaddr <= addr {
		return t.loads[i], true
	}
	return elfcore.Prog{}, false
}

func (t *threads) read(addr uint64, n int) ([]byte, error) {
	b := make([]byte, n)
	got, err := t.in.Mem.ReadMemory(b, addr)
	if got < n {
		if err == nil {
			err = errors.New("short read")
		}
		return nil, err
	}
	return b, nil
}

func (t *threads) word(b []byte) uint64 {
	if t.ws == 4 {
		return uint64(t.bo.Uint32(b))
	}
	return t.bo.Uint64(b)
}

func (t *threads) readWord(addr uint64) (uint64, error) {
	b, err := t.read(addr, t.ws)
	if err != nil {
		return 0, err
	}
	return t.word(b), nil
}

// phdrs reads n program headers at addr in the process's own class.
func (t *threads) phdrs(addr uint64, n int) ([]elfcore.Prog, uint64, error) {
	ent := 56
	if t.ws == 4 {
		ent = 32
	}
	b, err := t.read(addr, n*ent)
	if err != nil {
		return nil, 0, err
	}
	out := make([]elfcore.Prog, n)
	for i := range out {
		out[i] = elfcore.DecodeProg(b[i*ent:], t.in.Core.Header.Class, t.in.Core.Header.ByteOrder())
	}
	return out, uint64(n * ent), nil
}

// elfHeaders adds, for every file mapped from offset 0 that is an ELF file of the process's
// class, its ELF header and program headers and the PT_NOTE segment holding its GNU build-id.
func (t *threads) elfHeaders() {
	seen := map[uint64]bool{}
	for _, f := range t.in.Proc.Files {
		if f.Offset != 0 || seen[f.Start] {
			continue
		}
		seen[f.Start] = true
		if err := t.elfHeader(f); err != nil {
			t.logf("%s at %#x: %v", f.Path, f.Start, err)
		}
	}
}

func (t *threads) elfHeader(f elfcore.FileMapping) error {
	h := &t.in.Core.Header
	ehsize := 64
	if t.ws == 4 {
		ehsize = 52
	}
	eh, err := t.read(f.Start, ehsize)
	if err != nil {
		return fmt.Errorf("read ELF header: %w", err)
	}
	if string(eh[:4]) != elf.ELFMAG {
		return nil // not an ELF file: nothing to keep
	}
	if elf.Class(eh[elf.EI_CLASS]) != h.Class || elf.Data(eh[elf.EI_DATA]) != h.Data {
		return nil
	}
	var phoff uint64
	var phnum int
	if t.ws == 8 {
		phoff = t.bo.Uint64(eh[32:])
		phnum = int(t.bo.Uint16(eh[56:]))
	} else {
		phoff = uint64(t.bo.Uint32(eh[28:]))
		phnum = int(t.bo.Uint16(eh[44:]))
	}
	if phnum == 0 || phnum > maxHeaderPhnum || phoff > f.End-f.Start {
		return fmt.Errorf("implausible program headers (%d at %#x)", phnum, phoff)
	}
	progs, size, err := t.phdrs(f.Start+phoff, phnum)
	if err != nil {
		return fmt.Errorf("read program headers: %w", err)
	}
	t.add(f.Start, f.Start+phoff+size)
	// The mapping at offset 0 is the first PT_LOAD; the file's addresses are biased from it.
	var bias uint64
	found := false
	for _, p := range progs {
		if p.Type == elf.PT_LOAD {
			bias = f.Start - (p.Vaddr &^ 0xfff)
			found = true
			break
		}
	}
	if !found {
		return nil
	}
	for _, p := range progs {
		if p.Type != elf.PT_NOTE || p.Filesz == 0 || p.Filesz > maxNoteSegment {
			continue
		}
		addr := bias + p.Vaddr
		b, err := t.read(addr, int(p.Filesz))
		if err != nil {
			continue // notes outside the dumped range: the build-id is then not available
		}
		notes, _ := elfcore.ParseNotes(b, t.in.Core.Header.ByteOrder())
		for _, n := range notes {
			if n.Name == "GNU" && n.Type == elfcore.NT_GNU_BUILD {
				t.add(addr, addr+p.Filesz)
				return nil
			}
		}
	}
	// No note segment holds a build-id (Go's linker writes .note.gnu.build-id outside every
	// PT_NOTE): keep the note from the first page, where it is.
	if page, err := t.read(f.Start, int(min(0x1000, f.End-f.Start))); err == nil {
		if off, n, _ := elfcore.ScanBuildIDNote(page, t.bo); n > 0 {
			t.add(f.Start+uint64(off), f.Start+uint64(off+n))
		}
	}
	return nil
}

// dynamicLinker adds the main program's program headers and PT_DYNAMIC, and from DT_DEBUG the
// r_debug structure, every link_map node and each library's name: what a debugger walks to find
// the shared libraries and their load addresses.
func (t *threads) dynamicLinker() {
	phdr, ok1 := t.in.Proc.Aux(elfcore.AT_PHDR)
	phnum, ok2 := t.in.Proc.Aux(elfcore.AT_PHNUM)
	if !ok1 || !ok2 || phnum == 0 || phnum > maxHeaderPhnum {
		t.logf("auxv has no usable AT_PHDR/AT_PHNUM")
		return
	}
	progs, size, err := t.phdrs(phdr, int(phnum))
	if err != nil {
		t.logf("main program headers at %#x: %v", phdr, err)
		return
	}
	t.add(phdr, phdr+size)
	var bias uint64
	for _, p := range progs {
		if p.Type == elf.PT_PHDR {
			bias = phdr - p.Vaddr
		}
	}
	var dyn *elfcore.Prog
	for i := range progs {
		if progs[i].Type == elf.PT_DYNAMIC {
			dyn = &progs[i]
		}
	}
	if dyn == nil {
		return // static program: no dynamic linker state
	}
	dsize := min(dyn.Memsz, maxDynamicSize)
	daddr := bias + dyn.Vaddr
	b, err := t.read(daddr, int(dsize))
	if err != nil {
		t.logf("dynamic section at %#x: %v", daddr, err)
		return
	}
	t.add(daddr, daddr+dsize)
	var rdebug uint64
	for i := 0; i+2*t.ws <= len(b); i += 2 * t.ws {
		tag := t.word(b[i:])
		if tag == uint64(elf.DT_NULL) {
			break
		}
		if tag == uint64(elf.DT_DEBUG) {
			rdebug = t.word(b[i+t.ws:])
		}
	}
	if rdebug == 0 {
		t.logf("DT_DEBUG is not set: shared libraries will not be listed")
		return
	}
	// struct r_debug: int r_version (padded to a word), r_map, r_brk, r_state, r_ldbase.
	t.add(rdebug, rdebug+uint64(5*t.ws))
	node, err := t.readWord(rdebug + uint64(t.ws))
	if err != nil {
		t.logf("r_debug at %#x: %v", rdebug, err)
		return
	}
	visited := map[uint64]bool{}
	for node != 0 && !visited[node] && len(visited) < maxLinkMaps {
		visited[node] = true
		// struct link_map: l_addr, l_name, l_ld, l_next, l_prev.
		lm, err := t.read(node, 5*t.ws)
		if err != nil {
			t.logf("link_map at %#x: %v", node, err)
			return
		}
		t.add(node, node+uint64(5*t.ws))
		if name := t.word(lm[t.ws:]); name != 0 {
			if n, err := t.cstringLen(name); err == nil {
				t.add(name, name+n+1)
			}
		}
		node = t.word(lm[3*t.ws:])
	}
}

// cstringLen finds the NUL that ends the string at addr. It reads at most to the end of each
// page, so a name that ends just before an unmapped page is still found.
func (t *threads) cstringLen(addr uint64) (uint64, error) {
	var buf [128]byte
	for pos := addr; pos-addr < maxPathLen; {
		n := min(uint64(len(buf)), 0x1000-(pos&0xfff))
		got, err := t.in.Mem.ReadMemory(buf[:n], pos)
		for i := 0; i < got; i++ {
			if buf[i] == 0 {
				return pos - addr + uint64(i), nil
			}
		}
		if err != nil {
			return 0, err
		}
		pos += n
	}
	return 0, errors.New("string too long")
}

// vdso adds the vDSO image, which gdb reads for symbols and unwind tables of frames in it.
func (t *threads) vdso() {
	addr, ok := t.in.Proc.Aux(elfcore.AT_SYSINFO_EHDR)
	if !ok || addr == 0 {
		return
	}
	seg, ok := t.loadAt(addr)
	if !ok || seg.Memsz > maxVDSOSize {
		return
	}
	t.add(seg.Vaddr, seg.End())
}

func (t *threads) sameLoad(a, b uint64) bool {
	pa, oka := t.loadAt(a)
	pb, okb := t.loadAt(b)
	return oka && okb && pa.Vaddr == pb.Vaddr
}

// layout merges overlapping and adjacent spans into segments, in address order, each with the
// permissions of the mapping it starts in.
func (t *threads) layout(l *elfcore.Layout) *elfcore.Layout {
	sort.Slice(t.spans, func(i, j int) bool { return t.spans[i].start < t.spans[j].start })
	var merged []span
	for _, s := range t.spans {
		// Overlapping spans merge; touching ones only inside one mapping, so that each
		// segment keeps its mapping's permissions.
		if n := len(merged); n > 0 && (s.start < merged[n-1].end || s.start == merged[n-1].end && t.sameLoad(merged[n-1].start, s.start)) {
			merged[n-1].end = max(merged[n-1].end, s.end)
			continue
		}
		merged = append(merged, s)
	}
	for _, s := range merged {
		flags := elf.PF_R
		if p, ok := t.loadAt(s.start); ok {
			flags = p.Flags
		}
		l.Segments = append(l.Segments, elfcore.Segment{Vaddr: s.start, Filesz: s.end - s.start, Memsz: s.end - s.start, Flags: flags})
	}
	return l
}
