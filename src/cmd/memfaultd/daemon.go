package main

import (
	"fmt"
	"os"

	"meta-memfault-go/internal/device/ctl"
)

// daemonMain is the memfaultd name. The service loop (consent, core_pattern ownership,
// uploads) is the daemon issue's work; until it lands this name answers --version and says
// plainly that it cannot run as a service.
func daemonMain(args []string) int {
	for _, a := range args {
		if a == "--version" || a == "-v" {
			return ctl.Main([]string{"--version"}, os.Stdout, os.Stderr)
		}
	}
	fmt.Fprintln(os.Stderr, "memfaultd: this build has no daemon loop yet; memfaultctl and memfault-core-handler work")
	return 1
}
