package symbolize

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/elfcore"
	"meta-memfault-go/internal/testutil/fixture"
)

// insn is one instruction of objdump's disassembly.
type insn struct {
	mnemonic string // "call", "jmp", "je", ... (prefixes like "notrack" dropped)
	target   uint64 // direct branch destination, 0 for an indirect one
	symbol   string // objdump's name for the destination ("read@plt")
}

var (
	objdumpLine   = regexp.MustCompile(`^\s+([0-9a-f]+):\t([0-9a-f]{2}(?: [0-9a-f]{2})*)\s*(?:\t(.*))?$`)
	objdumpBranch = regexp.MustCompile(`^([0-9a-f]+) <([^>]*)>`)
)

// instructionsByEnd disassembles bin and returns its instructions by the address just past
// them (start + length, the length counted from objdump's raw bytes).
func instructionsByEnd(t *testing.T, bin string) map[uint64]insn {
	out := run(t, "", objdumpFor(t, machineOf(t, bin)), "-d", bin)
	byEnd := map[uint64]insn{}
	var cur insn
	var start, length uint64
	flush := func() {
		if length > 0 {
			byEnd[start+length] = cur
		}
		length = 0
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := objdumpLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		n := uint64(len(strings.Fields(m[2])))
		if m[3] == "" { // the rest of a long instruction's bytes
			length += n
			continue
		}
		flush()
		var err error
		start, err = strconv.ParseUint(m[1], 16, 64)
		require.NoError(t, err)
		length = n
		cur = insn{}
		fields := strings.Fields(m[3])
		for len(fields) > 0 && (fields[0] == "notrack" || fields[0] == "bnd" || fields[0] == "rex.W") {
			fields = fields[1:]
		}
		if len(fields) > 0 {
			cur.mnemonic = fields[0]
		}
		if len(fields) > 1 {
			if b := objdumpBranch.FindStringSubmatch(strings.Join(fields[1:], " ")); b != nil {
				cur.target, _ = strconv.ParseUint(b[1], 16, 64)
				cur.symbol = b[2]
			}
		}
	}
	flush()
	return byEnd
}

// definesAt reports whether the file has a global symbol name at addr (there can be several,
// for versions: memcpy@GLIBC_2.2.5 and memcpy@@GLIBC_2.14).
func definesAt(f *File, name string, addr uint64) bool {
	for _, s := range f.syms.names.syms {
		if s.name == name && s.addr == addr && s.kind == GlobalSymbol {
			return true
		}
	}
	return false
}

// TestCallSitesMatchDisassembly reads every call site of a binary and checks it against
// objdump: an instruction ends at its return address, a tail call is a jump and any other
// call a call, and a direct branch goes to the site's target (a function's entry, or the
// symbol a declaration names, or that symbol's PLT stub). The tail-call lists hold exactly
// the tail sites of functions that list all their calls, and TailCalls and FunctionStart
// answer for every function that owns one.
func TestCallSitesMatchDisassembly(t *testing.T) {
	needTool(t, "objdump")
	root := fixture.Root(t)
	cases := []struct{ name, debug, code string }{
		{"c-tailcalls", filepath.Join(root, "testdata/corpus/c-tailcalls/x86_64/c-tailcalls"), ""},
		{"libc", "/usr/lib/debug/.build-id/93/ac61ec5a8eb1396f9fbd350e3169a558528a40.debug", "/lib/x86_64-linux-gnu/libc.so.6"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.code == "" {
				c.code = c.debug
			}
			for _, p := range []string{c.debug, c.code} {
				if _, err := os.Stat(p); err != nil {
					t.Skipf("%s: %v", p, err)
				}
			}
			f, err := Open(c.debug)
			require.NoError(t, err)
			if c.code != c.debug {
				fh, err := os.Open(c.code)
				require.NoError(t, err)
				st, _ := fh.Stat()
				id, err := elfcore.FileBuildID(fh, st.Size())
				fh.Close()
				require.NoError(t, err)
				if id != f.BuildID() {
					t.Skipf("%s is not the build of %s", c.code, c.debug)
				}
			}
			code := instructionsByEnd(t, c.code)
			ty := newTally()
			sites, tails := 0, 0
			for _, u := range f.dw.allUnits() {
				us, err := f.dw.sitesOf(u)
				require.NoError(t, err)
				inTail := map[uint64]bool{}
				for die, ids := range us.tails {
					entry, ok := f.dw.entryOf(die)
					require.True(t, ok, "subprogram %#x with tail calls has no entry", die)
					start, ok, err := f.FunctionStart(entry)
					require.NoError(t, err)
					require.True(t, ok)
					require.Equal(t, entry, start, "FunctionStart of the entry of %#x", die)
					list, ok, err := f.TailCalls(entry)
					require.NoError(t, err)
					require.True(t, ok, "TailCalls(%#x)", entry)
					require.Len(t, list, len(ids))
					for i, id := range ids {
						require.Equal(t, us.sites[id].PC, list[i].PC)
						inTail[us.sites[id].PC] = true
						if i > 0 {
							require.Greater(t, ids[i-1], id, "gdb's order: the last site in DIE order first")
						}
					}
					tails += len(ids)
				}
				for _, cs := range us.sites {
					sites++
					got, ok, err := f.CallSiteAt(cs.PC)
					require.NoError(t, err)
					if !ok || got.PC != cs.PC {
						// a site whose pc-1 falls in another unit's range (gdb looks there too)
						ty.add("info: not found from its return address (pc-1 is in another unit)", "%#x", cs.PC)
					}
					in, ok := code[cs.PC]
					if !ok {
						ty.add("error: no instruction ends at the return address", "%#x", cs.PC)
						continue
					}
					isJump := strings.HasPrefix(in.mnemonic, "j")
					isCall := strings.HasPrefix(in.mnemonic, "call")
					switch {
					case cs.Tail && !isJump:
						ty.add("error: tail call is no jump", "%#x %s", cs.PC, in.mnemonic)
					case !cs.Tail && !isCall && cs.Unknown:
						// GCC describes some expanded builtins as calls to a constant
						ty.add("info: unknown call without a call instruction", "%#x %s", cs.PC, in.mnemonic)
					case !cs.Tail && !isCall:
						ty.add("error: call is no call instruction", "%#x %s", cs.PC, in.mnemonic)
					}
					if cs.Tail && !inTail[cs.PC] {
						ty.add("info: tail call of a function that does not list all its calls", "%#x", cs.PC)
					}
					if in.target == 0 {
						continue // indirect
					}
					switch {
					case cs.Unknown:
						ty.add("info: direct branch, DWARF gives no target", "%#x %s %s", cs.PC, in.mnemonic, in.symbol)
					case cs.Symbol != "":
						a, kind := f.SymbolAddress(cs.Symbol)
						switch {
						case kind != NoSymbol && a == in.target:
							ty.add("ok: symbol", "")
						case strings.TrimSuffix(in.symbol, "@plt") == cs.Symbol:
							ty.add("ok: to the PLT stub of the symbol", "%#x %s", cs.PC, cs.Symbol)
						case kind != NoSymbol && in.symbol == fmt.Sprintf("*ABS*+%#x@plt", a):
							ty.add("ok: to a PLT stub resolving to the symbol (IFUNC)", "%#x %s", cs.PC, cs.Symbol)
						case strings.HasPrefix(in.symbol, "*ABS*+0x") && strings.HasSuffix(in.symbol, "@plt"):
							v, err := strconv.ParseUint(strings.TrimSuffix(in.symbol[len("*ABS*+0x"):], "@plt"), 16, 64)
							if err == nil && definesAt(f, cs.Symbol, v) {
								ty.add("info: to another version of the symbol", "%#x %s: %#x, not %#x", cs.PC, cs.Symbol, v, a)
							} else {
								ty.add("error: symbol resolves elsewhere", "%#x: %s at %#x, the branch goes to %#x <%s>", cs.PC, cs.Symbol, a, in.target, in.symbol)
							}
						case kind == NoSymbol:
							ty.add("info: symbol not defined in this file", "%#x %s", cs.PC, cs.Symbol)
						default:
							ty.add("error: symbol resolves elsewhere", "%#x: %s at %#x, the branch goes to %#x <%s>", cs.PC, cs.Symbol, a, in.target, in.symbol)
						}
					default:
						found := false
						for _, a := range cs.Targets {
							found = found || a == in.target
						}
						ty.add("ok: target", "")
						if !found {
							ty.add("error: branch to no target", "%#x: targets %#x, the branch goes to %#x <%s>", cs.PC, cs.Targets, in.target, in.symbol)
						}
					}
				}
			}
			ty.checked = sites
			t.Logf("%d in tail-call lists; call sites: %s", tails, ty)
			require.NotZero(t, tails)
			for k, n := range ty.counts {
				require.False(t, strings.HasPrefix(k, "error"), "%d: %s\n%s", n, k, ty)
			}
		})
	}
}
