package elfcore

import (
	"bufio"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
)

// Memory is a process's address space: /proc/<pid>/mem on the device, the segments of a full
// core in tests and on the server. A short read returns the bytes read and an error.
type Memory interface {
	ReadMemory(p []byte, addr uint64) (int, error)
}

// Segment is one PT_LOAD of the output. Its Filesz bytes are read from Memory at Vaddr.
type Segment struct {
	Vaddr  uint64
	Filesz uint64
	Memsz  uint64
	Flags  elf.ProgFlag
}

// Layout is an output core, planned before anything is written: the header fields that are
// copied from the input, the note data, and the segments whose bytes come from a Memory.
type Layout struct {
	Header   Header
	Notes    []byte
	Segments []Segment
}

// AddNote appends one note to the layout's note data.
func (l *Layout) AddNote(name string, typ uint32, desc []byte) {
	l.Notes = AppendNote(l.Notes, l.Header.ByteOrder(), name, typ, desc)
}

func (l *Layout) sizes() (ehsize, phentsize, shentsize uint64) {
	if l.Header.Class == elf.ELFCLASS32 {
		return 52, 32, 40
	}
	return 64, 56, 64
}

func (l *Layout) phnum() int { return 1 + len(l.Segments) }

func (l *Layout) xnum() bool { return l.phnum() >= pnXnum }

// notesOffset is where the note data starts: right after the program headers, as the kernel
// does (ReadCore relies on it for PN_XNUM).
func (l *Layout) notesOffset() uint64 {
	eh, ph, _ := l.sizes()
	return eh + uint64(l.phnum())*ph
}

// dataEnd is the end of the last segment's bytes.
func (l *Layout) dataEnd() uint64 {
	n := l.notesOffset() + uint64(len(l.Notes))
	for _, s := range l.Segments {
		n += s.Filesz
	}
	return n
}

// Size is the exact number of bytes Write produces. With extended numbering the one section
// header that holds the real count follows the data, where the kernel puts it too.
func (l *Layout) Size() uint64 {
	if l.xnum() {
		_, _, sh := l.sizes()
		return l.dataEnd() + sh
	}
	return l.dataEnd()
}

// WriteStats says what Write did.
type WriteStats struct {
	Bytes uint64
	// Unreadable counts segment bytes that Memory could not supply; they are written as zeros
	// so that every offset stays as planned. FirstUnreadable is the first such error.
	Unreadable      uint64
	FirstUnreadable error
}

// Write streams the layout to w strictly in order: ELF header, program headers, notes, then
// each segment's bytes from mem. It never seeks, so w may be a compressor.
func (l *Layout) Write(w io.Writer, mem Memory) (WriteStats, error) {
	h := &l.Header
	eh, ph, sh := l.sizes()
	bw := bufio.NewWriterSize(w, 64<<10)
	var st WriteStats

	phnum := l.phnum()
	ephnum := uint16(phnum)
	var eshoff uint64
	var eshnum, eshentsize uint16
	if l.xnum() {
		ephnum = pnXnum
		eshoff = l.dataEnd()
		eshnum, eshentsize = 1, uint16(sh)
	}

	e := newEncoder(h)
	e.bytes([]byte(elf.ELFMAG))
	e.bytes([]byte{byte(h.Class), byte(h.Data), byte(elf.EV_CURRENT), byte(h.OSABI), h.ABIVersion, 0, 0, 0, 0, 0, 0, 0})
	e.u16(uint16(elf.ET_CORE))
	e.u16(uint16(h.Machine))
	e.u32(uint32(elf.EV_CURRENT))
	e.word(0) // e_entry
	e.word(eh)
	e.word(eshoff)
	e.u32(h.Flags)
	e.u16(uint16(eh))
	e.u16(uint16(ph))
	e.u16(ephnum)
	e.u16(eshentsize)
	e.u16(eshnum)
	e.u16(0) // e_shstrndx
	if _, err := bw.Write(e.b); err != nil {
		return st, err
	}

	off := l.notesOffset()
	e.reset()
	e.prog(Prog{Type: elf.PT_NOTE, Offset: off, Filesz: uint64(len(l.Notes)), Align: 4})
	off += uint64(len(l.Notes))
	for _, s := range l.Segments {
		e.prog(Prog{Type: elf.PT_LOAD, Flags: s.Flags, Offset: off, Vaddr: s.Vaddr, Filesz: s.Filesz, Memsz: s.Memsz, Align: 1})
		off += s.Filesz
		if len(e.b) >= 32<<10 {
			if _, err := bw.Write(e.b); err != nil {
				return st, err
			}
			e.reset()
		}
	}
	e.bytes(l.Notes)
	if _, err := bw.Write(e.b); err != nil {
		return st, err
	}
	st.Bytes = l.notesOffset() + uint64(len(l.Notes))

	buf := make([]byte, 64<<10)
	for _, s := range l.Segments {
		addr, left := s.Vaddr, s.Filesz
		for left > 0 {
			chunk := buf
			if uint64(len(chunk)) > left {
				chunk = chunk[:left]
			}
			n, rerr := mem.ReadMemory(chunk, addr)
			if n < len(chunk) {
				// Zero the rest of the page that failed, then try again from the next page.
				if rerr == nil {
					rerr = io.ErrUnexpectedEOF
				}
				if st.FirstUnreadable == nil {
					st.FirstUnreadable = fmt.Errorf("read memory at %#x: %w", addr+uint64(n), rerr)
				}
				bad := addr + uint64(n)
				next := (bad | 0xfff) + 1
				z := int(next - addr)
				if z > len(chunk) {
					z = len(chunk)
				}
				clear(chunk[n:z])
				st.Unreadable += uint64(z - n)
				n = z
			}
			if _, err := bw.Write(chunk[:n]); err != nil {
				return st, err
			}
			st.Bytes += uint64(n)
			addr += uint64(n)
			left -= uint64(n)
		}
	}
	if l.xnum() {
		// One SHT_NULL section header: sh_size = e_shnum, sh_link = e_shstrndx, sh_info = phnum.
		e.reset()
		e.u32(0)
		e.u32(uint32(elf.SHT_NULL))
		e.word(0)
		e.word(0)
		e.word(0)
		e.word(1) // sh_size
		e.u32(0)
		e.u32(uint32(phnum))
		e.word(0)
		e.word(0)
		if _, err := bw.Write(e.b); err != nil {
			return st, err
		}
		st.Bytes += sh
	}
	return st, bw.Flush()
}

// encoder appends fixed-size fields in a file's byte order.
type encoder struct {
	b     []byte
	order binary.AppendByteOrder
	class elf.Class
}

func newEncoder(h *Header) *encoder {
	return &encoder{order: h.appendOrder(), class: h.Class, b: make([]byte, 0, 4096)}
}

func (e *encoder) reset()         { e.b = e.b[:0] }
func (e *encoder) bytes(p []byte) { e.b = append(e.b, p...) }
func (e *encoder) u16(v uint16)   { e.b = e.order.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32)   { e.b = e.order.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64)   { e.b = e.order.AppendUint64(e.b, v) }
func (e *encoder) word(v uint64) {
	if e.class == elf.ELFCLASS64 {
		e.u64(v)
	} else {
		e.u32(uint32(v))
	}
}

func (e *encoder) prog(p Prog) {
	if e.class == elf.ELFCLASS64 {
		e.u32(uint32(p.Type))
		e.u32(uint32(p.Flags))
		e.u64(p.Offset)
		e.u64(p.Vaddr)
		e.u64(0)
		e.u64(p.Filesz)
		e.u64(p.Memsz)
		e.u64(p.Align)
		return
	}
	e.u32(uint32(p.Type))
	e.u32(uint32(p.Offset))
	e.u32(uint32(p.Vaddr))
	e.u32(0)
	e.u32(uint32(p.Filesz))
	e.u32(uint32(p.Memsz))
	e.u32(uint32(p.Flags))
	e.u32(uint32(p.Align))
}
