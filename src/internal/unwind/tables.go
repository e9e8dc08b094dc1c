package unwind

import (
	"debug/elf"
	"fmt"

	"meta-memfault-go/internal/unwind/cfi"
)

// Tables is the unwind information of one ELF file: .eh_frame, .debug_frame and ARM exidx, each
// parsed once. Any of them may be absent. For 32-bit ARM files it also holds what the prologue
// analysis of code without tables needs: the function symbols and the executable sections'
// bytes. It is immutable and safe for concurrent use.
type Tables struct {
	ehFrame    *cfi.Table
	debugFrame *cfi.Table
	exidx      *cfi.EXIDX
	ehFrameHdr *cfi.EHFrameHdr
	// sigtramps are the link-time addresses of rt_sigreturn trampolines found by their code
	// (signal.go), in files whose CFI marks none.
	sigtramps []uint64
	funcs     *funcIndex
	code      []codeRange
}

// NewTables assembles Tables from sections parsed elsewhere (for example from a library's
// image in memory). Any argument may be nil.
func NewTables(ehFrame, debugFrame *cfi.Table, exidx *cfi.EXIDX) *Tables {
	return &Tables{ehFrame: ehFrame, debugFrame: debugFrame, exidx: exidx}
}

// EHFrame, DebugFrame, EXIDX and EHFrameHdr return the parsed sections (nil when absent).
func (t *Tables) EHFrame() *cfi.Table         { return t.ehFrame }
func (t *Tables) DebugFrame() *cfi.Table      { return t.debugFrame }
func (t *Tables) EXIDX() *cfi.EXIDX           { return t.exidx }
func (t *Tables) EHFrameHdr() *cfi.EHFrameHdr { return t.ehFrameHdr }

// FuncStart returns the start of the function holding pc (a link-time address, ARM Thumb bit
// clear), where a prologue analysis begins: the function symbol (.symtab or .dynsym) whose size
// covers pc, else the nearest symbol without a size unless an ARM exidx entry starts between it
// and pc (a function does not span the linker's input sections, and each of those starts an
// entry). False when no symbol fits, as for the static functions of a stripped library: the
// start of an EXIDX_CANTUNWIND range is not used, since one range can hold many functions.
func (t *Tables) FuncStart(pc uint64) (uint64, bool) {
	if t == nil {
		return 0, false
	}
	start, sized, ok := t.funcs.lookup(pc)
	if !ok {
		return 0, false
	}
	if s, ok := t.exidx.EntryStart(pc); ok && !sized && s > start {
		return 0, false
	}
	return start, true
}

// ReadCode copies the file's code at link-time address addr into p and returns how many bytes
// it holds there (contiguous from addr). Only 32-bit ARM files keep their code.
func (t *Tables) ReadCode(p []byte, addr uint64) int {
	if t == nil {
		return 0
	}
	return readCode(t.code, p, addr)
}

// Empty reports whether no section with unwind information was found.
func (t *Tables) Empty() bool {
	return t == nil || t.ehFrame.Len() == 0 && t.debugFrame.Len() == 0 && t.exidx.Len() == 0
}

// MaxSectionSize bounds each section LoadTables reads (libc's .eh_frame is about 150 KiB).
const MaxSectionSize = 256 << 20

// LoadTables reads the unwind sections of an ELF file (the stripped library or its debug file:
// sections that are absent or SHT_NOBITS are skipped, so a file with none gives empty Tables).
// A section that is present but malformed is an error naming it.
func LoadTables(f *elf.File) (*Tables, error) {
	addrSize := 8
	if f.Class == elf.ELFCLASS32 {
		addrSize = 4
	}
	// Indirect pointers (only personality routines use them) stay unresolved: the walker
	// never needs them.
	cfg := cfi.Config{Order: f.ByteOrder, AddrSize: addrSize}
	if s := f.Section(".text"); s != nil {
		cfg.Bases.Text = s.Addr
	}
	// i386 datarel pointers in .eh_frame are relative to the GOT (gcc's unwind-dw2-fde-dip.c
	// takes DT_PLTGOT, the start of .got.plt).
	if s := f.Section(".got.plt"); s != nil {
		cfg.Bases.Data = s.Addr
	} else if s := f.Section(".got"); s != nil {
		cfg.Bases.Data = s.Addr
	}
	t := &Tables{}
	if b, s, err := sectionData(f, ".eh_frame"); err != nil {
		return nil, err
	} else if s != nil {
		c := cfg
		c.Bases.Section = s.Addr
		if t.ehFrame, err = cfi.ParseEHFrame(b, c); err != nil {
			return nil, fmt.Errorf("parse .eh_frame: %w", err)
		}
	}
	if b, s, err := sectionData(f, ".eh_frame_hdr"); err != nil {
		return nil, err
	} else if s != nil {
		c := cfg
		c.Bases.Section = s.Addr
		if t.ehFrameHdr, err = cfi.ParseEHFrameHdr(b, c); err != nil {
			return nil, fmt.Errorf("parse .eh_frame_hdr: %w", err)
		}
	}
	if b, s, err := sectionData(f, ".debug_frame"); err != nil {
		return nil, err
	} else if s != nil {
		if t.debugFrame, err = cfi.ParseDebugFrame(b, cfg); err != nil {
			return nil, fmt.Errorf("parse .debug_frame: %w", err)
		}
	}
	if b, s, err := sectionData(f, ".ARM.exidx"); err != nil {
		return nil, err
	} else if s != nil {
		extab, es, err := sectionData(f, ".ARM.extab")
		if err != nil {
			return nil, err
		}
		var extabAddr uint64
		if es != nil {
			extabAddr = es.Addr
		}
		if t.exidx, err = cfi.ParseEXIDX(b, s.Addr, extab, extabAddr, f.ByteOrder); err != nil {
			return nil, fmt.Errorf("parse .ARM.exidx: %w", err)
		}
	}
	var err error
	if t.sigtramps, err = findTrampolines(f, t); err != nil {
		return nil, err
	}
	if f.Machine == elf.EM_ARM {
		// Only the ARM walker analyses prologues (arm.go).
		if t.funcs, err = loadFuncIndex(f); err != nil {
			return nil, err
		}
		if t.code, err = loadCode(f); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func sectionData(f *elf.File, name string) ([]byte, *elf.Section, error) {
	s := f.Section(name)
	if s == nil || s.Type == elf.SHT_NOBITS {
		return nil, nil, nil
	}
	b, err := sectionBytes(s)
	if err != nil {
		return nil, nil, err
	}
	return b, s, nil
}

func sectionBytes(s *elf.Section) ([]byte, error) {
	if s.Size > MaxSectionSize {
		return nil, fmt.Errorf("section %s: %d bytes exceed the limit of %d", s.Name, s.Size, MaxSectionSize)
	}
	b, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("read section %s: %w", s.Name, err)
	}
	return b, nil
}
