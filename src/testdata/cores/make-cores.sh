#!/bin/bash
# make-cores.sh: rebuild every core-dump fixture in this directory from scratch.
#
#   sudo ./make-cores.sh [stage...]      stages: fetch build guest host gdb (default: all)
#
# Needs root (dpkg --add-architecture, mknod, core_pattern) and the Debian 12
# packages qemu-system-arm, qemu-system-x86, gcc-aarch64-linux-gnu,
# gcc-arm-linux-gnueabihf, gcc-i686-linux-gnu, libc6-dev-arm64-cross,
# libc6-dev-armhf-cross, gdb, gdb-multiarch, elfutils, cpio.
#
# All work happens in $WORK (default /tmp/corefix), never in the repository.
# Only core.gz, threads, gdb-full.txt and cmd.txt per architecture are written
# here, plus versions.txt (the versions that made them; copy into README.md).
#
# Fixtures:
#   aarch64/  dynamic aarch64 program, Debian arm64 kernel under qemu-system-aarch64 (TCG)
#   armhf/    dynamic armhf (ELF32, -marm) program, same arm64 kernel (compat mode)
#   x86_64/   dynamic x86-64 program, crashed on this machine's own kernel
#   i386/     static i686 program, Debian amd64 kernel under qemu-system-x86_64 (TCG)
#             (the kernel this was first run on has no IA32 emulation, so not on the host)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PROGDIR=$(cd "$HERE/../programs" && pwd)
WORK=${WORK:-/tmp/corefix}
# Thread stack size in KiB inside the crashing process (RLIMIT_STACK is glibc's default
# pthread stack size). A pipe core_pattern cannot seek, so the kernel writes every
# untouched page of a stack VMA as zeros: 8 workers x 8 MiB would give a 70 MiB core.
STACK_KIB=${STACK_KIB:-256}
CFLAGS_COMMON="-g -O1 -pthread"
QEMU_TIMEOUT=${QEMU_TIMEOUT:-600}

log() { printf '== %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
mkdir -p "$WORK"

# ---------------------------------------------------------------------------
# fetch: Debian arm64 kernel + busybox-static:arm64, amd64 kernel + busybox-static.
# The arm64 dpkg architecture is added only for the download and always removed
# again (unless it was already configured before we started).
fetch() {
	local added=0
	mkdir -p "$WORK/pkgs"
	chown _apt "$WORK/pkgs" 2>/dev/null || true
	if ! dpkg --print-foreign-architectures | grep -qx arm64; then
		added=1
		dpkg --add-architecture arm64
		trap 'dpkg --remove-architecture arm64; apt-get update -qq' EXIT
	fi
	apt-get update -qq
	local kdep
	kdep=${ARM64_KERNEL_PKG:-$(apt-cache depends linux-image-arm64:arm64 |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*-arm64\).*/\1/p' | head -1)}
	local adep
	adep=${AMD64_KERNEL_PKG:-$(apt-cache depends linux-image-amd64:amd64 |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*-amd64\).*/\1/p' | head -1)}
	(cd "$WORK/pkgs" && rm -f ./*.deb &&
		apt-get download "$kdep:arm64" busybox-static:arm64 "$adep:amd64" busybox-static:amd64)
	if [ $added = 1 ]; then
		dpkg --remove-architecture arm64
		trap - EXIT
		apt-get update -qq
	fi
	rm -rf "$WORK/arm64" "$WORK/amd64"
	for a in arm64 amd64; do
		mkdir -p "$WORK/$a/kern" "$WORK/$a/bb"
		dpkg-deb -x "$WORK"/pkgs/linux-image-*_"$a".deb "$WORK/$a/kern"
		dpkg-deb -x "$WORK"/pkgs/busybox-static_*_"$a".deb "$WORK/$a/bb"
	done
	ls -l "$WORK/pkgs"
}

# ---------------------------------------------------------------------------
# build: the four programs.
build() {
	mkdir -p "$WORK/build"/{aarch64,armhf,x86_64,i386}
	# Compiled from the programs directory with its path mapped to ".", so the
	# binaries (and gdb's output) do not depend on where the repository is checked out.
	local p="-ffile-prefix-map=$PROGDIR=."
	cd "$PROGDIR"
	aarch64-linux-gnu-gcc $CFLAGS_COMMON $p -o "$WORK/build/aarch64/threads" threads.c
	# -marm: A32 code for our functions (Debian's libc itself is Thumb-2); gdb unwinds
	# both through DWARF CFI / .ARM.exidx and names every frame it has a symbol for.
	arm-linux-gnueabihf-gcc $CFLAGS_COMMON $p -marm -o "$WORK/build/armhf/threads" threads.c
	gcc $CFLAGS_COMMON $p -o "$WORK/build/x86_64/threads" threads.c
	# static: the i386 guest then needs no loader or libc.
	i686-linux-gnu-gcc $CFLAGS_COMMON $p -static -o "$WORK/build/i386/threads" threads.c
	cd - >/dev/null
	file "$WORK"/build/*/threads
}

# ---------------------------------------------------------------------------
# guest: initramfs + qemu boot; the guest prints each core gzip+base64 between
# marker lines on its console.
BB_APPLETS="sh ash cat chroot dmesg echo gzip base64 ls mkdir mount mv poweroff sleep sync sha256sum uname wc rm stat"

# mkinitrd DIR BUSYBOX_ROOT; then add programs and write init
mkinitrd_base() {
	local root=$1 bb=$2
	rm -rf "$root"
	mkdir -p "$root"/{bin,dev,proc,sys,cores,tmp}
	cp "$bb/bin/busybox" "$root/bin/busybox"
	for a in $BB_APPLETS; do ln -s busybox "$root/bin/$a"; done
	mknod -m 600 "$root/dev/console" c 5 1
	cat >"$root/savecore" <<'EOF'
#!/bin/sh
# core_pattern handler: |/savecore %p %e %s
cat > /cores/incoming
echo "$1 $2 $3" > /cores/incoming.meta
mv /cores/incoming /cores/ready
EOF
	chmod 755 "$root/savecore"
}

# chroot_prog ROOT NAME TRIPLET LOADER BINARY: a chroot whose /lib matches the
# cross sysroot /usr/TRIPLET/lib, so the core's NT_FILE paths resolve there.
chroot_prog() {
	local root=$1 name=$2 trip=$3 loader=$4 bin=$5
	mkdir -p "$root/$name/lib"
	if [ -n "$trip" ]; then
		cp -L "/usr/$trip/lib/$loader" "/usr/$trip/lib/libc.so.6" "$root/$name/lib/"
	fi
	cp "$bin" "$root/$name/threads"
}

write_init() {
	local root=$1
	shift
	{
		cat <<EOF
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
dmesg -n 1
echo '|/savecore %p %e %s' > /proc/sys/kernel/core_pattern
echo 4 > /proc/sys/kernel/core_pipe_limit
echo 0x33 > /proc/self/coredump_filter
ulimit -c unlimited
ulimit -s $STACK_KIB
echo "GUEST-KERNEL \$(uname -a)"
EOF
		for name in "$@"; do
			cat <<EOF
rm -f /cores/*
chroot /$name /threads segv
echo "GUEST-EXIT $name \$?"
n=0
while [ ! -e /cores/ready ] && [ \$n -lt 100 ]; do sleep 0.1; n=\$((n+1)); done
echo "GUEST-META $name \$(cat /cores/incoming.meta) \$(wc -c < /cores/ready) \$(sha256sum < /cores/ready)"
echo "-----BEGIN CORE $name-----"
gzip -1 -c /cores/ready | base64
echo "-----END CORE $name-----"
EOF
		done
		echo 'sync; poweroff -f'
	} >"$root/init"
	chmod 755 "$root/init"
	(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9 -n >"$root.cpio.gz"
}

# extract CONSOLE_LOG NAME OUTFILE
extract_core() {
	local logf=$1 name=$2 out=$3
	tr -d '\r' <"$logf" |
		sed -n "/^-----BEGIN CORE $name-----\$/,/^-----END CORE $name-----\$/p" |
		sed '1d;$d' | base64 -d | gunzip >"$out"
	local want
	want=$(tr -d '\r' <"$logf" | sed -n "s/^GUEST-META $name .* \([0-9a-f]\{64\}\).*/\1/p")
	echo "$want  $out" | sha256sum -c - >&2
}

guest_arm64() {
	local root=$WORK/initrd-arm64
	mkinitrd_base "$root" "$WORK/arm64/bb"
	chroot_prog "$root" aarch64 aarch64-linux-gnu ld-linux-aarch64.so.1 "$WORK/build/aarch64/threads"
	chroot_prog "$root" armhf arm-linux-gnueabihf ld-linux-armhf.so.3 "$WORK/build/armhf/threads"
	write_init "$root" aarch64 armhf
	local t0=$SECONDS
	log "booting qemu-system-aarch64"
	timeout "$QEMU_TIMEOUT" qemu-system-aarch64 -M virt -cpu cortex-a57 -m 1024 -smp 2 -accel tcg \
		-nographic -no-reboot -kernel "$WORK"/arm64/kern/boot/vmlinuz-* -initrd "$root.cpio.gz" \
		-append 'console=ttyAMA0 panic=-1 quiet' </dev/null >"$WORK/console-arm64.log" 2>&1
	log "arm64 guest ran $((SECONDS - t0)) s"
	echo "arm64 boot+crashes+transfer: $((SECONDS - t0)) s" >"$WORK/boot-time-arm64.txt"
	grep -aE '^GUEST-' "$WORK/console-arm64.log" | tr -d '\r' >&2
	mkdir -p "$WORK/cores"
	extract_core "$WORK/console-arm64.log" aarch64 "$WORK/cores/aarch64.core"
	extract_core "$WORK/console-arm64.log" armhf "$WORK/cores/armhf.core"
}

guest_amd64() {
	local root=$WORK/initrd-amd64
	mkinitrd_base "$root" "$WORK/amd64/bb"
	chroot_prog "$root" i386 "" "" "$WORK/build/i386/threads"
	write_init "$root" i386
	local t0=$SECONDS
	log "booting qemu-system-x86_64"
	timeout "$QEMU_TIMEOUT" qemu-system-x86_64 -machine q35 -accel tcg -cpu max -m 1024 -smp 2 \
		-nographic -no-reboot -kernel "$WORK"/amd64/kern/boot/vmlinuz-* -initrd "$root.cpio.gz" \
		-append 'console=ttyS0 panic=-1 quiet' </dev/null >"$WORK/console-amd64.log" 2>&1
	log "amd64 guest ran $((SECONDS - t0)) s"
	echo "amd64 boot+crash+transfer: $((SECONDS - t0)) s" >"$WORK/boot-time-amd64.txt"
	grep -aE '^GUEST-' "$WORK/console-amd64.log" | tr -d '\r' >&2
	mkdir -p "$WORK/cores"
	extract_core "$WORK/console-amd64.log" i386 "$WORK/cores/i386.core"
}

guest() {
	guest_arm64
	guest_amd64
}

# ---------------------------------------------------------------------------
# host: x86_64 core from this machine's kernel through a pipe core_pattern.
# core_pattern and core_pipe_limit are always restored (trap).
OLD_PATTERN= OLD_PIPE_LIMIT= RESTORE_NEEDED=0
restore_core_pattern() {
	if [ $RESTORE_NEEDED = 1 ]; then
		printf '%s\n' "$OLD_PATTERN" >/proc/sys/kernel/core_pattern
		printf '%s\n' "$OLD_PIPE_LIMIT" >/proc/sys/kernel/core_pipe_limit
		RESTORE_NEEDED=0
		log "restored core_pattern='$(cat /proc/sys/kernel/core_pattern)' core_pipe_limit=$(cat /proc/sys/kernel/core_pipe_limit)"
	fi
}
host() {
	local dir=$WORK/host
	rm -rf "$dir"
	mkdir -p "$dir/cores"
	cat >"$dir/savecore" <<EOF
#!/bin/sh
cat > "$dir/cores/incoming"
echo "\$1 \$2 \$3" > "$dir/cores/incoming.meta"
mv "$dir/cores/incoming" "$dir/cores/ready"
EOF
	chmod 755 "$dir/savecore"
	cp "$WORK/build/x86_64/threads" "$dir/threads"
	OLD_PATTERN=$(cat /proc/sys/kernel/core_pattern)
	OLD_PIPE_LIMIT=$(cat /proc/sys/kernel/core_pipe_limit)
	RESTORE_NEEDED=1
	trap restore_core_pattern EXIT INT TERM
	echo "|$dir/savecore %p %e %s" >/proc/sys/kernel/core_pattern
	echo 4 >/proc/sys/kernel/core_pipe_limit
	(
		cd "$dir"
		echo 0x33 >/proc/self/coredump_filter
		ulimit -c unlimited
		ulimit -s "$STACK_KIB"
		exec ./threads segv
	) || log "threads exited with $?"
	local n=0
	while [ ! -e "$dir/cores/ready" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
	restore_core_pattern
	trap - EXIT INT TERM
	[ -e "$dir/cores/ready" ] || { echo "no host core" >&2; exit 1; }
	log "host core meta: $(cat "$dir/cores/incoming.meta")"
	mkdir -p "$WORK/cores"
	mv "$dir/cores/ready" "$WORK/cores/x86_64.core"
}

# ---------------------------------------------------------------------------
# gdb: install the fixtures and write gdb-full.txt / cmd.txt.
gdb_one() {
	local arch=$1 gdbcmd=$2
	local out=$HERE/$arch tmp=$WORK/gdb/$arch
	rm -rf "$tmp"
	mkdir -p "$out" "$tmp"
	cp "$WORK/build/$arch/threads" "$out/threads"
	gzip -9 -n -c "$WORK/cores/$arch.core" >"$out/core.gz"
	cp "$out/threads" "$tmp/threads"
	gunzip -c "$out/core.gz" >"$tmp/core"
	printf '%s\n' "# run in a directory holding threads and core (= gunzip -c core.gz)" "$gdbcmd" >"$out/cmd.txt"
	(cd "$tmp" && env -u DEBUGINFOD_URLS bash -c "$gdbcmd" >"$out/gdb-full.txt" 2>&1)
	log "$arch notes:"
	eu-readelf -n "$tmp/core" | awk '$1 ~ /^(CORE|LINUX)$/ {print $1, $3}' | sort | uniq -c >&2
}
GDB_TAIL="-ex 'file threads' -ex 'core-file core' -ex 'thread apply all bt'"
gdb_all() {
	gdb_one aarch64 "gdb-multiarch -nx -batch -ex 'set sysroot /usr/aarch64-linux-gnu' $GDB_TAIL"
	gdb_one armhf "gdb-multiarch -nx -batch -ex 'set sysroot /usr/arm-linux-gnueabihf' $GDB_TAIL"
	gdb_one x86_64 "gdb -nx -batch $GDB_TAIL"
	gdb_one i386 "gdb -nx -batch $GDB_TAIL"
	versions >"$HERE/versions.txt"
}

versions() {
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "host kernel (x86_64 core): $(uname -r)"
	for a in arm64 amd64; do
		echo "$a kernel package: $(dpkg-deb -f "$WORK"/pkgs/linux-image-*_"$a".deb Package Version | paste -sd' ')"
		echo "$a kernel (guest uname): $(tr -d '\r' <"$WORK/console-$a.log" | sed -n 's/.*GUEST-KERNEL //p')"
		echo "$a busybox-static: $(dpkg-deb -f "$WORK"/pkgs/busybox-static_*_"$a".deb Version)"
		cat "$WORK/boot-time-$a.txt"
	done
	echo "qemu: $(qemu-system-aarch64 --version | head -1)"
	for c in aarch64-linux-gnu-gcc arm-linux-gnueabihf-gcc gcc i686-linux-gnu-gcc; do
		echo "$c: $($c --version | head -1)"
	done
	echo "cross libc: $(dpkg-query -W -f '${Package} ${Version}, ' libc6-arm64-cross libc6-armhf-cross libc6-i386-cross)"
	echo "host libc: $(dpkg-query -W -f '${Version}' libc6)"
	echo "gdb: $(gdb --version | head -1); gdb-multiarch: $(gdb-multiarch --version | head -1)"
	echo "STACK_KIB (ulimit -s for the crashing process): $STACK_KIB"
}

stages=${*:-fetch build guest host gdb}
for s in $stages; do
	case $s in
	fetch) fetch ;;
	build) build ;;
	guest) guest ;;
	guest_arm64) guest_arm64 ;;
	guest_amd64) guest_amd64 ;;
	host) host ;;
	gdb) gdb_all ;;
	*) echo "unknown stage $s" >&2; exit 2 ;;
	esac
done
