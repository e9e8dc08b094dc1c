package debugpkg

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/testutil/gdbbt"
	"meta-memfault-go/internal/testutil/yoctoimage"
)

// buildIDTree lays files out as gdb's debug-file-directory looks for them by build-id:
// .build-id/xx/yyyy.debug.
func buildIDTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for id, f := range files {
		p := filepath.Join(dir, ".build-id", id[:2], id[2:]+".debug")
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.Symlink(f, p))
	}
	return dir
}

var atRe = regexp.MustCompile(` at (\S+:\d+)$`)

// crashFrames runs a program of the image under gdb until it faults and returns its frames
// ("function at file:line"), with gdb finding debug files in debugDir only (-iex: set before
// gdb loads the program, whose debug file it looks up right away).
func crashFrames(t *testing.T, img *yoctoimage.Image, debugDir string, argv ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := []string{"-nx", "-batch",
		"-iex", "set debuginfod enabled off",
		"-iex", "set debug-file-directory " + debugDir,
		"-ex", "set env LD_LIBRARY_PATH=" + img.HostPath("/usr/lib"),
		"-ex", "run", "-ex", "bt", "--args", img.HostPath(argv[0])}
	cmd := exec.CommandContext(ctx, "gdb", append(args, argv[1:]...)...)
	cmd.Env = append(os.Environ(), "DEBUGINFOD_URLS=")
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), "ptrace: Operation not permitted") {
		t.Skipf("gdb cannot run programs here: %s", out)
	}
	require.NoError(t, err, "%s", out)
	var frames []string
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		f := gdbbt.FrameName(line)
		if m := atRe.FindStringSubmatch(line); m != nil {
			f += " at " + filepath.Base(m[1])
		}
		frames = append(frames, f)
	}
	require.NotEmpty(t, frames, "%s", out)
	return frames
}

// The symbol files give gdb what the unstripped programs give it: every frame of a crash in a
// shared library called from a PIE, and in a C++ template, with its source line.
func TestGDBSymbolizesCrash(t *testing.T) {
	if _, err := exec.LookPath("gdb"); err != nil {
		t.Skip("gdb not installed")
	}
	b := defaultBuild(t)
	img := b.Image(t, StyleFileDir, yoctoimage.XZ)
	res, err := FromYocto(context.Background(), img.Rootfs, img.Dbg, Options{TmpDir: t.TempDir()})
	require.NoError(t, err)
	defer res.Close()
	ours, originals := map[string]string{}, map[string]string{}
	for _, s := range res.Symbols {
		ours[s.BuildID] = s.File
	}
	for _, e := range img.ELFs {
		if e.BuildID != "" {
			originals[e.BuildID] = e.Original
		}
	}
	oursDir, origDir, emptyDir := buildIDTree(t, ours), buildIDTree(t, originals), t.TempDir()

	for _, argv := range [][]string{{"/usr/bin/crasher", "crash"}, {"/usr/bin/cxx", "crash"}, {"/usr/sbin/nopie", "crash"}} {
		want := crashFrames(t, img, origDir, argv...)
		got := crashFrames(t, img, oursDir, argv...)
		require.Equal(t, want, got, argv[0])
		bare := crashFrames(t, img, emptyDir, argv...)
		require.NotEqual(t, want, bare, "without symbol files gdb must see less")
		t.Logf("%s: %s", argv[0], strings.Join(got, " | "))
	}
	crasher := strings.Join(crashFrames(t, img, oursDir, "/usr/bin/crasher", "crash"), "\n")
	for _, f := range []string{"crash_bottom at libcrash.c:", "crash_descend at libcrash.c:", "run at crasher.c:", "main at crasher.c:"} {
		require.Contains(t, crasher, f)
	}
	require.Contains(t, strings.Join(crashFrames(t, img, oursDir, "/usr/bin/cxx", "crash"), "\n"), "shapes::Stack<int>::poke at cxx.cpp:")
	require.Contains(t, strings.Join(crashFrames(t, img, oursDir, "/usr/sbin/nopie", "crash"), "\n"), "nopie_leaf at nopie.c:")
}
