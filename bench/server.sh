#!/usr/bin/env bash
# Benchmarks of memfault-server (server issue, part 1):
#   1. unwind+symbolize time per core, cold and warm symbol cache, against
#      `gdb -batch ... 'thread apply all bt'` and `eu-stack -s -i` on the same core, in the same
#      run (interleaved): the fixture cores (src/testdata/cores) and every corpus core
#      (src/testdata/corpus/<case>/<arch>; x86_64 against gdb and eu-stack, aarch64/armhf
#      against gdb-multiarch);
#   2. ingest: N (default 2000, after 16 warm-up cores) uncompressed threads-strategy cores
#      uploaded as MAR zips by 8 concurrent clients on loopback, each doing prepare, PUT,
#      commit like a device: cores/s uploaded and analysed, p50/p99/max commit->analysed (the
#      issue visible), the server's CPU time per core and peak RSS, against a baseline in the
#      same run (the same uploads to a sink server that only reads them). Two cores: the
#      armhf fixture's (61,333 bytes, just under 64 KiB) and the aarch64 fixture's (82,911
#      bytes, over it). INGEST_CORES=armhf (or aarch64) runs one.
#
# What is measured (see benchtool's doc comment):
#   ours cold  AnalyzeCore with a new symbol store: the symbol directories are indexed (the
#              server does that once, at start) but nothing is parsed, no symbol file is open
#              and no DWARF is in memory: the first core of a build-id the server has not seen.
#   ours warm  the same store after one untimed run: the next core with the same modules.
#   gdb, eu-stack  the whole process (start, loading the files, unwinding, printing), run
#              through `sh -c 'exec ...'`.
#   Every figure is the median of REPEAT runs; the runs of all columns are interleaved, so
#   the ratios (gdb/cold, eu-stack/cold) come from the same moments of machine load, in an
#   order that rotates every round (a run right after another process read the same files is
#   slower: each column follows each other one as often).
#   Each table is printed twice when run as root: with the files in the OS page cache, and
#   with the page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every cold
#   run and every gdb/eu-stack run. Not root: the page-cache-kept table only.
# Results: bench/out/server-<time>.txt. DROP=0 skips the page-cache-dropped table, INGEST=0
# the ingest benchmark, ONLY=<regexp> keeps the cores whose label matches.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-2000}
INGEST_CORES=${INGEST_CORES:-armhf aarch64}
REPEAT=${REPEAT:-10}
DROP=${DROP:-1}
INGEST=${INGEST:-1}
ONLY=${ONLY:-.}
work=$(mktemp -d /tmp/mfsbench.XXXXXX)
mkdir -p "$top/bench/out"
out="$top/bench/out/server-$(date -u +%Y%m%dT%H%M%SZ).txt"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
say() { echo "$*" | tee -a "$out"; }

cd "$top/src"
go build -o "$work/memfault-server" ./cmd/memfault-server
go build -o "$work/benchtool" ./internal/server/benchtool
say "# memfault-server benchmark $(date -u +%FT%TZ), kernel $(uname -r), $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "# $(gdb --version | head -1); $(eu-stack --version 2>/dev/null | head -1 || echo 'no eu-stack'); $(go version)"

# Libraries of each architecture's cores on this machine (as in internal/e2e/corpus_test.go).
libs_x86_64=(/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /usr/lib/debug/.build-id)
libs_aarch64=(/usr/aarch64-linux-gnu/lib)
libs_armhf=(/usr/arm-linux-gnueabihf/lib)

# Each core gets a directory holding it (core) and its binaries, where gdb and eu-stack run.
jobs=() # label|dir|symbols dirs (space-separated)|gdb command|eu-stack command (or empty)
for arch in x86_64 aarch64; do
	fx="$top/src/testdata/cores/$arch"
	d="$work/fixture-$arch"
	mkdir -p "$d"
	gunzip -c "$fx/core.gz" > "$d/core"
	cp "$fx/threads" "$d/"
	if [ "$arch" = x86_64 ]; then
		gdbcmd="gdb -nx -batch -ex 'file threads' -ex 'core-file core' -ex 'thread apply all bt'"
		eucmd="eu-stack -s -i -e threads --core=core"
		syms="$fx /lib/x86_64-linux-gnu /usr/lib/debug/.build-id"
	else
		gdbcmd="gdb-multiarch -nx -batch -ex 'set sysroot /usr/aarch64-linux-gnu' -ex 'file threads' -ex 'core-file core' -ex 'thread apply all bt'"
		eucmd=""
		syms="$fx /usr/aarch64-linux-gnu/lib"
	fi
	jobs+=("fixture/$arch|$d|$syms|$gdbcmd|$eucmd")
done
for cj in "$top"/src/testdata/corpus/*/*/case.json; do
	cdir=$(dirname "$cj")
	arch=$(basename "$cdir")
	name=$(basename "$(dirname "$cdir")")/$arch
	d="$work/corpus-${name/\//-}"
	mkdir -p "$d"
	(cd "$cdir" && find . -type f ! -name '*.txt' ! -name '*.json' ! -name core.gz) | while read -r f; do
		mkdir -p "$d/$(dirname "$f")"
		case "$f" in
		*.gz) gunzip -c "$cdir/$f" > "$d/${f%.gz}"; chmod +x "$d/${f%.gz}" ;;
		*) cp -p "$cdir/$f" "$d/$f" ;;
		esac
	done
	gunzip -c "$cdir/core.gz" > "$d/core"
	gdbcmd=$(grep -v '^#' "$cdir/cmd.txt" | head -1)
	exe=$(sed -n "s/.*-ex 'file \([^']*\)'.*/\1/p" <<< "$gdbcmd")
	eucmd=""
	libs="libs_$arch[@]"
	syms="$d"
	for l in "${!libs}"; do [ -d "$l" ] && syms="$syms $l"; done
	if [ "$arch" = x86_64 ] && command -v eu-stack > /dev/null; then
		eucmd="eu-stack -s -i -e $exe --core=core"
	fi
	jobs+=("$name|$d|$syms|$gdbcmd|$eucmd")
done

table() { # extra benchtool flags...
	say "$(printf '%-26s %6s %9s %8s %9s %9s %9s %9s' core frames 'cold ms' 'warm ms' 'gdb ms' 'eu ms' gdb/cold eu/cold)"
	for j in "${jobs[@]}"; do
		IFS='|' read -r label d syms gdbcmd eucmd <<< "$j"
		grep -qE "$ONLY" <<< "$label" || continue
		args=()
		for s in $syms; do args+=(--symbols-dir "$s"); done
		"$work/benchtool" analyze -core "$d/core" -label "$label" -n "$REPEAT" -dir "$d" "${args[@]}" \
			-gdb "$gdbcmd" -eu-stack "$eucmd" "$@" | tee -a "$out"
	done
}
say ""
say "## unwind+symbolize per core, files in the page cache (median of $REPEAT; gdb and eu-stack whole processes)"
table
if [ "$DROP" = 0 ]; then
	say "(DROP=0: no run with the page cache dropped)"
elif [ "$(id -u)" = 0 ]; then
	say ""
	say "## the same, page cache dropped before every cold run and every gdb/eu-stack run"
	table -drop-caches
else
	say "(not root: no run with the page cache dropped)"
fi
say ""

[ "$INGEST" = 0 ] && { echo "results: $out"; exit 0; }
# Ingest throughput with the threads-strategy cores of the fixtures; a fresh server per core.
(cd "$top/src" && go build -o "$work/devbench" ./internal/device/devbench)
for arch in $INGEST_CORES; do
	case $arch in
	armhf) libs=/usr/arm-linux-gnueabihf/lib ;;
	aarch64) libs=/usr/aarch64-linux-gnu/lib ;;
	*) echo "unknown INGEST_CORES entry $arch" >&2; exit 2 ;;
	esac
	gunzip -c "$top/src/testdata/cores/$arch/core.gz" > "$work/core-$arch"
	"$work/devbench" -small "$work/threads-$arch" -in "$work/core-$arch"
	rm -rf "$work/data"
	"$work/memfault-server" --listen 127.0.0.1:0 --data "$work/data" --project-key bench \
		--symbols-dir "$top/src/testdata/cores/$arch" --symbols-dir "$libs" ${SERVER_ARGS:-} > "$work/server.out" 2> "$work/server.log" &
	spid=$!
	pids+=($spid)
	for _ in $(seq 200); do grep -q listening "$work/server.out" 2>/dev/null && break; sleep 0.05; done
	url=$(awk '/listening/ {print $4}' "$work/server.out")
	say ""
	say "## ingest, $arch threads core, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
	"$work/benchtool" ingest -url "$url" -key bench -core "$work/threads-$arch" -clients 8 -n "$N" -pid "$spid" | tee -a "$out"
	say "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
	kill "$spid"
	wait "$spid" 2>/dev/null || true
done
echo "results: $out"
