// Package ingest is memfault-server's front door: the device protocol (prepare, PUT, commit of
// MAR zips, device config) authenticated by project key, and the symbols API authenticated by
// the organization token. Everything it receives is hostile until checked: sizes are bounded
// before reading, zips are validated whole before anything is stored, and a rejected upload
// leaves nothing behind in the database.
package ingest

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"meta-memfault-go/internal/server/store"
)

// Config is what the operator decides.
type Config struct {
	ProjectKey string // Memfault-Project-Key the devices send
	Org        string // organization slug of the symbols API
	Project    string // project slug of the symbols API
	OrgToken   string // organization auth token for symbol uploads
	PublicURL  string // how devices and CI reach this server (upload URLs point here)
	MaxUpload  int64  // bytes of one upload (a MAR zip or a symbol file)
	MaxEntry   int64  // bytes of one file inside a MAR zip, uncompressed
	MaxEntries int    // files in one MAR zip
	Resolution string // debugging resolution handed to devices: off, low, normal, high
}

// DefaultConfig has the limits used when the operator sets none.
func DefaultConfig() Config {
	return Config{MaxUpload: 256 << 20, MaxEntry: 256 << 20, MaxEntries: 10000, Resolution: "normal"}
}

// Hooks tell the rest of the server what arrived.
type Hooks struct {
	CoreStored   func(id int64)       // a new core waits for analysis
	SymbolsAdded func(buildID string) // cores that lacked these symbols were re-queued
}

// Server serves the ingestion APIs.
type Server struct {
	cfg   Config
	store *store.Store
	hooks Hooks
	log   *slog.Logger
}

// New makes the ingestion server.
func New(cfg Config, st *store.Store, hooks Hooks, log *slog.Logger) *Server {
	if cfg.MaxUpload == 0 {
		cfg.MaxUpload = DefaultConfig().MaxUpload
	}
	if cfg.MaxEntry == 0 {
		cfg.MaxEntry = DefaultConfig().MaxEntry
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultConfig().MaxEntries
	}
	if cfg.Resolution == "" {
		cfg.Resolution = "normal"
	}
	if hooks.CoreStored == nil {
		hooks.CoreStored = func(int64) {}
	}
	if hooks.SymbolsAdded == nil {
		hooks.SymbolsAdded = func(string) {}
	}
	return &Server{cfg: cfg, store: st, hooks: hooks, log: log}
}

// Register adds the routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("/api/v0/upload", s.device(s.prepare("mar")))
	mux.HandleFunc("/api/v0/upload/mar", s.device(s.commitMAR))
	mux.HandleFunc("/api/v0/device-config", s.device(s.deviceConfig))
	mux.HandleFunc("/upload/", s.put)
	mux.HandleFunc("/api/v0/organizations/", s.org)
}

// apiError is the error body, shaped like Memfault's.
func apiError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": status, "message": fmt.Sprintf(format, args...)}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func equal(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// device wraps a device API handler: POST only, project key checked.
func (s *Server) device(h func(http.ResponseWriter, *http.Request, []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			apiError(w, http.StatusMethodNotAllowed, "use POST")
			return
		}
		if !equal(r.Header.Get("Memfault-Project-Key"), s.cfg.ProjectKey) {
			apiError(w, http.StatusUnauthorized, "missing or wrong Memfault-Project-Key")
			return
		}
		body, ok := readJSONBody(w, r)
		if !ok {
			return
		}
		h(w, r, body)
	}
}

// readJSONBody reads a request body of at most 1 MiB.
func readJSONBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil {
		apiError(w, http.StatusBadRequest, "read body: %v", err)
		return nil, false
	}
	if len(body) > 1<<20 {
		apiError(w, http.StatusRequestEntityTooLarge, "request body over 1 MiB")
		return nil, false
	}
	return body, true
}

func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Server) publicURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return strings.TrimRight(s.cfg.PublicURL, "/")
	}
	return "http://" + r.Host
}

// prepare answers POST .../upload {"size": N, ...} with an upload URL served by this server.
func (s *Server) prepare(kind string) func(http.ResponseWriter, *http.Request, []byte) {
	return func(w http.ResponseWriter, r *http.Request, body []byte) {
		var req struct {
			Size *int64 `json:"size"`
		}
		if err := json.Unmarshal(body, &req); err != nil || req.Size == nil || *req.Size <= 0 {
			apiError(w, http.StatusBadRequest, `want {"size": N} with N > 0`)
			return
		}
		if *req.Size > s.cfg.MaxUpload {
			apiError(w, http.StatusRequestEntityTooLarge, "upload of %d bytes is over the limit of %d", *req.Size, s.cfg.MaxUpload)
			return
		}
		token := newToken()
		if err := s.store.CreateUpload(r.Context(), token, kind, *req.Size); err != nil {
			apiError(w, http.StatusInternalServerError, "%v", err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{
			"upload_url": s.publicURL(r) + "/upload/" + token,
			"token":      token,
		}})
	}
}

// put receives the body of a prepared upload. The token in the URL is the credential, as with
// a presigned storage URL.
func (s *Server) put(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		apiError(w, http.StatusMethodNotAllowed, "use PUT")
		return
	}
	token := strings.TrimPrefix(r.URL.Path, "/upload/")
	u, err := s.store.GetUpload(r.Context(), token)
	if err != nil {
		apiError(w, http.StatusNotFound, "unknown upload")
		return
	}
	if u.Committed {
		apiError(w, http.StatusConflict, "upload already committed")
		return
	}
	if r.ContentLength > u.Size {
		apiError(w, http.StatusRequestEntityTooLarge, "body of %d bytes, %d were prepared", r.ContentLength, u.Size)
		return
	}
	hash, n, err := s.store.PutBlob(r.Body, u.Size)
	if errors.Is(err, store.ErrTooLarge) {
		apiError(w, http.StatusRequestEntityTooLarge, "body larger than the %d bytes prepared", u.Size)
		return
	}
	if err != nil {
		apiError(w, http.StatusBadRequest, "read body: %v", err)
		return
	}
	if n != u.Size {
		apiError(w, http.StatusBadRequest, "body of %d bytes, %d were prepared", n, u.Size)
		return
	}
	if err := s.store.SetUploadBlob(r.Context(), token, hash); err != nil {
		apiError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// committedUpload resolves the token of a commit request to its stored body.
func (s *Server) committedUpload(ctx context.Context, w http.ResponseWriter, body []byte, kind string) (*store.Upload, bool) {
	var req struct {
		File struct {
			Token string `json:"token"`
		} `json:"file"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.File.Token == "" {
		apiError(w, http.StatusBadRequest, `want {"file": {"token": "..."}}`)
		return nil, false
	}
	u, err := s.store.GetUpload(ctx, req.File.Token)
	if err != nil || u.Kind != kind {
		apiError(w, http.StatusNotFound, "unknown upload token")
		return nil, false
	}
	if u.Blob == "" {
		apiError(w, http.StatusBadRequest, "nothing was PUT for this token")
		return nil, false
	}
	return u, true
}

func (s *Server) deviceConfig(w http.ResponseWriter, r *http.Request, body []byte) {
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{
		"config": map[string]any{"memfault": map[string]any{"sampling": map[string]any{
			"debugging.resolution":  s.cfg.Resolution,
			"logging.resolution":    s.cfg.Resolution,
			"monitoring.resolution": s.cfg.Resolution,
		}}},
		"revision":  1,
		"completed": nil,
	}})
}

// orgAuth accepts the organization token as a bearer token or as the password of basic auth.
func (s *Server) orgAuth(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
		return equal(strings.TrimSpace(tok), s.cfg.OrgToken)
	}
	if enc, ok := strings.CutPrefix(h, "Basic "); ok {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
		if err != nil {
			return false
		}
		_, pw, _ := strings.Cut(string(b), ":")
		return equal(pw, s.cfg.OrgToken)
	}
	return false
}

// org routes /api/v0/organizations/<org>/projects/<project>/{upload,symbols,symbols/present}.
func (s *Server) org(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/api/v0/organizations/"), "/"), "/")
	if len(parts) < 4 || parts[1] != "projects" {
		apiError(w, http.StatusNotFound, "no such endpoint")
		return
	}
	if !s.orgAuth(r) {
		apiError(w, http.StatusUnauthorized, "missing or wrong organization auth token")
		return
	}
	if parts[0] != s.cfg.Org || parts[2] != s.cfg.Project {
		apiError(w, http.StatusNotFound, "no project %s/%s here", parts[0], parts[2])
		return
	}
	if r.Method != http.MethodPost {
		apiError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	body, ok := readJSONBody(w, r)
	if !ok {
		return
	}
	switch strings.Join(parts[3:], "/") {
	case "upload":
		s.prepare("symbols")(w, r, body)
	case "symbols":
		s.commitSymbols(w, r, body)
	case "symbols/present":
		s.symbolsPresent(w, r, body)
	default:
		apiError(w, http.StatusNotFound, "no such endpoint")
	}
}
