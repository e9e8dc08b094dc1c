package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/testutil/kerneltest"
)

// demoScript is README's first command.
func demoScript(t *testing.T) string {
	return filepath.Join(filepath.Dir(kerneltest.ModuleRoot(t)), "scripts", "demo.sh")
}

// lineOf is the line number of the first line of an example's source containing marker.
func lineOf(t *testing.T, file, marker string) int {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(kerneltest.ModuleRoot(t)), "examples", file))
	require.NoError(t, err)
	for i, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	t.Fatalf("%s has no line with %q", file, marker)
	return 0
}

func demoCommand(t *testing.T, args ...string) *exec.Cmd {
	cmd := exec.Command(demoScript(t), args...)
	// The test holds the core_pattern lock (kerneltest.Guard); the script must not wait for it.
	cmd.Env = append(os.Environ(), "MEMFAULT_DEMO_LOCK_HELD=1")
	return cmd
}

func readSysctl(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

// TestDemo runs README's first command end to end (root: it installs the core handler) and
// checks that its output names the crashing function of each example with file:line, the
// frames below it, and each issue's page, and that core_pattern is put back.
func TestDemo(t *testing.T) {
	kerneltest.Guard(t)
	if _, err := exec.LookPath("g++"); err != nil {
		t.Skip("g++ not installed")
	}
	pattern, limit := readSysctl(t, kerneltest.PatternPath), readSysctl(t, kerneltest.PipeLimitPath)
	out, err := demoCommand(t).CombinedOutput()
	require.NoError(t, err, "%s", out)
	text := string(out)
	t.Logf("demo output:\n%s", text)
	require.Equal(t, pattern, readSysctl(t, kerneltest.PatternPath), "core_pattern restored")
	require.Equal(t, limit, readSysctl(t, kerneltest.PipeLimitPath), "core_pipe_limit restored")

	type want struct{ function, file, marker string }
	cases := []struct {
		title  string
		frames []want
	}{
		{"SIGSEGV in store_reading (sensor.c:%d)", []want{
			{"store_reading", "c/sensor.c", "SIGSEGV: cal is NULL"},
			{"calibrate", "c/sensor.c", "store_reading(table, channel, raw);"},
			{"poll_sensors", "c/sensor.c", "calibrate(c, 600 + c);"},
		}},
		{"SIGABRT in shop::Inventory::reserve (inventory.cpp:%d)", []want{
			{"shop::Inventory::reserve", "cpp/inventory.cpp", "throw std::out_of_range"},
			{"shop::place_order", "cpp/inventory.cpp", "inv.reserve(item, count);"},
			{"main", "cpp/inventory.cpp", `place_order(inv, "nut", 5)`},
		}},
	}
	rust := []want{
		{"thermostat::parse_setpoint", "rust/src/main.rs", `.expect("set point must be a number")`},
		{"thermostat::apply_schedule", "rust/src/main.rs", "total += parse_setpoint(e);"},
	}
	if strings.Contains(text, "Rust: cargo/rustc not found") {
		t.Log("no Rust toolchain: the Rust example was skipped, as the demo said")
	} else {
		cases = append(cases, struct {
			title  string
			frames []want
		}{"SIGABRT in thermostat::parse_setpoint (main.rs:%d)", rust})
	}
	issues := regexp.MustCompile(`(?m)^Issue \d+: .*\n  page: +http://127\.0\.0\.1:\d+/issues/\d+$`).FindAllString(text, -1)
	require.Len(t, issues, len(cases), "one issue with its page per example")
	for _, c := range cases {
		title := fmt.Sprintf(c.title, lineOf(t, c.frames[0].file, c.frames[0].marker))
		require.Contains(t, text, ": "+title+"\n", "issue title")
		// The frames, innermost first, each with the example's file:line, in order.
		var res []string
		for _, f := range c.frames {
			res = append(res, regexp.QuoteMeta(f.function)+` +\S*/examples/`+regexp.QuoteMeta(f.file)+":"+strconv.Itoa(lineOf(t, f.file, f.marker))+"\n")
		}
		require.Regexp(t, strings.Join(res, `(?:.*\n)*?.*`), text, "backtrace of %s", c.title)
	}
}

// TestDemoInterrupted: Ctrl-C once the handler is installed puts core_pattern and
// core_pipe_limit back.
func TestDemoInterrupted(t *testing.T) {
	kerneltest.Guard(t)
	if _, err := exec.LookPath("g++"); err != nil {
		t.Skip("g++ not installed")
	}
	pattern, limit := readSysctl(t, kerneltest.PatternPath), readSysctl(t, kerneltest.PipeLimitPath)
	cmd := demoCommand(t, "--examples", "c") // the others take longer to build and change nothing here
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(stdout)
	var seen []string
	installed := false
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if strings.HasPrefix(sc.Text(), "core_pipe_limit:") {
			installed = true
			break
		}
	}
	require.True(t, installed, "the demo never installed the handler:\n%s\n%s", strings.Join(seen, "\n"), stderr.String())
	require.Contains(t, readSysctl(t, kerneltest.PatternPath), "memfault-core-handler")
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	go func() {
		for sc.Scan() {
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatal("the demo did not stop after SIGINT")
	}
	require.Error(t, err, "an interrupted demo does not report success")
	require.Equal(t, pattern, readSysctl(t, kerneltest.PatternPath), "core_pattern restored")
	require.Equal(t, limit, readSysctl(t, kerneltest.PipeLimitPath), "core_pipe_limit restored")
}

// TestDemoNeedsRoot: without root the demo changes nothing and says what it needs.
func TestDemoNeedsRoot(t *testing.T) {
	cmd := demoCommand(t)
	root := os.Geteuid() == 0
	var before string
	if root {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Skip("root, and no setpriv to drop it")
		}
		cmd = exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", demoScript(t))
		// Hold the core_pattern lock, so that no other test changes it meanwhile.
		kerneltest.Guard(t)
		before = readSysctl(t, kerneltest.PatternPath)
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "%s", out)
	require.Equal(t, 1, exit.ExitCode())
	require.Contains(t, string(out), "needs root")
	require.Contains(t, string(out), "core_pattern")
	require.Contains(t, string(out), "sudo ")
	if root {
		require.Equal(t, before, readSysctl(t, kerneltest.PatternPath), "core_pattern untouched")
	}
}
