package unwind

import (
	"debug/elf"
	"fmt"

	"meta-memfault-go/internal/unwind/cfi"
)

// Tables is the unwind information of one ELF file: .eh_frame, .debug_frame and ARM exidx, each
// parsed once. Any of them may be absent. It is immutable and safe for concurrent use.
type Tables struct {
	ehFrame    *cfi.Table
	debugFrame *cfi.Table
	exidx      *cfi.EXIDX
	ehFrameHdr *cfi.EHFrameHdr
	// sigtramps are the link-time addresses of rt_sigreturn trampolines found by their code
	// (signal.go), in files whose CFI marks none.
	sigtramps []uint64
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
	return t, nil
}

func sectionData(f *elf.File, name string) ([]byte, *elf.Section, error) {
	s := f.Section(name)
	if s == nil || s.Type == elf.SHT_NOBITS {
		return nil, nil, nil
	}
	if s.Size > MaxSectionSize {
		return nil, nil, fmt.Errorf("section %s: %d bytes exceed the limit of %d", name, s.Size, MaxSectionSize)
	}
	b, err := s.Data()
	if err != nil {
		return nil, nil, fmt.Errorf("read section %s: %w", name, err)
	}
	return b, s, nil
}
