package daemon

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/device/config"
	"meta-memfault-go/internal/device/logring"
	"meta-memfault-go/internal/testutil/deviceapi"
)

// runDaemon runs the daemon's loop in-process on a fake /proc and a loopback port.
func runDaemon(t *testing.T, srv *deviceapi.Server, extra string) (*Daemon, string) {
	k, _ := fakeProc(t, "core", "0")
	d := newTestDaemon(t, srv, fmt.Sprintf(`, "http_server": {"bind_address": %q} %s`, freeAddr(t), extra))
	d.opts.ProcRoot = k.ProcRoot
	d.opts.HandlerPath = "/usr/sbin/memfault-core-handler"
	d.opts.LogSources = []logring.Source{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	d.opts.Ready = func() error { close(ready); return nil }
	go func() { done <- d.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("daemon did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return d, "http://" + d.HTTPAddr()
}

func TestHTTPAPI(t *testing.T) {
	srv := deviceapi.New(t, "k")
	d, base := runDaemon(t, srv, "")

	// The kernel hook went into the fake /proc.
	p, err := os.ReadFile(filepath.Join(d.opts.ProcRoot, "sys/kernel/core_pattern"))
	require.NoError(t, err)
	require.Contains(t, string(p), "memfault-core-handler")

	t.Run("crash-logs", func(t *testing.T) {
		d.ring.Add(logring.Entry{TS: time.Unix(1700000000, 0), Fields: map[string]string{"MESSAGE": "hello <world>"}})
		resp, err := http.Get(base + "/api/v1/crash-logs")
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		var body struct{ Logs []string }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		require.Len(t, body.Logs, 1)
		var line map[string]any
		require.NoError(t, json.Unmarshal([]byte(body.Logs[0]), &line))
		require.Equal(t, "hello <world>", line["data"].(map[string]any)["MESSAGE"])
	})

	t.Run("crash report", func(t *testing.T) {
		resp, err := http.Post(base+"/v1/crash/report", "application/json", strings.NewReader(`{"process_name":"foo"}`))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		resp, err = http.Post(base+"/v1/crash/report", "application/json", strings.NewReader(`{}`))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 400, resp.StatusCode)
	})

	t.Run("export", func(t *testing.T) {
		resp, err := http.Get(base + "/v1/export")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNoContent, resp.StatusCode)

		ids := stageCores(t, d, 2)
		resp, err = http.Get(base + "/v1/export")
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		etag := resp.Header.Get("ETag")
		require.NotEmpty(t, etag)
		zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		require.NoError(t, err)
		var names []string
		for _, f := range zr.File {
			names = append(names, f.Name)
			require.Equal(t, zip.Store, f.Method)
		}
		for _, id := range ids {
			require.Contains(t, names, id+"/manifest.json")
		}

		// A third entry arrives after the export: DELETE removes only what was exported.
		late := stageCores(t, d, 1)
		req, _ := http.NewRequest(http.MethodDelete, base+"/v1/export", nil)
		req.Header.Set("If-Match", `"stale"`)
		resp, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusPreconditionFailed, resp.StatusCode)
		req.Header.Set("If-Match", etag)
		resp, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
		left, err := d.stagingDir().List()
		require.NoError(t, err)
		require.Len(t, left, 1)
		require.Equal(t, late[0], left[0].UUID)
	})

	t.Run("sync", func(t *testing.T) {
		resp, err := http.Post(base+"/v1/sync", "application/json", nil)
		require.NoError(t, err)
		var res SyncResult
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&res))
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, res.Error)
		require.Equal(t, 1, res.Report.Uploaded)
		require.Empty(t, srv.Violations())
	})
}

func TestReloadAppliesConsent(t *testing.T) {
	srv := deviceapi.New(t, "k")
	d, _ := runDaemon(t, srv, "")
	pattern := filepath.Join(d.opts.ProcRoot, "sys/kernel/core_pattern")
	p, _ := os.ReadFile(pattern)
	require.Contains(t, string(p), "memfault-core-handler")

	// What memfaultctl disable-data-collection does, in its own process.
	ctlCfg, err := config.Load(d.opts.ConfigPath)
	require.NoError(t, err)
	require.NoError(t, ctlCfg.WriteRuntime(map[string]any{"enable_data_collection": false}))
	d.Reload()
	require.Eventually(t, func() bool {
		p, _ := os.ReadFile(pattern)
		return string(p) == "core"
	}, 5*time.Second, 10*time.Millisecond, "consent withdrawn: previous pattern back")

	// A broken configuration on reload is refused and the running one stays.
	cfgPath := d.opts.ConfigPath
	require.NoError(t, os.WriteFile(cfgPath, []byte(`{"persist_dir": 5}`), 0o644))
	d.Reload()
	time.Sleep(100 * time.Millisecond)
	require.False(t, d.Config().EnableDataCollection)
	require.NotEmpty(t, d.Config().PersistDir)
}
