package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/server/group"
	"meta-memfault-go/internal/testutil/gdbbt"
	"meta-memfault-go/internal/testutil/kerneltest"
	"meta-memfault-go/internal/testutil/symtest"
	"meta-memfault-go/internal/testutil/yoctoimage"
)

// TestYoctoSymbolsToServer is the symbol uploader's whole path: a miniature Yocto image (a PIE
// using a shared library, split in OE-core's default style, zstd tarballs) goes through
// `memfault upload-yocto-symbols` into a real memfault-server; then the stripped program, run
// from the image's tree, crashes under the real kernel, and the server names every frame of
// the crash with file and line, the same functions gdb names with the unstripped programs. A
// second upload sends nothing.
func TestYoctoSymbolsToServer(t *testing.T) {
	dir := kerneltest.ShortTempDir(t)
	kerneltest.Hook(t, filepath.Join(dir, "core.%p")) // skips unless root may set core_pattern
	yoctoimage.Need(t)
	yoctoimage.Need(t, "eu-unstrip", "gdb")
	b := yoctoimage.Compile(t, yoctoimage.Default())
	img := b.Image(t, yoctoimage.StyleWithSrcpkg, yoctoimage.Zstd)

	// The host's C library stands in for the image's (its symbols are not in this image).
	s := startServer(t, buildServer(t), "--symbols-dir", "/lib/x86_64-linux-gnu", "--symbols-dir", "/usr/lib/debug/.build-id")
	cli := filepath.Join(t.TempDir(), "memfault")
	out, err := exec.Command("go", "build", "-o", cli, "meta-memfault-go/cmd/memfault").CombinedOutput()
	require.NoError(t, err, string(out))
	cache := t.TempDir() // the image index cache, not the user's
	upload := func() string {
		cmd := exec.Command(cli, "--org", symtest.Org, "--project", symtest.Project, "--url", s.url,
			"upload-yocto-symbols", "--image", img.Rootfs, "--dbg-image", img.Dbg)
		cmd.Env = append(os.Environ(), "MEMFAULT_ORG_TOKEN="+symtest.Token, "TMPDIR="+t.TempDir(), "MEMFAULT_CACHE_DIR="+cache)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		return string(out)
	}
	first := upload()
	require.Contains(t, first, "/usr/bin/crasher")
	require.Contains(t, first, "/usr/lib/libcrash.so.1.0.0")
	second := upload()
	require.NotContains(t, second, "uploaded /usr/", "the second run sends no file:\n%s", second)
	require.Contains(t, second, "the -dbg image was not read", "the second run reads the rootfs only:\n%s", second)
	require.Contains(t, second, "its index came from the cache", "the second run reads neither tarball:\n%s", second)

	// The crash, from the stripped files of the image.
	// A core_pattern naming a file honours RLIMIT_CORE, which may be 0 here.
	crash := exec.Command("sh", "-c", `ulimit -c unlimited && exec "$0" crash`, img.HostPath("/usr/bin/crasher"))
	crash.Env = append(os.Environ(), "LD_LIBRARY_PATH="+img.HostPath("/usr/lib"))
	require.Error(t, crash.Run(), "crasher crash must crash")
	var core string
	require.Eventually(t, func() bool {
		m, _ := filepath.Glob(filepath.Join(dir, "core.*"))
		if len(m) == 1 {
			core = m[0]
		}
		return core != ""
	}, 10*time.Second, 20*time.Millisecond)
	var full []byte
	require.Eventually(t, func() bool { // the kernel may still be writing it
		b1, _ := os.ReadFile(core)
		time.Sleep(50 * time.Millisecond)
		b2, _ := os.ReadFile(core)
		full = b2
		return len(b1) == len(b2) && len(b2) > 0
	}, 10*time.Second, 50*time.Millisecond)

	persist := t.TempDir()
	capture(t, full, persist, "threads", "dev-yocto", "1.0")
	deliver(t, s, persist, "dev-yocto", "1.0")
	issues := s.waitIssues(t, 1)
	require.Len(t, issues, 1)
	require.False(t, issues[0].SymbolsMissing)
	threads := s.latestThreads(t, issues[0].ID)
	crashed := threads[0]
	var ours []string
	for _, f := range crashed.Frames {
		base := filepath.Base(f.Module)
		if base != "crasher" && !strings.HasPrefix(base, "libcrash.so") {
			continue
		}
		require.NotEmpty(t, f.Function, "%+v", f)
		if f.Function == "_start" {
			continue // crt1.o's code, without DWARF
		}
		require.Equal(t, "dwarf", f.Symbols, "%+v", f)
		require.NotEmpty(t, f.File, "%+v", f)
		require.Positive(t, f.Line, "%+v", f)
		ours = append(ours, group.Normalize(f.Function))
	}
	require.Equal(t, []string{"crash_bottom", "crash_descend", "crash_descend", "crash_descend", "crash_descend", "run", "main"}, ours)

	// gdb on the kernel's full core with the unstripped programs names the same frames.
	// The core names the library by its path in the image's tree, which holds the stripped
	// file: a sysroot puts the unstripped one there (and the host's C library beside it).
	sysroot := t.TempDir()
	lib := filepath.Join(sysroot, img.HostPath("/usr/lib/libcrash.so.1"))
	require.NoError(t, os.MkdirAll(filepath.Dir(lib), 0o755))
	require.NoError(t, os.Symlink(b.Unstripped("/usr/lib/libcrash.so.1.0.0"), lib))
	for _, d := range []string{"/lib", "/lib64"} {
		require.NoError(t, os.Symlink(d, filepath.Join(sysroot, d)))
	}
	gdb, err := exec.Command("gdb", "-nx", "-batch", "-ex", "set sysroot "+sysroot,
		"-ex", "file "+b.Unstripped("/usr/bin/crasher"), "-ex", "core-file "+core, "-ex", "thread apply all bt").CombinedOutput()
	require.NoError(t, err, string(gdb))
	want := gdbbt.Parse(string(gdb))
	require.Len(t, want, 1, "%s", gdb)
	for i, f := range want[0].Frames {
		want[0].Frames[i] = group.Normalize(f)
	}
	require.Equal(t, want[0].Frames, ours, "gdb names the same functions up to main")
	if d := gdbbt.DiffPrefix(want, toGDB(threads[:1])); d != "" {
		t.Errorf("server frames differ from gdb's:\n%s\ngdb:\n%s", d, gdb)
	}
}
