package handler

import (
	"compress/gzip"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// compressor wraps the output file for one compression setting.
type compressor struct {
	ext      string // file name suffix after ".elf"
	manifest string // value of metadata.compression; empty for none
	wrap     func(io.Writer) (io.WriteCloser, error)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func compressorFor(name string) (compressor, error) {
	switch name {
	case "gzip", "":
		return compressor{".gz", "gzip", func(w io.Writer) (io.WriteCloser, error) {
			return gzip.NewWriterLevel(w, gzip.DefaultCompression)
		}}, nil
	case "zstd":
		return compressor{".zst", "zstd", func(w io.Writer) (io.WriteCloser, error) {
			// One goroutine and a small window keep the handler's memory flat; cores are
			// mostly stacks and headers, which need no long-distance matches.
			return zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20),
				zstd.WithLowerEncoderMem(true), zstd.WithEncoderLevel(zstd.SpeedDefault))
		}}, nil
	case "none":
		return compressor{"", "", func(w io.Writer) (io.WriteCloser, error) { return nopCloser{w}, nil }}, nil
	}
	return compressor{}, fmt.Errorf("unknown compression %q", name)
}
