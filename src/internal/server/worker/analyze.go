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
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync"

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

// inMemoryCore is the largest uncompressed core analysed from memory. The unwinder reads a
// core a few words at a time, hundreds of reads per thread; from a file each is a pread
// system call, from memory a copy. Larger cores are read from their file (their blob, or a
// temporary file holding the decompressed bytes), so a job's memory stays bounded.
var inMemoryCore int64 = 8 << 20 // a variable for the tests

// inMemoryFileCore is the largest core stored uncompressed that is read into memory; a larger
// one is read from its file, through elfcore.SegmentMemory's block cache (a few dozen reads
// of 16 KiB), which costs less than faulting in a fresh buffer of the whole core: 5% of a
// cold analysis of a 700 KB core (bench/server.sh, interleaved runs).
var inMemoryFileCore int64 = 256 << 10

// openCore gives the uncompressed core: its bytes in memory when it is at most inMemoryCore,
// else a file (the blob itself when stored uncompressed, or a temporary file decompressed
// with at most max bytes). A decompression bomb is an error.
func openCore(st *store.Store, c *store.Core, max int64) (io.ReaderAt, int64, func(), error) {
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
		return CoreFile(blob, info.Size())
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
	r = io.LimitReader(r, max+1)
	// Up to inMemoryCore bytes stay in memory; a core that turns out larger goes on to a file.
	var head bytes.Buffer
	n, err := head.ReadFrom(io.LimitReader(r, min(max, inMemoryCore)+1))
	if err != nil {
		return nil, 0, nil, fmt.Errorf("decompress (%s) after %d bytes: %w", c.Compression, n, err)
	}
	if n <= min(max, inMemoryCore) {
		return bytes.NewReader(head.Bytes()), n, func() {}, nil
	}
	tmp, err := os.CreateTemp(st.TempDir(), "core-")
	if err != nil {
		return nil, 0, nil, err
	}
	cleanup := func() { tmp.Close(); os.Remove(tmp.Name()) }
	n, err = io.Copy(tmp, io.MultiReader(&head, r))
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

// GCPercent is the garbage collector's target the server runs analyses with, unless GOGC is
// set: an analysis allocates 10-30 MB for a few MB that it keeps (symbol files' sections and
// indexes), so with Go's default of 100 a cold core costs 3-5 collections, each marking the
// whole live heap (the symbol index included). 200 cut the CPU time of a cold core by 15-25%
// (bench/server.sh, interleaved runs); the price is a peak heap of about three times the live
// one instead of two. GOMEMLIMIT still bounds the process.
const GCPercent = 200

// TuneGC applies GCPercent when the environment does not set GOGC.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
}

// CoreFile gives AnalyzeCore an uncompressed core file of size bytes as the server's jobs
// do: its bytes in memory when it is at most inMemoryFileCore (and inMemoryCore; f is then
// closed), else f itself, closed by done.
func CoreFile(f *os.File, size int64) (r io.ReaderAt, n int64, done func(), err error) {
	if size > min(inMemoryCore, inMemoryFileCore) {
		return f, size, func() { f.Close() }, nil
	}
	defer f.Close()
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, 0, nil, fmt.Errorf("read core: %w", err)
	}
	return bytes.NewReader(b), size, func() {}, nil
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

// Limits bound the memory of one analysis by what it may produce: the threads it unwinds and
// the frames of all of them together (a hostile core can claim a hundred thousand threads
// within elfcore's note limit). Real processes stay far below the defaults.
type Limits struct {
	MaxThreads int // threads unwound per core (default 4096)
	MaxFrames  int // frames per core, all threads together (default 131072)
}

// DefaultLimits are the limits used where a field is 0.
var DefaultLimits = Limits{MaxThreads: 4096, MaxFrames: 1 << 17}

func (l Limits) withDefaults() Limits {
	if l.MaxThreads <= 0 {
		l.MaxThreads = DefaultLimits.MaxThreads
	}
	if l.MaxFrames <= 0 {
		l.MaxFrames = DefaultLimits.MaxFrames
	}
	return l
}

// Analyze unwinds and symbolizes every thread of a stored core and fingerprints its crash.
func Analyze(ctx context.Context, st *store.Store, syms *symstore.Store, g *group.Grouper, c *store.Core, maxCore int64, lim Limits) (*Analysis, error) {
	f, size, cleanup, err := openCore(st, c, maxCore)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	return AnalyzeCore(ctx, f, size, c, syms, g, lim)
}

// AnalyzeCore analyses an uncompressed core held by f; c gives the upload's metadata.
func AnalyzeCore(ctx context.Context, f io.ReaderAt, size int64, c *store.Core, syms *symstore.Store, g *group.Grouper, lim Limits) (*Analysis, error) {
	lim = lim.withDefaults()
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
	// The modules' symbol files are opened (and their unwind tables read) side by side.
	type found struct {
		sy  *symstore.Symbols
		err error
	}
	lookups := make([]found, len(mods))
	// As soon as a module's symbol file is open, the DWARF around the threads' program
	// counters in it starts being read, while the other files open and the threads unwind:
	// with compressed DWARF (glibc's) that reading is most of a cold core's time, and the
	// frames further down are mostly in the same units or further on in the same sections.
	early := &background{}
	defer early.wait()
	parallel(len(mods), func(i int) {
		if m := mods[i]; m.Path != "[vdso]" && m.BuildID != "" {
			lookups[i].sy, lookups[i].err = syms.Lookup(ctx, m.BuildID)
			if sy := lookups[i].sy; lookups[i].err == nil && sy != nil && sy.Sym != nil {
				if pcs := threadPCs(proc, lim.MaxThreads, m, core.Header.Machine); len(pcs) > 0 {
					early.run(func() { sy.Sym.Prefetch(pcs) })
				}
			}
		}
	})
	for i, m := range mods {
		tm := Module{Path: m.Path, BuildID: m.BuildID, Start: fmt.Sprintf("%#x", m.Start), End: fmt.Sprintf("%#x", m.End)}
		if m.Path == "[vdso]" {
			// The vDSO is not a file on any disk: its symbols come from its image in the core.
			if sy := vdsoSymbols(mem, m); sy != nil {
				symsByModule[m] = sy
				tm.Symbols = true
			}
		} else if m.BuildID != "" {
			if sy, err := lookups[i].sy, lookups[i].err; err == nil {
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
	// is asked about before the first lookup (see symbolize.File.Prefetch). nil: not unwound,
	// the frame budget being spent.
	walks := make([]*unwind.Result, min(len(proc.Threads), lim.MaxThreads))
	frameBudget := lim.MaxFrames
	for ti, th := range proc.Threads[:len(walks)] {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if frameBudget <= 0 {
			continue
		}
		res := unwind.Walk(core.Header.Machine, core.Header.Class, th.Regs, mem, set, unwind.Options{MaxFrames: min(unwind.DefaultMaxFrames, frameBudget)})
		frameBudget -= len(res.Frames)
		walks[ti] = &res
	}
	prefetchSymbols(walks, set, symsByModule, core.Header.Machine)
	early.wait()

	missing := map[string]bool{}
	tails := newTailCalls(set, mods, symsByModule, core.Header.Machine)
	for ti, th := range proc.Threads {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if ti == lim.MaxThreads {
			tr.Notes = append(tr.Notes, fmt.Sprintf("%d threads; only the first %d were analysed", len(proc.Threads), lim.MaxThreads))
			break
		}
		t := Thread{TID: int(th.TID), Crashed: ti == 0}
		for i, name := range proc.Arch.Regs {
			t.Registers = append(t.Registers, Register{Name: name, Value: fmt.Sprintf("%#x", th.Regs[i])})
		}
		if walks[ti] == nil {
			t.Stop = fmt.Sprintf("not unwound: the core's budget of %d frames is spent", lim.MaxFrames)
			tr.Threads = append(tr.Threads, t)
			continue
		}
		res := *walks[ti]
		t.Stop = res.Stop
		for fi, fr := range res.Frames {
			// Frame 0 and a frame a signal interrupted hold the pc of the next instruction to
			// run, not a return address.
			exact := fi == 0 || res.Frames[fi-1].Signal
			t.Frames = append(t.Frames, symbolizeFrame(exact, fr, set, symsByModule, core.Header.Machine, missing)...)
			if fi+1 < len(res.Frames) && !fr.Signal {
				t.Frames = append(t.Frames, tails.frames(exact, fr, res.Frames[fi+1], missing)...)
			}
		}
		if ti == 0 {
			tr.CrashingThread = t.TID
		}
		tr.Threads = append(tr.Threads, t)
	}
	if tails.exhausted {
		tr.Notes = append(tr.Notes, "tail-call frames: search budget exhausted, some may be missing")
	}
	for id := range missing {
		tr.MissingSymbols = append(tr.MissingSymbols, id)
	}
	sort.Strings(tr.MissingSymbols)

	// Tail-call frames stay out of the fingerprint: whether they can be shown depends on the
	// call-site information of code far from the crash, which changes between builds.
	crashed := tr.Threads[0].Frames
	var gf []group.Frame
	var gfIndex []int // trace frame of each gf entry
	for i, fr := range crashed {
		var off uint64
		fmt.Sscanf(fr.Offset, "0x%x", &off)
		f := group.Frame{Function: fr.Function, Module: fr.Module, BuildID: fr.BuildID, Offset: off, File: fr.File, Line: fr.Line}
		tr.Threads[0].Frames[i].InApp = g.InApp(f)
		if fr.Method != MethodTailCall {
			gf = append(gf, f)
			gfIndex = append(gfIndex, i)
		}
	}
	for ti := 1; ti < len(tr.Threads); ti++ {
		for i, fr := range tr.Threads[ti].Frames {
			tr.Threads[ti].Frames[i].InApp = g.InApp(group.Frame{Function: fr.Function, Module: fr.Module})
		}
	}
	fp := g.Fingerprint(tr.Signal, gf)
	for i, k := range fp.Frames {
		fp.Frames[i] = gfIndex[k]
	}
	tr.Fingerprint, tr.FingerprintKey = fp.Frames, fp.Keys
	return &Analysis{Trace: tr, Fingerprint: fp, Title: title(tr, fp)}, nil
}

// prefetchSymbols tells each module's symbol file the addresses its frames will look up (as
// symbolizeFrame looks them up).
func prefetchSymbols(walks []*unwind.Result, set *unwind.ModuleSet, syms map[*unwind.Module]*symstore.Symbols, machine elf.Machine) {
	addrs := map[*symbolize.File][]uint64{}
	for _, res := range walks {
		if res == nil {
			continue
		}
		for fi, fr := range res.Frames {
			pc := fr.PC
			if machine == elf.EM_ARM {
				pc &^= 1
			}
			m := set.ModuleAt(pc)
			if fr.Signal || m == nil || syms[m] == nil || syms[m].Sym == nil {
				continue
			}
			lookup := pc - m.Bias
			if exact := fi == 0 || res.Frames[fi-1].Signal; !exact && lookup > 0 {
				lookup--
			}
			addrs[syms[m].Sym] = append(addrs[syms[m].Sym], lookup)
		}
	}
	files := make([]*symbolize.File, 0, len(addrs))
	for f := range addrs {
		files = append(files, f)
	}
	parallel(len(files), func(i int) { files[i].Prefetch(addrs[files[i]]) })
}

// threadPCs returns the link-time addresses of the program counters of the first maxThreads
// threads that fall in m.
func threadPCs(proc *elfcore.Process, maxThreads int, m *unwind.Module, machine elf.Machine) []uint64 {
	var pcs []uint64
	for _, th := range proc.Threads[:min(len(proc.Threads), maxThreads)] {
		if proc.Arch.PC >= len(th.Regs) {
			continue
		}
		pc := th.Regs[proc.Arch.PC]
		if machine == elf.EM_ARM {
			pc &^= 1
		}
		if pc >= m.Start && pc < m.End && pc >= m.Bias {
			pcs = append(pcs, pc-m.Bias)
		}
	}
	return pcs
}

// background runs functions on goroutines of their own; wait returns when all have, and
// raises again in the caller a panic of one of them (the job's recover makes it an error).
type background struct {
	wg      sync.WaitGroup
	mu      sync.Mutex
	crashed any
}

func (b *background) run(fn func()) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer func() {
			if r := recover(); r != nil {
				b.mu.Lock()
				b.crashed = r
				b.mu.Unlock()
			}
		}()
		fn()
	}()
}

func (b *background) wait() {
	b.wg.Wait()
	b.mu.Lock()
	crashed := b.crashed
	b.crashed = nil
	b.mu.Unlock()
	if crashed != nil {
		panic(crashed)
	}
}

// parallel runs fn(0) ... fn(n-1), as many side by side as there are CPUs, and returns when
// all have; a panic in one is raised again in the caller (where the job's recover turns it
// into an error).
func parallel(n int, fn func(i int)) {
	if n == 1 {
		fn(0)
		return
	}
	b := &background{}
	slots := make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))
	for i := 0; i < n; i++ {
		slots <- struct{}{}
		b.run(func() {
			defer func() { <-slots }()
			fn(i)
		})
	}
	b.wait()
}

// SignalFrameName names a signal trampoline frame, as gdb does.
const SignalFrameName = "<signal handler called>"

// symbolizeFrame turns one unwound frame into trace frames: the inlined calls at its pc, then
// the function that contains it. exact says the pc is not a return address.
func symbolizeFrame(exact bool, fr unwind.Frame, set *unwind.ModuleSet, syms map[*unwind.Module]*symstore.Symbols, machine elf.Machine, missing map[string]bool) []Frame {
	pc := fr.PC
	if machine == elf.EM_ARM {
		pc &^= 1
	}
	base := Frame{PC: fmt.Sprintf("%#x", pc), Method: string(fr.Method), Symbols: "missing"}
	m := set.ModuleAt(pc)
	if fr.Signal {
		// The kernel's return path of a signal handler: named as such, whatever symbol
		// (__restore_rt, runtime.sigreturn__sigaction) the trampoline has.
		base.Function, base.Signal, base.Symbols = SignalFrameName, true, "signal"
	}
	if m == nil {
		return []Frame{base}
	}
	base.Module, base.BuildID = m.Path, m.BuildID
	link := pc - m.Bias
	base.Offset = fmt.Sprintf("%#x", link)
	if fr.Signal {
		return []Frame{base}
	}
	lookup := link
	if !exact && lookup > 0 {
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
