package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"meta-memfault-go/internal/device/staging"
)

// KernelHook owns /proc/sys/kernel/core_pattern and core_pipe_limit while data collection is
// on: it installs our handler, remembers what was there before (under persist_dir, so it
// survives reboots and daemon restarts) and puts it back when data collection is turned off.
type KernelHook struct {
	ProcRoot    string // "/proc" on a device
	StateDir    string // persist_dir
	HandlerPath string // /usr/sbin/memfault-core-handler
	ConfigPath  string // passed to the handler with -c ("" = its default)
	PipeLimit   uint64
	Log         *slog.Logger
}

// previousState is what the hook replaced.
type previousState struct {
	CorePattern   string `json:"core_pattern"`
	CorePipeLimit string `json:"core_pipe_limit"`
}

const stateFile = "core_pattern.previous"

func (k *KernelHook) patternPath() string {
	return filepath.Join(k.ProcRoot, "sys/kernel/core_pattern")
}

func (k *KernelHook) limitPath() string {
	return filepath.Join(k.ProcRoot, "sys/kernel/core_pipe_limit")
}

// Pattern is the core_pattern that runs our handler.
func (k *KernelHook) Pattern() string {
	p := "|" + k.HandlerPath
	if k.ConfigPath != "" {
		p += " -c " + k.ConfigPath
	}
	return p + " %P %I %s %e"
}

func readTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\n"), nil
}

// isOurs reports whether a pattern pipes to a memfault core handler (ours or memfaultd's).
func isOurs(pattern, handler string) bool {
	if !strings.HasPrefix(pattern, "|") {
		return false
	}
	prog := strings.Fields(strings.TrimPrefix(pattern, "|"))
	if len(prog) == 0 {
		return false
	}
	return prog[0] == handler || filepath.Base(prog[0]) == "memfault-core-handler"
}

// otherHandler names a known competing handler and says what the user must change.
func otherHandler(pattern string) (name, advice string, ok bool) {
	if !strings.HasPrefix(pattern, "|") {
		return "", "", false
	}
	switch {
	case strings.Contains(pattern, "systemd-coredump"):
		return "systemd-coredump", "systemd re-applies its core_pattern at boot from /usr/lib/sysctl.d/50-coredump.conf: mask it (ln -s /dev/null /etc/sysctl.d/50-coredump.conf) or build systemd without the coredump PACKAGECONFIG", true
	case strings.Contains(pattern, "apport"):
		return "apport", "apport rewrites core_pattern when it starts: disable it (systemctl disable --now apport, or enabled=0 in /etc/default/apport)", true
	case strings.Contains(pattern, "abrt"):
		return "abrt", "abrt-ccpp rewrites core_pattern when it starts: disable abrt-ccpp", true
	}
	return "another core handler", "find the service that writes /proc/sys/kernel/core_pattern and disable it", true
}

// Install points core_pattern at our handler and sets core_pipe_limit. The pattern it
// replaces is saved first (once: a reinstall keeps the original). Replacing another pipe
// handler is logged as a warning saying what the user must change so it does not come back.
func (k *KernelHook) Install() error {
	cur, err := readTrim(k.patternPath())
	if err != nil {
		return fmt.Errorf("read core_pattern: %w", err)
	}
	limit, err := readTrim(k.limitPath())
	if err != nil {
		return fmt.Errorf("read core_pipe_limit: %w", err)
	}
	want := k.Pattern()
	if !isOurs(cur, k.HandlerPath) {
		if _, err := k.loadPrevious(); errors.Is(err, os.ErrNotExist) {
			if err := k.savePrevious(previousState{CorePattern: cur, CorePipeLimit: limit}); err != nil {
				return fmt.Errorf("save previous core_pattern: %w", err)
			}
		}
		if name, advice, ok := otherHandler(cur); ok {
			k.Log.Warn("core_pattern belonged to "+name+"; memfaultd replaced it and will restore it when data collection is disabled",
				"previous", cur, "what_to_change", advice)
		}
	}
	if cur != want {
		if err := os.WriteFile(k.patternPath(), []byte(want), 0); err != nil {
			return fmt.Errorf("write core_pattern: %w", err)
		}
		k.Log.Info("core_pattern installed", "pattern", want)
	}
	if limit != strconv.FormatUint(k.PipeLimit, 10) {
		if err := os.WriteFile(k.limitPath(), []byte(strconv.FormatUint(k.PipeLimit, 10)), 0); err != nil {
			return fmt.Errorf("write core_pipe_limit: %w", err)
		}
	}
	return nil
}

// Check reports whether our pattern is still installed; when someone else has replaced it,
// it says so (memfaultd does not fight over core_pattern).
func (k *KernelHook) Check() (bool, string, error) {
	cur, err := readTrim(k.patternPath())
	if err != nil {
		return false, "", err
	}
	return cur == k.Pattern(), cur, nil
}

// Uninstall puts back the saved pattern and pipe limit when our handler is installed, so that
// no memfault handler stays installed while data collection is off. Without a saved state
// the kernel default ("core", limit 0) is restored.
func (k *KernelHook) Uninstall() error {
	cur, err := readTrim(k.patternPath())
	if err != nil {
		return fmt.Errorf("read core_pattern: %w", err)
	}
	prev, err := k.loadPrevious()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		k.Log.Warn("saved core_pattern unreadable; restoring the kernel default", "err", err)
	}
	if err != nil {
		prev = previousState{CorePattern: "core", CorePipeLimit: "0"}
	}
	if isOurs(cur, k.HandlerPath) {
		if isOurs(prev.CorePattern, k.HandlerPath) {
			prev.CorePattern = "core" // never restore a memfault handler
		}
		if err := os.WriteFile(k.patternPath(), []byte(prev.CorePattern), 0); err != nil {
			return fmt.Errorf("restore core_pattern: %w", err)
		}
		if prev.CorePipeLimit != "" {
			if err := os.WriteFile(k.limitPath(), []byte(prev.CorePipeLimit), 0); err != nil {
				return fmt.Errorf("restore core_pipe_limit: %w", err)
			}
		}
		k.Log.Info("core_pattern restored", "pattern", prev.CorePattern)
	}
	if err := os.Remove(filepath.Join(k.StateDir, stateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (k *KernelHook) loadPrevious() (previousState, error) {
	var s previousState
	b, err := os.ReadFile(filepath.Join(k.StateDir, stateFile))
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", stateFile, err)
	}
	return s, nil
}

func (k *KernelHook) savePrevious(s previousState) error {
	if err := os.MkdirAll(k.StateDir, 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return staging.WriteFileAtomic(filepath.Join(k.StateDir, stateFile), b)
}
