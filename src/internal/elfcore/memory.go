package elfcore

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
)

// ErrNotInCore is returned for addresses whose bytes a core does not contain.
var ErrNotInCore = errors.New("address not in core")

// SegmentMemory serves reads of a process's memory from the PT_LOAD contents of a core: a full
// kernel core stands in for /proc/<pid>/mem in tests, and every core is read this way on the
// server. Lookups are a binary search over the sorted segments.
//
// A core in a file is read through a small cache of aligned blocks: an unwinder reads a few
// words at a time, thousands of reads per core, mostly next to each other (one thread's stack),
// and each would otherwise be a system call. A core in memory (*bytes.Reader) is read directly.
type SegmentMemory struct {
	r     io.ReaderAt
	loads []Prog // sorted by Vaddr, Filesz > 0

	mu     sync.Mutex
	cached bool
	blocks [memBlocks]memBlock
	tick   uint64
}

// memBlock is memBlockSize bytes of the core file from off (fewer at the file's end).
type memBlock struct {
	off  int64 // -1: empty
	n    int
	used uint64 // tick of the last use, for eviction
	err  error  // what reading stopped at, when n < memBlockSize
	b    []byte
}

const (
	memBlockSize = 16 << 10
	memBlocks    = 8 // 128 KiB: the stacks being unwound, the module headers being read
)

// NewSegmentMemory indexes the PT_LOADs of a core whose bytes r holds.
func NewSegmentMemory(r io.ReaderAt, progs []Prog) *SegmentMemory {
	m := &SegmentMemory{r: r}
	if _, inMemory := r.(*bytes.Reader); !inMemory {
		m.cached = true
		for i := range m.blocks {
			m.blocks[i].off = -1
		}
	}
	for _, p := range progs {
		if p.Filesz > 0 && p.Type == elf.PT_LOAD {
			m.loads = append(m.loads, p)
		}
	}
	sort.Slice(m.loads, func(i, j int) bool { return m.loads[i].Vaddr < m.loads[j].Vaddr })
	return m
}

// ReadMemory fills p from the segments covering addr, addr+1, ...; it stops with ErrNotInCore
// at the first byte no segment holds.
func (m *SegmentMemory) ReadMemory(p []byte, addr uint64) (int, error) {
	total := 0
	for total < len(p) {
		a := addr + uint64(total)
		i := sort.Search(len(m.loads), func(i int) bool { return m.loads[i].Vaddr+m.loads[i].Filesz > a })
		if i == len(m.loads) || m.loads[i].Vaddr > a {
			return total, fmt.Errorf("%#x: %w", a, ErrNotInCore)
		}
		s := m.loads[i]
		n := s.Vaddr + s.Filesz - a
		if n > uint64(len(p)-total) {
			n = uint64(len(p) - total)
		}
		got, err := m.readAt(p[total:total+int(n)], int64(s.Offset+(a-s.Vaddr)))
		total += got
		if err != nil {
			return total, fmt.Errorf("read core at offset %#x: %w", s.Offset+(a-s.Vaddr), err)
		}
	}
	return total, nil
}

// readAt reads the core file at off, through the block cache when there is one. Reads as long
// as a block or longer go to the file.
func (m *SegmentMemory) readAt(p []byte, off int64) (int, error) {
	if !m.cached || len(p) >= memBlockSize || off < 0 {
		return m.r.ReadAt(p, off)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	total := 0
	for total < len(p) {
		o := off + int64(total)
		blk, err := m.block(o - o%memBlockSize)
		if err != nil {
			return total, err
		}
		in := int(o - blk.off)
		if in >= blk.n {
			if blk.err != nil {
				return total, blk.err
			}
			return total, io.EOF
		}
		total += copy(p[total:], blk.b[in:blk.n])
	}
	return total, nil
}

// block returns the cached block at off (a multiple of memBlockSize), reading it when it is not
// cached in place of the least recently used one. m.mu is held.
func (m *SegmentMemory) block(off int64) (*memBlock, error) {
	m.tick++
	victim := &m.blocks[0]
	for i := range m.blocks {
		b := &m.blocks[i]
		if b.off == off {
			b.used = m.tick
			return b, nil
		}
		if b.used < victim.used {
			victim = b
		}
	}
	if victim.b == nil {
		victim.b = make([]byte, memBlockSize)
	}
	n, err := m.r.ReadAt(victim.b, off)
	if n == memBlockSize {
		err = nil // a read that filled the block may still say io.EOF at the file's end
	} else if err == nil {
		err = io.ErrUnexpectedEOF
	}
	if n == 0 && err != nil && !errors.Is(err, io.EOF) {
		victim.off = -1
		return nil, err // an I/O error: not cached
	}
	victim.off, victim.n, victim.err, victim.used = off, n, err, m.tick
	return victim, nil
}
