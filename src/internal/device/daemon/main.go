package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"meta-memfault-go/internal/device/staging"
)

// DefaultPidFile is where memfaultd records its pid; memfaultctl signals it there.
const DefaultPidFile = "/run/memfaultd.pid"

// DefaultHandlerPath is where the layer installs the core handler symlink.
const DefaultHandlerPath = "/usr/sbin/memfault-core-handler"

const daemonChildEnv = "MEMFAULTD_DAEMON_CHILD"

// Main is memfaultd's entry point; it returns the exit code.
func Main(args []string, stderr io.Writer, printVersion func(io.Writer)) int {
	fs := flag.NewFlagSet("memfaultd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "", "configuration file (default /etc/memfaultd.conf)")
	daemonize := fs.Bool("daemonize", false, "detach and run in the background (logs go to syslog)")
	fs.BoolVar(daemonize, "Z", false, "same as --daemonize")
	pidFile := fs.String("pidfile", DefaultPidFile, "pid file")
	handler := fs.String("handler", "", "core handler to install (default "+DefaultHandlerPath+", or memfault-core-handler beside this program)")
	verbose := fs.Bool("V", false, "verbose logs")
	showVersion := fs.Bool("v", false, "print the version")
	fs.BoolVar(showVersion, "version", false, "print the version")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		printVersion(os.Stdout)
		return 0
	}
	if *cfgPath != "" {
		if abs, err := filepath.Abs(*cfgPath); err == nil {
			*cfgPath = abs
		}
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	var logOut io.Writer = stderr
	if *daemonize && os.Getenv(daemonChildEnv) == "" {
		return detach(stderr, *pidFile)
	}
	if os.Getenv(daemonChildEnv) != "" {
		if w, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "memfaultd"); err == nil {
			logOut = w
		} else {
			logOut = io.Discard
		}
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))

	if pid, err := ReadPidFile(*pidFile); err == nil && pid != os.Getpid() {
		fmt.Fprintf(stderr, "memfaultd: already running as pid %d (%s)\n", pid, *pidFile)
		return 1
	}
	child := os.Getenv(daemonChildEnv) != ""
	ready := func() error {
		if err := writePidFile(*pidFile); err != nil {
			return err
		}
		if child {
			// Started: the parent has gone, so nothing may be written to its pipe any more.
			if null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
				for fd := 0; fd <= 2; fd++ {
					unix.Dup3(int(null.Fd()), fd, 0)
				}
			}
		}
		return nil
	}
	d, err := New(Options{ConfigPath: *cfgPath, PidFile: *pidFile, HandlerPath: handlerPath(*handler), Log: log, Ready: ready})
	if err != nil {
		fmt.Fprintf(stderr, "memfaultd: refusing to start: %v\n", err)
		return 1
	}
	defer removePidFile(*pidFile)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1)
	go func() {
		for s := range sigs {
			switch s {
			case syscall.SIGHUP:
				log.Info("SIGHUP: reloading configuration")
				d.Reload()
			case syscall.SIGUSR1:
				log.Info("SIGUSR1: syncing now")
				d.RequestSync()
			}
		}
	}()
	if err := d.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "memfaultd: %v\n", err)
		log.Error("cannot start", "err", err)
		return 1
	}
	return 0
}

// handlerPath picks the handler to install: the flag, the layer's path, or the symlink beside
// this program.
func handlerPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if _, err := os.Stat(DefaultHandlerPath); err == nil {
		return DefaultHandlerPath
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "memfault-core-handler")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return DefaultHandlerPath
}

// ReadPidFile returns the pid of the running memfaultd, or an error saying why there is none.
func ReadPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("memfaultd is not running (no %s)", path)
	}
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s does not hold a pid", path)
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(comm)), "memfaultd") {
		return 0, fmt.Errorf("memfaultd is not running (stale %s names pid %d)", path, pid)
	}
	return pid, nil
}

func writePidFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	if err := staging.WriteFileAtomic(path, []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// removePidFile removes the pid file if it is still ours.
func removePidFile(path string) {
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		os.Remove(path)
	}
}

// detach starts memfaultd again in a new session with no terminal and waits until it has
// written its pid file (started) or exited (failed).
func detach(stderr io.Writer, pidFile string) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "memfaultd: %v\n", err)
		return 1
	}
	os.Remove(pidFile)
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), daemonChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		fmt.Fprintf(stderr, "memfaultd: %v\n", err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "memfaultd: %v\n", err)
		return 1
	}
	exited := make(chan error, 1)
	go func() {
		msg, _ := io.ReadAll(io.LimitReader(errPipe, 64<<10))
		err := cmd.Wait()
		if len(msg) > 0 {
			stderr.Write(msg)
		}
		exited <- err
	}()
	deadline := time.After(10 * time.Second)
	for {
		if pid, err := ReadPidFile(pidFile); err == nil && pid == cmd.Process.Pid {
			return 0
		}
		select {
		case err := <-exited:
			fmt.Fprintf(stderr, "memfaultd: the daemon exited during start: %v\n", err)
			return 1
		case <-deadline:
			fmt.Fprintln(stderr, "memfaultd: the daemon did not write its pid file within 10 s")
			return 1
		case <-time.After(20 * time.Millisecond):
		}
	}
}
