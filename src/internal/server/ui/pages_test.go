package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/server/store"
	"meta-memfault-go/internal/server/symstore"
	"meta-memfault-go/internal/server/worker"
)

// hostile is what a core or a symbol file could carry in any string: markup, an attribute
// break-out, a URL scheme and a template delimiter.
const hostile = `<script>window.__pwned=1</script>"'><img src=x onerror=alert(1)>{{.}}javascript:alert(1)`

type crash struct {
	serial, version string
	fn, file        string
	line            int
	missing         []string
	captured        time.Time
}

func trace(c crash) worker.Trace {
	return worker.Trace{Version: 1, Arch: "x86_64", Signal: "SIGSEGV", SignalNumber: 11, SignalCode: 1, FaultAddress: "0x0",
		CrashingThread: 7, Process: "threads", Cmdline: []string{"/usr/bin/threads", "segv", hostile},
		Metadata: worker.Metadata{DeviceSerial: c.serial, HardwareVersion: "evt", SoftwareType: "main", SoftwareVersion: c.version, CaptureStrategy: "threads"},
		Logs:     []string{"boot ok", "log line " + hostile},
		Threads: []worker.Thread{
			{TID: 5, Registers: []worker.Register{{Name: "rip", Value: "0x1"}}, Stop: "end of stack",
				Frames: []worker.Frame{{PC: "0x10", Function: "worker_idle", File: "./threads.c", Line: 60, Method: "context", Symbols: "dwarf", InApp: true}}},
			{TID: 7, Crashed: true, Registers: []worker.Register{{Name: "rip", Value: "0x401234"}, {Name: "rsp", Value: hostile}}, Stop: "end of stack",
				Frames: []worker.Frame{
					{PC: "0x401234", Module: "/usr/bin/threads", BuildID: "ab", Offset: "0x1234", Function: c.fn, Mangled: hostile, File: c.file, Line: c.line, Inlined: true, Method: "context", Symbols: "dwarf", InApp: true},
					{PC: "0x401234", Module: "/usr/bin/threads", Function: "caller_of_" + c.fn, File: "./threads.c", Line: 90, Method: "context", Symbols: "dwarf", InApp: true},
					{PC: "0x7f00", Module: "/lib/libc.so.6" + hostile, BuildID: "cd", Offset: "0x29d90", Method: "cfi", Symbols: "missing"},
				}},
		},
		Modules:        []worker.Module{{Path: "/usr/bin/threads", BuildID: "ab", Start: "0x400000", End: "0x402000", Symbols: true}, {Path: "/lib/libc.so.6" + hostile, BuildID: "cd", Start: "0x7f00", End: "0x8f00"}},
		Fingerprint:    []int{0, 1},
		FingerprintKey: []string{c.fn, "caller_of_" + c.fn},
		MissingSymbols: c.missing,
	}
}

// add stores and "analyses" one core; it returns the core id.
func add(t testing.TB, st *store.Store, n int, c crash) int64 {
	ctx := context.Background()
	ok, id, err := st.AddEntry(ctx, store.Entry{UUID: fmt.Sprintf("e-%d", n), Type: "coredump", DeviceSerial: c.serial, Manifest: "{}"},
		&store.CoreInput{Blob: "b", Compression: "gzip", DeviceSerial: c.serial, HardwareVersion: "evt", SoftwareType: "main",
			SoftwareVersion: c.version, Captured: c.captured})
	require.NoError(t, err)
	require.True(t, ok)
	tr := trace(c)
	tj, _ := json.Marshal(tr)
	keys, _ := json.Marshal(tr.FingerprintKey)
	_, _, err = st.FinishCore(ctx, id, store.Result{Fingerprint: "fp-" + c.fn, Title: "SIGSEGV in " + c.fn + " (" + c.file + ")",
		Signal: "SIGSEGV", FingerprintFrames: string(keys), Trace: string(tj), MissingBuildIDs: c.missing})
	require.NoError(t, err)
	return id
}

type localFiles []symstore.LocalFile

func (l localFiles) LocalFiles() []symstore.LocalFile { return l }

func serve(t testing.TB, st *store.Store) *httptest.Server {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := NewPages(st, localFiles{{BuildID: "ef01", Path: "/sysroot/" + hostile, Size: 4096}}, log)
	require.NoError(t, err)
	mux := http.NewServeMux()
	NewAPI(st, log).Register(mux)
	p.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, path string, status int) string {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, status, resp.StatusCode, "%s:\n%s", path, b)
	if status == 200 {
		require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
		require.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")
	}
	return string(b)
}

// ids are the issue ids of the list's rows, in order.
func ids(body string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`<tr data-issue="(\d+)">`).FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

func newStore(t testing.TB) *store.Store {
	st, err := store.Open(t.TempDir())
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

func TestUIPagesIssues(t *testing.T) {
	st := newStore(t)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	n := 0
	// Issue 1 (crash_segv): 3 occurrences on one device, 1.0, the oldest first seen.
	for i := 0; i < 3; i++ {
		n++
		add(t, st, n, crash{serial: "dev-a", version: "1.0", fn: "crash_segv", file: "./threads.c", line: 77, captured: t0.Add(time.Duration(i) * time.Minute)})
	}
	// Issue 2 (parse_header): 2 occurrences on 2 devices, 1.1, lacks libc's symbols.
	for i := 0; i < 2; i++ {
		n++
		add(t, st, n, crash{serial: fmt.Sprintf("dev-b%d", i), version: "1.1", fn: "parse_header", file: "src/parse.c", line: 12,
			missing: []string{"cd"}, captured: t0.Add(10 * time.Minute)})
	}
	// Issue 3 (hostile name): 1 occurrence, 2.0, the last seen.
	n++
	add(t, st, n, crash{serial: "dev-c", version: "2.0", fn: hostile, file: hostile, line: 1, captured: t0.Add(30 * time.Minute)})
	srv := serve(t, st)

	body := get(t, srv, "/issues", 200)
	require.Equal(t, []string{"3", "2", "1"}, ids(body), "last seen first")
	require.Contains(t, body, "crash_segv (./threads.c)")
	require.Contains(t, body, "symbols missing")
	require.Contains(t, body, "3 issues")
	for _, v := range []string{"1.0", "1.1", "2.0"} {
		require.Contains(t, body, `<option value="`+v+`"`)
	}
	require.Equal(t, []string{"1", "2", "3"}, ids(get(t, srv, "/issues?sort=occurrences", 200)))
	require.Equal(t, []string{"2", "3", "1"}, ids(get(t, srv, "/issues?sort=devices", 200)), "ties: newest issue first")
	require.Equal(t, []string{"3", "2", "1"}, ids(get(t, srv, "/issues?sort=first_seen", 200)))
	require.Equal(t, []string{"2"}, ids(get(t, srv, "/issues?version=1.1", 200)))
	require.Equal(t, []string{"1"}, ids(get(t, srv, "/issues?q=CRASH_seg", 200)))
	require.Equal(t, []string{"2"}, ids(get(t, srv, "/issues?missing=1", 200)))
	empty := get(t, srv, "/issues?q=nothing-like-this", 200)
	require.Empty(t, ids(empty))
	require.Contains(t, empty, "No issue matches the filter.")
	require.Contains(t, get(t, srv, "/issues?sort=bogus", 400), "unknown sort")
	// The sort links keep the filter.
	require.Contains(t, get(t, srv, "/issues?version=1.1&q=parse", 200), `href="/issues?q=parse&amp;sort=devices&amp;version=1.1"`)
	resp, err := http.Get(srv.URL + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, srv.URL+"/issues", resp.Request.URL.String())
}

func TestUIPagesIssue(t *testing.T) {
	st := newStore(t)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	first := add(t, st, 1, crash{serial: "dev-a", version: "1.0", fn: "crash_segv", file: "./threads.c", line: 77, captured: t0})
	latest := add(t, st, 2, crash{serial: "dev-b", version: "1.1", fn: "crash_segv", file: "./threads.c", line: 77, captured: t0.Add(time.Minute)})
	other := add(t, st, 3, crash{serial: "dev-b", version: "1.1", fn: "other_fn", file: "o.c", line: 1, captured: t0})
	srv := serve(t, st)

	body := get(t, srv, "/issues/1", 200)
	require.Contains(t, body, fmt.Sprintf("core <a href=\"/issues/1?core=%d\">%d</a>", latest, latest))
	require.Contains(t, body, `<span class="fn" title=`)
	require.Contains(t, body, "./threads.c:77")
	require.Contains(t, body, `<code class="fault">0x0</code>`)
	require.Regexp(t, `(?s)id="thread-7".*id="thread-5"`, body, "crashing thread first")
	require.Regexp(t, `(?s)<tr class="fp inlined">.*<span class="tag inl">inlined</span>.*crash_segv`, body)
	require.Regexp(t, `(?s)<tr class="fp">.*caller_of_crash_segv`, body)
	require.Contains(t, body, `<span class="tag how-cfi">cfi</span>`)
	require.Contains(t, body, "<b>rip</b> <code>0x401234</code>")
	require.Contains(t, body, "<code>/usr/bin/threads</code> <code>segv</code>")
	require.Contains(t, body, "Occurrences <span class=\"n\">2</span>")

	older := get(t, srv, fmt.Sprintf("/issues/1?core=%d", first), 200)
	require.Contains(t, older, "device <code>dev-a</code>")
	require.Contains(t, older, `href="/issues/1?core=`+fmt.Sprint(first)+`&amp;tab=logs"`, "tabs stay on the chosen core")
	get(t, srv, fmt.Sprintf("/issues/1?core=%d", other), 404)
	get(t, srv, "/issues/1?core=x", 404)
	get(t, srv, "/issues/99", 404)
	get(t, srv, "/issues/abc", 404)
	get(t, srv, "/issues/1?tab=nope", 404)

	logs := get(t, srv, "/issues/1?tab=logs", 200)
	require.Contains(t, logs, "boot ok\nlog line &lt;script&gt;")
	require.NotContains(t, logs, "id=\"thread-7\"")
	meta := get(t, srv, "/issues/1?tab=metadata", 200)
	require.Contains(t, meta, "<tr><th>Capture strategy</th><td><code>threads</code></td></tr>")
	require.Contains(t, meta, "<code class=\"fn\">caller_of_crash_segv</code>")
	occ := get(t, srv, "/issues/1?tab=occurrences", 200)
	require.Contains(t, occ, fmt.Sprintf(`<a href="/issues/1?core=%d">core %d</a>`, first, first))
	require.Contains(t, occ, fmt.Sprintf(`<a href="/issues/1?core=%d">core %d</a>`, latest, latest))
	dev := get(t, srv, "/issues/1?tab=devices", 200)
	require.Contains(t, dev, "<code>dev-a</code>")
	require.Contains(t, dev, "<code>dev-b</code>")

	// A core outside any issue has its own page; one in an issue leads to it.
	resp, err := http.Get(fmt.Sprintf("%s/cores/%d", srv.URL, first))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, fmt.Sprintf("/issues/1?core=%d", first), resp.Request.URL.RequestURI())
	_, id, err := st.AddEntry(context.Background(), store.Entry{UUID: "failed", Type: "coredump", DeviceSerial: "d", Manifest: "{}"},
		&store.CoreInput{Blob: "b", DeviceSerial: hostile, SoftwareVersion: "1"})
	require.NoError(t, err)
	require.NoError(t, st.FailCore(context.Background(), id, "read core: "+hostile))
	failed := get(t, srv, fmt.Sprintf("/cores/%d", id), 200)
	require.Contains(t, failed, "Analysis failed")
	require.Contains(t, get(t, srv, "/issues", 200), "1 failed")
}

// TestUIPagesEscape: every string a core, a manifest or a symbol file brings in reaches every
// page as text.
func TestUIPagesEscape(t *testing.T) {
	st := newStore(t)
	add(t, st, 1, crash{serial: hostile, version: hostile, fn: hostile, file: hostile, line: 3, missing: []string{"cd"}, captured: time.Now()})
	_, err := st.PutSymbol(context.Background(), store.Symbol{BuildID: "ab" + hostile, Blob: "x", Name: hostile, Size: 10})
	require.NoError(t, err)
	srv := serve(t, st)
	for _, path := range []string{"/issues", "/issues/1", "/issues/1?tab=logs", "/issues/1?tab=metadata", "/issues/1?tab=occurrences",
		"/issues/1?tab=devices", "/symbols", "/issues?q=" + strings.ReplaceAll(hostile, "&", "%26"), "/issues/1?core=1"} {
		body := get(t, srv, strings.ReplaceAll(path, " ", "%20"), 200)
		require.NotContains(t, body, "<script>window", path)
		require.NotContains(t, body, "<img", path)
		require.NotContains(t, body, `"'>`, path)
		require.Equal(t, 1, strings.Count(body, "<script"), "%s: only the page's own script", path)
		require.Contains(t, body, "&lt;script&gt;window.__pwned=1&lt;/script&gt;", path)
	}
}

func TestUIPagesSymbols(t *testing.T) {
	st := newStore(t)
	add(t, st, 1, crash{serial: "d", version: "1", fn: "f", file: "f.c", line: 1, missing: []string{"cd"}, captured: time.Now()})
	_, err := st.PutSymbol(context.Background(), store.Symbol{BuildID: "ab12", Blob: "x", Name: "threads.debug", Size: 3 << 20})
	require.NoError(t, err)
	srv := serve(t, st)
	body := get(t, srv, "/symbols", 200)
	require.Regexp(t, `(?s)<td><code title="cd">cd</code></td><td><code>/lib/libc.so.6&lt;script&gt;.*</code></td><td class="num">1</td><td class="num">1</td>`, body)
	require.Contains(t, body, `<a href="/issues/1?core=1">latest crash</a>`)
	require.Contains(t, body, "<td><code>ab12</code></td><td><code>threads.debug</code></td><td class=\"num\">3.0 MiB</td>")
	require.Contains(t, body, "<td><code>ef01</code></td>")
	issue := get(t, srv, "/issues/1", 200)
	require.Contains(t, issue, `No symbols for <code>script&gt;`)
	require.Contains(t, issue, `<code class="dim" title="cd">cd</code>: frames in that module show module + offset.`)
	require.Contains(t, issue, `3 frames`)
	require.Contains(t, issue, `1 frame ·`)
}

func TestUIPagesPagination(t *testing.T) {
	st := newStore(t)
	t0 := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	for i := 1; i <= PageSize+7; i++ {
		add(t, st, i, crash{serial: "d", version: "1", fn: fmt.Sprintf("fn_%03d", i), file: "f.c", line: i, captured: t0.Add(time.Duration(i) * time.Minute)})
	}
	srv := serve(t, st)
	p1 := get(t, srv, "/issues?q=fn_", 200)
	require.Len(t, ids(p1), PageSize)
	require.Equal(t, fmt.Sprint(PageSize+7), ids(p1)[0])
	require.Contains(t, p1, fmt.Sprintf("1–%d of %d", PageSize, PageSize+7))
	require.Contains(t, p1, `href="/issues?page=2&amp;q=fn_"`)
	var api struct{ Issues []IssueJSON }
	resp, err := http.Get(srv.URL + "/api/v1/issues?limit=5&offset=50")
	require.NoError(t, err)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&api))
	resp.Body.Close()
	require.Len(t, api.Issues, 5)
	require.EqualValues(t, 7, api.Issues[0].ID)
	p2 := get(t, srv, "/issues?q=fn_&page=2", 200)
	require.Equal(t, []string{"7", "6", "5", "4", "3", "2", "1"}, ids(p2))
	require.Contains(t, p2, fmt.Sprintf("%d–%d of %d", PageSize+1, PageSize+7, PageSize+7))
	require.Contains(t, p2, `href="/issues?q=fn_" rel="prev"`)
}

func TestUIStatic(t *testing.T) {
	srv := serve(t, newStore(t))
	for _, p := range []string{"/static/style.css", "/static/app.js"} {
		resp, err := http.Get(srv.URL + p)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, p)
		require.NotEmpty(t, b)
	}
	resp, err := http.Post(srv.URL+"/issues", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestUIThreadViewsFold(t *testing.T) {
	tr := trace(crash{fn: "f", file: "f.c", line: 1})
	deep := worker.Thread{TID: 9, Crashed: true}
	for i := 0; i < FramesShown+5; i++ {
		deep.Frames = append(deep.Frames, worker.Frame{PC: fmt.Sprint(i), Function: fmt.Sprintf("recurse_%d", i), Method: "cfi"})
	}
	tr.Threads = append(tr.Threads[:1], deep) // the crashed thread is the second
	tr.CrashingThread = 9
	tr.Fingerprint = []int{0, FramesShown + 2}
	views, hidden := threadViews(&tr, false)
	require.Zero(t, hidden)
	require.Len(t, views, 2)
	require.Equal(t, 9, views[0].TID)
	require.True(t, views[0].Crashed)
	require.Len(t, views[0].Frames, FramesShown)
	require.Len(t, views[0].More, 5)
	require.True(t, views[0].Frames[0].Fingerprint)
	require.False(t, views[0].Frames[1].Fingerprint)
	require.True(t, views[0].More[2].Fingerprint)
	require.Equal(t, FramesShown+2, views[0].More[2].N)
	require.False(t, views[1].Crashed)

	// A core of many threads and deep stacks: the page keeps MaxThreads threads (the crashed
	// one first) and MaxFrames frames of each, unless all are asked for.
	for i := 0; i < MaxThreads+3; i++ {
		th := worker.Thread{TID: 100 + i}
		for f := 0; f < MaxFrames+10; f++ {
			th.Frames = append(th.Frames, worker.Frame{Function: "r"})
		}
		tr.Threads = append(tr.Threads, th)
	}
	views, hidden = threadViews(&tr, false)
	require.Len(t, views, MaxThreads)
	require.Equal(t, 5, hidden)
	require.Equal(t, 9, views[0].TID)
	last := views[len(views)-1]
	require.Equal(t, MaxFrames, len(last.Frames)+len(last.More))
	require.Equal(t, 10, last.Hidden)
	views, hidden = threadViews(&tr, true)
	require.Len(t, views, MaxThreads+5)
	require.Zero(t, hidden)
	require.Zero(t, views[len(views)-1].Hidden)
}
