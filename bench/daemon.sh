#!/usr/bin/env bash
# Benchmarks of memfaultd (the daemon issue):
#   1. stripped size of the multi-call binary for amd64, arm64 and arm (target <= 10 MiB)
#   2. idle daemon: RSS and CPU over IDLE seconds (default 60)
#   3. upload of N staged 64 KiB cores (default 100) to the device-protocol test server on
#      loopback: total time of `memfaultctl sync` and memfaultd's peak RSS (VmHWM); the
#      baseline is curl PUTting the same bytes as one file to the same server, which is the
#      cost of the transfer alone.
# Root is not needed: the daemon runs with data collection off, so it does not touch
# core_pattern. Results go to bench/out/daemon-<time>.txt.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
IDLE=${IDLE:-60}
N=${N:-100}
work=$(mktemp -d /tmp/mfdbench.XXXXXX)
mkdir -p "$top/bench/out"
out="$top/bench/out/daemon-$(date -u +%Y%m%dT%H%M%SZ).txt"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
say() { echo "$*" | tee -a "$out"; }

cd "$top/src"
say "# memfaultd benchmark $(date -u +%FT%TZ), $(go version | awk '{print $3}'), kernel $(uname -r), $(nproc) cpus"
ldflags='-s -w -B gobuildid'
for arch in amd64 arm64 arm; do
	GOOS=linux GOARCH=$arch GOARM=7 CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$work/memfaultd-$arch" ./cmd/memfaultd
	size=$(stat -c %s "$work/memfaultd-$arch")
	say "$(printf 'binary %-6s %9d bytes (%.2f MiB; target <= 10 MiB)' "$arch" "$size" "$(echo "$size/1048576" | bc -l)")"
done
cp "$work/memfaultd-amd64" "$work/memfaultd"
ln -s memfaultd "$work/memfaultctl"
go build -o "$work/devbench" ./internal/device/devbench

"$work/devbench" -key bench > "$work/server.url" 2> "$work/server.log" &
pids+=($!)
for _ in $(seq 100); do [ "$(wc -l < "$work/server.url")" -ge 2 ] && break; sleep 0.05; done
url=$(sed -n 1p "$work/server.url")
sink=$(sed -n 2p "$work/server.url")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/memfaultd.conf" <<CONF
{"persist_dir": "$work/persist", "enable_data_collection": false, "project_key": "bench",
 "base_url": "$url", "software_type": "bench", "software_version": "1",
 "http_server": {"bind_address": "127.0.0.1:$port"}, "upload_interval_seconds": 0}
CONF
"$work/memfaultd" -c "$work/memfaultd.conf" --pidfile "$work/memfaultd.pid" 2> "$work/memfaultd.log" &
dpid=$!
pids+=($dpid)
for _ in $(seq 100); do [ -s "$work/memfaultd.pid" ] && break; sleep 0.05; done

ticks() { awk '{print $14 + $15}' "/proc/$dpid/stat"; }
hz=$(getconf CLK_TCK)
sleep 1
t0=$(ticks)
max_rss=0
sum_rss=0
for _ in $(seq "$IDLE"); do
	rss=$(awk '/^VmRSS/ {print $2}' "/proc/$dpid/status")
	sum_rss=$((sum_rss + rss))
	[ "$rss" -gt "$max_rss" ] && max_rss=$rss
	sleep 1
done
t1=$(ticks)
say "$(printf 'idle %ss: RSS mean %d KiB, max %d KiB; CPU %.3f s (%.3f%% of one core)' "$IDLE" $((sum_rss / IDLE)) "$max_rss" \
	"$(echo "($t1-$t0)/$hz" | bc -l)" "$(echo "($t1-$t0)/$hz/$IDLE*100" | bc -l)")"

# Upload: stage N entries, then one sync.
"$work/devbench" -stage "$work/persist/mar" -n "$N" -size 65536 -key bench -serial "$(cat /etc/machine-id)"
hwm_before=$(awk '/^VmHWM/ {print $2}' "/proc/$dpid/status")
s0=$(date +%s%N)
"$work/memfaultctl" -c "$work/memfaultd.conf" --pidfile "$work/memfaultd.pid" sync | tee -a "$out"
s1=$(date +%s%N)
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$dpid/status")
left=$(find "$work/persist/mar" -mindepth 1 -maxdepth 1 | wc -l)
sync_ms=$(( (s1 - s0) / 1000000 ))
say "upload $N x 64 KiB: ${sync_ms} ms for memfaultctl sync, memfaultd peak RSS (VmHWM) ${hwm} KiB (${hwm_before} KiB before), ${left} entries left"

# Baseline: the same bytes as one PUT with curl (transfer cost only, no protocol).
head -c $((N * 65536)) /dev/urandom > "$work/blob"
b0=$(date +%s%N)
curl -s -o /dev/null -X PUT -T "$work/blob" "$sink/baseline"
b1=$(date +%s%N)
base_ms=$(( (b1 - b0) / 1000000 ))
say "baseline curl PUT of $((N * 64)) KiB: ${base_ms} ms; memfaultd/baseline = $(echo "$sync_ms/($base_ms+0.001)" | bc -l | cut -c1-5)"

kill "$dpid"
wait "$dpid" 2>/dev/null || true
echo "results: $out"
