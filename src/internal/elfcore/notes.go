package elfcore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Note types found in Linux cores (linux/elf.h, include/uapi/linux/elf.h).
const (
	NT_PRSTATUS  = 1
	NT_PRFPREG   = 2
	NT_PRPSINFO  = 3
	NT_AUXV      = 6
	NT_SIGINFO   = 0x53494749
	NT_FILE      = 0x46494c45
	NT_GNU_BUILD = 3 // NT_GNU_BUILD_ID, in notes named "GNU"
)

// Note is one ELF note. Name has no trailing NUL; Desc aliases the parsed buffer.
type Note struct {
	Name string
	Type uint32
	Desc []byte
}

// ParseNotes splits note data into notes. Both name and descriptor are padded to 4 bytes, as
// in every Linux core (also for ELFCLASS64).
func ParseNotes(b []byte, bo binary.ByteOrder) ([]Note, error) {
	var out []Note
	off := 0
	for off < len(b) {
		if len(b)-off < 12 {
			// The kernel never leaves a partial header; trailing zero padding is harmless.
			if allZero(b[off:]) {
				break
			}
			return out, fmt.Errorf("note at %#x: %d bytes left, header needs 12", off, len(b)-off)
		}
		namesz := uint64(bo.Uint32(b[off:]))
		descsz := uint64(bo.Uint32(b[off+4:]))
		typ := bo.Uint32(b[off+8:])
		p := uint64(off + 12)
		nameEnd := p + namesz
		descOff := align4(nameEnd)
		descEnd := descOff + descsz
		if nameEnd > uint64(len(b)) || descEnd > uint64(len(b)) {
			return out, fmt.Errorf("note at %#x: name size %d and descriptor size %d overrun the %d bytes of note data", off, namesz, descsz, len(b))
		}
		name := b[p:nameEnd]
		name = bytes.TrimRight(name, "\x00")
		out = append(out, Note{Name: string(name), Type: typ, Desc: b[descOff:descEnd:descEnd]})
		next := align4(descEnd)
		if next > uint64(len(b)) {
			next = uint64(len(b))
		}
		off = int(next)
	}
	return out, nil
}

func align4(v uint64) uint64 { return (v + 3) &^ 3 }

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// AppendNote encodes one note (name NUL-terminated, both parts padded to 4) onto dst.
func AppendNote(dst []byte, bo binary.ByteOrder, name string, typ uint32, desc []byte) []byte {
	var h [12]byte
	bo.PutUint32(h[0:], uint32(len(name)+1))
	bo.PutUint32(h[4:], uint32(len(desc)))
	bo.PutUint32(h[8:], typ)
	dst = append(dst, h[:]...)
	dst = append(dst, name...)
	dst = append(dst, 0)
	for len(dst)%4 != 0 {
		dst = append(dst, 0)
	}
	dst = append(dst, desc...)
	for len(dst)%4 != 0 {
		dst = append(dst, 0)
	}
	return dst
}

// Thread is one NT_PRSTATUS note decoded.
type Thread struct {
	TID    uint32
	Signal uint16 // pr_cursig
	Regs   []uint64
}

// SP and PC read the stack pointer and program counter from Regs.
func (t *Thread) SP(a *Arch) uint64 { return t.Regs[a.SP] }
func (t *Thread) PC(a *Arch) uint64 { return t.Regs[a.PC] }

// Siginfo is the part of NT_SIGINFO that matters for a crash.
type Siginfo struct {
	Signo, Errno, Code int32
	Addr               uint64 // si_addr for SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP
}

// FileMapping is one NT_FILE entry.
type FileMapping struct {
	Start, End uint64
	Offset     uint64 // in bytes
	Path       string
}

// Process is everything the notes say about the crashed process.
type Process struct {
	Arch    *Arch // nil when the machine is not supported: only kernel_selection works then
	Threads []Thread
	Siginfo *Siginfo
	Auxv    map[uint64]uint64
	Files   []FileMapping
	Fname   string // NT_PRPSINFO pr_fname
	Args    string // NT_PRPSINFO pr_psargs
	PID     uint32 // NT_PRPSINFO pr_pid
}

// Aux returns an auxiliary vector entry.
func (p *Process) Aux(tag uint64) (uint64, bool) { v, ok := p.Auxv[tag]; return v, ok }

// Auxiliary vector tags used here.
const (
	AT_PHDR          = 3
	AT_PHENT         = 4
	AT_PHNUM         = 5
	AT_ENTRY         = 9
	AT_SYSINFO_EHDR  = 33
	maxAuxvEntries   = 512
	maxFileMappings  = 1 << 18
	maxThreadsInCore = 1 << 16
)

// ErrNoThreads is returned when a core has no NT_PRSTATUS note.
var ErrNoThreads = errors.New("core has no NT_PRSTATUS note")

// DecodeProcess decodes the notes of a core. Notes it does not know are ignored; a known note
// that is malformed is an error naming it.
func DecodeProcess(h *Header, notes []Note) (*Process, error) {
	bo := h.ByteOrder()
	ws := h.WordSize()
	p := &Process{Arch: ArchFor(h.Machine, h.Class), Auxv: map[uint64]uint64{}}
	for _, n := range notes {
		if n.Name != "CORE" && n.Name != "LINUX" {
			continue
		}
		switch {
		case n.Name == "CORE" && n.Type == NT_PRSTATUS:
			if len(p.Threads) >= maxThreadsInCore {
				return nil, fmt.Errorf("more than %d NT_PRSTATUS notes", maxThreadsInCore)
			}
			t, err := decodePrstatus(n.Desc, h, p.Arch)
			if err != nil {
				return nil, err
			}
			p.Threads = append(p.Threads, t)
		case n.Name == "CORE" && n.Type == NT_SIGINFO:
			if len(n.Desc) < 8+ws+ws {
				return nil, fmt.Errorf("NT_SIGINFO: %d bytes", len(n.Desc))
			}
			si := &Siginfo{
				Signo: int32(bo.Uint32(n.Desc[0:])),
				Errno: int32(bo.Uint32(n.Desc[4:])),
				Code:  int32(bo.Uint32(n.Desc[8:])),
			}
			// The union starts after the three ints, aligned to a pointer.
			u := 12
			if ws == 8 {
				u = 16
			}
			si.Addr = readWord(n.Desc[u:], bo, ws)
			p.Siginfo = si
		case n.Name == "CORE" && n.Type == NT_AUXV:
			if len(n.Desc)/(2*ws) > maxAuxvEntries {
				return nil, fmt.Errorf("NT_AUXV: %d entries", len(n.Desc)/(2*ws))
			}
			for i := 0; i+2*ws <= len(n.Desc); i += 2 * ws {
				tag := readWord(n.Desc[i:], bo, ws)
				if tag == 0 {
					break
				}
				p.Auxv[tag] = readWord(n.Desc[i+ws:], bo, ws)
			}
		case n.Name == "CORE" && n.Type == NT_FILE:
			files, err := decodeFileNote(n.Desc, bo, ws)
			if err != nil {
				return nil, err
			}
			p.Files = files
		case n.Name == "CORE" && n.Type == NT_PRPSINFO:
			decodePrpsinfo(n.Desc, p, bo, ws)
		}
	}
	if len(p.Threads) == 0 {
		return nil, ErrNoThreads
	}
	return p, nil
}

func decodePrstatus(b []byte, h *Header, a *Arch) (Thread, error) {
	bo := h.ByteOrder()
	// struct elf_prstatus_common: siginfo (3 ints), short pr_cursig, then two longs, then pids.
	ws := h.WordSize()
	pidOff := 16 + 2*ws
	if len(b) < pidOff+4 {
		return Thread{}, fmt.Errorf("NT_PRSTATUS: %d bytes", len(b))
	}
	t := Thread{Signal: bo.Uint16(b[12:]), TID: bo.Uint32(b[pidOff:])}
	if a == nil {
		return t, nil
	}
	end := a.RegsOffset + len(a.Regs)*a.RegSize
	if len(b) < end {
		return Thread{}, fmt.Errorf("NT_PRSTATUS of thread %d: %d bytes, %s registers need %d", t.TID, len(b), a.Name, end)
	}
	t.Regs = make([]uint64, len(a.Regs))
	for i := range t.Regs {
		t.Regs[i] = readWord(b[a.RegsOffset+i*a.RegSize:], bo, a.RegSize)
	}
	return t, nil
}

func decodeFileNote(b []byte, bo binary.ByteOrder, ws int) ([]FileMapping, error) {
	if len(b) < 2*ws {
		return nil, fmt.Errorf("NT_FILE: %d bytes", len(b))
	}
	count := readWord(b, bo, ws)
	pageSize := readWord(b[ws:], bo, ws)
	if count > maxFileMappings || count*3*uint64(ws) > uint64(len(b)-2*ws) {
		return nil, fmt.Errorf("NT_FILE: %d entries do not fit in %d bytes", count, len(b))
	}
	names := b[2*ws+int(count)*3*ws:]
	out := make([]FileMapping, count)
	for i := range out {
		e := b[2*ws+i*3*ws:]
		out[i].Start = readWord(e, bo, ws)
		out[i].End = readWord(e[ws:], bo, ws)
		out[i].Offset = readWord(e[2*ws:], bo, ws) * pageSize
		j := bytes.IndexByte(names, 0)
		if j < 0 {
			return nil, fmt.Errorf("NT_FILE: name %d is not terminated", i)
		}
		out[i].Path = string(names[:j])
		names = names[j+1:]
	}
	return out, nil
}

func decodePrpsinfo(b []byte, p *Process, bo binary.ByteOrder, ws int) {
	// struct elf_prpsinfo: 4 chars, (pad), unsigned long pr_flag, uid/gid (4 bytes each on most
	// arches, 2 on arm32 and i386), pid, ppid, pgrp, sid, char pr_fname[16], char pr_psargs[80].
	// The tail has fixed sizes, so it is read from the end.
	const tail = 16 + 80
	if len(b) < tail+16 {
		return
	}
	fname := b[len(b)-tail : len(b)-80]
	args := b[len(b)-80:]
	p.Fname = cString(fname)
	p.Args = cString(args)
	pidOff := len(b) - tail - 16
	p.PID = bo.Uint32(b[pidOff:])
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func readWord(b []byte, bo binary.ByteOrder, ws int) uint64 {
	if ws == 4 {
		return uint64(bo.Uint32(b))
	}
	return bo.Uint64(b)
}
