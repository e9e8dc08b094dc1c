package handler

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/device/staging"
	"meta-memfault-go/internal/testutil/gdbbt"
	"meta-memfault-go/internal/testutil/kerneltest"
)

// Tests in this file hand real crashes to the real kernel: they point
// /proc/sys/kernel/core_pattern at a freshly built handler (kerneltest: root only, restored
// afterwards, serialized with every other such test by a machine-wide lock).

func writeConfig(t *testing.T, dir, extra string) string {
	p := filepath.Join(dir, "c.json")
	body := fmt.Sprintf(`{"persist_dir": %q, "enable_data_collection": true, "enable_dev_mode": true,
		"project_key": "e2e", "software_version": "1.0.0", "software_type": "e2e" %s}`, filepath.Join(dir, "persist"), extra)
	require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	return p
}

// crash runs the program, which prints its pid and then crashes, and returns the pid and the
// time it printed (just before the crash).
func crash(t *testing.T, exe string, args ...string) (int, time.Time) {
	t.Helper()
	cmd := exec.Command(exe, args...)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	printed := time.Now()
	require.NoError(t, err)
	var pid int
	_, err = fmt.Sscanf(line, "crashing pid %d", &pid)
	require.NoError(t, err, line)
	err = cmd.Wait()
	require.Error(t, err, "the program must die of a signal")
	return pid, printed
}

// waitEntry waits for the single complete entry in the staging area.
func waitEntry(t *testing.T, persist string, within time.Duration) (string, time.Time) {
	t.Helper()
	mar := staging.ForTmpDir(persist).Path
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		m, _ := filepath.Glob(filepath.Join(mar, "*", staging.ManifestName))
		if len(m) == 1 {
			return filepath.Dir(m[0]), time.Now()
		}
		time.Sleep(5 * time.Millisecond)
	}
	m, _ := filepath.Glob(filepath.Join(mar, "*", "*"))
	t.Fatalf("no complete entry in %s after %v (found %v)", mar, within, m)
	return "", time.Time{}
}

func coreFile(t *testing.T, entry string) string {
	m, err := filepath.Glob(filepath.Join(entry, "core-*.elf.gz"))
	require.NoError(t, err)
	require.Len(t, m, 1)
	out := filepath.Join(entry, "core.elf")
	b := decompress(t, m[0], "gzip")
	require.NoError(t, os.WriteFile(out, b, 0o600))
	return out
}

// TestKernelCapture is the acceptance test of the core handler on this machine's kernel: a
// real crash of the 8-thread program, captured with the threads strategy, must give gdb the
// same functions per thread as the kernel's full core of the same crash.
func TestKernelCapture(t *testing.T) {
	dir := kerneltest.ShortTempDir(t)
	kerneltest.BuildMemfaultd(t, dir)
	handler := filepath.Join(dir, "memfault-core-handler")
	exe := kerneltest.BuildThreads(t, dir)
	cfg := writeConfig(t, dir, "")
	persist := filepath.Join(dir, "persist")

	t.Run("direct", func(t *testing.T) {
		kerneltest.Hook(t, fmt.Sprintf("|%s -c %s %%P %%I %%s %%e", handler, cfg))
		pid, crashed := crash(t, exe)
		entry, seen := waitEntry(t, persist, 10*time.Second)
		latency := seen.Sub(crashed)
		t.Logf("entry %s complete %v after the crash", filepath.Base(entry), latency)
		require.Less(t, latency, time.Second, "the entry must appear within one second")

		core := coreFile(t, entry)
		threads, raw, err := gdbbt.Backtraces(context.Background(), exe, core, "")
		require.NoError(t, err)
		require.Len(t, threads, 8, raw)
		all := raw
		require.Contains(t, all, "crash_segv")
		require.Equal(t, 201, strings.Count(all, " recurse ("), raw)

		// The handler logged to the kernel log.
		if out, err := exec.Command("dmesg").CombinedOutput(); err == nil {
			require.Contains(t, string(out), fmt.Sprintf("Successfully captured coredump of pid %d", pid))
		}
		require.NoError(t, os.RemoveAll(entry))
	})

	t.Run("compare with full kernel core", func(t *testing.T) {
		// A wrapper saves the kernel's whole stream and feeds the same bytes to the handler,
		// which stops reading after the notes; tee keeps writing the file after that.
		full := filepath.Join(dir, "full.core")
		tee := filepath.Join(dir, "tee.sh")
		script := fmt.Sprintf("#!/bin/sh\ntee --output-error=warn-nopipe %s 2>/dev/null | %s -c %s \"$@\"\n", full, handler, cfg)
		require.NoError(t, os.WriteFile(tee, []byte(script), 0o755))
		kerneltest.Hook(t, fmt.Sprintf("|%s %%P %%I %%s %%e", tee))
		crash(t, exe)
		entry, _ := waitEntry(t, persist, 10*time.Second)
		ours := coreFile(t, entry)

		want, wantRaw, err := gdbbt.Backtraces(context.Background(), exe, full, "")
		require.NoError(t, err)
		require.Len(t, want, 8, wantRaw)
		got, gotRaw, err := gdbbt.Backtraces(context.Background(), exe, ours, "")
		require.NoError(t, err)
		if d := gdbbt.Diff(want, got); d != "" {
			t.Fatalf("gdb backtraces differ:\n%s\nfull core:\n%s\nours:\n%s", d, wantRaw, gotRaw)
		}
		fs, err := os.Stat(full)
		require.NoError(t, err)
		os.Stat(ours)
		gz, _ := filepath.Glob(filepath.Join(entry, "core-*.elf.gz"))
		zs, err := os.Stat(gz[0])
		require.NoError(t, err)
		os_, err := os.Stat(ours)
		require.NoError(t, err)
		t.Logf("kernel core %d bytes, threads core %d bytes (%.0fx smaller), %d gzipped (%.0fx)",
			fs.Size(), os_.Size(), float64(fs.Size())/float64(os_.Size()), zs.Size(), float64(fs.Size())/float64(zs.Size()))
		require.Greater(t, fs.Size(), 30*os_.Size(), "threads core at least 30x smaller than the kernel's")
		require.NoError(t, os.RemoveAll(entry))
	})

	t.Run("memfaultctl trigger-coredump", func(t *testing.T) {
		kerneltest.Hook(t, fmt.Sprintf("|%s -c %s %%P %%I %%s %%e", handler, cfg))
		out, err := exec.Command(filepath.Join(dir, "memfaultctl"), "trigger-coredump").CombinedOutput()
		require.NoError(t, err, string(out))
		require.Contains(t, string(out), "Triggering coredump")
		entry, _ := waitEntry(t, persist, 10*time.Second)
		core := coreFile(t, entry)
		threads, raw, err := gdbbt.Backtraces(context.Background(), filepath.Join(dir, "memfaultd"), core, "")
		require.NoError(t, err)
		require.NotEmpty(t, threads, raw)
		require.Contains(t, raw, "ctl.crash", "the Go crash function is on the crashing thread")
		require.NoError(t, os.RemoveAll(entry))
	})

	t.Run("data collection off leaves nothing", func(t *testing.T) {
		off := filepath.Join(dir, "off.json")
		require.NoError(t, os.WriteFile(off, []byte(fmt.Sprintf(`{"persist_dir": %q}`, persist)), 0o644))
		kerneltest.Hook(t, fmt.Sprintf("|%s -c %s %%P %%I %%s %%e", handler, off))
		crash(t, exe)
		time.Sleep(300 * time.Millisecond)
		m, _ := filepath.Glob(filepath.Join(staging.ForTmpDir(persist).Path, "*"))
		require.Empty(t, m)
	})
}

// TestHandlerBinaryBadInput runs the built handler by hand with hostile stdin: each case
// exits non-zero, logs exactly one line, and leaves no entry behind.
func TestHandlerBinaryBadInput(t *testing.T) {
	dir := kerneltest.ShortTempDir(t)
	kerneltest.BuildMemfaultd(t, dir)
	handler := filepath.Join(dir, "memfault-core-handler")
	cfg := writeConfig(t, dir, "")
	persist := filepath.Join(dir, "persist")
	full := fixtureCore(t, "x86_64")
	self := os.Getpid()

	for _, tc := range []struct {
		name  string
		stdin []byte
		pid   int
		msg   string
	}{
		{"garbage", bytes.Repeat([]byte("garbage!"), 1000), self, "not an ELF file"},
		{"empty", nil, self, "truncated"},
		{"truncated core", full[:200], self, "truncated"},
		{"pid vanished", full, 0x7ffffff0, "process vanished"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kmsg := filepath.Join(dir, "kmsg-"+strings.ReplaceAll(tc.name, " ", "-"))
			cmd := exec.Command(handler, "-c", cfg, "--kmsg", kmsg, fmt.Sprint(tc.pid), fmt.Sprint(tc.pid), "11", "victim")
			cmd.Stdin = bytes.NewReader(tc.stdin)
			err := cmd.Run()
			require.Error(t, err)
			log, rerr := os.ReadFile(kmsg)
			require.NoError(t, rerr)
			lines := strings.Split(strings.TrimSpace(string(log)), "\n")
			require.Len(t, lines, 1, string(log))
			require.Contains(t, lines[0], tc.msg)
			require.True(t, strings.HasPrefix(lines[0], "<3>memfault-core-handler["), lines[0])
			m, _ := filepath.Glob(filepath.Join(staging.ForTmpDir(persist).Path, "*"))
			require.Empty(t, m)
		})
	}

	t.Run("disk full", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to mount a small tmpfs")
		}
		small := filepath.Join(dir, "small")
		require.NoError(t, os.Mkdir(small, 0o755))
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", small).CombinedOutput(); err != nil {
			t.Skipf("cannot mount tmpfs: %v %s", err, out)
		}
		defer exec.Command("umount", small).Run()
		smallCfg := filepath.Join(dir, "small.json")
		require.NoError(t, os.WriteFile(smallCfg, []byte(fmt.Sprintf(`{"persist_dir": %q, "enable_data_collection": true,
			"tmp_dir_min_headroom_kib": 0, "coredump": {"compression": "none", "capture_strategy": {"type": "kernel_selection"}}}`, small)), 0o644))
		kmsg := filepath.Join(dir, "kmsg-full")
		cmd := exec.Command(handler, "-c", smallCfg, "--kmsg", kmsg, fmt.Sprint(self), "victim")
		cmd.Stdin = bytes.NewReader(full)
		require.Error(t, cmd.Run())
		log, err := os.ReadFile(kmsg)
		require.NoError(t, err)
		require.Equal(t, 1, strings.Count(string(log), "\n"), string(log))
		require.Contains(t, string(log), "does not fit")
		m, _ := filepath.Glob(filepath.Join(small, "mar", "*"))
		require.Empty(t, m)
	})

	t.Run("stdin never ends", func(t *testing.T) {
		// A writer that never closes must not hold the handler past its deadline.
		kmsg := filepath.Join(dir, "kmsg-hang")
		cmd := exec.Command(handler, "-c", cfg, "--kmsg", kmsg, "--timeout", "500ms", fmt.Sprint(self), "victim")
		pr, pw, err := os.Pipe()
		require.NoError(t, err)
		defer pw.Close()
		cmd.Stdin = pr
		start := time.Now()
		require.NoError(t, cmd.Start())
		pr.Close()
		pw.Write(full[:30]) // part of the ELF header, then silence
		err = cmd.Wait()
		require.Error(t, err)
		require.Less(t, time.Since(start), 5*time.Second)
		log, _ := os.ReadFile(kmsg)
		require.Equal(t, 1, strings.Count(string(log), "\n"), string(log))
		m, _ := filepath.Glob(filepath.Join(staging.ForTmpDir(persist).Path, "*"))
		require.Empty(t, m)
	})
}
