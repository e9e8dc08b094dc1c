package elfcore

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"sort"
)

// ErrNotInCore is returned for addresses whose bytes a core does not contain.
var ErrNotInCore = errors.New("address not in core")

// SegmentMemory serves reads of a process's memory from the PT_LOAD contents of a core: a full
// kernel core stands in for /proc/<pid>/mem in tests, and every core is read this way on the
// server. Lookups are a binary search over the sorted segments.
type SegmentMemory struct {
	r     io.ReaderAt
	loads []Prog // sorted by Vaddr, Filesz > 0
}

// NewSegmentMemory indexes the PT_LOADs of a core whose bytes r holds.
func NewSegmentMemory(r io.ReaderAt, progs []Prog) *SegmentMemory {
	m := &SegmentMemory{r: r}
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
		got, err := m.r.ReadAt(p[total:total+int(n)], int64(s.Offset+(a-s.Vaddr)))
		total += got
		if err != nil {
			return total, fmt.Errorf("read core at offset %#x: %w", s.Offset+(a-s.Vaddr), err)
		}
	}
	return total, nil
}
