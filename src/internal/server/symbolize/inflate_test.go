package symbolize

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"fmt"
	"io"
	"math/rand"
	"os"
	"testing"

	kzlib "github.com/klauspost/compress/zlib"
	"github.com/stretchr/testify/require"
)

// zlibOf compresses data with compress/zlib at level.
func zlibOf(t testing.TB, data []byte, level int) []byte {
	var b bytes.Buffer
	w, err := zlib.NewWriterLevel(&b, level)
	require.NoError(t, err)
	_, err = w.Write(data)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return b.Bytes()
}

// inflateAll decodes stream with the inflater, asking for random amounts;
// with slide, keeping only the window and collecting the output as it goes,
// and taking checkpoints that must give the same bytes when resumed.
func inflateAll(stream []byte, size int, rng *rand.Rand) ([]byte, error) {
	z := newInflater(bytes.NewReader(stream), 0, int64(len(stream)), size)
	var got []byte
	var cps []checkpoint
	for {
		want := size + 1
		if rng != nil && rng.Intn(3) > 0 {
			want = rng.Intn(size + 1)
		}
		if rng != nil {
			z.slide(len(got))
		}
		if err := z.fill(want); err != nil {
			return nil, err
		}
		if rng != nil {
			got = append(got, z.bytesAt(len(got), z.base+z.o-len(got))...)
			if c, ok := z.save(); ok && rng.Intn(4) == 0 {
				cps = append(cps, c)
			}
		}
		if want > size {
			break
		}
	}
	if rng == nil {
		return z.out[:z.o], nil
	}
	for _, c := range cps {
		r := z.resume(c, nil)
		end := min(c.pos+100000, size)
		if err := r.fill(end); err != nil {
			return nil, fmt.Errorf("resumed at %#x: %w", c.pos, err)
		}
		if b := r.bytesAt(c.pos, end-c.pos); !bytes.Equal(b, got[c.pos:end]) {
			return nil, fmt.Errorf("resumed at %#x: different bytes", c.pos)
		}
	}
	return got, nil
}

func testInputs(t *testing.T) map[string][]byte {
	rng := rand.New(rand.NewSource(1))
	random := make([]byte, 300<<10)
	rng.Read(random)
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog; "), 20000)
	runs := make([]byte, 200<<10)
	for i := range runs {
		runs[i] = byte(i / 1000 % 3)
	}
	mixed := append(append(append([]byte{}, text[:50000]...), random[:70000]...), runs...)
	in := map[string][]byte{"empty": {}, "one": {7}, "random": random, "text": text, "runs": runs, "mixed": mixed}
	// Real DWARF: this package's fixtures.
	for name, b := range fixtureBinaries(t) {
		in["fixture-"+name] = b
	}
	if f, err := Open("/lib/x86_64-linux-gnu/libc.so.6"); err == nil {
		id := f.BuildID()
		f.Close()
		if len(id) > 2 {
			if b, err := os.ReadFile("/usr/lib/debug/.build-id/" + id[:2] + "/" + id[2:] + ".debug"); err == nil {
				in["libc-debug-file"] = b
			}
		}
	}
	return in
}

// TestInflateMatchesZlib: every compression level, asked for in random
// pieces, decodes to the input; truncated and corrupted streams fail or
// decode as compress/zlib does.
func TestInflateMatchesZlib(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for name, data := range testInputs(t) {
		for _, level := range []int{flate.NoCompression, flate.BestSpeed, 4, flate.DefaultCompression, flate.BestCompression, flate.HuffmanOnly} {
			stream := zlibOf(t, data, level)
			for _, r := range []*rand.Rand{nil, rng} {
				got, err := inflateAll(stream, len(data), r)
				require.NoError(t, err, "%s level %d", name, level)
				require.True(t, bytes.Equal(data, got), "%s level %d", name, level)
			}
			if len(data) == 0 {
				continue
			}
			// Wrong declared sizes.
			_, err := inflateAll(stream, len(data)-1, nil)
			require.Error(t, err)
			_, err = inflateAll(stream, len(data)+1, nil)
			require.Error(t, err)
			// Truncated.
			_, err = inflateAll(stream[:len(stream)/2], len(data), nil)
			require.Error(t, err)
			// A flipped bit: compress/zlib is the oracle.
			for k := 0; k < 4; k++ {
				bad := bytes.Clone(stream)
				bad[rng.Intn(len(bad))] ^= 1 << rng.Intn(8)
				compareWithZlib(t, bad, len(data))
			}
		}
	}
}

// compareWithZlib checks that the inflater accepts stream exactly when
// compress/zlib yields size bytes and a valid end, with the same bytes.
func compareWithZlib(t testing.TB, stream []byte, size int) {
	var want []byte
	zr, err := zlib.NewReader(bytes.NewReader(stream))
	if err == nil {
		want, err = io.ReadAll(io.LimitReader(zr, int64(size)+1))
		if err == nil && len(want) != size {
			err = io.ErrUnexpectedEOF
		}
	}
	got, gerr := inflateAll(stream, size, nil)
	if err != nil {
		require.Error(t, gerr, "compress/zlib: %v", err)
		return
	}
	require.NoError(t, gerr)
	require.True(t, bytes.Equal(want, got))
}

func FuzzInflate(f *testing.F) {
	for _, level := range []int{0, 1, 6, 9, -2} {
		f.Add(zlibOf(f, []byte("hello hello hello world, hello hello"), level), uint16(36))
		f.Add(zlibOf(f, bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, 100), level), uint16(900))
	}
	f.Fuzz(func(t *testing.T, stream []byte, size uint16) {
		compareWithZlib(t, stream, int(size))
	})
}

func BenchmarkInflate(b *testing.B) {
	_, debug := libcDebugFile(b)
	f, err := Open(debug)
	require.NoError(b, err)
	defer f.Close()
	// .debug_info, recompressed.
	all, err := f.dw.sec.info.all()
	require.NoError(b, err)
	stream := zlibOf(b, all, flate.DefaultCompression)
	b.SetBytes(int64(len(all)))
	b.Run("ours", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			z := newInflater(bytes.NewReader(stream), 0, int64(len(stream)), len(all))
			z.out = make([]byte, len(all)+fastOutGap) // as stream.all does
			if err := z.fill(len(all) + 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("klauspost-zlib", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			zr, _ := kzlib.NewReader(bytes.NewReader(stream))
			out := make([]byte, len(all))
			if _, err := io.ReadFull(zr, out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("compress-zlib", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			zr, _ := zlib.NewReader(bytes.NewReader(stream))
			out := make([]byte, len(all))
			if _, err := io.ReadFull(zr, out); err != nil {
				b.Fatal(err)
			}
		}
	})
}
