package archive

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The benchmarks decompress a tar of real ELF files (shared libraries of the host, about
// ARCHIVE_BENCH_MIB MiB, default 100) compressed as Yocto compresses images, with the Go decoders,
// through the Reader with its external decoder, and with the command-line tools alone for
// comparison. The files are made once per run in a temporary directory (slow: xz and bzip2 of
// 100 MiB), or kept in ARCHIVE_BENCH_DIR when that is set.
//
//	go test ./internal/symbols/archive -run '^$' -bench . -benchtime 3x

var benchFormats = []struct {
	kind Kind
	ext  string
	cmd  []string   // compress: stdin -> stdout
	clis [][]string // decompressors to compare: file name appended
}{
	{None, "tar", nil, nil},
	{Gzip, "tar.gz", []string{"gzip", "-9", "-n", "-c"}, [][]string{{"gzip", "-dc"}, {"pigz", "-dc"}}},
	{Bzip2, "tar.bz2", []string{"bzip2", "-9", "-c"}, [][]string{{"bzip2", "-dc"}, {"lbzip2", "-dc"}, {"lbzip2", "-n1", "-dc"}, {"pbzip2", "-dc"}}},
	{XZ, "tar.xz", []string{"xz", "-6", "-T2", "-c"}, [][]string{{"xz", "-dc"}, {"xz", "-T0", "-dc"}}},
	{Zstd, "tar.zst", []string{"zstd", "-q", "-3", "-T2", "-c"}, [][]string{{"zstd", "-dc"}}},
}

var bench struct {
	once sync.Once
	dir  string
	tar  int64 // bytes of the plain tar
	n    int   // ELF files in it
	err  error
	temp bool
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bench.temp {
		os.RemoveAll(bench.dir)
	}
	os.Exit(code)
}

// benchData makes (once) the tar of host libraries and its compressed forms.
func benchData(b *testing.B) string {
	bench.once.Do(func() {
		bench.dir = os.Getenv("ARCHIVE_BENCH_DIR")
		if bench.dir == "" {
			bench.dir, bench.err = os.MkdirTemp("", "archive-bench-")
			bench.temp = true
		}
		if bench.err == nil {
			bench.err = makeBenchData(bench.dir)
		}
	})
	if bench.err != nil {
		b.Skip(bench.err)
	}
	return bench.dir
}

func makeBenchData(dir string) error {
	plain := filepath.Join(dir, "libs.tar")
	if fi, err := os.Stat(plain); err == nil {
		bench.tar = fi.Size()
	} else {
		mib := 100
		if s := os.Getenv("ARCHIVE_BENCH_MIB"); s != "" {
			mib, _ = strconv.Atoi(s)
		}
		files, err := hostELFs(int64(mib) << 20)
		if err != nil {
			return err
		}
		if len(files) == 0 {
			return fmt.Errorf("no ELF files found in /usr/lib")
		}
		f, err := os.Create(plain + ".part")
		if err != nil {
			return err
		}
		w := tar.NewWriter(f)
		for _, p := range files {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := w.WriteHeader(&tar.Header{Name: "." + p, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data)), Format: tar.FormatGNU}); err != nil {
				return err
			}
			if _, err := w.Write(data); err != nil {
				return err
			}
		}
		if err := w.Close(); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := os.Rename(plain+".part", plain); err != nil {
			return err
		}
		fi, _ := os.Stat(plain)
		bench.tar = fi.Size()
	}
	for _, f := range benchFormats {
		out := filepath.Join(dir, "libs."+f.ext)
		if f.cmd == nil {
			continue
		}
		if _, err := os.Stat(out); err == nil {
			continue
		}
		if _, err := exec.LookPath(f.cmd[0]); err != nil {
			continue
		}
		in, err := os.Open(plain)
		if err != nil {
			return err
		}
		o, err := os.Create(out + ".part")
		if err != nil {
			return err
		}
		cmd := exec.Command(f.cmd[0], f.cmd[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = in, o, os.Stderr
		err = cmd.Run()
		in.Close()
		o.Close()
		if err != nil {
			return fmt.Errorf("%v: %w", f.cmd, err)
		}
		if err := os.Rename(out+".part", out); err != nil {
			return err
		}
	}
	return nil
}

// hostELFs lists ELF files under /usr/lib/x86_64-linux-gnu (or /usr/lib), largest-first order
// broken by name, until about total bytes.
func hostELFs(total int64) ([]string, error) {
	root := "/usr/lib/x86_64-linux-gnu"
	if _, err := os.Stat(root); err != nil {
		root = "/usr/lib"
	}
	var all []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		all = append(all, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(all)
	var out []string
	var sum int64
	for _, p := range all {
		fi, err := os.Stat(p)
		if err != nil || fi.Size() < 64<<10 || fi.Size() > 32<<20 || sum+fi.Size() > total {
			continue
		}
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		f.Close()
		out = append(out, p)
		sum += fi.Size()
	}
	bench.n = len(out)
	return out, nil
}

// BenchmarkDecompress reads every member of the archive (Next, then Read to the end) in a child
// process (this test binary, see TestBenchChild), with the Go decoders ("go") and with the
// external one ("external"), against the command-line decompressors writing to /dev/null. Each
// run is a process, so wall time, CPU time (user+sys, threads and children included) and peak RSS
// (GNU time's %M, when /usr/bin/time is installed) compare alike.
func BenchmarkDecompress(b *testing.B) {
	dir := benchData(b)
	for _, f := range benchFormats {
		file := filepath.Join(dir, "libs."+f.ext)
		if _, err := os.Stat(file); err != nil {
			continue
		}
		runs := map[string][]string{"go": childArgs("go", file, "")}
		names := []string{"go"}
		if externalFor(f.kind) != nil {
			runs["external"] = childArgs("external", file, "")
			names = append(names, "external")
		}
		for _, cli := range f.clis {
			if _, err := exec.LookPath(cli[0]); err == nil {
				name := strings.Join(cli, " ")
				runs[name] = append(cli, file)
				names = append(names, name)
			}
		}
		for _, name := range names {
			b.Run(f.ext+"/"+name, func(b *testing.B) { measure(b, runs[name]) })
		}
	}
}

// BenchmarkExtract writes every regular member into a new directory, against GNU tar x.
func BenchmarkExtract(b *testing.B) {
	dir := benchData(b)
	for _, f := range benchFormats {
		file := filepath.Join(dir, "libs."+f.ext)
		if _, err := os.Stat(file); err != nil {
			continue
		}
		b.Run(f.ext+"/reader", func(b *testing.B) { measure(b, childArgs("external", file, b.TempDir())) })
		if _, err := exec.LookPath("tar"); err == nil {
			b.Run(f.ext+"/tar-x", func(b *testing.B) { measure(b, []string{"tar", "-x", "-f", file, "-C", b.TempDir()}) })
		}
	}
}

// childArgs runs TestBenchChild in this test binary.
func childArgs(mode, file, dest string) []string {
	return []string{os.Args[0], "-test.run=^TestBenchChild$", "-test.count=1", "-bench-child=" + mode + "|" + file + "|" + dest}
}

var benchChild = flag.String("bench-child", "", "mode|archive|dest: TestBenchChild reads the archive (and extracts into dest)")

// TestBenchChild is the benchmarks' reader process; it does nothing in a normal test run.
func TestBenchChild(t *testing.T) {
	if *benchChild == "" {
		t.Skip("only run by the benchmarks")
	}
	arg := strings.SplitN(*benchChild, "|", 3)
	require.Len(t, arg, 3)
	var opts []Option
	if arg[0] == "go" {
		opts = append(opts, PureGo())
	}
	r, err := Open(arg[1], DefaultLimits, opts...)
	require.NoError(t, err)
	defer r.Close()
	buf := make([]byte, 256<<10)
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		if arg[2] != "" {
			_, err = r.Extract(arg[2])
		} else {
			_, err = io.CopyBuffer(io.Discard, r, buf)
		}
		require.NoError(t, err)
	}
}

// measure runs args b.N times and reports MB/s of tar data, CPU seconds and peak RSS.
func measure(b *testing.B, args []string) {
	gnuTime, _ := exec.LookPath("time")
	if gnuTime != "" && exec.Command(gnuTime, "-f", "%M", "true").Run() != nil {
		gnuTime = "" // a shell's time, or BSD time without -f
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	rssFile := filepath.Join(b.TempDir(), "rss")
	b.SetBytes(bench.tar)
	b.ResetTimer()
	var cpu time.Duration
	var rss int64
	for i := 0; i < b.N; i++ {
		a := args
		if gnuTime != "" {
			a = append([]string{gnuTime, "-f", "%M", "-o", rssFile}, args...)
		}
		cmd := exec.Command(a[0], a[1:]...)
		var errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = null, &errb
		if err := cmd.Run(); err != nil {
			b.Fatalf("%v: %v: %s", args, err, errb.String())
		}
		cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		if gnuTime != "" {
			out, err := os.ReadFile(rssFile)
			if err != nil {
				b.Fatal(err)
			}
			kib, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
			if err != nil {
				b.Fatalf("time -f %%M: %q", out)
			}
			rss = max(rss, kib)
		}
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
	if rss > 0 {
		b.ReportMetric(float64(rss)/1024, "maxRSS-MiB")
	}
}
