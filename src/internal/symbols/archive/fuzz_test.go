package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzReader feeds arbitrary bytes to Next, Read and Extract. Invariants: no panic; every
// error of Next and Read carries one of the package's sentinels; names are clean and inside;
// nothing is created outside the directory, and nothing but directories and regular files in it.
func FuzzReader(f *testing.F) {
	elf := readFile(f, filepath.Join(corpus, "c-separate-debug", "x86_64", "libfilter.so"))
	plain := goTar(f, tar.FormatPAX,
		member{name: "./", typ: tar.TypeDir},
		member{name: "./usr/lib/libfilter.so", typ: tar.TypeReg, data: elf, mode: 0o755},
		member{name: "usr/lib/l", typ: tar.TypeSymlink, link: "libfilter.so"},
		member{name: "usr/lib/h", typ: tar.TypeLink, link: "usr/lib/libfilter.so"},
		member{name: "dev/null", typ: tar.TypeChar},
		reg("etc/hostname", "qemux86-64\n"),
	)
	f.Add(plain)
	f.Add(goTar(f, tar.FormatGNU, reg(strings.Repeat("long/", 30)+"name", "x"), reg("../up", "x"), reg("/abs", "x")))
	f.Add(goTar(f, tar.FormatUSTAR, reg("a", "a"), reg("a/b", "b"), member{name: "a/c", typ: tar.TypeSymlink, link: "/"}))
	for _, k := range []Kind{Gzip, XZ, Zstd} {
		f.Add(goCompress(f, k, plain))
	}
	if _, err := exec.LookPath("bzip2"); err == nil {
		f.Add(goCompress(f, Bzip2, plain))
	}
	big := append(ustarHeader("big", tar.TypeReg, 10), pad(bytes.Repeat([]byte("A"), 700))...)
	f.Add(append(big, make([]byte, 1024)...))
	if _, err := exec.LookPath("tar"); err == nil {
		dir := f.TempDir()
		fh, err := os.Create(filepath.Join(dir, "sparse"))
		require.NoError(f, err)
		_, err = fh.WriteAt([]byte("data"), 1<<20)
		require.NoError(f, err)
		require.NoError(f, fh.Close())
		f.Add(gnuTar(f, dir, "--format=gnu", "--sparse"))
		f.Add(gnuTar(f, dir, "--format=pax", "--sparse"))
	}

	lim := Limits{MaxTotal: 32 << 20, MaxMember: 4 << 20, MaxEntries: 200, MaxRatio: 200, MaxWindow: 8 << 20}
	base := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		root, err := os.MkdirTemp(base, "")
		require.NoError(t, err)
		defer os.RemoveAll(root)
		dest := filepath.Join(root, "dest")
		require.NoError(t, os.Mkdir(dest, 0o755))
		r, err := NewReader(bytes.NewReader(data), lim, PureGo())
		if err != nil {
			requireSentinel(t, err)
			return
		}
		defer r.Close()
		for i := 0; ; i++ {
			e, err := r.Next()
			if err == io.EOF {
				break
			}
			if errors.Is(err, ErrRefused) {
				continue
			}
			if err != nil {
				requireSentinel(t, err)
				break
			}
			require.False(t, e.Name == "" || e.Name[0] == '/' || path.Clean(e.Name) != e.Name, "name %q", e.Name)
			require.NotContains(t, "/"+e.Name+"/", "/../")
			if e.Type != tar.TypeReg {
				continue
			}
			if i%2 == 1 {
				n, err := io.Copy(io.Discard, r)
				if err != nil {
					requireSentinel(t, err)
					break
				}
				require.Equal(t, e.Size, n)
				continue
			}
			p, err := r.Extract(dest)
			if err == nil {
				fi, err := os.Lstat(p)
				require.NoError(t, err)
				require.Equal(t, e.Size, fi.Size())
				require.True(t, strings.HasPrefix(p, dest+string(filepath.Separator)))
			}
		}
		onlyInside(t, root, dest)
	})
}

func requireSentinel(t *testing.T, err error) {
	t.Helper()
	for _, s := range []error{ErrRefused, ErrLimit, ErrTruncated, ErrCorrupt, ErrUnsupported} {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error without a sentinel: %v", err)
}
