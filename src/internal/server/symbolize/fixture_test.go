package symbolize

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var btFrameRe = regexp.MustCompile(`^#\d+\s+0x([0-9a-f]+) in (\S+) \(.*\) at (\S+):(\d+)$`)

// TestFixtureBacktrace replays gdb's backtrace of the i386 fixture core
// (non-PIE, so its addresses are link-time): for each frame gdb printed
// with an address (a return address), the function containing the call and
// the line of the call must be what gdb printed. Hermetic: no tools needed.
func TestFixtureBacktrace(t *testing.T) {
	dir := "../../../testdata/cores/i386"
	bt, err := os.ReadFile(filepath.Join(dir, "gdb-full.txt"))
	if os.IsNotExist(err) {
		t.Skip("no i386 fixture")
	}
	require.NoError(t, err)
	f, err := Open(filepath.Join(dir, "threads"))
	require.NoError(t, err)
	checked := 0
	for _, line := range regexp.MustCompile(`\r?\n`).Split(string(bt), -1) {
		m := btFrameRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		pc, err := strconv.ParseUint(m[1], 16, 64)
		require.NoError(t, err)
		want, _ := strconv.Atoi(m[4])
		frames, err := f.Lookup(pc - 1) // a return address: look up the call
		require.NoError(t, err, line)
		outer := frames[len(frames)-1]
		assert.Equal(t, m[2], outer.Function, line)
		assert.Equal(t, want, outer.Line, line)
		assert.Equal(t, filepath.Base(m[3]), filepath.Base(outer.File), line)
		checked++
	}
	assert.Positive(t, checked)
	t.Logf("%d frames agree with gdb's backtrace", checked)
}

// TestConcurrentLookup runs lookups from many goroutines on a fresh File
// (so the per-unit indexes are built concurrently) and compares them with
// sequential answers. Run with -race.
func TestConcurrentLookup(t *testing.T) {
	for name, data := range fixtureBinaries(t) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("../../../testdata/cores", name, "threads")
			seq, err := Open(path)
			require.NoError(t, err)
			var addrs []uint64
			for _, s := range seq.syms.syms {
				for a := s.addr; a < s.addr+max(s.size, 1) && a < s.addr+64; a += 3 {
					addrs = append(addrs, a)
				}
			}
			want := make([][]Frame, len(addrs))
			for i, a := range addrs {
				want[i], _ = seq.Lookup(a)
			}
			par, err := NewFile(bytesReader(data))
			require.NoError(t, err)
			var wg sync.WaitGroup
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					for i := range addrs {
						j := (i*7 + g*131) % len(addrs)
						got, _ := par.Lookup(addrs[j])
						assert.Equal(t, want[j], got)
					}
				}(g)
			}
			wg.Wait()
		})
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
