// Package kerneltest lets tests hand real crashes to the real kernel. Hook points
// /proc/sys/kernel/core_pattern somewhere for one test and restores it and core_pipe_limit
// afterwards. Such tests run in several packages, which go test runs in parallel, so every
// use holds one machine-wide lock (flock on a file in /tmp) for the whole test. Only tests
// import this package.
package kerneltest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"meta-memfault-go/internal/testutil/fixture"
)

const (
	PatternPath   = "/proc/sys/kernel/core_pattern"
	PipeLimitPath = "/proc/sys/kernel/core_pipe_limit"
	lockPath      = "/tmp/meta-memfault-go-core_pattern.lock"
)

// Guard skips the test unless it can change core_pattern (Linux, root, writable), takes the
// machine-wide lock, and restores core_pattern and core_pipe_limit when the test ends.
func Guard(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("core_pattern is Linux only")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to write " + PatternPath)
	}
	oldPattern, err := os.ReadFile(PatternPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(PatternPath, bytes.TrimRight(oldPattern, "\n"), 0); err != nil {
		t.Skipf("cannot write %s (%v): not allowed in this environment", PatternPath, err)
	}
	lock, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	// Read again under the lock: another test may just have restored its own values.
	oldPattern, err = os.ReadFile(PatternPath)
	if err != nil {
		t.Fatal(err)
	}
	oldLimit, err := os.ReadFile(PipeLimitPath)
	if err != nil {
		t.Fatal(err)
	}
	oldPattern, oldLimit = bytes.TrimRight(oldPattern, "\n"), bytes.TrimSpace(oldLimit)
	watchdog, err := startWatchdog(lock, oldPattern, oldLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(PatternPath, oldPattern, 0); err != nil {
			t.Errorf("restore core_pattern: %v", err)
		}
		if err := os.WriteFile(PipeLimitPath, oldLimit, 0); err != nil {
			t.Errorf("restore core_pipe_limit: %v", err)
		}
		watchdog.done()
		lock.Close()
	})
}

// A watchdog restores core_pattern and core_pipe_limit when the test process dies without
// running its cleanups (go test's -timeout ends a test binary with a panic; a signal kills
// it): a shell that reads a pipe from the test process, and restores the values when the pipe
// ends without the word "done". It shares the test's lock (the same open file, inherited), so
// no other test takes the machine's core_pattern before the watchdog has restored it.
type watchdog struct {
	w   *os.File
	cmd *exec.Cmd
}

const watchdogScript = `read -r word
if [ "$word" != done ]; then
	printf '%s' "$OLD_PATTERN" > ` + PatternPath + `
	printf '%s' "$OLD_LIMIT" > ` + PipeLimitPath + `
fi`

func startWatchdog(lock *os.File, oldPattern, oldLimit []byte) (*watchdog, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", watchdogScript)
	cmd.Stdin = r
	cmd.ExtraFiles = []*os.File{lock} // fd 3: holds the flock as long as the watchdog lives
	cmd.Env = append(os.Environ(), "OLD_PATTERN="+string(oldPattern), "OLD_LIMIT="+string(oldLimit))
	// Its own process group: a ^C to the test's group does not end it before the test.
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start core_pattern watchdog: %w", err)
	}
	return &watchdog{w: w, cmd: cmd}, nil
}

// done tells the watchdog the values were restored, and waits for it to exit.
func (d *watchdog) done() {
	fmt.Fprintln(d.w, "done")
	d.w.Close()
	d.cmd.Wait()
}

// Hook guards the test and sets core_pattern (and core_pipe_limit 4) for it.
func Hook(t testing.TB, pattern string) {
	t.Helper()
	Guard(t)
	Set(t, pattern, 4)
}

// Set writes core_pattern and core_pipe_limit; call only after Guard.
func Set(t testing.TB, pattern string, pipeLimit int) {
	t.Helper()
	if len(pattern) > 127 {
		t.Fatalf("core_pattern of %d bytes is longer than the kernel's 127", len(pattern))
	}
	if err := os.WriteFile(PatternPath, []byte(pattern), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(PipeLimitPath, []byte(fmt.Sprint(pipeLimit)), 0); err != nil {
		t.Fatal(err)
	}
}

// Pattern reads core_pattern.
func Pattern(t testing.TB) string {
	b, err := os.ReadFile(PatternPath)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimRight(string(b), "\n")
}

// ShortTempDir makes a directory with a short path (core_pattern holds at most 127 bytes),
// removed after the test.
func ShortTempDir(t testing.TB) string {
	d, err := os.MkdirTemp("/tmp", "mfk")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, 0o755)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// BuildMemfaultd builds the multi-call binary into dir with the memfault-core-handler and
// memfaultctl symlinks beside it, and returns dir/memfaultd.
func BuildMemfaultd(t testing.TB, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go toolchain not on PATH")
	}
	bin := filepath.Join(dir, "memfaultd")
	out, err := exec.Command(goBin, "build", "-o", bin, "meta-memfault-go/cmd/memfaultd").CombinedOutput()
	if err != nil {
		t.Fatalf("build memfaultd: %v\n%s", err, out)
	}
	for _, name := range []string{"memfault-core-handler", "memfaultctl"} {
		if err := os.Symlink("memfaultd", filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return bin
}

// BuildThreads compiles testdata/programs/threads.c (path relative to the module root is
// found from the test's package directory) into dir.
func BuildThreads(t testing.TB, dir string) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	src := filepath.Join(ModuleRoot(t), "testdata", "programs", "threads.c")
	exe := filepath.Join(dir, "threads")
	if out, err := exec.Command("gcc", "-g", "-O1", "-pthread", "-o", exe, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return exe
}

// ModuleRoot is the directory holding go.mod.
func ModuleRoot(t testing.TB) string { return fixture.Root(t) }
