package debugpkg

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
// one after the other; and a re-run, when the server has every build-id (Options.Present),
// without and with the image index cache (Options.CacheDir).
func BenchmarkFromYocto(b *testing.B) {
	yoctoimage.Need(b)
	if _, err := exec.LookPath("eu-unstrip"); err != nil {
		b.Skip("eu-unstrip not installed")
	}
	build := benchBuild(b, envInt("MEMFAULT_BENCH_ELFS", 30), envInt("MEMFAULT_BENCH_FUNCS", 3000))
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
		b.Run(fmt.Sprintf("%s/memfault-rerun", comp), func(b *testing.B) {
			// The server has every build-id: only the rootfs is read.
			all := func(_ context.Context, ids []string) map[string]bool {
				have := map[string]bool{}
				for _, id := range ids {
					have[id] = true
				}
				return have
			}
			for i := 0; i < b.N; i++ {
				res, err := FromYocto(context.Background(), img.Rootfs, img.Dbg, Options{TmpDir: b.TempDir(), Present: all})
				if err != nil {
					b.Fatal(err)
				}
				if !res.DbgImageSkipped || len(res.Symbols) != len(img.ELFs) {
					b.Fatalf("re-run: -dbg image skipped %v, %d symbols for %d ELF files", res.DbgImageSkipped, len(res.Symbols), len(img.ELFs))
				}
				res.Close()
			}
		})
		b.Run(fmt.Sprintf("%s/memfault-rerun-cached", comp), func(b *testing.B) {
			// The same, with the image's index in the cache (filled before the timer starts):
			// the rootfs is hashed, not decompressed.
			cache := b.TempDir()
			all := (&presentAll{}).ask
			for i := -1; i < b.N; i++ {
				if i == 0 {
					b.ResetTimer()
				}
				res, err := FromYocto(context.Background(), img.Rootfs, img.Dbg, Options{TmpDir: b.TempDir(), Present: all, CacheDir: cache})
				if err != nil {
					b.Fatal(err)
				}
				if i >= 0 && (!res.Input.FromCache || len(res.Symbols) != len(img.ELFs)) {
					b.Fatalf("re-run: from the cache %v, %d symbols for %d ELF files", res.Input.FromCache, len(res.Symbols), len(img.ELFs))
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

// benchBuild compiles the benchmark image's programs: a PIE and a shared library of funcs
// generated functions each, copied (with build-ids of their own) into elfs ELF files.
func benchBuild(tb testing.TB, elfs, funcs int) *yoctoimage.Build {
	src := yoctoimage.GenerateSource(tb, tb.TempDir(), "big.c", funcs)
	spec := yoctoimage.Spec{Programs: []yoctoimage.Program{
		{Path: "/usr/bin/big", Kind: yoctoimage.Exec, Sources: []string{src}, Copies: elfs/2 - 1},
		{Path: "/usr/lib/libbig.so.1", Kind: yoctoimage.Shared, Sources: []string{src}, Copies: elfs - elfs/2 - 1},
	}}
	return yoctoimage.Compile(tb, spec)
}

// TestWriteBenchImage is not a test: with MEMFAULT_BENCH_IMAGE_OUT=DIR it writes
// BenchmarkFromYocto's image (MEMFAULT_BENCH_ELFS, default 300; MEMFAULT_BENCH_FUNCS) into
// DIR for bench/symbols.sh: rootfs.tar.bz2 and rootfs-dbg.tar.bz2, rootfs.tar.zst and
// rootfs-dbg.tar.zst (split style debug-with-srcpkg), and image.txt with the counts.
func TestWriteBenchImage(t *testing.T) {
	out := os.Getenv("MEMFAULT_BENCH_IMAGE_OUT")
	if out == "" {
		t.Skip("MEMFAULT_BENCH_IMAGE_OUT not set (bench/symbols.sh sets it)")
	}
	yoctoimage.Need(t)
	elfs := envInt("MEMFAULT_BENCH_ELFS", 300)
	build := benchBuild(t, elfs, envInt("MEMFAULT_BENCH_FUNCS", 3000))
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	var desc strings.Builder
	for _, comp := range []yoctoimage.Compression{yoctoimage.Bzip2, yoctoimage.Zstd} {
		img := build.Image(t, yoctoimage.StyleWithSrcpkg, comp)
		var debugBytes int64
		for _, d := range img.DebugFiles {
			debugBytes += fileSize(filepath.Join(img.DbgDir, d))
		}
		rootfs := filepath.Join(out, "rootfs."+string(comp))
		dbg := filepath.Join(out, "rootfs-dbg."+string(comp))
		for src, dst := range map[string]string{img.Rootfs: rootfs, img.Dbg: dbg} {
			if err := moveFile(src, dst); err != nil {
				t.Fatal(err)
			}
		}
		fmt.Fprintf(&desc, "%s: %d ELF files, %d debug files (%.1f MiB); tarballs %.1f + %.1f MiB\n", comp,
			len(img.ELFs), len(img.DebugFiles), float64(debugBytes)/(1<<20),
			float64(fileSize(rootfs))/(1<<20), float64(fileSize(dbg))/(1<<20))
	}
	if err := os.WriteFile(filepath.Join(out, "image.txt"), []byte(desc.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log(desc.String())
}

// moveFile renames src to dst, copying when they are on different file systems.
func moveFile(src, dst string) error {
	if err := os.Rename(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	o, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(o, in); err != nil {
		o.Close()
		return err
	}
	return o.Close()
}
