package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		name string
		head []byte
		kind Kind
		err  error
	}{
		{"gzip", []byte{0x1f, 0x8b, 8, 0}, Gzip, nil},
		{"bzip2", []byte("BZh91AY&SY"), Bzip2, nil},
		{"bzip2 bad level", []byte("BZh0"), None, nil},
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 4}, XZ, nil},
		{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x24}, Zstd, nil},
		{"zstd skippable", []byte{0x5e, 0x2a, 0x4d, 0x18, 4, 0, 0, 0}, Zstd, nil},
		{"tar", ustarHeader("a", tar.TypeReg, 0), None, nil},
		{"short", []byte{0x1f}, None, nil},
		{"empty", nil, None, nil},
		{"lz4", []byte{0x04, 0x22, 0x4d, 0x18, 0x64}, None, ErrUnsupported},
		{"zip", []byte("PK\x03\x04\x14\x00"), None, ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, r, err := Detect(bytes.NewReader(tc.head))
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.kind, k)
			replay, err := io.ReadAll(r)
			require.NoError(t, err)
			require.Equal(t, len(tc.head), len(replay))
			require.True(t, bytes.Equal(tc.head, replay), "the reader replays the sniffed bytes")
		})
	}
}

// makeTree builds a small image: real ELF programs, a hard link, relative and absolute symlinks,
// a sparse file, a long name, a UTF-8 name, an empty file, an extended attribute when the
// filesystem takes one.
func makeTree(t *testing.T) string {
	dir := t.TempDir()
	mk := func(p string) string {
		full := filepath.Join(dir, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		return full
	}
	copyFile := func(src, dst string, mode os.FileMode) {
		require.NoError(t, os.WriteFile(mk(dst), readFile(t, src), mode))
	}
	copyFile(filepath.Join(corpus, "c-separate-debug", "x86_64", "c-separate-debug"), "usr/bin/prog", 0o755)
	copyFile(filepath.Join(corpus, "c-separate-debug", "x86_64", "libfilter.so"), "usr/lib/libfilter.so.1", 0o755)
	copyFile(filepath.Join(corpus, "c-static", "x86_64", "c-static"), "usr/bin/static", 0o755)
	require.NoError(t, os.Link(filepath.Join(dir, "usr/bin/prog"), mk("usr/sbin/prog-hardlink")))
	require.NoError(t, os.Symlink("libfilter.so.1", mk("usr/lib/libfilter.so")))
	require.NoError(t, os.Symlink("/usr/lib/libfilter.so.1", mk("lib/libfilter.so.1")))
	long := "usr/share/" + strings.Repeat("very-long-directory-name/", 6) + strings.Repeat("f", 120) + ".txt"
	require.NoError(t, os.WriteFile(mk(long), []byte("long name\n"), 0o644))
	require.NoError(t, os.WriteFile(mk("usr/share/données/é.txt"), []byte("utf-8\n"), 0o644))
	require.NoError(t, os.WriteFile(mk("etc/empty"), nil, 0o644))
	f, err := os.Create(mk("var/lib/sparse.img"))
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("start"), 0)
	require.NoError(t, err)
	_, err = f.WriteAt(bytes.Repeat([]byte("middle"), 1000), 4<<20)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(8<<20))
	require.NoError(t, f.Close())
	_ = unix.Setxattr(filepath.Join(dir, "usr/bin/prog"), "user.yocto", []byte("1"), 0) // not every fs has user xattrs
	return dir
}

// want lists what an archive of dir must yield: name -> type and link target; hard links
// are matched in the test (tar picks which name holds the data).
func wantEntries(t *testing.T, dir string) map[string]Entry {
	want := map[string]Entry{".": {Name: ".", Type: tar.TypeDir}}
	require.NoError(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		switch {
		case fi.IsDir():
			want[rel] = Entry{Name: rel, Type: tar.TypeDir}
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			require.NoError(t, err)
			l, why := resolveSymlink(rel, target)
			require.Empty(t, why)
			want[rel] = Entry{Name: rel, Type: tar.TypeSymlink, Linkname: l}
		default:
			want[rel] = Entry{Name: rel, Type: tar.TypeReg, Size: fi.Size()}
		}
		return nil
	}))
	return want
}

// checkTree compares what was read with the tree.
func checkTree(t *testing.T, dir string, res *result) {
	want := wantEntries(t, dir)
	require.Empty(t, res.refused)
	seen := map[string]bool{}
	for _, e := range res.entries {
		w, ok := want[e.Name]
		require.True(t, ok, "unexpected member %q", e.Name)
		require.False(t, seen[e.Name], "member %q twice", e.Name)
		seen[e.Name] = true
		switch e.Type {
		case tar.TypeLink: // a second name of a regular file: same inode as its target
			require.Equal(t, byte(tar.TypeReg), w.Type)
			var a, b unix.Stat_t
			require.NoError(t, unix.Stat(filepath.Join(dir, e.Name), &a))
			require.NoError(t, unix.Stat(filepath.Join(dir, e.Linkname), &b))
			require.Equal(t, a.Ino, b.Ino, "%s links to %s", e.Name, e.Linkname)
			require.Contains(t, res.data, e.Linkname, "the link's target came first")
		case tar.TypeReg:
			require.Equal(t, w.Type, e.Type, e.Name)
			require.Equal(t, w.Size, e.Size, e.Name)
			require.True(t, bytes.Equal(readFile(t, filepath.Join(dir, e.Name)), res.data[e.Name]), "content of %s", e.Name)
		default:
			require.Equal(t, w.Type, e.Type, e.Name)
			require.Equal(t, w.Linkname, e.Linkname, e.Name)
		}
	}
	require.Len(t, seen, len(want))
}

var gnuFormats = []struct {
	name string
	args []string
}{
	{"gnu", []string{"--format=gnu", "--sparse"}},
	{"oldgnu", []string{"--format=oldgnu", "--sparse"}},
	{"pax", []string{"--format=pax", "--sparse", "--xattrs"}},
	{"pax-sparse-0.1", []string{"--format=pax", "--sparse", "--sparse-version=0.1"}},
	{"pax-sparse-0.0", []string{"--format=pax", "--sparse", "--sparse-version=0.0"}},
}

func gnuTar(t testing.TB, dir string, args ...string) []byte {
	cmd := exec.Command(need(t, "tar"), append(append([]string{"-C", dir, "-c", "-f", "-"}, args...), ".")...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Run(), errb.String())
	return out.Bytes()
}

// TestGNUTar reads archives made by GNU tar in every format and compression, with the Go
// decoders and with the external ones, and extracts every regular member.
func TestGNUTar(t *testing.T) {
	dir := makeTree(t)
	for _, f := range gnuFormats {
		plain := gnuTar(t, dir, f.args...)
		for _, c := range cliCompressors {
			if f.name != "gnu" && c.name != "none" && c.name != "bzip2" {
				continue // formats and compressions are independent: all compressions of one format
			}
			data := cliCompress(t, c.cmd, plain)
			for _, mode := range []string{"go", "default"} {
				t.Run(f.name+"/"+c.name+"/"+mode, func(t *testing.T) {
					var opts []Option
					if mode == "go" {
						opts = append(opts, PureGo())
					}
					r, err := NewReader(bytes.NewReader(data), DefaultLimits, opts...)
					require.NoError(t, err)
					defer r.Close()
					require.Equal(t, c.kind, r.Kind())
					if p := externalFor(c.kind); p != nil && mode == "default" {
						require.Equal(t, filepath.Base(p.name), r.Decompressor())
					} else {
						require.NotContains(t, []string{"lbzip2", "xz"}, r.Decompressor())
					}
					res, err := readAll(r)
					require.NoError(t, err)
					checkTree(t, dir, res)
					require.Equal(t, int64(len(data)), r.CompressedBytes())
					require.Equal(t, int64(len(plain)), r.DecompressedBytes())
				})
			}
		}
		t.Run(f.name+"/extract", func(t *testing.T) {
			data := cliCompress(t, []string{"zstd", "-q", "-c"}, plain)
			root := t.TempDir()
			dest := filepath.Join(root, "dest")
			require.NoError(t, os.Mkdir(dest, 0o755))
			r, err := NewReader(bytes.NewReader(data), DefaultLimits)
			require.NoError(t, err)
			defer r.Close()
			n := 0
			for {
				e, err := r.Next()
				if err == io.EOF {
					break
				}
				require.NoError(t, err)
				p, err := r.Extract(dest)
				if e.Type != tar.TypeReg {
					require.ErrorIs(t, err, ErrRefused, e.Name)
					continue
				}
				require.NoError(t, err)
				require.Equal(t, filepath.Join(dest, e.Name), p)
				require.True(t, bytes.Equal(readFile(t, filepath.Join(dir, e.Name)), readFile(t, p)), e.Name)
				fi, err := os.Stat(p)
				require.NoError(t, err)
				if e.Mode&0o111 != 0 {
					require.Equal(t, os.FileMode(0o755), fi.Mode().Perm()&0o755)
				}
				n++
			}
			require.GreaterOrEqual(t, n, 7)
			onlyInside(t, root, dest)
		})
	}
}

// TestGoTar reads archives made by archive/tar in each format, compressed by the Go encoders.
func TestGoTar(t *testing.T) {
	elf := readFile(t, filepath.Join(corpus, "c-o2-inline", "x86_64", "c-o2-inline"))
	long := strings.Repeat("d/", 80) + "long-name"
	for _, format := range []tar.Format{tar.FormatUSTAR, tar.FormatPAX, tar.FormatGNU} {
		ms := []member{
			{name: "./", typ: tar.TypeDir, mode: 0o755},
			{name: "./usr/bin/c-o2-inline", typ: tar.TypeReg, data: elf, mode: 0o755},
			{name: "./usr/bin/again", typ: tar.TypeLink, link: "./usr/bin/c-o2-inline"},
			{name: "usr/lib/x.so", typ: tar.TypeSymlink, link: "../bin/./c-o2-inline"},
			{name: "dev/null", typ: tar.TypeChar},
			{name: "run/initctl", typ: tar.TypeFifo},
			reg("etc//hostname", "yocto\n"),
		}
		if format != tar.FormatUSTAR {
			ms = append(ms, reg(long, "x"))
		}
		plain := goTar(t, format, ms...)
		for _, kind := range []Kind{None, Gzip, Bzip2, XZ, Zstd} {
			t.Run(format.String()+"/"+kind.String(), func(t *testing.T) {
				res, err := readBytes(t, goCompress(t, kind, plain), DefaultLimits, PureGo())
				require.NoError(t, err)
				want := []Entry{
					{Name: ".", Type: tar.TypeDir, Mode: 0o755},
					{Name: "usr/bin/c-o2-inline", Type: tar.TypeReg, Size: int64(len(elf)), Mode: 0o755},
					{Name: "usr/bin/again", Type: tar.TypeLink, Linkname: "usr/bin/c-o2-inline", Mode: 0o644},
					{Name: "usr/lib/x.so", Type: tar.TypeSymlink, Linkname: "usr/bin/c-o2-inline", Mode: 0o644},
					{Name: "dev/null", Type: tar.TypeChar, Mode: 0o644},
					{Name: "run/initctl", Type: tar.TypeFifo, Mode: 0o644},
					{Name: "etc/hostname", Type: tar.TypeReg, Size: 6, Mode: 0o644},
				}
				if format != tar.FormatUSTAR {
					want = append(want, Entry{Name: long, Type: tar.TypeReg, Size: 1, Mode: 0o644})
				}
				require.Equal(t, want, res.entries)
				require.True(t, bytes.Equal(elf, res.data["usr/bin/c-o2-inline"]))
				require.Equal(t, "yocto\n", string(res.data["etc/hostname"]))
			})
		}
	}
}

// TestGlobalPAXHeader: archive-wide records are not members.
func TestGlobalPAXHeader(t *testing.T) {
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	require.NoError(t, w.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "yocto"}}))
	require.NoError(t, w.WriteHeader(&tar.Header{Name: "a", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644}))
	_, err := w.Write([]byte("a"))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	res, err := readBytes(t, b.Bytes(), DefaultLimits)
	require.NoError(t, err)
	require.Equal(t, []Entry{{Name: "a", Type: tar.TypeReg, Size: 1, Mode: 0o644}}, res.entries)
}

// TestExtractReplaces: a later member of the same name replaces the earlier one, as with tar.
func TestExtractReplaces(t *testing.T) {
	data := goTar(t, tar.FormatPAX, reg("a/f", "first"), reg("a/f", "second"), reg("a", "a file over a directory"))
	dest := t.TempDir()
	r, err := NewReader(bytes.NewReader(data), DefaultLimits)
	require.NoError(t, err)
	defer r.Close()
	for i := 0; i < 2; i++ {
		_, err := r.Next()
		require.NoError(t, err)
		_, err = r.Extract(dest)
		require.NoError(t, err)
	}
	require.Equal(t, "second", string(readFile(t, filepath.Join(dest, "a/f"))))
	_, err = r.Next()
	require.NoError(t, err)
	_, err = r.Extract(dest)
	var me *MemberError
	require.ErrorAs(t, err, &me)
	require.Equal(t, "a", me.Member)
	require.Contains(t, err.Error(), "rename")
	entries, err := os.ReadDir(filepath.Join(dest, "a"))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file is left behind")
	_, err = r.Next()
	require.Equal(t, io.EOF, err)
}

// TestExtractAfterRead: Extract wants the whole member.
func TestExtractAfterRead(t *testing.T) {
	r, err := NewReader(bytes.NewReader(goTar(t, tar.FormatPAX, reg("a", "abc"))), DefaultLimits)
	require.NoError(t, err)
	defer r.Close()
	_, err = r.Next()
	require.NoError(t, err)
	_, err = r.Read(make([]byte, 1))
	require.NoError(t, err)
	_, err = r.Extract(t.TempDir())
	require.ErrorContains(t, err, "Extract after Read")
}

func TestOpen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "image.tar.xz")
	require.NoError(t, os.WriteFile(p, goCompress(t, XZ, goTar(t, tar.FormatGNU, reg("x", "y"))), 0o644))
	r, err := Open(p, DefaultLimits)
	require.NoError(t, err)
	require.Equal(t, XZ, r.Kind())
	res, err := readAll(r)
	require.NoError(t, err)
	require.Equal(t, "y", string(res.data["x"]))
	require.NoError(t, r.Close())
	_, err = r.Next()
	require.Error(t, err)

	_, err = Open(filepath.Join(t.TempDir(), "missing.tar"), DefaultLimits)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func isTruncOrCorrupt(err error) bool {
	return errors.Is(err, ErrTruncated) || errors.Is(err, ErrCorrupt)
}
