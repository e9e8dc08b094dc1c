package debugpkg

import (
	"archive/tar"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/testutil/yoctoimage"
)

func skippedFor(res *Result, p string) *Skipped {
	for i := range res.Skipped {
		if res.Skipped[i].Path == p {
			return &res.Skipped[i]
		}
	}
	return nil
}

func symbolFor(res *Result, p string) *Symbol {
	for i := range res.Symbols {
		if res.Symbols[i].Path == p {
			return &res.Symbols[i]
		}
	}
	return nil
}

// infoFor finds the ELFInfo of an image path, or of one of its links.
func infoFor(res *Result, p string) *ELFInfo {
	for i := range res.ELFs {
		if res.ELFs[i].Path == p {
			return &res.ELFs[i]
		}
		for _, l := range res.ELFs[i].Links {
			if l == p {
				return &res.ELFs[i]
			}
		}
	}
	return nil
}

// The trees Yocto packs can be given as directories; there a file without read permission
// cannot be read. Root reads everything, so as root the test runs again as user nobody.
func TestDirectoryImage(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Run("root", func(t *testing.T) {
			img := defaultBuild(t).Image(t, StyleFileDir, yoctoimage.None)
			require.NoError(t, os.Chmod(img.HostPath("/usr/sbin/secret"), 0))
			res, err := FromYocto(context.Background(), img.RootDir, img.DbgDir, Options{TmpDir: t.TempDir()})
			require.NoError(t, err)
			defer res.Close()
			require.Equal(t, StyleFileDir, res.SplitStyle)
			checkImage(t, img, res)
		})
		t.Run("nobody", func(t *testing.T) {
			defaultBuild(t) // the tools are there
			runAsNobody(t, "^TestDirectoryImage$")
		})
		return
	}
	img := defaultBuild(t).Image(t, StyleFileDir, yoctoimage.None)
	secret := img.HostPath("/usr/sbin/secret")
	require.NoError(t, os.Chmod(secret, 0))
	defer os.Chmod(secret, 0o755)
	res, err := FromYocto(context.Background(), img.RootDir, img.DbgDir, Options{TmpDir: t.TempDir()})
	require.NoError(t, err)
	defer res.Close()
	require.Equal(t, StyleFileDir, res.SplitStyle)
	s := skippedFor(res, "/usr/sbin/secret")
	require.NotNil(t, s)
	require.Equal(t, ReasonNotReadable, s.Reason)
	require.Contains(t, s.Detail, "permission denied")
	require.Nil(t, symbolFor(res, "/usr/sbin/secret"))
	require.NotNil(t, symbolFor(res, "/usr/bin/crasher"))
	require.Len(t, res.Symbols, img.ProgramsWithDebug-1)
}

// runAsNobody runs tests of this test binary as user nobody (uid 65534).
func runAsNobody(t *testing.T, run string) {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	dir, err := os.MkdirTemp("", "debugpkg-nobody-") // t.TempDir's parent is private
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o777))
	bin := filepath.Join(dir, "debugpkg.test")
	data, err := os.ReadFile(exe)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, data, 0o755))
	wd, err := os.Getwd()
	require.NoError(t, err)
	cmd := exec.Command(bin, "-test.run", run, "-test.count=1", "-test.v")
	cmd.Dir = wd
	cmd.Env = append(os.Environ(), "TMPDIR="+dir, "HOME="+dir, "GOCACHE="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil && len(out) == 0 {
		t.Skipf("cannot run the test binary as nobody here: %v", err)
	}
	require.NoError(t, err, "as nobody:\n%s", out)
	require.Contains(t, string(out), "--- PASS: TestDirectoryImage")
}

// upload-elf-symbols: one archive holding binaries and debug files together (here the rootfs
// and the -dbg rootfs in one tarball). With no split style given, every style's places are
// tried.
func TestFromArchive(t *testing.T) {
	for _, style := range []string{StyleWithoutSrc, StyleFileDir} {
		t.Run(style, func(t *testing.T) {
			img := defaultBuild(t).Image(t, style, yoctoimage.None)
			archive := filepath.Join(t.TempDir(), "elfs.tar.gz")
			out, err := exec.Command("tar", "-czf", archive, "-C", img.RootDir, ".", "-C", img.DbgDir, ".").CombinedOutput()
			require.NoError(t, err, "%s", out)
			res, err := FromArchive(context.Background(), archive, Options{TmpDir: t.TempDir()})
			require.NoError(t, err)
			defer res.Close()
			require.Empty(t, res.SplitStyle)
			for _, e := range img.ELFs {
				info := infoFor(res, e.Path)
				require.NotNil(t, info, e.Path)
				require.Equal(t, e.PairedBy, info.PairedBy, e.Path)
				if e.PairedBy != "" {
					sym := symbolFor(res, info.Path)
					require.NotNil(t, sym, e.Path)
					require.Equal(t, SourceUnstripped, sym.Source)
					checkSymbolFile(t, *sym, &e)
				}
			}
			// The sources of /usr/src/debug are files of this archive.
			for _, p := range img.SourceFilesInDbg {
				s := skippedFor(res, p)
				require.NotNil(t, s, p)
				require.Equal(t, ReasonNotELF, s.Reason)
			}
		})
	}
}

// DISTRO_FEATURES minidebuginfo: the stripped binaries carry .gnu_debugdata; eu-unstrip still
// recombines them.
func TestMiniDebugInfo(t *testing.T) {
	yoctoimage.Need(t)
	spec := yoctoimage.Spec{MiniDebugInfo: true, Programs: yoctoimage.Default().Programs[:4]}
	img := yoctoimage.Compile(t, spec).Image(t, StyleWithSrcpkg, yoctoimage.Zstd)
	require.Contains(t, readelfSections(t, img.HostPath("/usr/bin/crasher")), ".gnu_debugdata")
	res, err := FromYocto(context.Background(), img.Rootfs, img.Dbg, Options{TmpDir: t.TempDir()})
	require.NoError(t, err)
	defer res.Close()
	checkImage(t, img, res)
}

// A split style given that is not the image's: build-ids still pair; the path fallback looks in
// the wrong place, and the .gnu_debuglink (searched as gdb does) finds the file.
func TestSplitStyleGiven(t *testing.T) {
	img := defaultBuild(t).Image(t, StyleFileDir, yoctoimage.Gzip)
	res, err := FromYocto(context.Background(), img.Rootfs, img.Dbg, Options{TmpDir: t.TempDir(), SplitStyle: StyleDebug})
	require.NoError(t, err)
	defer res.Close()
	require.Equal(t, StyleDebug, res.SplitStyle)
	require.Equal(t, PairedByBuildID, infoFor(res, "/usr/bin/crasher").PairedBy)
	require.Equal(t, PairedByDebuglink, infoFor(res, "/usr/bin/bypath").PairedBy)
	require.NotNil(t, symbolFor(res, "/usr/bin/bypath"))

	_, err = FromYocto(context.Background(), img.Rootfs, img.Dbg, Options{TmpDir: t.TempDir(), SplitStyle: "dbg"})
	require.ErrorContains(t, err, "unknown split style")
}

// writeTar writes a tarball of the given members (name -> contents; a value starting with
// "->" is a symlink).
func writeTar(t *testing.T, p string, members [][2]string) {
	t.Helper()
	f, err := os.Create(p)
	require.NoError(t, err)
	tw := tar.NewWriter(f)
	for _, m := range members {
		h := &tar.Header{Name: m[0], Mode: 0o755, Size: int64(len(m[1])), Typeflag: tar.TypeReg}
		if strings.HasPrefix(m[1], "->") {
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, m[1][2:], 0
		}
		require.NoError(t, tw.WriteHeader(h))
		if h.Typeflag == tar.TypeReg {
			_, err := tw.Write([]byte(m[1]))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	require.NoError(t, f.Close())
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

// Hostile and broken members: each reported, none fatal, no panic.
func TestBrokenMembers(t *testing.T) {
	b := defaultBuild(t)
	img := b.Image(t, StyleDebug, yoctoimage.None)
	stripped := readFile(t, img.HostPath("/bin/crasher"))
	nopie := readFile(t, img.HostPath("/usr/sbin/nopie"))
	// A debug file of another build at the binary's path: not paired, and said why.
	otherDebug := readFile(t, img.DbgDir+"/usr/bin/.debug/cxx")
	dir := t.TempDir()
	archive := filepath.Join(dir, "broken.tar")
	writeTar(t, archive, [][2]string{
		{"./usr/bin/truncated", stripped[:200]},
		{"./usr/bin/garbage", "\x7fELF" + strings.Repeat("\xff", 100)},
		{"./usr/bin/tiny", "\x7fEL"},
		{"./usr/bin/empty", ""},
		{"./usr/sbin/nopie", nopie},
		{"./usr/sbin/.debug/nopie", otherDebug},
		{"./usr/bin/loop1", "->loop2"},
		{"./usr/bin/loop2", "->loop1"},
		{"./usr/bin/up", "->../../usr/sbin/nopie"},
		{"./usr/bin/escape", "->../../../../usr/sbin/nopie"},
		{"./usr/sbin2", "->sbin"},
		{"./usr/lib/nopie-via-dir", "->../sbin2/nopie"},
		{"/abs/nopie", nopie},
	})
	res, err := FromArchive(context.Background(), archive, Options{TmpDir: t.TempDir()})
	require.NoError(t, err)
	defer res.Close()
	for p, reason := range map[string]string{
		"/usr/bin/truncated": ReasonMalformed,
		"/usr/bin/garbage":   ReasonMalformed,
		"/usr/bin/tiny":      ReasonNotELF,
		"/usr/bin/empty":     ReasonNotELF,
		"/usr/sbin/nopie":    ReasonNoDebug,
		"/usr/bin/escape":    ReasonRefused,
		"/abs/nopie":         ReasonRefused,
	} {
		s := skippedFor(res, p)
		require.NotNil(t, s, p)
		require.Equal(t, reason, s.Reason, p)
	}
	require.Contains(t, skippedFor(res, "/usr/sbin/nopie").Detail, "has build-id "+img.Expect("/usr/bin/cxx").BuildID)
	require.Equal(t, ReasonOrphanDebug, skippedFor(res, "/usr/sbin/.debug/nopie").Reason)
	require.Equal(t, []string{"/usr/bin/up", "/usr/lib/nopie-via-dir"}, infoFor(res, "/usr/sbin/nopie").Links, "symlinks resolve inside the image")
	require.Empty(t, res.Symbols)
}

// When eu-unstrip cannot recombine a pair (here a debug file that kept only the DWARF and the
// build-id note), the debug file alone is uploaded.
func TestDebugOnlyFallback(t *testing.T) {
	b := defaultBuild(t)
	img := b.Image(t, StyleWithoutSrc, yoctoimage.None)
	dir := t.TempDir()
	dbg := filepath.Join(dir, "plain.debug")
	out, err := exec.Command("objcopy", "--only-section=.note.gnu.build-id", "--only-section=.debug_*", b.Unstripped("/usr/bin/plain"), dbg).CombinedOutput()
	require.NoError(t, err, "%s", out)
	archive := filepath.Join(dir, "a.tar")
	writeTar(t, archive, [][2]string{
		{"usr/bin/plain", readFile(t, img.HostPath("/usr/bin/plain"))},
		{"usr/lib/debug/usr/bin/plain.debug", readFile(t, dbg)},
	})
	var logs []string
	res, err := FromArchive(context.Background(), archive, Options{TmpDir: t.TempDir(), Log: func(f string, a ...any) {
		logs = append(logs, f)
	}})
	require.NoError(t, err)
	defer res.Close()
	sym := symbolFor(res, "/usr/bin/plain")
	require.NotNil(t, sym)
	require.Equal(t, SourceDebugOnly, sym.Source)
	require.Equal(t, img.Expect("/usr/bin/plain").BuildID, readelfBuildID(t, sym.File))
	require.Contains(t, readelfSections(t, sym.File), ".debug_info")
	require.Equal(t, PairedByBuildID, infoFor(res, "/usr/bin/plain").PairedBy)
}

func TestCancel(t *testing.T) {
	img := defaultBuild(t).Image(t, StyleDebug, yoctoimage.Bzip2)
	tmp := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := FromYocto(ctx, img.Rootfs, img.Dbg, Options{TmpDir: tmp})
	require.ErrorIs(t, err, context.Canceled)
	entries, err := os.ReadDir(tmp)
	require.NoError(t, err)
	require.Empty(t, entries, "the run's directory is removed on errors")
}

func TestMissingInputs(t *testing.T) {
	tmp := t.TempDir()
	_, err := FromYocto(context.Background(), filepath.Join(tmp, "nope.tar"), filepath.Join(tmp, "nope-dbg.tar"), Options{TmpDir: tmp})
	require.ErrorContains(t, err, "nope")
	_, err = FromArchive(context.Background(), tmp, Options{TmpDir: tmp, EuUnstrip: filepath.Join(tmp, "no-eu-unstrip")})
	require.ErrorContains(t, err, "eu-unstrip")
	entries, err := os.ReadDir(tmp)
	require.NoError(t, err)
	require.Empty(t, entries)
}

func TestResolve(t *testing.T) {
	links := map[string]string{
		"/lib":                "usr/lib",
		"/usr/lib/libc.so":    "libc.so.6",
		"/usr/lib/libc.so.6":  "/lib/libc-2.39.so",
		"/usr/bin/escape":     "../../../../../usr/bin/real",
		"/a":                  "b",
		"/b":                  "a",
		"/usr/bin/dir-parent": "../lib/../bin/real",
	}
	for in, want := range map[string]string{
		"/lib/libc.so":        "/usr/lib/libc-2.39.so",
		"/usr/bin/escape":     "/usr/bin/real",
		"/usr/bin/dir-parent": "/usr/bin/real",
		"/usr/bin/plain":      "/usr/bin/plain",
	} {
		got, ok := resolve(links, in)
		require.True(t, ok, in)
		require.Equal(t, want, got, in)
	}
	_, ok := resolve(links, "/a/x")
	require.False(t, ok, "loops end")
}

// A stripped file and, later in the archive, a copy with DWARF (same build-id): the copy is
// uploaded, once.
func TestStrippedThenUnstrippedCopy(t *testing.T) {
	b := defaultBuild(t)
	img := b.Image(t, StyleDebug, yoctoimage.None)
	archive := filepath.Join(t.TempDir(), "a.tar")
	writeTar(t, archive, [][2]string{
		{"a/plain", readFile(t, img.HostPath("/usr/bin/plain"))},
		{"b/plain-full", readFile(t, b.Unstripped("/usr/bin/plain"))},
		{"c/plain", readFile(t, img.HostPath("/usr/bin/plain"))},
	})
	res, err := FromArchive(context.Background(), archive, Options{TmpDir: t.TempDir()})
	require.NoError(t, err)
	defer res.Close()
	require.Len(t, res.ELFs, 3)
	require.Len(t, res.Symbols, 1)
	require.Equal(t, "/b/plain-full", res.Symbols[0].Path)
	require.Equal(t, SourceBinary, res.Symbols[0].Source)
	require.Empty(t, res.Skipped)
}

// Images given the wrong way round: nothing to pair, and the log says why.
func TestSwappedImages(t *testing.T) {
	img := defaultBuild(t).Image(t, StyleDebug, yoctoimage.Gzip)
	var logs []string
	res, err := FromYocto(context.Background(), img.Dbg, img.Rootfs, Options{TmpDir: t.TempDir(), Log: func(f string, a ...any) {
		logs = append(logs, fmt.Sprintf(f, a...))
	}})
	require.NoError(t, err)
	defer res.Close()
	require.Empty(t, res.ELFs)
	require.Contains(t, strings.Join(logs, "\n"), "swapped")
	require.Contains(t, strings.Join(logs, "\n"), "holds no debug files")
}

// Member names never become paths: whatever a hostile archive names, nothing is written
// outside the run's directory (the archive reader may also refuse such names outright).
func TestHostileNames(t *testing.T) {
	b := defaultBuild(t)
	elfBytes := readFile(t, b.Unstripped("/usr/bin/plain"))
	for name, members := range map[string][][2]string{
		"dotdot":   {{"../../../escaped-elf", elfBytes}},
		"absolute": {{"/tmp/absolute-elf", elfBytes}},
		"symlink-dir": {
			{"usr/lib/evil", "->" + "../../../../tmp"},
			{"usr/lib/evil/through-link-elf", elfBytes},
		},
	} {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			tmp := filepath.Join(base, "tmp")
			require.NoError(t, os.Mkdir(tmp, 0o700))
			archive := filepath.Join(base, "hostile.tar")
			writeTar(t, archive, members)
			res, err := FromArchive(context.Background(), archive, Options{TmpDir: tmp})
			require.NoError(t, err)
			for _, s := range res.Symbols {
				require.True(t, strings.HasPrefix(s.File, tmp+string(filepath.Separator)), s.File)
			}
			refused := skippedFor(res, "/"+strings.TrimLeft(members[0][0], "./"))
			require.NotNil(t, refused, "%+v", res.Skipped)
			require.Equal(t, ReasonRefused, refused.Reason)
			t.Log(refused.Detail)
			require.NoError(t, res.Close())
			var found []string
			require.NoError(t, filepath.Walk(base, func(p string, fi os.FileInfo, err error) error {
				if err == nil && p != base {
					found = append(found, strings.TrimPrefix(p, base))
				}
				return err
			}))
			require.Equal(t, []string{"/hostile.tar", "/tmp"}, found)
			for _, p := range []string{"/tmp/absolute-elf", "/tmp/through-link-elf", filepath.Join(base, "../../../escaped-elf")} {
				_, err := os.Lstat(p)
				require.True(t, os.IsNotExist(err), p)
			}
		})
	}
}
