package unwind_test

import (
	"debug/elf"
	"testing"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/unwind"
)

// BenchmarkWalkX86_64 walks all eight threads of the x86-64 fixture (242 frames) with warm
// tables: the cost per core on the server once the symbol files are loaded.
func BenchmarkWalkX86_64(b *testing.B) {
	c := loadFixture(b, "x86_64")
	mods, skipped := modules(b, fixtures[0], c)
	if len(skipped) > 0 {
		b.Skipf("libraries missing: %v", skipped)
	}
	h := c.core.Header
	frames := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		frames = 0
		for _, th := range c.proc.Threads {
			frames += len(unwind.Walk(h.Machine, h.Class, th.Regs, c.mem, mods, unwind.Options{}).Frames)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/frame")
}

// BenchmarkLoadTables parses the unwind sections of a libc (the file is open; section reads
// are included).
func BenchmarkLoadTables(b *testing.B) {
	for _, path := range []string{"/lib/x86_64-linux-gnu/libc.so.6", "/usr/aarch64-linux-gnu/lib/libc.so.6", "/usr/arm-linux-gnueabihf/lib/libc.so.6"} {
		b.Run(path, func(b *testing.B) {
			f, err := elf.Open(path)
			if err != nil {
				b.Skipf("%s: %v", path, err)
			}
			defer f.Close()
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				_, err := unwind.LoadTables(f)
				require.NoError(b, err)
			}
		})
	}
}
