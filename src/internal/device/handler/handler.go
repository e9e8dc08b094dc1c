// Package handler is memfault-core-handler: the program the kernel runs through core_pattern
// with the core on stdin. It checks consent and the rate limit, reads the core's headers and
// notes, captures a small core by the configured strategy with memory from /proc/<pid>/mem,
// checks that it fits, and stages it as a MAR entry. It never waits without a deadline: the
// crashed process cannot be reaped until the handler exits.
package handler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"meta-memfault-go/internal/device/capture"
	"meta-memfault-go/internal/device/config"
	"meta-memfault-go/internal/device/procfs"
	"meta-memfault-go/internal/device/staging"
	"meta-memfault-go/internal/elfcore"
	"meta-memfault-go/internal/protocol"
)

// Args are the core_pattern arguments: `%P %I %s %e` (memfaultd's older form is `%P %e`).
type Args struct {
	PID    int    // %P: pid in the initial pid namespace
	TID    int    // %I: crashing thread in the initial namespace (0 when not given)
	Signal int    // %s (0 when not given)
	Comm   string // %e
}

// ParseArgs reads the positional arguments. A comm containing spaces arrives split on kernels
// that split core_pattern after expansion; the words are joined back.
func ParseArgs(pos []string) (Args, error) {
	if len(pos) < 1 {
		return Args{}, errors.New("usage: memfault-core-handler [-c CONFIG] %P [%I %s] %e")
	}
	pid, err := strconv.Atoi(pos[0])
	if err != nil || pid <= 0 {
		return Args{}, fmt.Errorf("bad pid %q", pos[0])
	}
	a := Args{PID: pid}
	rest := pos[1:]
	if len(rest) >= 2 {
		tid, err1 := strconv.Atoi(rest[0])
		sig, err2 := strconv.Atoi(rest[1])
		if err1 == nil && err2 == nil {
			a.TID, a.Signal = tid, sig
			rest = rest[2:]
		}
	}
	a.Comm = strings.Join(rest, " ")
	return a, nil
}

// Env is everything the handler touches outside itself, injectable for tests.
type Env struct {
	Config     *config.Config
	Device     config.DeviceInfo
	Args       Args
	Core       io.Reader // the kernel's stream; read forward only
	Proc       procfs.FS
	Log        *Logger
	Now        func() time.Time
	SDKVersion string
	// AppLogs returns recent log lines for the metadata note (nil: none available).
	AppLogs func(ctx context.Context) []string
	// Memory overrides /proc/<pid>/mem (tests feed a full core's segments).
	Memory elfcore.Memory
	// Boot is the collection time information for the manifest.
	Boot BootInfo
}

// BootInfo is the boot-relative time of a capture.
type BootInfo struct {
	UptimeMs, ElapsedRealtimeMs, BootCount uint64
	BootID                                 string
}

// Result describes a staged core.
type Result struct {
	EntryDir    string
	File        string
	CoreSize    uint64 // uncompressed
	StoredSize  uint64
	Segments    int
	Threads     int
	Unreadable  uint64
	Compression string
}

// Reasons the handler does not capture; the caller logs them and exits successfully.
var (
	ErrDisabled = errors.New("data collection is disabled")
)

// Run captures one core. Every error is meant for one line in the kernel log.
func Run(ctx context.Context, env *Env) (*Result, error) {
	cfg := env.Config
	if !cfg.EnableDataCollection {
		return nil, ErrDisabled
	}
	now := env.Now()
	rl := RateLimiter{
		Path:   filepath.Join(cfg.TmpDir, "coredump_rate_limit"),
		Count:  int(cfg.Coredump.RateLimitCount),
		Window: time.Duration(cfg.Coredump.RateLimitDurationSeconds) * time.Second,
	}
	if err := os.MkdirAll(cfg.TmpDir, 0o755); err != nil {
		return nil, fmt.Errorf("tmp_dir: %w", err)
	}
	release := func() {}
	if !cfg.EnableDevMode {
		deadline, ok := ctx.Deadline()
		if !ok {
			deadline = time.Now().Add(10 * time.Second)
		}
		rel, err := rl.Reserve(now, deadline)
		if err != nil {
			return nil, err
		}
		release = rel
	}
	res, err := captureCore(ctx, env, now)
	if err != nil {
		release()
		return nil, err
	}
	return res, nil
}

func captureCore(ctx context.Context, env *Env, now time.Time) (*Result, error) {
	cfg := env.Config
	comp, err := compressorFor(cfg.Coredump.Compression)
	if err != nil {
		return nil, err
	}

	core, err := elfcore.ReadCore(env.Core, elfcore.DefaultLimits)
	if err != nil {
		return nil, fmt.Errorf("read core from kernel: %w", err)
	}
	notes, err := elfcore.ParseNotes(core.Notes, core.Header.ByteOrder())
	if err != nil {
		return nil, fmt.Errorf("parse core notes: %w", err)
	}
	proc, err := elfcore.DecodeProcess(&core.Header, notes)
	if err != nil {
		return nil, fmt.Errorf("decode core notes: %w", err)
	}

	mem := env.Memory
	if mem == nil {
		m, err := env.Proc.OpenMem(env.Args.PID)
		if err != nil {
			return nil, err
		}
		defer m.Close()
		mem = m
	}
	in := capture.Input{Core: core, Proc: proc, Mem: mem}
	var res capture.Result
	strategy := protocol.CaptureStrategy{Type: cfg.Coredump.CaptureStrategy.Type}
	switch strategy.Type {
	case "threads":
		strategy.MaxThreadSizeKiB = cfg.Coredump.CaptureStrategy.MaxThreadSizeKiB
		res, err = capture.Threads(in, strategy.MaxThreadSizeKiB<<10)
		if err != nil {
			return nil, err
		}
	case "kernel_selection":
		res = capture.KernelSelection(in)
	default:
		return nil, fmt.Errorf("capture strategy %q is not supported by the core handler", strategy.Type)
	}
	for _, n := range res.Notes {
		env.Log.Debugf("%s", n)
	}

	cmdline, err := env.Proc.Cmdline(env.Args.PID, 4096)
	if err != nil || cmdline == "" {
		cmdline = strings.ReplaceAll(strings.TrimSpace(proc.Args), " ", "\x00")
	}
	var appLogs []string
	if env.AppLogs != nil {
		appLogs = env.AppLogs(ctx)
	}
	meta := protocol.CoreMetadata{
		SDKVersion:      env.SDKVersion,
		CapturedTime:    now.Unix(),
		DeviceSerial:    env.Device.DeviceID,
		HardwareVersion: env.Device.HardwareVersion,
		SoftwareType:    env.Device.SoftwareType,
		SoftwareVersion: env.Device.SoftwareVersion,
		Cmdline:         cmdline,
		Strategy:        strategy,
		AppLogs:         appLogs,
	}
	layout := res.Layout
	layout.AddNote(protocol.MemfaultNoteName, protocol.MetadataNoteType, meta.MarshalCBOR())
	env.Log.Debugf("pid %d (%s): signal %d, %d threads, %d segments, %d bytes planned",
		env.Args.PID, env.Args.Comm, sigOf(proc, env.Args), len(proc.Threads), len(layout.Segments), layout.Size())
	layout.AddNote(protocol.MemfaultNoteName, protocol.DebugNoteType, protocol.DebugNote(env.Log.Lines()))

	size := layout.Size()
	if err := checkSpace(cfg, size); err != nil {
		return nil, err
	}

	entry, err := staging.ForTmpDir(cfg.TmpDir).NewEntry()
	if err != nil {
		return nil, err
	}
	active.Store(entry)
	result, err := writeEntry(entry, layout, mem, comp, env, size)
	active.Store(nil)
	if err != nil {
		if aerr := entry.Abort(); aerr != nil {
			err = fmt.Errorf("%w (and removing the entry failed: %v)", err, aerr)
		}
		return nil, err
	}
	result.Threads = len(proc.Threads)
	return result, nil
}

func sigOf(p *elfcore.Process, a Args) int {
	if a.Signal != 0 {
		return a.Signal
	}
	if p.Siginfo != nil {
		return int(p.Siginfo.Signo)
	}
	return 0
}

// checkSpace drops a core that is larger than coredump_max_size_kib or than the free space
// beyond the configured headroom, or when too few inodes are left. A core is never truncated.
func checkSpace(cfg *config.Config, size uint64) error {
	if max := cfg.Coredump.CoredumpMaxSizeKiB << 10; size > max {
		return fmt.Errorf("core of %d bytes exceeds coredump_max_size_kib (%d KiB): dropped", size, cfg.Coredump.CoredumpMaxSizeKiB)
	}
	sp, err := staging.FreeSpace(cfg.TmpDir)
	if err != nil {
		return err
	}
	headroom := cfg.TmpDirMinHeadroomKiB << 10
	if sp.AvailBytes < headroom || size > sp.AvailBytes-headroom {
		return fmt.Errorf("core of %d bytes does not fit: %d bytes free, headroom %d KiB: dropped", size, sp.AvailBytes, cfg.TmpDirMinHeadroomKiB)
	}
	if sp.AvailInodes < cfg.TmpDirMinInodes+3 {
		return fmt.Errorf("only %d inodes free (tmp_dir_min_inodes %d): dropped", sp.AvailInodes, cfg.TmpDirMinInodes)
	}
	return nil
}

func writeEntry(e *staging.Entry, l *elfcore.Layout, mem elfcore.Memory, comp compressor, env *Env, size uint64) (*Result, error) {
	name := "core-" + e.UUID + ".elf" + comp.ext
	f, err := e.Create(name)
	if err != nil {
		return nil, fmt.Errorf("create core file: %w", err)
	}
	defer f.Close()
	cw := &countWriter{w: f}
	zw, err := comp.wrap(cw)
	if err != nil {
		return nil, err
	}
	st, err := l.Write(zw, mem)
	if err != nil {
		return nil, fmt.Errorf("write core: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("write core: %w", err)
	}
	if st.Bytes != size {
		return nil, fmt.Errorf("wrote %d bytes, planned %d", st.Bytes, size)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("sync core: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("close core: %w", err)
	}
	if st.Unreadable > 0 {
		env.Log.Warnf("%d bytes of memory were unreadable and written as zeros (first: %v)", st.Unreadable, st.FirstUnreadable)
	}
	cfg := env.Config
	m := &protocol.Manifest{
		SchemaVersion: 1,
		CollectionTime: protocol.CollectionTime{
			Timestamp:         env.Now().UTC().Format(time.RFC3339),
			UptimeMs:          env.Boot.UptimeMs,
			LinuxBootID:       env.Boot.BootID,
			ElapsedRealtimeMs: env.Boot.ElapsedRealtimeMs,
			BootCount:         env.Boot.BootCount,
		},
		Device: protocol.ManifestDevice{
			ProjectKey:      cfg.ProjectKey,
			HardwareVersion: env.Device.HardwareVersion,
			SoftwareVersion: env.Device.SoftwareVersion,
			SoftwareType:    env.Device.SoftwareType,
			DeviceSerial:    env.Device.DeviceID,
		},
		Producer: protocol.Producer{ID: "memfaultd", Version: env.SDKVersion},
		Type:     protocol.ManifestTypeCoredump,
		Metadata: protocol.CoredumpPayload{CoredumpFileName: name, Compression: comp.manifest},
	}
	if err := e.Commit(m); err != nil {
		return nil, err
	}
	return &Result{
		EntryDir: e.Path, File: filepath.Join(e.Path, name), CoreSize: size, StoredSize: cw.n,
		Segments: len(l.Segments), Unreadable: st.Unreadable, Compression: cfg.Coredump.Compression,
	}, nil
}

// active is the entry being written, removed by AbortActive when the deadline strikes.
var active atomic.Pointer[staging.Entry]

// AbortActive removes the entry that Run is writing, if any: an entry without manifest must
// not stay behind when the handler gives up.
func AbortActive() {
	if e := active.Swap(nil); e != nil {
		e.Abort()
	}
}

type countWriter struct {
	w io.Writer
	n uint64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += uint64(n)
	return n, err
}

// ReadBootInfo reads boot-relative clocks and the boot id.
func ReadBootInfo(procRoot string) BootInfo {
	var b BootInfo
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) == nil {
		b.UptimeMs = uint64(ts.Nano() / 1e6)
	}
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) == nil {
		b.ElapsedRealtimeMs = uint64(ts.Nano() / 1e6)
	}
	if id, err := os.ReadFile(filepath.Join(procRoot, "sys/kernel/random/boot_id")); err == nil {
		b.BootID = strings.TrimSpace(string(id))
	}
	return b
}
