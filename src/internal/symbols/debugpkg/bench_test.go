package debugpkg

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"meta-memfault-go/internal/testutil/yoctoimage"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkFromYocto measures FromYocto on an image of MEMFAULT_BENCH_ELFS ELF files (default
// 30; the benchmark is 300) of MEMFAULT_BENCH_FUNCS generated functions each (default
// 3000: about 1.7 MiB of debug data per file), .tar.bz2 and .tar.zst, against the shell
// pipeline it replaces minus the uploads: `tar xf` both tarballs, then `eu-unstrip` each pair
// one after the other.
func BenchmarkFromYocto(b *testing.B) {
	yoctoimage.Need(b)
	if _, err := exec.LookPath("eu-unstrip"); err != nil {
		b.Skip("eu-unstrip not installed")
	}
	elfs := envInt("MEMFAULT_BENCH_ELFS", 30)
	funcs := envInt("MEMFAULT_BENCH_FUNCS", 3000)
	src := yoctoimage.GenerateSource(b, b.TempDir(), "big.c", funcs)
	copies := elfs/2 - 1
	spec := yoctoimage.Spec{Programs: []yoctoimage.Program{
		{Path: "/usr/bin/big", Kind: yoctoimage.Exec, Sources: []string{src}, Copies: copies},
		{Path: "/usr/lib/libbig.so.1", Kind: yoctoimage.Shared, Sources: []string{src}, Copies: elfs - elfs/2 - 1},
	}}
	build := yoctoimage.Compile(b, spec)
	for _, comp := range []yoctoimage.Compression{yoctoimage.Bzip2, yoctoimage.Zstd} {
		img := build.Image(b, yoctoimage.StyleWithSrcpkg, comp)
		var debugBytes int64
		for _, d := range img.DebugFiles {
			if fi, err := os.Stat(filepath.Join(img.DbgDir, d)); err == nil {
				debugBytes += fi.Size()
			}
		}
		rootfs, dbg := fileSize(img.Rootfs), fileSize(img.Dbg)
		b.Logf("%s: %d ELF files, %.1f MiB of debug files; tarballs %.1f + %.1f MiB", comp, len(img.ELFs),
			float64(debugBytes)/(1<<20), float64(rootfs)/(1<<20), float64(dbg)/(1<<20))
		b.Run(fmt.Sprintf("%s/memfault", comp), func(b *testing.B) {
			b.SetBytes(debugBytes)
			for i := 0; i < b.N; i++ {
				res, err := FromYocto(context.Background(), img.Rootfs, img.Dbg, Options{TmpDir: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Symbols) != len(img.ELFs) {
					b.Fatalf("%d symbol files for %d ELF files", len(res.Symbols), len(img.ELFs))
				}
				res.Close()
			}
		})
		b.Run(fmt.Sprintf("%s/shell", comp), func(b *testing.B) {
			b.SetBytes(debugBytes)
			for i := 0; i < b.N; i++ {
				dir := b.TempDir()
				script := `set -e
mkdir r d o
tar -xf "$1" -C r
tar -xf "$2" -C d
cd d
find . -path '*/.debug/*' -type f | while read -r dbg; do
	bin="../r/${dbg%/.debug/*}/${dbg##*/}"
	eu-unstrip -o "../o/$(echo "$dbg" | tr / _)" "$bin" "$dbg"
done
`
				cmd := exec.Command("sh", "-c", script, "sh", img.Rootfs, img.Dbg)
				cmd.Dir = dir
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%v: %s", err, out)
				}
				if n, _ := filepath.Glob(filepath.Join(dir, "o", "*")); len(n) != len(img.ELFs) {
					b.Fatalf("shell: %d files for %d ELF files", len(n), len(img.ELFs))
				}
			}
		})
	}
}
