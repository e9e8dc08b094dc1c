package archive

import (
	"fmt"
	"io"
	"sync/atomic"
)

// Limits bound what one archive may cost. A zero field means "no limit" for MaxTotal,
// MaxMember, MaxEntries and MaxRatio, and DefaultLimits.MaxWindow for MaxWindow.
type Limits struct {
	// MaxTotal bounds the bytes produced: the decompressed tar stream, and separately the
	// member bytes handed out by Read and Extract (a sparse member expands its holes).
	MaxTotal int64
	// MaxMember bounds one member's size as its header states it; a larger member is refused
	// (ErrRefused and ErrLimit) and skipped without being expanded.
	MaxMember int64
	// MaxEntries bounds the number of tar headers (members and global PAX headers).
	MaxEntries int
	// MaxRatio bounds decompressed bytes / compressed bytes read, checked once RatioGrace
	// bytes have been decompressed.
	MaxRatio float64
	// MaxWindow bounds the history window an xz or zstd stream may ask the decoder to allocate.
	MaxWindow int64
}

// RatioGrace is how many decompressed bytes pass before MaxRatio is checked, so that a small
// archive of very compressible files is not mistaken for a bomb.
const RatioGrace = 1 << 20

// DefaultLimits suit a Yocto image: a -dbg tarball of a large image holds a few GiB of debug
// data in some 10^5 files, and its compression ratio is below 20.
//
//   - MaxTotal 64 GiB, MaxMember 16 GiB, MaxEntries 2,000,000.
//   - MaxRatio 500: gzip cannot exceed ~1032; a bz2/xz/zstd stream of zeros reaches 10^4 to
//     10^6. Debug data compresses 3-10 times.
//   - MaxWindow 128 MiB: xz -9 uses 64 MiB, zstd --ultra -22 and --long=27 128 MiB (the zstd
//     CLI itself refuses more without --memory).
var DefaultLimits = Limits{
	MaxTotal:   64 << 30,
	MaxMember:  16 << 30,
	MaxEntries: 2_000_000,
	MaxRatio:   500,
	MaxWindow:  128 << 20,
}

func (l Limits) window() int64 {
	if l.MaxWindow <= 0 {
		return DefaultLimits.MaxWindow
	}
	return l.MaxWindow
}

// countIn counts the compressed bytes read from the source. With an external decompressor it is
// read by the goroutine feeding the program while countOut asks for the count: hence atomics.
type countIn struct {
	r   io.Reader
	n   atomic.Int64
	err atomic.Pointer[error] // the source's own failure (not io.EOF): no decoder is to blame
}

func (c *countIn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	if err != nil && err != io.EOF {
		c.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

// failed returns the source's error, or nil.
func (c *countIn) failed() error {
	if e := c.err.Load(); e != nil {
		return *e
	}
	return nil
}

// countOut sits between the decompressor and the tar reader: it counts decompressed bytes,
// enforces MaxTotal and MaxRatio, and remembers how many zero bytes ended the data so far
// (the end-of-archive marker is two zero blocks). Its errors are sticky.
type countOut struct {
	r        io.Reader
	in       *countIn // nil for an uncompressed stream: no ratio
	lim      Limits
	n        int64
	zeroTail int64 // length of the run of zero bytes at the end of what was read
	lastN    int   // bytes returned by the last Read
	err      error
}

func (c *countOut) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	c.lastN = n
	if n > 0 {
		c.n += int64(n)
		c.trackZeros(p[:n])
		if c.lim.MaxTotal > 0 && c.n > c.lim.MaxTotal {
			c.err = fmt.Errorf("%w: more than %d bytes decompressed (MaxTotal)", ErrLimit, c.lim.MaxTotal)
			return 0, c.err
		}
		if in := c.compressed(); c.in != nil && c.lim.MaxRatio > 0 && c.n > RatioGrace && in > 0 {
			if r := float64(c.n) / float64(in); r > c.lim.MaxRatio {
				c.err = fmt.Errorf("%w: decompression bomb: %d bytes from %d compressed bytes (ratio %.0f > MaxRatio %.0f)",
					ErrLimit, c.n, in, r, c.lim.MaxRatio)
				return 0, c.err
			}
		}
	}
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

func (c *countOut) compressed() int64 {
	if c.in == nil {
		return 0
	}
	return c.in.n.Load()
}

func (c *countOut) trackZeros(p []byte) {
	i := len(p)
	for i > 0 && p[i-1] == 0 {
		i--
	}
	if i == 0 {
		c.zeroTail += int64(len(p))
	} else {
		c.zeroTail = int64(len(p) - i)
	}
}
