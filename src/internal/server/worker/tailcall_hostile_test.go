package worker

import (
	"context"
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/server/symbolize"
	"meta-memfault-go/internal/server/symstore"
	"meta-memfault-go/internal/unwind"
)

// tailGraphSource is a program whose tail-call graph makes gdb's search exponential:
//
//   - a ladder: top ~> a1|b1, each of a_i and b_i ~> a_{i+1}|b_{i+1}, the last rung calls
//     nothing; top also ~> leaf. 2^levels paths lead nowhere, one leads to leaf;
//   - a clique: ktop ~> k1; every k_i ~> every other k_j; k0 also ~> leaf. Every simple path
//     through the clique that ends in k0 is a chain to leaf: (n-1)! of them, all ending alike,
//     so gdb never finds them ambiguous and walks them all.
//
// main crashes in leaf through entry -> top ~> leaf.
func tailGraphSource(levels, clique int) string {
	var b strings.Builder
	b.WriteString("#define FN __attribute__((noipa))\nvolatile int sink;\nstatic volatile int *volatile nowhere;\n")
	b.WriteString("FN int leaf(int n) { *nowhere = n; return n + 1; }\n")
	rung := func(i int) string { return fmt.Sprintf("a%d", i) }
	other := func(i int) string { return fmt.Sprintf("b%d", i) }
	for _, name := range []string{rung(levels), other(levels)} {
		fmt.Fprintf(&b, "FN int %s(int n) { sink = n; return n; }\n", name)
	}
	for i := levels - 1; i >= 1; i-- {
		for _, name := range []string{rung(i), other(i)} {
			fmt.Fprintf(&b, "FN int %s(int n) { return (n & 1) ? %s(n >> 1) : %s(n >> 1); }\n", name, rung(i+1), other(i+1))
		}
	}
	fmt.Fprintf(&b, "FN int top(int n) { if (n < 0) return leaf(n); return (n & 1) ? %s(n >> 1) : %s(n >> 1); }\n", rung(1), other(1))
	for i := 0; i < clique; i++ {
		fmt.Fprintf(&b, "FN int k%d(int n);\n", i)
	}
	for i := 0; i < clique; i++ {
		fmt.Fprintf(&b, "FN int k%d(int n) {\n", i)
		if i == 0 {
			b.WriteString("\tif (n <= 0) return leaf(n);\n")
		}
		for j := 0; j < clique; j++ {
			if j != i {
				fmt.Fprintf(&b, "\tif (n %% %d == %d) return k%d(n - 1);\n", clique, j, j)
			}
		}
		b.WriteString("\tsink = n; return 0;\n}\n")
	}
	b.WriteString("FN int ktop(int n) { return k1(n); }\n")
	b.WriteString("FN int entry(int n) { return top(n) + 1; }\n")
	b.WriteString("FN int entry2(int n) { return ktop(n) + 1; }\n")
	b.WriteString("int main(int argc, char **argv) { (void)argv; sink = entry(-argc); sink = entry2(argc); return 0; }\n")
	return b.String()
}

// buildTailGraph compiles the program (non-PIE, so link-time addresses are run-time ones).
func buildTailGraph(t *testing.T, levels, clique int) string {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "graph.c")
	require.NoError(t, os.WriteFile(src, []byte(tailGraphSource(levels, clique)), 0o644))
	bin := filepath.Join(dir, "graph")
	out, err := exec.Command("gcc", "-g", "-O2", "-no-pie", "-o", bin, src).CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

// tailCallsFor sets up the search over one non-PIE executable, loaded at its link addresses.
func tailCallsFor(t *testing.T, bin string) *tailCalls {
	f, err := symbolize.Open(bin)
	require.NoError(t, err)
	ef, err := elf.Open(bin)
	require.NoError(t, err)
	defer ef.Close()
	m := &unwind.Module{Start: ^uint64(0), Path: bin}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD {
			m.Start, m.End = min(m.Start, p.Vaddr), max(m.End, p.Vaddr+p.Memsz)
		}
	}
	mods := []*unwind.Module{m}
	return newTailCalls(unwind.NewModuleSet(mods), mods, map[*unwind.Module]*symstore.Symbols{m: {Sym: f}}, elf.EM_X86_64)
}

// returnPC finds the return address of the only call site in function fn (from the DWARF).
func returnPC(t *testing.T, bin, fn string) uint64 {
	ef, err := elf.Open(bin)
	require.NoError(t, err)
	defer ef.Close()
	d, err := ef.DWARF()
	require.NoError(t, err)
	r := d.Reader()
	in := false
	for {
		e, err := r.Next()
		require.NoError(t, err)
		require.NotNil(t, e, "no call site in %s", fn)
		switch {
		case e.Tag == dwarf.TagSubprogram:
			in = e.Val(dwarf.AttrName) == fn
		case in && e.Tag == tagCallSiteDWARF5:
			pc, ok := e.Val(dwarf.AttrCallReturnPC).(uint64)
			require.True(t, ok)
			return pc
		}
	}
}

const tagCallSiteDWARF5 dwarf.Tag = 0x48

var gdbLiveFrameRe = regexp.MustCompile(`^#(\d+)\s+(?:0x([0-9a-f]+) in )?(\S+) `)

// TestTailCallSearchIsBounded: a graph where gdb's search is exponential. The ladder's dead
// ends are recognised, so the answer is gdb's (compared with gdb on the live process, pcs
// included) without walking 2^levels paths; the clique's (n-1)! chains run into the step
// budget, and the answer is "no frames".
func TestTailCallSearchIsBounded(t *testing.T) {
	const levels, clique = 14, 9
	bin := buildTailGraph(t, levels, clique)
	tc := tailCallsFor(t, bin)
	leaf, _ := tc.symbol("leaf")
	require.NotZero(t, leaf)

	// The ladder, against gdb on the live process.
	if _, err := exec.LookPath("gdb"); err != nil {
		t.Skip("gdb not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "gdb", "-nx", "-batch", "-ex", "run", "-ex", "p/x $pc", "-ex", "bt", bin).CombinedOutput()
	require.NoError(t, err, string(out))
	var pc0 uint64
	type frame struct {
		name string
		pc   uint64
	}
	var gdbFrames []frame
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "$1 = 0x"); ok {
			pc0, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			require.NoError(t, err)
		}
		if m := gdbLiveFrameRe.FindStringSubmatch(line); m != nil {
			f := frame{name: m[3]}
			if m[2] != "" {
				f.pc, _ = strconv.ParseUint(m[2], 16, 64)
			}
			gdbFrames = append(gdbFrames, f)
		}
	}
	require.GreaterOrEqual(t, len(gdbFrames), 4, string(out))
	require.Equal(t, "leaf", gdbFrames[0].name, string(out))
	require.Equal(t, "top", gdbFrames[1].name, "gdb shows the tail call:\n%s", out)
	require.Equal(t, "entry", gdbFrames[2].name, string(out))
	got := tc.frames(true, unwind.Frame{PC: pc0, Method: unwind.MethodContext}, unwind.Frame{PC: gdbFrames[2].pc, Method: unwind.MethodCFI}, map[string]bool{})
	require.Len(t, got, 1, "%+v", got)
	require.Equal(t, "top", got[0].Function)
	require.Equal(t, fmt.Sprintf("%#x", gdbFrames[1].pc), got[0].PC)
	require.Equal(t, MethodTailCall, got[0].Method)
	require.False(t, tc.exhausted)

	// The clique: gdb would walk every path; the step budget stops the search.
	before := tc.left
	ret := returnPC(t, bin, "entry2")
	require.Nil(t, tc.search(ret, leaf))
	require.Equal(t, maxTailSteps, before-tc.left, "steps spent")
	// A second frame with the same return address and callee is answered from the cache.
	require.Nil(t, tc.chain(false, unwind.Frame{PC: leaf + 1, Method: unwind.MethodCFI}, unwind.Frame{PC: ret, Method: unwind.MethodCFI}))
	spent := before - tc.left
	require.Nil(t, tc.chain(false, unwind.Frame{PC: leaf + 1, Method: unwind.MethodCFI}, unwind.Frame{PC: ret, Method: unwind.MethodCFI}))
	require.Equal(t, spent, before-tc.left, "cached")

	// Once the core's budget is spent, nothing more is searched.
	tc = tailCallsFor(t, bin)
	tc.left = 10
	require.Nil(t, tc.search(ret, leaf))
	require.True(t, tc.exhausted)
}
