package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/device/staging"
	"meta-memfault-go/internal/protocol"
	"meta-memfault-go/internal/testutil/deviceapi"
)

// TestRefusesBadConfig: memfaultd does not start on a broken configuration, says which file,
// key and value, and changes nothing on the system.
func TestRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"syntax", "{\n  \"persist_dir\": \"/tmp/x\",\n  \"enable_data_collection\": tru\n}", []string{"memfaultd.conf", "line 3"}},
		{"bad value", `{"coredump": {"capture_strategy": {"type": "everything"}}}`, []string{"memfaultd.conf", "coredump.capture_strategy.type", `"everything"`}},
		{"relative persist_dir", `{"persist_dir": "media/memfault"}`, []string{"persist_dir", `"media/memfault"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, _ := fakeProc(t, "core", "0")
			cfg := filepath.Join(t.TempDir(), "memfaultd.conf")
			require.NoError(t, os.WriteFile(cfg, []byte(tc.body), 0o644))
			_, err := New(Options{ConfigPath: cfg, ProcRoot: k.ProcRoot})
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			p, l := kernel(t, k)
			require.Equal(t, "core", p)
			require.Equal(t, "0", l)
		})
	}
}

// newTestDaemon builds a daemon (not running its loop) against a device-protocol server, with a
// fixture root for the device identity.
func newTestDaemon(t *testing.T, srv *deviceapi.Server, extra string) *Daemon {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "proc/sys/kernel"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/machine-id"), []byte("0123456789abcdef\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "proc/sys/kernel/hostname"), []byte("evt\n"), 0o644))
	cfg := filepath.Join(t.TempDir(), "memfaultd.conf")
	body := fmt.Sprintf(`{"persist_dir": %q, "enable_data_collection": true, "project_key": %q, "base_url": %q,
		"software_type": "t", "software_version": "1", "upload_interval_seconds": 3600 %s}`,
		filepath.Join(t.TempDir(), "persist"), srv.ProjectKey, srv.URL, extra)
	require.NoError(t, os.WriteFile(cfg, []byte(body), 0o644))
	d, err := New(Options{ConfigPath: cfg, Root: root, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	d.loadIdentity(context.Background(), d.Config())
	require.Equal(t, "0123456789abcdef", d.dev.DeviceID)
	return d
}

func stageCores(t *testing.T, d *Daemon, n int) []string {
	var ids []string
	for i := 0; i < n; i++ {
		e, err := staging.ForTmpDir(d.Config().TmpDir).NewEntry()
		require.NoError(t, err)
		f, err := e.Create("core-" + e.UUID + ".elf.gz")
		require.NoError(t, err)
		f.Write(bytes.Repeat([]byte{byte(i)}, 64<<10))
		f.Close()
		require.NoError(t, e.Commit(&protocol.Manifest{SchemaVersion: 1, Type: protocol.ManifestTypeCoredump,
			CollectionTime: protocol.CollectionTime{Timestamp: time.Now().UTC().Format(time.RFC3339)},
			Device: protocol.ManifestDevice{ProjectKey: d.Config().ProjectKey, DeviceSerial: d.dev.DeviceID,
				HardwareVersion: d.dev.HardwareVersion, SoftwareType: d.dev.SoftwareType, SoftwareVersion: d.dev.SoftwareVersion},
			Producer: protocol.Producer{ID: "memfaultd", Version: "test"},
			Metadata: protocol.CoredumpPayload{CoredumpFileName: "core-" + e.UUID + ".elf.gz", Compression: "gzip"}}))
		ids = append(ids, e.UUID)
	}
	return ids
}

func stagedCount(t *testing.T, d *Daemon) int {
	l, err := staging.ForTmpDir(d.Config().TmpDir).List()
	require.NoError(t, err)
	return len(l)
}

// TestSyncServerErrors: a 500 or a server that never answers keeps the entries, backs off
// (60 s, doubling, capped at the interval), and delivers them once the server recovers.
func TestSyncServerErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(*deviceapi.Server)
	}{
		{"500 on prepare", func(s *deviceapi.Server) { s.Fail(deviceapi.Prepare, 10, 500) }},
		{"500 on commit", func(s *deviceapi.Server) { s.Fail(deviceapi.Commit, 10, 503) }},
		{"never answers", func(s *deviceapi.Server) { s.Hang(deviceapi.Put, 10) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := deviceapi.New(t, "k")
			d := newTestDaemon(t, srv, "")
			ids := stageCores(t, d, 3)
			tc.fault(srv)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			res := d.sync(ctx)
			cancel()
			require.NotEmpty(t, res.Error)
			require.Equal(t, 3, stagedCount(t, d), "entries stay")
			require.Equal(t, 60*time.Second, d.nextSync(d.Config()))
			d.sync(ctx) // a second failure (ctx is done)
			require.Equal(t, 120*time.Second, d.nextSync(d.Config()))
			d.failures = 10
			require.Equal(t, time.Hour, d.nextSync(d.Config()), "capped at the upload interval")

			// The server recovers (a fresh one, without the injected faults).
			srv2 := deviceapi.New(t, "k")
			d.mu.Lock()
			d.cfg.BaseURL = srv2.URL
			d.mu.Unlock()
			res = d.sync(context.Background())
			require.Empty(t, res.Error)
			require.Equal(t, 3, res.Report.Uploaded)
			require.Zero(t, d.failures)
			require.Equal(t, time.Hour, d.nextSync(d.Config()))
			require.Zero(t, stagedCount(t, d))
			got := srv2.Entries()
			for _, id := range ids {
				require.Equal(t, 1, got[id].Arrivals)
			}
			require.Empty(t, srv2.Violations())
		})
	}
}

// TestSyncSampling: cores upload only at debugging resolution normal or high; developer mode
// forces high.
func TestSyncSampling(t *testing.T) {
	for _, tc := range []struct {
		resolution string
		devMode    bool
		uploaded   int
	}{
		{"off", false, 0}, {"low", false, 0}, {"normal", false, 2}, {"high", false, 2}, {"off", true, 2},
	} {
		t.Run(fmt.Sprintf("%s/dev=%v", tc.resolution, tc.devMode), func(t *testing.T) {
			srv := deviceapi.New(t, "k")
			srv.SetDeviceConfig(tc.resolution, 7, nil)
			d := newTestDaemon(t, srv, fmt.Sprintf(`, "enable_dev_mode": %v`, tc.devMode))
			stageCores(t, d, 2)
			res := d.sync(context.Background())
			require.Empty(t, res.Error)
			require.Equal(t, tc.uploaded, res.Report.Uploaded)
			require.Equal(t, 2-tc.uploaded, res.Report.Dropped)
			require.Zero(t, stagedCount(t, d))
			_, err := os.Stat(DeviceConfigPath(d.Config()))
			require.NoError(t, err, "device config cached")
		})
	}
}

func TestUploadIntervalZeroMeansOnlyOnSync(t *testing.T) {
	srv := deviceapi.New(t, "k")
	d := newTestDaemon(t, srv, `, "upload_interval_seconds": 0`)
	require.Equal(t, never, d.nextSync(d.Config()))
	d.failures = 3
	require.Equal(t, never, d.nextSync(d.Config()))
}
