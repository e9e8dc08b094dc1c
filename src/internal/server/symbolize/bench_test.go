package symbolize

import (
	"debug/elf"
	"math/rand"
	"testing"
)

// libcAddrs returns n addresses spread over libc's .text, deterministically.
func libcAddrs(b *testing.B, debug string, n int) []uint64 {
	b.Helper()
	ef, err := elf.Open(debug)
	if err != nil {
		b.Fatal(err)
	}
	defer ef.Close()
	text := ef.Section(".text")
	if text == nil {
		b.Fatal("no .text")
	}
	rng := rand.New(rand.NewSource(1))
	out := make([]uint64, n)
	for i := range out {
		out[i] = text.Addr + uint64(rng.Int63n(int64(text.Size)))
	}
	return out
}

// BenchmarkLibc measures Open and 10k lookups on glibc's split debug file
// (libc6-dbg): "cold" opens the file every iteration, so every unit index is
// built again; "warm" reuses one File whose indexes are already built.
func BenchmarkLibc(b *testing.B) {
	_, debug := libcDebugFile(b)
	addrs := libcAddrs(b, debug, 10000)
	lookupAll := func(f *File) {
		for _, a := range addrs {
			if _, err := f.Lookup(a); err != nil && err != ErrNoSymbol {
				b.Fatal(err)
			}
		}
	}
	b.Run("open", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := Open(debug); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			f, err := Open(debug)
			if err != nil {
				b.Fatal(err)
			}
			lookupAll(f)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(addrs)), "ns/lookup")
	})
	b.Run("warm", func(b *testing.B) {
		f, err := Open(debug)
		if err != nil {
			b.Fatal(err)
		}
		lookupAll(f)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			lookupAll(f)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(addrs)), "ns/lookup")
	})
}
