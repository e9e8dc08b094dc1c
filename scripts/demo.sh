#!/usr/bin/env bash
# The whole product on this machine, in one command (root):
#   build memfaultd, memfault-server, the memfault symbol uploader and three example programs
#   (C, C++, Rust: examples/); start memfault-server on 127.0.0.1 with a fresh SQLite file;
#   upload the examples' symbols with `memfault upload-elf-symbols`; start memfaultd (data
#   collection and developer mode on), which points core_pattern at memfault-core-handler;
#   crash the examples (stripped copies, as a device would run them); `memfaultctl sync`; wait
#   until the server has analysed every core; print each issue with its symbolicated backtrace
#   and the URL of its page, and the webhook calls the server made to a receiver on loopback.
# core_pattern and core_pipe_limit are restored when it exits, also on Ctrl-C and on errors.
# Everything else lives in a temporary directory (kept with --keep, or while --serve runs).
#
#   sudo ./scripts/demo.sh [--keep] [--serve] [--examples c,cpp,rust]
#     --keep       keep the temporary directory (binaries, configuration, logs, database)
#     --serve      leave memfault-server running afterwards (until Ctrl-C) to browse the pages
#     --examples   which examples to build and crash (default: all three)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
keep=0
serve=0
examples=c,cpp,rust
while [ $# -gt 0 ]; do
	a=$1
	shift
	case "$a" in
	--keep) keep=1 ;;
	--serve) serve=1 keep=1 ;;
	--examples)
		[ $# -gt 0 ] || { echo "demo: --examples needs a list, e.g. c,cpp,rust" >&2; exit 2; }
		examples=$1
		shift
		;;
	-h | --help)
		sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "demo: unknown option $a (try --help)" >&2
		exit 2
		;;
	esac
done
for e in ${examples//,/ }; do
	case "$e" in
	c | cpp | rust) ;;
	*)
		echo "demo: --examples: unknown example $e (c, cpp, rust)" >&2
		exit 2
		;;
	esac
done
want() { case ",$examples," in *",$1,"*) return 0 ;; *) return 1 ;; esac }

say() { printf '\n== %s\n' "$*"; }
die() {
	echo "demo: $*" >&2
	exit 1
}

if [ "$(id -u)" != 0 ]; then
	cat >&2 <<MSG
demo: needs root. It writes /proc/sys/kernel/core_pattern and core_pipe_limit (the kernel runs a
core_pattern handler as root), and puts both back when it exits. Run:

    sudo $0

MSG
	exit 1
fi
[ -w /proc/sys/kernel/core_pattern ] || die "/proc/sys/kernel/core_pattern is not writable here (a container without that sysctl?)"

# sudo's secure_path drops ~/.cargo/bin and often Go's directory: look where the invoking user has them.
user_home=
if [ -n "${SUDO_USER:-}" ]; then
	user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6 || true)
fi
for d in /usr/local/go/bin ${user_home:+"$user_home/go/bin" "$user_home/.cargo/bin" "$user_home/sdk/go/bin"} "$HOME/.cargo/bin"; do
	[ -d "$d" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH="$PATH:$d" ;; esac
done
export PATH
missing=
for tool in go gcc g++ strip tar; do
	command -v "$tool" >/dev/null || missing="$missing $tool"
done
[ -z "$missing" ] || die "needs$missing on PATH (Debian: apt-get install golang gcc g++ binutils tar)"
have_rust=0
if command -v cargo >/dev/null && command -v rustc >/dev/null; then
	have_rust=1
	# rustup's cargo under sudo: its toolchains are in the invoking user's ~/.rustup.
	if [ -z "${RUSTUP_HOME:-}" ] && [ -n "$user_home" ] && [ -d "$user_home/.rustup" ] && [ ! -d "$HOME/.rustup" ]; then
		export RUSTUP_HOME="$user_home/.rustup"
	fi
fi

# One user of core_pattern at a time on this machine (the kernel tests take the same lock).
if [ -z "${MEMFAULT_DEMO_LOCK_HELD:-}" ] && command -v flock >/dev/null; then
	exec 9>/tmp/meta-memfault-go-core_pattern.lock
	if ! flock -n 9; then
		echo "demo: another demo or kernel test is using core_pattern; waiting for it..." >&2
		flock 9
	fi
fi

work=$(mktemp -d /tmp/mfdemo.XXXXXX)
chmod 755 "$work"
old_pattern=$(cat /proc/sys/kernel/core_pattern)
old_limit=$(cat /proc/sys/kernel/core_pipe_limit)
server_pid=
daemon_pid=
receiver_pid=
cleanup() {
	status=$?
	trap - EXIT INT TERM
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
	printf '%s\n' "$old_pattern" >/proc/sys/kernel/core_pattern
	printf '%s\n' "$old_limit" >/proc/sys/kernel/core_pipe_limit
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
	[ -n "$receiver_pid" ] && kill "$receiver_pid" 2>/dev/null && wait "$receiver_pid" 2>/dev/null || true
	if [ "$status" != 0 ]; then
		for log in "$work/server.log" "$work/memfaultd.log"; do
			[ -s "$log" ] && { echo "--- last lines of $log" >&2; tail -n 15 "$log" >&2; }
		done
	fi
	echo "(core_pattern restored: $(cat /proc/sys/kernel/core_pattern); core_pipe_limit $(cat /proc/sys/kernel/core_pipe_limit))"
	if [ "$keep" = 1 ] || [ "$status" != 0 ]; then
		echo "(files kept in $work)"
	else
		rm -rf "$work"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "building memfaultd, memfault-server, memfault (into $work/bin)"
mkdir -p "$work/bin" "$work/debug" "$work/device"
(
	cd "$top/src"
	go build -o "$work/bin/memfaultd" ./cmd/memfaultd
	go build -o "$work/bin/memfault-server" ./cmd/memfault-server
	go build -o "$work/bin/memfault" ./cmd/memfault
	go build -o "$work/bin/demo" ./internal/demo
)
ln -s memfaultd "$work/bin/memfault-core-handler"
ln -s memfaultd "$work/bin/memfaultctl"

say "building the examples (debug builds in $work/debug, stripped copies in $work/device)"
if want c; then
	gcc -g -O1 -o "$work/debug/sensor" "$top/examples/c/sensor.c"
	echo "C:    examples/c/sensor.c -> sensor"
fi
# -O0: at -O1 GCC gives the return address of the throw the line of an inlined allocator
# (new_allocator.h:90); the server says what gdb says either way.
if want cpp; then
	g++ -g -O0 -o "$work/debug/inventory" "$top/examples/cpp/inventory.cpp"
	echo "C++:  examples/cpp/inventory.cpp -> inventory"
fi
if ! want rust; then
	:
elif [ "$have_rust" = 1 ]; then
	# Cargo runs as root here: its build and its home (the example has no dependencies) go in the
	# temporary directory, so nothing root-owned lands in the checkout or in ~/.cargo.
	CARGO_TARGET_DIR="$work/cargo-target" CARGO_HOME="$work/cargo-home" \
		RUSTFLAGS="-C force-unwind-tables=yes -C link-arg=-Wl,--build-id" \
		cargo build --quiet --offline --release --manifest-path "$top/examples/rust/Cargo.toml"
	cp "$work/cargo-target/release/thermostat" "$work/debug/thermostat"
	echo "Rust: examples/rust (panic=abort, force-unwind-tables) -> thermostat"
else
	echo "Rust: cargo/rustc not found: the Rust example is skipped (install rustup or Debian's cargo to include it)"
fi
[ -n "$(ls "$work/debug")" ] || die "no example to crash (--examples $examples)"
for f in "$work"/debug/*; do
	strip -o "$work/device/$(basename "$f")" "$f"
done

say "starting memfault-server on 127.0.0.1 (fresh SQLite database in $work/server)"
key=demo-project-key
token=demo-org-token
port=$("$work/bin/demo" freeport)
# A webhook receiver on loopback: the server calls it once per new issue (signed with the secret).
hook_port=$("$work/bin/demo" freeport)
"$work/bin/demo" receive --listen "127.0.0.1:$hook_port" --secret demo-webhook-secret >"$work/webhooks.log" 2>&1 &
receiver_pid=$!
# The examples' symbols come from the uploader below; the system libraries they call into
# (libc, libstdc++, libgcc_s) are read where this machine keeps them, as a Yocto build would
# upload its sysroot's.
symdirs=()
for d in /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib/aarch64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib/debug/.build-id; do
	[ -d "$d" ] && symdirs+=(--symbols-dir "$d")
done
"$work/bin/memfault-server" --listen "127.0.0.1:$port" --data "$work/server" --project-key "$key" \
	--org demo --project demo --org-token "$token" "${symdirs[@]}" \
	--webhook "http://127.0.0.1:$hook_port/hook" --webhook-secret demo-webhook-secret >"$work/server.log" 2>&1 &
server_pid=$!
url="http://127.0.0.1:$port"
for _ in $(seq 100); do
	grep -q 'listening on' "$work/server.log" 2>/dev/null && break
	kill -0 "$server_pid" 2>/dev/null || die "memfault-server exited: $(tail -n 5 "$work/server.log")"
	sleep 0.1
done
grep -q 'listening on' "$work/server.log" || die "memfault-server did not start within 10 s"
echo "memfault-server: $url (log: $work/server.log), webhooks to 127.0.0.1:$hook_port"

say "uploading the examples' symbols: memfault upload-elf-symbols"
tar -C "$work/debug" -czf "$work/symbols.tar.gz" .
"$work/bin/memfault" --url "$url" --org demo --project demo --org-token "$token" \
	upload-elf-symbols --archive "$work/symbols.tar.gz"

say "starting memfaultd (data collection and developer mode on)"
api_port=$("$work/bin/demo" freeport)
cat >"$work/memfaultd.conf" <<CONF
{
  /* scripts/demo.sh: everything under $work */
  "persist_dir": "$work/persist",
  "project_key": "$key",
  "base_url": "$url",
  "enable_data_collection": true,
  "enable_dev_mode": true,
  "upload_interval_seconds": 0,
  "software_type": "demo",
  "software_version": "1.0.0",
  "tmp_dir_min_headroom_kib": 0,
  "http_server": { "bind_address": "127.0.0.1:$api_port" }
}
CONF
"$work/bin/memfaultd" -c "$work/memfaultd.conf" --pidfile "$work/memfaultd.pid" >"$work/memfaultd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do
	grep -q memfault-core-handler /proc/sys/kernel/core_pattern && break
	kill -0 "$daemon_pid" 2>/dev/null || die "memfaultd exited: $(tail -n 5 "$work/memfaultd.log")"
	sleep 0.1
done
grep -q memfault-core-handler /proc/sys/kernel/core_pattern || die "memfaultd did not install the core handler within 10 s"
echo "core_pattern: $(cat /proc/sys/kernel/core_pattern)"
echo "core_pipe_limit: $(cat /proc/sys/kernel/core_pipe_limit)   (before the demo: '$old_pattern', $old_limit)"

say "crashing the examples"
crashes=0
for prog in sensor inventory thermostat; do
	[ -x "$work/device/$prog" ] || continue
	set +e
	{ (cd "$work/device" && exec env -u RUST_BACKTRACE "./$prog" >"$work/$prog.out" 2>&1); } 2>/dev/null
	rc=$?
	set -e
	[ "$rc" -gt 128 ] || die "$prog did not crash (exit status $rc)"
	echo "$prog: killed by SIG$(kill -l $((rc - 128)))"
	sed 's/^/    | /' "$work/$prog.out"
	crashes=$((crashes + 1))
done
# The handler has finished when the kernel reaped the process; its entries are staged.
staged=$(ls "$work"/persist/mar/*/manifest.json 2>/dev/null | wc -l)
echo "staged by memfault-core-handler: $staged entries"
[ "$staged" -ge "$crashes" ] || die "expected $crashes staged entries (see dmesg | grep memfault-core-handler)"

say "memfaultctl sync"
"$work/bin/memfaultctl" -c "$work/memfaultd.conf" sync

say "waiting for memfault-server to analyse $crashes cores"
"$work/bin/demo" report --url "$url" --cores "$crashes" --timeout 120s --webhook-log "$work/webhooks.log"

if [ "$serve" = 1 ]; then
	say "memfault-server keeps running at $url (Ctrl-C to stop)"
	wait "$server_pid"
fi
