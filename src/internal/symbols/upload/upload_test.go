package upload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/symbols/debugpkg"
	"meta-memfault-go/internal/testutil/symtest"
)

var serverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "symbols-upload-test-")
	if err == nil {
		serverBin, err = symtest.Build(dir, "meta-memfault-go/cmd/memfault-server")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// symbols builds the test programs and returns the ones with DWARF and a build-id as
// symbol files, and their total size.
func symbols(t *testing.T) ([]debugpkg.Symbol, int64) {
	root := t.TempDir()
	var syms []debugpkg.Symbol
	var total int64
	for _, e := range symtest.BuildImage(t, root) {
		if !e.Debug || e.BuildID == "" {
			continue
		}
		file := filepath.Join(root, e.Path)
		st, err := os.Stat(file)
		require.NoError(t, err)
		syms = append(syms, debugpkg.Symbol{BuildID: e.BuildID, Path: e.Path, File: file, Size: st.Size(), Source: "binary"})
		total += st.Size()
	}
	require.Len(t, syms, 3)
	return syms, total
}

func ids(syms []debugpkg.Symbol) []string {
	var out []string
	for _, s := range syms {
		out = append(out, s.BuildID)
	}
	return out
}

func client(t *testing.T, url string, mod func(*Config)) *Client {
	cfg := Config{BaseURL: url, Org: symtest.Org, Project: symtest.Project, OrgToken: symtest.Token, RetryWait: time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	require.NoError(t, err)
	return c
}

// lastBar is the last drawn bar in out.
func lastBar(out string) string {
	draws := strings.Split(out, eraseLine)
	return strings.TrimSuffix(draws[len(draws)-1], "\n")
}

func TestUploadAllRetriesAndSendsOnlyWhatIsMissing(t *testing.T) {
	syms, total := symbols(t)
	srv := symtest.StartServer(t, serverBin)
	px := symtest.NewProxy(t, srv)
	// Every PUT fails once, after the proxy has read the whole body: the progress has to take
	// those bytes back.
	puts := map[string]int{}
	px.SetFault(func(r *http.Request, _ []byte) int {
		if r.Method != http.MethodPut {
			return 0
		}
		puts[r.URL.Path]++
		if puts[r.URL.Path] == 1 {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	var out bytes.Buffer
	bar := NewBar(&out, 100)
	bar.throttle = 0 // draw on every call
	c := client(t, px.URL, func(c *Config) { c.Progress = bar })

	have, err := c.Present(context.Background(), ids(syms))
	require.NoError(t, err)
	require.Empty(t, have)

	sum := c.UploadAll(context.Background(), syms)
	require.NoError(t, sum.Err)
	require.True(t, sum.OK())
	require.True(t, sum.PresentChecked)
	require.ElementsMatch(t, ids(syms), sum.Uploaded)
	require.Empty(t, sum.Present)
	require.Equal(t, total, sum.Bytes)
	require.Equal(t, 3, px.Injected())
	require.Equal(t, 6, symtest.CountRequests(px.Requests(), "PUT ", ""))
	require.Regexp(t, `^\[=+\] 3/3 files  [0-9.]+ KiB/[0-9.]+ KiB$`, lastBar(out.String()))
	require.Contains(t, lastBar(out.String()), fmt.Sprintf("%s/%s", HumanBytes(total), HumanBytes(total)))
	require.True(t, strings.HasSuffix(out.String(), "\n"))
	// The failed attempts' bytes were taken back.
	require.Equal(t, total, bar.sent)

	have, err = c.Present(context.Background(), ids(syms))
	require.NoError(t, err)
	require.Len(t, have, 3)

	px.SetFault(nil)
	sum = c.UploadAll(context.Background(), syms)
	require.True(t, sum.OK())
	require.Empty(t, sum.Uploaded)
	require.ElementsMatch(t, ids(syms), sum.Present)
	require.Equal(t, []string{"POST /api/v0/organizations/acme/projects/widget/symbols/present"}, px.Requests())
}

func TestPresentMissingOnServer(t *testing.T) {
	syms, _ := symbols(t)
	srv := symtest.StartServer(t, serverBin)
	px := symtest.NewProxy(t, srv)
	px.SetFault(func(r *http.Request, _ []byte) int {
		if strings.HasSuffix(r.URL.Path, "/symbols/present") {
			return http.StatusNotFound
		}
		return 0
	})
	var out bytes.Buffer
	c := client(t, px.URL, func(c *Config) { c.Progress = NewLines(&out) })
	_, err := c.Present(context.Background(), ids(syms))
	require.ErrorIs(t, err, ErrNoPresentCheck)

	sum := c.UploadAll(context.Background(), syms)
	require.True(t, sum.OK())
	require.False(t, sum.PresentChecked)
	require.Len(t, sum.Uploaded, 3)
	require.Equal(t, 1, strings.Count(out.String(), "no present check"))
	require.Len(t, srv.Present(t, ids(syms)), 3)
}

func TestFatalAnswerStopsTheRun(t *testing.T) {
	syms, _ := symbols(t)
	srv := symtest.StartServer(t, serverBin)
	px := symtest.NewProxy(t, srv)
	c := client(t, px.URL, func(c *Config) { c.Project = "elsewhere"; c.Concurrency = 1 })
	sum := c.UploadAll(context.Background(), syms)
	require.Error(t, sum.Err)
	var he *HTTPError
	require.ErrorAs(t, sum.Err, &he)
	require.Equal(t, http.StatusNotFound, he.StatusCode)
	require.Len(t, sum.Failed, 1)
	require.Len(t, sum.NotSent, 2)
	require.Equal(t, 1, symtest.CountRequests(px.Requests(), "POST ", "/upload"))
	require.False(t, sum.OK())

	// A wrong token is refused at the present check: nothing is tried.
	px.SetFault(nil)
	c = client(t, px.URL, func(c *Config) { c.OrgToken = "wrong" })
	sum = c.UploadAll(context.Background(), syms)
	require.ErrorAs(t, sum.Err, &he)
	require.Equal(t, http.StatusUnauthorized, he.StatusCode)
	require.Len(t, sum.NotSent, 3)
	require.Len(t, px.Requests(), 1)
}

func TestCancelledRunSendsNothing(t *testing.T) {
	syms, _ := symbols(t)
	srv := symtest.StartServer(t, serverBin)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sum := client(t, srv.URL, nil).UploadAll(ctx, syms)
	require.ErrorIs(t, sum.Err, context.Canceled)
	require.Len(t, sum.NotSent, 3)
	require.Empty(t, srv.Present(t, ids(syms)))
}

func TestUploadRejectsWhatIsNotAFile(t *testing.T) {
	srv := symtest.StartServer(t, serverBin)
	c := client(t, srv.URL, nil)
	err := c.Upload(context.Background(), debugpkg.Symbol{BuildID: "00", Path: "/x", File: t.TempDir()})
	require.ErrorContains(t, err, "not a regular file")
	empty := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	require.ErrorContains(t, c.Upload(context.Background(), debugpkg.Symbol{BuildID: "00", Path: "/x", File: empty}), "empty file")
	// Not an ELF file: the server refuses the commit and says why.
	junk := filepath.Join(t.TempDir(), "junk")
	require.NoError(t, os.WriteFile(junk, []byte("not an ELF file"), 0o644))
	err = c.Upload(context.Background(), debugpkg.Symbol{BuildID: "00", Path: "/junk", File: junk})
	var he *HTTPError
	require.ErrorAs(t, err, &he)
	require.Equal(t, http.StatusBadRequest, he.StatusCode)
	require.Contains(t, err.Error(), "commit: ")
	require.Contains(t, err.Error(), "symbol file rejected")
}

func TestNewChecksConfig(t *testing.T) {
	for _, c := range []Config{
		{BaseURL: "ftp://h", Org: "o", Project: "p", OrgToken: "t"},
		{BaseURL: "http://", Org: "o", Project: "p", OrgToken: "t"},
		{BaseURL: "http://h", Project: "p", OrgToken: "t"},
		{BaseURL: "http://h", Org: "o", Project: "p"},
	} {
		_, err := New(c)
		require.Error(t, err, "%+v", c)
	}
	_, err := New(Config{BaseURL: "ftp://user:secret@h/?k=secret", Org: "o", Project: "p", OrgToken: "t"})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "secret")
}

func TestRedact(t *testing.T) {
	require.Equal(t, "https://h.example/upload/x", Redact("https://user:pw@h.example/upload/x?X-Amz-Signature=abc#f"))
}

func TestBarRendering(t *testing.T) {
	var out bytes.Buffer
	b := NewBar(&out, 60)
	b.throttle = 0
	b.Note("before the start")
	b.Start(3, 3000)
	b.Sent(1000)
	b.Done(FileResult{Symbol: debugpkg.Symbol{Path: "/a", BuildID: "aa"}, Status: Uploaded, Bytes: 1000})
	b.Note("a note")
	b.Sent(700)
	b.Sent(-700) // the attempt restarted
	b.Done(FileResult{Symbol: debugpkg.Symbol{Path: "/b\x1b[2J", BuildID: "bb"}, Status: Failed, Err: errors.New("put: 500")})
	b.Sent(5000) // more than announced: shown as the total
	b.Done(FileResult{Symbol: debugpkg.Symbol{Path: "/c", BuildID: "cc"}, Status: Uploaded, Bytes: 2000})
	b.Finish()
	b.Finish() // twice: nothing more
	s := out.String()
	require.True(t, strings.HasPrefix(s, "before the start\n"))
	require.Contains(t, s, eraseLine+"a note\n")
	require.Contains(t, s, eraseLine+"FAILED   /b?[2J (build-id bb): put: 500\n", "the escape of a hostile name is neutralised")
	require.Equal(t, "["+strings.Repeat("=", 20)+"] 3/3 files  2.9 KiB/2.9 KiB  1 failed", lastBar(s))
	require.True(t, strings.HasSuffix(s, "  1 failed\n"))
	for _, d := range strings.Split(s, eraseLine) {
		line, _, _ := strings.Cut(d, "\n")
		if strings.HasPrefix(line, "[") {
			require.LessOrEqual(t, len([]rune(line)), 59, line)
		}
	}
	// Too narrow for a bar: the counts alone.
	out.Reset()
	b = NewBar(&out, 30)
	b.Start(2, 10<<20)
	b.Finish()
	require.Equal(t, eraseLine+"0/2 files  0 B/10.0 MiB"+eraseLine+"0/2 files  0 B/10.0 MiB\n", out.String())
}

func TestLinesArePlain(t *testing.T) {
	var out bytes.Buffer
	l := NewLines(&out)
	l.Start(2, 2048)
	l.Sent(1024)
	l.Done(FileResult{Symbol: debugpkg.Symbol{Path: "/usr/bin/\x1b]0;pwned\x07x\r", BuildID: "ab"}, Status: Uploaded, Bytes: 1024})
	l.Done(FileResult{Symbol: debugpkg.Symbol{Path: "/y"}, Status: Failed, Err: errors.New("no GNU build-id")})
	l.Note("note\x1b[31m")
	l.Finish()
	require.Equal(t, "sending 2 files (2.0 KiB)\n"+
		"[1/2] uploaded /usr/bin/?]0;pwned?x? (build-id ab, 1.0 KiB)\n"+
		"[2/2] FAILED   /y (build-id none): no GNU build-id\n"+
		"note?[31m\n", out.String())
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		require.Equal(t, want, HumanBytes(n))
	}
}

func TestPresentInBatches(t *testing.T) {
	syms, _ := symbols(t)
	srv := symtest.StartServer(t, serverBin)
	px := symtest.NewProxy(t, srv)
	c := client(t, px.URL, nil)
	require.True(t, c.UploadAll(context.Background(), syms[:1]).OK())
	px.SetFault(nil)

	// More build-ids than one request carries (memfault-server reads 1 MiB of JSON at most):
	// 40-digit ids like GNU ld's, plus a known one in the second batch, in upper case.
	var many []string
	for i := 0; i < presentBatch+10; i++ {
		many = append(many, fmt.Sprintf("%040x", i+1))
	}
	many[presentBatch+3] = strings.ToUpper(syms[0].BuildID)
	have, err := c.Present(context.Background(), many)
	require.NoError(t, err)
	require.Equal(t, map[string]bool{syms[0].BuildID: true}, have)
	require.Len(t, px.Requests(), 2)
}
