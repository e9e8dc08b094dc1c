package capture

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	testdata "meta-memfault-go/internal/testutil/fixture"
)

// TestThreadsKeepsInterruptedStack: in the corpus's Go crash the crashing thread runs the
// runtime's signal handler on its signal stack; the goroutine it interrupted (the nil
// dereference, main.main) has its stack elsewhere. The threads strategy finds the kernel's
// signal frame and keeps that stack too; a scan of the other threads' stacks finds none.
func TestThreadsKeepsInterruptedStack(t *testing.T) {
	in := input(t, testdata.CorpusCore(t, "go-crash", "x86_64"))
	res, err := Threads(in, 32<<10)
	require.NoError(t, err)
	require.Len(t, res.Notes, 1, "%q", res.Notes)
	require.Contains(t, res.Notes[0], "interrupted stack at 0x231513112c90 kept")

	covered := func(addr uint64) bool {
		for _, s := range res.Layout.Segments {
			if s.Vaddr <= addr && addr < s.Vaddr+s.Filesz {
				return true
			}
		}
		return false
	}
	require.True(t, covered(0x231513112c90))
	require.True(t, covered(0x231513112f48), "main.main's frame")

	// Without the signal frame (its cs word damaged) the interrupted stack is not kept.
	var th = in.Proc.Threads[0]
	sp := th.SP(in.Proc.Arch)
	mem := &patched{Input: in}
	mem.find(t, sp, 0x231513112c90)
	in.Mem = mem
	res, err = Threads(in, 32<<10)
	require.NoError(t, err)
	require.Empty(t, res.Notes)
}

// patched is the core's memory with the user code segment selector of one ucontext cleared.
type patched struct {
	Input
	csAddr uint64
}

func (p *patched) find(t *testing.T, sp, rsp uint64) {
	b := make([]byte, 32<<10)
	n, _ := p.Input.Mem.ReadMemory(b, sp)
	for off := 0; off+8 <= n; off += 8 {
		if binary.LittleEndian.Uint64(b[off:]) == rsp && off+24 <= n && b[off+24] == 0x33 {
			p.csAddr = sp + uint64(off) + 24 // rsp, rip, eflags, then cs
			return
		}
	}
	t.Fatal("ucontext not found")
}

func (p *patched) ReadMemory(b []byte, addr uint64) (int, error) {
	n, err := p.Input.Mem.ReadMemory(b, addr)
	if p.csAddr >= addr && p.csAddr < addr+uint64(n) {
		b[p.csAddr-addr] = 0
	}
	return n, err
}
