// Package ctl is memfaultctl: the command line that people and scripts use to look at and
// steer memfaultd on a device.
package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"meta-memfault-go/internal/device/config"
	"meta-memfault-go/internal/device/daemon"
	"meta-memfault-go/internal/version"
)

const usage = `usage: memfaultctl [-c CONFIG] COMMAND [ARGS]

commands:
  enable-data-collection     consent to collecting and uploading data; restarts memfaultd
  disable-data-collection    withdraw consent; restarts memfaultd (core_pattern is restored)
  enable-dev-mode            developer mode: no rate limit, uploads right after a crash
  disable-dev-mode
  trigger-coredump [segfault|divide-by-zero]
                             start a child process that crashes
  sync                       upload everything staged now
  export -o FILE|- [-n]      write staged data as a MAR zip (and delete it unless -n)
  write-attributes KEY=VALUE...
                             record device attributes
  show-settings              print the merged configuration and the device identity
  --version                  print the version
`

// exit codes
const (
	exitOK       = 0
	exitFailed   = 1
	exitUsage    = 2
	exitNoDaemon = 3
)

type cli struct {
	cfgPath string
	pidFile string
	stdout  io.Writer
	stderr  io.Writer
}

func (c *cli) errorf(format string, args ...any) {
	fmt.Fprintf(c.stderr, "memfaultctl: "+format+"\n", args...)
}

// Main runs memfaultctl and returns its exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("memfaultctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	c := &cli{stdout: stdout, stderr: stderr}
	fs.StringVar(&c.cfgPath, "c", "", "configuration file (default /etc/memfaultd.conf)")
	fs.StringVar(&c.pidFile, "pidfile", daemon.DefaultPidFile, "memfaultd's pid file")
	showVersion := fs.Bool("version", false, "print the version")
	fs.BoolVar(showVersion, "v", false, "print the version")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *showVersion {
		PrintVersion(stdout)
		return exitOK
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := rest[0], rest[1:]
	switch cmd {
	case "enable-data-collection":
		return c.setBool("enable_data_collection", true, "data collection")
	case "disable-data-collection":
		return c.setBool("enable_data_collection", false, "data collection")
	case "enable-dev-mode":
		return c.setBool("enable_dev_mode", true, "developer mode")
	case "disable-dev-mode":
		return c.setBool("enable_dev_mode", false, "developer mode")
	case "show-settings":
		return c.showSettings()
	case "trigger-coredump":
		kind := "segfault"
		if len(rest) > 0 {
			kind = rest[0]
		}
		return c.triggerCoredump(kind)
	case "sync":
		return c.sync()
	case "export":
		return c.export(rest)
	case "write-attributes":
		return c.writeAttributes(rest)
	case crashNow:
		if len(rest) < 1 {
			return exitUsage
		}
		crash(rest[0])
		return exitFailed
	case "--version", "version":
		PrintVersion(stdout)
		return exitOK
	}
	c.errorf("unknown command %q", cmd)
	fmt.Fprint(stderr, usage)
	return exitUsage
}

// PrintVersion prints the VERSION=, GIT COMMIT= and BUILD ID= lines.
func PrintVersion(w io.Writer) {
	fmt.Fprintf(w, "VERSION=%s\nGIT COMMIT=%s\nBUILD ID=%s\n", version.Version, version.GitCommit, version.BuildID())
}

func (c *cli) load() (*config.Config, bool) {
	cfg, err := config.Load(c.cfgPath)
	if err != nil {
		c.errorf("%v", err)
		return nil, false
	}
	return cfg, true
}

func (c *cli) showSettings() int {
	cfg, ok := c.load()
	if !ok {
		return exitFailed
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id, err := config.LoadDeviceInfo(ctx, cfg, "/", 3*time.Second)
	if err != nil {
		c.errorf("device info: %v", err)
	}
	if err := cfg.ShowSettings(c.stdout, id); err != nil {
		c.errorf("%v", err)
		return exitFailed
	}
	return exitOK
}

// setBool writes one consent or mode switch to runtime.conf and makes memfaultd apply it.
func (c *cli) setBool(key string, on bool, what string) int {
	cfg, ok := c.load()
	if !ok {
		return exitFailed
	}
	cur := cfg.EnableDataCollection
	if key == "enable_dev_mode" {
		cur = cfg.EnableDevMode
	}
	state, verb := "disabled", "Disabling"
	if on {
		state, verb = "enabled", "Enabling"
	}
	if cur == on {
		fmt.Fprintf(c.stdout, "%s is already %s\n", capitalize(what), state)
		return exitOK
	}
	fmt.Fprintf(c.stdout, "%s %s\n", verb, what)
	if err := cfg.WriteRuntime(map[string]any{key: on}); err != nil {
		if errors.Is(err, os.ErrPermission) {
			c.errorf("cannot write %s: permission denied (run as root)", config.RuntimeFile)
		} else {
			c.errorf("%v", err)
		}
		return exitFailed
	}
	return c.applyToDaemon(cfg)
}

func capitalize(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

// applyToDaemon restarts memfaultd through systemd when systemd runs it, else sends it
// SIGHUP. Without a running daemon, consent withdrawn still takes our handler out of
// core_pattern right away.
func (c *cli) applyToDaemon(cfg *config.Config) int {
	if restarted, err := systemdRestart(); restarted {
		if err != nil {
			c.errorf("systemctl restart memfaultd: %v", err)
			return exitFailed
		}
		return exitOK
	}
	pid, err := daemon.ReadPidFile(c.pidFile)
	if err != nil {
		if !cfg.EnableDataCollection {
			hook := daemon.KernelHookFor(cfg, c.cfgPath, "/proc", nil)
			if err := hook.Uninstall(); err != nil {
				c.errorf("restore core_pattern: %v", err)
				return exitFailed
			}
		}
		c.errorf("%v; the setting is saved and applies when memfaultd starts", err)
		return exitNoDaemon
	}
	if err := signalPid(pid, "HUP"); err != nil {
		c.errorf("signal memfaultd (pid %d): %v", pid, err)
		return exitFailed
	}
	return exitOK
}
