package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"meta-memfault-go/internal/testutil/symtest"
	"meta-memfault-go/internal/testutil/yoctoimage"
)

var (
	memfaultBin, serverBin string
	workDir                string
)

func TestMain(m *testing.M) {
	var err error
	workDir, err = os.MkdirTemp("", "memfault-cli-test-")
	if err == nil {
		memfaultBin, err = symtest.Build(workDir, "meta-memfault-go/cmd/memfault")
	}
	if err == nil {
		serverBin, err = symtest.Build(workDir, "meta-memfault-go/cmd/memfault-server")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(workDir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(workDir)
	os.Exit(code)
}

var (
	imageOnce sync.Once
	imagePath string
	imageELFs []symtest.ELF
)

// testImage is a .tar.gz of five real programs (see symtest.BuildImage), built once.
func testImage(t *testing.T) (string, []symtest.ELF) {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	imageOnce.Do(func() {
		root := filepath.Join(workDir, "root")
		elfs := symtest.BuildImage(t, root)
		symtest.TarGz(t, root, filepath.Join(workDir, "image.tar.gz"))
		imagePath, imageELFs = filepath.Join(workDir, "image.tar.gz"), elfs
	})
	require.NotEmpty(t, imagePath, "the test image could not be built (see the first test that tried)")
	return imagePath, imageELFs
}

// withSymbols returns the build-ids of the image's ELFs that carry DWARF and a build-id.
func withSymbols(elfs []symtest.ELF) []string {
	var ids []string
	for _, e := range elfs {
		if e.Debug && e.BuildID != "" {
			ids = append(ids, e.BuildID)
		}
	}
	return ids
}

type result struct {
	stdout, stderr string
	code           int
	tmp            string // TMPDIR of the run
}

// cli runs memfault with env added to a clean environment (no MEMFAULT_*, TMPDIR of its own,
// the image index cache in a directory of the test's: its runs share it, other tests do not).
// Every run is checked: the token never shows, the temporary directory is left empty, and
// output not on a terminal has no control sequences.
func cli(t *testing.T, env []string, args ...string) result {
	t.Helper()
	r := result{tmp: t.TempDir()}
	cmd := exec.Command(memfaultBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MEMFAULT_") && !strings.HasPrefix(kv, "TMPDIR=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cache := filepath.Join(workDir, "cache", strings.NewReplacer("/", "_").Replace(t.Name()))
	cmd.Env = append(append(cmd.Env, "TMPDIR="+r.tmp, "XDG_CACHE_HOME="+cache), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r.stdout, r.stderr = stdout.String(), stderr.String()
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	t.Logf("memfault %s\n-> exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	require.NotContains(t, r.stdout+r.stderr, symtest.Token, "the token was printed")
	require.NotRegexp(t, "[\x1b\r]", r.stdout+r.stderr, "control characters in output that is not a terminal")
	left, err := os.ReadDir(r.tmp)
	require.NoError(t, err)
	require.Empty(t, left, "temporary files left in TMPDIR")
	return r
}

func creds(url string) []string {
	return []string{"--org", symtest.Org, "--project", symtest.Project, "--org-token", symtest.Token, "--url", url}
}

func args(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

type reportJSON struct {
	Command         string `json:"command"`
	DryRun          bool   `json:"dry_run"`
	DbgImageSkipped bool   `json:"dbg_image_skipped"`
	Input           struct {
		FromCache   bool   `json:"from_cache"`
		ImageSHA256 string `json:"image_sha256"`
		Image       struct {
			Hashed, Compressed, Decompressed int64
		} `json:"image"`
		DbgImage struct {
			Hashed, Compressed, Decompressed int64
		} `json:"dbg_image"`
	} `json:"input"`
	Server struct {
		URL          string `json:"url"`
		Asked        bool   `json:"asked"`
		PresentCheck bool   `json:"present_check"`
	} `json:"server"`
	ELFs []struct {
		Path               string  `json:"path"`
		DebugFile          *string `json:"debug_file"`
		BuildID            string  `json:"build_id"`
		Type               string  `json:"type"`
		HasDebugInfo       bool    `json:"has_debug_info"`
		DebugInfoAvailable bool    `json:"debug_info_available"`
		ServerHas          *bool   `json:"server_has"`
		Uploaded           bool    `json:"uploaded"`
		SymbolSource       string  `json:"symbol_source"`
	} `json:"elfs"`
	Symbols []struct {
		Path    string `json:"path"`
		BuildID string `json:"build_id"`
		Size    int64  `json:"size"`
		Status  string `json:"status"`
		Error   string `json:"error"`
	} `json:"symbols"`
	Skipped []struct {
		Path   string `json:"path"`
		Reason string `json:"reason"`
	} `json:"skipped"`
	Failed []struct {
		Path  string `json:"path"`
		Error string `json:"error"`
	} `json:"failed"`
	UnreadableLater []struct {
		Path    string   `json:"path"`
		BuildID string   `json:"build_id"`
		Reasons []string `json:"reasons"`
	} `json:"unreadable_later"`
	Summary map[string]int64 `json:"summary"`
	Error   string           `json:"error"`
}

func readReport(t *testing.T, path string) reportJSON {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NotContains(t, string(b), symtest.Token, "the token is in the report")
	var r reportJSON
	require.NoError(t, json.Unmarshal(b, &r), string(b))
	return r
}

func TestUploadThenSecondRunSendsNothing(t *testing.T) {
	img, elfs := testImage(t)
	ids := withSymbols(elfs)
	srv := symtest.StartServer(t, serverBin)
	px := symtest.NewProxy(t, srv)

	r := cli(t, nil, args(creds(px.URL), []string{"upload-elf-symbols", "--archive", img})...)
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, "3 symbol files: 3 uploaded")
	for _, id := range ids {
		require.True(t, srv.Present(t, []string{id})[id], "server lacks %s", id)
	}
	reqs := px.Requests()
	require.Equal(t, 3, symtest.CountRequests(reqs, "PUT /upload/", ""), "%q", reqs)
	require.Equal(t, 3, symtest.CountRequests(reqs, "POST /api/", "/upload"), "%q", reqs)
	require.Equal(t, 3, symtest.CountRequests(reqs, "POST /api/", "/symbols"), "%q", reqs)
	// Progress off a terminal: one plain line per file.
	require.Contains(t, r.stderr, "sending 3 files")
	for _, p := range []string{"/usr/bin/prog-a", "/usr/bin/prog-b", "/usr/lib/libhello.so"} {
		require.Regexp(t, `(?m)^\[[123]/3\] uploaded `+regexp.QuoteMeta(p)+` \(build-id [0-9a-f]{40}, [0-9.]+ KiB\)$`, r.stderr)
	}

	px.SetFault(nil)
	r = cli(t, nil, args(creds(px.URL), []string{"upload-elf-symbols", "--archive", img})...)
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, "3 symbol files: 0 uploaded (0 B), 3 already on the server, 0 failed")
	reqs = px.Requests()
	require.Equal(t, []string{"POST /api/v0/organizations/acme/projects/widget/symbols/present"}, reqs, "the second run sent more than the present check")
}

func TestReport(t *testing.T) {
	img, elfs := testImage(t)
	srv := symtest.StartServer(t, serverBin)
	rep := filepath.Join(t.TempDir(), "report.json")

	r := cli(t, nil, args(creds(srv.URL), []string{"upload-elf-symbols", "-a", img, "--report", rep})...)
	require.Equal(t, 0, r.code)
	got := readReport(t, rep)
	require.Equal(t, "upload-elf-symbols", got.Command)
	require.True(t, got.Server.Asked)
	require.True(t, got.Server.PresentCheck)
	require.Len(t, got.ELFs, len(elfs))
	byPath := map[string]int{}
	for i, e := range got.ELFs {
		byPath[e.Path] = i
	}
	for _, want := range elfs {
		i, ok := byPath[want.Path]
		require.True(t, ok, "%s missing from the report", want.Path)
		e := got.ELFs[i]
		require.Equal(t, want.BuildID, e.BuildID, want.Path) // readelf's
		require.Equal(t, want.Debug, e.HasDebugInfo, want.Path)
		require.Equal(t, want.Debug, e.DebugInfoAvailable, want.Path)
		require.NotNil(t, e.DebugFile, "%s: debug_file is always there", want.Path)
		require.Empty(t, *e.DebugFile, want.Path)
		if want.BuildID == "" {
			require.Nil(t, e.ServerHas, want.Path)
		} else {
			require.NotNil(t, e.ServerHas, want.Path)
			require.False(t, *e.ServerHas, "%s: the server was empty before the run", want.Path)
		}
		require.Equal(t, want.Debug && want.BuildID != "", e.Uploaded, want.Path)
	}
	require.Equal(t, "shared", got.ELFs[byPath["/usr/lib/libhello.so"]].Type)
	require.Equal(t, "pie", got.ELFs[byPath["/usr/bin/prog-a"]].Type)

	unreadable := map[string][]string{}
	for _, u := range got.UnreadableLater {
		unreadable[u.Path] = u.Reasons
	}
	require.Len(t, unreadable, 2, "%v", unreadable)
	require.Len(t, unreadable["/usr/bin/nodebug"], 1)
	require.Contains(t, unreadable["/usr/bin/nodebug"][0], "no debug information")
	require.Len(t, unreadable["/usr/bin/nobuildid"], 1)
	require.Contains(t, unreadable["/usr/bin/nobuildid"][0], "no GNU build-id")
	require.Contains(t, r.stdout, "warning: crashes in these 2 shipped ELF files will be unreadable")

	// Skipped also names the image's non-ELF file (reported, not fatal).
	require.Len(t, got.Skipped, 3, "%v", got.Skipped)
	var total int64
	for _, s := range got.Symbols {
		require.Equal(t, "uploaded", s.Status, s.Path)
		total += s.Size
	}
	require.Equal(t, map[string]int64{"elfs": 5, "symbol_files": 3, "uploaded": 3, "already_present": 0, "would_upload": 0,
		"failed": 0, "not_sent": 0, "skipped": 3, "unreadable_later": 2, "bytes_uploaded": total}, got.Summary)
	require.Empty(t, got.Failed)

	// A second run: the server has them all, from before the run.
	r = cli(t, nil, args(creds(srv.URL), []string{"upload-elf-symbols", "-a", img, "--report", rep})...)
	require.Equal(t, 0, r.code)
	got = readReport(t, rep)
	for _, e := range got.ELFs {
		if e.BuildID == "" {
			continue
		}
		require.NotNil(t, e.ServerHas, e.Path)
		require.Equal(t, e.DebugInfoAvailable, *e.ServerHas, e.Path)
		require.False(t, e.Uploaded, e.Path)
	}
	require.EqualValues(t, 3, got.Summary["already_present"])
	require.EqualValues(t, 0, got.Summary["bytes_uploaded"])
}

func TestWrongCredentials(t *testing.T) {
	img, elfs := testImage(t)
	srv := symtest.StartServer(t, serverBin)
	px := symtest.NewProxy(t, srv)

	rep := filepath.Join(t.TempDir(), "report.json")
	r := cli(t, nil, "--org", symtest.Org, "--project", symtest.Project, "--org-token", "not-the-token", "--url", px.URL,
		"upload-elf-symbols", "--archive", img, "--report", rep)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "401 Unauthorized")
	require.Contains(t, r.stderr, "refused the credentials")
	require.Zero(t, symtest.CountRequests(px.Requests(), "PUT", ""))
	require.Contains(t, readReport(t, rep).Error, "401")
	require.Empty(t, srv.Present(t, withSymbols(elfs)))

	// An unknown project: memfault-server answers 404 to the present check as Memfault's
	// cloud would to an unknown path, so the uploads start; the first prepare stops them.
	px.SetFault(nil)
	r = cli(t, nil, "--org", symtest.Org, "--project", "nope", "--org-token", symtest.Token, "--url", px.URL,
		"upload-elf-symbols", "--archive", img, "--concurrency", "1")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "no project acme/nope here")
	require.Contains(t, r.stderr, "check --org, --project and --url")
	require.Equal(t, 1, symtest.CountRequests(px.Requests(), "POST", "/upload"), "uploads went on after the project was refused")
	require.Contains(t, r.stdout, "not sent: 2 files")
}

func TestRetriesThroughServerErrors(t *testing.T) {
	img, elfs := testImage(t)
	srv := symtest.StartServer(t, serverBin)
	px := symtest.NewProxy(t, srv)
	// The first two requests of each kind fail with 500: the present check, prepares, PUTs,
	// commits.
	seen := map[string]int{}
	px.SetFault(func(r *http.Request, _ []byte) int {
		kind := r.Method + " " + r.URL.Path[strings.LastIndex(r.URL.Path, "/"):]
		if r.Method == http.MethodPut {
			kind = "PUT"
		}
		seen[kind]++
		if seen[kind] <= 2 {
			return http.StatusInternalServerError
		}
		return 0
	})
	rep := filepath.Join(t.TempDir(), "report.json")
	r := cli(t, nil, args(creds(px.URL), []string{"upload-elf-symbols", "--archive", img, "--retry-wait", "5ms", "--report", rep})...)
	require.Equal(t, 0, r.code)
	require.Equal(t, 8, px.Injected())
	require.Contains(t, r.stdout, "3 uploaded")
	ids := withSymbols(elfs)
	require.Len(t, srv.Present(t, ids), len(ids))
	got := readReport(t, rep)
	var total int64
	for _, s := range got.Symbols {
		total += s.Size
	}
	require.Equal(t, total, got.Summary["bytes_uploaded"])
}

// failProgB fails, for good, every commit of /usr/bin/prog-b.
func failProgB(r *http.Request, body []byte) int {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/symbols") && bytes.Contains(body, []byte(`"/usr/bin/prog-b"`)) {
		return http.StatusBadGateway
	}
	return 0
}

func TestUploadFailingForGood(t *testing.T) {
	img, elfs := testImage(t)
	srv := symtest.StartServer(t, serverBin)
	px := symtest.NewProxy(t, srv)
	px.SetFault(failProgB)
	rep := filepath.Join(t.TempDir(), "report.json")
	r := cli(t, nil, args(creds(px.URL), []string{"upload-elf-symbols", "--archive", img, "--retry-wait", "1ms", "--retry-max", "2", "--report", rep})...)
	require.Equal(t, 1, r.code)
	require.Equal(t, 3, px.Injected(), "one commit and two retries")
	require.Contains(t, r.stdout, "2 uploaded")
	require.Contains(t, r.stdout, "1 failed")
	require.Regexp(t, `(?m)^failed:\n  /usr/bin/prog-b \(build-id [0-9a-f]{40}\): commit: POST .*/symbols: 502 Bad Gateway: injected by the test proxy$`, r.stdout)
	require.Regexp(t, `(?m)^\[[123]/3\] FAILED   /usr/bin/prog-b `, r.stderr)
	got := readReport(t, rep)
	require.Len(t, got.Failed, 1)
	require.Equal(t, "/usr/bin/prog-b", got.Failed[0].Path)
	require.EqualValues(t, 1, got.Summary["failed"])
	have := srv.Present(t, withSymbols(elfs))
	for _, e := range elfs {
		if e.Debug && e.BuildID != "" {
			require.Equal(t, e.Path != "/usr/bin/prog-b", have[e.BuildID], e.Path)
		}
	}
}

func TestServerWithoutPresentCheck(t *testing.T) {
	img, elfs := testImage(t)
	srv := symtest.StartServer(t, serverBin)
	px := symtest.NewProxy(t, srv)
	// Memfault's cloud has no symbols/present.
	noPresent := func(r *http.Request, _ []byte) int {
		if strings.HasSuffix(r.URL.Path, "/symbols/present") {
			return http.StatusNotFound
		}
		return 0
	}
	for run := 0; run < 2; run++ {
		px.SetFault(noPresent)
		rep := filepath.Join(t.TempDir(), "report.json")
		r := cli(t, nil, args(creds(px.URL), []string{"upload-elf-symbols", "--archive", img, "--report", rep})...)
		require.Equal(t, 0, r.code)
		require.Equal(t, 1, strings.Count(r.stderr, "no present check"), "said once")
		require.Contains(t, r.stdout, "3 uploaded", "run %d: everything is sent", run)
		got := readReport(t, rep)
		require.False(t, got.Server.PresentCheck)
		for _, e := range got.ELFs {
			require.Nil(t, e.ServerHas, e.Path)
		}
	}
	require.Len(t, srv.Present(t, withSymbols(elfs)), 3)
}

func TestDryRun(t *testing.T) {
	img, elfs := testImage(t)
	ids := withSymbols(elfs)
	srv := symtest.StartServer(t, serverBin)
	px := symtest.NewProxy(t, srv)

	// No credentials: the server is not contacted.
	rep := filepath.Join(t.TempDir(), "report.json")
	r := cli(t, nil, "--url", px.URL, "upload-elf-symbols", "--archive", img, "--dry-run", "--report", rep)
	require.Equal(t, 0, r.code)
	require.Empty(t, px.Requests())
	require.Equal(t, 3, strings.Count(r.stdout, "would upload /usr/"))
	require.Contains(t, r.stdout, "the server was not asked")
	got := readReport(t, rep)
	require.True(t, got.DryRun)
	require.False(t, got.Server.Asked)
	require.EqualValues(t, 3, got.Summary["would_upload"])
	for _, e := range got.ELFs {
		require.Nil(t, e.ServerHas)
	}

	// Credentials: only the present check.
	r = cli(t, nil, args(creds(px.URL), []string{"upload-elf-symbols", "--archive", img, "--dry-run"})...)
	require.Equal(t, 0, r.code)
	require.Equal(t, []string{"POST /api/v0/organizations/acme/projects/widget/symbols/present"}, px.Requests())
	require.Equal(t, 3, strings.Count(r.stdout, "would upload /usr/"))
	require.Empty(t, srv.Present(t, ids))

	// After an upload the dry run finds everything present.
	require.Equal(t, 0, cli(t, nil, args(creds(px.URL), []string{"upload-elf-symbols", "--archive", img})...).code)
	px.SetFault(nil)
	r = cli(t, nil, args(creds(px.URL), []string{"upload-elf-symbols", "--archive", img, "--dry-run"})...)
	require.Equal(t, 0, r.code)
	require.Len(t, px.Requests(), 1)
	require.Equal(t, 3, strings.Count(r.stdout, "present      /usr/"))
	require.Contains(t, r.stdout, "0 would be uploaded (0 B), 3 already on the server")
}

func TestCredentialsFromEnvironmentAndFlagOrder(t *testing.T) {
	img, elfs := testImage(t)
	srv := symtest.StartServer(t, serverBin)
	env := []string{"MEMFAULT_ORG=" + symtest.Org, "MEMFAULT_PROJECT=" + symtest.Project, "MEMFAULT_ORG_TOKEN=" + symtest.Token, "MEMFAULT_URL=" + srv.URL}
	r := cli(t, env, "--verbose", "upload-elf-symbols", "--archive", img, "--dry-run")
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, "3 would be uploaded")
	require.NotContains(t, r.stdout, "not asked")
	// TMPDIR is where the work happens.
	require.Regexp(t, `working directory `+regexp.QuoteMeta(r.tmp)+`/memfault-symbols-`, r.stderr)

	// Flags win over the environment; global options after the command work too.
	bad := []string{"MEMFAULT_ORG=" + symtest.Org, "MEMFAULT_PROJECT=" + symtest.Project, "MEMFAULT_ORG_TOKEN=wrong", "MEMFAULT_URL=http://127.0.0.1:1"}
	r = cli(t, bad, "upload-elf-symbols", "--archive", img, "--org-token", symtest.Token, "--url", srv.URL)
	require.Equal(t, 0, r.code)
	require.Len(t, srv.Present(t, withSymbols(elfs)), 3)
}

func TestUsage(t *testing.T) {
	img, _ := testImage(t)
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "Usage: memfault"},
		{"help", []string{"--help"}, 0, "upload-yocto-symbols"},
		{"version", []string{"--version"}, 0, "memfault version "},
		{"unknown command", []string{"upload-symbols"}, 2, `unknown command "upload-symbols"`},
		{"unknown flag", []string{"--colour", "upload-elf-symbols"}, 2, "flag provided but not defined: -colour"},
		{"no archive", []string{"upload-elf-symbols"}, 2, "--archive is required"},
		{"no dbg image", []string{"upload-yocto-symbols", "-i", img}, 2, "--dbg-image is required"},
		{"bad split style", []string{"upload-yocto-symbols", "-i", img, "-d", img, "--package-debug-split-style", "fedora"}, 2, "want one of debug"},
		{"no credentials", []string{"upload-elf-symbols", "-a", img}, 2, "missing --org (or MEMFAULT_ORG), --project (or MEMFAULT_PROJECT), --org-token (or MEMFAULT_ORG_TOKEN)"},
		{"bad concurrency", []string{"upload-elf-symbols", "-a", img, "--concurrency", "0", "--dry-run"}, 2, "--concurrency 0"},
		{"extra argument", []string{"upload-elf-symbols", "-a", img, "more"}, 2, `unexpected argument "more"`},
		{"missing archive", []string{"upload-elf-symbols", "-a", "/nonexistent.tar", "--dry-run"}, 1, "/nonexistent.tar"},
		{"bad url", []string{"--url", "ftp://x", "--org", "o", "--project", "p", "--org-token", symtest.Token, "upload-elf-symbols", "-a", img}, 2, `url "ftp://x"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := cli(t, nil, c.args...)
			require.Equal(t, c.code, r.code)
			require.Contains(t, r.stdout+r.stderr, c.want)
		})
	}
}

// openPTY opens a pseudo-terminal of 80 columns.
func openPTY(t *testing.T) (master, slave *os.File) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	fd := int(m.Fd())
	require.NoError(t, unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	require.NoError(t, err)
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	require.NoError(t, unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 80}))
	return m, s
}

func TestProgressBarOnTerminal(t *testing.T) {
	img, _ := testImage(t)
	srv := symtest.StartServer(t, serverBin)
	px := symtest.NewProxy(t, srv)
	px.SetFault(failProgB)
	m, s := openPTY(t)

	cmd := exec.Command(memfaultBin, args(creds(px.URL), []string{"upload-elf-symbols", "--archive", img, "--retry-wait", "1ms", "--retry-max", "1"})...)
	cmd.Env = append(os.Environ(), "TERM=xterm", "TMPDIR="+t.TempDir())
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, s
	var term bytes.Buffer
	done := make(chan struct{})
	go func() {
		io.Copy(&term, m) // ends with EIO once no process holds the slave
		close(done)
	}()
	err := cmd.Run()
	s.Close()
	<-done
	out := term.String()
	t.Logf("terminal: %q", out)
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 1, ee.ExitCode())
	require.NotContains(t, out+stdout.String(), symtest.Token)

	// The terminal turns \n into \r\n. Every redraw starts with CR + erase-line; the failure
	// is a line of its own above the bar; the final bar is whole and the output ends on a
	// fresh line.
	require.True(t, strings.HasSuffix(out, "\r\n"), "output does not end on a fresh line")
	draws := strings.Split(out, "\r\x1b[K")
	failed := 0
	for _, d := range draws[1:] {
		if strings.HasPrefix(d, "FAILED") {
			failed++
			require.Regexp(t, `^FAILED   /usr/bin/prog-b \(build-id [0-9a-f]{40}\): commit: [^\r\n]*502 Bad Gateway[^\r\n]*\r\n$`, d)
			continue
		}
		require.Regexp(t, `^\[[= ]+\] [0-3]/3 files  [0-9.]+ (B|KiB)/[0-9.]+ KiB(  1 failed)?(\r\n)?$`, d)
		require.LessOrEqual(t, len([]rune(strings.TrimSuffix(d, "\r\n"))), 79, "a bar wider than the terminal: %q", d)
	}
	require.Equal(t, 1, failed, "the failure is printed once, above the bar")
	last := draws[len(draws)-1]
	require.Regexp(t, `^\[=+\] 3/3 files  [0-9.]+ KiB/[0-9.]+ KiB  1 failed\r\n$`, last)
	require.NotContains(t, stdout.String(), "\x1b", "stdout is not the terminal")
}

// TestYoctoSecondRunSkipsDbgImage: once the rootfs is read the server is asked; on a second
// upload of the same image it has every build-id, so nothing is recombined and the -dbg image
// is not read. The report still accounts for every ELF file.
func TestYoctoSecondRunSkipsDbgImage(t *testing.T) {
	yoctoimage.Need(t)
	yoctoimage.Need(t, "eu-unstrip")
	img := yoctoimage.Compile(t, yoctoimage.Default()).Image(t, yoctoimage.StyleWithSrcpkg, yoctoimage.Zstd)
	srv := symtest.StartServer(t, serverBin)
	px := symtest.NewProxy(t, srv)
	rep := filepath.Join(t.TempDir(), "report.json")
	yocto := []string{"upload-yocto-symbols", "-i", img.Rootfs, "-d", img.Dbg, "--report", rep}

	r := cli(t, nil, args(creds(px.URL), yocto)...)
	require.Equal(t, 0, r.code)
	first := readReport(t, rep)
	require.False(t, first.DbgImageSkipped)
	require.EqualValues(t, img.ProgramsWithDebug, first.Summary["uploaded"])
	require.NotContains(t, r.stdout, "-dbg image was not read")

	px.SetFault(nil)
	r = cli(t, nil, args(creds(px.URL), yocto)...)
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, "the -dbg image was not read: the server has the symbols of every ELF file of the image")
	require.Equal(t, []string{"POST /api/v0/organizations/acme/projects/widget/symbols/present"}, px.Requests())
	got := readReport(t, rep)
	require.True(t, got.DbgImageSkipped)
	require.EqualValues(t, img.ProgramsWithDebug, got.Summary["already_present"])
	require.EqualValues(t, img.ProgramsWithDebug, got.Summary["symbol_files"])
	require.EqualValues(t, 0, got.Summary["uploaded"])
	require.Len(t, got.ELFs, len(img.ELFs))
	for _, e := range got.ELFs {
		if e.BuildID == "" {
			continue
		}
		require.NotNil(t, e.ServerHas, e.Path)
		require.True(t, *e.ServerHas, e.Path)
		require.True(t, e.DebugInfoAvailable, e.Path)
		require.Equal(t, "on-server", e.SymbolSource, e.Path)
		require.False(t, e.Uploaded, e.Path)
	}
	for _, s := range got.Symbols {
		require.Equal(t, "present", s.Status, s.Path)
	}
	for _, u := range got.UnreadableLater {
		require.Empty(t, u.BuildID, "%s: readable: the server has its symbols", u.Path)
	}

	// A dry run says the same without reading the -dbg image either.
	r = cli(t, nil, args(creds(px.URL), yocto, []string{"--dry-run"})...)
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, fmt.Sprintf("0 would be uploaded (0 B), %d already on the server", img.ProgramsWithDebug))
	require.Contains(t, r.stdout, "the -dbg image was not read")
}

// TestSecondRunFromCache: a second upload-yocto-symbols of the same .tar.bz2 image, the server
// having everything, reads nothing of either tarball but the rootfs's bytes for their SHA-256:
// the decompressor (lbzip2, logged by a wrapper on PATH) is not started, no byte is decoded
// (input in the report), the server is asked once, and the report is the one reading the
// image gives. --no-cache, MEMFAULT_NO_CACHE and --cache-dir do what they say.
func TestSecondRunFromCache(t *testing.T) {
	yoctoimage.Need(t, "eu-unstrip")
	real, err := exec.LookPath("lbzip2")
	if err != nil {
		t.Skip("lbzip2 not installed")
	}
	bin := t.TempDir()
	runs := filepath.Join(t.TempDir(), "lbzip2-runs")
	require.NoError(t, os.WriteFile(filepath.Join(bin, "lbzip2"),
		[]byte(fmt.Sprintf("#!/bin/sh\necho run >> '%s'\nexec '%s' \"$@\"\n", runs, real)), 0o755))
	lbzip2Runs := func() int {
		b, err := os.ReadFile(runs)
		if os.IsNotExist(err) {
			return 0
		}
		require.NoError(t, err)
		return strings.Count(string(b), "run\n")
	}
	env := []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")}

	img := yoctoimage.Compile(t, yoctoimage.Default()).Image(t, yoctoimage.StyleWithSrcpkg, yoctoimage.Bzip2)
	srv := symtest.StartServer(t, serverBin)
	px := symtest.NewProxy(t, srv)
	dir := t.TempDir()
	rep := func(name string) string { return filepath.Join(dir, name+".json") }
	yocto := func(report string, more ...string) []string {
		return args(creds(px.URL), []string{"upload-yocto-symbols", "-i", img.Rootfs, "-d", img.Dbg, "--report", report}, more)
	}

	// First run: both tarballs decoded by lbzip2, everything uploaded, the index cached.
	r := cli(t, env, yocto(rep("first"))...)
	require.Equal(t, 0, r.code)
	require.Equal(t, 2, lbzip2Runs(), "rootfs and -dbg image")
	first := readReport(t, rep("first"))
	require.EqualValues(t, img.ProgramsWithDebug, first.Summary["uploaded"])
	require.False(t, first.Input.FromCache)

	// Without the cache, everything present: the rootfs is decoded, the -dbg image is not.
	px.SetFault(nil)
	r = cli(t, env, yocto(rep("full"), "--no-cache")...)
	require.Equal(t, 0, r.code)
	require.Equal(t, 3, lbzip2Runs())
	require.NotContains(t, r.stdout, "from the cache")
	full := readReport(t, rep("full"))
	require.False(t, full.Input.FromCache)
	require.Positive(t, full.Input.Image.Decompressed)
	require.Zero(t, full.Input.DbgImage.Decompressed)

	// From the cache: no decompressor, one request.
	px.SetFault(nil)
	r = cli(t, env, yocto(rep("cached"))...)
	require.Equal(t, 0, r.code)
	require.Equal(t, 3, lbzip2Runs(), "lbzip2 ran on a re-run served by the cache")
	require.Equal(t, []string{"POST /api/v0/organizations/acme/projects/widget/symbols/present"}, px.Requests())
	require.Contains(t, r.stdout, "the image was not decompressed: its index came from the cache (sha256 ")
	require.Contains(t, r.stdout, "the -dbg image was not read")
	cached := readReport(t, rep("cached"))
	require.True(t, cached.Input.FromCache)
	require.Equal(t, first.Input.ImageSHA256, cached.Input.ImageSHA256)
	fi, err := os.Stat(img.Rootfs)
	require.NoError(t, err)
	require.Equal(t, fi.Size(), cached.Input.Image.Hashed)
	require.Zero(t, cached.Input.Image.Compressed+cached.Input.Image.Decompressed, "bytes of the rootfs decoded")
	require.Zero(t, cached.Input.DbgImage.Compressed+cached.Input.DbgImage.Decompressed, "bytes of the -dbg image decoded")
	require.Equal(t, withoutInput(t, rep("full")), withoutInput(t, rep("cached")), "the report from the cache differs from the full one")
	require.EqualValues(t, img.ProgramsWithDebug, cached.Summary["already_present"])

	// MEMFAULT_NO_CACHE=1 reads the image; another --cache-dir starts empty and is filled.
	r = cli(t, append(env, "MEMFAULT_NO_CACHE=1"), yocto(rep("env"))...)
	require.Equal(t, 0, r.code)
	require.Equal(t, 4, lbzip2Runs())
	other := filepath.Join(t.TempDir(), "other")
	for i, want := range []int{5, 5} {
		r = cli(t, env, yocto(rep("other"), "--cache-dir", other)...)
		require.Equal(t, 0, r.code)
		require.Equal(t, want, lbzip2Runs(), "run %d with --cache-dir", i)
		require.Equal(t, i == 1, readReport(t, rep("other")).Input.FromCache)
	}
	entries, err := filepath.Glob(filepath.Join(other, "image-index", "*.json"))
	require.NoError(t, err)
	require.Equal(t, []string{filepath.Join(other, "image-index", first.Input.ImageSHA256+".json")}, entries)

	r = cli(t, append(env, "MEMFAULT_NO_CACHE=maybe"), yocto(rep("bad"))...)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "MEMFAULT_NO_CACHE")
}

// withoutInput is a report as generic JSON, without its input section (how it was read).
func withoutInput(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	require.Contains(t, m, "input")
	delete(m, "input")
	return m
}
