package symbolize

import (
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests compare C++ function names with gdb's frame names: what
// gdb's Python API returns as Frame.name(), which is what "bt" prints
// (find_frame_funname). gdb runs on the corpus cores and on programs built
// and crashed under it here.

// gdbFrame is one frame of gdb's backtrace of one thread.
type gdbFrame struct {
	thread int
	level  int
	kind   byte // N normal, I inline, T tail call, S signal trampoline, O other
	pc     uint64
	exe    bool // pc is in the executable, not in a shared library
	name   string
}

const gdbFramesScript = `
import gdb
out = open(%q, "w")
%s
try:
    main = int(gdb.parse_and_eval("(long)&main"))
except Exception:
    main = 0
out.write("M %%x\n" %% main)
kinds = {gdb.NORMAL_FRAME: "N", gdb.INLINE_FRAME: "I", gdb.TAILCALL_FRAME: "T", gdb.SIGTRAMP_FRAME: "S"}
for inf in gdb.inferiors():
    for th in inf.threads():
        th.switch()
        f = gdb.newest_frame()
        n = 0
        while f is not None and n < 1000:
            exe = 1 if gdb.solib_name(f.pc()) is None else 0
            out.write("F %%d %%d %%s %%x %%d %%s\n" %% (th.ptid[1], n, kinds.get(f.type(), "O"), f.pc(), exe, f.name() or ""))
            try:
                f = f.older()
            except gdb.error:
                break
            n += 1
out.close()
`

// askGDBFrames runs gdb with args (which load the program or core) and a
// Python prologue (e.g. starting the program), and returns every thread's
// frames and the run-time address of main (0 if unknown).
func askGDBFrames(t *testing.T, gdb string, args []string, prologue string) ([]gdbFrame, uint64) {
	t.Helper()
	dir := t.TempDir()
	out, script := filepath.Join(dir, "frames"), filepath.Join(dir, "frames.py")
	require.NoError(t, os.WriteFile(script, []byte(fmt.Sprintf(gdbFramesScript, out, prologue)), 0o600))
	all := append([]string{"-nx", "-batch", "-ex", "set auto-load off", "-ex", "set debuginfod enabled off"}, args...)
	all = append(all, "-x", script)
	cmd := exec.Command(gdb, all...)
	cmd.Dir = dir
	log, _ := cmd.CombinedOutput()
	data, err := os.ReadFile(out)
	if err != nil {
		if strings.Contains(string(log), "ptrace") || strings.Contains(string(log), "Operation not permitted") {
			t.Skipf("gdb cannot run programs here: %s", log)
		}
		t.Fatalf("gdb wrote no frames: %v\n%s", err, log)
	}
	var frames []gdbFrame
	var main uint64
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "M "):
			main, _ = strconv.ParseUint(line[2:], 16, 64)
		case strings.HasPrefix(line, "F "):
			f := strings.SplitN(line[2:], " ", 6)
			require.Len(t, f, 6, line)
			var g gdbFrame
			g.thread, _ = strconv.Atoi(f[0])
			g.level, _ = strconv.Atoi(f[1])
			g.kind = f[2][0]
			g.pc, _ = strconv.ParseUint(f[3], 16, 64)
			g.exe = f[4] == "1"
			g.name = f[5]
			frames = append(frames, g)
		}
	}
	require.NotEmpty(t, frames, "gdb printed no frames:\n%s", log)
	return frames, main
}

// linkAddress returns the link-time address of symbol name in bin.
func linkAddress(t *testing.T, bin, name string) uint64 {
	t.Helper()
	ef, err := elf.Open(bin)
	require.NoError(t, err)
	defer ef.Close()
	syms, _ := ef.Symbols()
	for _, s := range syms {
		if s.Name == name {
			if ef.Machine == elf.EM_ARM && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
				return s.Value &^ 1 // the Thumb bit
			}
			return s.Value
		}
	}
	t.Fatalf("%s has no symbol %s", bin, name)
	return 0
}

// compareGDBFrames looks up every frame gdb shows in the executable and
// compares the names of our chain (inlined calls, then the function) with
// gdb's frames at that pc. Tail-call frames, which gdb synthesizes from
// call-site information, are left out. It returns how many chains agreed.
func compareGDBFrames(t *testing.T, f *File, frames []gdbFrame, bias uint64) int {
	t.Helper()
	agreed := 0
	for i := 0; i < len(frames); {
		start := i
		for i < len(frames) && frames[i].kind == 'I' && frames[i].thread == frames[start].thread {
			i++
		}
		if i == len(frames) || frames[i].thread != frames[start].thread {
			continue
		}
		end := i
		i++
		fr := frames[end]
		if fr.kind != 'N' || !fr.exe {
			continue
		}
		var want []string
		for _, g := range frames[start : end+1] {
			want = append(want, g.name)
		}
		addr := fr.pc - bias
		if frames[start].level > 0 && frames[start-1].kind != 'S' {
			addr-- // a return address: the call is before it
		}
		got, err := f.Lookup(addr)
		if !assert.NoError(t, err, "%#x (gdb %q)", addr, want) {
			continue
		}
		var names []string
		for _, g := range got {
			names = append(names, g.Function)
		}
		if assert.Equal(t, want, names, "thread %d level %d, pc %#x", fr.thread, frames[start].level, addr) {
			agreed++
		}
	}
	return agreed
}

// corpusFile returns the path of a corpus file, decompressed if stored
// as NAME.gz.
func corpusFile(t *testing.T, dir, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(dir, name))
	require.NoError(t, err)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	in, err := os.Open(p + ".gz")
	require.NoError(t, err)
	defer in.Close()
	zr, err := gzip.NewReader(in)
	require.NoError(t, err)
	out := filepath.Join(t.TempDir(), name)
	w, err := os.Create(out)
	require.NoError(t, err)
	_, err = io.Copy(w, zr)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return out
}

// TestCxxNamesCorpusGolden checks the names of the C++ corpus binaries at
// addresses of their cores' backtraces against what gdb printed (written
// down from gdb 13's "bt" in gdb-full.txt, link-time addresses of the
// calls; TestCxxNamesCorpusGDB asks gdb again).
func TestCxxNamesCorpusGolden(t *testing.T) {
	cases := []struct {
		bin  string
		addr uint64
		want []string
	}{
		// The lambda inlined into fold (frames #0 and #1 of the crash).
		{"cpp-segv-template/x86_64/cpp-segv-template", 0x1224, []string{
			"operator()",
			"(anonymous namespace)::Walker<(anonymous namespace)::Node<long> >::fold<(anonymous namespace)::run(Node<long int>*, long int)::<lambda(long int, const (anonymous namespace)::Node<long int>*)> >(struct {...})",
		}},
		// run's tail call to fold (gdb's frame #2, a tail-call frame).
		{"cpp-segv-template/x86_64/cpp-segv-template", 0x1246, []string{"(anonymous namespace)::run"}},
		{"cpp-segv-template/x86_64/cpp-segv-template", 0x110c, []string{"main"}},
		// The calls of frames #8-#10 of x86_64 (#7-#9 on aarch64 and
		// armhf): the frames that threw, then main.
		{"cpp-exception/x86_64/cpp-exception", 0x194e, []string{"Parser<int>::parse_field"}},
		{"cpp-exception/x86_64/cpp-exception", 0x19e6, []string{"Parser<int>::sum"}},
		{"cpp-exception/x86_64/cpp-exception", 0x1391, []string{"main"}},
		{"cpp-exception/aarch64/cpp-exception", 0x197f, []string{"Parser<int>::parse_field"}},
		{"cpp-exception/aarch64/cpp-exception", 0x1a3b, []string{"Parser<int>::sum"}},
		{"cpp-exception/aarch64/cpp-exception", 0x1287, []string{"main"}},
		{"cpp-exception/armhf/cpp-exception", 0x10c1, []string{"Parser<int>::parse_field"}},
		{"cpp-exception/armhf/cpp-exception", 0x112f, []string{"Parser<int>::sum"}},
		{"cpp-exception/armhf/cpp-exception", 0xd0d, []string{"main"}},
	}
	root := filepath.Join("..", "..", "..", "testdata", "corpus")
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s@%#x", filepath.Dir(tc.bin), tc.addr), func(t *testing.T) {
			f, err := Open(filepath.Join(root, tc.bin))
			require.NoError(t, err)
			frames, err := f.Lookup(tc.addr)
			require.NoError(t, err)
			var names []string
			for _, fr := range frames {
				names = append(names, fr.Function)
			}
			assert.Equal(t, tc.want, names)
		})
	}
}

// TestCxxNamesCorpusGDB runs gdb on the C++ corpus cores and compares every
// frame it shows in the executables.
func TestCxxNamesCorpusGDB(t *testing.T) {
	root := filepath.Join("..", "..", "..", "testdata", "corpus")
	sysroots := map[string]string{"aarch64": "/usr/aarch64-linux-gnu", "armhf": "/usr/arm-linux-gnueabihf"}
	for _, c := range []string{"cpp-segv-template/x86_64", "cpp-exception/x86_64", "cpp-exception/aarch64", "cpp-exception/armhf"} {
		t.Run(c, func(t *testing.T) {
			dir := filepath.Join(root, c)
			if _, err := os.Stat(dir); err != nil {
				t.Skip("no corpus case")
			}
			name := filepath.Base(filepath.Dir(dir))
			bin := corpusFile(t, dir, name)
			core := corpusFile(t, dir, "core")
			gdb := gdbFor(t, machineOf(t, bin))
			var args []string
			if s := sysroots[filepath.Base(dir)]; s != "" {
				args = append(args, "-ex", "set sysroot "+s)
			}
			args = append(args, "-ex", "file "+bin, "-ex", "core-file "+core)
			frames, main := askGDBFrames(t, gdb, args, "")
			f, err := Open(bin)
			require.NoError(t, err)
			n := compareGDBFrames(t, f, frames, main-linkAddress(t, bin, "main"))
			assert.Positive(t, n)
			t.Logf("%d frame chains agree with gdb", n)
		})
	}
}

// TestCxxNamesLive builds C++ programs, crashes them under gdb and compares
// every frame of the executable with gdb's: templates instantiated with
// lambdas (no linkage names: gdb builds the names from DWARF and keeps the
// parameters of names it cannot parse), std::function and std::thread
// internals, ABI tags, anonymous namespaces, const methods, operators, at
// -O0 and with inlining at -O2.
func TestCxxNamesLive(t *testing.T) {
	gdb := needTool(t, "gdb")
	if machineOf(t, "/proc/self/exe") != elf.EM_X86_64 {
		t.Skip("runs x86-64 programs")
	}
	for _, tc := range []struct{ name, src string }{
		{"lambdas-O0", "-O0"}, {"lambdas-O2", "-O2"}, {"lambdas-O1-dwarf4", "-O1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			flags := []string{"-g", tc.src, "-pthread"}
			if strings.Contains(tc.name, "dwarf4") {
				flags[0] = "-gdwarf-4"
			}
			bin := compile(t, dir, "g++", "lambdas.cpp", "prog", flags...)
			frames, main := askGDBFrames(t, gdb, []string{"-ex", "file " + bin}, `gdb.execute("run")`)
			f, err := Open(bin)
			require.NoError(t, err)
			n := compareGDBFrames(t, f, frames, main-linkAddress(t, bin, "main"))
			assert.GreaterOrEqual(t, n, 5)
			t.Logf("%d frame chains agree with gdb", n)
		})
	}
}
