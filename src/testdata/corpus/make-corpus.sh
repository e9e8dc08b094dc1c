#!/bin/bash
# make-corpus.sh: rebuild the fidelity corpus (crashing programs + real kernel cores +
# gdb's view of them) in this directory from scratch. See README.md.
#
#   sudo ./make-corpus.sh [stage...]   stages: fetch build guest host fixtures (default: all)
#
# Needs root (mknod, chroot, core_pattern) and the Debian 12 packages qemu-system-arm,
# gcc, g++, gcc-aarch64-linux-gnu, g++-aarch64-linux-gnu, gcc-arm-linux-gnueabihf,
# g++-arm-linux-gnueabihf, gdb, gdb-multiarch, elfutils, binutils, cpio, jq, python3,
# plus Go (/usr/local/go) and a rustc with the x86_64-unknown-linux-gnu std.
#
# All work happens in $WORK (default /tmp/corpusfix); the Debian kernel and busybox
# packages are downloaded there with a private apt state (no dpkg architecture is
# added to the machine). Only the case directories' arch subdirectories and
# versions.txt are written here.
#
# core_pattern: the host stage holds flock /tmp/meta-memfault-go-core_pattern.lock for
# as long as it has changed core_pattern / core_pipe_limit, and restores both (trap).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${WORK:-/tmp/corpusfix}
STACK_KIB=${STACK_KIB:-256}
QEMU_TIMEOUT=${QEMU_TIMEOUT:-900}
LOCK=/tmp/meta-memfault-go-core_pattern.lock
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

# case:arch list; the arch decides where the program crashes:
#   x86_64 on this machine's kernel, aarch64 and armhf in one qemu-system-aarch64 guest.
CASES_x86_64=${CASES_x86_64-"c-o2-inline cpp-exception cpp-segv-template rust-panic-abort go-crash c-static-pie c-static c-separate-debug c-tailcalls"}
CASES_aarch64=${CASES_aarch64-"c-o2-inline cpp-exception go-crash c-separate-debug"}
CASES_armhf=${CASES_armhf-"c-o2-inline cpp-exception go-crash"}

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'make-corpus: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
mkdir -p "$WORK"

triplet() {
	case $1 in
	x86_64) echo x86_64-linux-gnu ;;
	aarch64) echo aarch64-linux-gnu ;;
	armhf) echo arm-linux-gnueabihf ;;
	esac
}
# prefix of the C/C++ compilers and binutils for an arch ("" = host)
cross() {
	case $1 in
	x86_64) echo "" ;;
	*) echo "$(triplet "$1")-" ;;
	esac
}
# binary file names of a case (the executable first)
bins() {
	case $1 in
	c-separate-debug) echo "c-separate-debug libfilter.so" ;;
	*) echo "$1" ;;
	esac
}

# ---------------------------------------------------------------------------
# fetch: Debian arm64 kernel + busybox-static:arm64 with a private apt state.
APT_OPTS=(-o "Dir::State::Lists=$WORK/apt/lists" -o "Dir::Cache=$WORK/apt/cache"
	-o "APT::Architectures::=amd64" -o "APT::Architectures::=arm64")
fetch() {
	rm -rf "$WORK/apt" "$WORK/pkgs" "$WORK/arm64"
	mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial" "$WORK/pkgs"
	chown -R _apt "$WORK/apt" "$WORK/pkgs" 2>/dev/null || true
	apt-get "${APT_OPTS[@]}" update -qq
	local kpkg
	kpkg=${ARM64_KERNEL_PKG:-$(apt-cache "${APT_OPTS[@]}" depends linux-image-arm64:arm64 |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*-arm64\).*/\1/p' | head -1)}
	[ -n "$kpkg" ] || die "no arm64 kernel package found"
	(cd "$WORK/pkgs" && apt-get "${APT_OPTS[@]}" download "$kpkg:arm64" busybox-static:arm64)
	mkdir -p "$WORK/arm64/kern" "$WORK/arm64/bb"
	dpkg-deb -x "$WORK"/pkgs/linux-image-*_arm64.deb "$WORK/arm64/kern"
	dpkg-deb -x "$WORK"/pkgs/busybox-static_*_arm64.deb "$WORK/arm64/bb"
	ls -l "$WORK/pkgs" >&2
}

# ---------------------------------------------------------------------------
# build: every case for every arch into $WORK/build/<arch>/<case>/ (unstripped), plus
# $WORK/build/<arch>/c-separate-debug/stripped/ (deployed binaries + .debug files).
# Sources are compiled from this directory with relative names and
# -ffile-prefix-map=<this dir>=., so no path of the checkout is in any binary.
# rec CMD...: run a build command and append it to $out/build.txt, with the output
# directory written as "." and this directory as "<corpus>" (commands run in <corpus>).
rec() {
	local line="$*"
	line=${line//$out/.}
	printf '%s\n' "${line//$HERE/<corpus>}" >>"$out/build.txt"
	"$@"
}
build_case() {
	local arch=$1 c=$2
	local out=$WORK/build/$arch/$c x
	x=$(cross "$arch")
	local cc=${x}gcc cxx=${x}g++ pm="-ffile-prefix-map=$HERE=."
	rm -rf "$out"
	mkdir -p "$out"
	case $c in
	c-o2-inline)
		rec $cc -g -O2 -pthread $pm -o "$out/$c" c-o2-inline/main.c ;;
	c-tailcalls)
		rec $cc -g -O2 -pthread $pm -o "$out/$c" c-tailcalls/main.c ;;
	cpp-exception)
		rec $cxx -g -O2 $pm -o "$out/$c" cpp-exception/main.cpp ;;
	cpp-segv-template)
		rec $cxx -g -O2 $pm -o "$out/$c" cpp-segv-template/main.cpp ;;
	c-static)
		rec $cc -g -O2 -pthread -static $pm -o "$out/$c" c-static/main.c ;;
	c-static-pie)
		rec $cc -g -O2 -pthread -static-pie $pm -o "$out/$c" c-static/main.c ;;
	rust-panic-abort)
		rec rustc --edition 2021 --crate-name rust_panic_abort -C panic=abort -C force-unwind-tables=yes \
			-C debuginfo=2 -C opt-level=1 --remap-path-prefix="$HERE=." -o "$out/$c" rust-panic-abort/main.rs ;;
	go-crash)
		local goarch=amd64 goarm=
		case $arch in aarch64) goarch=arm64 ;; armhf) goarch=arm goarm=7 ;; esac
		# run in go-crash/ (recorded as env ... go build, with CGO_ENABLED=0 GOTOOLCHAIN=local)
		(cd go-crash && rec env CGO_ENABLED=0 GOOS=linux GOARCH=$goarch ${goarm:+GOARM=$goarm} \
			go build -trimpath -o "$out/$c" main.go) ;;
	c-separate-debug)
		rec $cc -g -O1 -fPIC -shared -Wl,-soname,libfilter.so $pm \
			-o "$out/libfilter.so" c-separate-debug/filter.c
		rec $cc -g -O1 -fPIE -pie $pm -o "$out/$c" c-separate-debug/main.c \
			-L"$out" -lfilter -Wl,-rpath,/c-separate-debug
		mkdir -p "$out/stripped"
		local b
		for b in $(bins "$c"); do
			rec ${x}objcopy --only-keep-debug "$out/$b" "$out/stripped/$b.debug"
			rec ${x}strip --strip-debug -o "$out/stripped/$b" "$out/$b"
			# in stripped/, so the link holds the bare file name
			(cd "$out/stripped" && rec ${x}objcopy --add-gnu-debuglink="$b.debug" "$b")
		done ;;
	*) die "unknown case $c" ;;
	esac
}
build() {
	cd "$HERE"
	for arch in x86_64 aarch64 armhf; do
		local v=CASES_$arch
		for c in ${!v}; do
			log "build $arch/$c"
			build_case "$arch" "$c"
		done
	done
	cd - >/dev/null
	file "$WORK"/build/*/*/* | grep ELF | sed "s|$WORK/build/||" >&2
}

# The binaries a case runs with: the deployed (stripped) ones for c-separate-debug.
run_dir() {
	if [ "$2" = c-separate-debug ]; then
		echo "$WORK/build/$1/$2/stripped"
	else
		echo "$WORK/build/$1/$2"
	fi
}

# fill_root ROOT ARCH: a chroot laid out like /usr/<triplet> (ARM) or the host (x86_64)
# for the system libraries, with /<case>/<binaries> for every case of ARCH.
fill_root() {
	local root=$1 arch=$2 t
	t=$(triplet "$arch")
	rm -rf "$root"
	case $arch in
	x86_64)
		mkdir -p "$root/lib/$t" "$root/lib64"
		for l in libc.so.6 libm.so.6 libstdc++.so.6 libgcc_s.so.1 ld-linux-x86-64.so.2; do
			cp -L "/lib/$t/$l" "$root/lib/$t/$l"
		done
		ln -s "../lib/$t/ld-linux-x86-64.so.2" "$root/lib64/ld-linux-x86-64.so.2" ;;
	*)
		local ld=ld-linux-aarch64.so.1
		[ "$arch" = armhf ] && ld=ld-linux-armhf.so.3
		mkdir -p "$root/lib"
		for l in libc.so.6 libm.so.6 libstdc++.so.6 libgcc_s.so.1 $ld; do
			cp -L "/usr/$t/lib/$l" "$root/lib/$l"
		done ;;
	esac
	local v=CASES_$arch c
	for c in ${!v}; do
		mkdir -p "$root/$c"
		for b in $(bins "$c"); do cp "$(run_dir "$arch" "$c")/$b" "$root/$c/$b"; done
	done
}

# ---------------------------------------------------------------------------
# guest: aarch64 and armhf cores from the Debian arm64 kernel under qemu-system-aarch64.
BB_APPLETS="sh ash cat chroot dmesg echo env gzip base64 ls mkdir mount mv poweroff sleep sync sha256sum uname wc rm stat"
guest() {
	local root=$WORK/initrd-arm64
	rm -rf "$root"
	mkdir -p "$root"/{bin,dev,proc,sys,cores,tmp}
	cp "$WORK/arm64/bb/bin/busybox" "$root/bin/busybox"
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
	fill_root "$root/aarch64" aarch64
	fill_root "$root/armhf" armhf
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
		local arch c v
		for arch in aarch64 armhf; do
			v=CASES_$arch
			for c in ${!v}; do
				cat <<EOF
rm -f /cores/*
env -i GOTRACEBACK=crash chroot /$arch /$c/$c > /tmp/out 2>/tmp/err
echo "GUEST-EXIT $arch/$c \$? \$(cat /tmp/out)"
while read -r l; do echo "GUEST-STDERR $arch/$c \$l"; done < /tmp/err
n=0
while [ ! -e /cores/ready ] && [ \$n -lt 300 ]; do sleep 0.1; n=\$((n+1)); done
echo "GUEST-META $arch/$c \$(cat /cores/incoming.meta) \$(wc -c < /cores/ready) \$(sha256sum < /cores/ready)"
echo "-----BEGIN CORE $arch/$c-----"
gzip -1 -c /cores/ready | base64
echo "-----END CORE $arch/$c-----"
EOF
			done
		done
		echo 'sync; poweroff -f'
	} >"$root/init"
	chmod 755 "$root/init"
	(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -1 -n >"$root.cpio.gz"
	local t0=$SECONDS
	log "booting qemu-system-aarch64 ($(du -h "$root.cpio.gz" | cut -f1) initrd)"
	timeout "$QEMU_TIMEOUT" qemu-system-aarch64 -M virt -cpu cortex-a57 -m 2048 -smp 2 -accel tcg \
		-nographic -no-reboot -kernel "$WORK"/arm64/kern/boot/vmlinuz-* -initrd "$root.cpio.gz" \
		-append 'console=ttyAMA0 panic=-1 quiet' </dev/null >"$WORK/console-arm64.log" 2>&1
	echo "arm64 guest boot + $(($(wc -w <<<"$CASES_aarch64 $CASES_armhf"))) crashes + transfer: $((SECONDS - t0)) s" >"$WORK/boot-time-arm64.txt"
	log "$(cat "$WORK/boot-time-arm64.txt")"
	tr -d '\r' <"$WORK/console-arm64.log" | grep -aE '^GUEST-' >&2
	mkdir -p "$WORK/cores"
	for arch in aarch64 armhf; do
		v=CASES_$arch
		for c in ${!v}; do extract_core "$arch/$c"; done
	done
}

# extract_core ARCH/CASE: decode the console copy, check its sha256 and the pid.
extract_core() {
	local name=$1 logf=$WORK/console-arm64.log out=$WORK/cores/${1/\//_}.core
	tr -d '\r' <"$logf" |
		sed -n "\|^-----BEGIN CORE $name-----\$|,\|^-----END CORE $name-----\$|p" |
		sed '1d;$d' | base64 -d | gunzip >"$out"
	local meta want pid
	meta=$(tr -d '\r' <"$logf" | grep -a "^GUEST-META $name ")
	want=$(sed -n 's/.* \([0-9a-f]\{64\}\).*/\1/p' <<<"$meta")
	echo "$want  $out" | sha256sum -c --quiet - || die "$name: core checksum mismatch"
	pid=$(tr -d '\r' <"$logf" | sed -n "s|^GUEST-EXIT $name [0-9]* pid=\([0-9]*\).*|\1|p")
	[ "$(awk '{print $3}' <<<"$meta")" = "$pid" ] || die "$name: core pid != printed pid $pid"
	awk '{print $3, $4, $5}' <<<"$meta" >"${out%.core}.meta"
}

# ---------------------------------------------------------------------------
# host: x86_64 cores from this machine's kernel, each program chrooted into
# $WORK/hostroot so the core's paths are /<case>/<binary> and the host's library paths.
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
	local dir=$WORK/host root=$WORK/hostroot
	rm -rf "$dir"
	mkdir -p "$dir/cores" "$WORK/cores"
	fill_root "$root" x86_64
	cat >"$dir/savecore" <<EOF
#!/bin/sh
cat > "$dir/cores/incoming"
echo "\$1 \$2 \$3" > "$dir/cores/incoming.meta"
mv "$dir/cores/incoming" "$dir/cores/ready"
EOF
	chmod 755 "$dir/savecore"
	exec 9>"$LOCK"
	log "waiting for $LOCK"
	flock 9
	OLD_PATTERN=$(cat /proc/sys/kernel/core_pattern)
	OLD_PIPE_LIMIT=$(cat /proc/sys/kernel/core_pipe_limit)
	RESTORE_NEEDED=1
	trap 'restore_core_pattern' EXIT
	trap 'restore_core_pattern; exit 130' INT TERM
	echo "|$dir/savecore %p %e %s" >/proc/sys/kernel/core_pattern
	echo 4 >/proc/sys/kernel/core_pipe_limit
	local c rc pid
	for c in $CASES_x86_64; do
		rm -f "$dir"/cores/*
		rc=0
		(
			echo 0x33 >/proc/self/coredump_filter
			ulimit -c unlimited
			ulimit -s "$STACK_KIB"
			exec env -i GOTRACEBACK=crash "$(command -v chroot)" "$root" "/$c/$c"
		) >"$dir/$c.out" 2>"$dir/$c.err" || rc=$?
		local n=0
		while [ ! -e "$dir/cores/ready" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
		[ -e "$dir/cores/ready" ] || { restore_core_pattern; die "x86_64/$c: no core (exit $rc)"; }
		pid=$(sed -n 's/^pid=//p' "$dir/$c.out")
		[ "$(awk '{print $1}' "$dir/cores/incoming.meta")" = "$pid" ] ||
			{ restore_core_pattern; die "x86_64/$c: core pid != printed pid $pid"; }
		log "x86_64/$c: exit $rc, core $(wc -c <"$dir/cores/ready") B, meta $(cat "$dir/cores/incoming.meta")"
		mv "$dir/cores/ready" "$WORK/cores/x86_64_$c.core"
		cp "$dir/cores/incoming.meta" "$WORK/cores/x86_64_$c.meta"
	done
	restore_core_pattern
	trap - EXIT INT TERM
	flock -u 9
	exec 9>&-
}

# ---------------------------------------------------------------------------
# fixtures: copy binaries and core.gz, run gdb, write cmd.txt, gdb-full.txt, case.json.
GZ_OVER=$((1024 * 1024)) # binaries larger than this are stored as NAME.gz

gdb_cmd() {
	local arch=$1 exe=$2 sr=
	case $arch in
	x86_64) printf 'gdb -nx -batch' ;;
	*) printf "gdb-multiarch -nx -batch -ex 'set sysroot /usr/%s'" "$(triplet "$arch")" ;;
	esac
	printf " -ex 'set solib-search-path .' -ex 'file %s' -ex 'core-file core' -ex 'thread apply all bt'" "$exe"
}

fixture() {
	local arch=$1 c=$2
	local out=$HERE/$c/$arch tmp=$WORK/gdb/$arch/$c core=$WORK/cores/${arch}_$c.core b
	rm -rf "$out" "$tmp"
	mkdir -p "$out" "$tmp"
	gzip -9 -n -c "$core" >"$out/core.gz"
	cp "$core" "$tmp/core"
	for b in $(bins "$c"); do
		cp "$WORK/build/$arch/$c/$b" "$tmp/$b"
		if [ "$(stat -c %s "$tmp/$b")" -gt $GZ_OVER ]; then
			gzip -9 -n -c "$tmp/$b" >"$out/$b.gz"
		else
			cp "$tmp/$b" "$out/$b"
		fi
	done
	local cmd
	cmd=$(gdb_cmd "$arch" "$c")
	{
		echo "# run in a directory holding the binaries (gunzip any NAME.gz) and core (= gunzip -c core.gz)"
		echo "$cmd"
	} >"$out/cmd.txt"
	# (gdb names the binary by its full path in some warnings: written as ./NAME)
	(cd "$tmp" && env -u DEBUGINFOD_URLS bash -c "$cmd" 2>&1 | sed "s|$tmp/|./|g" >"$out/gdb-full.txt")
	if [ "$c" = c-separate-debug ]; then
		# the deployed binaries (stripped, .gnu_debuglink) with their .debug files
		mkdir -p "$out/stripped" "$tmp/stripped"
		cp "$WORK/build/$arch/$c/stripped"/* "$out/stripped/"
		cp "$WORK/build/$arch/$c/stripped"/* "$tmp/stripped/"
		cp "$core" "$tmp/stripped/core"
		{
			echo "# run in stripped/ (deployed binaries + .debug files found by .gnu_debuglink) with core"
			echo "$cmd"
		} >"$out/cmd-stripped.txt"
		(cd "$tmp/stripped" && env -u DEBUGINFOD_URLS bash -c "$cmd" 2>&1 | sed "s|$tmp/stripped/|./|g" >"$out/gdb-stripped.txt")
	fi
	# modules with the build-ids read from the core's own pages
	eu-unstrip -n --core="$tmp/core" >"$tmp/modules.txt" 2>/dev/null || true
	local kernel
	case $arch in
	x86_64) kernel="this machine's kernel $(uname -r)" ;;
	*) kernel="Debian $(tr -d '\r' <"$WORK/console-arm64.log" | sed -n 's/.*GUEST-KERNEL Linux (none) \([^ ]*\) .*/\1/p') arm64 in qemu-system-aarch64 (TCG)" ;;
	esac
	python3 "$HERE/case-json.py" --arch "$arch" --case "$c" --core "$tmp/core" \
		--modules "$tmp/modules.txt" --meta "$WORK/cores/${arch}_$c.meta" \
		--sysroot "$([ "$arch" = x86_64 ] || echo "/usr/$(triplet "$arch")")" \
		--bindir "$WORK/build/$arch/$c" --outdir "$out" --kernel "$kernel" >"$out/case.json"
	log "$arch/$c: $(jq -c '.core | {threads, signal, nt_file_entries, notes}' "$out/case.json")"
	log "$arch/$c: gdb vs expectation: $(jq -c '.gdb.expectation_check' "$out/case.json")"
}

fixtures() {
	local arch c v
	for arch in x86_64 aarch64 armhf; do
		v=CASES_$arch
		for c in ${!v}; do fixture "$arch" "$c"; done
	done
	# KEEP_VERSIONS=1 when only some cases were rebuilt (see README.md)
	[ "${KEEP_VERSIONS:-0}" = 1 ] || versions >"$HERE/versions.txt"
	du -sb "$HERE" >&2
}

versions() {
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "host kernel (x86_64 cores): $(uname -r)"
	echo "arm64 kernel package: $(dpkg-deb -f "$WORK"/pkgs/linux-image-*_arm64.deb Package Version | paste -sd' ')"
	echo "arm64 kernel (guest uname): $(tr -d '\r' <"$WORK/console-arm64.log" | sed -n 's/.*GUEST-KERNEL //p')"
	echo "arm64 busybox-static: $(dpkg-deb -f "$WORK"/pkgs/busybox-static_*_arm64.deb Version)"
	cat "$WORK/boot-time-arm64.txt"
	echo "qemu: $(qemu-system-aarch64 --version | head -1)"
	local c
	for c in gcc g++ aarch64-linux-gnu-gcc aarch64-linux-gnu-g++ arm-linux-gnueabihf-gcc arm-linux-gnueabihf-g++; do
		echo "$c: $($c --version | head -1)"
	done
	echo "binutils: $(objcopy --version | head -1)"
	echo "rustc: $(rustc --version)"
	echo "go: $(go version)"
	echo "host libs: $(dpkg-query -W -f '${Package} ${Version}, ' libc6 libstdc++6 libgcc-s1 libc6-dbg)"
	echo "cross libs: $(dpkg-query -W -f '${Package} ${Version}, ' libc6-arm64-cross libc6-armhf-cross libstdc++6-arm64-cross libstdc++6-armhf-cross libgcc-s1-arm64-cross libgcc-s1-armhf-cross)"
	echo "gdb: $(gdb --version | head -1); gdb-multiarch: $(gdb-multiarch --version | head -1)"
	echo "elfutils: $(eu-readelf --version | head -1)"
	echo "STACK_KIB (ulimit -s of the crashing process): $STACK_KIB"
}

stages=${*:-fetch build guest host fixtures}
for s in $stages; do
	case $s in
	fetch) fetch ;;
	build) build ;;
	guest) guest ;;
	host) host ;;
	fixtures) fixtures ;;
	*) die "unknown stage $s" ;;
	esac
done
