#!/usr/bin/env bash
# The project's test command (README.md): formatting, vet, and every Go test. Tests that hand
# crashes to the real kernel run only as root and skip with a reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/../src"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
# Generous per-package timeout: the oracle tests run gdb hundreds of times and take minutes on
# a loaded 2-core machine.
go test -count=1 -timeout 25m "$@" ./...
