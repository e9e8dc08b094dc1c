package symbolize

import (
	"debug/elf"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLazyIndexMatchesFull: finding units through .debug_aranges and reading
// .debug_info only up to them gives the frames that indexing every unit
// gives, on glibc's and ld.so's debug files.
func TestLazyIndexMatchesFull(t *testing.T) {
	lib, debug := libcDebugFile(t)
	files := []string{debug}
	if f, err := Open("/lib64/ld-linux-x86-64.so.2"); err == nil {
		id := f.BuildID()
		f.Close()
		if p := filepath.Join("/usr/lib/debug/.build-id", id[:2], id[2:]+".debug"); len(id) > 2 {
			if _, err := os.Stat(p); err == nil {
				files = append(files, p)
			}
		}
	}
	_ = lib
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			lazy, err := Open(path)
			require.NoError(t, err)
			defer lazy.Close()
			full, err := Open(path)
			require.NoError(t, err)
			defer full.Close()
			full.dw.noAranges = true
			require.NotNil(t, lazy.dw.sec.aranges, "the file has .debug_aranges")

			ef, err := elf.Open(path)
			require.NoError(t, err)
			defer ef.Close()
			text := ef.Section(".text")
			require.NotNil(t, text)
			rng := rand.New(rand.NewSource(2))
			var addrs []uint64
			for i := 0; i < 1500; i++ {
				addrs = append(addrs, text.Addr+uint64(rng.Int63n(int64(text.Size))))
			}
			addrs = append(addrs, 0, text.Addr-1, text.Addr+text.Size, ^uint64(0))
			dwarfFrames := 0
			for _, a := range addrs {
				fl, errL := lazy.Lookup(a)
				ff, errF := full.Lookup(a)
				require.Equal(t, errF, errL, "error at %#x", a)
				require.Equal(t, ff, fl, "frames at %#x", a)
				if len(fl) > 0 && !fl[len(fl)-1].FromSymtab {
					dwarfFrames++
				}
			}
			require.Greater(t, dwarfFrames, len(addrs)/2, "most addresses have DWARF")
			require.True(t, lazy.dw.byAranges)
			require.False(t, full.dw.byAranges)
			t.Logf("%d addresses, %d with DWARF; .debug_info read: lazy %d of %d bytes", len(addrs), dwarfFrames, lazy.dw.sec.info.done.Load(), lazy.dw.sec.info.len())
		})
	}
}
