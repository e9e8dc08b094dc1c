package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"meta-memfault-go/internal/device/config"
	"meta-memfault-go/internal/device/daemon"
	"meta-memfault-go/internal/device/handler"
	"meta-memfault-go/internal/device/staging"
	"meta-memfault-go/internal/protocol"
	"meta-memfault-go/internal/version"
)

// systemdRestart restarts memfaultd through systemd when systemd is the init system and the
// memfaultd unit is active. It reports whether systemd was in charge.
func systemdRestart() (bool, error) {
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return false, nil
	}
	if exec.Command("systemctl", "is-active", "--quiet", "memfaultd").Run() != nil {
		return false, nil
	}
	out, err := exec.Command("systemctl", "restart", "memfaultd").CombinedOutput()
	if err != nil {
		return true, fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
	}
	return true, nil
}

func signalPid(pid int, name string) error {
	sig := syscall.SIGHUP
	if name == "USR1" {
		sig = syscall.SIGUSR1
	}
	err := syscall.Kill(pid, sig)
	if errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("%w (run as root)", err)
	}
	return err
}

var localClient = &http.Client{Transport: &http.Transport{Proxy: nil}}

func (c *cli) sync() int {
	cfg, ok := c.load()
	if !ok {
		return exitFailed
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, cfg.LocalAPIURL("/v1/sync"), nil)
	resp, err := localClient.Do(req)
	if err != nil {
		// No API (an older daemon, or another bind address): fall back to the signal.
		pid, perr := daemon.ReadPidFile(c.pidFile)
		if perr != nil {
			c.errorf("%v", perr)
			return exitNoDaemon
		}
		if err := signalPid(pid, "USR1"); err != nil {
			c.errorf("signal memfaultd (pid %d): %v", pid, err)
			return exitFailed
		}
		fmt.Fprintln(c.stdout, "Sync requested")
		return exitOK
	}
	defer resp.Body.Close()
	var res daemon.SyncResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&res); err != nil {
		c.errorf("sync: %s", resp.Status)
		return exitFailed
	}
	if res.Error != "" {
		c.errorf("sync failed: %s (staged data is kept and retried)", res.Error)
		return exitFailed
	}
	fmt.Fprintf(c.stdout, "Sync done: %d entries uploaded", res.Report.Uploaded)
	if res.Report.Dropped > 0 {
		fmt.Fprintf(c.stdout, ", %d dropped by the device configuration", res.Report.Dropped)
	}
	fmt.Fprintln(c.stdout)
	return exitOK
}

func (c *cli) export(args []string) int {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	output := fs.String("o", "", "where to write the MAR zip ('-' for standard output)")
	fs.StringVar(output, "output", "", "same as -o")
	keep := fs.Bool("n", false, "do not delete the exported data")
	fs.BoolVar(keep, "do-not-delete", false, "same as -n")
	format := fs.String("f", "mar", "output format (mar)")
	fs.StringVar(format, "format", "mar", "same as -f")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *output == "" {
		c.errorf("export: -o FILE (or -o -) is required")
		return exitUsage
	}
	if *format != "mar" {
		c.errorf("export: format %q is not supported (mar)", *format)
		return exitUsage
	}
	cfg, ok := c.load()
	if !ok {
		return exitFailed
	}
	resp, err := localClient.Get(cfg.LocalAPIURL("/v1/export"))
	if err != nil {
		c.errorf("export: memfaultd is not reachable: %v", err)
		return exitNoDaemon
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		fmt.Fprintln(c.stderr, "Nothing to export")
		return exitOK
	}
	if resp.StatusCode != http.StatusOK {
		c.errorf("export: %s", resp.Status)
		return exitFailed
	}
	var w io.Writer = c.stdout
	var f *os.File
	if *output != "-" {
		tmp := *output + ".tmp"
		if f, err = os.Create(tmp); err != nil {
			c.errorf("export: %v", err)
			return exitFailed
		}
		defer os.Remove(tmp)
		w = f
	}
	n, err := io.Copy(w, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("got %d of %d bytes", n, resp.ContentLength)
	}
	if f != nil {
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(*output+".tmp", *output)
		}
	}
	if err != nil {
		c.errorf("export: %v (nothing deleted)", err)
		return exitFailed
	}
	if *keep {
		return exitOK
	}
	req, _ := http.NewRequest(http.MethodDelete, cfg.LocalAPIURL("/v1/export"), nil)
	req.Header.Set("If-Match", resp.Header.Get("ETag"))
	del, err := localClient.Do(req)
	if err != nil {
		c.errorf("export: written, but deleting the exported data failed: %v", err)
		return exitFailed
	}
	del.Body.Close()
	if del.StatusCode != http.StatusNoContent {
		c.errorf("export: written, but deleting the exported data failed: %s", del.Status)
		return exitFailed
	}
	return exitOK
}

// parseAttribute types a value as memfaultd does: bool, integer, float, else string.
func parseAttribute(kv string) (protocol.Attribute, error) {
	k, v, ok := strings.Cut(kv, "=")
	if !ok || k == "" {
		return protocol.Attribute{}, fmt.Errorf("attribute %q is not KEY=VALUE", kv)
	}
	a := protocol.Attribute{Key: k, Value: v}
	if b, err := strconv.ParseBool(v); err == nil && (v == "true" || v == "false") {
		a.Value = b
	} else if i, err := strconv.ParseInt(v, 10, 64); err == nil {
		a.Value = i
	} else if f, err := strconv.ParseFloat(v, 64); err == nil {
		a.Value = f
	}
	return a, nil
}

func (c *cli) writeAttributes(args []string) int {
	if len(args) == 0 {
		c.errorf("write-attributes: give at least one KEY=VALUE")
		return exitUsage
	}
	var attrs []protocol.Attribute
	for _, kv := range args {
		a, err := parseAttribute(kv)
		if err != nil {
			c.errorf("write-attributes: %v", err)
			return exitUsage
		}
		attrs = append(attrs, a)
	}
	cfg, ok := c.load()
	if !ok {
		return exitFailed
	}
	if !cfg.EnableDataCollection {
		c.errorf("write-attributes: data collection is disabled (memfaultctl enable-data-collection)")
		return exitFailed
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dev, err := config.LoadDeviceInfo(ctx, cfg, "/", 3*time.Second)
	if err != nil {
		c.errorf("device info: %v", err)
	}
	e, err := staging.ForTmpDir(cfg.TmpDir).NewEntry()
	if err != nil {
		c.errorf("write-attributes: %v", err)
		return exitFailed
	}
	boot := handler.ReadBootInfo("/proc")
	m := &protocol.Manifest{
		SchemaVersion: 1,
		CollectionTime: protocol.CollectionTime{Timestamp: time.Now().UTC().Format(time.RFC3339), UptimeMs: boot.UptimeMs,
			LinuxBootID: boot.BootID, ElapsedRealtimeMs: boot.ElapsedRealtimeMs},
		Device: protocol.ManifestDevice{ProjectKey: cfg.ProjectKey, HardwareVersion: dev.HardwareVersion,
			SoftwareVersion: dev.SoftwareVersion, SoftwareType: dev.SoftwareType, DeviceSerial: dev.DeviceID},
		Producer: protocol.Producer{ID: "memfaultd", Version: version.Version},
		Type:     protocol.ManifestTypeAttributes,
		Metadata: protocol.AttributesPayload{Attributes: attrs},
	}
	if err := e.Commit(m); err != nil {
		e.Abort()
		c.errorf("write-attributes: %v", err)
		return exitFailed
	}
	return exitOK
}

const crashNow = "__crash-now"

// triggerCoredump starts a copy of this program that kills itself with the chosen signal, so
// the kernel runs the core handler on a real process. In developer mode it then syncs.
func (c *cli) triggerCoredump(kind string) int {
	var sig string
	switch kind {
	case "segfault":
		sig = "SIGSEGV"
	case "divide-by-zero":
		sig = "SIGFPE"
	default:
		c.errorf("unknown crash kind %q (want segfault or divide-by-zero)", kind)
		return exitUsage
	}
	exe, err := os.Executable()
	if err != nil {
		c.errorf("%v", err)
		return exitFailed
	}
	cmd := exec.Command(exe, crashNow, sig)
	cmd.Args[0] = "memfaultctl"
	if err := cmd.Start(); err != nil {
		c.errorf("start crashing child: %v", err)
		return exitFailed
	}
	fmt.Fprintf(c.stdout, "Triggering coredump (%s) in pid %d\n", kind, cmd.Process.Pid)
	cmd.Wait()
	if cfg, err := config.Load(c.cfgPath); err == nil && cfg.EnableDevMode && cfg.EnableDataCollection {
		// Developer mode: deliver it right away, once the handler has staged it.
		time.Sleep(3 * time.Second)
		if _, err := daemon.ReadPidFile(c.pidFile); err == nil {
			return c.sync()
		}
	}
	return exitOK
}

// crash restores the default action of the signal (the Go runtime handles SIGSEGV and SIGFPE
// itself) and sends it to this thread, so the process dies with a core like a C program would.
func crash(name string) {
	sig := unix.SIGSEGV
	if name == "SIGFPE" {
		sig = unix.SIGFPE
	}
	// An all-zero struct sigaction is SIG_DFL with no flags and an empty mask on every arch.
	var act [64]byte
	unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act[0])), 0, 8, 0, 0)
	unix.Tgkill(unix.Getpid(), unix.Gettid(), sig)
	time.Sleep(time.Second)
}
