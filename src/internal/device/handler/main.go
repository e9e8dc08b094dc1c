package handler

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"meta-memfault-go/internal/device/config"
	"meta-memfault-go/internal/device/procfs"
)

// Main is memfault-core-handler's entry point; it returns the process exit code. The kernel
// ignores the code; it matters to people running the handler by hand.
func Main(args []string, sdkVersion string) int {
	// First of all: a crash of the handler itself must not recurse into core_pattern.
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	start := time.Now()

	fs := flag.NewFlagSet("memfault-core-handler", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("c", "", "configuration file (default /etc/memfaultd.conf)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long, so the crashed process is released")
	kmsg := fs.String("kmsg", "/dev/kmsg", "where to log")
	if err := fs.Parse(args); err != nil {
		OpenKmsg("/dev/kmsg").Errorf("bad arguments %q: %v", args, err)
		return 2
	}
	log := OpenKmsg(*kmsg)

	// Hard deadline: whatever blocks (a pipe, a vanished /proc entry, a slow disk), the
	// handler leaves by then and removes its unfinished entry.
	// The soft deadline (ctx, stdin) usually ends the work first and reports why; the hard
	// timer and the final report take one lock so that one of them reports, never both.
	deadline := start.Add(*timeout)
	var reporting sync.Mutex
	timer := time.AfterFunc(*timeout, func() {
		reporting.Lock() // never released: the process exits
		log.Errorf("gave up after %v; no core saved", *timeout)
		AbortActive()
		os.Exit(3)
	})
	defer timer.Stop()

	a, err := ParseArgs(fs.Args())
	if err != nil {
		log.Errorf("%v", err)
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		log.Errorf("pid %d: configuration: %v", a.PID, err)
		return 1
	}
	if !cfg.EnableDataCollection {
		return 0 // no consent: quietly do nothing
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	dev, err := config.LoadDeviceInfo(ctx, cfg, "/", 2*time.Second)
	if err != nil {
		log.Warnf("device info: %v", err)
	}
	env := &Env{
		Config:     cfg,
		Device:     dev,
		Args:       a,
		Core:       stdinWithDeadline(deadline),
		Proc:       procfs.Default,
		Log:        log,
		Now:        time.Now,
		SDKVersion: sdkVersion,
		Boot:       ReadBootInfo("/proc"),
		AppLogs: func(ctx context.Context) []string {
			logs, err := FetchAppLogs(ctx, cfg, int(cfg.Coredump.LogLines), 500*time.Millisecond)
			if err != nil {
				log.Debugf("no recent logs from memfaultd: %v", err)
				return nil
			}
			return logs
		},
	}
	res, err := Run(ctx, env)
	reporting.Lock() // blocks forever if the hard timer is already reporting
	timer.Stop()
	switch {
	case errors.Is(err, ErrDisabled):
		return 0
	case errors.Is(err, ErrRateLimited):
		log.Warnf("pid %d (%s): %v; core not saved", a.PID, a.Comm, err)
		return 0
	case err != nil:
		log.Errorf("pid %d (%s): %v", a.PID, a.Comm, err)
		return 1
	}
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	log.Infof("Successfully captured coredump of pid %d (%s): %s, %d bytes (%d uncompressed) in %v, peak RSS %d KiB",
		a.PID, a.Comm, res.File, res.StoredSize, res.CoreSize, time.Since(start).Round(time.Millisecond), ru.Maxrss)
	return 0
}

// stdinWithDeadline returns stdin such that reads fail at the deadline. A pipe from the kernel
// is blocking; switched to non-blocking it joins Go's poller, which honours read deadlines.
func stdinWithDeadline(deadline time.Time) io.Reader {
	if err := unix.SetNonblock(0, true); err != nil {
		return os.Stdin
	}
	f := os.NewFile(0, "stdin")
	if err := f.SetReadDeadline(deadline); err != nil {
		unix.SetNonblock(0, false)
		return os.Stdin
	}
	return f
}
