package elfcore

import (
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// readCounter counts the reads that reach the file.
type readCounter struct {
	r     io.ReaderAt
	reads int
}

func (c *readCounter) ReadAt(p []byte, off int64) (int, error) {
	c.reads++
	return c.r.ReadAt(p, off)
}

// TestSegmentMemoryCache reads a real core's memory through the block cache (a file) and
// directly (memory) at random addresses and lengths, segment ends and block boundaries
// included: the bytes and the errors are the same, and the file sees far fewer reads.
func TestSegmentMemoryCache(t *testing.T) {
	for arch, b := range fixtureCores(t) {
		t.Run(arch, func(t *testing.T) {
			c, err := ReadCore(bytes.NewReader(b), DefaultLimits)
			require.NoError(t, err)
			path := filepath.Join(t.TempDir(), "core")
			require.NoError(t, os.WriteFile(path, b, 0o600))
			f, err := os.Open(path)
			require.NoError(t, err)
			defer f.Close()
			counted := &readCounter{r: f}
			cached := NewSegmentMemory(counted, c.Progs)
			direct := NewSegmentMemory(bytes.NewReader(b), c.Progs)
			require.True(t, cached.cached)
			require.False(t, direct.cached)

			rng := rand.New(rand.NewSource(1))
			var addrs []uint64
			for _, p := range cached.loads {
				end := p.Vaddr + p.Filesz
				addrs = append(addrs, p.Vaddr, end-1, end-8, end, p.Vaddr+memBlockSize-3)
			}
			const n = 20000
			for len(addrs) < n {
				p := cached.loads[rng.Intn(len(cached.loads))]
				addrs = append(addrs, p.Vaddr+uint64(rng.Int63n(int64(p.Filesz)+64)))
			}
			check := func(i int, a uint64) {
				size := []int{1, 4, 8, 16, 64, 300, memBlockSize - 1, memBlockSize + 5}[i%8]
				got, want := make([]byte, size), make([]byte, size)
				gn, gerr := cached.ReadMemory(got, a)
				wn, werr := direct.ReadMemory(want, a)
				require.Equal(t, wn, gn, "read of %d at %#x", size, a)
				require.Equal(t, want[:wn], got[:gn], "read of %d at %#x", size, a)
				require.Equal(t, werr == nil, gerr == nil, "read of %d at %#x: %v / %v", size, a, werr, gerr)
			}
			for i, a := range addrs {
				check(i, a)
			}
			// A stack is read word by word, walking up: one file read per block.
			counted.reads = 0
			p := cached.loads[len(cached.loads)/2]
			words := min(4000, int(p.Filesz/8))
			for i := 0; i < words; i++ {
				check(2, p.Vaddr+uint64(8*i))
			}
			require.LessOrEqual(t, counted.reads, words*8/memBlockSize+2, "file reads for %d words", words)
		})
	}
}

// TestSegmentMemoryTruncated: a core whose last segment claims bytes past the end of its file
// reads what is there and then fails, through the cache as directly.
func TestSegmentMemoryTruncated(t *testing.T) {
	for arch, b := range fixtureCores(t) {
		t.Run(arch, func(t *testing.T) {
			c, err := ReadCore(bytes.NewReader(b), DefaultLimits)
			require.NoError(t, err)
			last := c.Progs[0]
			for _, p := range c.Progs {
				if p.Filesz > 0 && p.Offset+p.Filesz > last.Offset+last.Filesz {
					last = p
				}
			}
			cut := int64(last.Offset + last.Filesz/2 + 100)
			path := filepath.Join(t.TempDir(), "core")
			require.NoError(t, os.WriteFile(path, b[:cut], 0o600))
			f, err := os.Open(path)
			require.NoError(t, err)
			defer f.Close()
			cached := NewSegmentMemory(f, c.Progs)
			direct := NewSegmentMemory(bytes.NewReader(b[:cut]), c.Progs)
			for _, a := range []uint64{last.Vaddr, last.Vaddr + last.Filesz/2 + 90, last.Vaddr + last.Filesz/2 + 100, last.Vaddr + last.Filesz - 8} {
				got, want := make([]byte, 16), make([]byte, 16)
				gn, gerr := cached.ReadMemory(got, a)
				wn, werr := direct.ReadMemory(want, a)
				require.Equal(t, wn, gn, "at %#x", a)
				require.Equal(t, want[:wn], got[:gn])
				require.Equal(t, werr == nil, gerr == nil, "at %#x: %v / %v", a, werr, gerr)
			}
		})
	}
}

// sliceFile reads a byte slice the way a file does (io.EOF at its end) but is not a
// *bytes.Reader: SegmentMemory reads it through its block cache.
type sliceFile []byte

func (s sliceFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= int64(len(s)) {
		return 0, io.EOF
	}
	n := copy(p, s[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// FuzzSegmentMemory: for any core ReadCore accepts (cut short or not) and any read, the block
// cache returns the bytes and the error a direct read returns, and never panics.
func FuzzSegmentMemory(f *testing.F) {
	// Seeds: small cores (the fuzzer crawls on whole ones) written from the fixtures: their
	// headers and the first bytes of three of their segments.
	for _, b := range fixtureCores(f) {
		c, err := ReadCore(bytes.NewReader(b), DefaultLimits)
		if err != nil {
			f.Fatal(err)
		}
		l := &Layout{Header: c.Header}
		for _, p := range c.Progs {
			if p.Type == elf.PT_LOAD && p.Filesz > 0 && len(l.Segments) < 3 {
				n := min(p.Filesz, 3*memBlockSize/2)
				l.Segments = append(l.Segments, Segment{Vaddr: p.Vaddr, Filesz: n, Memsz: n, Flags: p.Flags})
			}
		}
		var small bytes.Buffer
		if _, err := l.Write(&small, NewSegmentMemory(bytes.NewReader(b), c.Progs)); err != nil {
			f.Fatal(err)
		}
		s := l.Segments[0]
		f.Add(small.Bytes(), s.Vaddr+s.Filesz-5, uint16(64), uint32(small.Len()))
		f.Add(small.Bytes(), s.Vaddr, uint16(memBlockSize+3), uint32(small.Len()-100))
	}
	f.Fuzz(func(t *testing.T, b []byte, addr uint64, size uint16, cut uint32) {
		c, err := ReadCore(bytes.NewReader(b), DefaultLimits)
		if err != nil {
			return
		}
		b = b[:min(len(b), int(cut))] // the file may end before its segments do
		cached := NewSegmentMemory(sliceFile(b), c.Progs)
		direct := NewSegmentMemory(bytes.NewReader(b), c.Progs)
		for k := uint64(0); k < 3; k++ { // again, from the cache, and next to it
			a := addr + k*uint64(size)/2
			got, want := make([]byte, size), make([]byte, size)
			gn, gerr := cached.ReadMemory(got, a)
			wn, werr := direct.ReadMemory(want, a)
			if gn != wn || !bytes.Equal(got[:gn], want[:wn]) || (gerr == nil) != (werr == nil) {
				t.Fatalf("read of %d at %#x: cached %d %v, direct %d %v", size, a, gn, gerr, wn, werr)
			}
		}
	})
}
