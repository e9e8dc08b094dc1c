#!/usr/bin/env bash
# Benchmark of memfault-core-handler against a baseline that saves the kernel's whole core
# (what the kernel's own `core` file or systemd-coredump does), on this machine's kernel.
#
# For each touched-heap size (default 16, 256 and 2048 MiB) the 8-thread test program crashes
# through: the handler with `threads`, the handler with `kernel_selection` (gzip, zstd, none),
# and the baseline (core_pattern = a plain file). Reported per run:
#   wall   signal to handler exit: from the program's clock reading just before it faults to
#          the handler's last write (the mtime of its log file, written as it exits); for the
#          baseline, to the last write of the kernel's core file. Process teardown (freeing a
#          2 GiB heap takes a quarter of a second) comes after and is not counted.
#   rss    the handler's peak RSS (its own getrusage, from its kernel log line)
#   out    bytes stored (the staged core, or the kernel's core file)
# Needs root (it sets core_pattern; restored on exit). Results: bench/out/capture-<time>.txt.
#
#   sudo bench/capture.sh            # all sizes
#   sudo SIZES="16 256" bench/capture.sh
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "capture.sh: run as root (it writes core_pattern)" >&2; exit 1; }
SIZES=${SIZES:-"16 256 2048"}
REPEAT=${REPEAT:-3}
work=$(mktemp -d /tmp/mb.XXXX) # short: core_pattern holds 127 bytes
mkdir -p "$top/bench/out"
out="$top/bench/out/capture-$(date -u +%Y%m%dT%H%M%SZ).txt"

old_pattern=$(cat /proc/sys/kernel/core_pattern)
old_limit=$(cat /proc/sys/kernel/core_pipe_limit)
cleanup() {
	printf '%s' "$old_pattern" > /proc/sys/kernel/core_pattern
	printf '%s' "$old_limit" > /proc/sys/kernel/core_pipe_limit
	rm -rf "$work"
}
trap cleanup EXIT

(cd "$top/src" && go build -trimpath -ldflags='-s -w' -o "$work/memfaultd" ./cmd/memfaultd)
ln -s memfaultd "$work/memfault-core-handler"
gcc -O1 -g -pthread -o "$work/threads" "$top/src/testdata/programs/threads.c"
echo 4 > /proc/sys/kernel/core_pipe_limit

config() { # strategy compression
	local strategy="{\"type\": \"$1\"}" name="$work/${1:0:1}${2:0:1}"
	cat > "$name" <<CONF
{"persist_dir": "$work/persist", "enable_data_collection": true, "enable_dev_mode": true,
 "tmp_dir_min_headroom_kib": 0, "software_type": "bench", "software_version": "1",
 "coredump": {"capture_strategy": $strategy, "compression": "$2", "coredump_max_size_kib": 100000000}}
CONF
	echo "$name"
}

# run_one LABEL MIB PATTERN -> prints "label mib wall_ms rss_kib out_bytes"
run_one() {
	local label=$1 mib=$2 pattern=$3
	rm -rf "$work/persist" "$work"/core.* "$work/k"
	# Start from a clean page cache: the previous run's gigabytes of dirty pages would
	# otherwise be written back during this run and slow its fsyncs.
	sync
	printf '%s' "$pattern" > /proc/sys/kernel/core_pattern
	local t0 t1
	# The program prints its pid after touching the heap; the clock starts when it crashes.
	(cd "$work" && ulimit -c unlimited && THREADS_HEAP_MIB=$mib exec ./threads busy) > "$work/prog.out" 2>&1 &
	local child=$!
	wait "$child" || true
	t0=$(awk '/crashing/ {print $5}' "$work/prog.out")
	local rss="-" size core t1
	if [ -f "$work/k" ]; then
		t1=$(stat -c %.9Y "$work/k" | tr -d .)
	else
		t1=$(stat -c %.9Y "$work"/core.* | tr -d .)
	fi
	local wall=$(( (t1 - t0) / 1000000 ))
	if [ -f "$work/k" ]; then
		rss=$(grep -o 'peak RSS [0-9]*' "$work/k" | awk '{print $3}')
		core=$(grep -o '([0-9]* uncompressed)' "$work/k" | tr -dc 0-9)
		size=$(stat -c %s "$work"/persist/mar/*/core-* 2>/dev/null || echo 0)
		grep -q Successfully "$work/k" || { echo "handler failed:" >&2; cat "$work/k" >&2; }
	else
		size=$(stat -c %s "$work"/core.* 2>/dev/null || echo 0)
		core=$size
	fi
	printf '%-22s %6s %9s %8s %12s %12s\n' "$label" "$mib" "$wall" "$rss" "$size" "$core"
}

handler_pattern() { # conf
	echo "|$work/memfault-core-handler -c $1 --timeout 600s --kmsg $work/k %P %I %s %e"
}

{
echo "# capture benchmark $(date -u +%FT%TZ), kernel $(uname -r), $(nproc) cpus, repeat $REPEAT (median)"
printf '%-22s %6s %9s %8s %12s %12s\n' run heapMiB wall_ms rss_KiB out_bytes core_bytes
} | tee "$out"

median_run() { # label mib pattern
	local rows=()
	for _ in $(seq "$REPEAT"); do rows+=("$(run_one "$@")"); done
	printf '%s\n' "${rows[@]}" | sort -k3,3n | sed -n "$(( (REPEAT + 1) / 2 ))p"
}

RUNS=${RUNS:-"threads kernel_selection baseline"}
for mib in $SIZES; do
	median_run threads-gzip "$mib" "$(handler_pattern "$(config threads gzip)")" | tee -a "$out"
	case " $RUNS " in *" kernel_selection "*) ;; *) continue ;; esac
	median_run kernel_selection-gzip "$mib" "$(handler_pattern "$(config kernel_selection gzip)")" | tee -a "$out"
	median_run kernel_selection-zstd "$mib" "$(handler_pattern "$(config kernel_selection zstd)")" | tee -a "$out"
	median_run kernel_selection-none "$mib" "$(handler_pattern "$(config kernel_selection none)")" | tee -a "$out"
	median_run baseline-kernel-file "$mib" "$work/core.%p" | tee -a "$out"
done

# Ratios the issue asks for.
python3 - "$out" <<'PY' | tee -a "$out"
import sys
rows = [l.split() for l in open(sys.argv[1]) if l[:1].isalpha() and not l.startswith("run ")]
def get(run, mib, col):
    return next((float(r[col]) for r in rows if r[0] == run and r[1] == mib), float("nan"))
sizes = sorted({r[1] for r in rows}, key=int)
lo, hi = sizes[0], sizes[-1]
print()
print("threads: wall at %s MiB / wall at %s MiB = %.2f (target <= 1.5)" % (hi, lo, get("threads-gzip", hi, 2) / max(get("threads-gzip", lo, 2), 1)))
for s in sizes:
    if get("baseline-kernel-file", s, 2) != get("baseline-kernel-file", s, 2):
        continue  # only the threads runs were asked for
    print("%s MiB: threads %.0fx faster than the baseline (target >= 50x at 2 GiB); threads core %.0fx smaller uncompressed, %.0fx stored" % (
        s, get("baseline-kernel-file", s, 2) / max(get("threads-gzip", s, 2), 1),
        get("baseline-kernel-file", s, 5) / get("threads-gzip", s, 5), get("baseline-kernel-file", s, 4) / get("threads-gzip", s, 4)))
    for c in ("gzip", "zstd", "none"):
        r = "kernel_selection-" + c
        print("   %s: %.0f MB/s of core (%d bytes in %d ms), stored %d bytes" % (r, get(r, s, 5) / 1e6 / (get(r, s, 2) / 1000), get(r, s, 5), get(r, s, 2), get(r, s, 4)))
print("peak RSS of the handler (max over all runs): %d KiB (target <= 16384 with threads)" % max(float(r[3]) for r in rows if r[3] != "-"))
print("peak RSS with threads: %d KiB" % max(float(r[3]) for r in rows if r[0] == "threads-gzip"))
PY
echo "results: $out"
