package ui

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"meta-memfault-go/internal/server/store"
	"meta-memfault-go/internal/server/symstore"
	"meta-memfault-go/internal/server/worker"
)

// The web pages: html/template pages over the store, with the stylesheet and a little optional
// script embedded. Everything a core, a manifest or a symbol file brought in reaches the page
// through html/template's contextual escaping; nothing from input is ever template.HTML.
// Every list is a page of a bounded query.

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// PageSize is the number of rows of one page of a list.
const PageSize = 50

// LocalSymbols lists the symbol files found under --symbols-dir (symstore.Store does).
type LocalSymbols interface {
	LocalFiles() []symstore.LocalFile
}

// Pages serves the web UI.
type Pages struct {
	st    *store.Store
	local LocalSymbols
	log   *slog.Logger
	now   func() time.Time
	pages map[string]*template.Template
}

// NewPages parses the templates; local may be nil.
func NewPages(st *store.Store, local LocalSymbols, log *slog.Logger) (*Pages, error) {
	p := &Pages{st: st, local: local, log: log, now: time.Now, pages: map[string]*template.Template{}}
	funcs := template.FuncMap{
		"ago":      p.ago,
		"stamp":    stamp,
		"iso":      func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"bytes":    humanBytes,
		"short":    shortID,
		"method":   func(m string) string { return strings.ReplaceAll(m, "_", " ") },
		"join":     strings.Join,
		"basename": path.Base,
		"add":      func(a, b int) int { return a + b },
		"plural": func(n int, one, many string) string {
			if n == 1 {
				return one
			}
			return many
		},
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		base := path.Base(n)
		if base == "layout.html" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", base, err)
		}
		p.pages[strings.TrimSuffix(base, ".html")] = t
	}
	return p, nil
}

// Register adds the page routes.
func (p *Pages) Register(mux *http.ServeMux) {
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", cacheFor(time.Hour, http.FileServer(http.FS(static)))))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/issues", http.StatusFound)
	})
	mux.HandleFunc("GET /issues", p.issues)
	mux.HandleFunc("GET /issues/{id}", p.issue)
	mux.HandleFunc("GET /cores/{id}", p.core)
	mux.HandleFunc("GET /symbols", p.symbols)
}

func cacheFor(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(d.Seconds())))
		h.ServeHTTP(w, r)
	})
}

// layout is what every page shows around its content.
type layout struct {
	Title   string
	Nav     string // "issues" or "symbols"
	Pending int    // cores waiting for or in analysis
	Failed  int
}

func (p *Pages) layout(r *http.Request, title, nav string) layout {
	l := layout{Title: title, Nav: nav}
	if waiting, failed, err := p.st.QueueCounts(r.Context()); err == nil {
		l.Pending, l.Failed = waiting, failed
	}
	return l
}

func (p *Pages) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	t := p.pages[page]
	var buf strings.Builder
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		p.log.Error("render page", "page", page, "path", r.URL.Path, "err", err)
		http.Error(w, "could not render the page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// The pages run no inline script and load nothing from elsewhere: a name from a core that
	// escaped its context still could not run.
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	fmt.Fprint(w, buf.String())
}

type errorPage struct {
	layout
	Status  int
	Message string
}

func (p *Pages) fail(w http.ResponseWriter, r *http.Request, status int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if status >= 500 {
		p.log.Error("page", "path", r.URL.Path, "err", msg)
		msg = "the server could not read its database; the log says why"
	}
	p.render(w, r, status, "error", errorPage{layout: p.layout(r, http.StatusText(status), ""), Status: status, Message: msg})
}

// pager is the position in a paginated list; the URLs keep the other query parameters.
type pager struct {
	Total, First, Last int
	Prev, Next         string
}

func pageOf(r *http.Request, param string) int {
	n, err := strconv.Atoi(r.URL.Query().Get(param))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

func makePager(r *http.Request, param string, page, shown, total int) pager {
	pg := pager{Total: total}
	if shown > 0 {
		pg.First = (page-1)*PageSize + 1
		pg.Last = pg.First + shown - 1
	}
	link := func(n int) string {
		q := r.URL.Query()
		if n <= 1 {
			q.Del(param)
		} else {
			q.Set(param, strconv.Itoa(n))
		}
		return r.URL.Path + "?" + q.Encode()
	}
	if page > 1 {
		pg.Prev = link(page - 1)
	}
	if page*PageSize < total {
		pg.Next = link(page + 1)
	}
	return pg
}

// The issues list.

type sortLink struct {
	Key, Label, URL string
	Active          bool
}

type issueRow struct {
	*store.Issue
	MoreVersions int // versions not shown in the row
}

type issuesPage struct {
	layout
	Filter   store.IssueFilter
	Versions []string
	Sorts    []sortLink
	Issues   []issueRow
	Pager    pager
	Filtered bool
}

var sorts = []struct{ key, label string }{
	{"last_seen", "Last seen"}, {"first_seen", "First seen"}, {"occurrences", "Occurrences"}, {"devices", "Devices"},
}

const versionsShown = 3

func (p *Pages) issues(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.IssueFilter{SoftwareVersion: q.Get("version"), Text: strings.TrimSpace(q.Get("q")), Sort: q.Get("sort"),
		SymbolsMissing: q.Get("missing") == "1", Limit: PageSize}
	if f.Sort == "" {
		f.Sort = "last_seen"
	}
	known := false
	for _, s := range sorts {
		known = known || s.key == f.Sort
	}
	if !known {
		p.fail(w, r, http.StatusBadRequest, "unknown sort %q: use last_seen, first_seen, occurrences or devices", f.Sort)
		return
	}
	page := pageOf(r, "page")
	f.Offset = (page - 1) * PageSize
	ctx := r.Context()
	list, err := p.st.ListIssues(ctx, f)
	if err != nil {
		p.fail(w, r, http.StatusInternalServerError, "list issues: %v", err)
		return
	}
	total, err := p.st.CountIssues(ctx, f)
	if err != nil {
		p.fail(w, r, http.StatusInternalServerError, "count issues: %v", err)
		return
	}
	versions, err := p.st.SoftwareVersions(ctx, 500)
	if err != nil {
		p.fail(w, r, http.StatusInternalServerError, "software versions: %v", err)
		return
	}
	v := issuesPage{layout: p.layout(r, "Issues", "issues"), Filter: f, Versions: versions,
		Filtered: f.SoftwareVersion != "" || f.Text != "" || f.SymbolsMissing}
	for _, s := range sorts {
		sq := r.URL.Query()
		sq.Del("page")
		sq.Set("sort", s.key)
		v.Sorts = append(v.Sorts, sortLink{Key: s.key, Label: s.label, URL: "/issues?" + sq.Encode(), Active: s.key == f.Sort})
	}
	for _, is := range list {
		row := issueRow{Issue: is}
		// Newest versions first (sorted as strings; good enough to pick which to show).
		vs := make([]string, len(is.Versions))
		for i, s := range is.Versions {
			vs[len(vs)-1-i] = s
		}
		if len(vs) > versionsShown {
			row.MoreVersions = len(vs) - versionsShown
			vs = vs[:versionsShown]
		}
		row.Versions = vs
		v.Issues = append(v.Issues, row)
	}
	v.Pager = makePager(r, "page", page, len(list), total)
	p.render(w, r, http.StatusOK, "issues", v)
}

// The issue page.

type frameView struct {
	worker.Frame
	N           int
	Fingerprint bool
}

type threadView struct {
	TID       int
	Crashed   bool
	Stop      string
	Registers []worker.Register
	Frames    []frameView
	More      []frameView // past FramesShown, folded
	Hidden    int         // frames past MaxFrames, left out unless all are asked for
}

const (
	// FramesShown is how many frames of a thread the page shows before folding the rest (a
	// deep recursion would bury the other threads).
	FramesShown = 40
	// MaxThreads and MaxFrames bound what one page renders of a trace (a core may hold
	// thousands of threads); ?all=1 renders everything.
	MaxThreads = 64
	MaxFrames  = 500
)

type tab struct {
	Key, Label, URL string
	Count           int
	Active          bool
}

type issuePage struct {
	layout
	Issue         *store.Issue
	Core          *store.Core
	Latest        bool // Core is the issue's latest occurrence
	Trace         *worker.Trace
	TraceError    string
	Threads       []threadView
	HiddenThreads int
	Missing       []worker.Module // the modules the trace lacked symbols for
	AllURL        string          // the same page with nothing left out
	Tabs          []tab
	Tab           string
	Occurrences   []*store.Core
	Devices       []store.Device
	Pager         pager
	FPKeys        []string
}

func (p *Pages) issue(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		p.fail(w, r, http.StatusNotFound, "no issue %q", r.PathValue("id"))
		return
	}
	is, err := p.st.GetIssue(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		p.fail(w, r, http.StatusNotFound, "no issue %d", id)
		return
	} else if err != nil {
		p.fail(w, r, http.StatusInternalServerError, "issue %d: %v", id, err)
		return
	}
	v := issuePage{layout: p.layout(r, fmt.Sprintf("#%d %s", is.ID, is.Title), "issues"), Issue: is}
	json.Unmarshal([]byte(is.FingerprintFrames), &v.FPKeys)

	latest, err := p.st.IssueCores(ctx, id, 1)
	if err != nil {
		p.fail(w, r, http.StatusInternalServerError, "issue %d cores: %v", id, err)
		return
	}
	if len(latest) == 0 {
		p.fail(w, r, http.StatusNotFound, "issue %d has no occurrences", id)
		return
	}
	v.Core, v.Latest = latest[0], true
	coreParam := r.URL.Query().Get("core")
	if coreParam != "" {
		cid, err := strconv.ParseInt(coreParam, 10, 64)
		if err != nil {
			p.fail(w, r, http.StatusNotFound, "no core %q", coreParam)
			return
		}
		if cid != v.Core.ID {
			c, err := p.st.GetCore(ctx, cid)
			if errors.Is(err, store.ErrNotFound) || (err == nil && c.IssueID != id) {
				p.fail(w, r, http.StatusNotFound, "issue %d has no core %d", id, cid)
				return
			} else if err != nil {
				p.fail(w, r, http.StatusInternalServerError, "core %d: %v", cid, err)
				return
			}
			v.Core, v.Latest = c, false
		}
	}
	if v.Core.Trace != "" {
		var tr worker.Trace
		if err := json.Unmarshal([]byte(v.Core.Trace), &tr); err != nil {
			v.TraceError = fmt.Sprintf("the stored trace could not be read: %v", err)
		} else {
			v.Trace = &tr
			v.Threads, v.HiddenThreads = threadViews(&tr, r.URL.Query().Get("all") == "1")
			v.Missing = missingModules(&tr)
		}
	}

	v.Tab = r.URL.Query().Get("tab")
	tabURL := func(key string) string {
		q := url.Values{}
		if !v.Latest {
			q.Set("core", strconv.FormatInt(v.Core.ID, 10))
		}
		if key != "trace" {
			q.Set("tab", key)
		}
		if len(q) == 0 {
			return fmt.Sprintf("/issues/%d", id)
		}
		return fmt.Sprintf("/issues/%d?%s", id, q.Encode())
	}
	logs := 0
	if v.Trace != nil {
		logs = len(v.Trace.Logs)
	}
	for _, t := range []tab{{Key: "trace", Label: "Trace"}, {Key: "logs", Label: "Logs", Count: logs},
		{Key: "metadata", Label: "Metadata"}, {Key: "occurrences", Label: "Occurrences", Count: is.Occurrences},
		{Key: "devices", Label: "Devices", Count: is.Devices}} {
		t.URL = tabURL(t.Key)
		v.Tabs = append(v.Tabs, t)
	}
	if v.Tab == "" {
		v.Tab = "trace"
	}
	aq := r.URL.Query()
	aq.Set("all", "1")
	v.AllURL = r.URL.Path + "?" + aq.Encode()
	found := false
	for i := range v.Tabs {
		if v.Tabs[i].Key == v.Tab {
			v.Tabs[i].Active, found = true, true
		}
	}
	if !found {
		p.fail(w, r, http.StatusNotFound, "no tab %q", v.Tab)
		return
	}
	page := pageOf(r, "page")
	switch v.Tab {
	case "occurrences":
		v.Occurrences, err = p.st.IssueOccurrences(ctx, id, PageSize, (page-1)*PageSize)
		v.Pager = makePager(r, "page", page, len(v.Occurrences), is.Occurrences)
	case "devices":
		v.Devices, err = p.st.IssueDevices(ctx, id, PageSize, (page-1)*PageSize)
		v.Pager = makePager(r, "page", page, len(v.Devices), is.Devices)
	}
	if err != nil {
		p.fail(w, r, http.StatusInternalServerError, "issue %d %s: %v", id, v.Tab, err)
		return
	}
	p.render(w, r, http.StatusOK, "issue", v)
}

// threadViews puts the crashing thread first and marks the frames of the fingerprint; unless
// all is set it keeps MaxThreads threads and MaxFrames frames of each, and says how many
// threads it left out.
func threadViews(tr *worker.Trace, all bool) ([]threadView, int) {
	var out []threadView
	crashed := -1
	for i, th := range tr.Threads {
		if crashed < 0 && (th.Crashed || th.TID == tr.CrashingThread) {
			crashed = i
		}
	}
	order := make([]int, 0, len(tr.Threads))
	if crashed >= 0 {
		order = append(order, crashed)
	}
	for i := range tr.Threads {
		if i != crashed {
			order = append(order, i)
		}
	}
	hidden := 0
	if !all && len(order) > MaxThreads {
		hidden = len(order) - MaxThreads
		order = order[:MaxThreads]
	}
	for _, i := range order {
		th := tr.Threads[i]
		tv := threadView{TID: th.TID, Crashed: i == crashed, Stop: th.Stop, Registers: th.Registers}
		for n, f := range th.Frames {
			tv.Frames = append(tv.Frames, frameView{Frame: f, N: n})
		}
		if i == crashed {
			for _, k := range tr.Fingerprint {
				if k >= 0 && k < len(tv.Frames) {
					tv.Frames[k].Fingerprint = true
				}
			}
		}
		if !all && len(tv.Frames) > MaxFrames {
			tv.Hidden = len(tv.Frames) - MaxFrames
			tv.Frames = tv.Frames[:MaxFrames]
		}
		if len(tv.Frames) > FramesShown {
			tv.Frames, tv.More = tv.Frames[:FramesShown], tv.Frames[FramesShown:]
		}
		out = append(out, tv)
	}
	return out, hidden
}

// missingModules names the build-ids the trace lacked symbols for by their modules' paths.
func missingModules(tr *worker.Trace) []worker.Module {
	var out []worker.Module
	for _, id := range tr.MissingSymbols {
		m := worker.Module{BuildID: id}
		for _, mod := range tr.Modules {
			if mod.BuildID == id {
				m.Path = mod.Path
				break
			}
		}
		out = append(out, m)
	}
	return out
}

// A core outside any issue (waiting, or failed) has a page of its own; one in an issue is
// shown on the issue's page.

type corePage struct {
	layout
	Core *store.Core
}

func (p *Pages) core(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		p.fail(w, r, http.StatusNotFound, "no core %q", r.PathValue("id"))
		return
	}
	c, err := p.st.GetCore(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		p.fail(w, r, http.StatusNotFound, "no core %d", id)
		return
	} else if err != nil {
		p.fail(w, r, http.StatusInternalServerError, "core %d: %v", id, err)
		return
	}
	if c.IssueID != 0 {
		http.Redirect(w, r, fmt.Sprintf("/issues/%d?core=%d", c.IssueID, c.ID), http.StatusSeeOther)
		return
	}
	p.render(w, r, http.StatusOK, "core", corePage{layout: p.layout(r, fmt.Sprintf("Core %d", id), "issues"), Core: c})
}

// The symbols page.

type missingRow struct {
	store.MissingBuildID
	Module  string // the path the latest core mapped it from
	IssueID int64  // the latest core's issue
}

type symbolsPage struct {
	layout
	Missing      []missingRow
	MissingPager pager
	Stored       []store.StoredSymbol
	StoredPager  pager
	Local        []symstore.LocalFile
	LocalPager   pager
	HaveLocal    bool
}

func (p *Pages) symbols(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	v := symbolsPage{layout: p.layout(r, "Symbols", "symbols")}
	mp, sp, lp := pageOf(r, "mp"), pageOf(r, "sp"), pageOf(r, "lp")
	missing, err := p.st.MissingSymbols(ctx, PageSize, (mp-1)*PageSize)
	if err != nil {
		p.fail(w, r, http.StatusInternalServerError, "missing symbols: %v", err)
		return
	}
	nMissing, err := p.st.CountMissingSymbols(ctx)
	if err != nil {
		p.fail(w, r, http.StatusInternalServerError, "count missing symbols: %v", err)
		return
	}
	traces := map[int64]*worker.Trace{}
	issues := map[int64]int64{}
	for _, m := range missing {
		row := missingRow{MissingBuildID: m}
		tr, ok := traces[m.LatestCore]
		if !ok {
			if c, err := p.st.GetCore(ctx, m.LatestCore); err == nil {
				issues[m.LatestCore] = c.IssueID
				var t worker.Trace
				if json.Unmarshal([]byte(c.Trace), &t) == nil {
					tr = &t
				}
			}
			traces[m.LatestCore] = tr
		}
		row.IssueID = issues[m.LatestCore]
		if tr != nil {
			for _, mod := range tr.Modules {
				if mod.BuildID == m.BuildID {
					row.Module = mod.Path
					break
				}
			}
		}
		v.Missing = append(v.Missing, row)
	}
	v.MissingPager = makePager(r, "mp", mp, len(v.Missing), nMissing)

	if v.Stored, err = p.st.ListSymbols(ctx, PageSize, (sp-1)*PageSize); err != nil {
		p.fail(w, r, http.StatusInternalServerError, "symbols: %v", err)
		return
	}
	nStored, err := p.st.CountSymbols(ctx)
	if err != nil {
		p.fail(w, r, http.StatusInternalServerError, "count symbols: %v", err)
		return
	}
	v.StoredPager = makePager(r, "sp", sp, len(v.Stored), nStored)

	if p.local != nil {
		all := p.local.LocalFiles()
		v.HaveLocal = len(all) > 0
		start := min((lp-1)*PageSize, len(all))
		v.Local = all[start:min(start+PageSize, len(all))]
		v.LocalPager = makePager(r, "lp", lp, len(v.Local), len(all))
	}
	p.render(w, r, http.StatusOK, "symbols", v)
}

// Formatting.

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

func (p *Pages) ago(t time.Time) string {
	d := p.now().Sub(t)
	switch {
	case d < 0:
		return stamp(t)
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	case d < 60*24*time.Hour:
		return fmt.Sprintf("%d days ago", int(d.Hours()/24))
	}
	return t.UTC().Format("2006-01-02")
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// shortID is the first 12 hex digits of a build-id (the page shows the whole in a title).
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
