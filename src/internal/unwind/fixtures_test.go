package unwind_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/elfcore"
	"meta-memfault-go/internal/unwind"
)

// fixture is a real kernel core of testdata/programs/threads.c (see testdata/cores/README.md).
type fixture struct {
	arch    string
	sysroot string // where the core's library paths resolve; "/" for the host
	program string // the crashed program's file; "" for testdata/cores/<arch>/threads
}

var fixtures = []fixture{
	{arch: "x86_64", sysroot: "/"},
	{arch: "aarch64", sysroot: "/usr/aarch64-linux-gnu"},
	{arch: "armhf", sysroot: "/usr/arm-linux-gnueabihf"},
	{arch: "i386", sysroot: "/"},
}

func coresDir() string { return filepath.Join("..", "..", "testdata", "cores") }

// core is a fixture core read the way the server reads one.
type core struct {
	full []byte
	core *elfcore.Core
	proc *elfcore.Process
	mem  elfcore.Memory
}

func readCore(t testing.TB, b []byte) *core {
	t.Helper()
	c, err := elfcore.ReadCore(bytes.NewReader(b), elfcore.DefaultLimits)
	require.NoError(t, err)
	notes, err := elfcore.ParseNotes(c.Notes, c.Header.ByteOrder())
	require.NoError(t, err)
	p, err := elfcore.DecodeProcess(&c.Header, notes)
	require.NoError(t, err)
	return &core{full: b, core: c, proc: p, mem: elfcore.NewSegmentMemory(bytes.NewReader(b), c.Progs)}
}

func loadFixture(t testing.TB, arch string) *core {
	t.Helper()
	return loadCoreGz(t, filepath.Join(coresDir(), arch, "core.gz"))
}

func loadCoreGz(t testing.TB, path string) *core {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	b, err := io.ReadAll(zr)
	require.NoError(t, err)
	return readCore(t, b)
}

// fileBuildID reads the GNU build-id of an ELF file.
func fileBuildID(f *elf.File) string {
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOTE {
			continue
		}
		b, err := s.Data()
		if err != nil {
			continue
		}
		notes, _ := elfcore.ParseNotes(b, f.ByteOrder)
		for _, n := range notes {
			if n.Name == "GNU" && n.Type == elfcore.NT_GNU_BUILD {
				return hex.EncodeToString(n.Desc)
			}
		}
	}
	return ""
}

// symbolFile finds the file to load a module's tables from: the fixture's own binary, or the
// library in the sysroot.
func symbolFile(fx fixture, m *unwind.Module) string {
	if fx.program != "" && filepath.Base(m.Path) == filepath.Base(fx.program) {
		return fx.program
	}
	if fx.program == "" && filepath.Base(m.Path) == "threads" {
		return filepath.Join(coresDir(), fx.arch, "threads")
	}
	return filepath.Join(fx.sysroot, m.Path)
}

// modules builds the module set of a core and attaches tables by build-id, as the server does.
// It returns the paths of libraries left without tables because the file on this machine is
// not the one the core used.
func modules(t testing.TB, fx fixture, c *core) (*unwind.ModuleSet, []string) {
	t.Helper()
	mods := unwind.ModulesFromCore(c.proc, c.mem, c.core.Header.Class, c.core.Header.ByteOrder())
	require.NotEmpty(t, mods)
	var skipped []string
	for _, m := range mods {
		if m.Path == "[vdso]" {
			require.NotNil(t, m.Tables, "the vDSO's tables come from the core")
			continue
		}
		path := symbolFile(fx, m)
		f, err := elf.Open(path)
		if err != nil {
			t.Logf("%s: no symbol file (%v)", m.Path, err)
			skipped = append(skipped, m.Path)
			continue
		}
		id := fileBuildID(f)
		if m.BuildID == "" || id != m.BuildID {
			t.Logf("%s: build-id in core %q, %s has %q: not using it", m.Path, m.BuildID, path, id)
			skipped = append(skipped, m.Path)
			f.Close()
			continue
		}
		m.Tables, err = unwind.LoadTables(f)
		require.NoError(t, err, path)
		f.Close()
	}
	return unwind.NewModuleSet(mods), skipped
}

// gdbFrame is one frame of gdb's backtrace. PC is 0 when gdb printed none (frame 0 at the
// start of a line, or a frame inlined into the next one).
type gdbFrame struct {
	Num  int
	PC   uint64
	Func string
}

var (
	gdbThreadRe = regexp.MustCompile(`^Thread \d+ \(.*LWP (\d+)\)\)?:`)
	gdbFrameRe  = regexp.MustCompile(`^#(\d+)\s+(?:(0x[0-9a-f]+) in )?(\S+)`)
)

// parseGDB reads `thread apply all bt` output: frames per LWP.
func parseGDB(t testing.TB, path string) map[uint32][]gdbFrame {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	out := map[uint32][]gdbFrame{}
	var lwp uint32
	in := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := gdbThreadRe.FindStringSubmatch(line); m != nil {
			v, err := strconv.ParseUint(m[1], 10, 32)
			require.NoError(t, err)
			lwp, in = uint32(v), true
			out[lwp] = nil
			continue
		}
		if line == "" {
			in = false
			continue
		}
		if m := gdbFrameRe.FindStringSubmatch(line); m != nil && in {
			n, err := strconv.Atoi(m[1])
			require.NoError(t, err)
			var pc uint64
			if m[2] != "" {
				pc, err = strconv.ParseUint(m[2][2:], 16, 64)
				require.NoError(t, err)
			}
			out[lwp] = append(out[lwp], gdbFrame{Num: n, PC: pc, Func: m[3]})
		}
	}
	require.NoError(t, sc.Err())
	return out
}

// physical reduces gdb's frames to real ones: frame 0, then every frame that gdb printed a pc
// for. Frames without a pc after frame 0 are inlined into the frame before them.
func physical(frames []gdbFrame, pc0 uint64) []gdbFrame {
	var out []gdbFrame
	for i, f := range frames {
		if i == 0 {
			if f.PC == 0 {
				f.PC = pc0
			}
			out = append(out, f)
			continue
		}
		if f.PC != 0 {
			out = append(out, f)
		}
	}
	return out
}

func describe(frames []unwind.Frame) string {
	var sb strings.Builder
	for i, f := range frames {
		fmt.Fprintf(&sb, "  #%d %#x cfa=%#x %s\n", i, f.PC, f.CFA, f.Method)
	}
	return sb.String()
}

// afterCall reports whether the instruction before pc in the module's file is a call, for x86
// (on other machines it answers true). gdb shows frames that are not on the stack: from the
// DWARF call-site information of libc6-dbg it synthesizes a frame for a function that left by
// a tail call (a TAILCALL_FRAME), whose pc follows a jmp. No unwinder can see those.
func afterCall(t testing.TB, fx fixture, mods unwind.Modules, machine elf.Machine, pc uint64) bool {
	if machine != elf.EM_X86_64 && machine != elf.EM_386 {
		return true
	}
	m := mods.ModuleAt(pc)
	if m == nil || m.Path == "[vdso]" {
		return true
	}
	f, err := elf.Open(symbolFile(fx, m))
	require.NoError(t, err)
	defer f.Close()
	link := pc - m.Bias
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || link < p.Vaddr+8 || link > p.Vaddr+p.Filesz {
			continue
		}
		var b [8]byte
		_, err := p.ReadAt(b[:], int64(link-8-p.Vaddr))
		require.NoError(t, err)
		if b[8-5] == 0xe8 { // call rel32
			return true
		}
		for _, k := range []int{2, 3, 4, 6, 7} { // call r/m: ff /2 with 0, 1, 2, 4 or 5 more bytes
			if b[8-k] == 0xff && b[8-k+1]>>3&7 == 2 {
				return true
			}
		}
		return false
	}
	return true
}

func describeModules(s *unwind.ModuleSet) []string {
	var out []string
	for _, m := range s.Modules() {
		out = append(out, fmt.Sprintf("%#x-%#x bias %#x %s %s tables=%v", m.Start, m.End, m.Bias, m.Path, m.BuildID, m.Tables != nil))
	}
	return out
}
