#!/usr/bin/env bash
# Benchmark of memfault-core-handler against a baseline that saves the kernel's whole core
# (what the kernel's own `core` file or systemd-coredump does), on this machine's kernel.
#
# For each touched-heap size (default 16, 256 and 2048 MiB) the 8-thread test program crashes
# through: the handler with `threads`, the handler with `kernel_selection` (gzip, zstd, none),
# and the baseline (core_pattern = a plain file). Reported per run:
#   wall   signal to process reaped; with core_pipe_limit > 0 the kernel reaps the process only
#          after the handler exited, so this is signal-to-handler-exit
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
work=$(mktemp -d /tmp/mfbench.XXXXXX)
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
	local strategy="{\"type\": \"$1\"}"
	cat > "$work/$1-$2.conf" <<CONF
{"persist_dir": "$work/persist", "enable_data_collection": true, "enable_dev_mode": true,
 "tmp_dir_min_headroom_kib": 0, "software_type": "bench", "software_version": "1",
 "coredump": {"capture_strategy": $strategy, "compression": "$2", "coredump_max_size_kib": 100000000}}
CONF
	echo "$work/$1-$2.conf"
}

# run_one LABEL MIB PATTERN -> prints "label mib wall_ms rss_kib out_bytes"
run_one() {
	local label=$1 mib=$2 pattern=$3
	rm -rf "$work/persist" "$work"/core.* "$work/kmsg"
	printf '%s' "$pattern" > /proc/sys/kernel/core_pattern
	local t0 t1
	# The program prints its pid after touching the heap; the clock starts when it crashes.
	(cd "$work" && ulimit -c unlimited && THREADS_HEAP_MIB=$mib exec ./threads busy) > "$work/prog.out" 2>&1 &
	local child=$!
	wait "$child" || true
	t1=$(date +%s%N)
	t0=$(awk '/crashing/ {print $5}' "$work/prog.out")
	local wall=$(( (t1 - t0) / 1000000 ))
	local rss="-" size core
	if [ -f "$work/kmsg" ]; then
		rss=$(grep -o 'peak RSS [0-9]*' "$work/kmsg" | awk '{print $3}')
		core=$(grep -o '([0-9]* uncompressed)' "$work/kmsg" | tr -dc 0-9)
		size=$(stat -c %s "$work"/persist/mar/*/core-* 2>/dev/null || echo 0)
		grep -q Successfully "$work/kmsg" || { echo "handler failed:" >&2; cat "$work/kmsg" >&2; }
	else
		size=$(stat -c %s "$work"/core.* 2>/dev/null || echo 0)
		core=$size
	fi
	printf '%-22s %6s %9s %8s %12s %12s\n' "$label" "$mib" "$wall" "$rss" "$size" "$core"
}

handler_pattern() { # conf
	echo "|$work/memfault-core-handler -c $1 --timeout 600s --kmsg $work/kmsg %P %I %s %e"
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

for mib in $SIZES; do
	median_run threads-gzip "$mib" "$(handler_pattern "$(config threads gzip)")" | tee -a "$out"
	median_run kernel_selection-gzip "$mib" "$(handler_pattern "$(config kernel_selection gzip)")" | tee -a "$out"
	median_run kernel_selection-zstd "$mib" "$(handler_pattern "$(config kernel_selection zstd)")" | tee -a "$out"
	median_run kernel_selection-none "$mib" "$(handler_pattern "$(config kernel_selection none)")" | tee -a "$out"
	median_run baseline-kernel-file "$mib" "$work/core.%p" | tee -a "$out"
done

# Ratios the issue asks for.
awk '
/^threads-gzip/ { t[$2]=$3; tsz[$2]=$5; trss=($4>trss?$4:trss) }
/^baseline/     { b[$2]=$3; bsz[$2]=$5 }
/^kernel_selection-(gzip|zstd|none)/ { split($1,a,"-"); printf "%s at %s MiB: %.0f MB/s of core\n", $1, $2, $6/1e6/($3/1000) }
END {
  n=asorti(t, sizes, "@ind_num_asc"); small=sizes[1]; big=sizes[n]
  printf "\nthreads: time at %s MiB / time at %s MiB = %.2f (target <= 1.5)\n", big, small, t[big]/(t[small]>0?t[small]:1)
  for (i=1;i<=n;i++) { s=sizes[i]; printf "threads vs baseline at %s MiB: %.0fx faster, %.0fx smaller\n", s, b[s]/(t[s]>0?t[s]:1), bsz[s]/(tsz[s]>0?tsz[s]:1) }
  printf "threads peak RSS (max over sizes): %s KiB (target <= 16384)\n", trss
}' "$out" | tee -a "$out"
echo "results: $out"
