package unwind_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/device/capture"
)

// TestThreadsCaptureCores walks the small cores that devices send (the threads capture strategy
// applied to each full fixture core, written and read back) and requires the very same frames
// and stop reasons as on the kernel's full core. This external test package imports the device
// wing only to produce its input; package unwind itself imports no wing.
func TestThreadsCaptureCores(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.arch, func(t *testing.T) {
			full := loadFixture(t, fx.arch)
			res, err := capture.Threads(capture.Input{Core: full.core, Proc: full.proc, Mem: full.mem}, 32<<10)
			require.NoError(t, err)
			path := filepath.Join(t.TempDir(), "core")
			f, err := os.Create(path)
			require.NoError(t, err)
			_, err = res.Layout.Write(f, full.mem)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			small := readCore(t, b)
			require.Less(t, len(small.full)*10, len(full.full))

			fullMods, _ := modules(t, fx, full)
			smallMods, _ := modules(t, fx, small)
			require.Equal(t, describeModules(fullMods), describeModules(smallMods))
			want := walkAll(full, fullMods)
			got := walkAll(small, smallMods)
			require.Equal(t, want, got)
			frames := 0
			for _, r := range got {
				frames += len(r.Frames)
			}
			t.Logf("%s: %d-byte core, %d threads, %d frames identical to the full core's", fx.arch, len(b), len(got), frames)
		})
	}
}

// TestConcurrentWalks shares one set of modules and tables between goroutines (run with -race).
func TestConcurrentWalks(t *testing.T) {
	for _, fx := range fixtures {
		c := loadFixture(t, fx.arch)
		mods, _ := modules(t, fx, c)
		want := walkAll(c, mods)
		errs := make(chan string, 8)
		for g := 0; g < 8; g++ {
			go func() {
				if got := walkAll(c, mods); !reflect.DeepEqual(got, want) {
					errs <- fx.arch + ": concurrent walk differs"
					return
				}
				errs <- ""
			}()
		}
		for g := 0; g < 8; g++ {
			require.Empty(t, <-errs)
		}
	}
}
