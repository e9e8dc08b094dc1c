package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/testutil/cdp"
	"meta-memfault-go/internal/testutil/kerneltest"
)

// pwn is the name the crafted symbol file gives the crashing function: a page that let it
// through as markup would run it.
const pwn = `<script>window.__pwned=1</script>`

// screenshotDir is where the browser test keeps its screenshots: $ARTIFACTS/ui-screenshots
// when ARTIFACTS is set, else a new directory under the system's temp dir. It is kept.
func screenshotDir(t *testing.T) string {
	t.Helper()
	var dir string
	var err error
	if a := os.Getenv("ARTIFACTS"); a != "" {
		dir = filepath.Join(a, "ui-screenshots")
		err = os.MkdirAll(dir, 0o755)
	} else {
		dir, err = os.MkdirTemp("", "memfault-ui-screenshots-")
	}
	require.NoError(t, err)
	t.Logf("screenshots kept in %s", dir)
	return dir
}

// uiTrace is what the browser test compares the pages with: the API's trace.
type uiTrace struct {
	Signal         string      `json:"signal"`
	FaultAddress   string      `json:"fault_address"`
	CrashingThread int         `json:"crashing_thread"`
	Threads        []apiThread `json:"threads"`
	Fingerprint    []int       `json:"fingerprint_frames"`
}

func (s *server) latestTrace(t *testing.T, issue string) (int64, uiTrace) {
	var out struct {
		Latest struct {
			CoreID int64   `json:"core_id"`
			Trace  uiTrace `json:"trace"`
		} `json:"latest"`
	}
	s.get(t, "/api/v1/issues/"+issue, &out)
	return out.Latest.CoreID, out.Latest.Trace
}

// TestUIBrowser drives headless Chromium through the web UI of a real memfault-server that
// analysed real cores: three issues (x86_64 threads: 3 occurrences on one device; c-o2-inline:
// 2 devices; i386 threads whose uploaded symbol file names the crashing function
// <script>...</script>). It checks the issues list, the sort orders and filters, the issue page
// against the API's trace, a page with script off, the symbols page, and that the hostile name
// is text and never runs. Screenshots are kept.
func TestUIBrowser(t *testing.T) {
	if cdp.Find() == "" {
		t.Skip("chromium is not installed (Debian: apt-get install chromium); the browser test needs it")
	}
	objcopy, err := exec.LookPath("objcopy")
	if err != nil {
		t.Skip("objcopy (binutils) is not installed; it crafts the hostile symbol file")
	}
	root := kerneltest.ModuleRoot(t)
	shots := screenshotDir(t)

	// The hostile symbol file: the i386 fixture's own binary (same build-id) without DWARF, its
	// crashing function renamed in the symbol table.
	crafted := filepath.Join(t.TempDir(), "threads")
	out, err := exec.Command(objcopy, "--strip-debug", "--redefine-sym", "crash_segv="+pwn,
		filepath.Join(root, "testdata", "cores", "i386", "threads"), crafted).CombinedOutput()
	require.NoError(t, err, string(out))
	craftedBytes, err := os.ReadFile(crafted)
	require.NoError(t, err)

	bin := buildServer(t)
	s := startServer(t, bin, "--symbols-dir", filepath.Join(root, "testdata", "cores", "x86_64"),
		"--symbols-dir", filepath.Join(root, "testdata", "corpus", "c-o2-inline"))
	uploadSymbols(t, s, craftedBytes)

	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	at := func(m int) func() time.Time {
		return func() time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	}
	send := func(full []byte, serial, version string, minute int) {
		persist := t.TempDir()
		captureAt(t, full, persist, "threads", serial, version, at(minute))
		deliver(t, s, persist, serial, version)
	}
	// Issue 1: seen at minutes 0, 1 and 40 on one device. Issue 2: two devices at minute 10.
	// Issue 3: one device at minute 30. Each waits for the last so the ids are in this order.
	x86 := fixtureCore(t, "x86_64")
	for _, m := range []int{0, 1, 40} {
		send(x86, "dev-a", "1.0", m)
	}
	require.Len(t, s.waitIssues(t, 3), 1)
	inline := corpusCore(t, "c-o2-inline", "x86_64")
	send(inline, "dev-b1", "1.1", 10)
	send(inline, "dev-b2", "1.1", 10)
	require.Len(t, s.waitIssues(t, 5), 2)
	send(fixtureCore(t, "i386"), "dev-c", "2.0", 30)
	issues := s.waitIssues(t, 6)
	require.Len(t, issues, 3)
	byID := map[int64]apiIssue{}
	for _, is := range issues {
		byID[is.ID] = is
	}
	require.Contains(t, byID[1].Title, "crash_segv")
	require.Contains(t, byID[2].Title, "load_sample")
	require.Contains(t, byID[3].Title, pwn)

	b := cdp.Launch(t)
	p := b.NewPage(t)
	rows := func() []string {
		return p.Strings(`[...document.querySelectorAll('#issues tbody tr[data-issue]')].map(r => r.dataset.issue)`)
	}
	notPwned := func(where string) {
		t.Helper()
		require.Equal(t, "undefined", p.String(`typeof window.__pwned`), "%s: the function name ran as a script", where)
	}

	// The list: last seen first, with the figures of each issue.
	p.Navigate(s.url + "/")
	require.Equal(t, "flex", p.String(`getComputedStyle(document.querySelector('header.top')).display`), "stylesheet applied")
	require.Equal(t, []string{"1", "3", "2"}, rows())
	for _, is := range issues {
		var cells struct {
			Title, Occurrences, Devices string
			Missing                     bool
			Versions                    []string
		}
		p.Eval(fmt.Sprintf(`(() => { const r = document.querySelector('tr[data-issue="%d"]'); return {
			Title: r.querySelector('td.title .fn').textContent, Occurrences: r.querySelector('td.occurrences').textContent,
			Devices: r.querySelector('td.devices').textContent, Missing: !!r.querySelector('.badge-missing'),
			Versions: [...r.querySelectorAll('.chip.ver')].map(e => e.textContent) }; })()`, is.ID), &cells)
		require.Equal(t, is.Title, cells.Title, "issue %d", is.ID)
		require.Equal(t, fmt.Sprint(is.Occurrences), cells.Occurrences, "issue %d", is.ID)
		require.Equal(t, fmt.Sprint(is.Devices), cells.Devices, "issue %d", is.ID)
		require.Equal(t, is.SymbolsMissing, cells.Missing, "issue %d", is.ID)
		require.Equal(t, is.Versions, cells.Versions, "issue %d", is.ID)
	}
	require.Equal(t, pwn, p.String(`document.querySelector('tr[data-issue="3"] td.title .fn').textContent`)[len("SIGSEGV in "):len("SIGSEGV in ")+len(pwn)])
	notPwned("issues list")
	p.Screenshot(shots, "01-issues")

	// Sorting: a click on a column header.
	for _, c := range []struct {
		key  string
		want []string
	}{{"occurrences", []string{"1", "2", "3"}}, {"devices", []string{"2", "3", "1"}}, {"first_seen", []string{"3", "2", "1"}}, {"last_seen", []string{"1", "3", "2"}}} {
		p.Do(fmt.Sprintf(`document.querySelector('th[data-sort=%s] a').click()`, c.key))
		require.Equal(t, c.want, rows(), "sorted by %s", c.key)
		require.Contains(t, p.String(`location.search`), "sort="+c.key)
	}
	p.Do(`document.querySelector('th[data-sort=occurrences] a').click()`)
	p.Screenshot(shots, "02-issues-by-occurrences")

	// Filters: the version select applies at once (app.js); the text filter on Enter; both
	// keep the sort.
	p.Do(`(() => { const s = document.querySelector('select[name=version]'); s.value = '1.1'; s.dispatchEvent(new Event('change')); })()`)
	require.Equal(t, []string{"2"}, rows())
	require.Equal(t, "1 issue", p.String(`document.getElementById('issue-count').textContent`))
	p.Screenshot(shots, "03-issues-version-1.1")
	p.Do(`document.querySelector('select[name=version]').value = ''; document.querySelector('.filters button').click()`)
	require.Equal(t, []string{"1", "2", "3"}, rows())
	p.Type(`input[name=q]`, "crash_segv", true)
	require.Equal(t, []string{"1"}, rows())
	require.Equal(t, "crash_segv", p.String(`document.querySelector('input[name=q]').value`))
	require.Contains(t, p.String(`location.search`), "sort=occurrences")
	p.Screenshot(shots, "04-issues-text-crash_segv")
	p.Type(`input[name=q]`, "no-such-function", true)
	require.Empty(t, rows())
	require.Contains(t, p.String(`document.querySelector('#issues tbody').textContent`), "No issue matches the filter.")

	// The issue page, against the API's trace.
	p.Navigate(s.url + "/issues")
	p.Do(`document.querySelector('tr[data-issue="1"] td.title a').click()`)
	require.Equal(t, "/issues/1", p.String(`location.pathname`))
	checkIssuePage(t, p, s, "1")
	p.Screenshot(shots, "05-issue-1")

	// Inlined frames are marked: issue 2's crash is in an inlined function.
	p.Navigate(s.url + "/issues/2")
	checkIssuePage(t, p, s, "2")
	p.Screenshot(shots, "06-issue-2-inlined")

	// Tabs: logs, metadata, occurrences (each occurrence's trace reachable), devices.
	p.Navigate(s.url + "/issues/1")
	p.Do(`document.querySelector('.tabs a[data-tab=logs]').click()`)
	require.Equal(t, "logs", p.String(`document.querySelector('.tabs a.on').dataset.tab`))
	require.Equal(t, "0", p.String(`document.querySelectorAll('section.thread').length + ''`), "the trace is not on the logs tab")
	p.Screenshot(shots, "07-issue-1-logs")
	p.Do(`document.querySelector('.tabs a[data-tab=metadata]').click()`)
	require.Contains(t, p.String(`document.querySelector('main').textContent`), "dev-a")
	p.Screenshot(shots, "08-issue-1-metadata")
	p.Do(`document.querySelector('.tabs a[data-tab=occurrences]').click()`)
	occ := p.Strings(`[...document.querySelectorAll('#occurrences tbody tr td:first-child a')].map(a => a.textContent)`)
	require.Len(t, occ, 3)
	p.Screenshot(shots, "09-issue-1-occurrences")
	p.Do(`[...document.querySelectorAll('#occurrences tbody tr td:first-child a')].pop().click()`)
	require.Contains(t, p.String(`document.querySelector('.which').textContent`), "Occurrence: "+occ[2])
	require.NotEmpty(t, p.Strings(`[...document.querySelectorAll('section.thread.crashed td.func .fn')].map(e => e.textContent)`))
	p.Do(`document.querySelector('.tabs a[data-tab=devices]').click()`)
	require.Equal(t, []string{"dev-a"}, p.Strings(`[...document.querySelectorAll('#devices tbody td:first-child')].map(e => e.textContent)`))

	// The hostile name: text on the issue page, in the title, the frame and the fingerprint.
	p.Navigate(s.url + "/issues/3")
	require.Contains(t, p.String(`document.getElementById('issue-title').textContent`), pwn)
	require.Equal(t, pwn, p.String(`document.querySelector('section.thread.crashed tr.fp td.func .fn').textContent`))
	require.Zero(t, len(p.Strings(`[...document.querySelectorAll('main script')].map(e => e.outerHTML)`)))
	notPwned("issue page")
	p.Screenshot(shots, "10-issue-3-hostile-name")
	p.Navigate(s.url + "/issues/3?tab=metadata")
	notPwned("metadata tab")

	// The symbols page: the uploaded file with its name, and what the cores lacked.
	p.Navigate(s.url + "/symbols")
	stored := p.String(`document.getElementById('stored').textContent`)
	require.Contains(t, stored, "4829790453f58239d7a41c90d6a65c9879d5b138")
	require.Contains(t, stored, "threads")
	if byID[1].SymbolsMissing {
		require.NotContains(t, p.String(`document.getElementById('missing').textContent`), "Every analysed core had")
	}
	p.Screenshot(shots, "11-symbols")

	// With script off the pages read the same.
	p.Call("Emulation.setScriptExecutionDisabled", map[string]any{"value": true}, nil)
	p.Navigate(s.url + "/issues/1")
	checkIssuePage(t, p, s, "1")
	p.Screenshot(shots, "12-issue-1-script-off")
}

// checkIssuePage compares the issue page on screen with the issue's latest trace from the API:
// signal and fault address, the crashing thread first, every thread with every frame's
// function, file:line, inlined mark and how it was found, the fingerprint's frames marked.
func checkIssuePage(t *testing.T, p *cdp.Page, s *server, issue string) {
	t.Helper()
	coreID, tr := s.latestTrace(t, issue)
	require.NotEmpty(t, tr.Threads)
	require.Equal(t, tr.Signal, p.String(`document.querySelector('code.signal').textContent`))
	if tr.FaultAddress != "" {
		require.Equal(t, tr.FaultAddress, p.String(`document.querySelector('code.fault').textContent`))
	}
	require.Contains(t, p.String(`document.querySelector('.which').textContent`), fmt.Sprintf("core %d", coreID))
	type row struct {
		Func, Loc, How string
		Inlined, FP    bool
	}
	var threads []struct {
		ID      string
		Crashed bool
		Rows    []row
		Regs    int
	}
	p.Eval(`[...document.querySelectorAll('section.thread')].map(s => ({ID: s.id, Crashed: s.classList.contains('crashed'),
		Regs: s.querySelectorAll('.reggrid .r').length,
		Rows: [...s.querySelectorAll('table.frames tbody tr')].map(r => ({
			Func: (r.querySelector('td.func .fn') || r.querySelector('td.func .dim')).textContent,
			Loc: r.querySelector('td.loc').textContent.trim(), How: r.querySelector('td.how').textContent.trim(),
			Inlined: !!r.querySelector('td.func .inl'), FP: r.classList.contains('fp') }))}))`, &threads)
	require.Len(t, threads, len(tr.Threads))
	require.True(t, threads[0].Crashed, "the crashing thread comes first")
	require.Equal(t, fmt.Sprintf("thread-%d", tr.CrashingThread), threads[0].ID)
	byID := map[string]apiThread{}
	for _, th := range tr.Threads {
		byID[fmt.Sprintf("thread-%d", th.TID)] = th
	}
	fp := map[int]bool{}
	for _, i := range tr.Fingerprint {
		fp[i] = true
	}
	sawInlined := false
	for ti, got := range threads {
		want, ok := byID[got.ID]
		require.True(t, ok, got.ID)
		require.NotZero(t, got.Regs, "%s registers", got.ID)
		require.Len(t, got.Rows, len(want.Frames), got.ID)
		for i, f := range want.Frames {
			r := got.Rows[i]
			name := f.Function
			if name == "" {
				name = "??"
			}
			require.Equal(t, name, r.Func, "%s frame %d", got.ID, i)
			loc := ""
			if f.File != "" {
				loc = fmt.Sprintf("%s:%d", f.File, f.Line)
			}
			require.Equal(t, loc, r.Loc, "%s frame %d", got.ID, i)
			require.Equal(t, strings.ReplaceAll(f.Method, "_", " "), r.How, "%s frame %d", got.ID, i)
			require.Equal(t, f.Inlined, r.Inlined, "%s frame %d", got.ID, i)
			require.Equal(t, ti == 0 && fp[i], r.FP, "%s frame %d fingerprint mark", got.ID, i)
			sawInlined = sawInlined || f.Inlined
		}
	}
	if issue == "2" {
		require.True(t, sawInlined, "c-o2-inline's trace has inlined frames")
	}
	if issue == "1" {
		crashed := threads[0].Rows
		require.Equal(t, "crash_segv", crashed[0].Func)
		require.True(t, strings.HasSuffix(crashed[0].Loc, "threads.c:77"), crashed[0].Loc)
	}
	b, _ := json.Marshal(threads[0].Rows[:min(3, len(threads[0].Rows))])
	t.Logf("issue %s crashing thread on the page: %s", issue, b)
}
