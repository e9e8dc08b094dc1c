package daemon

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func fakeProc(t *testing.T, pattern, limit string) (*KernelHook, *bytes.Buffer) {
	root := t.TempDir()
	k := filepath.Join(root, "proc", "sys", "kernel")
	require.NoError(t, os.MkdirAll(k, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(k, "core_pattern"), []byte(pattern+"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(k, "core_pipe_limit"), []byte(limit+"\n"), 0o644))
	var log bytes.Buffer
	return &KernelHook{
		ProcRoot:    filepath.Join(root, "proc"),
		StateDir:    filepath.Join(root, "persist"),
		HandlerPath: "/usr/sbin/memfault-core-handler",
		ConfigPath:  "/etc/memfaultd.conf",
		PipeLimit:   4,
		Log:         slog.New(slog.NewTextHandler(&log, nil)),
	}, &log
}

func kernel(t *testing.T, k *KernelHook) (string, string) {
	p, err := readTrim(k.patternPath())
	require.NoError(t, err)
	l, err := readTrim(k.limitPath())
	require.NoError(t, err)
	return p, l
}

func TestKernelHookRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name, pattern, limit, warn string
	}{
		{"kernel default", "core", "0", ""},
		{"file pattern", "/var/crash/core.%e.%p", "0", ""},
		{"systemd-coredump", "|/lib/systemd/systemd-coredump %P %u %g %s %t 9223372036854775808 %h", "0", "50-coredump.conf"},
		{"apport", "|/usr/share/apport/apport -p%p -s%s -c%c -d%d -P%P -u%u -g%g -- %E", "10", "apport"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, log := fakeProc(t, tc.pattern, tc.limit)
			require.NoError(t, k.Install())
			p, l := kernel(t, k)
			require.Equal(t, "|/usr/sbin/memfault-core-handler -c /etc/memfaultd.conf %P %I %s %e", p)
			require.Equal(t, "4", l)
			if tc.warn != "" {
				require.Contains(t, log.String(), tc.warn)
				require.Contains(t, log.String(), "level=WARN")
			} else {
				require.NotContains(t, log.String(), "level=WARN")
			}
			ok, _, err := k.Check()
			require.NoError(t, err)
			require.True(t, ok)

			// A second install (daemon restart, new config path) keeps the original.
			k.ConfigPath = "/tmp/other.conf"
			require.NoError(t, k.Install())
			p, _ = kernel(t, k)
			require.Contains(t, p, "/tmp/other.conf")

			require.NoError(t, k.Uninstall())
			p, l = kernel(t, k)
			require.Equal(t, tc.pattern, p)
			require.Equal(t, tc.limit, l)
			_, err = os.Stat(filepath.Join(k.StateDir, stateFile))
			require.ErrorIs(t, err, os.ErrNotExist)
		})
	}
}

func TestKernelHookNeverRestoresAMemfaultHandler(t *testing.T) {
	// memfaultd (the original) left its handler behind; we must not restore that.
	k, _ := fakeProc(t, "|/usr/sbin/memfault-core-handler -c /etc/memfaultd.conf %P %e", "0")
	require.NoError(t, k.Install())
	require.NoError(t, k.Uninstall())
	p, _ := kernel(t, k)
	require.Equal(t, "core", p)
}

func TestKernelHookLeavesOthersAlone(t *testing.T) {
	k, _ := fakeProc(t, "core", "0")
	require.NoError(t, k.Install())
	// Someone else takes over: Check says so, Uninstall does not touch their pattern.
	require.NoError(t, os.WriteFile(k.patternPath(), []byte("|/usr/bin/other %p"), 0o644))
	ok, cur, err := k.Check()
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, "|/usr/bin/other %p", cur)
	require.NoError(t, k.Uninstall())
	p, _ := kernel(t, k)
	require.Equal(t, "|/usr/bin/other %p", p)
}
