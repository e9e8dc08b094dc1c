// Package ui serves what people and scripts read: the JSON API (issues, occurrences, traces)
// and the web pages built on the same store queries (pages.go, templates/, static/).
package ui

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"meta-memfault-go/internal/server/store"
)

// API serves /api/v1/...
type API struct {
	st  *store.Store
	log *slog.Logger
}

// NewAPI makes the JSON API.
func NewAPI(st *store.Store, log *slog.Logger) *API { return &API{st: st, log: log} }

// Register adds the routes.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("/api/v1/issues", a.issues)
	mux.HandleFunc("/api/v1/issues/", a.issue)
	mux.HandleFunc("/api/v1/cores/", a.core)
	mux.HandleFunc("/api/v1/status", a.status)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func apiError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]any{"error": fmt.Sprintf(format, args...)})
}

// IssueJSON is an issue in the API.
type IssueJSON struct {
	ID                int64     `json:"id"`
	Title             string    `json:"title"`
	Signal            string    `json:"signal"`
	Fingerprint       string    `json:"fingerprint"`
	FingerprintFrames []string  `json:"fingerprint_frames"`
	FirstSeen         time.Time `json:"first_seen"`
	LastSeen          time.Time `json:"last_seen"`
	Occurrences       int       `json:"occurrences"`
	Devices           int       `json:"devices"`
	SoftwareVersions  []string  `json:"software_versions"`
	SymbolsMissing    bool      `json:"symbols_missing"`
}

func issueJSON(is *store.Issue) IssueJSON {
	j := IssueJSON{ID: is.ID, Title: is.Title, Signal: is.Signal, Fingerprint: is.Fingerprint, FirstSeen: is.FirstSeen.UTC(),
		LastSeen: is.LastSeen.UTC(), Occurrences: is.Occurrences, Devices: is.Devices, SoftwareVersions: is.Versions,
		SymbolsMissing: is.SymbolsMissing}
	json.Unmarshal([]byte(is.FingerprintFrames), &j.FingerprintFrames)
	if j.SoftwareVersions == nil {
		j.SoftwareVersions = []string{}
	}
	return j
}

// OccurrenceJSON is one core of an issue.
type OccurrenceJSON struct {
	CoreID          int64           `json:"core_id"`
	EntryUUID       string          `json:"entry_uuid"`
	DeviceSerial    string          `json:"device_serial"`
	HardwareVersion string          `json:"hardware_version"`
	SoftwareType    string          `json:"software_type"`
	SoftwareVersion string          `json:"software_version"`
	Captured        time.Time       `json:"captured"`
	Received        time.Time       `json:"received"`
	Status          string          `json:"status"`
	Error           string          `json:"error,omitempty"`
	SymbolsMissing  bool            `json:"symbols_missing"`
	Trace           json.RawMessage `json:"trace,omitempty"`
}

func occurrenceJSON(c *store.Core, withTrace bool) OccurrenceJSON {
	o := OccurrenceJSON{CoreID: c.ID, EntryUUID: c.EntryUUID, DeviceSerial: c.DeviceSerial, HardwareVersion: c.HardwareVersion,
		SoftwareType: c.SoftwareType, SoftwareVersion: c.SoftwareVersion, Captured: c.Captured.UTC(), Received: c.Received.UTC(),
		Status: c.Status, Error: c.Error, SymbolsMissing: c.SymbolsMissing}
	if withTrace && c.Trace != "" {
		o.Trace = json.RawMessage(c.Trace)
	}
	return o
}

func (a *API) issues(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	// limit and offset page through the list; without limit it is every issue.
	limit, _ := strconv.Atoi(q.Get("limit"))
	offset, _ := strconv.Atoi(q.Get("offset"))
	list, err := a.st.ListIssues(r.Context(), store.IssueFilter{SoftwareVersion: q.Get("software_version"), Text: q.Get("q"), Sort: q.Get("sort"),
		SymbolsMissing: q.Get("symbols_missing") == "1", Limit: max(limit, 0), Offset: max(offset, 0)})
	if err != nil {
		apiError(w, http.StatusBadRequest, "%v", err)
		return
	}
	out := []IssueJSON{}
	for _, is := range list {
		out = append(out, issueJSON(is))
	}
	writeJSON(w, http.StatusOK, map[string]any{"issues": out})
}

// issue serves /api/v1/issues/<id> (the issue with its latest trace) and
// /api/v1/issues/<id>/occurrences.
func (a *API) issue(w http.ResponseWriter, r *http.Request) {
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/api/v1/issues/"), "/")
	idStr, sub, _ := strings.Cut(rest, "/")
	id, err := strconv.ParseInt(idStr, 10, 64)
	if err != nil {
		apiError(w, http.StatusNotFound, "no issue %q", idStr)
		return
	}
	is, err := a.st.GetIssue(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		apiError(w, http.StatusNotFound, "no issue %d", id)
		return
	} else if err != nil {
		apiError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	switch sub {
	case "":
		cores, err := a.st.IssueCores(r.Context(), id, 1)
		if err != nil {
			apiError(w, http.StatusInternalServerError, "%v", err)
			return
		}
		out := map[string]any{"issue": issueJSON(is)}
		if len(cores) > 0 {
			out["latest"] = occurrenceJSON(cores[0], true)
		}
		writeJSON(w, http.StatusOK, out)
	case "occurrences":
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		if limit <= 0 || limit > 1000 {
			limit = 100
		}
		cores, err := a.st.IssueCores(r.Context(), id, limit)
		if err != nil {
			apiError(w, http.StatusInternalServerError, "%v", err)
			return
		}
		out := []OccurrenceJSON{}
		for _, c := range cores {
			out = append(out, occurrenceJSON(c, false))
		}
		writeJSON(w, http.StatusOK, map[string]any{"occurrences": out})
	default:
		apiError(w, http.StatusNotFound, "no such resource")
	}
}

func (a *API) core(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(r.URL.Path, "/api/v1/cores/"), "/"), 10, 64)
	if err != nil {
		apiError(w, http.StatusNotFound, "no such core")
		return
	}
	c, err := a.st.GetCore(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		apiError(w, http.StatusNotFound, "no core %d", id)
		return
	} else if err != nil {
		apiError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, occurrenceJSON(c, true))
}

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	counts, err := a.st.CoreStatusCounts(r.Context())
	if err != nil {
		apiError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"cores": counts})
}
