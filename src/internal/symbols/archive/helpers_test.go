package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"
)

// corpus is the directory of real ELF programs used as archive content.
var corpus = filepath.Join("..", "..", "..", "testdata", "corpus")

func need(t testing.TB, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		t.Skipf("%s is not installed", prog)
	}
	return p
}

// run runs a command with stdin and returns its stdout.
func run(t testing.TB, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(need(t, name), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Run(), "%s %v: %s", name, args, errb.String())
	return out.Bytes()
}

// cliCompressors compress with the real tools; the key names the tool and its options.
var cliCompressors = []struct {
	name string
	kind Kind
	cmd  []string
}{
	{"none", None, nil},
	{"gzip", Gzip, []string{"gzip", "-9", "-n", "-c"}},
	{"pigz", Gzip, []string{"pigz", "-9", "-n", "-c", "-b", "32"}},
	{"bzip2", Bzip2, []string{"bzip2", "-9", "-c"}},
	{"lbzip2", Bzip2, []string{"lbzip2", "-1", "-z", "-c"}},
	{"pbzip2", Bzip2, []string{"pbzip2", "-1", "-b1", "-z", "-c"}}, // several concatenated streams
	{"xz", XZ, []string{"xz", "-6", "-c"}},
	{"xz-multiblock", XZ, []string{"xz", "-3", "-T2", "--block-size=256KiB", "--check=sha256", "-c"}},
	{"xz-crc32", XZ, []string{"xz", "-0", "--check=crc32", "-c"}},
	{"zstd", Zstd, []string{"zstd", "-q", "-3", "-c"}},
	{"zstd-19-long", Zstd, []string{"zstd", "-q", "-19", "--long=24", "-c"}},
}

// cliCompress compresses data with a command; results are kept for the other tests of the run
// (xz -6 and zstd -19 are slow).
func cliCompress(t testing.TB, cmd []string, data []byte) []byte {
	t.Helper()
	if cmd == nil {
		return data
	}
	key := fmt.Sprintf("%q %x", cmd, sha256.Sum256(data))
	compressed.Lock()
	defer compressed.Unlock()
	if c, ok := compressed.m[key]; ok {
		return c
	}
	c := run(t, data, cmd[0], cmd[1:]...)
	compressed.m[key] = c
	return c
}

var compressed = struct {
	sync.Mutex
	m map[string][]byte
}{m: map[string][]byte{}}

// goCompress compresses with the Go encoders (bzip2 has none: the CLI).
func goCompress(t testing.TB, kind Kind, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	switch kind {
	case None:
		return data
	case Gzip:
		w := gzip.NewWriter(&b)
		_, err := w.Write(data)
		require.NoError(t, err)
		require.NoError(t, w.Close())
	case Bzip2:
		return run(t, data, "bzip2", "-c")
	case XZ:
		w, err := xz.NewWriter(&b)
		require.NoError(t, err)
		_, err = w.Write(data)
		require.NoError(t, err)
		require.NoError(t, w.Close())
	case Zstd:
		w, err := zstd.NewWriter(&b)
		require.NoError(t, err)
		_, err = w.Write(data)
		require.NoError(t, err)
		require.NoError(t, w.Close())
	}
	return b.Bytes()
}

// member describes a member for goTar.
type member struct {
	name string
	typ  byte
	link string
	data []byte
	mode int64
}

func reg(name, data string) member { return member{name: name, typ: tar.TypeReg, data: []byte(data)} }

// goTar writes members with archive/tar, which does not judge names.
func goTar(t testing.TB, format tar.Format, ms ...member) []byte {
	t.Helper()
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	for _, m := range ms {
		mode := m.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: m.name, Typeflag: m.typ, Linkname: m.link, Size: int64(len(m.data)), Mode: mode, Format: format}
		if m.typ != tar.TypeReg {
			h.Size = 0
		}
		if m.typ == tar.TypeChar || m.typ == tar.TypeBlock {
			h.Devmajor, h.Devminor = 1, 3
		}
		require.NoError(t, w.WriteHeader(h))
		if h.Size > 0 {
			_, err := w.Write(m.data)
			require.NoError(t, err)
		}
	}
	require.NoError(t, w.Close())
	return b.Bytes()
}

// result is everything read from an archive.
type result struct {
	entries []Entry
	data    map[string][]byte
	refused []error
}

// readAll reads every member; refusals are collected, any other error ends the read.
func readAll(r *Reader) (*result, error) {
	res := &result{data: map[string][]byte{}}
	for {
		e, err := r.Next()
		if err == io.EOF {
			return res, nil
		}
		if errors.Is(err, ErrRefused) {
			res.refused = append(res.refused, err)
			continue
		}
		if err != nil {
			return res, err
		}
		res.entries = append(res.entries, *e)
		if e.Type == tar.TypeReg {
			b, err := io.ReadAll(r)
			if err != nil {
				return res, err
			}
			res.data[e.Name] = b
		}
	}
}

func readBytes(t testing.TB, data []byte, lim Limits, opts ...Option) (*result, error) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data), lim, opts...)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return readAll(r)
}

// onlyInside fails if anything under root lies outside root/dest, or if dest holds anything but
// directories and regular files.
func onlyInside(t testing.TB, root, dest string) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, err := filepath.Rel(dest, p)
		require.NoError(t, err)
		inDest := rel == "." || !strings.HasPrefix(rel, "..")
		if p == root || p == dest {
			return nil
		}
		if !inDest {
			if strings.HasPrefix(filepath.Base(p), "outside") {
				return nil // the test's own bait
			}
			t.Errorf("written outside %s: %s", dest, p)
			return nil
		}
		if !d.Type().IsDir() && !d.Type().IsRegular() {
			t.Errorf("%s is %v: only files and directories may be created", p, d.Type())
		}
		return nil
	}))
}

// ustarHeader builds a ustar header block by hand, for archives archive/tar refuses to write.
func ustarHeader(name string, typ byte, size int64) []byte {
	h := make([]byte, 512)
	copy(h[0:100], name)
	copy(h[100:108], "0000644\x00")
	copy(h[108:116], "0000000\x00")
	copy(h[116:124], "0000000\x00")
	copy(h[124:136], octal(size, 11)+"\x00")
	copy(h[136:148], "00000000000\x00")
	h[156] = typ
	copy(h[257:263], "ustar\x00")
	copy(h[263:265], "00")
	copy(h[148:156], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:156], octal(int64(sum), 6)+"\x00 ")
	return h
}

func octal(v int64, width int) string {
	s := []byte(strings.Repeat("0", width))
	for i := width - 1; i >= 0 && v > 0; i-- {
		s[i] = byte('0' + v&7)
		v >>= 3
	}
	return string(s)
}

// pad rounds data up to whole 512-byte blocks.
func pad(data []byte) []byte {
	if n := len(data) % 512; n != 0 {
		data = append(data, make([]byte, 512-n)...)
	}
	return data
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}
