package ingest

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"

	"meta-memfault-go/internal/elfcore"
	"meta-memfault-go/internal/server/store"
)

var buildIDRe = regexp.MustCompile(`^[0-9a-f]{2,128}$`)

func (s *Server) commitSymbols(w http.ResponseWriter, r *http.Request, body []byte) {
	u, ok := s.committedUpload(r.Context(), w, body, "symbols")
	if !ok {
		return
	}
	var req struct {
		File struct {
			Name string `json:"name"`
		} `json:"file"`
	}
	json.Unmarshal(body, &req)
	f, err := s.store.OpenBlob(u.Blob)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	defer f.Close()
	id, err := elfcore.FileBuildID(f, u.Size)
	if err != nil {
		apiError(w, http.StatusBadRequest, "symbol file rejected: %v", err)
		return
	}
	if fresh, err := s.store.MarkCommitted(r.Context(), u.Token); err != nil {
		apiError(w, http.StatusInternalServerError, "%v", err)
		return
	} else if !fresh {
		apiError(w, http.StatusConflict, "upload already committed")
		return
	}
	name := req.File.Name
	if name == "" {
		name = "build-id " + id
	}
	added, err := s.store.PutSymbol(r.Context(), store.Symbol{BuildID: id, Blob: u.Blob, Name: name, Size: u.Size})
	if err != nil {
		apiError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	if added {
		n, err := s.store.RequeueForBuildID(r.Context(), id)
		if err != nil {
			s.log.Error("requeue cores", "build_id", id, "err", err)
		}
		s.log.Info("symbols stored", "build_id", id, "name", name, "requeued_cores", n)
		s.hooks.SymbolsAdded(id)
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"data": map[string]any{"build_id": id, "added": added}})
}

// symbolsPresent answers {"build_ids": [...]} with which are stored: the uploader sends only
// the rest.
func (s *Server) symbolsPresent(w http.ResponseWriter, r *http.Request, body []byte) {
	var req struct {
		BuildIDs []string `json:"build_ids"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.BuildIDs) > 100000 {
		apiError(w, http.StatusBadRequest, `want {"build_ids": ["hex", ...]} (at most 100000)`)
		return
	}
	for i, id := range req.BuildIDs {
		id = strings.ToLower(id)
		if !buildIDRe.MatchString(id) {
			apiError(w, http.StatusBadRequest, "build id %q is not hex", id)
			return
		}
		req.BuildIDs[i] = id
	}
	have, err := s.store.HaveSymbols(r.Context(), req.BuildIDs)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	present, missing := []string{}, []string{}
	for _, id := range req.BuildIDs {
		if have[id] {
			present = append(present, id)
		} else {
			missing = append(missing, id)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"present": present, "missing": missing}})
}
