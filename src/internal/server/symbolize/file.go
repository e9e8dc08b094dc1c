package symbolize

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"meta-memfault-go/internal/elfcore"
	"os"
	"slices"
	"sync"
)

// ErrNoSymbol is returned by Lookup when neither DWARF nor a symbol table
// covers the address.
var ErrNoSymbol = errors.New("no symbol covers the address")

// File is one ELF file, parsed once. Its methods are safe for concurrent use.
type File struct {
	buildID string
	syms    *symtab
	dw      *dwarfIndex // nil without .debug_info
	fh      io.Closer   // the file Open opened
}

// Frame is one entry of a symbolized address, see Lookup.
type Frame struct {
	Function   string // as gdb names the frame: from DWARF without parameters, unless gdb's C++ parser rejects the name (then with them)
	Mangled    string // the linkage name when it differs from Function
	File       string // source file as recorded in DWARF (comp_dir joined when relative)
	Line       int    // 0 when unknown
	Column     int
	Inlined    bool   // an inlined call inside the next frame
	FromSymtab bool   // the name comes from .symtab/.dynsym, not DWARF
	Offset     uint64 // address - symbol start (symtab frames)
}

// Open reads the ELF file at path. The file stays open until Close, for the
// DWARF that lookups read on demand.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	f, err := NewFile(fh)
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.fh = fh
	return f, nil
}

// NewFile reads an ELF file from r. The symbol tables and small DWARF
// sections are read here; big DWARF sections are read (and decompressed)
// from r by the lookups that need them, from the front and only as far as
// they need, so r must stay readable and unchanged until Close.
func NewFile(r io.ReaderAt) (*File, error) {
	size := sizeOf(r)
	if err := checkNameTable(r, size); err != nil {
		return nil, err
	}
	ef, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("read ELF: %w", err)
	}
	switch ef.Type {
	case elf.ET_EXEC, elf.ET_DYN:
	default:
		return nil, fmt.Errorf("ELF type %v not supported (want an executable or shared object)", ef.Type)
	}
	f := &File{}
	if f.syms, err = loadSymbols(r, ef, size); err != nil {
		return nil, err
	}
	if f.buildID, err = readBuildID(r, ef, size); err != nil {
		return nil, err
	}
	ds, err := loadDebugSections(r, ef, size)
	if err != nil {
		return nil, err
	}
	if ds != nil {
		atZero := false
		for _, s := range ef.Sections {
			if s.Flags&elf.SHF_ALLOC != 0 && s.Addr == 0 && s.Size > 0 {
				atZero = true
			}
		}
		if f.dw, err = newDwarfIndex(ds, ef.ByteOrder, atZero); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Close releases the file; lookups that need DWARF not read yet fail after it.
func (f *File) Close() error {
	if f.dw != nil {
		f.dw.sec.close()
	}
	if f.fh != nil {
		return f.fh.Close()
	}
	return nil
}

// BuildID returns the GNU build-id in hex, or "" when the file has none.
func (f *File) BuildID() string { return f.buildID }

// Lookup returns the frames at addr (a link-time address), innermost first:
// each inlined callee (Inlined=true) with the line inside it, then the
// function containing the inlined chain with the line of the call site
// (DW_AT_call_file/call_line); the last frame is never Inlined. Lines are
// the ones gdb's "info line *addr" reports. Without DWARF for addr, it
// returns one symbol-table frame. It returns ErrNoSymbol when nothing covers
// addr.
func (f *File) Lookup(addr uint64) ([]Frame, error) {
	if f.dw != nil {
		u, err := f.dw.unitForPC(addr)
		if err != nil {
			return nil, err
		}
		if u != nil {
			st, err := f.dw.stateOf(u)
			if err != nil {
				return nil, err
			}
			return f.unitFrames(u, st, addr)
		}
	}
	if fr, ok := f.symtabFrame(addr); ok {
		return []Frame{fr}, nil
	}
	return nil, ErrNoSymbol
}

// Prefetch prepares lookups of addrs: the DWARF units covering them are read
// and indexed now, in address order, which is (nearly always) their order
// in the file, so that reading them goes forward through each section once
// (a compressed section read backwards is inflated again from a checkpoint).
// Goroutines share the work: one reads .debug_info on to the units,
// prefetchBuilders build each unit's lines and functions (and read the
// functions around the addresses) as soon as its unit is known, one reads the
// symbol table. Errors are left to Lookup.
func (f *File) Prefetch(addrs []uint64) {
	if f.dw == nil || len(addrs) == 0 {
		return
	}
	sorted := slices.Clone(addrs)
	slices.Sort(sorted)
	// Each unit's lines and functions are built by other goroutines while this one reads
	// .debug_info on to the next unit (all go forward through their sections).
	type work struct {
		u   *unit
		pcs []uint64
	}
	units := make(chan work, len(sorted))
	var crashed, symsCrashed any
	// The symbol table (names of frames without DWARF functions, and of call targets) is
	// read meanwhile, on a third goroutine.
	symsDone := make(chan struct{})
	go func() {
		defer close(symsDone)
		defer func() { symsCrashed = recover() }()
		if f.syms != nil {
			f.syms.table()
		}
	}()
	// prefetchBuilders goroutines build the units' states (in each, a unit's line table and its
	// DIE walk go side by side): the units of one file are independent, and Rust's and Go's
	// big ones are most of the work.
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range prefetchBuilders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					mu.Lock()
					crashed = r
					mu.Unlock()
					for range units {
					}
				}
			}()
			for w := range units {
				if st, err := f.dw.stateOf(w.u); err == nil {
					for _, pc := range w.pcs {
						st.chain(pc)
					}
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	finished := false
	defer func() {
		if !finished { // a lookup below panicked: no goroutine of this call outlives it
			close(units)
			<-done
			<-symsDone
		}
	}()
	var cur work
	for i, a := range sorted {
		if i > 0 && a == sorted[i-1] {
			continue
		}
		u, err := f.dw.unitForPC(a)
		if err != nil || u == nil {
			continue
		}
		if u != cur.u {
			if cur.u != nil {
				units <- cur
			}
			cur = work{u: u}
		}
		cur.pcs = append(cur.pcs, a)
	}
	if cur.u != nil {
		units <- cur
	}
	close(units)
	<-done
	<-symsDone
	finished = true
	if crashed == nil {
		crashed = symsCrashed
	}
	if crashed != nil {
		panic(crashed) // the caller's recover turns it into an error
	}
}

// prefetchBuilders is how many goroutines of Prefetch build unit states.
const prefetchBuilders = 2

func (f *File) unitFrames(u *unit, st *unitState, addr uint64) ([]Frame, error) {
	var file string
	var line, col int
	if st.lines != nil {
		file, line, col, _ = st.lines.lookup(addr)
	}
	chain, err := st.chain(addr)
	if err != nil {
		return nil, err
	}
	if len(chain) == 0 {
		fr, ok := f.symtabFrame(addr)
		if !ok && line == 0 {
			return nil, ErrNoSymbol
		}
		fr.File, fr.Line, fr.Column = file, line, col
		return []Frame{fr}, nil
	}
	frames := make([]Frame, len(chain))
	for i, id := range chain {
		n := st.node(id)
		name := f.dw.nodeName(u, st, id)
		fr := Frame{Function: name.function, Mangled: name.mangled, Inlined: n.inlined}
		if i == 0 {
			fr.File, fr.Line, fr.Column = file, line, col
		} else {
			callee := st.node(chain[i-1])
			if st.lines != nil {
				fr.File = st.lines.fileName(callee.callFile)
			}
			fr.Line, fr.Column = clampInt(callee.callLine), clampInt(callee.callCol)
		}
		frames[i] = fr
	}
	if last := &frames[len(frames)-1]; last.Function == "" {
		if s, ok := f.symtabFrame(addr); ok {
			last.Function, last.Mangled = s.Function, s.Mangled
		}
	}
	return frames, nil
}

func clampInt(v int64) int {
	if v < 0 || v > 1<<31-1 {
		return 0
	}
	return int(v)
}

func (f *File) symtabFrame(addr uint64) (Frame, bool) {
	s := f.syms.lookup(addr)
	if s == nil {
		return Frame{}, false
	}
	fr := Frame{Function: Demangle(s.name), FromSymtab: true, Offset: addr - s.addr}
	if fr.Function != s.name {
		fr.Mangled = s.name
	}
	return fr, true
}

// checkNameTable vets the section-name string table before debug/elf reads
// it inside NewFile, where nothing bounds it: a compressed one would be
// inflated to whatever size its header claims.
func checkNameTable(r io.ReaderAt, size int64) error {
	ident := make([]byte, 64)
	n, err := r.ReadAt(ident, 0)
	if n < 52 {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read ELF header: %w", err)
	}
	var order binary.ByteOrder
	switch elf.Data(ident[elf.EI_DATA]) {
	case elf.ELFDATA2LSB:
		order = binary.LittleEndian
	case elf.ELFDATA2MSB:
		order = binary.BigEndian
	default:
		return nil // debug/elf rejects it
	}
	var shoff, entsize uint64
	var shnum, strndx uint64
	is64 := elf.Class(ident[elf.EI_CLASS]) == elf.ELFCLASS64
	if is64 {
		if n < 64 {
			return fmt.Errorf("read ELF header: %w", io.ErrUnexpectedEOF)
		}
		shoff = order.Uint64(ident[0x28:])
		entsize, shnum, strndx = uint64(order.Uint16(ident[0x3a:])), uint64(order.Uint16(ident[0x3c:])), uint64(order.Uint16(ident[0x3e:]))
	} else {
		shoff = uint64(order.Uint32(ident[0x20:]))
		entsize, shnum, strndx = uint64(order.Uint16(ident[0x2e:])), uint64(order.Uint16(ident[0x30:])), uint64(order.Uint16(ident[0x32:]))
	}
	if shoff == 0 || strndx == uint64(elf.SHN_UNDEF) || entsize < 40 {
		return nil
	}
	readShdr := func(i uint64) (flags, off, sz uint64, link uint32, err error) {
		b, err := readAt(r, int64(shoff+i*entsize), min(int64(entsize), 64))
		if err != nil || shoff+i*entsize < shoff {
			return 0, 0, 0, 0, fmt.Errorf("read section header %d: %w", i, io.ErrUnexpectedEOF)
		}
		if is64 {
			return order.Uint64(b[8:]), order.Uint64(b[24:]), order.Uint64(b[32:]), order.Uint32(b[40:]), nil
		}
		return uint64(order.Uint32(b[8:])), uint64(order.Uint32(b[16:])), uint64(order.Uint32(b[20:])), order.Uint32(b[24:]), nil
	}
	if strndx == uint64(elf.SHN_XINDEX) { // the real index is section 0's sh_link
		_, _, _, link, err := readShdr(0)
		if err != nil {
			return err
		}
		strndx = uint64(link)
	}
	if shnum != 0 && strndx >= shnum {
		return nil // debug/elf rejects it
	}
	flags, off, sz, _, err := readShdr(strndx)
	if err != nil {
		return err
	}
	if elf.SectionFlag(flags)&elf.SHF_COMPRESSED != 0 {
		return errors.New("compressed section name table")
	}
	if size >= 0 && (off > uint64(size) || sz > uint64(size)-off) {
		return fmt.Errorf("section name table: %#x bytes at %#x extend past end of file", sz, off)
	}
	return nil
}

// readBuildID returns the GNU build-id ("" when there is none). A note section that claims to
// extend past the end of the file makes the file unusable: it is lying about its layout.
func readBuildID(r io.ReaderAt, ef *elf.File, size int64) (string, error) {
	for _, s := range ef.Sections {
		if s.Type == elf.SHT_NOTE && size >= 0 && (s.Offset > uint64(size) || s.FileSize > uint64(size)-s.Offset) {
			return "", fmt.Errorf("note at %#x: %#x bytes extend past end of file", s.Offset, s.FileSize)
		}
	}
	id, err := elfcore.FileBuildID(r, size)
	if errors.Is(err, elfcore.ErrNoBuildID) {
		return "", nil
	}
	return id, err
}
