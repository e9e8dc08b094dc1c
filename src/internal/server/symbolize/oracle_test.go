package symbolize

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// This file holds the oracle harness: it asks gdb (info line, info symbol,
// and the block tree through gdb's Python API) and eu-addr2line about many
// addresses of a binary, and compares their answers with Lookup's.

// needTool skips the test when a program is not installed.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed", name)
	}
	return p
}

func run(t testing.TB, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// gdbFor returns a gdb that can read machine m.
func gdbFor(t testing.TB, m elf.Machine) string {
	t.Helper()
	if p, err := exec.LookPath("gdb-multiarch"); err == nil {
		return p
	}
	if m != elf.EM_X86_64 && m != elf.EM_386 {
		t.Skipf("no gdb-multiarch for %v", m)
	}
	return needTool(t, "gdb")
}

// objdumpFor returns an objdump that can disassemble machine m.
func objdumpFor(t testing.TB, m elf.Machine) string {
	t.Helper()
	var names []string
	switch m {
	case elf.EM_X86_64, elf.EM_386:
		names = []string{"objdump"}
	case elf.EM_AARCH64:
		names = []string{"aarch64-linux-gnu-objdump", "llvm-objdump"}
	case elf.EM_ARM:
		names = []string{"arm-linux-gnueabihf-objdump", "llvm-objdump"}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Skipf("no objdump for %v", m)
	return ""
}

func machineOf(t testing.TB, path string) elf.Machine {
	t.Helper()
	ef, err := elf.Open(path)
	require.NoError(t, err)
	defer ef.Close()
	return ef.Machine
}

var (
	objdumpFunc = regexp.MustCompile(`^([0-9a-f]+) <(.+)>:$`)
	objdumpInsn = regexp.MustCompile(`^\s+([0-9a-f]+):\s`)
)

// instructionStarts returns every instruction address objdump -d shows,
// grouped by function, for the functions keep accepts.
func instructionStarts(t testing.TB, bin string, keep func(fn string) bool) []uint64 {
	t.Helper()
	out := run(t, "", objdumpFor(t, machineOf(t, bin)), "-d", "--no-show-raw-insn", bin)
	var addrs []uint64
	take := false
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := objdumpFunc.FindStringSubmatch(line); m != nil {
			take = keep(m[2])
			continue
		}
		if !take {
			continue
		}
		if m := objdumpInsn.FindStringSubmatch(line); m != nil {
			if strings.Contains(line, "(bad)") || strings.Contains(line, ".word") || strings.Contains(line, ".inst") {
				continue
			}
			v, err := strconv.ParseUint(m[1], 16, 64)
			require.NoError(t, err)
			addrs = append(addrs, v)
		}
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i] < addrs[j] })
	return dedup(addrs)
}

func dedup(a []uint64) []uint64 {
	out := a[:0]
	for i, v := range a {
		if i == 0 || v != a[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// sample keeps at most n addresses, evenly spread.
func sample(a []uint64, n int) []uint64 {
	if len(a) <= n {
		return a
	}
	out := make([]uint64, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, a[i*len(a)/n])
	}
	return out
}

// gdbAnswer is what gdb says about one address.
type gdbAnswer struct {
	hasLine bool
	file    string
	line    int
	blocks  []string // function names of the block chain, innermost first
	symOK   bool
	symName string
	symOff  uint64
}

const gdbScript = `
import gdb
addrs = [int(x, 16) for x in open(%q).read().split()]
out = open(%q, "w")
for a in addrs:
    out.write("@ %%x\n" %% a)
    try:
        il = gdb.execute("info line *0x%%x" %% a, to_string=True).replace("\n", " ")
    except gdb.error as e:
        il = "error " + str(e)
    out.write("I %%s\n" %% il)
    try:
        b = gdb.block_for_pc(a)
    except RuntimeError:
        b = None
    names = []
    while b is not None:
        if b.function is not None:
            names.append(b.function.print_name)
        b = b.superblock
    out.write("B %%s\n" %% "\t".join(names))
    try:
        s = gdb.execute("info symbol 0x%%x" %% a, to_string=True).strip()
    except gdb.error as e:
        s = "error " + str(e)
    out.write("S %%s\n" %% s)
out.close()
`

var (
	gdbLineRe = regexp.MustCompile(`^Line (\d+) of "(.*?)"`)
	gdbSymRe  = regexp.MustCompile(`^(.*?)(?: \+ (\d+))? in section \S+`)
)

// askGDB runs one gdb over all addresses.
func askGDB(t testing.TB, bin string, addrs []uint64) map[uint64]gdbAnswer {
	t.Helper()
	gdb := gdbFor(t, machineOf(t, bin))
	dir := t.TempDir()
	in, out, script := filepath.Join(dir, "addrs"), filepath.Join(dir, "out"), filepath.Join(dir, "q.py")
	var sb strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&sb, "%x\n", a)
	}
	require.NoError(t, os.WriteFile(in, []byte(sb.String()), 0o600))
	require.NoError(t, os.WriteFile(script, []byte(fmt.Sprintf(gdbScript, in, out)), 0o600))
	run(t, dir, gdb, "-nx", "-batch", "-ex", "set auto-load off", "-ex", "set debuginfod enabled off",
		"-ex", "file "+bin, "-x", script)
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	res := map[uint64]gdbAnswer{}
	var cur uint64
	var ans gdbAnswer
	started := false
	flush := func() {
		if started {
			res[cur] = ans
		}
	}
	for _, line := range strings.Split(string(data), "\n") {
		if len(line) < 2 {
			continue
		}
		body := line[2:]
		switch line[0] {
		case '@':
			flush()
			v, err := strconv.ParseUint(body, 16, 64)
			require.NoError(t, err)
			cur, ans, started = v, gdbAnswer{}, true
		case 'I':
			if m := gdbLineRe.FindStringSubmatch(body); m != nil {
				ans.line, _ = strconv.Atoi(m[1])
				ans.file = m[2]
				ans.hasLine = ans.line > 0
			}
		case 'B':
			if body != "" {
				ans.blocks = strings.Split(body, "\t")
			}
		case 'S':
			if m := gdbSymRe.FindStringSubmatch(body); m != nil {
				ans.symOK = true
				ans.symName = m[1]
				if m[2] != "" {
					ans.symOff, _ = strconv.ParseUint(m[2], 10, 64)
				}
			}
		}
	}
	flush()
	return res
}

// euFrame is one frame of eu-addr2line -f -i output.
type euFrame struct {
	fn   string
	file string
	line int
}

// askEU runs eu-addr2line -a -f -i -C over all addresses.
func askEU(t testing.TB, bin string, addrs []uint64) map[uint64][]euFrame {
	t.Helper()
	eu := needTool(t, "eu-addr2line")
	var sb strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&sb, "0x%x\n", a)
	}
	cmd := exec.Command(eu, "-a", "-f", "-i", "-C", "-e", bin)
	cmd.Stdin = strings.NewReader(sb.String())
	out, err := cmd.Output()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) { // it exits 1 when some address has no answer
		require.NoError(t, err)
	}
	res := map[uint64][]euFrame{}
	var cur uint64
	var pendingFn *string
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "0x") && !strings.Contains(line, " ") {
			if v, err := strconv.ParseUint(line[2:], 16, 64); err == nil {
				cur = v
				res[cur] = nil
				pendingFn = nil
				continue
			}
		}
		if pendingFn == nil {
			fn := line
			if i := strings.Index(fn, " inlined at "); i >= 0 {
				fn = fn[:i]
			}
			pendingFn = &fn
			continue
		}
		f := euFrame{fn: *pendingFn}
		pendingFn = nil
		loc := line
		// file:line:col or file:line or ??:0
		parts := strings.Split(loc, ":")
		if len(parts) >= 2 {
			nums := 0
			for i := len(parts) - 1; i > 0 && nums < 2; i-- {
				if _, err := strconv.Atoi(parts[i]); err != nil {
					break
				}
				nums++
			}
			f.file = strings.Join(parts[:len(parts)-nums], ":")
			if nums == 2 {
				f.line, _ = strconv.Atoi(parts[len(parts)-2])
			} else if nums == 1 {
				f.line, _ = strconv.Atoi(parts[len(parts)-1])
			}
		}
		if f.file == "??" {
			f.file = ""
		}
		res[cur] = append(res[cur], f)
	}
	return res
}

var cloneSuffix = regexp.MustCompile(`( \[clone [^\]]*\])+$`)

// stripParams removes a demangled name's parameter list, its cv/ref
// qualifiers and clone suffixes: "ns::f<int>(int) const" -> "ns::f<int>".
func stripParams(name string) string {
	name = cloneSuffix.ReplaceAllString(name, "")
	for {
		trimmed := name
		for _, q := range []string{" const", " volatile", " &&", " &"} {
			trimmed = strings.TrimSuffix(trimmed, q)
		}
		if trimmed == name {
			break
		}
		name = trimmed
	}
	if !strings.HasSuffix(name, ")") {
		return name
	}
	depth := 0
	for i := len(name) - 1; i >= 0; i-- {
		switch name[i] {
		case ')':
			depth++
		case '(':
			depth--
			if depth == 0 {
				if strings.HasSuffix(name[:i], "operator") {
					return name // "operator()" itself
				}
				return name[:i]
			}
		}
	}
	return name
}

// sameFunction compares our name with an oracle's: parameters ignored, and
// a return type the oracle prints before a template function allowed.
func sameFunction(ours, theirs string) bool {
	a, b := stripParams(ours), stripParams(theirs)
	return a == b || strings.HasSuffix(b, " "+a)
}

// tally counts agreements and disagreements by kind, keeping examples.
type tally struct {
	checked  int
	counts   map[string]int
	examples map[string][]string
}

func newTally() *tally {
	return &tally{counts: map[string]int{}, examples: map[string][]string{}}
}

func (ty *tally) add(kind string, format string, args ...any) {
	ty.counts[kind]++
	if format != "" && (len(ty.examples[kind]) < 4 || os.Getenv("SYMBOLIZE_ALL_EXAMPLES") != "") {
		ty.examples[kind] = append(ty.examples[kind], fmt.Sprintf(format, args...))
	}
}

func (ty *tally) String() string {
	var keys []string
	for k := range ty.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d addresses", ty.checked)
	for _, k := range keys {
		fmt.Fprintf(&sb, "\n  %-28s %6d", k, ty.counts[k])
		for _, e := range ty.examples[k] {
			fmt.Fprintf(&sb, "\n      e.g. %s", e)
		}
	}
	return sb.String()
}

func sameFile(ours, theirs string) bool {
	return ours == theirs || filepath.Clean(ours) == filepath.Clean(theirs)
}

func sameBase(ours, theirs string) bool {
	return filepath.Base(ours) == filepath.Base(theirs)
}

// compareWithOracles looks every address up in f and compares with what
// gdb and eu-addr2line say about bin. Kinds starting with "ok" are
// agreements; the rest are disagreements.
func compareWithOracles(t *testing.T, f *File, bin string, addrs []uint64) *tally {
	t.Helper()
	aliases := symbolsByAddress(t, bin)
	g := askGDB(t, bin, addrs)
	eu := askEU(t, bin, addrs)
	llvm := askLLVM(t, bin, addrs)
	llvmCallLines := func(a uint64) []int {
		fr, ok := llvm[a]
		if !ok || len(fr) == 0 {
			return nil
		}
		out := []int{}
		for _, f := range fr[1:] {
			out = append(out, f.line)
		}
		return out
	}
	ty := newTally()
	for _, a := range addrs {
		ty.checked++
		frames, err := f.Lookup(a)
		if err != nil && err != ErrNoSymbol {
			ty.add("lookup error", "%#x: %v", a, err)
			continue
		}
		ga := g[a]
		var inner Frame
		if len(frames) > 0 {
			inner = frames[0]
		}

		// 1. The line of the address, as gdb's "info line *addr".
		switch {
		case !ga.hasLine && inner.Line == 0:
			ty.add("ok line (none)", "")
		case !ga.hasLine:
			ty.add("line: gdb has none", "%#x ours %s:%d", a, inner.File, inner.Line)
		case inner.Line != ga.line:
			ty.add("line: differs from gdb", "%#x ours %s:%d gdb %s:%d", a, inner.File, inner.Line, ga.file, ga.line)
		case sameFile(inner.File, ga.file):
			ty.add("ok line", "")
		case sameBase(inner.File, ga.file):
			ty.add("ok line (path spelled differently)", "%#x ours %s gdb %s", a, inner.File, ga.file)
		default:
			ty.add("line: file differs from gdb", "%#x ours %s gdb %s", a, inner.File, ga.file)
		}

		// 2. The function chain, as gdb's blocks (function names only).
		var dwarfFrames []Frame
		for _, fr := range frames {
			if !fr.FromSymtab && fr.Function != "" {
				dwarfFrames = append(dwarfFrames, fr)
			}
		}
		gdbChainOK := false
		switch {
		case len(ga.blocks) == 0 && len(dwarfFrames) == 0:
			ty.add("ok chain (no DWARF function)", "")
			gdbChainOK = true
		case len(ga.blocks) > len(dwarfFrames) && len(dwarfFrames) > 0 && !dwarfFrames[len(dwarfFrames)-1].Inlined &&
			sameNames(dwarfFrames, ga.blocks[:len(dwarfFrames)]):
			// gdb nests the block of a local function (a lambda, a GNU
			// nested function) in its parent's; the frame is the same.
			ty.add("ok chain (gdb nests local function)", "")
			gdbChainOK = true
		case len(ga.blocks) != len(dwarfFrames):
			ty.add("chain: depth differs from gdb", "%#x ours %s gdb %s", a, names(dwarfFrames), strings.Join(ga.blocks, " < "))
		default:
			if sameNames(dwarfFrames, ga.blocks) {
				ty.add("ok chain", "")
				gdbChainOK = true
				// gdb names a frame by its function's print name without
				// the parameters when that parses as C++, else the
				// whole print name (find_frame_funname).
				for i, fr := range dwarfFrames {
					switch want := gdbFrameName(ga.blocks[i]); {
					case fr.Function == want:
					case libibertyPackSpace(fr.Function, want):
						ty.add("info: libiberty drops a space after an empty pack", "%#x ours %q gdb %q", a, fr.Function, want)
					default:
						ty.add("chain: frame name differs from gdb's", "%#x ours %q gdb %q (print name %q)", a, fr.Function, want, ga.blocks[i])
					}
				}
			} else if sameNamesWith(dwarfFrames, ga.blocks, libibertyPackSpace) {
				ty.add("info: libiberty drops a space after an empty pack", "%#x ours %s gdb %s", a, names(dwarfFrames), strings.Join(ga.blocks, " < "))
				gdbChainOK = true
			} else {
				ty.add("chain: name differs from gdb", "%#x ours %s gdb %s", a, names(dwarfFrames), strings.Join(ga.blocks, " < "))
			}
		}

		// 3. The inline chain with call sites, as eu-addr2line -i. Without a
		// DWARF function eu-addr2line falls back to ELF symbols (mapping
		// symbols included); those are checked against gdb below instead.
		ef := eu[a]
		switch {
		case len(dwarfFrames) == 0:
		case len(ef) == 0:
			ty.add("eu: no answer", "%#x", a)
		case len(ef) != len(frames):
			if gdbChainOK {
				ty.add("info: eu chain depth differs, gdb agrees with us", "%#x ours %s eu %s", a, names(frames), euNames(ef))
				// eu-addr2line misses some inlined calls (all of Go's):
				// check our call sites with llvm-symbolizer.
				if got := llvmCallLines(a); got != nil {
					if sameInts(got, callLines(frames)) {
						ty.add("ok call sites (llvm-symbolizer)", "")
					} else {
						ty.add("llvm: call sites differ", "%#x ours %v llvm %v", a, callLines(frames), got)
					}
				}
			} else {
				ty.add("eu: chain depth differs", "%#x ours %s eu %s", a, names(frames), euNames(ef))
			}
		default:
			switch {
			case sameEUNames(frames, ef):
				ty.add("ok eu names", "")
			case gdbChainOK && euUndemangled(ef):
				ty.add("info: eu cannot demangle, gdb agrees with us", "%#x ours %s eu %s", a, names(frames), euNames(ef))
			case gdbChainOK:
				ty.add("info: eu names differ, gdb agrees with us", "%#x ours %s eu %s", a, names(frames), euNames(ef))
			default:
				ty.add("eu: names differ", "%#x ours %s eu %s", a, names(frames), euNames(ef))
			}
			// Relative paths (a relative DW_AT_comp_dir) are spelled three
			// ways: eu-addr2line joins comp_dir to directory 0 again
			// ("./csu/./csu/x.c"), gdb drops comp_dir from other directories
			// ("../libio/x.h"), we join comp_dir once ("./libio/../libio/x.h").
			callOK, pathsSame := true, true
			for i := 1; i < len(frames); i++ {
				if frames[i].Line != ef[i].line || !sameBase(frames[i].File, ef[i].file) {
					callOK = false
				}
				if !sameFile(frames[i].File, ef[i].file) {
					pathsSame = false
				}
			}
			switch {
			case len(frames) == 1:
			case callOK && pathsSame:
				ty.add("ok eu call sites", "")
			case callOK:
				ty.add("ok eu call sites (path spelled differently)", "%#x ours %s eu %s", a, frames[1].File, ef[1].file)
			case sameInts(llvmCallLines(a), callLines(frames)):
				ty.add("info: eu call site differs, llvm-symbolizer agrees with us", "%#x ours %s eu %s", a, sites(frames), euSites(ef))
			default:
				ty.add("eu: call site differs", "%#x ours %s eu %s", a, sites(frames), euSites(ef))
			}
			if frames[0].Line != ef[0].line {
				// libdw takes the last row at an address; gdb (and we)
				// prefer an is_stmt row there.
				ty.add("info: innermost line differs from eu", "%#x ours %d eu %d gdb %d", a, frames[0].Line, ef[0].line, ga.line)
			}
		}

		// 4. The symbol table, as gdb's "info symbol".
		s := f.syms.lookup(a)
		switch {
		case s == nil && !ga.symOK:
			ty.add("ok symbol (none)", "")
		case s == nil:
			ty.add("symbol: gdb has one", "%#x gdb %s+%d", a, ga.symName, ga.symOff)
		case !ga.symOK:
			ty.add("symbol: gdb has none", "%#x ours %s+%d", a, s.name, a-s.addr)
		case Demangle(s.name) == ga.symName && a-s.addr == ga.symOff:
			ty.add("ok symbol", "")
		case a-s.addr == ga.symOff && gdbDecorated(Demangle(s.name), ga.symName):
			// gdb runs every minimal symbol through its demanglers; the Ada one
			// takes "crash.constprop.0" (lower case, no leading _) for an
			// overloaded Ada name and prints "crash.constprop".
			ty.add("ok symbol (gdb decorates suffix)", "%#x ours %s gdb %s", a, Demangle(s.name), ga.symName)
		case a-s.addr == ga.symOff && aliases[s.addr][ga.symName]:
			ty.add("ok symbol (gdb picks another alias)", "%#x ours %s gdb %s", a, Demangle(s.name), ga.symName)
		case a-s.addr == ga.symOff && libibertyPackSpace(Demangle(s.name), ga.symName):
			ty.add("info: libiberty drops a space after an empty pack", "%#x ours %s gdb %s", a, Demangle(s.name), ga.symName)
		case a-s.addr == ga.symOff && strings.HasPrefix(s.name, "_R"):
			// github.com/ianlancetaylor/demangle misplaces closure
			// disambiguators and drops some generic arguments in nested
			// v0 paths; libiberty (gdb) gets them right.
			ty.add("info: Rust v0 demangling differs from gdb", "%#x ours %s gdb %s", a, Demangle(s.name), ga.symName)
		default:
			ty.add("symbol: differs", "%#x ours %s+%d gdb %s+%d", a, Demangle(s.name), a-s.addr, ga.symName, ga.symOff)
		}
	}
	return ty
}

var (
	numericSuffix = regexp.MustCompile(`\.[0-9]+$`)
	wordSuffix    = regexp.MustCompile(`\.([A-Za-z_][A-Za-z0-9_]*)$`)
	crateHash     = regexp.MustCompile(`\[[0-9a-f]{16}\]`)
	legacyHash    = regexp.MustCompile(`::h[0-9a-f]{16}$`)
)

// gdbDecorated reports whether gdb's spelling of a minimal symbol is ours
// after gdb's own rewriting: its Ada decoder, which it tries on every
// name not starting with "_", drops a ".N" suffix ("crash.constprop.0")
// and brackets a ".word" one ("main.cold" -> "main[cold]", "main.crash" ->
// "main[crash]"); its Rust demanglers keep legacy hashes ("::h0123...") and
// print v0 crate hashes ("rmain[3d40f5121781eef5]").
func gdbDecorated(ours, gdb string) bool {
	if legacyHash.ReplaceAllString(crateHash.ReplaceAllString(gdb, ""), "") == ours {
		return true
	}
	ada := numericSuffix.ReplaceAllString(ours, "")
	return ada == gdb || wordSuffix.ReplaceAllString(ada, "[$1]") == gdb
}

// symbolsByAddress lists every symbol name (demangled, as gdb spells it) by
// address, to recognise gdb choosing another alias.
func symbolsByAddress(t testing.TB, bin string) map[uint64]map[string]bool {
	t.Helper()
	ef, err := elf.Open(bin)
	require.NoError(t, err)
	defer ef.Close()
	out := map[uint64]map[string]bool{}
	for _, get := range []func() ([]elf.Symbol, error){ef.Symbols, ef.DynamicSymbols} {
		syms, _ := get()
		for _, s := range syms {
			v := s.Value
			if ef.Machine == elf.EM_ARM && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
				v &^= 1
			}
			if out[v] == nil {
				out[v] = map[string]bool{}
			}
			out[v][Demangle(s.Name)] = true
		}
	}
	return out
}

// askLLVM runs llvm-symbolizer --inlining over all addresses (nil when it
// is not installed): the third oracle, for inline chains eu-addr2line gets
// wrong (it misses all of Go's inlined calls).
func askLLVM(t testing.TB, bin string, addrs []uint64) map[uint64][]euFrame {
	t.Helper()
	p, err := exec.LookPath("llvm-symbolizer")
	if err != nil {
		return nil
	}
	var sb strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&sb, "0x%x\n", a)
	}
	cmd := exec.Command(p, "--obj="+bin, "--inlining", "--functions=linkage", "--output-style=LLVM")
	cmd.Stdin = strings.NewReader(sb.String())
	out, err := cmd.Output()
	if err != nil {
		return nil
	}
	res := map[uint64][]euFrame{}
	blocks := strings.Split(strings.TrimSpace(string(out)), "\n\n")
	if len(blocks) != len(addrs) {
		return nil
	}
	for i, b := range blocks {
		lines := strings.Split(b, "\n")
		var fr []euFrame
		for j := 0; j+1 < len(lines); j += 2 {
			loc := strings.Split(lines[j+1], ":")
			f := euFrame{fn: lines[j]}
			if len(loc) >= 3 {
				f.file = strings.Join(loc[:len(loc)-2], ":")
				f.line, _ = strconv.Atoi(loc[len(loc)-2])
			}
			fr = append(fr, f)
		}
		res[addrs[i]] = fr
	}
	return res
}

func callLines(fr []Frame) []int {
	var out []int
	for _, f := range fr[1:] {
		out = append(out, f.Line)
	}
	return out
}

func sameInts(a, b []int) bool {
	if a == nil || len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func euUndemangled(ef []euFrame) bool {
	for _, e := range ef {
		if strings.HasPrefix(e.fn, "_R") || strings.HasPrefix(e.fn, "_Z") {
			return true
		}
	}
	return false
}

func sameEUNames(fr []Frame, ef []euFrame) bool {
	for i := range fr {
		// eu-addr2line prints the bare DIE name when there is no linkage
		// name (C++ anonymous-namespace functions).
		if !sameFunction(fr[i].Function, ef[i].fn) &&
			!strings.HasSuffix(stripParams(fr[i].Function), "::"+stripParams(ef[i].fn)) {
			return false
		}
	}
	return true
}

// gdbFrameName is the name gdb gives a frame of the function whose
// print name is print.
func gdbFrameName(print string) string {
	if f, ok := cpRemoveParams(print); ok {
		return f
	}
	return print
}

// libibertyPackSpace reports names that differ only where libiberty
// prints ">>" for "> >": after an empty template argument pack at the
// end of a pack, whose ", " it removes without forgetting that it wrote
// a space (the demangle package's printer cannot copy that).
func libibertyPackSpace(ours, gdb string) bool {
	return ours != gdb && strings.Contains(gdb, ">>") &&
		strings.ReplaceAll(ours, "> >", ">>") == strings.ReplaceAll(gdb, "> >", ">>")
}

func sameNamesWith(fr []Frame, gdbNames []string, also func(ours, gdb string) bool) bool {
	for i := range fr {
		if !sameFunction(fr[i].Function, gdbNames[i]) && !also(stripParams(fr[i].Function), stripParams(gdbNames[i])) {
			return false
		}
	}
	return true
}

func sameNames(fr []Frame, gdbNames []string) bool {
	for i := range fr {
		if !sameFunction(fr[i].Function, gdbNames[i]) {
			return false
		}
	}
	return true
}

func names(fr []Frame) string {
	var s []string
	for _, f := range fr {
		s = append(s, f.Function)
	}
	return strings.Join(s, " < ")
}

func euNames(fr []euFrame) string {
	var s []string
	for _, f := range fr {
		s = append(s, f.fn)
	}
	return strings.Join(s, " < ")
}

func sites(fr []Frame) string {
	var s []string
	for _, f := range fr {
		s = append(s, fmt.Sprintf("%s:%d", filepath.Base(f.File), f.Line))
	}
	return strings.Join(s, " < ")
}

func euSites(fr []euFrame) string {
	var s []string
	for _, f := range fr {
		s = append(s, fmt.Sprintf("%s:%d", filepath.Base(f.file), f.line))
	}
	return strings.Join(s, " < ")
}

// disagreements sums the kinds that are not agreements ("ok ...") or notes ("info: ...").
func (ty *tally) disagreements(prefixes ...string) int {
	n := 0
	for k, c := range ty.counts {
		if strings.HasPrefix(k, "ok") || strings.HasPrefix(k, "info:") {
			continue
		}
		if len(prefixes) == 0 {
			n += c
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				n += c
			}
		}
	}
	return n
}
