package elfcore

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
)

// Limits bound what ReadCore accepts from an untrusted stream.
type Limits struct {
	MaxProgs     int    // program headers (after PN_XNUM expansion)
	MaxNoteBytes uint64 // all PT_NOTE data together
	MaxSkip      uint64 // bytes skipped between the headers and the notes
}

// DefaultLimits fit any real process: vm.max_map_count defaults to 65530 mappings, and the notes
// of a process with a thousand threads take a few MiB.
var DefaultLimits = Limits{MaxProgs: 1 << 18, MaxNoteBytes: 32 << 20, MaxSkip: 1 << 20}

// ErrNotELF is returned when the stream does not start with the ELF magic.
var ErrNotELF = errors.New("not an ELF file")

// Header is the part of the ELF header that a core writer needs to reproduce.
type Header struct {
	Class      elf.Class
	Data       elf.Data
	OSABI      elf.OSABI
	ABIVersion uint8
	Type       elf.Type
	Machine    elf.Machine
	Flags      uint32
	PhOff      uint64
	PhEntSize  uint16
	PhNum      int // the real count, PN_XNUM already expanded
	ShOff      uint64
}

// ByteOrder is the header's byte order.
func (h *Header) ByteOrder() binary.ByteOrder {
	if h.Data == elf.ELFDATA2MSB {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

func (h *Header) appendOrder() binary.AppendByteOrder {
	if h.Data == elf.ELFDATA2MSB {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

// WordSize is 4 for ELFCLASS32 and 8 for ELFCLASS64.
func (h *Header) WordSize() int {
	if h.Class == elf.ELFCLASS32 {
		return 4
	}
	return 8
}

// Prog is one program header.
type Prog struct {
	Type   elf.ProgType
	Flags  elf.ProgFlag
	Offset uint64
	Vaddr  uint64
	Filesz uint64
	Memsz  uint64
	Align  uint64
}

// End is Vaddr+Memsz.
func (p *Prog) End() uint64 { return p.Vaddr + p.Memsz }

// Core is what ReadCore learned from the stream: headers and note bytes, no memory contents.
type Core struct {
	Header Header
	Progs  []Prog
	// Notes holds the contents of every PT_NOTE segment, in file order, each padded to 4 bytes.
	Notes []byte
	// Consumed is how many bytes of the stream ReadCore read.
	Consumed uint64
}

// Loads returns the PT_LOAD headers, sorted by address.
func (c *Core) Loads() []Prog {
	var out []Prog
	for _, p := range c.Progs {
		if p.Type == elf.PT_LOAD {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Vaddr < out[j].Vaddr })
	return out
}

// countingReader tracks the stream position so ReadCore can skip forward without seeking.
type countingReader struct {
	r   io.Reader
	pos uint64
}

func (c *countingReader) full(p []byte, what string) error {
	n, err := io.ReadFull(c.r, p)
	c.pos += uint64(n)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("read %s at offset %#x: truncated after %d of %d bytes", what, c.pos-uint64(n), n, len(p))
		}
		return fmt.Errorf("read %s at offset %#x: %w", what, c.pos-uint64(n), err)
	}
	return nil
}

func (c *countingReader) skipTo(off uint64, what string) error {
	if off < c.pos {
		return fmt.Errorf("%s at offset %#x lies before the stream position %#x (the core is not in kernel order)", what, off, c.pos)
	}
	n, err := io.CopyN(io.Discard, c.r, int64(off-c.pos))
	c.pos += uint64(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("skip to %s at offset %#x: truncated at %#x", what, off, c.pos)
		}
		return fmt.Errorf("skip to %s at offset %#x: %w", what, off, err)
	}
	return nil
}

// ReadCore reads the ELF header, the program headers and the PT_NOTE contents of a core from a
// forward-only stream and stops right after the last note byte. Extended numbering (PN_XNUM) is
// resolved without reading the section header, which the kernel writes at the end of the core:
// the kernel places the notes right after the program header table, so the note offset gives
// the table's length.
func ReadCore(r io.Reader, lim Limits) (*Core, error) {
	cr := &countingReader{r: r}
	var ident [elf.EI_NIDENT]byte
	if err := cr.full(ident[:], "ELF identification"); err != nil {
		return nil, err
	}
	if string(ident[:4]) != elf.ELFMAG {
		return nil, fmt.Errorf("%w: magic %q", ErrNotELF, ident[:4])
	}
	h := Header{
		Class:      elf.Class(ident[elf.EI_CLASS]),
		Data:       elf.Data(ident[elf.EI_DATA]),
		OSABI:      elf.OSABI(ident[elf.EI_OSABI]),
		ABIVersion: ident[elf.EI_ABIVERSION],
	}
	if h.Class != elf.ELFCLASS32 && h.Class != elf.ELFCLASS64 {
		return nil, fmt.Errorf("unsupported ELF class %d", h.Class)
	}
	if h.Data != elf.ELFDATA2LSB && h.Data != elf.ELFDATA2MSB {
		return nil, fmt.Errorf("unsupported ELF data encoding %d", h.Data)
	}
	if ident[elf.EI_VERSION] != byte(elf.EV_CURRENT) {
		return nil, fmt.Errorf("unsupported ELF version %d", ident[elf.EI_VERSION])
	}
	bo := h.ByteOrder()
	ehsize := 52
	phentWant := 32
	if h.Class == elf.ELFCLASS64 {
		ehsize, phentWant = 64, 56
	}
	rest := make([]byte, ehsize-elf.EI_NIDENT)
	if err := cr.full(rest, "ELF header"); err != nil {
		return nil, err
	}
	d := decoder{b: rest, bo: bo}
	h.Type = elf.Type(d.u16())
	h.Machine = elf.Machine(d.u16())
	d.u32()         // e_version
	d.word(h.Class) // e_entry
	h.PhOff = d.word(h.Class)
	h.ShOff = d.word(h.Class)
	h.Flags = d.u32()
	d.u16() // e_ehsize
	h.PhEntSize = d.u16()
	phnum := int(d.u16())
	if h.Type != elf.ET_CORE {
		return nil, fmt.Errorf("ELF type is %v, not ET_CORE", h.Type)
	}
	if int(h.PhEntSize) != phentWant {
		return nil, fmt.Errorf("program header size %d, want %d for %v", h.PhEntSize, phentWant, h.Class)
	}
	if phnum == 0 {
		return nil, errors.New("core has no program headers")
	}
	if h.PhOff < uint64(ehsize) || h.PhOff-uint64(ehsize) > lim.MaxSkip {
		return nil, fmt.Errorf("program header offset %#x is out of range", h.PhOff)
	}
	if err := cr.skipTo(h.PhOff, "program headers"); err != nil {
		return nil, err
	}
	buf := make([]byte, h.PhEntSize)
	readProg := func() (Prog, error) {
		if err := cr.full(buf, "program header"); err != nil {
			return Prog{}, err
		}
		return DecodeProg(buf, h.Class, bo), nil
	}
	var progs []Prog
	if phnum == pnXnum {
		// Extended numbering: the first header is the kernel's PT_NOTE, which starts right
		// after the table.
		first, err := readProg()
		if err != nil {
			return nil, err
		}
		if first.Type != elf.PT_NOTE || first.Offset < h.PhOff {
			return nil, errors.New("PN_XNUM core whose first program header is not the note segment")
		}
		n := (first.Offset - h.PhOff) / uint64(h.PhEntSize)
		if n < pnXnum || n > uint64(lim.MaxProgs) {
			return nil, fmt.Errorf("PN_XNUM core with %d program headers (limit %d)", n, lim.MaxProgs)
		}
		phnum = int(n)
		progs = make([]Prog, 0, phnum)
		progs = append(progs, first)
	} else {
		if phnum > lim.MaxProgs {
			return nil, fmt.Errorf("%d program headers (limit %d)", phnum, lim.MaxProgs)
		}
		progs = make([]Prog, 0, phnum)
	}
	for len(progs) < phnum {
		p, err := readProg()
		if err != nil {
			return nil, err
		}
		if p.Type == elf.PT_LOAD && (p.Vaddr+p.Memsz < p.Vaddr || p.Filesz > p.Memsz) {
			return nil, fmt.Errorf("PT_LOAD %d at %#x: bad sizes (filesz %#x, memsz %#x)", len(progs), p.Vaddr, p.Filesz, p.Memsz)
		}
		progs = append(progs, p)
	}
	h.PhNum = phnum

	// Note segments in file order; each must lie ahead of the stream.
	var notes []Prog
	var total uint64
	for _, p := range progs {
		if p.Type != elf.PT_NOTE || p.Filesz == 0 {
			continue
		}
		total += p.Filesz
		if p.Filesz > lim.MaxNoteBytes || total > lim.MaxNoteBytes {
			return nil, fmt.Errorf("note data of %d bytes exceeds the limit of %d", total, lim.MaxNoteBytes)
		}
		notes = append(notes, p)
	}
	if len(notes) == 0 {
		return nil, errors.New("core has no PT_NOTE segment")
	}
	sort.Slice(notes, func(i, j int) bool { return notes[i].Offset < notes[j].Offset })
	// The sizes come from the stream, so the buffer grows with what actually arrives rather
	// than with what the headers claim.
	var data []byte
	for i, n := range notes {
		if n.Offset > cr.pos && n.Offset-cr.pos > lim.MaxSkip {
			return nil, fmt.Errorf("note segment %d at offset %#x is too far from the headers", i, n.Offset)
		}
		if err := cr.skipTo(n.Offset, "note segment"); err != nil {
			return nil, err
		}
		for left := n.Filesz; left > 0; {
			chunk := min(left, 64<<10)
			start := len(data)
			data = append(data, make([]byte, chunk)...)
			if err := cr.full(data[start:], "note segment"); err != nil {
				return nil, err
			}
			left -= chunk
		}
		for len(data)%4 != 0 {
			data = append(data, 0)
		}
	}
	return &Core{Header: h, Progs: progs, Notes: data, Consumed: cr.pos}, nil
}

// DecodeProg decodes one program header of the given class from b.
func DecodeProg(b []byte, class elf.Class, bo binary.ByteOrder) Prog {
	d := decoder{b: b, bo: bo}
	var p Prog
	p.Type = elf.ProgType(d.u32())
	if class == elf.ELFCLASS64 {
		p.Flags = elf.ProgFlag(d.u32())
		p.Offset = d.u64()
		p.Vaddr = d.u64()
		d.u64() // p_paddr
		p.Filesz = d.u64()
		p.Memsz = d.u64()
		p.Align = d.u64()
		return p
	}
	p.Offset = uint64(d.u32())
	p.Vaddr = uint64(d.u32())
	d.u32() // p_paddr
	p.Filesz = uint64(d.u32())
	p.Memsz = uint64(d.u32())
	p.Flags = elf.ProgFlag(d.u32())
	p.Align = uint64(d.u32())
	return p
}

// decoder reads fixed-size fields from a slice whose length the caller has checked.
type decoder struct {
	b   []byte
	off int
	bo  binary.ByteOrder
}

func (d *decoder) u16() uint16 { v := d.bo.Uint16(d.b[d.off:]); d.off += 2; return v }
func (d *decoder) u32() uint32 { v := d.bo.Uint32(d.b[d.off:]); d.off += 4; return v }
func (d *decoder) u64() uint64 { v := d.bo.Uint64(d.b[d.off:]); d.off += 8; return v }
func (d *decoder) word(c elf.Class) uint64 {
	if c == elf.ELFCLASS64 {
		return d.u64()
	}
	return uint64(d.u32())
}

// pnXnum in e_phnum means the real count is in section header 0 (extended numbering).
const pnXnum = 0xffff
