package symbolize

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// fixtureBinaries returns the contents of src/testdata/cores/*/threads.
func fixtureBinaries(tb testing.TB) map[string][]byte {
	tb.Helper()
	paths, err := filepath.Glob("../../../testdata/cores/*/threads")
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		out[filepath.Base(filepath.Dir(p))] = b
	}
	return out
}

// probe looks up a bounded set of addresses the file itself suggests and
// checks the invariants every answer must keep.
func probe(t *testing.T, f *File) {
	var addrs []uint64
	if f.dw != nil {
		for i, r := range f.dw.ranges {
			if i == 16 {
				break
			}
			addrs = append(addrs, r.lo, r.hi-1, r.lo+(r.hi-r.lo)/2)
		}
	}
	for i := 0; i < len(f.syms.syms) && i < 32; i++ {
		s := f.syms.syms[i*len(f.syms.syms)/32]
		addrs = append(addrs, s.addr, s.addr+s.size/2)
	}
	addrs = append(addrs, 0, 1, ^uint64(0))
	for _, a := range addrs {
		frames, err := f.Lookup(a)
		if err != nil {
			continue
		}
		if len(frames) == 0 {
			t.Fatalf("%#x: no frames and no error", a)
		}
		if frames[len(frames)-1].Inlined {
			t.Fatalf("%#x: outermost frame is inlined", a)
		}
	}
	probeCallSites(t, f, addrs)
}

// probeCallSites asks the call-site index about the probed addresses, the functions around
// them and the targets of the call sites found.
func probeCallSites(t *testing.T, f *File, addrs []uint64) {
	for _, a := range addrs {
		if cs, ok, err := f.CallSiteAt(a); err == nil && ok && cs.PC != a {
			t.Fatalf("call site at %#x says %#x", a, cs.PC)
		}
		start, ok, err := f.FunctionStart(a)
		if err != nil || !ok {
			continue
		}
		sites, _, _ := f.TailCalls(start)
		for i, cs := range sites {
			if !cs.Tail {
				t.Fatalf("%#x: tail-call list holds a call", start)
			}
			if i < 8 {
				for _, tg := range cs.Targets {
					f.TailCalls(tg)
				}
				f.SymbolAddress(cs.Symbol)
			}
		}
	}
}

// FuzzOpen feeds whole ELF files to NewFile and Lookup (which builds the
// line-table and inline indexes of the units it lands in).
func FuzzOpen(f *testing.F) {
	for _, b := range fixtureBinaries(f) {
		f.Add(b)
	}
	if b, err := os.ReadFile("../../../testdata/corpus/c-tailcalls/x86_64/c-tailcalls"); err == nil {
		f.Add(b)
	}
	// a C++ program, for the names built from DWARF (cxxname.go)
	if b, err := os.ReadFile("../../../testdata/corpus/cpp-segv-template/x86_64/cpp-segv-template"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := NewFile(bytes.NewReader(data))
		if err != nil {
			return
		}
		probe(t, file)
	})
}

// FuzzLineTable feeds .debug_line contents straight to the line-program
// decoder and the gdb-rule fold.
func FuzzLineTable(f *testing.F) {
	for _, b := range fixtureBinaries(f) {
		ef, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			f.Fatal(err)
		}
		if s := ef.Section(".debug_line"); s != nil {
			if d, err := s.Data(); err == nil {
				f.Add(d, uint8(8))
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, addrSize uint8) {
		env := &lineEnv{line: data, lineStr: string(data), str: string(data), strOffsets: data,
			order: binary.LittleEndian, compDir: "/c", cuAddrSize: int(addrSize%8) + 1,
			names: newBudget(baseNameBudget)}
		for off := uint64(0); off < uint64(len(data)) && off < 1<<16; {
			h, rows, err := readLineProgram(env, off)
			if err != nil {
				return
			}
			tbl := foldLines(h, rows, "/c/a.c", 0x1000)
			for i := 0; i < len(rows) && i < 64; i++ {
				tbl.lookup(rows[i].addr)
				tbl.fileName(int64(rows[i].file))
			}
			// next unit
			c := &cursor{b: data[off:], order: binary.LittleEndian}
			n := uint64(c.u32())
			if n == 0xffffffff {
				n = c.u64() + 8
			}
			if c.err != nil || n >= uint64(len(data))-off {
				return
			}
			off += n + 4
		}
	})
}
