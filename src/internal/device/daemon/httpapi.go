package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"meta-memfault-go/internal/device/staging"
)

// The local HTTP API (http_server.bind_address, loopback by default):
//
//	POST   /v1/crash/report   {"process_name": "..."}: a crash seen by someone else (counted)
//	GET    /api/v1/crash-logs {"logs": [json lines]}: recent logs, for the core handler
//	GET    /v1/export         a store-only zip of the staged entries (ETag = their identity)
//	DELETE /v1/export         delete what the last GET exported (If-Match: the ETag)
//	POST   /v1/sync           upload now and answer with the result (ours; memfaultctl sync)
func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/crash/report", d.handleCrashReport)
	mux.HandleFunc("/api/v1/crash-logs", d.handleCrashLogs)
	mux.HandleFunc("/v1/export", d.handleExport)
	mux.HandleFunc("/v1/sync", d.handleSync)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
}

func (d *Daemon) handleCrashReport(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		httpError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	var body struct {
		ProcessName string `json:"process_name"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body); err != nil || body.ProcessName == "" {
		httpError(w, http.StatusBadRequest, "want {\"process_name\": \"...\"}")
		return
	}
	d.mu.Lock()
	if len(d.crashes) < 1024 || d.crashes[body.ProcessName] > 0 {
		d.crashes[body.ProcessName]++
	}
	n := d.crashes[body.ProcessName]
	d.mu.Unlock()
	d.log.Info("crash reported", "process", body.ProcessName, "count", n)
	w.WriteHeader(http.StatusOK)
}

func (d *Daemon) handleCrashLogs(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		httpError(w, http.StatusMethodNotAllowed, "use GET")
		return
	}
	lines := d.ring.Lines()
	if lines == nil {
		lines = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"logs": lines})
}

func (d *Daemon) handleSync(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		httpError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Minute)
	defer cancel()
	res, err := d.SyncAndWait(ctx)
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, "sync: %v", err)
		return
	}
	status := http.StatusOK
	if res.Error != "" {
		status = http.StatusBadGateway
	}
	writeJSON(w, status, res)
}

// exportState remembers what the last GET /v1/export handed out, so that DELETE removes
// exactly that and nothing staged since.
type exportState struct {
	mu      sync.Mutex
	etag    string
	entries []staging.Info
}

func exportTag(entries []staging.Info) string {
	h := sha256.New()
	for _, e := range entries {
		fmt.Fprintf(h, "%s/%d\n", e.UUID, e.Size)
	}
	return `"` + hex.EncodeToString(h.Sum(nil)[:16]) + `"`
}

func completeEntries(dir staging.Dir) ([]staging.Info, error) {
	all, err := dir.List()
	if err != nil {
		return nil, err
	}
	var out []staging.Info
	for _, e := range all {
		if e.Complete {
			out = append(out, e)
		}
	}
	return out, nil
}

func (d *Daemon) handleExport(w http.ResponseWriter, r *http.Request) {
	dir := staging.ForTmpDir(d.Config().TmpDir)
	d.export.mu.Lock()
	defer d.export.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
		if a := r.Header.Get("Accept"); a != "" && !strings.Contains(a, "application/zip") && !strings.Contains(a, "*/*") {
			httpError(w, http.StatusNotAcceptable, "only application/zip (MAR) exports are supported")
			return
		}
		entries, err := completeEntries(dir)
		if err != nil {
			httpError(w, http.StatusInternalServerError, "%v", err)
			return
		}
		if len(entries) == 0 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		size, err := staging.ZipSize(entries)
		if err != nil {
			httpError(w, http.StatusInternalServerError, "%v", err)
			return
		}
		d.export.etag, d.export.entries = exportTag(entries), entries
		w.Header().Set("Content-Type", "application/zip")
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.Header().Set("ETag", d.export.etag)
		w.WriteHeader(http.StatusOK)
		if _, err := staging.WriteZip(w, entries); err != nil {
			d.log.Warn("export interrupted", "err", err)
		}
	case http.MethodDelete:
		if d.export.etag == "" {
			httpError(w, http.StatusNotFound, "nothing was exported")
			return
		}
		if m := r.Header.Get("If-Match"); m != "" && m != d.export.etag {
			httpError(w, http.StatusPreconditionFailed, "If-Match %s does not match the last export %s", m, d.export.etag)
			return
		}
		for _, e := range d.export.entries {
			if err := os.RemoveAll(e.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
				httpError(w, http.StatusInternalServerError, "%v", err)
				return
			}
		}
		d.log.Info("exported entries deleted", "count", len(d.export.entries))
		d.export.etag, d.export.entries = "", nil
		w.WriteHeader(http.StatusNoContent)
	default:
		httpError(w, http.StatusMethodNotAllowed, "use GET or DELETE")
	}
}
