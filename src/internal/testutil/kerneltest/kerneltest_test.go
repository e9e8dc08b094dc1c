package kerneltest

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestWatchdogRestores: a test process that dies without its cleanups (as go test's -timeout
// ends one) still leaves core_pattern and core_pipe_limit as they were: its watchdog restores
// them, and holds the lock until it has.
func TestWatchdogRestores(t *testing.T) {
	if os.Getenv("KERNELTEST_CHILD") == "1" {
		Guard(t)
		Set(t, "core.kerneltest-child-%p", 2)
		os.Exit(3) // no cleanups
	}
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("needs root on Linux to write " + PatternPath)
	}
	lock := lockFile(t)
	require.NoError(t, unix.Flock(int(lock.Fd()), unix.LOCK_EX))
	before, limitBefore := Pattern(t), readLimit(t)
	if err := os.WriteFile(PatternPath, []byte(before), 0); err != nil {
		t.Skipf("cannot write %s (%v): not allowed in this environment", PatternPath, err)
	}
	t.Cleanup(func() { // whatever happens below
		os.WriteFile(PatternPath, []byte(before), 0)
		os.WriteFile(PipeLimitPath, []byte(limitBefore), 0)
	})
	require.NoError(t, unix.Flock(int(lock.Fd()), unix.LOCK_UN)) // the child takes it

	cmd := exec.Command(os.Args[0], "-test.run=^TestWatchdogRestores$", "-test.count=1")
	cmd.Env = append(os.Environ(), "KERNELTEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee) && ee.ExitCode() == 3, "child: %v\n%s", err, out)

	// The watchdog holds the lock until it has restored the values.
	require.NoError(t, unix.Flock(int(lock.Fd()), unix.LOCK_EX))
	require.Equal(t, before, Pattern(t))
	require.Equal(t, limitBefore, readLimit(t))
}

func readLimit(t *testing.T) string {
	b, err := os.ReadFile(PipeLimitPath)
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

// lockFile opens the machine-wide lock's file (an open file of its own: flock locks belong to
// it), closed after the test.
func lockFile(t *testing.T) *os.File {
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}
