package symbolize

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The fixtures are built at test time from the sources in testdata/ with the
// compilers installed here; each test skips when its compiler is missing.

func testdataPath(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	require.NoError(t, err)
	return p
}

// compile builds one C or C++ source into dir/out.
func compile(t testing.TB, dir, compiler, src, out string, flags ...string) string {
	t.Helper()
	needTool(t, compiler)
	bin := filepath.Join(dir, out)
	args := append(append([]string{}, flags...), "-o", bin, testdataPath(t, src))
	run(t, dir, compiler, args...)
	return bin
}

func allFunctions(string) bool { return true }

func sectionAt(ef *elf.File, addr uint64) *elf.Section {
	for _, s := range ef.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 && addr >= s.Addr && addr-s.Addr < s.Size {
			return s
		}
	}
	return nil
}

// maxOracleAddrs bounds the addresses checked per binary.
const maxOracleAddrs = 4000

// checkOracles compares Lookup on lookupPath with the oracles run on bin
// and fails on any disagreement of the given kinds.
func checkOracles(t *testing.T, lookupPath, bin string, addrs []uint64) *tally {
	t.Helper()
	f, err := Open(lookupPath)
	require.NoError(t, err)
	defer f.Close()
	ty := compareWithOracles(t, f, bin, sample(addrs, maxOracleAddrs))
	t.Logf("%s vs gdb/eu-addr2line on %s: %s", filepath.Base(lookupPath), filepath.Base(bin), ty)
	return ty
}

// strict asserts that nothing disagrees with gdb (lines, function chains,
// symbols) and that eu-addr2line's chains and call sites agree too.
func strict(t *testing.T, ty *tally) {
	t.Helper()
	assert.Zero(t, ty.disagreements(), "disagreements with the oracles:\n%s", ty)
}

func TestOracleC(t *testing.T) {
	cases := []struct {
		name     string
		compiler string
		src      string
		flags    []string
	}{
		{"c-O0", "gcc", "inline.c", []string{"-g", "-O0"}},
		{"c-O2", "gcc", "inline.c", []string{"-g", "-O2"}},
		{"c-O2-dwarf4", "gcc", "inline.c", []string{"-gdwarf-4", "-O2"}},
		{"c-O2-dwarf3", "gcc", "inline.c", []string{"-gdwarf-3", "-O2"}},
		{"c-O2-dwarf2", "gcc", "inline.c", []string{"-gdwarf-2", "-O2"}},
		{"c-O2-gz", "gcc", "inline.c", []string{"-g", "-O2", "-gz=zlib"}},
		{"cpp-O0", "g++", "templates.cpp", []string{"-g", "-O0"}},
		{"cpp-O2", "g++", "templates.cpp", []string{"-g", "-O2"}},
		{"cpp-O2-dwarf4", "g++", "templates.cpp", []string{"-gdwarf-4", "-O2"}},
		{"cpp-lambdas-O0", "g++", "lambdas.cpp", []string{"-g", "-O0", "-pthread"}},
		{"cpp-lambdas-O2", "g++", "lambdas.cpp", []string{"-g", "-O2", "-pthread"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := compile(t, dir, tc.compiler, tc.src, tc.name, tc.flags...)
			addrs := instructionStarts(t, bin, allFunctions)
			require.NotEmpty(t, addrs)
			strict(t, checkOracles(t, bin, bin, addrs))
		})
	}
}

func TestOracleSplitDebug(t *testing.T) {
	needTool(t, "objcopy")
	for _, tc := range []struct{ compiler, src string }{{"gcc", "inline.c"}, {"g++", "templates.cpp"}} {
		t.Run(tc.src, func(t *testing.T) {
			dir := t.TempDir()
			bin := compile(t, dir, tc.compiler, tc.src, "prog", "-g", "-O2")
			debug := bin + ".debug"
			run(t, dir, "objcopy", "--only-keep-debug", bin, debug)
			// The debug file alone: .text is NOBITS there.
			ef, err := elf.Open(debug)
			require.NoError(t, err)
			require.Equal(t, elf.SHT_NOBITS, ef.Section(".text").Type)
			ef.Close()
			// PLT stubs are named from their code, which the debug file lacks.
			var addrs []uint64
			ef, err = elf.Open(bin)
			require.NoError(t, err)
			for _, a := range instructionStarts(t, bin, allFunctions) {
				if s := sectionAt(ef, a); s == nil || !strings.HasPrefix(s.Name, ".plt") {
					addrs = append(addrs, a)
				}
			}
			ef.Close()
			ty := checkOracles(t, debug, bin, addrs)
			strict(t, ty)

			full, err := Open(bin)
			require.NoError(t, err)
			split, err := Open(debug)
			require.NoError(t, err)
			assert.Equal(t, full.BuildID(), split.BuildID())
			assert.NotEmpty(t, split.BuildID())
		})
	}
}

func TestOracleStripped(t *testing.T) {
	needTool(t, "strip")
	dir := t.TempDir()
	bin := compile(t, dir, "gcc", "inline.c", "prog", "-g", "-O2", "-rdynamic")
	stripped := bin + ".stripped"
	run(t, dir, "strip", "--strip-all", "-o", stripped, bin)
	addrs := instructionStarts(t, bin, allFunctions)
	ty := checkOracles(t, stripped, stripped, addrs)
	strict(t, ty)
	assert.Positive(t, ty.counts["ok symbol"], "some addresses resolve through .dynsym")

	f, err := Open(stripped)
	require.NoError(t, err)
	var sawWork bool
	for _, a := range addrs {
		fr, err := f.Lookup(a)
		if err == ErrNoSymbol {
			continue
		}
		require.NoError(t, err)
		require.Len(t, fr, 1)
		assert.True(t, fr[0].FromSymtab)
		assert.Zero(t, fr[0].Line)
		if fr[0].Function == "work" && fr[0].Offset > 0 {
			sawWork = true
		}
	}
	assert.True(t, sawWork, "exported function work found with an offset")
}

func TestOracleGo(t *testing.T) {
	goTool := needTool(t, "go")
	dir := t.TempDir()
	src, err := os.ReadFile(testdataPath(t, "gomain.go"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), src, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module gofixture\n\ngo 1.22\n"), 0o600))
	bin := filepath.Join(dir, "gofixture")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)

	ef, err := elf.Open(bin)
	require.NoError(t, err)
	info := ef.Section(".debug_info")
	require.NotNil(t, info)
	compressed := info.Flags&elf.SHF_COMPRESSED != 0 || ef.Section(".zdebug_info") != nil
	ef.Close()
	t.Logf("Go DWARF compressed: %v", compressed)

	mainAddrs := instructionStarts(t, bin, func(fn string) bool { return strings.HasPrefix(fn, "main.") })
	rest := instructionStarts(t, bin, func(fn string) bool { return !strings.HasPrefix(fn, "main.") })
	addrs := append(mainAddrs, sample(rest, maxOracleAddrs-len(mainAddrs))...)
	strict(t, checkOracles(t, bin, bin, addrs))

	// The inlined helper shows up as an inlined frame of main.crash.
	f, err := Open(bin)
	require.NoError(t, err)
	var sawInline bool
	for _, a := range mainAddrs {
		fr, err := f.Lookup(a)
		if err == ErrNoSymbol {
			continue // int3 padding between functions
		}
		require.NoError(t, err)
		if len(fr) >= 2 && fr[0].Function == "main.helper" && fr[0].Inlined && fr[len(fr)-1].Function == "main.crash" {
			sawInline = true
			assert.Equal(t, "main.go", filepath.Base(fr[len(fr)-1].File))
		}
	}
	assert.True(t, sawInline, "main.helper inlined into main.crash")
}

func TestOracleRust(t *testing.T) {
	needTool(t, "rustc")
	for _, mangling := range []string{"legacy", "v0"} {
		t.Run(mangling, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "rmain")
			args := []string{"-C", "debuginfo=2", "-C", "opt-level=2", "-o", bin, testdataPath(t, "rmain.rs")}
			if mangling == "v0" { // legacy is the default
				args = append(args, "-C", "symbol-mangling-version=v0")
			}
			run(t, dir, "rustc", args...)
			own := instructionStarts(t, bin, func(fn string) bool { return strings.Contains(fn, "rmain") })
			rest := instructionStarts(t, bin, func(fn string) bool { return !strings.Contains(fn, "rmain") })
			addrs := append(own, sample(rest, maxOracleAddrs-len(own))...)
			strict(t, checkOracles(t, bin, bin, addrs))

			f, err := Open(bin)
			require.NoError(t, err)
			var sawLeaf bool
			for _, a := range own {
				fr, err := f.Lookup(a)
				if err != nil {
					continue
				}
				if fr[0].Function == "rmain::leaf" && fr[0].Inlined && len(fr) >= 3 && fr[1].Function == "rmain::mid" {
					sawLeaf = true
					assert.NotEmpty(t, fr[0].Mangled)
				}
			}
			assert.True(t, sawLeaf, "leaf inlined into mid inlined into work")
		})
	}
}

func TestOracleFixtures(t *testing.T) {
	bins, err := filepath.Glob("../../../testdata/cores/*/threads")
	require.NoError(t, err)
	if len(bins) == 0 {
		t.Skip("no fixture binaries")
	}
	for _, bin := range bins {
		bin, _ := filepath.Abs(bin)
		t.Run(filepath.Base(filepath.Dir(bin)), func(t *testing.T) {
			addrs := instructionStarts(t, bin, allFunctions)
			strict(t, checkOracles(t, bin, bin, addrs))
		})
	}
}

// libcDebugFile returns the installed libc and its debug file (libc6-dbg).
func libcDebugFile(t testing.TB) (lib, debug string) {
	t.Helper()
	for _, lib = range []string{"/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"} {
		f, err := Open(lib)
		if err != nil {
			continue
		}
		id := f.BuildID()
		if len(id) < 3 {
			continue
		}
		debug = filepath.Join("/usr/lib/debug/.build-id", id[:2], id[2:]+".debug")
		if _, err := os.Stat(debug); err == nil {
			return lib, debug
		}
	}
	t.Skip("no libc debug file under /usr/lib/debug/.build-id (libc6-dbg)")
	return "", ""
}

// TestOracleLibc checks a sample of glibc's code (hand-written assembly,
// IFUNC variants, thousands of DWARF 5 units) through its split debug file.
func TestOracleLibc(t *testing.T) {
	lib, debug := libcDebugFile(t)
	ef, err := elf.Open(lib)
	require.NoError(t, err)
	var addrs []uint64
	for _, a := range instructionStarts(t, lib, allFunctions) {
		if s := sectionAt(ef, a); s != nil && !strings.HasPrefix(s.Name, ".plt") {
			addrs = append(addrs, a)
		}
	}
	ef.Close()
	strict(t, checkOracles(t, debug, debug, addrs))
}

// Compressed debug sections give the same frames as uncompressed ones.
func TestCompressedSections(t *testing.T) {
	needTool(t, "objcopy")
	dir := t.TempDir()
	bin := compile(t, dir, "g++", "templates.cpp", "prog", "-g", "-O2")
	plain, err := Open(bin)
	require.NoError(t, err)
	addrs := instructionStarts(t, bin, allFunctions)
	for _, mode := range []string{"zlib", "zlib-gnu", "zstd"} {
		t.Run(mode, func(t *testing.T) {
			out := filepath.Join(dir, "prog."+mode)
			cmd := exec.Command("objcopy", "--compress-debug-sections="+mode, bin, out)
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Skipf("objcopy cannot write %s: %v %s", mode, err, msg)
			}
			ef, err := elf.Open(out)
			require.NoError(t, err)
			if mode == "zlib-gnu" {
				require.NotNil(t, ef.Section(".zdebug_info"))
			} else {
				require.NotZero(t, ef.Section(".debug_info").Flags&elf.SHF_COMPRESSED)
			}
			ef.Close()
			f, err := Open(out)
			require.NoError(t, err)
			for _, a := range addrs {
				want, werr := plain.Lookup(a)
				got, gerr := f.Lookup(a)
				require.Equal(t, werr, gerr)
				require.Equal(t, want, got, "%#x", a)
			}
		})
	}
}
