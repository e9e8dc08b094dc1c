package ingest

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/server/store"
)

const (
	testKey   = "project-key-1"
	testToken = "org-token-1"
)

type rig struct {
	t     *testing.T
	url   string
	store *store.Store
	cores []int64
}

func newRig(t *testing.T, mod func(*Config)) *rig {
	st, err := store.Open(t.TempDir())
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	cfg := DefaultConfig()
	cfg.ProjectKey, cfg.Org, cfg.Project, cfg.OrgToken = testKey, "acme", "widget", testToken
	cfg.MaxUpload = 1 << 20
	if mod != nil {
		mod(&cfg)
	}
	r := &rig{t: t, store: st}
	s := New(cfg, st, Hooks{CoreStored: func(id int64) { r.cores = append(r.cores, id) }}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func (r *rig) post(path string, hdr map[string]string, body any) (int, map[string]any) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, r.url+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(r.t, err)
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

var device = map[string]string{"Memfault-Project-Key": testKey}

// upload runs prepare, PUT and commit of a MAR zip and returns the commit's status and body.
func (r *rig) upload(zipBytes []byte) (int, map[string]any) {
	st, out := r.post("/api/v0/upload", device, map[string]any{"size": len(zipBytes), "content_encoding": nil})
	require.Equal(r.t, 200, st, "%v", out)
	data := out["data"].(map[string]any)
	req, _ := http.NewRequest(http.MethodPut, data["upload_url"].(string), bytes.NewReader(zipBytes))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(r.t, err)
	resp.Body.Close()
	require.Equal(r.t, 200, resp.StatusCode)
	return r.post("/api/v0/upload/mar", device, map[string]any{"file": map[string]any{"token": data["token"]}})
}

const uuid1 = "0b4f8a36-2b7c-4d6e-9a1f-3c5d7e9f1a2b"
const uuid2 = "1c5a9b47-3c8d-4e7f-8b2a-4d6e8fa02b3c"

func manifest(uuid, core string) string {
	return fmt.Sprintf(`{"schema_version": 1, "collection_time": {"timestamp": "2026-11-26T01:00:00Z"},
		"device": {"project_key": %q, "device_serial": "dev-%s", "hardware_version": "evt", "software_type": "main", "software_version": "1.0"},
		"producer": {"id": "memfaultd", "version": "t"}, "type": "elf-coredump",
		"metadata": {"coredump_file_name": %q, "compression": "gzip"}}`, testKey, uuid[:4], core)
}

type member struct {
	name string
	body []byte
	raw  bool // written with a declared size that lies
	size uint64
}

func makeZip(t *testing.T, members ...member) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, m := range members {
		if m.raw {
			w, err := zw.CreateRaw(&zip.FileHeader{Name: m.name, Method: zip.Deflate, UncompressedSize64: m.size, CompressedSize64: uint64(len(m.body))})
			require.NoError(t, err)
			w.Write(m.body)
			continue
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: m.name, Method: zip.Store})
		require.NoError(t, err)
		w.Write(m.body)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func entry(uuid string) []member {
	core := "core-" + uuid + ".elf.gz"
	return []member{{name: uuid + "/" + core, body: []byte("gzip bytes")}, {name: uuid + "/manifest.json", body: []byte(manifest(uuid, core))}}
}

func TestMARIngest(t *testing.T) {
	r := newRig(t, nil)
	st, out := r.upload(makeZip(t, append(entry(uuid1), entry(uuid2)...)...))
	require.Equal(t, 202, st, "%v", out)
	require.Len(t, r.cores, 2)

	// The same entry again (a device that did not hear the answer): ignored.
	st, out = r.upload(makeZip(t, entry(uuid1)...))
	require.Equal(t, 202, st, "%v", out)
	require.EqualValues(t, 1, out["data"].(map[string]any)["repeated"])
	require.Len(t, r.cores, 2)
	n, err := r.store.EntryArrivals(context.Background(), uuid1)
	require.NoError(t, err)
	require.Equal(t, 2, n)

	c, err := r.store.GetCore(context.Background(), r.cores[0])
	require.NoError(t, err)
	require.Equal(t, "gzip", c.Compression)
	require.Equal(t, "1.0", c.SoftwareVersion)
	require.Equal(t, "pending", c.Status)

	st, out = r.post("/api/v0/device-config", device, map[string]any{"device": map[string]any{}})
	require.Equal(t, 200, st)
	require.Equal(t, "normal", out["data"].(map[string]any)["config"].(map[string]any)["memfault"].(map[string]any)["sampling"].(map[string]any)["debugging.resolution"])
}

func TestMARHostile(t *testing.T) {
	bomb := func() []byte {
		// 1 MiB of zeros deflates to about a kilobyte; the header claims 100 bytes.
		var z bytes.Buffer
		fw, _ := zipDeflate(&z)
		fw.Write(make([]byte, 1<<20))
		fw.Close()
		return z.Bytes()
	}()
	core := "core-" + uuid1 + ".elf.gz"
	for _, tc := range []struct {
		name    string
		members []member
		want    string
	}{
		{"dot-dot name", []member{{name: "../../etc/passwd", body: []byte("x")}}, "not a plain relative path"},
		{"absolute name", []member{{name: "/etc/passwd", body: []byte("x")}}, "not a plain relative path"},
		{"not a uuid", []member{{name: "foo/manifest.json", body: []byte("{}")}}, "want <uuid>/<file>"},
		{"no manifest", []member{{name: uuid1 + "/core.elf", body: []byte("x")}}, "no manifest.json"},
		{"bad manifest", []member{{name: uuid1 + "/manifest.json", body: []byte("{")}}, "manifest.json"},
		{"core missing", []member{{name: uuid1 + "/manifest.json", body: []byte(manifest(uuid1, core))}}, "not in the zip"},
		{"zip bomb", []member{{name: uuid1 + "/" + core, body: bomb, raw: true, size: 100}, {name: uuid1 + "/manifest.json", body: []byte(manifest(uuid1, core))}}, "MAR rejected: entry " + uuid1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, nil)
			// A good entry in the same zip must not be stored either.
			members := append(entry(uuid2), tc.members...)
			st, out := r.upload(makeZip(t, members...))
			require.Equal(t, 400, st, "%v", out)
			require.Contains(t, fmt.Sprint(out), tc.want)
			require.Empty(t, r.cores)
			n, err := r.store.EntryArrivals(context.Background(), uuid2)
			require.NoError(t, err)
			require.Zero(t, n, "nothing stored half")
		})
	}

	t.Run("not a zip", func(t *testing.T) {
		r := newRig(t, nil)
		st, out := r.upload([]byte("this is not a zip file at all"))
		require.Equal(t, 400, st)
		require.Contains(t, fmt.Sprint(out), "not a zip")
	})
}

func zipDeflate(w io.Writer) (io.WriteCloser, error) {
	return flateWriter(w)
}

func TestAuthAndLimits(t *testing.T) {
	r := newRig(t, nil)
	st, _ := r.post("/api/v0/upload", map[string]string{"Memfault-Project-Key": "wrong"}, map[string]any{"size": 10})
	require.Equal(t, 401, st)
	st, _ = r.post("/api/v0/upload", nil, map[string]any{"size": 10})
	require.Equal(t, 401, st)
	st, _ = r.post("/api/v0/upload", device, map[string]any{"size": 2 << 20})
	require.Equal(t, 413, st)

	// A PUT larger than prepared.
	_, out := r.post("/api/v0/upload", device, map[string]any{"size": 10})
	req, _ := http.NewRequest(http.MethodPut, out["data"].(map[string]any)["upload_url"].(string), strings.NewReader(strings.Repeat("x", 100)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 413, resp.StatusCode)

	st, _ = r.post("/api/v0/organizations/acme/projects/widget/upload", map[string]string{"Authorization": "Bearer nope"}, map[string]any{"size": 10})
	require.Equal(t, 401, st)
	st, _ = r.post("/api/v0/organizations/acme/projects/other/upload", map[string]string{"Authorization": "Bearer " + testToken}, map[string]any{"size": 10})
	require.Equal(t, 404, st)
}

// uploadSymbols prepares, PUTs and commits a symbol file with basic auth, as Memfault's CLI does.
func (r *rig) uploadSymbols(body []byte) (int, map[string]any) {
	auth := map[string]string{"Authorization": "Basic " + basic("", testToken)}
	st, out := r.post("/api/v0/organizations/acme/projects/widget/upload", auth, map[string]any{"kind": "SYMBOL_FILE", "size": len(body)})
	require.Equal(r.t, 200, st, "%v", out)
	data := out["data"].(map[string]any)
	req, _ := http.NewRequest(http.MethodPut, data["upload_url"].(string), bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(r.t, err)
	resp.Body.Close()
	return r.post("/api/v0/organizations/acme/projects/widget/symbols", auth, map[string]any{"file": map[string]any{"token": data["token"], "name": "threads"}})
}

func TestSymbols(t *testing.T) {
	r := newRig(t, nil)
	bin, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "cores", "x86_64", "threads"))
	require.NoError(t, err)
	st, out := r.uploadSymbols(bin)
	require.Equal(t, 202, st, "%v", out)
	id := out["data"].(map[string]any)["build_id"].(string)
	require.Len(t, id, 40)

	auth := map[string]string{"Authorization": "Bearer " + testToken}
	st, out = r.post("/api/v0/organizations/acme/projects/widget/symbols/present", auth, map[string]any{"build_ids": []string{id, "00ff"}})
	require.Equal(t, 200, st)
	require.Equal(t, []any{id}, out["data"].(map[string]any)["present"])
	require.Equal(t, []any{"00ff"}, out["data"].(map[string]any)["missing"])

	// Not an ELF, and an ELF whose note header lies about its size.
	st, out = r.uploadSymbols([]byte("#!/bin/sh\necho not elf\n"))
	require.Equal(t, 400, st)
	require.Contains(t, fmt.Sprint(out), "not an ELF file")
	lying := append([]byte(nil), bin...)
	corruptSectionSizes(t, lying)
	st, out = r.uploadSymbols(lying)
	require.Equal(t, 400, st, "%v", out)
}
