// Package ctl is memfaultctl: the command line that people and scripts use to look at and
// steer memfaultd on a device.
package ctl

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"meta-memfault-go/internal/device/config"
	"meta-memfault-go/internal/version"
)

const usage = `usage: memfaultctl [-c CONFIG] COMMAND

commands:
  show-settings                          print the merged configuration and the device identity
  trigger-coredump [segfault|divide-by-zero]
                                         start a child process that crashes
  --version                              print the version
`

// Main runs memfaultctl and returns its exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("memfaultctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	cfgPath := fs.String("c", "", "configuration file (default /etc/memfaultd.conf)")
	showVersion := fs.Bool("version", false, "print the version")
	fs.BoolVar(showVersion, "v", false, "print the version")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		printVersion(stdout)
		return 0
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch rest[0] {
	case "show-settings":
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "memfaultctl: %v\n", err)
			return 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		id, err := config.LoadDeviceInfo(ctx, cfg, "/", 3*time.Second)
		if err != nil {
			fmt.Fprintf(stderr, "memfaultctl: device info: %v\n", err)
		}
		if err := cfg.ShowSettings(stdout, id); err != nil {
			fmt.Fprintf(stderr, "memfaultctl: %v\n", err)
			return 1
		}
		return 0
	case "trigger-coredump":
		kind := "segfault"
		if len(rest) > 1 {
			kind = rest[1]
		}
		return triggerCoredump(kind, stdout, stderr)
	case crashNow:
		if len(rest) < 2 {
			return 2
		}
		crash(rest[1])
		return 1
	case "--version", "version":
		printVersion(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "memfaultctl: unknown command %q\n%s", rest[0], usage)
	return 2
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "VERSION=%s\nGIT COMMIT=%s\nBUILD ID=%s\n", version.Version, version.GitCommit, version.BuildID())
}

const crashNow = "__crash-now"

// triggerCoredump starts a copy of this program that kills itself with the chosen signal, so
// the kernel runs the core handler on a real process.
func triggerCoredump(kind string, stdout, stderr io.Writer) int {
	var sig string
	switch kind {
	case "segfault":
		sig = "SIGSEGV"
	case "divide-by-zero":
		sig = "SIGFPE"
	default:
		fmt.Fprintf(stderr, "memfaultctl: unknown crash kind %q (want segfault or divide-by-zero)\n", kind)
		return 2
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "memfaultctl: %v\n", err)
		return 1
	}
	cmd := exec.Command(exe, crashNow, sig)
	cmd.Args[0] = "memfaultctl"
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "memfaultctl: start crashing child: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "Triggering coredump (%s) in pid %d\n", kind, cmd.Process.Pid)
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(interface{ CoreDump() bool }); ok && err != nil {
		_ = ws
	}
	return 0
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
