#!/usr/bin/env bash
# Benchmarks of memfault-server (server issue, part 1):
#   1. unwind+symbolize time per core (cold and warm symbol cache) against
#      `gdb -batch -ex 'thread apply all bt'` and `eu-stack -s -i` on the same core, same run;
#   2. ingest: N uncompressed threads cores (armhf fixture, ~61 KB) uploaded as MAR zips by 8
#      concurrent clients on loopback; cores/s uploaded and analysed, p50/p99 commit->analysed,
#      and the server's peak RSS.
# Results: bench/out/server-<time>.txt. No root needed.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-400}
REPEAT=${REPEAT:-10}
work=$(mktemp -d /tmp/mfsbench.XXXXXX)
mkdir -p "$top/bench/out"
out="$top/bench/out/server-$(date -u +%Y%m%dT%H%M%SZ).txt"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
say() { echo "$*" | tee -a "$out"; }
msnow() { date +%s%N; }

cd "$top/src"
go build -o "$work/memfault-server" ./cmd/memfault-server
go build -o "$work/benchtool" ./internal/server/benchtool
say "# memfault-server benchmark $(date -u +%FT%TZ), kernel $(uname -r), $(nproc) cpus"

timeit() { # command... -> mean ms over REPEAT runs
	local t0 t1
	t0=$(msnow)
	for _ in $(seq "$REPEAT"); do "$@" > /dev/null 2>&1 || true; done
	t1=$(msnow)
	echo $(( (t1 - t0) / 1000000 / REPEAT ))
}

for arch in x86_64 aarch64; do
	fx="$top/src/testdata/cores/$arch"
	gunzip -c "$fx/core.gz" > "$work/core-$arch"
	if [ "$arch" = x86_64 ]; then
		libs=(--symbols-dir /lib/x86_64-linux-gnu --symbols-dir /usr/lib/debug/.build-id)
		gdbcmd=(gdb -nx -batch -ex "file $fx/threads" -ex "core-file $work/core-$arch" -ex 'thread apply all bt')
		eucmd=(eu-stack -s -i -e "$fx/threads" --core="$work/core-$arch")
	else
		libs=(--symbols-dir /usr/aarch64-linux-gnu/lib)
		gdbcmd=(gdb-multiarch -nx -batch -ex 'set sysroot /usr/aarch64-linux-gnu' -ex "file $fx/threads" -ex "core-file $work/core-$arch" -ex 'thread apply all bt')
		eucmd=()
	fi
	"$work/benchtool" analyze -core "$work/core-$arch" -n "$REPEAT" --symbols-dir "$fx" "${libs[@]}" | tee -a "$out"
	say "gdb $arch: $(timeit "${gdbcmd[@]}") ms per core (thread apply all bt, $REPEAT runs)"
	if [ ${#eucmd[@]} -gt 0 ] && command -v eu-stack >/dev/null; then
		say "eu-stack $arch: $(timeit "${eucmd[@]}") ms per core (-s -i, $REPEAT runs)"
	fi
done

# Ingest throughput, with the threads-strategy core of the armhf fixture (~61 KB).
(cd "$top/src" && go build -o "$work/devbench" ./internal/device/devbench)
gunzip -c "$top/src/testdata/cores/armhf/core.gz" > "$work/core-armhf"
"$work/devbench" -small "$work/threads-armhf" -in "$work/core-armhf"
"$work/memfault-server" --listen 127.0.0.1:0 --data "$work/data" --project-key bench \
	--symbols-dir "$top/src/testdata/cores/armhf" --symbols-dir /usr/arm-linux-gnueabihf/lib > "$work/server.out" 2> "$work/server.log" &
spid=$!
pids+=($spid)
for _ in $(seq 200); do grep -q listening "$work/server.out" 2>/dev/null && break; sleep 0.05; done
url=$(awk '/listening/ {print $4}' "$work/server.out")
"$work/benchtool" ingest -url "$url" -key bench -core "$work/threads-armhf" -clients 8 -n "$N" | tee -a "$out"
say "server peak RSS (VmHWM): $(awk '/^VmHWM/ {print $2, $3}' /proc/$spid/status)"
echo "results: $out"
