// Package deviceapi is a strict fake of Memfault's device API for tests: a real HTTP server on
// 127.0.0.1 that speaks the upload (prepare, PUT, commit) and device-config protocol, checks
// every request, records what was delivered and every protocol violation, and injects faults.
//
// Like the real service, upload URLs point at a second server (the "storage", standing in for
// a presigned storage URL on another host), which must not receive the project key.
//
// Only tests import this package.
package deviceapi

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"meta-memfault-go/internal/protocol"
)

// Kind is a kind of request.
type Kind int

// The kinds of requests.
const (
	Prepare      Kind = iota // POST /api/v0/upload
	Put                      // PUT upload_url
	Commit                   // POST /api/v0/upload/mar
	DeviceConfig             // POST /api/v0/device-config
	numKinds
)

func (k Kind) String() string {
	return [...]string{"prepare", "put", "commit", "device-config"}[k]
}

// Device is the device object of requests.
type Device struct {
	DeviceSerial    string `json:"device_serial"`
	HardwareVersion string `json:"hardware_version"`
	SoftwareType    string `json:"software_type"`
	SoftwareVersion string `json:"software_version"`
}

// Entry is one MAR entry delivered by committed uploads.
type Entry struct {
	UUID     string
	Manifest protocol.Manifest
	Files    map[string]int64 // file name in the entry (manifest.json included) -> size
	Arrivals int              // how many committed zips held it
}

// HeaderProjectKey is the header carrying the project key.
const HeaderProjectKey = "Memfault-Project-Key"

// MaxPut bounds a PUT body kept in memory.
const MaxPut = 256 << 20

type faultMode int

const (
	none       faultMode = iota
	failStatus           // answer status
	hang                 // never answer; return when the request's context ends
	delay                // wait, then answer normally
	hangAfter            // process the request, then never send the answer
)

type fault struct {
	mode   faultMode
	status int
	wait   time.Duration
	left   int
}

type upload struct {
	size      int64
	device    Device
	body      []byte // nil until a PUT succeeded
	committed bool
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	URL        string // base_url
	StorageURL string // where upload URLs point
	ProjectKey string

	api, storage *httptest.Server
	quit         chan struct{}
	closeOnce    sync.Once

	mu         sync.Mutex
	device     *Device // expected device, nil: any complete one
	faults     [numKinds][]*fault
	requests   [numKinds]int
	commits    int
	uploads    map[string]*upload // by token
	entries    map[string]*Entry  // by uuid
	violations []string
	resolution string
	revision   int
	completed  *int
}

// New starts a server expecting projectKey; it is closed when the test ends.
func New(tb testing.TB, projectKey string) *Server {
	s := Start(projectKey)
	tb.Cleanup(s.Close)
	return s
}

// Start starts a server expecting projectKey; the caller closes it.
func Start(projectKey string) *Server {
	s := &Server{
		ProjectKey: projectKey,
		quit:       make(chan struct{}),
		uploads:    map[string]*upload{},
		entries:    map[string]*Entry{},
		resolution: "normal",
		revision:   1,
	}
	s.api = httptest.NewServer(http.HandlerFunc(s.serveAPI))
	s.storage = httptest.NewServer(http.HandlerFunc(s.servePut))
	s.URL, s.StorageURL = s.api.URL, s.storage.URL
	return s
}

// Close stops both servers, ending hung requests.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.quit)
		s.api.Close()
		s.storage.Close()
	})
}

// ExpectDevice makes every request's device object equal d.
func (s *Server) ExpectDevice(d Device) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.device = &d
}

// Fail makes the next n requests of kind k answer status (with a short JSON body).
func (s *Server) Fail(k Kind, n, status int) {
	s.addFault(k, &fault{mode: failStatus, status: status, left: n})
}

// Hang makes the next n requests of kind k never answer: the handler returns only when the
// request's context ends (the client gave up) or the server closes.
func (s *Server) Hang(k Kind, n int) { s.addFault(k, &fault{mode: hang, left: n}) }

// HangAfter makes the next n requests of kind k take effect (a commit is recorded) but never
// answers them: the client cannot know it succeeded and must send again.
func (s *Server) HangAfter(k Kind, n int) { s.addFault(k, &fault{mode: hangAfter, left: n}) }

// Delay makes the next n requests of kind k wait d, then answer normally.
func (s *Server) Delay(k Kind, n int, d time.Duration) {
	s.addFault(k, &fault{mode: delay, wait: d, left: n})
}

func (s *Server) addFault(k Kind, f *fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[k] = append(s.faults[k], f)
}

// SetDeviceConfig sets the answer to device-config requests (default "normal", revision 1,
// completed null).
func (s *Server) SetDeviceConfig(resolution string, revision int, completed *int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resolution, s.revision, s.completed = resolution, revision, completed
}

// Requests returns how many requests of kind k arrived, faulted ones included.
func (s *Server) Requests(k Kind) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[k]
}

// Commits returns how many uploads were committed successfully.
func (s *Server) Commits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commits
}

// Entries returns a copy of the delivered entries by UUID.
func (s *Server) Entries() map[string]Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Entry, len(s.entries))
	for id, e := range s.entries {
		c := *e
		c.Files = make(map[string]int64, len(e.Files))
		for k, v := range e.Files {
			c.Files[k] = v
		}
		out[id] = c
	}
	return out
}

// Violations returns every protocol violation seen, in order.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

func (s *Server) violate(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}

// arrive counts a request and applies the next fault of its kind. It reports whether the
// handler should go on.
func (s *Server) arrive(k Kind, w http.ResponseWriter, r *http.Request) bool {
	_, ok := s.arriveFault(k, w, r)
	return ok
}

// discardResponse swallows an answer.
type discardResponse struct{ header http.Header }

func (d *discardResponse) Header() http.Header         { return d.header }
func (d *discardResponse) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardResponse) WriteHeader(int)             {}

func (s *Server) arriveFault(k Kind, w http.ResponseWriter, r *http.Request) (fault, bool) {
	s.mu.Lock()
	s.requests[k]++
	var f fault
	if q := s.faults[k]; len(q) > 0 {
		f = *q[0]
		if q[0].left--; q[0].left <= 0 {
			s.faults[k] = q[1:]
		}
	}
	s.mu.Unlock()

	switch f.mode {
	case failStatus:
		io.Copy(io.Discard, r.Body)
		writeJSON(w, f.status, map[string]any{"error": map[string]any{"message": fmt.Sprintf("injected %d for %s", f.status, k)}})
		return f, false
	case hang:
		select {
		case <-r.Context().Done():
		case <-s.quit:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		return f, false
	case delay:
		t := time.NewTimer(f.wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return f, false
		case <-s.quit:
			return f, false
		}
	}
	return f, true
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	kind := map[string]Kind{"/api/v0/upload": Prepare, "/api/v0/upload/mar": Commit, "/api/v0/device-config": DeviceConfig}
	k, ok := kind[r.URL.Path]
	if !ok {
		s.violate("%s %s: unknown path", r.Method, r.URL.Path)
		http.NotFound(w, r)
		return
	}
	bad := false
	if r.Method != http.MethodPost {
		s.violate("%s %s: method must be POST", r.Method, r.URL.Path)
		bad = true
	}
	if got := r.Header.Get(HeaderProjectKey); got != s.ProjectKey {
		s.violate("%s %s: %s is %q, want %q", r.Method, r.URL.Path, HeaderProjectKey, got, s.ProjectKey)
		bad = true
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		s.violate("%s %s: Content-Type %q, want application/json", r.Method, r.URL.Path, ct)
		bad = true
	}
	f, ok := s.arriveFault(k, w, r)
	if !ok {
		return
	}
	if f.mode == hangAfter {
		// Do the work into a discarded response, then keep the client waiting.
		w = &discardResponse{header: http.Header{}}
		defer func() {
			select {
			case <-r.Context().Done():
			case <-s.quit:
			}
		}()
	}
	if bad {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "bad request"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		s.violate("%s: read body: %v", k, err)
		return
	}
	switch k {
	case Prepare:
		s.prepare(w, body)
	case Commit:
		s.commit(w, body)
	case DeviceConfig:
		s.deviceConfig(w, body)
	}
}

// object decodes b as a JSON object with exactly the keys named.
func object(b []byte, keys ...string) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("not an object: %s", b)
	}
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			return nil, fmt.Errorf("missing %q in %s", k, b)
		}
	}
	if len(m) != len(keys) {
		return nil, fmt.Errorf("unexpected keys in %s (want only %v)", b, keys)
	}
	return m, nil
}

// device checks a device object (given as its four fields) and returns it.
func (s *Server) checkDevice(m map[string]json.RawMessage) (Device, error) {
	var d Device
	for k, dst := range map[string]*string{
		"device_serial": &d.DeviceSerial, "hardware_version": &d.HardwareVersion,
		"software_type": &d.SoftwareType, "software_version": &d.SoftwareVersion,
	} {
		if err := json.Unmarshal(m[k], dst); err != nil || *dst == "" {
			return d, fmt.Errorf("%s must be a non-empty string, got %s", k, m[k])
		}
	}
	s.mu.Lock()
	want := s.device
	s.mu.Unlock()
	if want != nil && *want != d {
		return d, fmt.Errorf("device %+v, want %+v", d, *want)
	}
	return d, nil
}

var deviceKeys = []string{"device_serial", "hardware_version", "software_type", "software_version"}

func (s *Server) deviceObject(raw json.RawMessage) (Device, error) {
	m, err := object(raw, deviceKeys...)
	if err != nil {
		return Device{}, fmt.Errorf("device: %w", err)
	}
	return s.checkDevice(m)
}

func (s *Server) reject(w http.ResponseWriter, k Kind, err error) {
	s.violate("%s: %v", k, err)
	writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
}

func (s *Server) prepare(w http.ResponseWriter, body []byte) {
	m, err := object(body, "content_encoding", "size", "device")
	if err != nil {
		s.reject(w, Prepare, err)
		return
	}
	if string(m["content_encoding"]) != "null" {
		s.reject(w, Prepare, fmt.Errorf("content_encoding must be null for a zip, got %s", m["content_encoding"]))
		return
	}
	var size int64
	if err := json.Unmarshal(m["size"], &size); err != nil || size <= 0 {
		s.reject(w, Prepare, fmt.Errorf("size must be a positive integer, got %s", m["size"]))
		return
	}
	d, err := s.deviceObject(m["device"])
	if err != nil {
		s.reject(w, Prepare, err)
		return
	}
	token := randomHex()
	s.mu.Lock()
	s.uploads[token] = &upload{size: size, device: d}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{
		"upload_url": s.StorageURL + "/storage/" + token + "?X-Signature=" + randomHex(),
		"token":      token,
	}})
}

func (s *Server) servePut(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.URL.Path, "/storage/")
	if r.Method != http.MethodPut || !ok || r.URL.Query().Get("X-Signature") == "" {
		s.violate("storage: %s %s: want PUT of an upload URL", r.Method, r.URL)
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if r.Header.Get(HeaderProjectKey) != "" {
		s.violate("storage: PUT carries %s (the upload URL is another host)", HeaderProjectKey)
	}
	if !s.arrive(Put, w, r) {
		return
	}
	s.mu.Lock()
	u := s.uploads[token]
	s.mu.Unlock()
	switch {
	case u == nil:
		s.violate("put: unknown token %q", token)
		http.Error(w, "no such upload", http.StatusForbidden)
		return
	case r.ContentLength != u.size:
		s.violate("put: Content-Length %d, prepared size %d", r.ContentLength, u.size)
		http.Error(w, "size mismatch", http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, min(u.size, MaxPut)+1))
	if err != nil {
		return // the client went away mid-body; not a violation
	}
	if int64(len(body)) != u.size {
		s.violate("put: body of %d bytes, prepared size %d", len(body), u.size)
		http.Error(w, "size mismatch", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	late := u.committed
	if !late {
		u.body = body
	}
	s.mu.Unlock()
	if late {
		s.violate("put: upload %s already committed", token)
		http.Error(w, "already committed", http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) commit(w http.ResponseWriter, body []byte) {
	m, err := object(body, append([]string{"file"}, deviceKeys...)...)
	if err != nil {
		s.reject(w, Commit, err)
		return
	}
	d, err := s.checkDevice(m)
	if err != nil {
		s.reject(w, Commit, err)
		return
	}
	f, err := object(m["file"], "token")
	if err != nil {
		s.reject(w, Commit, fmt.Errorf("file: %w", err))
		return
	}
	var token string
	if err := json.Unmarshal(f["token"], &token); err != nil {
		s.reject(w, Commit, fmt.Errorf("file.token must be a string, got %s", f["token"]))
		return
	}
	s.mu.Lock()
	u := s.uploads[token]
	var problem error
	switch {
	case u == nil:
		problem = fmt.Errorf("unknown token %q", token)
	case u.committed:
		problem = fmt.Errorf("token %q committed twice", token)
	case u.body == nil:
		problem = fmt.Errorf("token %q committed before its PUT", token)
	case u.device != d:
		problem = fmt.Errorf("device %+v differs from the prepare's %+v", d, u.device)
	default:
		u.committed = true
	}
	s.mu.Unlock()
	if problem != nil {
		s.reject(w, Commit, problem)
		return
	}
	got, err := s.readMAR(u.body) // u.body is not written once committed
	if err != nil {
		s.reject(w, Commit, fmt.Errorf("zip of token %q: %w", token, err))
		return
	}
	s.mu.Lock()
	s.commits++
	for _, e := range got {
		if old := s.entries[e.UUID]; old != nil {
			old.Arrivals++
			continue
		}
		e.Arrivals = 1
		s.entries[e.UUID] = e
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusAccepted, map[string]any{})
}

var uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// readMAR checks a committed zip: store-only, `<uuid>/<file>` members, each uuid with a parsable
// manifest.json and exactly the attachments its manifest names.
func (s *Server) readMAR(b []byte) ([]*Entry, error) {
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, err
	}
	if len(zr.File) == 0 {
		return nil, fmt.Errorf("empty zip")
	}
	byID := map[string]*Entry{}
	var order []string
	manifests := map[string][]byte{}
	for _, f := range zr.File {
		if f.Method != zip.Store {
			return nil, fmt.Errorf("%s: method %d, want store (0)", f.Name, f.Method)
		}
		id, name, ok := strings.Cut(f.Name, "/")
		if !ok || !uuidRe.MatchString(id) || name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("member %q is not <uuid>/<file>", f.Name)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		data, err := io.ReadAll(rc) // checks the CRC
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		e := byID[id]
		if e == nil {
			e = &Entry{UUID: id, Files: map[string]int64{}}
			byID[id] = e
			order = append(order, id)
		}
		if _, dup := e.Files[name]; dup {
			return nil, fmt.Errorf("%s twice", f.Name)
		}
		e.Files[name] = int64(len(data))
		if name == "manifest.json" {
			manifests[id] = data
		}
	}
	var out []*Entry
	for _, id := range order {
		e := byID[id]
		mb, ok := manifests[id]
		if !ok {
			return nil, fmt.Errorf("%s has no manifest.json", id)
		}
		if err := json.Unmarshal(mb, &e.Manifest); err != nil {
			return nil, fmt.Errorf("%s/manifest.json: %w", id, err)
		}
		man := &e.Manifest
		if man.SchemaVersion != 1 {
			return nil, fmt.Errorf("%s: schema_version %d", id, man.SchemaVersion)
		}
		if man.Device.ProjectKey != s.ProjectKey {
			return nil, fmt.Errorf("%s: manifest project_key %q", id, man.Device.ProjectKey)
		}
		var named []string
		switch man.Type {
		case protocol.ManifestTypeCoredump:
			var meta protocol.CoredumpPayload
			if err := man.DecodeMetadata(&meta); err != nil || meta.CoredumpFileName == "" {
				return nil, fmt.Errorf("%s: metadata without coredump_file_name (%v)", id, err)
			}
			named = []string{meta.CoredumpFileName}
		case protocol.ManifestTypeAttributes:
			var meta protocol.AttributesPayload
			if err := man.DecodeMetadata(&meta); err != nil || meta.Attributes == nil {
				return nil, fmt.Errorf("%s: metadata without attributes (%v)", id, err)
			}
		default:
			return nil, fmt.Errorf("%s: unknown manifest type %q", id, man.Type)
		}
		want := append([]string{"manifest.json"}, named...)
		var have []string
		for n := range e.Files {
			have = append(have, n)
		}
		sort.Strings(want)
		sort.Strings(have)
		if strings.Join(want, "\x00") != strings.Join(have, "\x00") {
			return nil, fmt.Errorf("%s: files %v, manifest names %v", id, have, want)
		}
		out = append(out, e)
	}
	return out, nil
}

func (s *Server) deviceConfig(w http.ResponseWriter, body []byte) {
	m, err := object(body, "device")
	if err != nil {
		s.reject(w, DeviceConfig, err)
		return
	}
	if _, err := s.deviceObject(m["device"]); err != nil {
		s.reject(w, DeviceConfig, err)
		return
	}
	s.mu.Lock()
	res, rev, completed := s.resolution, s.revision, s.completed
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{
		"config": map[string]any{"memfault": map[string]any{"sampling": map[string]any{
			"debugging.resolution":  res,
			"logging.resolution":    "normal",
			"monitoring.resolution": "normal",
		}}},
		"revision":  rev,
		"completed": completed,
	}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func randomHex() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
