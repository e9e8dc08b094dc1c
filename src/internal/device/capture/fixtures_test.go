package capture

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/elfcore"
	testdata "meta-memfault-go/internal/testutil/fixture"
	"meta-memfault-go/internal/testutil/gdbbt"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fixture is a real kernel core from testdata/cores (see its README for how each was made).
type fixture struct {
	arch    string
	sysroot string // for gdb-multiarch; "" means the host's gdb and libraries
}

var fixtures = []fixture{
	{"x86_64", ""},
	{"aarch64", "/usr/aarch64-linux-gnu"},
	{"armhf", "/usr/arm-linux-gnueabihf"},
	{"i386", "/"},
}

func coresDir() string { return filepath.Join("..", "..", "..", "testdata", "cores") }

func loadFixture(t testing.TB, arch string) []byte { return testdata.Core(t, arch) }

// input reads a full core as the handler would (forward only) and serves its segments as the
// process memory.
func input(t testing.TB, full []byte) Input {
	core, err := elfcore.ReadCore(bytes.NewReader(full), elfcore.DefaultLimits)
	require.NoError(t, err)
	notes, err := elfcore.ParseNotes(core.Notes, core.Header.ByteOrder())
	require.NoError(t, err)
	proc, err := elfcore.DecodeProcess(&core.Header, notes)
	require.NoError(t, err)
	return Input{Core: core, Proc: proc, Mem: elfcore.NewSegmentMemory(bytes.NewReader(full), core.Progs)}
}

// golden is what a strategy decided, in a reviewable form.
type golden struct {
	Threads  int      `json:"threads"`
	Segments []string `json:"segments"`
	Size     uint64   `json:"size"`
	Notes    []string `json:"notes,omitempty"`
}

func summarize(in Input, res Result) golden {
	g := golden{Threads: len(in.Proc.Threads), Size: res.Layout.Size(), Notes: res.Notes}
	for _, s := range res.Layout.Segments {
		g.Segments = append(g.Segments, fmt.Sprintf("%#x+%#x/%#x %v", s.Vaddr, s.Filesz, s.Memsz, s.Flags))
	}
	return g
}

func checkGolden(t *testing.T, name string, g golden) {
	path := filepath.Join("testdata", name+".json")
	got, err := json.MarshalIndent(g, "", "  ")
	require.NoError(t, err)
	got = append(got, '\n')
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create %s", path)
	require.Equal(t, string(want), string(got))
}

func TestFixtures(t *testing.T) {
	for _, fx := range fixtures {
		for _, strategy := range []string{"threads", "kernel_selection"} {
			t.Run(fx.arch+"/"+strategy, func(t *testing.T) {
				full := loadFixture(t, fx.arch)
				in := input(t, full)
				var res Result
				var err error
				if strategy == "threads" {
					res, err = Threads(in, 32<<10)
					require.NoError(t, err)
				} else {
					res = KernelSelection(in)
				}
				checkGolden(t, fx.arch+"-"+strategy, summarize(in, res))

				dir := t.TempDir()
				out := filepath.Join(dir, "core")
				f, err := os.Create(out)
				require.NoError(t, err)
				st, err := res.Layout.Write(f, in.Mem)
				require.NoError(t, err)
				require.NoError(t, f.Close())
				require.Equal(t, res.Layout.Size(), st.Bytes)
				if strategy == "threads" {
					require.Zero(t, st.Unreadable, "threads ranges come from dumped memory")
					require.Less(t, st.Bytes*10, uint64(len(full)), "threads core should be far smaller than the kernel's")
				}

				// The output is itself a core that ReadCore accepts, with the same threads.
				again := input(t, mustRead(t, out))
				require.Len(t, again.Proc.Threads, len(in.Proc.Threads))

				compareWithGDB(t, fx, full, out)
			})
		}
	}
}

func mustRead(t testing.TB, p string) []byte {
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}

// compareWithGDB checks that gdb names the same functions, thread by thread, on our core as on
// the kernel's full core.
func compareWithGDB(t *testing.T, fx fixture, full []byte, ours string) {
	gdb := "gdb"
	if fx.sysroot != "" {
		gdb = "gdb-multiarch"
	}
	if _, err := exec.LookPath(gdb); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI", gdb)
		}
		t.Skipf("%s not installed", gdb)
	}
	if fx.sysroot != "" && fx.sysroot != "/" {
		if _, err := os.Stat(fx.sysroot); err != nil {
			t.Skipf("sysroot %s missing (install libc6-dev-*-cross)", fx.sysroot)
		}
	}
	dir := filepath.Dir(ours)
	fullPath := filepath.Join(dir, "full-core")
	require.NoError(t, os.WriteFile(fullPath, full, 0o600))
	exe, err := filepath.Abs(filepath.Join(coresDir(), fx.arch, "threads"))
	require.NoError(t, err)
	want, wantRaw, err := gdbbt.Backtraces(context.Background(), exe, fullPath, fx.sysroot)
	require.NoError(t, err)
	got, gotRaw, err := gdbbt.Backtraces(context.Background(), exe, ours, fx.sysroot)
	require.NoError(t, err)
	require.Len(t, want, 8, "gdb on the full core:\n%s", wantRaw)
	if d := gdbbt.Diff(want, got); d != "" {
		t.Fatalf("gdb backtraces differ:\n%s\nours:\n%s", d, gotRaw)
	}
}
