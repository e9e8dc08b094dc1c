package handler

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/device/config"
	"meta-memfault-go/internal/device/procfs"
	"meta-memfault-go/internal/device/staging"
	"meta-memfault-go/internal/elfcore"
	"meta-memfault-go/internal/protocol"
	"meta-memfault-go/internal/testutil/fixture"
)

const fixturePID = 4242

func fixtureCore(t testing.TB, arch string) []byte { return fixture.Core(t, arch) }

// testEnv builds an environment around a fixture core: a config file in a temp dir with the
// given JSON overrides, a fake /proc with the pid's cmdline, and the full core standing in for
// /proc/<pid>/mem.
func testEnv(t testing.TB, core []byte, overrides string) (*Env, *bytes.Buffer) {
	dir := t.TempDir()
	persist := filepath.Join(dir, "persist")
	cfgPath := filepath.Join(dir, "memfaultd.conf")
	body := fmt.Sprintf(`{"persist_dir": %q, "enable_data_collection": true, "project_key": "k",
		"tmp_dir_min_headroom_kib": 0 %s}`, persist, overrides)
	require.NoError(t, os.WriteFile(cfgPath, []byte(body), 0o644))
	cfg, err := config.Load(cfgPath)
	require.NoError(t, err)
	proc := filepath.Join(dir, "proc")
	require.NoError(t, os.MkdirAll(filepath.Join(proc, fmt.Sprint(fixturePID)), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(proc, fmt.Sprint(fixturePID), "cmdline"), []byte("/usr/bin/threads\x00segv\x00"), 0o644))
	var kmsg bytes.Buffer
	env := &Env{
		Config:     cfg,
		Device:     config.DeviceInfo{DeviceID: "dev-1", HardwareVersion: "evt", SoftwareVersion: "1.0.0", SoftwareType: "main"},
		Args:       Args{PID: fixturePID, TID: fixturePID, Signal: 11, Comm: "threads"},
		Core:       bytes.NewReader(core),
		Proc:       procfs.FS{Root: proc},
		Log:        NewLogger(&kmsg),
		Now:        func() time.Time { return time.Unix(1_700_000_000, 0) },
		SDKVersion: "test",
		Memory:     memoryOf(t, core),
		Boot:       BootInfo{UptimeMs: 1000, BootID: "b00t"},
	}
	return env, &kmsg
}

func memoryOf(t testing.TB, core []byte) elfcore.Memory {
	c, err := elfcore.ReadCore(bytes.NewReader(core), elfcore.DefaultLimits)
	if err != nil {
		return nil // not a core: the test does not get as far as memory
	}
	return elfcore.NewSegmentMemory(bytes.NewReader(core), c.Progs)
}

func entries(t testing.TB, env *Env) []string {
	d, err := os.ReadDir(staging.ForTmpDir(env.Config.TmpDir).Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	var out []string
	for _, e := range d {
		out = append(out, e.Name())
	}
	return out
}

func decompress(t testing.TB, path, compression string) []byte {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var r io.Reader = f
	switch compression {
	case "gzip":
		zr, err := gzip.NewReader(f)
		require.NoError(t, err)
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(f)
		require.NoError(t, err)
		defer zr.Close()
		r = zr
	}
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	return b
}

func TestRunStagesEntry(t *testing.T) {
	full := fixtureCore(t, "x86_64")
	for _, tc := range []struct {
		compression, strategy, ext string
	}{
		{"gzip", "threads", ".elf.gz"},
		{"zstd", "threads", ".elf.zst"},
		{"none", "threads", ".elf"},
		{"gzip", "kernel_selection", ".elf.gz"},
	} {
		t.Run(tc.compression+"/"+tc.strategy, func(t *testing.T) {
			env, kmsg := testEnv(t, full, fmt.Sprintf(`, "coredump": {"compression": %q, "capture_strategy": {"type": %q}}`, tc.compression, tc.strategy))
			res, err := Run(context.Background(), env)
			require.NoError(t, err, kmsg.String())

			ids := entries(t, env)
			require.Len(t, ids, 1)
			dir := filepath.Join(staging.ForTmpDir(env.Config.TmpDir).Path, ids[0])
			files, err := os.ReadDir(dir)
			require.NoError(t, err)
			var names []string
			for _, f := range files {
				names = append(names, f.Name())
			}
			require.ElementsMatch(t, []string{"manifest.json", "core-" + ids[0] + tc.ext}, names)

			var m protocol.Manifest
			mb, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(mb, &m))
			require.Equal(t, "elf-coredump", m.Type)
			var payload protocol.CoredumpPayload
			require.NoError(t, m.DecodeMetadata(&payload))
			require.Equal(t, "core-"+ids[0]+tc.ext, payload.CoredumpFileName)
			want := tc.compression
			if want == "none" {
				want = ""
				require.NotContains(t, string(mb), "compression")
			}
			require.Equal(t, want, payload.Compression)
			require.Equal(t, "dev-1", m.Device.DeviceSerial)
			require.Equal(t, "k", m.Device.ProjectKey)
			require.Equal(t, "2023-11-14T22:13:20Z", m.CollectionTime.Timestamp)
			require.Equal(t, "b00t", m.CollectionTime.LinuxBootID)

			core := decompress(t, res.File, tc.compression)
			require.Equal(t, res.CoreSize, uint64(len(core)))
			c, err := elfcore.ReadCore(bytes.NewReader(core), elfcore.DefaultLimits)
			require.NoError(t, err)
			notes, err := elfcore.ParseNotes(c.Notes, c.Header.ByteOrder())
			require.NoError(t, err)
			p, err := elfcore.DecodeProcess(&c.Header, notes)
			require.NoError(t, err)
			require.Len(t, p.Threads, 8)
			require.NotNil(t, p.Siginfo)
			require.EqualValues(t, 11, p.Siginfo.Signo)

			var meta, debug protocol.CBORMap
			for _, n := range notes {
				if n.Name != protocol.MemfaultNoteName {
					continue
				}
				v, err := protocol.UnmarshalCBOR(n.Desc)
				require.NoError(t, err)
				switch n.Type {
				case protocol.MetadataNoteType:
					meta = v.(protocol.CBORMap)
				case protocol.DebugNoteType:
					debug = v.(protocol.CBORMap)
				}
			}
			require.Len(t, meta, 10)
			for i, e := range meta {
				require.Equal(t, int64(i+1), e.Key)
			}
			cmd, _ := meta.Get(int64(8))
			require.Equal(t, "/usr/bin/threads\x00segv", cmd)
			strategy, _ := meta.Get(int64(9))
			typ, _ := strategy.(protocol.CBORMap).Get("type")
			require.Equal(t, tc.strategy, typ)
			logs, _ := meta.Get(int64(10))
			require.Nil(t, logs)
			capLogs, ok := debug.Get("capture_logs")
			require.True(t, ok)
			require.NotEmpty(t, capLogs)

			if tc.strategy == "kernel_selection" {
				require.Zero(t, res.Unreadable)
			}
		})
	}
}

func TestRunDisabledDoesNothing(t *testing.T) {
	env, kmsg := testEnv(t, []byte("not even read"), `, "enable_data_collection": false`)
	_, err := Run(context.Background(), env)
	require.ErrorIs(t, err, ErrDisabled)
	require.Empty(t, entries(t, env))
	require.Empty(t, kmsg.String())
}

func TestRunRateLimit(t *testing.T) {
	full := fixtureCore(t, "aarch64")
	env, _ := testEnv(t, full, `, "coredump": {"rate_limit_count": 2, "rate_limit_duration_seconds": 60}`)
	now := time.Unix(1_700_000_000, 0)
	env.Now = func() time.Time { return now }
	for i := 0; i < 2; i++ {
		env.Core = bytes.NewReader(full)
		_, err := Run(context.Background(), env)
		require.NoError(t, err)
		now = now.Add(time.Second)
	}
	env.Core = bytes.NewReader(full)
	_, err := Run(context.Background(), env)
	require.ErrorIs(t, err, ErrRateLimited)
	require.Len(t, entries(t, env), 2)

	// The window slides.
	now = now.Add(61 * time.Second)
	env.Core = bytes.NewReader(full)
	_, err = Run(context.Background(), env)
	require.NoError(t, err)

	// Developer mode bypasses the limit and does not count.
	st, err := os.ReadFile(filepath.Join(env.Config.TmpDir, "coredump_rate_limit"))
	require.NoError(t, err)
	env.Config.EnableDevMode = true
	for i := 0; i < 3; i++ {
		env.Core = bytes.NewReader(full)
		_, err = Run(context.Background(), env)
		require.NoError(t, err)
	}
	st2, err := os.ReadFile(filepath.Join(env.Config.TmpDir, "coredump_rate_limit"))
	require.NoError(t, err)
	require.Equal(t, string(st), string(st2))
	require.Len(t, entries(t, env), 6)
}

func TestRunDropsWhatDoesNotFit(t *testing.T) {
	full := fixtureCore(t, "armhf")
	for _, tc := range []struct {
		name, overrides, msg string
	}{
		{"max size", `, "coredump": {"coredump_max_size_kib": 8}`, "exceeds coredump_max_size_kib"},
		{"headroom", `, "tmp_dir_min_headroom_kib": 1099511627776`, "does not fit"},
		{"inodes", `, "tmp_dir_min_inodes": 18446744073709551000`, "inodes free"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, _ := testEnv(t, full, tc.overrides)
			_, err := Run(context.Background(), env)
			require.ErrorContains(t, err, tc.msg)
			require.Empty(t, entries(t, env), "nothing staged")
		})
	}
}

// failingMemory refuses reads in [from, to) like /proc/<pid>/mem does for a range that went
// away (EIO).
type failingMemory struct {
	elfcore.Memory
	from, to uint64
}

func (m failingMemory) ReadMemory(p []byte, addr uint64) (int, error) {
	end := addr + uint64(len(p))
	if addr >= m.from && addr < m.to {
		return 0, errors.New("input/output error")
	}
	if addr < m.from && end > m.from {
		n, err := m.Memory.ReadMemory(p[:m.from-addr], addr)
		if err != nil {
			return n, err
		}
		return n, errors.New("input/output error")
	}
	return m.Memory.ReadMemory(p, addr)
}

func TestRunUnreadableMemory(t *testing.T) {
	full := fixtureCore(t, "x86_64")
	env, kmsg := testEnv(t, full, `, "coredump": {"capture_strategy": {"type": "kernel_selection"}}`)
	c, err := elfcore.ReadCore(bytes.NewReader(full), elfcore.DefaultLimits)
	require.NoError(t, err)
	// Make the largest dumped segment unreadable from its second page on.
	var big elfcore.Prog
	for _, p := range c.Loads() {
		if p.Filesz > big.Filesz {
			big = p
		}
	}
	env.Memory = failingMemory{Memory: env.Memory, from: big.Vaddr + 0x1000, to: big.Vaddr + big.Filesz}
	res, err := Run(context.Background(), env)
	require.NoError(t, err)
	require.Equal(t, big.Filesz-0x1000, res.Unreadable)
	require.Contains(t, kmsg.String(), "unreadable and written as zeros")
	// Offsets stayed as planned: the file is still a valid core of the planned size.
	core := decompress(t, res.File, "gzip")
	require.Equal(t, res.CoreSize, uint64(len(core)))
}

func TestRunBadInput(t *testing.T) {
	full := fixtureCore(t, "x86_64")
	c, err := elfcore.ReadCore(bytes.NewReader(full), elfcore.DefaultLimits)
	require.NoError(t, err)
	head := int(c.Consumed)

	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(i*7 + 3)
	}
	exe, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "cores", "x86_64", "threads"))
	require.NoError(t, err)

	for _, tc := range []struct {
		name  string
		input []byte
		msg   string
	}{
		{"empty", nil, "truncated"},
		{"garbage", garbage, "not an ELF file"},
		{"not a core", exe, "not ET_CORE"},
		{"truncated in header", full[:40], "truncated"},
		{"truncated in program headers", full[:100], "truncated"},
		{"truncated in notes", full[:head-100], "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, _ := testEnv(t, full, "")
			env.Core = bytes.NewReader(tc.input)
			_, err := Run(context.Background(), env)
			require.ErrorContains(t, err, tc.msg)
			require.Empty(t, entries(t, env))
		})
	}

	t.Run("pid vanished", func(t *testing.T) {
		env, _ := testEnv(t, full, "")
		env.Memory = nil
		env.Args.PID = 999999
		_, err := Run(context.Background(), env)
		require.ErrorIs(t, err, procfs.ErrVanished)
		require.Empty(t, entries(t, env))
	})

	t.Run("truncated after notes is fine", func(t *testing.T) {
		// The handler stops reading at the end of the notes, so a stream cut after them
		// still gives a core (memory comes from /proc/<pid>/mem).
		env, _ := testEnv(t, full, "")
		env.Core = bytes.NewReader(full[:head])
		_, err := Run(context.Background(), env)
		require.NoError(t, err)
	})
}

// TestRunStopsReadingAtNotes checks the forward-only contract: the handler consumes exactly the
// headers and notes of the kernel's stream and leaves the rest unread.
func TestRunStopsReadingAtNotes(t *testing.T) {
	full := fixtureCore(t, "aarch64")
	env, _ := testEnv(t, full, "")
	r := &countingReader{r: bytes.NewReader(full)}
	env.Core = r
	_, err := Run(context.Background(), env)
	require.NoError(t, err)
	c, err := elfcore.ReadCore(bytes.NewReader(full), elfcore.DefaultLimits)
	require.NoError(t, err)
	require.Equal(t, c.Consumed, r.n)
	require.Less(t, r.n, uint64(len(full))/10)
}

type countingReader struct {
	r io.Reader
	n uint64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += uint64(n)
	return n, err
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want Args
		err  string
	}{
		{[]string{"123", "124", "11", "my prog"}, Args{PID: 123, TID: 124, Signal: 11, Comm: "my prog"}, ""},
		{[]string{"123", "124", "11", "my", "prog"}, Args{PID: 123, TID: 124, Signal: 11, Comm: "my prog"}, ""},
		{[]string{"123", "threads"}, Args{PID: 123, Comm: "threads"}, ""},
		{[]string{"123"}, Args{PID: 123}, ""},
		{nil, Args{}, "usage"},
		{[]string{"x"}, Args{}, "bad pid"},
		{[]string{"-5", "a"}, Args{}, "bad pid"},
	} {
		t.Run(strings.Join(tc.in, "_"), func(t *testing.T) {
			got, err := ParseArgs(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// TestRunExtendedNumbering feeds a core with more program headers than e_phnum can hold
// (PN_XNUM), as the kernel writes for a process with more than 65534 mappings.
func TestRunExtendedNumbering(t *testing.T) {
	full := fixtureCore(t, "x86_64")
	c, err := elfcore.ReadCore(bytes.NewReader(full), elfcore.DefaultLimits)
	require.NoError(t, err)
	l := &elfcore.Layout{Header: c.Header, Notes: c.Notes}
	for _, p := range c.Loads() {
		l.Segments = append(l.Segments, elfcore.Segment{Vaddr: p.Vaddr, Filesz: p.Filesz, Memsz: p.Memsz, Flags: p.Flags})
	}
	for i := 0; len(l.Segments) < 70000; i++ {
		l.Segments = append(l.Segments, elfcore.Segment{Vaddr: 0x100000000000 + uint64(i)*0x2000, Filesz: 0, Memsz: 0x1000, Flags: elf.PF_R})
	}
	var buf bytes.Buffer
	_, err = l.Write(&buf, elfcore.NewSegmentMemory(bytes.NewReader(full), c.Progs))
	require.NoError(t, err)

	for _, strategy := range []string{"threads", "kernel_selection"} {
		t.Run(strategy, func(t *testing.T) {
			env, _ := testEnv(t, buf.Bytes(), fmt.Sprintf(`, "coredump": {"capture_strategy": {"type": %q}}`, strategy))
			res, err := Run(context.Background(), env)
			require.NoError(t, err)
			out := decompress(t, res.File, "gzip")
			oc, err := elfcore.ReadCore(bytes.NewReader(out), elfcore.DefaultLimits)
			require.NoError(t, err)
			if strategy == "kernel_selection" {
				require.Equal(t, res.Segments, len(oc.Loads()))
			}
		})
	}
}

// TestRateLimitConcurrent runs many handlers at once against one limit: exactly Count succeed.
func TestRateLimitConcurrent(t *testing.T) {
	full := fixtureCore(t, "armhf")
	base, _ := testEnv(t, full, `, "coredump": {"rate_limit_count": 5, "rate_limit_duration_seconds": 3600}`)
	const n = 40
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			env := *base
			env.Log = NewLogger(io.Discard)
			env.Core = bytes.NewReader(full)
			env.Memory = memoryOf(t, full)
			_, err := Run(context.Background(), &env)
			errs <- err
		}()
	}
	ok, limited := 0, 0
	for i := 0; i < n; i++ {
		err := <-errs
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrRateLimited):
			limited++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	require.Equal(t, 5, ok)
	require.Equal(t, n-5, limited)
	require.Len(t, entries(t, base), 5)
}

// TestRateLimitSlotReturnedOnFailure: a capture that fails does not use up the limit.
func TestRateLimitSlotReturnedOnFailure(t *testing.T) {
	full := fixtureCore(t, "armhf")
	env, _ := testEnv(t, full, `, "coredump": {"rate_limit_count": 1, "rate_limit_duration_seconds": 3600}`)
	env.Core = bytes.NewReader([]byte("garbage that is no core"))
	_, err := Run(context.Background(), env)
	require.ErrorContains(t, err, "not an ELF file")
	env.Core = bytes.NewReader(full)
	_, err = Run(context.Background(), env)
	require.NoError(t, err)
	env.Core = bytes.NewReader(full)
	_, err = Run(context.Background(), env)
	require.ErrorIs(t, err, ErrRateLimited)
}
