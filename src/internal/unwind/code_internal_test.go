package unwind

import (
	"debug/elf"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFuncIndexLookup(t *testing.T) {
	x := &funcIndex{
		// an outer function with a nested symbol, one without a size, one with
		starts: []uint64{0x1000, 0x1010, 0x2000, 0x3000},
		ends:   []uint64{0x1100, 0x1020, 0x2000, 0x3010},
	}
	for _, c := range []struct {
		pc, start uint64
		sized, ok bool
	}{
		{0xfff, 0, false, false},
		{0x1000, 0x1000, true, true},
		{0x1015, 0x1010, true, true},
		{0x1050, 0x1000, true, true}, // past the nested symbol, inside the outer one
		{0x1100, 0, false, false},    // past both
		{0x2fff, 0x2000, false, true},
		{0x300f, 0x3000, true, true},
		{0x3010, 0, false, false},
	} {
		start, sized, ok := x.lookup(c.pc)
		require.Equal(t, [3]any{c.start, c.sized, c.ok}, [3]any{start, sized, ok}, "pc %#x", c.pc)
	}
	start, _, ok := (*funcIndex)(nil).lookup(0x1000)
	require.False(t, ok)
	require.Zero(t, start)
}

func TestReadCode(t *testing.T) {
	code := []codeRange{{addr: 0x100, b: []byte{1, 2, 3, 4}}, {addr: 0x104, b: []byte{5, 6}}, {addr: 0x200, b: []byte{7}}}
	p := make([]byte, 8)
	require.Equal(t, 6, readCode(code, p, 0x100), "adjacent sections join")
	require.Equal(t, []byte{1, 2, 3, 4, 5, 6}, p[:6])
	require.Equal(t, 3, readCode(code, p, 0x103))
	require.Equal(t, 1, readCode(code, p, 0x200))
	require.Zero(t, readCode(code, p, 0x106))
	require.Zero(t, readCode(code, p, 0xff))
	require.Zero(t, readCode(nil, p, 0x100))
}

// TestLoadFuncIndex compares the symbol entries read raw with debug/elf's reading of them, on
// the libraries of the ARM and AArch64 sysroots and this machine's libc (ELF32 and ELF64).
func TestLoadFuncIndex(t *testing.T) {
	for _, path := range []string{
		"/usr/arm-linux-gnueabihf/lib/libc.so.6",
		"/usr/arm-linux-gnueabihf/lib/libstdc++.so.6",
		"/usr/aarch64-linux-gnu/lib/libc.so.6",
		"/lib/x86_64-linux-gnu/libc.so.6",
	} {
		t.Run(path, func(t *testing.T) {
			f, err := elf.Open(path)
			if err != nil {
				t.Skipf("%v", err)
			}
			defer f.Close()
			x, err := loadFuncIndex(f)
			require.NoError(t, err)
			want := map[uint64]uint64{}
			for _, read := range []func() ([]elf.Symbol, error){f.Symbols, f.DynamicSymbols} {
				syms, _ := read()
				for _, s := range syms {
					typ := elf.ST_TYPE(s.Info)
					if typ != elf.STT_FUNC && typ != sttGNUIFunc || s.Section == elf.SHN_UNDEF ||
						s.Section >= elf.SHN_LORESERVE || f.Sections[s.Section].Flags&elf.SHF_EXECINSTR == 0 {
						continue
					}
					start := s.Value
					if f.Machine == elf.EM_ARM {
						start &^= 1
					}
					want[start] = max(want[start], start+s.Size)
				}
			}
			require.NotEmpty(t, want)
			got := map[uint64]uint64{}
			for i, s := range x.starts {
				got[s] = x.ends[i]
			}
			require.Equal(t, want, got)
			for i := 1; i < len(x.starts); i++ {
				require.Less(t, x.starts[i-1], x.starts[i])
			}
		})
	}
}
