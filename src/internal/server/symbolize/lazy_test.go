package symbolize

import (
	"bytes"
	"compress/gzip"
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"io"
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
			t.Logf("%d addresses, %d with DWARF; .debug_info read: lazy %d of %d bytes", len(addrs), dwarfFrames, lazy.dw.sec.info.through(), lazy.dw.sec.info.len())
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

// TestLazyIndexSmallFiles runs the lazy index on small programs, lookups at
// every instruction address in random order against indexing every unit:
// units found through .debug_aranges and copied one by one, and, with LTO
// (DW_FORM_ref_addr between units), every unit read in order.
func TestLazyIndexSmallFiles(t *testing.T) {
	needTool(t, "gcc")
	dir := t.TempDir()
	srcs := map[string]string{
		"a.c": "static inline int sq(int x) { return x * x; }\nint helper(int x);\nint other(int x);\n" +
			"int main(int argc, char **argv) { return helper(argc) + sq(argc) + other(argc); }\n",
		"b.c": "static inline int twice(int x) { return x + x; }\n__attribute__((noinline)) int helper(int x) { return twice(x) * 3; }\n",
		"c.c": "static inline int thrice(int x) { return x * 3; }\n__attribute__((noinline)) int other(int x) { return thrice(x) - 1; }\n",
	}
	for name, src := range srcs {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644))
	}
	defer func(v int) { eagerIndexBytes = v }(eagerIndexBytes)
	eagerIndexBytes = 0
	for _, tc := range []struct {
		name  string
		flags []string
		full  bool // the lazy index ends up reading every unit in order
	}{
		{"O2", []string{"-O2", "-g"}, false},
		{"O2-gz", []string{"-O2", "-g", "-gz=zlib"}, false},
		{"lto", []string{"-O2", "-g", "-flto"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := filepath.Join(dir, tc.name)
			run(t, dir, "gcc", append(tc.flags, "-o", bin, "a.c", "b.c", "c.c")...)
			lazy, err := Open(bin)
			require.NoError(t, err)
			defer lazy.Close()
			full, err := Open(bin)
			require.NoError(t, err)
			defer full.Close()
			full.dw.noAranges = true
			ef, err := elf.Open(bin)
			require.NoError(t, err)
			defer ef.Close()
			text := ef.Section(".text")
			var addrs []uint64
			for a := text.Addr; a < text.Addr+text.Size; a++ {
				addrs = append(addrs, a)
			}
			rand.New(rand.NewSource(4)).Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
			withDWARF := 0
			for _, a := range addrs {
				fl, errL := lazy.Lookup(a)
				ff, errF := full.Lookup(a)
				require.Equal(t, errF, errL, "error at %#x", a)
				require.Equal(t, ff, fl, "frames at %#x", a)
				if len(fl) > 0 && !fl[len(fl)-1].FromSymtab {
					withDWARF++
				}
			}
			require.Greater(t, withDWARF, 20, "addresses in main, helper and other")
			require.Equal(t, !tc.full, lazy.dw.byAranges, "found units through .debug_aranges")
			require.Equal(t, tc.full, lazy.dw.full, "read every unit in order")
		})
	}
}

// TestRangesMatchDebugDwarf: the range lists (DWARF 2-5) read by dwarfData
// equal dwarf.Data.Ranges for every DIE with DW_AT_ranges.
func TestRangesMatchDebugDwarf(t *testing.T) {
	needTool(t, "gcc")
	dir := t.TempDir()
	var bins []string
	for _, v := range []string{"-gdwarf-5", "-gdwarf-4", "-gdwarf-3", "-gdwarf-2"} {
		bins = append(bins, compile(t, dir, "gcc", "inline.c", "prog"+v, v, "-O2"))
	}
	// A Go program: DWARF 4 ranges on most inlined calls.
	if in, err := os.Open("../../../testdata/corpus/go-crash/x86_64/go-crash.gz"); err == nil {
		zr, err := gzip.NewReader(in)
		require.NoError(t, err)
		b, err := io.ReadAll(zr)
		in.Close()
		require.NoError(t, err)
		p := filepath.Join(dir, "go-crash")
		require.NoError(t, os.WriteFile(p, b, 0o644))
		bins = append(bins, p)
	}
	for _, bin := range bins {
		f, err := Open(bin)
		require.NoError(t, err)
		require.NoError(t, f.dw.index())
		if !f.dw.full {
			f.dw.mu.Lock()
			require.NoError(t, f.dw.activateRest())
			require.NoError(t, f.dw.newData())
			f.dw.mu.Unlock()
		}
		r := f.dw.data.Reader()
		n := 0
		for {
			e, err := r.Next()
			require.NoError(t, err)
			if e == nil {
				break
			}
			if e.Val(dwarf.AttrRanges) == nil {
				continue
			}
			want, werr := f.dw.data.get().Ranges(e)
			got, gerr := f.dw.data.Ranges(e)
			require.Equal(t, werr, gerr, "%s: DIE at %#x", bin, e.Offset)
			require.Equal(t, want, got, "%s: DIE at %#x", bin, e.Offset)
			n++
		}
		t.Logf("%s: %d DIEs with DW_AT_ranges", filepath.Base(bin), n)
		f.Close()
	}
}

// TestAnyOffsetForms: the scan of .debug_abbrev in pieces finds what a scan
// of the whole section finds, wherever the pieces cut the tables.
func TestAnyOffsetForms(t *testing.T) {
	_, debug := libcDebugFile(t)
	f, err := Open(debug)
	require.NoError(t, err)
	defer f.Close()
	all, err := f.dw.sec.abbrev.all()
	require.NoError(t, err)
	whole := func(b []byte) bool {
		for off := 0; off < len(b); {
			end, offsets, ok := abbrevTableEnd(b[off:])
			if !ok || offsets {
				return true
			}
			off += end
		}
		return false
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"glibc", all},
		// A ref_addr form in the last table, cut anywhere.
		{"ref_addr", append(bytes.Clone(all), 1, 0x2e, 0, 0x31, 0x10, 0, 0, 0)},
		{"cut short", all[:len(all)-3]},
	} {
		want := whole(tc.b)
		for _, piece := range []int{1, 7, 4095, 65536, len(tc.b)} {
			chunks := func(fn func([]byte) error) error {
				for off := 0; off < len(tc.b); off += piece {
					if err := fn(tc.b[off:min(off+piece, len(tc.b))]); err != nil {
						return err
					}
				}
				return nil
			}
			require.Equal(t, want, offsetFormsIn(chunks), "%s in pieces of %d", tc.name, piece)
		}
	}
}

// FuzzOpenLazy is FuzzOpen with the index read on demand (through
// .debug_aranges, units copied one by one) whatever the file's size.
func FuzzOpenLazy(f *testing.F) {
	for _, b := range fixtureBinaries(f) {
		f.Add(b)
	}
	if b, err := os.ReadFile("../../../testdata/corpus/c-o2-inline/x86_64/c-o2-inline"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		defer func(v int) { eagerIndexBytes = v }(eagerIndexBytes)
		eagerIndexBytes = 0
		file, err := NewFile(bytes.NewReader(data))
		if err != nil {
			return
		}
		if file.dw != nil {
			file.dw.allUnits() // and every unit, in compact order
		}
		probe(t, file)
	})
}
