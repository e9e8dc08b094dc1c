package daemon

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/device/staging"
	"meta-memfault-go/internal/elfcore"
	"meta-memfault-go/internal/protocol"
	"meta-memfault-go/internal/testutil/deviceapi"
	"meta-memfault-go/internal/testutil/kerneltest"
)

// These tests run the real memfaultd binary against a real device-protocol server on
// loopback and hand real crashes to the real kernel (root only; see kerneltest).

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

type rig struct {
	t       *testing.T
	dir     string
	bin     string
	cfg     string
	pidFile string
	persist string
	srv     *deviceapi.Server
	daemon  *exec.Cmd
	stderr  *bytes.Buffer
}

func newRig(t *testing.T, extra string) *rig {
	kerneltest.Guard(t)
	r := &rig{t: t, dir: kerneltest.ShortTempDir(t)}
	r.bin = kerneltest.BuildMemfaultd(t, r.dir)
	r.srv = deviceapi.New(t, "e2e-project-key")
	r.persist = filepath.Join(r.dir, "persist")
	r.pidFile = filepath.Join(r.dir, "memfaultd.pid")
	r.cfg = filepath.Join(r.dir, "c.json")
	body := fmt.Sprintf(`{
	/* end-to-end test configuration */
	"persist_dir": %q, "enable_data_collection": true, "project_key": "e2e-project-key",
	"base_url": %q, "software_type": "e2e", "software_version": "1.2.3",
	"http_server": {"bind_address": %q}, "upload_interval_seconds": 3600 %s}`,
		r.persist, r.srv.URL, freeAddr(t), extra)
	require.NoError(t, os.WriteFile(r.cfg, []byte(body), 0o644))
	// No core files from crashes while the previous (file) pattern is in force.
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{}))
	return r
}

func (r *rig) start() {
	r.t.Helper()
	r.stderr = &bytes.Buffer{}
	r.daemon = exec.Command(r.bin, "-c", r.cfg, "--pidfile", r.pidFile, "--handler", filepath.Join(r.dir, "memfault-core-handler"))
	r.daemon.Stderr = r.stderr
	require.NoError(r.t, r.daemon.Start())
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pid, err := ReadPidFile(r.pidFile); err == nil && pid == r.daemon.Process.Pid {
			break
		}
		require.True(r.t, time.Now().Before(deadline), "memfaultd did not start: %s", r.stderr)
		time.Sleep(10 * time.Millisecond)
	}
	r.t.Cleanup(func() { r.daemon.Process.Kill(); r.daemon.Wait() })
}

func (r *rig) stop() {
	r.t.Helper()
	require.NoError(r.t, r.daemon.Process.Signal(syscall.SIGTERM))
	require.NoError(r.t, r.daemon.Wait(), r.stderr.String())
	_, err := os.Stat(r.pidFile)
	require.ErrorIs(r.t, err, os.ErrNotExist, "pid file removed")
}

func (r *rig) ctl(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(r.dir, "memfaultctl"), append([]string{"-c", r.cfg, "--pidfile", r.pidFile}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (r *rig) staged() []staging.Info {
	l, err := staging.ForTmpDir(r.persist).List()
	require.NoError(r.t, err)
	return l
}

func (r *rig) waitStaged(n int) []staging.Info {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var complete []staging.Info
		for _, e := range r.staged() {
			if e.Complete {
				complete = append(complete, e)
			}
		}
		if len(complete) >= n {
			return complete
		}
		require.True(r.t, time.Now().Before(deadline), "waiting for %d staged entries, have %d", n, len(complete))
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *rig) waitPattern(want string) {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for kerneltest.Pattern(r.t) != want {
		require.True(r.t, time.Now().Before(deadline), "core_pattern is %q, want %q", kerneltest.Pattern(r.t), want)
		time.Sleep(10 * time.Millisecond)
	}
}

// appLogs returns the recent logs recorded in a staged core's metadata note.
func appLogs(t *testing.T, e staging.Info) []string {
	var core string
	for _, f := range e.Files {
		if strings.HasPrefix(f, "core-") {
			core = filepath.Join(e.Path, f)
		}
	}
	require.NotEmpty(t, core)
	f, err := os.Open(core)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	b, err := io.ReadAll(zr)
	require.NoError(t, err)
	c, err := elfcore.ReadCore(bytes.NewReader(b), elfcore.DefaultLimits)
	require.NoError(t, err)
	notes, err := elfcore.ParseNotes(c.Notes, c.Header.ByteOrder())
	require.NoError(t, err)
	for _, n := range notes {
		if n.Name == protocol.MemfaultNoteName && n.Type == protocol.MetadataNoteType {
			v, err := protocol.UnmarshalCBOR(n.Desc)
			require.NoError(t, err)
			logs, _ := v.(protocol.CBORMap).Get(int64(10))
			m, ok := logs.(protocol.CBORMap)
			if !ok {
				return nil
			}
			l, _ := m.Get("logs")
			var out []string
			for _, s := range l.([]any) {
				out = append(out, s.(string))
			}
			return out
		}
	}
	t.Fatal("no metadata note")
	return nil
}

func TestEndToEnd(t *testing.T) {
	r := newRig(t, "")
	previous := "core.e2e-previous"
	kerneltest.Set(t, previous, 0)
	r.start()
	ours := fmt.Sprintf("|%s -c %s %%P %%I %%s %%e", filepath.Join(r.dir, "memfault-core-handler"), r.cfg)
	r.waitPattern(ours)
	limit, err := os.ReadFile(kerneltest.PipeLimitPath)
	require.NoError(t, err)
	require.Equal(t, "4", strings.TrimSpace(string(limit)))

	// A line in the kernel log before the crash must reach the core's metadata note.
	marker := fmt.Sprintf("e2e-marker-%d", time.Now().UnixNano())
	require.NoError(t, os.WriteFile("/dev/kmsg", []byte("<6>e2e-test: "+marker+"\n"), 0))
	time.Sleep(300 * time.Millisecond)

	out, err := r.ctl("trigger-coredump")
	require.NoError(t, err, out)
	require.Contains(t, out, "Triggering coredump (segfault)")
	staged := r.waitStaged(1)
	require.Contains(t, strings.Join(appLogs(t, staged[0]), "\n"), marker, "recent logs in the core")

	out, err = r.ctl("sync")
	require.NoError(t, err, out)
	require.Contains(t, out, "Sync done: 1 entries uploaded")
	entries := r.srv.Entries()
	require.Len(t, entries, 1)
	for _, e := range entries {
		require.Equal(t, protocol.ManifestTypeCoredump, e.Manifest.Type)
		require.Equal(t, 1, e.Arrivals)
		require.Contains(t, e.Files, "manifest.json")
		require.Len(t, e.Files, 2)
	}
	require.Empty(t, r.srv.Violations())
	require.Empty(t, r.staged(), "staging is empty after the upload")

	out, err = r.ctl("enable-data-collection")
	require.NoError(t, err, out)
	require.Contains(t, out, "Data collection is already enabled")

	// Device attributes, exported offline instead of uploaded.
	out, err = r.ctl("write-attributes", "fw_channel=beta", "boots=42", "ratio=0.5", "ok=true")
	require.NoError(t, err, out)
	staged = r.waitStaged(1)
	m, err := staged[0].ReadManifest()
	require.NoError(t, err)
	require.Equal(t, protocol.ManifestTypeAttributes, m.Type)
	var attrs protocol.AttributesPayload
	require.NoError(t, m.DecodeMetadata(&attrs))
	require.Equal(t, []protocol.Attribute{{Key: "fw_channel", Value: "beta"}, {Key: "boots", Value: float64(42)},
		{Key: "ratio", Value: 0.5}, {Key: "ok", Value: true}}, attrs.Attributes)
	export := filepath.Join(r.dir, "export.zip")
	out, err = r.ctl("export", "-n", "-o", export)
	require.NoError(t, err, out)
	zb, err := os.ReadFile(export)
	require.NoError(t, err)
	require.Contains(t, string(zb), staged[0].UUID+"/manifest.json")
	require.Len(t, r.staged(), 1, "-n keeps the data")
	out, err = r.ctl("export", "-o", export)
	require.NoError(t, err, out)
	require.Empty(t, r.staged(), "export deletes what it wrote")

	out, err = r.ctl("disable-data-collection")
	require.NoError(t, err, out)
	require.Contains(t, out, "Disabling data collection")
	r.waitPattern(previous)
	exe := kerneltest.BuildThreads(t, r.dir)
	exec.Command(exe).Run()
	time.Sleep(500 * time.Millisecond)
	require.Empty(t, r.staged(), "no capture without consent")

	r.stop()
	require.Equal(t, previous, kerneltest.Pattern(t), "stopping the daemon keeps the restored pattern")

	out, err = r.ctl("sync")
	require.Error(t, err)
	require.Equal(t, 3, err.(*exec.ExitError).ExitCode())
	require.Contains(t, out, "memfaultd is not running")
	out, err = r.ctl("frobnicate")
	require.Error(t, err)
	require.Contains(t, out, `unknown command "frobnicate"`)
}

// TestKillDuringUpload: memfaultd is killed (SIGKILL) while its commit is in flight and the
// server has already taken it; after a restart the entry is sent again with the same uuid,
// so nothing is lost and the server can ignore the repeat.
func TestKillDuringUpload(t *testing.T) {
	r := newRig(t, `, "enable_dev_mode": true`)
	r.start()
	// Developer mode syncs by itself a few seconds after the crash; the server records the
	// commit and never answers.
	r.srv.HangAfter(deviceapi.Commit, 1)
	trigger := exec.Command(filepath.Join(r.dir, "memfaultctl"), "-c", r.cfg, "--pidfile", r.pidFile, "trigger-coredump")
	require.NoError(t, trigger.Start())
	defer func() { trigger.Process.Kill(); trigger.Wait() }()
	staged := r.waitStaged(1)
	deadline := time.Now().Add(10 * time.Second)
	for r.srv.Commits() == 0 {
		require.True(t, time.Now().Before(deadline), "no commit arrived")
		time.Sleep(10 * time.Millisecond)
	}
	require.NoError(t, r.daemon.Process.Kill())
	r.daemon.Wait()
	require.Len(t, r.staged(), 1, "the entry is still staged")

	r.start()
	out, err := r.ctl("sync")
	require.NoError(t, err, out)
	entries := r.srv.Entries()
	require.Len(t, entries, 1)
	require.Equal(t, 2, entries[staged[0].UUID].Arrivals, "delivered twice under the same uuid")
	require.Empty(t, r.staged())
	require.Empty(t, r.srv.Violations())
}

// TestCrashStorm: 50 processes crash at once. The rate limit (5) holds exactly, every process
// is reaped (none stays stuck in D state), and no half-written entry remains.
func TestCrashStorm(t *testing.T) {
	r := newRig(t, `, "coredump": {"rate_limit_count": 5, "core_pipe_limit": 64}`)
	r.start()
	exe := kerneltest.BuildThreads(t, r.dir)
	const n = 50
	cmds := make([]*exec.Cmd, n)
	for i := range cmds {
		cmds[i] = exec.Command(exe)
		require.NoError(t, cmds[i].Start())
	}
	done := make(chan struct{})
	go func() {
		for _, c := range cmds {
			c.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		for _, c := range cmds {
			if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.Process.Pid)); err == nil {
				t.Logf("still there: %s", st)
			}
		}
		t.Fatal("crashed processes were not reaped within 60 s")
	}
	time.Sleep(500 * time.Millisecond)
	staged := r.staged()
	complete := 0
	for _, e := range staged {
		require.True(t, e.Complete, "half entry %s left behind", e.UUID)
		complete++
	}
	require.Equal(t, 5, complete, "the rate limit holds exactly")
}

// TestDiskFullInTmpDir: a tmp_dir without room drops cores whole and memfaultd keeps going.
func TestDiskFullInTmpDir(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	require.NoError(t, os.Mkdir(small, 0o755))
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", small).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v %s", err, out)
	}
	defer exec.Command("umount", small).Run()
	r := newRig(t, fmt.Sprintf(`, "tmp_dir": %q, "tmp_dir_min_headroom_kib": 16`, small))
	r.start()
	exe := kerneltest.BuildThreads(t, r.dir)
	for i := 0; i < 3; i++ {
		exec.Command(exe).Run()
	}
	time.Sleep(500 * time.Millisecond)
	m, _ := filepath.Glob(filepath.Join(small, "mar", "*"))
	require.Empty(t, m, "nothing staged, nothing half-written")
	out, err := r.ctl("sync")
	require.NoError(t, err, out)
	require.Nil(t, r.daemon.ProcessState, "memfaultd still running")
}

// TestDaemonizeAndRefusal runs the real binary: --daemonize returns once the daemon serves,
// a second start is refused, SIGTERM stops it; a broken configuration is refused at start
// with the file, key and value named. Data collection is off, so core_pattern is not touched.
func TestDaemonizeAndRefusal(t *testing.T) {
	dir := kerneltest.ShortTempDir(t)
	bin := kerneltest.BuildMemfaultd(t, dir)
	cfg := filepath.Join(dir, "c.json")
	pidFile := filepath.Join(dir, "memfaultd.pid")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`{"persist_dir": %q, "http_server": {"bind_address": %q}}`,
		filepath.Join(dir, "persist"), freeAddr(t))), 0o644))

	start := time.Now()
	out, err := exec.Command(bin, "-c", cfg, "--pidfile", pidFile, "--daemonize").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Less(t, time.Since(start), 10*time.Second)
	pid, err := ReadPidFile(pidFile)
	require.NoError(t, err)
	defer syscall.Kill(pid, syscall.SIGKILL)
	require.NotEqual(t, os.Getpid(), pid)
	sid, err := syscall.Getpgid(pid)
	require.NoError(t, err)
	require.Equal(t, pid, sid, "the daemon leads its own session")

	out, err = exec.Command(bin, "-c", cfg, "--pidfile", pidFile).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), fmt.Sprintf("already running as pid %d", pid))

	require.NoError(t, syscall.Kill(pid, syscall.SIGTERM))
	require.Eventually(t, func() bool { _, err := os.Stat(pidFile); return os.IsNotExist(err) }, 5*time.Second, 10*time.Millisecond)

	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"coredump": {"rate_limit_count": 0}}`), 0o644))
	out, err = exec.Command(bin, "-c", bad, "--pidfile", pidFile).CombinedOutput()
	require.Error(t, err)
	require.Equal(t, 1, err.(*exec.ExitError).ExitCode())
	require.Contains(t, string(out), "refusing to start")
	require.Contains(t, string(out), "coredump.rate_limit_count")
	require.Contains(t, string(out), "bad.json")
	_, err = os.Stat(pidFile)
	require.ErrorIs(t, err, os.ErrNotExist)
}
