// Package e2e holds tests that cross the wings: what a device captures and uploads, the real
// memfault-server binary ingests, unwinds, symbolizes and groups; gdb on the kernel's full core
// is the oracle. Test files only.
package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/device/config"
	"meta-memfault-go/internal/device/handler"
	"meta-memfault-go/internal/device/procfs"
	"meta-memfault-go/internal/device/staging"
	"meta-memfault-go/internal/device/upload"
	"meta-memfault-go/internal/elfcore"
	"meta-memfault-go/internal/protocol"
	"meta-memfault-go/internal/server/group"
	testdata "meta-memfault-go/internal/testutil/fixture"
	"meta-memfault-go/internal/testutil/gdbbt"
	"meta-memfault-go/internal/testutil/kerneltest"
	"meta-memfault-go/internal/testutil/symtest"
)

const projectKey = symtest.DeviceKey

// server is a running memfault-server binary (symtest's: project key symtest.DeviceKey,
// symbols API credentials symtest.Org, Project and Token).
type server struct {
	*symtest.Server
	url string
}

func buildServer(t *testing.T) string {
	t.Helper()
	bin, err := symtest.Build(t.TempDir(), "meta-memfault-go/cmd/memfault-server")
	require.NoError(t, err)
	return bin
}

func startServer(t *testing.T, bin string, args ...string) *server {
	t.Helper()
	s := symtest.StartServer(t, bin, args...)
	return &server{Server: s, url: s.URL}
}

func (s *server) get(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := http.Get(s.url + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, path)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

type apiFrame struct {
	Function string `json:"function"`
	Module   string `json:"module"`
	File     string `json:"file"`
	Line     int    `json:"line"`
	Inlined  bool   `json:"inlined"`
	Method   string `json:"method"`
	Symbols  string `json:"symbols"`
	PC       string `json:"pc"`
}
type apiThread struct {
	TID     int        `json:"tid"`
	Crashed bool       `json:"crashed"`
	Frames  []apiFrame `json:"frames"`
	Stop    string     `json:"stop"`
}
type apiIssue struct {
	ID             int64    `json:"id"`
	Title          string   `json:"title"`
	Occurrences    int      `json:"occurrences"`
	Devices        int      `json:"devices"`
	Versions       []string `json:"software_versions"`
	SymbolsMissing bool     `json:"symbols_missing"`
}

// waitIssues waits until n cores are analysed and returns the issues.
func (s *server) waitIssues(t *testing.T, cores int) []apiIssue {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var st struct {
			Cores map[string]int `json:"cores"`
		}
		s.get(t, "/api/v1/status", &st)
		if st.Cores["done"]+st.Cores["failed"] >= cores && st.Cores["pending"]+st.Cores["running"] == 0 {
			require.Zero(t, st.Cores["failed"], "failed analyses; server log:\n%s", s.Log())
			var out struct{ Issues []apiIssue }
			s.get(t, "/api/v1/issues", &out)
			return out.Issues
		}
		require.True(t, time.Now().Before(deadline), "cores not analysed: %v", st.Cores)
		time.Sleep(50 * time.Millisecond)
	}
}

// allThreads returns the threads of every occurrence of an issue, one list per core.
func (s *server) allThreads(t *testing.T, issue int64) [][]apiThread {
	var occ struct {
		Occurrences []struct {
			CoreID int64 `json:"core_id"`
		} `json:"occurrences"`
	}
	s.get(t, fmt.Sprintf("/api/v1/issues/%d/occurrences", issue), &occ)
	var out [][]apiThread
	for _, o := range occ.Occurrences {
		var c struct {
			Trace struct {
				Threads []apiThread `json:"threads"`
			} `json:"trace"`
		}
		s.get(t, fmt.Sprintf("/api/v1/cores/%d", o.CoreID), &c)
		out = append(out, c.Trace.Threads)
	}
	return out
}

func (s *server) latestThreads(t *testing.T, issue int64) []apiThread {
	var out struct {
		Latest struct {
			Trace struct {
				Threads []apiThread `json:"threads"`
			} `json:"trace"`
		} `json:"latest"`
	}
	s.get(t, fmt.Sprintf("/api/v1/issues/%d", issue), &out)
	return out.Latest.Trace.Threads
}

func fixtureCore(t *testing.T, arch string) []byte { return testdata.Core(t, arch) }

// capture runs the real core handler on a full kernel core (the core standing in for
// /proc/<pid>/mem) and stages the result under persist.
func capture(t *testing.T, full []byte, persist, strategy, serial, version string) {
	t.Helper()
	captureAt(t, full, persist, strategy, serial, version, time.Now)
}

// captureAt is capture with the handler's clock (the core's capture time) given.
func captureAt(t *testing.T, full []byte, persist, strategy, serial, version string, now func() time.Time) {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "memfaultd.conf")
	require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`{"persist_dir": %q, "enable_data_collection": true,
		"enable_dev_mode": true, "project_key": %q, "tmp_dir_min_headroom_kib": 0,
		"coredump": {"capture_strategy": {"type": %q}}}`, persist, projectKey, strategy)), 0o644))
	cfg, err := config.Load(cfgPath)
	require.NoError(t, err)
	c, err := elfcore.ReadCore(bytes.NewReader(full), elfcore.DefaultLimits)
	require.NoError(t, err)
	env := &handler.Env{
		Config: cfg,
		Device: config.DeviceInfo{DeviceID: serial, HardwareVersion: "evt", SoftwareType: "main", SoftwareVersion: version},
		Args:   handler.Args{PID: 1 << 30, Comm: "threads"},
		Core:   bytes.NewReader(full),
		Proc:   procfs.FS{Root: t.TempDir()},
		Log:    handler.NewLogger(io.Discard),
		Now:    now,
		Memory: elfcore.NewSegmentMemory(bytes.NewReader(full), c.Progs),
	}
	_, err = handler.Run(context.Background(), env)
	require.NoError(t, err)
}

// deliver uploads everything staged under persist with memfaultd's upload client.
func deliver(t *testing.T, s *server, persist, serial, version string) {
	t.Helper()
	c := upload.New(upload.Options{BaseURL: s.url, ProjectKey: projectKey, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Device: config.DeviceInfo{DeviceID: serial, HardwareVersion: "evt", SoftwareType: "main", SoftwareVersion: version}})
	rep, err := c.UploadStaged(context.Background(), staging.ForTmpDir(persist), 10<<20, nil)
	require.NoError(t, err)
	require.NotZero(t, rep.Uploaded)
}

type fixture struct {
	arch    string
	sysroot string   // for gdb
	libs    []string // --symbols-dir entries for the libraries the core used
}

var fixtures = []fixture{
	{"x86_64", "", []string{"/lib/x86_64-linux-gnu", "/usr/lib/debug/.build-id"}},
	{"aarch64", "/usr/aarch64-linux-gnu", []string{"/usr/aarch64-linux-gnu/lib"}},
	{"armhf", "/usr/arm-linux-gnueabihf", []string{"/usr/arm-linux-gnueabihf/lib"}},
	{"i386", "/", nil},
}

// TestFidelityFixtures: for every fixture core, captured with threads and with
// kernel_selection, uploaded by memfaultd's client and analysed by memfault-server, the
// server's frames name the same functions per thread as gdb on the kernel's full core.
func TestFidelityFixtures(t *testing.T) {
	if _, err := exec.LookPath("gdb-multiarch"); err != nil {
		t.Skip("gdb-multiarch not installed")
	}
	bin := buildServer(t)
	for _, fx := range fixtures {
		t.Run(fx.arch, func(t *testing.T) {
			dirs := []string{"--symbols-dir", filepath.Join(kerneltest.ModuleRoot(t), "testdata", "cores", fx.arch)}
			for _, l := range fx.libs {
				if _, err := os.Stat(l); err == nil {
					dirs = append(dirs, "--symbols-dir", l)
				}
			}
			s := startServer(t, bin, dirs...)
			full := fixtureCore(t, fx.arch)
			for i, strategy := range []string{"threads", "kernel_selection"} {
				persist := t.TempDir()
				capture(t, full, persist, strategy, "dev-"+strategy, "1.0")
				deliver(t, s, persist, "dev-"+strategy, "1.0")
				issues := s.waitIssues(t, i+1)
				require.Len(t, issues, 1, "both strategies give the same issue")
			}
			issues := s.waitIssues(t, 2)
			require.Equal(t, 2, issues[0].Occurrences)
			require.Equal(t, 2, issues[0].Devices)
			require.Contains(t, issues[0].Title, "crash_segv")

			fullPath := filepath.Join(t.TempDir(), "core")
			require.NoError(t, os.WriteFile(fullPath, full, 0o600))
			exe := filepath.Join(kerneltest.ModuleRoot(t), "testdata", "cores", fx.arch, "threads")
			want, raw, err := gdbbt.Backtraces(context.Background(), exe, fullPath, fx.sysroot)
			require.NoError(t, err)
			cores := s.allThreads(t, issues[0].ID)
			require.Len(t, cores, 2, "one core per capture strategy")
			for i, threads := range cores {
				got := toGDB(threads)
				if d := gdbbt.DiffPrefix(want, got); d != "" {
					t.Errorf("core %d: server frames differ from gdb's:\n%s\ngdb:\n%s", i, d, raw)
				}
			}
		})
	}
}

// toGDB reduces the server's threads to what gdbbt compares: names per frame ("??" where
// gdb would print no name).
func toGDB(threads []apiThread) []gdbbt.Thread {
	var out []gdbbt.Thread
	for _, th := range threads {
		g := gdbbt.Thread{LWP: fmt.Sprint(th.TID)}
		for _, f := range th.Frames {
			name := group.Normalize(f.Function)
			if name == "" {
				name = "??"
			}
			g.Frames = append(g.Frames, name)
		}
		out = append(out, g)
	}
	return gdbbt.Sorted(out)
}

// TestGrouping: the same bug from 20 devices and two builds (x86_64 and aarch64 binaries of the
// same code, so different build-ids and addresses) is one issue with 20 devices and both
// versions; another crash site is another issue.
func TestGrouping(t *testing.T) {
	bin := buildServer(t)
	root := kerneltest.ModuleRoot(t)
	s := startServer(t, bin, "--symbols-dir", filepath.Join(root, "testdata", "cores"),
		"--symbols-dir", filepath.Join(root, "testdata", "corpus", "c-o2-inline"))
	n := 0
	for i, build := range []struct{ arch, version string }{{"x86_64", "1.0"}, {"aarch64", "1.1"}} {
		full := fixtureCore(t, build.arch)
		for d := 0; d < 10; d++ {
			serial := fmt.Sprintf("device-%02d", i*10+d)
			persist := t.TempDir()
			capture(t, full, persist, "threads", serial, build.version)
			deliver(t, s, persist, serial, build.version)
			n++
		}
	}
	issues := s.waitIssues(t, n)
	require.Len(t, issues, 1, "%+v", issues)
	require.Equal(t, 20, issues[0].Occurrences)
	require.Equal(t, 20, issues[0].Devices)
	require.Equal(t, []string{"1.0", "1.1"}, issues[0].Versions)

	// Another program, another crash site.
	other := corpusCore(t, "c-o2-inline", "x86_64")
	persist := t.TempDir()
	capture(t, other, persist, "threads", "device-99", "1.1")
	deliver(t, s, persist, "device-99", "1.1")
	issues = s.waitIssues(t, n+1)
	require.Len(t, issues, 2)
	var versions struct{ Issues []apiIssue }
	s.get(t, "/api/v1/issues?software_version=1.0", &versions)
	require.Len(t, versions.Issues, 1)
	s.get(t, "/api/v1/issues?q=crash_segv", &versions)
	require.Len(t, versions.Issues, 1)
}

func corpusCore(t *testing.T, name, arch string) []byte { return testdata.CorpusCore(t, name, arch) }

// TestSymbolsArriveLater: a core analysed without symbols keeps module + offset frames and its
// issue says symbols are missing; when the binary is uploaded through the symbols API the core
// is analysed again and lands in an issue with names.
func TestSymbolsArriveLater(t *testing.T) {
	bin := buildServer(t)
	s := startServer(t, bin)
	full := fixtureCore(t, "i386") // static: the binary is the only module besides the vDSO
	persist := t.TempDir()
	capture(t, full, persist, "threads", "dev-1", "1.0")
	deliver(t, s, persist, "dev-1", "1.0")
	issues := s.waitIssues(t, 1)
	require.Len(t, issues, 1)
	require.True(t, issues[0].SymbolsMissing)
	require.NotContains(t, issues[0].Title, "crash_segv")
	threads := s.latestThreads(t, issues[0].ID)
	require.NotEmpty(t, threads[0].Frames)
	require.Equal(t, "missing", threads[0].Frames[0].Symbols)

	exe, err := os.ReadFile(filepath.Join(kerneltest.ModuleRoot(t), "testdata", "cores", "i386", "threads"))
	require.NoError(t, err)
	uploadSymbols(t, s, exe)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var out struct{ Issues []apiIssue }
		s.get(t, "/api/v1/issues", &out)
		if len(out.Issues) == 1 && strings.Contains(out.Issues[0].Title, "crash_segv") {
			require.False(t, out.Issues[0].SymbolsMissing, "%+v", out.Issues[0])
			require.Equal(t, 1, out.Issues[0].Occurrences)
			break
		}
		require.True(t, time.Now().Before(deadline), "core not re-analysed: %+v", out.Issues)
		time.Sleep(50 * time.Millisecond)
	}
}

func uploadSymbols(t *testing.T, s *server, body []byte) {
	t.Helper()
	post := func(path string, v any) map[string]any {
		b, _ := json.Marshal(v)
		req, _ := http.NewRequest(http.MethodPost, s.url+"/api/v0/organizations/"+symtest.Org+"/projects/"+symtest.Project+"/"+path, bytes.NewReader(b))
		req.SetBasicAuth("", symtest.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		require.Less(t, resp.StatusCode, 300, "%s: %v", path, out)
		return out
	}
	data := post("upload", map[string]any{"kind": "SYMBOL_FILE", "size": len(body)})["data"].(map[string]any)
	req, _ := http.NewRequest(http.MethodPut, data["upload_url"].(string), bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	post("symbols", map[string]any{"file": map[string]any{"token": data["token"], "name": "threads"}})
}

// TestHostileCores: cores that are not what they claim fail their own analysis, with the reason
// stored, and the server goes on serving.
func TestHostileCores(t *testing.T) {
	bin := buildServer(t)
	s := startServer(t, bin)
	full := fixtureCore(t, "x86_64")
	absurd := append([]byte(nil), full...)
	absurd[56], absurd[57] = 0xfe, 0xff // e_phnum = 65534 program headers that are not there
	for i, body := range [][]byte{
		[]byte("\x1f\x8b\x08\x00 truncated gzip"),
		gzipped(full[:len(full)/3])[:200],
		gzipped(absurd),
		gzipped([]byte("garbage, not an ELF core at all")),
	} {
		stageRaw(t, s, fmt.Sprintf("hostile-%d", i), body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st struct {
			Cores map[string]int `json:"cores"`
		}
		s.get(t, "/api/v1/status", &st)
		if st.Cores["failed"] == 4 {
			break
		}
		require.True(t, time.Now().Before(deadline), "%v", st.Cores)
		time.Sleep(50 * time.Millisecond)
	}
	var c struct{ Error string }
	s.get(t, "/api/v1/cores/1", &c)
	require.NotEmpty(t, c.Error)
	// Still serving: a good core goes through.
	persist := t.TempDir()
	capture(t, full, persist, "threads", "dev-ok", "1.0")
	deliver(t, s, persist, "dev-ok", "1.0")
	var st struct {
		Cores map[string]int `json:"cores"`
	}
	require.Eventually(t, func() bool { s.get(t, "/api/v1/status", &st); return st.Cores["done"] == 1 }, 30*time.Second, 50*time.Millisecond)
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// stageRaw stages an entry whose core file holds body, as a device would send it.
func stageRaw(t *testing.T, s *server, serial string, body []byte) {
	persist := t.TempDir()
	e, err := staging.ForTmpDir(persist).NewEntry()
	require.NoError(t, err)
	name := "core-" + e.UUID + ".elf.gz"
	f, err := e.Create(name)
	require.NoError(t, err)
	f.Write(body)
	f.Close()
	require.NoError(t, e.Commit(&protocol.Manifest{SchemaVersion: 1, Type: protocol.ManifestTypeCoredump,
		CollectionTime: protocol.CollectionTime{Timestamp: time.Now().UTC().Format(time.RFC3339)},
		Device:         protocol.ManifestDevice{ProjectKey: projectKey, DeviceSerial: serial, SoftwareVersion: "1.0", SoftwareType: "main", HardwareVersion: "evt"},
		Producer:       protocol.Producer{ID: "memfaultd", Version: "t"},
		Metadata:       protocol.CoredumpPayload{CoredumpFileName: name, Compression: "gzip"}}))
	deliver(t, s, persist, serial, "1.0")
}
