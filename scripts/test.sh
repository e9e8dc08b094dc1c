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
# 30 minutes per package: on a loaded machine internal/e2e (which now also runs the demo) and
# the symbolizer's oracle tests outgrow go test's default of 10.
go test -count=1 -timeout 30m "$@" ./...
