package archive

import (
	"bufio"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Option changes how a Reader decompresses.
type Option func(*options)

type options struct {
	pureGo bool
}

// PureGo makes the Reader use only the Go decoders, never an external program.
func PureGo() Option { return func(o *options) { o.pureGo = true } }

// decoder is a decompressed stream and how to release it.
type decoder struct {
	io.Reader
	name  string // "compress/bzip2", "lbzip2", ... for errors and reports
	close func() error
}

// newDecoder starts decompressing src (a buffered reader positioned at the magic bytes).
func newDecoder(kind Kind, src *bufio.Reader, lim Limits, o options) (*decoder, error) {
	var in io.Reader = src
	if kind == XZ {
		// The guard refuses a dictionary over MaxWindow before the decoder allocates it.
		in = newXZGuard(src, lim.window())
	}
	if !o.pureGo {
		if prog := externalFor(kind); prog != nil {
			if d, err := startExternal(prog, in, lim); err == nil {
				return d, nil
			} // it could not start (nothing was read yet): the Go decoder instead
		}
	}
	switch kind {
	case None:
		return &decoder{Reader: src, name: "none", close: func() error { return nil }}, nil
	case Gzip:
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, decodeErr("compress/gzip", err)
		}
		return &decoder{Reader: zr, name: "compress/gzip", close: zr.Close}, nil
	case Bzip2:
		return &decoder{Reader: bzip2.NewReader(src), name: "compress/bzip2", close: func() error { return nil }}, nil
	case XZ:
		// The bufio.Reader gives the decoder the io.ByteReader it reads headers with.
		xr, err := xz.ReaderConfig{DictCap: 1 << 16}.NewReader(bufio.NewReaderSize(in, 64<<10))
		if err != nil {
			return nil, decodeErr("ulikunitz/xz", err)
		}
		return &decoder{Reader: xr, name: "ulikunitz/xz", close: func() error { return nil }}, nil
	case Zstd:
		w := uint64(lim.window())
		zr, err := zstd.NewReader(src, zstd.WithDecoderMaxWindow(w), zstd.WithDecoderMaxMemory(w),
			zstd.WithDecoderConcurrency(zstdConcurrency))
		if err != nil {
			return nil, decodeErr("klauspost/zstd", err)
		}
		return &decoder{Reader: zr, name: "klauspost/zstd", close: func() error { zr.Close(); return nil }}, nil
	}
	return nil, fmt.Errorf("%w: compression %v", ErrUnsupported, kind)
}

// zstdConcurrency: with 1 the decoder works in the caller's goroutine; see the benchmark
// figures in README.md.
const zstdConcurrency = 1

// decodeErr classifies a decoder's error: a stream that ends early is ErrTruncated, anything
// else it complains about is ErrCorrupt. Errors that already carry a sentinel are kept.
func decodeErr(name string, err error) error {
	for _, s := range []error{ErrLimit, ErrCorrupt, ErrTruncated, ErrUnsupported, ErrRefused} {
		if errors.Is(err, s) {
			return err
		}
	}
	if errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		return fmt.Errorf("%w: %s: the stream's window is larger than MaxWindow", ErrLimit, name)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s: the compressed stream ends early", ErrTruncated, name)
	}
	return fmt.Errorf("%w: %s: %v", ErrCorrupt, name, err)
}
