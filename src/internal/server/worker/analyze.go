package worker

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"

	"meta-memfault-go/internal/elfcore"
	"meta-memfault-go/internal/protocol"
	"meta-memfault-go/internal/server/group"
	"meta-memfault-go/internal/server/store"
	"meta-memfault-go/internal/server/symbolize"
	"meta-memfault-go/internal/server/symstore"
	"meta-memfault-go/internal/unwind"
)

// Analysis is the outcome of one core.
type Analysis struct {
	Trace       *Trace
	Fingerprint group.Fingerprint
	Title       string
}

// openCore gives the uncompressed core as a file: the blob itself when stored uncompressed,
// else a temporary file decompressed with at most max bytes (a decompression bomb is an error).
func openCore(st *store.Store, c *store.Core, max int64) (*os.File, int64, func(), error) {
	blob, err := st.OpenBlob(c.Blob)
	if err != nil {
		return nil, 0, nil, err
	}
	if c.Compression == "none" {
		info, err := blob.Stat()
		if err != nil {
			blob.Close()
			return nil, 0, nil, err
		}
		if info.Size() > max {
			blob.Close()
			return nil, 0, nil, fmt.Errorf("core of %d bytes is over the limit of %d", info.Size(), max)
		}
		return blob, info.Size(), func() { blob.Close() }, nil
	}
	defer blob.Close()
	var r io.Reader
	switch c.Compression {
	case "gzip":
		zr, err := gzip.NewReader(blob)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("gzip: %w", err)
		}
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(blob, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(max)), zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			return nil, 0, nil, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		r = zr
	default:
		return nil, 0, nil, fmt.Errorf("unknown compression %q", c.Compression)
	}
	tmp, err := os.CreateTemp(st.TempDir(), "core-")
	if err != nil {
		return nil, 0, nil, err
	}
	cleanup := func() { tmp.Close(); os.Remove(tmp.Name()) }
	n, err := io.Copy(tmp, io.LimitReader(r, max+1))
	if err != nil {
		cleanup()
		return nil, 0, nil, fmt.Errorf("decompress (%s) after %d bytes: %w", c.Compression, n, err)
	}
	if n > max {
		cleanup()
		return nil, 0, nil, fmt.Errorf("core decompresses to more than %d bytes", max)
	}
	return tmp, n, cleanup, nil
}

var signalNames = map[int]string{1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT",
	7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM",
	15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD", 24: "SIGXCPU", 25: "SIGXFSZ", 31: "SIGSYS"}

func signalName(n int) string {
	if s, ok := signalNames[n]; ok {
		return s
	}
	return fmt.Sprintf("signal %d", n)
}

// Analyze unwinds and symbolizes every thread of a stored core and fingerprints its crash.
func Analyze(ctx context.Context, st *store.Store, syms *symstore.Store, g *group.Grouper, c *store.Core, maxCore int64) (*Analysis, error) {
	f, size, cleanup, err := openCore(st, c, maxCore)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	return AnalyzeCore(ctx, f, size, c, syms, g)
}

// AnalyzeCore analyses an uncompressed core held by f; c gives the upload's metadata.
func AnalyzeCore(ctx context.Context, f io.ReaderAt, size int64, c *store.Core, syms *symstore.Store, g *group.Grouper) (*Analysis, error) {
	core, err := elfcore.ReadCore(io.NewSectionReader(f, 0, size), elfcore.DefaultLimits)
	if err != nil {
		return nil, fmt.Errorf("core: %w", err)
	}
	notes, err := elfcore.ParseNotes(core.Notes, core.Header.ByteOrder())
	if err != nil {
		return nil, fmt.Errorf("core notes: %w", err)
	}
	proc, err := elfcore.DecodeProcess(&core.Header, notes)
	if err != nil {
		return nil, fmt.Errorf("core notes: %w", err)
	}
	if proc.Arch == nil {
		return nil, fmt.Errorf("unsupported machine %v (%v)", core.Header.Machine, core.Header.Class)
	}
	mem := elfcore.NewSegmentMemory(f, core.Progs)

	tr := &Trace{Version: 1, Arch: proc.Arch.Name, Process: proc.Fname}
	tr.Metadata = Metadata{DeviceSerial: c.DeviceSerial, HardwareVersion: c.HardwareVersion, SoftwareType: c.SoftwareType, SoftwareVersion: c.SoftwareVersion}
	readMemfaultNotes(notes, tr)
	if len(tr.Cmdline) == 0 && proc.Args != "" {
		tr.Cmdline = strings.Fields(proc.Args)
	}
	if proc.Siginfo != nil {
		tr.SignalNumber, tr.SignalCode = int(proc.Siginfo.Signo), int(proc.Siginfo.Code)
		switch proc.Siginfo.Signo {
		case 4, 7, 8, 11, 5: // SIGILL, SIGBUS, SIGFPE, SIGSEGV, SIGTRAP carry an address
			if proc.Siginfo.Code > 0 {
				tr.FaultAddress = fmt.Sprintf("%#x", proc.Siginfo.Addr)
			}
		}
	} else {
		tr.SignalNumber = int(proc.Threads[0].Signal)
	}
	tr.Signal = signalName(tr.SignalNumber)

	mods := unwind.ModulesFromCore(proc, mem, core.Header.Class, core.Header.ByteOrder())
	symsByModule := map[*unwind.Module]*symstore.Symbols{}
	for _, m := range mods {
		tm := Module{Path: m.Path, BuildID: m.BuildID, Start: fmt.Sprintf("%#x", m.Start), End: fmt.Sprintf("%#x", m.End)}
		if m.Path == "[vdso]" {
			// The vDSO is not a file on any disk: its symbols come from its image in the core.
			if sy := vdsoSymbols(mem, m); sy != nil {
				symsByModule[m] = sy
				tm.Symbols = true
			}
		} else if m.BuildID != "" {
			if sy, err := syms.Lookup(ctx, m.BuildID); err == nil {
				symsByModule[m] = sy
				m.Tables = sy.Unwind
				tm.Symbols = sy.Sym != nil
			} else if !errors.Is(err, symstore.ErrNotFound) {
				tr.Notes = append(tr.Notes, fmt.Sprintf("symbols of %s: %v", m.Path, err))
			}
		}
		tr.Modules = append(tr.Modules, tm)
	}
	set := unwind.NewModuleSet(mods)

	// Every thread is unwound first, so that each symbol file learns all the addresses it
	// is asked about before the first lookup (see symbolize.File.Prefetch).
	walks := make([]unwind.Result, len(proc.Threads))
	for ti, th := range proc.Threads {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		walks[ti] = unwind.Walk(core.Header.Machine, core.Header.Class, th.Regs, mem, set, unwind.Options{})
	}
	prefetchSymbols(walks, set, symsByModule, core.Header.Machine)

	missing := map[string]bool{}
	for ti, th := range proc.Threads {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t := Thread{TID: int(th.TID), Crashed: ti == 0}
		for i, name := range proc.Arch.Regs {
			t.Registers = append(t.Registers, Register{Name: name, Value: fmt.Sprintf("%#x", th.Regs[i])})
		}
		res := walks[ti]
		t.Stop = res.Stop
		for fi, fr := range res.Frames {
			t.Frames = append(t.Frames, symbolizeFrame(fi, fr, set, symsByModule, core.Header.Machine, missing)...)
		}
		if ti == 0 {
			tr.CrashingThread = t.TID
		}
		tr.Threads = append(tr.Threads, t)
	}
	for id := range missing {
		tr.MissingSymbols = append(tr.MissingSymbols, id)
	}
	sort.Strings(tr.MissingSymbols)

	crashed := tr.Threads[0].Frames
	gf := make([]group.Frame, len(crashed))
	for i, fr := range crashed {
		var off uint64
		fmt.Sscanf(fr.Offset, "0x%x", &off)
		gf[i] = group.Frame{Function: fr.Function, Module: fr.Module, BuildID: fr.BuildID, Offset: off, File: fr.File, Line: fr.Line}
		tr.Threads[0].Frames[i].InApp = g.InApp(gf[i])
	}
	for ti := 1; ti < len(tr.Threads); ti++ {
		for i, fr := range tr.Threads[ti].Frames {
			tr.Threads[ti].Frames[i].InApp = g.InApp(group.Frame{Function: fr.Function, Module: fr.Module})
		}
	}
	fp := g.Fingerprint(tr.Signal, gf)
	tr.Fingerprint, tr.FingerprintKey = fp.Frames, fp.Keys
	return &Analysis{Trace: tr, Fingerprint: fp, Title: title(tr, fp)}, nil
}

// prefetchSymbols tells each module's symbol file the addresses its frames will look up.
func prefetchSymbols(walks []unwind.Result, set *unwind.ModuleSet, syms map[*unwind.Module]*symstore.Symbols, machine elf.Machine) {
	addrs := map[*symbolize.File][]uint64{}
	for _, res := range walks {
		for fi, fr := range res.Frames {
			pc := fr.PC
			if machine == elf.EM_ARM {
				pc &^= 1
			}
			m := set.ModuleAt(pc)
			if m == nil || syms[m] == nil || syms[m].Sym == nil {
				continue
			}
			link := pc - m.Bias
			if fi > 0 && fr.Method != unwind.Method("context") && link > 0 {
				link-- // as symbolizeFrame looks it up
			}
			addrs[syms[m].Sym] = append(addrs[syms[m].Sym], link)
		}
	}
	for f, a := range addrs {
		f.Prefetch(a)
	}
}

// symbolizeFrame turns one unwound frame into trace frames: the inlined calls at its pc, then
// the function that contains it.
func symbolizeFrame(index int, fr unwind.Frame, set *unwind.ModuleSet, syms map[*unwind.Module]*symstore.Symbols, machine elf.Machine, missing map[string]bool) []Frame {
	pc := fr.PC
	if machine == elf.EM_ARM {
		pc &^= 1
	}
	base := Frame{PC: fmt.Sprintf("%#x", pc), Method: string(fr.Method), Symbols: "missing"}
	m := set.ModuleAt(pc)
	if m == nil {
		return []Frame{base}
	}
	base.Module, base.BuildID = m.Path, m.BuildID
	link := pc - m.Bias
	base.Offset = fmt.Sprintf("%#x", link)
	lookup := link
	if index > 0 && fr.Method != unwind.Method("context") && lookup > 0 {
		lookup-- // a return address: the call is the instruction before it
	}
	sy := syms[m]
	if sy == nil || sy.Sym == nil {
		if m.BuildID != "" {
			missing[m.BuildID] = true
		}
		return []Frame{base}
	}
	frames, err := sy.Sym.Lookup(lookup)
	if (err != nil || len(frames) == 0) && lookup != link {
		// A return address at the very start of a function (a signal trampoline's restorer
		// is "returned" to, not called): the address itself is the one to name.
		frames, err = sy.Sym.Lookup(link)
	}
	if err != nil || len(frames) == 0 {
		return []Frame{base}
	}
	out := make([]Frame, 0, len(frames))
	for _, sf := range frames {
		f := base
		f.Function, f.Mangled, f.File, f.Line, f.Inlined = sf.Function, sf.Mangled, sf.File, sf.Line, sf.Inlined
		f.Symbols = "dwarf"
		if sf.FromSymtab {
			f.Symbols = "symtab"
		}
		out = append(out, f)
	}
	return out
}

const maxVDSO = 1 << 20

func vdsoSymbols(mem elfcore.Memory, m *unwind.Module) *symstore.Symbols {
	if m.End <= m.Start || m.End-m.Start > maxVDSO {
		return nil
	}
	// The whole image is mapped, section headers included, in whole pages; the PT_LOAD
	// extent can end before the section headers.
	img := make([]byte, (m.End-m.Start+0xfff)&^0xfff)
	n, _ := mem.ReadMemory(img, m.Start)
	if n < int(m.End-m.Start) {
		return nil
	}
	img = img[:n]
	f, err := symbolize.NewFile(bytes.NewReader(img))
	if err != nil {
		return nil
	}
	return &symstore.Symbols{BuildID: m.BuildID, Name: "[vdso]", Sym: f, Unwind: m.Tables}
}

// readMemfaultNotes fills the trace from memfaultd's metadata and debug notes.
func readMemfaultNotes(notes []elfcore.Note, tr *Trace) {
	for _, n := range notes {
		if n.Name != protocol.MemfaultNoteName {
			continue
		}
		v, err := protocol.UnmarshalCBOR(n.Desc)
		if err != nil {
			tr.Notes = append(tr.Notes, fmt.Sprintf("Memfault note %#x: %v", n.Type, err))
			continue
		}
		m, ok := v.(protocol.CBORMap)
		if !ok {
			continue
		}
		str := func(k any) string { s, _ := mget(m, k).(string); return s }
		switch n.Type {
		case protocol.MetadataNoteType:
			if s := str(int64(4)); s != "" {
				tr.Metadata.DeviceSerial = s
			}
			if s := str(int64(5)); s != "" {
				tr.Metadata.HardwareVersion = s
			}
			if s := str(int64(6)); s != "" {
				tr.Metadata.SoftwareType = s
			}
			if s := str(int64(7)); s != "" {
				tr.Metadata.SoftwareVersion = s
			}
			tr.Metadata.SDKVersion = str(int64(2))
			if t, ok := mget(m, int64(3)).(int64); ok {
				tr.Metadata.CapturedTime = t
			}
			if cmd := str(int64(8)); cmd != "" {
				tr.Cmdline = strings.Split(strings.TrimRight(cmd, "\x00"), "\x00")
			}
			if s, ok := mget(m, int64(9)).(protocol.CBORMap); ok {
				tr.Metadata.CaptureStrategy, _ = mget(s, "type").(string)
			}
			if l, ok := mget(m, int64(10)).(protocol.CBORMap); ok {
				if lines, ok := mget(l, "logs").([]any); ok {
					for _, x := range lines {
						if s, ok := x.(string); ok {
							tr.Logs = append(tr.Logs, s)
						}
					}
				}
			}
		case protocol.DebugNoteType:
			if lines, ok := mget(m, "capture_logs").([]any); ok {
				for _, x := range lines {
					if s, ok := x.(string); ok {
						tr.CaptureLogs = append(tr.CaptureLogs, s)
					}
				}
			}
		}
	}
}

func mget(m protocol.CBORMap, k any) any { v, _ := m.Get(k); return v }

// title names the crash after its first fingerprint frame: "SIGSEGV in crash_segv (threads.c:77)".
func title(tr *Trace, fp group.Fingerprint) string {
	if len(fp.Frames) == 0 || len(tr.Threads) == 0 {
		return tr.Signal
	}
	f := tr.Threads[0].Frames[fp.Frames[0]]
	name := f.Function
	if name == "" {
		name = filepath.Base(f.Module) + "+" + f.Offset
	} else {
		name = group.Normalize(name)
	}
	if f.File != "" && f.Line > 0 {
		return fmt.Sprintf("%s in %s (%s:%d)", tr.Signal, name, filepath.Base(f.File), f.Line)
	}
	return fmt.Sprintf("%s in %s", tr.Signal, name)
}
