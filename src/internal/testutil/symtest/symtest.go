// Package symtest gives the symbols wing's tests a real memfault-server binary on loopback,
// optionally behind a reverse proxy that injects faults, and small real ELF programs built
// with gcc. Test helpers only; no binary imports it.
package symtest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// The server's symbols API credentials, and the project key its devices send.
const (
	Org       = "acme"
	Project   = "widget"
	Token     = "tok-Sup3r-Secret-4711" // distinctive: tests check it never shows up in output
	DeviceKey = "device-key"
)

// Build builds a package of this module (e.g. "meta-memfault-go/cmd/memfault-server") into
// dir and returns the binary's path. For TestMain: call it once per test binary.
func Build(dir, pkg string) (string, error) {
	bin := filepath.Join(dir, filepath.Base(pkg))
	out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}

// Server is a running memfault-server.
type Server struct {
	URL  string
	cmd  *exec.Cmd
	log  *syncBuffer
	stop sync.Once
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// StartServer runs the memfault-server binary on a free loopback port with Org, Project and
// Token; it stops when the test ends.
func StartServer(t *testing.T, bin string, args ...string) *Server {
	t.Helper()
	s := &Server{log: &syncBuffer{}}
	s.cmd = exec.Command(bin, append([]string{"--listen", "127.0.0.1:0", "--data", t.TempDir(),
		"--project-key", DeviceKey, "--org", Org, "--project", Project, "--org-token", Token}, args...)...)
	s.cmd.Stderr = s.log
	stdout, err := s.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, s.cmd.Start())
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("memfault-server log:\n%s", s.log)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, s.log.String())
	_, err = fmt.Sscanf(line, "memfault-server listening on %s", &s.URL)
	require.NoError(t, err, line)
	return s
}

// Stop interrupts the server and waits for it to exit (again: nothing).
func (s *Server) Stop() {
	s.stop.Do(func() {
		s.cmd.Process.Signal(os.Interrupt)
		s.cmd.Wait()
	})
}

// Log is what the server logged so far.
func (s *Server) Log() string { return s.log.String() }

// Present asks the server directly which of ids it stores.
func (s *Server) Present(t *testing.T, ids []string) map[string]bool {
	t.Helper()
	body, err := json.Marshal(map[string]any{"build_ids": ids})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, s.URL+"/api/v0/organizations/"+Org+"/projects/"+Project+"/symbols/present", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+Token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	var ans struct {
		Data struct {
			Present []string `json:"present"`
		} `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&ans))
	have := map[string]bool{}
	for _, id := range ans.Data.Present {
		have[id] = true
	}
	return have
}

// Proxy is a loopback reverse proxy in front of a Server. Fault decides, per request, to
// answer it with a status of its own (0: forward it); upload URLs in prepare answers are
// rewritten to go through the proxy too, so PUTs can fail as well.
type Proxy struct {
	URL string

	mu       sync.Mutex
	fault    func(r *http.Request, body []byte) int
	requests []string // "METHOD path" of every request, faulted or not
	injected int
}

// NewProxy starts a proxy to s; it stops when the test ends.
func NewProxy(t *testing.T, s *Server) *Proxy {
	t.Helper()
	target, err := url.Parse(s.URL)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &Proxy{URL: "http://" + ln.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method != http.MethodPost || !strings.HasSuffix(resp.Request.URL.Path, "/upload") || resp.StatusCode != 200 {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		b = bytes.ReplaceAll(b, []byte(s.URL+"/upload/"), []byte(p.URL+"/upload/"))
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
		return nil
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		if r.Method == http.MethodPost {
			body, _ = io.ReadAll(io.LimitReader(r.Body, 1<<20))
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		p.mu.Lock()
		p.requests = append(p.requests, r.Method+" "+r.URL.Path)
		status := 0
		if p.fault != nil {
			status = p.fault(r, body)
		}
		if status != 0 {
			p.injected++
		}
		p.mu.Unlock()
		if status != 0 {
			io.Copy(io.Discard, r.Body)
			http.Error(w, `{"error":{"code":`+strconv.Itoa(status)+`,"message":"injected by the test proxy"}}`, status)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return p
}

// SetFault installs f (nil: forward everything) and clears the counters.
func (p *Proxy) SetFault(f func(r *http.Request, body []byte) int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault, p.requests, p.injected = f, nil, 0
}

// Requests returns "METHOD path" of every request since the last SetFault.
func (p *Proxy) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...)
}

// Injected is how many answers the proxy made up since the last SetFault.
// CountRequests is how many of reqs (as Requests gives them: "METHOD path") start with prefix
// and end with suffix.
func CountRequests(reqs []string, prefix, suffix string) int {
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r, prefix) && strings.HasSuffix(r, suffix) {
			n++
		}
	}
	return n
}

func (p *Proxy) Injected() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.injected
}

// ELF is one program built for a test image.
type ELF struct {
	Path    string // in the image: /usr/bin/prog-a
	BuildID string // "" for none
	Debug   bool   // carries DWARF
}

// The programs of the test image.
var programs = []struct {
	path, src string
	flags     []string
	debug     bool
	buildID   bool
}{
	{"/usr/bin/prog-a", "int twice(int x) { return 2 * x; }\nint main(int argc, char **argv) { return twice(argc); }\n", []string{"-g", "-O1"}, true, true},
	{"/usr/bin/prog-b", "#include <stdio.h>\nint main(void) { puts(\"b\"); return 0; }\n", []string{"-g"}, true, true},
	{"/usr/lib/libhello.so", "int hello(int x) { return x + 1; }\n", []string{"-g", "-shared", "-fPIC"}, true, true},
	{"/usr/bin/nodebug", "int main(void) { return 3; }\n", []string{"-O1"}, false, true},
	{"/usr/bin/nobuildid", "int main(void) { return 4; }\n", []string{"-g"}, true, false},
}

// BuildImage compiles the test programs with gcc into root (a rootfs tree, plus /etc/hostname)
// and returns them with their build-ids: three with DWARF and a build-id, one without debug
// information, one without a build-id.
func BuildImage(t *testing.T, root string) []ELF {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	src := t.TempDir()
	var elfs []ELF
	for i, p := range programs {
		c := filepath.Join(src, fmt.Sprintf("p%d.c", i))
		require.NoError(t, os.WriteFile(c, []byte(p.src), 0o644))
		out := filepath.Join(root, p.path)
		require.NoError(t, os.MkdirAll(filepath.Dir(out), 0o755))
		args := append(append([]string{}, p.flags...), "-o", out, c)
		if !p.buildID {
			// Debian's gcc asks the linker for a build-id unless told otherwise.
			args = append(args, "-Wl,--build-id=none")
		}
		cmd := exec.Command("gcc", args...)
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, "gcc %v: %s", args, b)
		e := ELF{Path: p.path, Debug: p.debug}
		if p.buildID {
			e.BuildID = readBuildID(t, out)
			require.NotEmpty(t, e.BuildID, "%s has no build-id", p.path)
		}
		elfs = append(elfs, e)
	}
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("device\n"), 0o644))
	return elfs
}

// readBuildID asks readelf (the oracle, not our code) for the build-id.
func readBuildID(t *testing.T, file string) string {
	out, err := exec.Command("readelf", "-n", file).CombinedOutput()
	require.NoError(t, err, string(out))
	for _, line := range strings.Split(string(out), "\n") {
		if id, ok := strings.CutPrefix(strings.TrimSpace(line), "Build ID: "); ok {
			return strings.TrimSpace(id)
		}
	}
	return ""
}

// TarGz packs root into a .tar.gz at out, with "./"-prefixed names as Yocto writes them.
func TarGz(t *testing.T, root, out string) {
	t.Helper()
	f, err := os.Create(out)
	require.NoError(t, err)
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	require.NoError(t, filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = "./" + filepath.ToSlash(rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		r, err := os.Open(p)
		if err != nil {
			return err
		}
		defer r.Close()
		_, err = io.Copy(tw, r)
		return err
	}))
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	require.NoError(t, f.Close())
}
