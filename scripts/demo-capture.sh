#!/usr/bin/env bash
# Demo of the core handler on this machine (root): build memfaultd, point core_pattern at
# memfault-core-handler, crash an 8-thread C program, and show what was staged and what gdb
# reads from the small core. core_pattern and core_pipe_limit are restored on exit.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" != 0 ]; then
	echo "demo-capture: run as root (sudo $0): it must write /proc/sys/kernel/core_pattern" >&2
	exit 1
fi
for tool in go gcc gdb; do
	command -v "$tool" >/dev/null || { echo "demo-capture: $tool is required" >&2; exit 1; }
done
work=$(mktemp -d /tmp/mfdemo.XXXXXX)
old_pattern=$(cat /proc/sys/kernel/core_pattern)
old_limit=$(cat /proc/sys/kernel/core_pipe_limit)
restore() {
	printf '%s' "$old_pattern" > /proc/sys/kernel/core_pattern
	printf '%s' "$old_limit" > /proc/sys/kernel/core_pipe_limit
}
trap restore EXIT

(cd "$top/src" && go build -o "$work/memfaultd" ./cmd/memfaultd)
ln -s memfaultd "$work/memfault-core-handler"
ln -s memfaultd "$work/memfaultctl"
gcc -g -O1 -pthread -o "$work/threads" "$top/src/testdata/programs/threads.c"
cat > "$work/memfaultd.conf" <<CONF
{
  /* demo: everything under $work, no rate limit */
  "persist_dir": "$work/persist",
  "enable_data_collection": true,
  "enable_dev_mode": true,
  "software_type": "demo",
  "software_version": "1.0.0"
}
CONF
echo "|$work/memfault-core-handler -c $work/memfaultd.conf %P %I %s %e" > /proc/sys/kernel/core_pattern
echo 4 > /proc/sys/kernel/core_pipe_limit
echo "core_pattern: $(cat /proc/sys/kernel/core_pattern)"

"$work/threads" segv || true
sleep 0.2
restore
entry=$(dirname "$(ls "$work"/persist/mar/*/manifest.json)")
core=$(ls "$entry"/core-*.elf.gz)
echo
echo "staged entry: $entry"
ls -l "$entry"
echo
gunzip -c "$core" > "$work/core.elf"
echo "small core: $(stat -c %s "$core") bytes gzipped, $(stat -c %s "$work/core.elf") bytes uncompressed"
echo
echo "gdb -batch -ex 'thread apply all bt 6' threads core.elf:"
gdb -nx -batch -ex 'thread apply all bt 6' "$work/threads" "$work/core.elf" 2>/dev/null | grep -E '^(Thread|#)'
echo
echo "kernel log:"
dmesg 2>/dev/null | grep memfault-core-handler | tail -2 || true
echo "(files kept in $work)"
