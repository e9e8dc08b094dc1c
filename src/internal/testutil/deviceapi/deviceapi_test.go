package deviceapi

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/protocol"
)

const (
	key = "k3y"
	id1 = "0a1b2c3d-0000-4000-8000-000000000001"
)

var dev = map[string]any{"device_serial": "s", "hardware_version": "h", "software_type": "t", "software_version": "v"}

func call(t *testing.T, ctx context.Context, method, url, key string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	require.NoError(t, err)
	if key != "" {
		req.Header.Set(HeaderProjectKey, key)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func js(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

type member struct {
	name   string
	data   []byte
	method uint16
}

func mar(t *testing.T, ms ...member) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, m := range ms {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: m.name, Method: m.method})
		require.NoError(t, err)
		_, err = w.Write(m.data)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func manifest(file string) []byte {
	return js(protocol.Manifest{SchemaVersion: 1, Type: protocol.ManifestTypeCoredump,
		Device: protocol.ManifestDevice{ProjectKey: key}, Metadata: protocol.CoredumpPayload{CoredumpFileName: file}})
}

func goodZip(t *testing.T) []byte {
	return mar(t, member{name: id1 + "/core.elf", data: []byte("core")}, member{name: id1 + "/manifest.json", data: manifest("core.elf")})
}

// doUpload runs prepare, PUT and commit; it returns the last status.
func doUpload(t *testing.T, s *Server, body []byte) int {
	t.Helper()
	ctx := context.Background()
	st, b := call(t, ctx, "POST", s.URL+"/api/v0/upload", key, js(map[string]any{"content_encoding": nil, "size": len(body), "device": dev}))
	require.Equal(t, 200, st, string(b))
	var prep prepared
	require.NoError(t, json.Unmarshal(b, &prep))
	require.True(t, strings.HasPrefix(prep.Data.UploadURL, s.StorageURL))
	if st, _ := call(t, ctx, "PUT", prep.Data.UploadURL, "", body); st != 200 {
		return st
	}
	commit := map[string]any{"file": map[string]any{"token": prep.Data.Token}}
	for k, v := range dev {
		commit[k] = v
	}
	st, _ = call(t, ctx, "POST", s.URL+"/api/v0/upload/mar", key, js(commit))
	return st
}

func TestProtocolAndRecords(t *testing.T) {
	s := New(t, key)
	assert.Equal(t, 202, doUpload(t, s, goodZip(t)))
	assert.Equal(t, 202, doUpload(t, s, goodZip(t)))
	assert.Empty(t, s.Violations())
	got := s.Entries()
	require.Contains(t, got, id1)
	assert.Equal(t, 2, got[id1].Arrivals)
	assert.Equal(t, map[string]int64{"core.elf": 4, "manifest.json": int64(len(manifest("core.elf")))}, got[id1].Files)
	assert.Equal(t, 2, s.Commits())
	assert.Equal(t, 2, s.Requests(Put))

	s.SetDeviceConfig("off", 3, nil)
	st, b := call(t, context.Background(), "POST", s.URL+"/api/v0/device-config", key, js(map[string]any{"device": dev}))
	assert.Equal(t, 200, st)
	assert.JSONEq(t, `{"data":{"config":{"memfault":{"sampling":{"debugging.resolution":"off","logging.resolution":"normal","monitoring.resolution":"normal"}}},"revision":3,"completed":null}}`, string(b))
	assert.Empty(t, s.Violations())
}

func TestViolations(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		do   func(t *testing.T, s *Server)
		want string
	}{
		{"wrong key", func(t *testing.T, s *Server) {
			call(t, ctx, "POST", s.URL+"/api/v0/device-config", "other", js(map[string]any{"device": dev}))
		}, "Memfault-Project-Key"},
		{"unknown path", func(t *testing.T, s *Server) { call(t, ctx, "POST", s.URL+"/api/v1/x", key, nil) }, "unknown path"},
		{"extra field", func(t *testing.T, s *Server) {
			call(t, ctx, "POST", s.URL+"/api/v0/upload", key, js(map[string]any{"content_encoding": nil, "size": 1, "device": dev, "x": 1}))
		}, "unexpected keys"},
		{"encoding", func(t *testing.T, s *Server) {
			call(t, ctx, "POST", s.URL+"/api/v0/upload", key, js(map[string]any{"content_encoding": "gzip", "size": 1, "device": dev}))
		}, "content_encoding"},
		{"empty device field", func(t *testing.T, s *Server) {
			call(t, ctx, "POST", s.URL+"/api/v0/device-config", key, js(map[string]any{"device": map[string]any{
				"device_serial": "", "hardware_version": "h", "software_type": "t", "software_version": "v"}}))
		}, "device_serial"},
		{"unknown token", func(t *testing.T, s *Server) {
			c := map[string]any{"file": map[string]any{"token": "nope"}}
			for k, v := range dev {
				c[k] = v
			}
			call(t, ctx, "POST", s.URL+"/api/v0/upload/mar", key, js(c))
		}, "unknown token"},
		{"deflated member", func(t *testing.T, s *Server) {
			doUpload(t, s, mar(t, member{name: id1 + "/core.elf", data: []byte("core"), method: zip.Deflate},
				member{name: id1 + "/manifest.json", data: manifest("core.elf")}))
		}, "want store"},
		{"no manifest", func(t *testing.T, s *Server) {
			doUpload(t, s, mar(t, member{name: id1 + "/core.elf", data: []byte("core")}))
		}, "no manifest.json"},
		{"attachment not named", func(t *testing.T, s *Server) {
			doUpload(t, s, mar(t, member{name: id1 + "/other", data: []byte("x")}, member{name: id1 + "/manifest.json", data: manifest("core.elf")}))
		}, "manifest names"},
		{"not uuid/file", func(t *testing.T, s *Server) {
			doUpload(t, s, mar(t, member{name: "manifest.json", data: manifest("core.elf")}))
		}, "<uuid>/<file>"},
		{"put size", func(t *testing.T, s *Server) {
			st, b := call(t, ctx, "POST", s.URL+"/api/v0/upload", key, js(map[string]any{"content_encoding": nil, "size": 99, "device": dev}))
			require.Equal(t, 200, st)
			var prep prepared
			require.NoError(t, json.Unmarshal(b, &prep))
			call(t, ctx, "PUT", prep.Data.UploadURL, "", []byte("short"))
		}, "prepared size 99"},
		{"key sent to storage", func(t *testing.T, s *Server) {
			st, b := call(t, ctx, "POST", s.URL+"/api/v0/upload", key, js(map[string]any{"content_encoding": nil, "size": 1, "device": dev}))
			require.Equal(t, 200, st)
			var prep prepared
			require.NoError(t, json.Unmarshal(b, &prep))
			call(t, ctx, "PUT", prep.Data.UploadURL, key, []byte("x"))
		}, "PUT carries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(t, key)
			tc.do(t, s)
			v := s.Violations()
			require.NotEmpty(t, v)
			assert.Contains(t, strings.Join(v, "\n"), tc.want)
			assert.Empty(t, s.Entries())
		})
	}
}

func TestCommitTwice(t *testing.T) {
	s := New(t, key)
	ctx := context.Background()
	body := goodZip(t)
	_, b := call(t, ctx, "POST", s.URL+"/api/v0/upload", key, js(map[string]any{"content_encoding": nil, "size": len(body), "device": dev}))
	var prep prepared
	require.NoError(t, json.Unmarshal(b, &prep))
	c := map[string]any{"file": map[string]any{"token": prep.Data.Token}}
	for k, v := range dev {
		c[k] = v
	}
	st, _ := call(t, ctx, "POST", s.URL+"/api/v0/upload/mar", key, js(c))
	assert.Equal(t, 400, st)
	assert.Contains(t, strings.Join(s.Violations(), "\n"), "before its PUT")

	s = New(t, key)
	_, b = call(t, ctx, "POST", s.URL+"/api/v0/upload", key, js(map[string]any{"content_encoding": nil, "size": len(body), "device": dev}))
	require.NoError(t, json.Unmarshal(b, &prep))
	st, _ = call(t, ctx, "PUT", prep.Data.UploadURL, "", body)
	require.Equal(t, 200, st)
	c["file"] = map[string]any{"token": prep.Data.Token}
	st, _ = call(t, ctx, "POST", s.URL+"/api/v0/upload/mar", key, js(c))
	require.Equal(t, 202, st)
	st, _ = call(t, ctx, "POST", s.URL+"/api/v0/upload/mar", key, js(c))
	assert.Equal(t, 400, st)
	assert.Contains(t, strings.Join(s.Violations(), "\n"), "committed twice")
	assert.Equal(t, 1, s.Entries()[id1].Arrivals)
}

func TestFaults(t *testing.T) {
	s := New(t, key)
	cfg := func(ctx context.Context) int {
		st, _ := call(t, ctx, "POST", s.URL+"/api/v0/device-config", key, js(map[string]any{"device": dev}))
		return st
	}
	s.Fail(DeviceConfig, 2, 503)
	s.Fail(DeviceConfig, 1, 429)
	assert.Equal(t, []int{503, 503, 429, 200}, []int{cfg(context.Background()), cfg(context.Background()), cfg(context.Background()), cfg(context.Background())})

	s.Hang(DeviceConfig, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	assert.Equal(t, 0, cfg(ctx), "no answer")
	assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)

	s.Delay(DeviceConfig, 1, 50*time.Millisecond)
	start = time.Now()
	assert.Equal(t, 200, cfg(context.Background()))
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)

	assert.Equal(t, 6, s.Requests(DeviceConfig))
	assert.Empty(t, s.Violations())

	s.Hang(DeviceConfig, 1) // a request still hanging when the server closes does not block Close
	go cfg(context.Background())
	for s.Requests(DeviceConfig) < 7 {
		time.Sleep(time.Millisecond)
	}
	s.Close()
}

type prepared struct {
	Data struct {
		UploadURL string `json:"upload_url"`
		Token     string `json:"token"`
	} `json:"data"`
}
