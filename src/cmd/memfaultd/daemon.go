package main

import (
	"io"
	"os"

	"meta-memfault-go/internal/device/ctl"
	"meta-memfault-go/internal/device/daemon"
)

func daemonMain(args []string) int {
	return daemon.Main(args, os.Stderr, func(w io.Writer) { ctl.PrintVersion(w) })
}
