// memfaultd is one multi-call binary: by the name it is run as (argv[0]) it is the daemon
// (memfaultd), the control tool (memfaultctl) or the kernel's core handler
// (memfault-core-handler). The layer installs the other two names as symlinks.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"meta-memfault-go/internal/device/ctl"
	"meta-memfault-go/internal/device/handler"
	"meta-memfault-go/internal/version"
)

func main() {
	os.Exit(run(filepath.Base(os.Args[0]), os.Args[1:]))
}

func run(name string, args []string) int {
	switch name {
	case "memfault-core-handler":
		return handler.Main(args, version.Version)
	case "memfaultctl":
		return ctl.Main(args, os.Stdout, os.Stderr)
	case "memfaultd":
		return daemonMain(args)
	}
	fmt.Fprintf(os.Stderr, "%s: run me as memfaultd, memfaultctl or memfault-core-handler (argv[0] names the tool)\n", name)
	return 2
}
