package symbolize

import (
	"debug/elf"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"sync"
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

// TestLazyConcurrent: lookups from several goroutines into a file read on
// demand (units activated, sections inflated, under way from each other)
// give the frames a lone reader gets. Run with -race.
func TestLazyConcurrent(t *testing.T) {
	_, debug := libcDebugFile(t)
	ef, err := elf.Open(debug)
	require.NoError(t, err)
	text := ef.Section(".text")
	ef.Close()
	require.NotNil(t, text)
	rng := rand.New(rand.NewSource(3))
	addrs := make([]uint64, 400)
	for i := range addrs {
		addrs[i] = text.Addr + uint64(rng.Int63n(int64(text.Size)))
	}
	ref, err := Open(debug)
	require.NoError(t, err)
	defer ref.Close()
	want := make([][]Frame, len(addrs))
	for i, a := range addrs {
		want[i], _ = ref.Lookup(a)
	}
	f, err := Open(debug)
	require.NoError(t, err)
	defer f.Close()
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for k := range addrs {
				i := (k*7 + g*101) % len(addrs)
				got, _ := f.Lookup(addrs[i])
				if !reflect.DeepEqual(got, want[i]) {
					errs <- fmt.Sprintf("%#x: got %v, want %v", addrs[i], got, want[i])
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
