#!/usr/bin/env bash
# Benchmark of the symbol uploader (issue 5): `memfault upload-yocto-symbols` against the shell
# pipeline a user would write, on a synthetic Yocto-like image of ELFS ELF files (default 300,
# about 490 MiB of debug files; BenchmarkFromYocto's image, split style debug-with-srcpkg), its
# rootfs and -dbg tarballs in .tar.bz2 and .tar.zst. For each compression:
#   1. baseline: `tar -xf` both tarballs, pair each stripped file with its debug file by the
#      split style's path, `eu-unstrip -o` each pair, then per file curl prepare (POST .../upload),
#      PUT to the upload URL, commit (POST .../symbols), jq for the JSON; one after the other;
#   2. memfault upload-yocto-symbols (default --concurrency 8);
#   3. memfault again against the same server: everything is present (its image index cache
#      in the work directory, filled by 2: the rootfs is hashed, not decompressed); then once
#      more with --no-cache (the rootfs is decoded, the -dbg image is not), for comparison.
# Each of 1 and 2 uploads into a fresh memfault-server (loopback, fresh --data). Wall time,
# CPU and peak RSS (GNU time's max RSS: the largest single process of the run, children
# included) of each; the server's own VmHWM aside. Targets: baseline/memfault >= 2,
# re-run/first < 0.10.
# Results: bench/out/symbols-<time>.txt. No root needed. Needs gcc, binutils, GNU tar, bzip2,
# pbzip2 or bzip2, zstd, eu-unstrip (elfutils), curl, jq and GNU time (apt-get install time).
#   ELFS=300        ELF files in the image
#   IMAGE_DIR=DIR   use (or fill, when empty) DIR for the generated tarballs: keeps them between runs
#   COMPS="tar.bz2 tar.zst"
#   BENCH_TMP=/tmp  where the work directory goes (TMPDIR of every run is inside it)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
ELFS=${ELFS:-300}
COMPS=${COMPS:-"tar.bz2 tar.zst"}
TOKEN=bench-org-token
for tool in /usr/bin/time curl jq eu-unstrip tar bzip2 zstd; do
	command -v "$tool" > /dev/null || { echo "symbols.sh: $tool is needed" >&2; exit 1; }
done
work=$(mktemp -d "${BENCH_TMP:-/tmp}/mfsymbench.XXXXXX")
export TMPDIR="$work/tmp"
export MEMFAULT_CACHE_DIR="$work/cache" # never the user's: each run of the script starts empty
mkdir -p "$TMPDIR" "$top/bench/out"
out="$top/bench/out/symbols-$(date -u +%Y%m%dT%H%M%SZ).txt"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
say() { echo "$*" | tee -a "$out"; }
load() { uptime | sed 's/.*load average: //'; }

cd "$top/src"
go build -o "$work/memfault" ./cmd/memfault
go build -o "$work/memfault-server" ./cmd/memfault-server
say "# symbol uploader benchmark $(date -u +%FT%TZ), $(go version | awk '{print $3}'), kernel $(uname -r), $(nproc) cpus, $(eu-unstrip --version | head -1), $(tar --version | head -1)"
say "load average at start: $(load)"

img=${IMAGE_DIR:-$work/image}
if [ ! -s "$img/image.txt" ]; then
	g0=$(date +%s)
	MEMFAULT_BENCH_IMAGE_OUT="$img" MEMFAULT_BENCH_ELFS="$ELFS" \
		go test ./internal/symbols/debugpkg -run '^TestWriteBenchImage$' -count=1 -timeout 1h > "$work/gen.log" 2>&1 ||
		{ cat "$work/gen.log" >&2; exit 1; }
	say "image generated in $(( $(date +%s) - g0 )) s"
fi
while read -r line; do say "image $line"; done < "$img/image.txt"

# The baseline: what a user would script, one file after the other.
cat > "$work/baseline.sh" << 'EOF'
#!/usr/bin/env bash
# baseline.sh ROOTFS DBG URL TOKEN: prints the time of each phase on stderr.
set -euo pipefail
rootfs=$1 dbg=$2 url=$3 token=$4
api="$url/api/v0/organizations/org/projects/project"
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
mkdir "$d/rootfs" "$d/dbg" "$d/out"
t0=$(date +%s%N)
tar -xf "$rootfs" -C "$d/rootfs"
tar -xf "$dbg" -C "$d/dbg"
t1=$(date +%s%N)
# debug-with-srcpkg: the debug file of DIR/NAME is DIR/.debug/NAME.
cd "$d/dbg"
n=0
while IFS= read -r debug; do
	rel=${debug#./}
	bin="${rel%/.debug/*}/${rel##*/}"
	n=$((n + 1))
	eu-unstrip -o "$d/out/$n" "$d/rootfs/$bin" "$debug"
	printf '%s\t/%s\n' "$d/out/$n" "$bin" >> "$d/list"
done < <(find . -path '*/.debug/*' -type f)
t2=$(date +%s%N)
added=0
while IFS=$'\t' read -r file name; do
	size=$(stat -c %s "$file")
	prep=$(curl -sSf -u ":$token" -H 'Content-Type: application/json' -d "{\"size\":$size}" "$api/upload")
	upload_url=$(jq -r .data.upload_url <<< "$prep")
	tok=$(jq -r .data.token <<< "$prep")
	curl -sSf -o /dev/null -T "$file" "$upload_url"
	commit=$(curl -sSf -u ":$token" -H 'Content-Type: application/json' \
		-d "{\"file\":{\"token\":\"$tok\",\"name\":\"$name\"}}" "$api/symbols")
	[ "$(jq -r .data.added <<< "$commit")" = true ] && added=$((added + 1))
done < "$d/list"
t3=$(date +%s%N)
ms() { echo $((($2 - $1) / 1000000)); }
echo "phases: tar -x $(ms "$t0" "$t1") ms, eu-unstrip $(ms "$t1" "$t2") ms ($n pairs), curl $(ms "$t2" "$t3") ms ($added added)" >&2
EOF

spid=
start_server() { # name: a fresh server; sets url and spid
	local d="$work/srv-$1"
	"$work/memfault-server" --listen 127.0.0.1:0 --data "$d" --project-key bench --org org --project project \
		--org-token "$TOKEN" > "$d.out" 2> "$d.log" &
	spid=$!
	pids+=("$spid")
	for _ in $(seq 200); do grep -q listening "$d.out" 2> /dev/null && break; sleep 0.05; done
	url=$(awk '/listening/ {print $4}' "$d.out")
	[ -n "$url" ] || { cat "$d.log" >&2; exit 1; }
}
stop_server() { # name
	say "  server VmHWM $(awk '/^VmHWM/ {print $2, $3}' "/proc/$spid/status")"
	kill "$spid"
	wait "$spid" 2> /dev/null || true
	rm -rf "$work/srv-$1"
}

# measure label command...: runs it under GNU time; sets el (s), rss (KiB), cpu (s).
measure() {
	local label=$1
	shift
	if ! /usr/bin/time -f '%e %M %U %S' -o "$work/time.txt" "$@" > "$work/$label.out" 2> "$work/$label.err"; then
		cat "$work/$label.out" "$work/$label.err" >&2
		exit 1
	fi
	read -r el rss us sy < <(tail -1 "$work/time.txt")
	cpu=$(printf '%.2f' "$(echo "$us + $sy" | bc)")
}
mib() { echo "scale=1; $1 / 1024" | bc; }
ratio() { echo "scale=3; $1 / $2" | bc | sed 's/^\./0./'; }

table=()
for comp in $COMPS; do
	rootfs="$img/rootfs.$comp" dbg="$img/rootfs-dbg.$comp"
	say ""
	say "## $comp"

	start_server "base-$comp"
	say "baseline (load $(load))"
	measure "base-$comp" bash "$work/baseline.sh" "$rootfs" "$dbg" "$url" "$TOKEN"
	b_el=$el b_rss=$rss b_cpu=$cpu
	say "  $(cat "$work/base-$comp.err")"
	say "  ${el} s, ${cpu} cpu-s, peak RSS $(mib "$rss") MiB"
	stop_server "base-$comp"

	start_server "mf-$comp"
	mf=("$work/memfault" --org org --project project --org-token "$TOKEN" --url "$url" upload-yocto-symbols
		--image "$rootfs" --dbg-image "$dbg")
	say "memfault upload-yocto-symbols (load $(load))"
	measure "mf-$comp" "${mf[@]}" --report "$work/first.json"
	m_el=$el m_rss=$rss m_cpu=$cpu
	say "  $(head -1 "$work/mf-$comp.out")"
	say "  ${el} s, ${cpu} cpu-s, peak RSS $(mib "$rss") MiB"
	[ "$(jq .summary.uploaded "$work/first.json")" = "$ELFS" ] || { echo "memfault did not upload $ELFS files" >&2; exit 1; }

	say "memfault re-run, everything present (load $(load))"
	measure "rerun-$comp" "${mf[@]}" --report "$work/rerun.json"
	r_el=$el r_rss=$rss r_cpu=$cpu
	say "  $(head -1 "$work/rerun-$comp.out")"
	grep -q -- '-dbg image was not read' "$work/rerun-$comp.out" && say "  (the -dbg image was not read)"
	grep -q -- 'index came from the cache' "$work/rerun-$comp.out" && say "  (the rootfs was not decompressed: its index came from the cache)"
	say "  input: $(jq -c .input "$work/rerun.json")"
	say "  ${el} s, ${cpu} cpu-s, peak RSS $(mib "$rss") MiB"
	[ "$(jq .summary.already_present "$work/rerun.json")" = "$ELFS" ] || { echo "the re-run did not find $ELFS files present" >&2; exit 1; }

	say "memfault re-run --no-cache, everything present (load $(load))"
	measure "rerun-nc-$comp" "${mf[@]}" --report "$work/rerun-nc.json" --no-cache
	say "  ${el} s, ${cpu} cpu-s, peak RSS $(mib "$rss") MiB; $(ratio "$el" "$m_el") of the first run"
	[ "$(jq .summary.already_present "$work/rerun-nc.json")" = "$ELFS" ] || { echo "the --no-cache re-run did not find $ELFS files present" >&2; exit 1; }
	[ "$(jq -S 'del(.input)' "$work/rerun.json")" = "$(jq -S 'del(.input)' "$work/rerun-nc.json")" ] ||
		{ echo "the re-run's report from the cache differs from the --no-cache one" >&2; exit 1; }
	stop_server "mf-$comp"

	table+=("$(printf '| %-8s | %7.1f s %6s MiB | %7.1f s %6s MiB | %6sx | %6.1f s %6s MiB | %6s |' "$comp" \
		"$b_el" "$(mib "$b_rss")" "$m_el" "$(mib "$m_rss")" "$(ratio "$b_el" "$m_el")" \
		"$r_el" "$(mib "$r_rss")" "$(ratio "$r_el" "$m_el")")")
	table+=("$(printf '|          | %7.1f cpu-s        | %7.1f cpu-s        |         | %6.1f cpu-s        |        |' \
		"$b_cpu" "$m_cpu" "$r_cpu")")
done

say ""
say "load average at the end: $(load)"
say "| tarballs | baseline (shell)     | memfault, first run  | base/mf | memfault re-run     | re/1st |"
say "|----------|----------------------|----------------------|---------|---------------------|--------|"
for l in "${table[@]}"; do say "$l"; done
say "targets: base/mf >= 2; re/1st < 0.10. Peak RSS: GNU time's, the largest process of the run."
echo "results: $out"
