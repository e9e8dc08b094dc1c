package ingest

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"

	"meta-memfault-go/internal/server/store"
)

// ErrNoBuildID is returned for an ELF file without a GNU build-id note.
var ErrNoBuildID = errors.New("no GNU build-id")

const maxNoteRead = 64 << 10

// BuildID reads the GNU build-id of an ELF file of size bytes without trusting its headers:
// every note range is checked against the file size before it is read.
func BuildID(r io.ReaderAt, size int64) (string, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return "", fmt.Errorf("not an ELF file: %w", err)
	}
	type rng struct{ off, n uint64 }
	var notes []rng
	for _, p := range f.Progs {
		if p.Type == elf.PT_NOTE {
			notes = append(notes, rng{p.Off, p.Filesz})
		}
	}
	for _, s := range f.Sections {
		if s.Type == elf.SHT_NOTE {
			notes = append(notes, rng{s.Offset, s.Size})
		}
	}
	for _, n := range notes {
		if n.n == 0 || n.n > maxNoteRead || n.off > uint64(size) || n.n > uint64(size)-n.off {
			continue
		}
		b := make([]byte, n.n)
		if _, err := r.ReadAt(b, int64(n.off)); err != nil {
			continue
		}
		if id := findBuildID(b, f.ByteOrder); id != "" {
			return id, nil
		}
	}
	return "", ErrNoBuildID
}

func findBuildID(b []byte, bo binary.ByteOrder) string {
	for len(b) >= 12 {
		namesz, descsz, typ := uint64(bo.Uint32(b)), uint64(bo.Uint32(b[4:])), bo.Uint32(b[8:])
		nameEnd := 12 + namesz
		descOff := (nameEnd + 3) &^ 3
		descEnd := descOff + descsz
		if descEnd > uint64(len(b)) || nameEnd > uint64(len(b)) {
			return ""
		}
		if typ == 3 && bytes.Equal(bytes.TrimRight(b[12:nameEnd], "\x00"), []byte("GNU")) && descsz > 0 {
			return hex.EncodeToString(b[descOff:descEnd])
		}
		next := (descEnd + 3) &^ 3
		if next > uint64(len(b)) {
			return ""
		}
		b = b[next:]
	}
	return ""
}

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
	id, err := BuildID(f, u.Size)
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
