package main

import (
	"fmt"
	"io"
	"strings"

	"meta-memfault-go/internal/symbols/debugpkg"
	"meta-memfault-go/internal/symbols/upload"
	"meta-memfault-go/internal/version"
)

// report is what --report writes and what the summary on stdout is made of.
type report struct {
	Tool       string `json:"tool"`
	Command    string `json:"command"`
	Image      string `json:"image,omitempty"`
	DbgImage   string `json:"dbg_image,omitempty"`
	Archive    string `json:"archive,omitempty"`
	SplitStyle string `json:"split_style,omitempty"`
	// DbgImageSkipped: the server had the symbols of every binary of the image, so the -dbg
	// image was not read (debug_file and paired_by are then not known).
	DbgImageSkipped bool `json:"dbg_image_skipped,omitempty"`
	DryRun          bool `json:"dry_run"`
	// Input says how the images were read: input.from_cache when the image's index came from
	// the cache (the image was hashed, not decompressed), and the bytes hashed, fed to a
	// decompressor and decompressed. The rest of the report is the same either way.
	Input  debugpkg.Input `json:"input"`
	Server reportServer   `json:"server"`
	// ELFs is every ELF file of the image (for upload-yocto-symbols, of the rootfs).
	ELFs []reportELF `json:"elfs"`
	// Symbols is every symbol file made, and what became of it; one with source "on-server"
	// stands for a build-id the server already had (nothing was made).
	Symbols []reportSymbol     `json:"symbols"`
	Skipped []debugpkg.Skipped `json:"skipped"`
	Failed  []reportSymbol     `json:"failed"`
	// UnreadableLater names the shipped ELF files whose crashes cannot be symbolized: no
	// GNU build-id (a core cannot name its symbols) or no debug information anywhere.
	UnreadableLater []reportUnreadable `json:"unreadable_later"`
	Summary         reportSummary      `json:"summary"`
	Error           string             `json:"error,omitempty"` // the run stopped early

	verbose bool
	byPath  map[string]int // index in Symbols of the first symbol file of a path
	byID    map[string]int // ... of a build-id
}

type reportServer struct {
	URL     string `json:"url"`
	Org     string `json:"org,omitempty"`
	Project string `json:"project,omitempty"`
	// Asked: credentials were given and the server was contacted. PresentCheck: it answered
	// which build-ids it has (Memfault's cloud has no such call).
	Asked        bool `json:"asked"`
	PresentCheck bool `json:"present_check"`
}

type reportELF struct {
	debugpkg.ELFInfo
	DebugFile string `json:"debug_file"` // always present ("" none), unlike ELFInfo's
	// DebugInfoAvailable: DWARF in the file itself or in a paired debug file.
	DebugInfoAvailable bool   `json:"debug_info_available"`
	SymbolSource       string `json:"symbol_source,omitempty"` // how its symbol file was made; "" none
	// ServerHas is the server's answer before this run's uploads; null when it was not asked
	// (no credentials, no present check, no build-id).
	ServerHas *bool `json:"server_has"`
	Uploaded  bool  `json:"uploaded"` // its symbol file was sent by this run
}

type reportSymbol struct {
	Path    string `json:"path"`
	BuildID string `json:"build_id"`
	Size    int64  `json:"size"`
	Source  string `json:"source"`
	// Status: uploaded, present, failed, not sent; in a dry run "would upload" or present.
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

type reportUnreadable struct {
	Path    string   `json:"path"`
	BuildID string   `json:"build_id"`
	Reasons []string `json:"reasons"`
}

type reportSummary struct {
	ELFs            int   `json:"elfs"`
	SymbolFiles     int   `json:"symbol_files"`
	Uploaded        int   `json:"uploaded"`
	AlreadyPresent  int   `json:"already_present"`
	WouldUpload     int   `json:"would_upload"`
	Failed          int   `json:"failed"`
	NotSent         int   `json:"not_sent"`
	Skipped         int   `json:"skipped"`
	UnreadableLater int   `json:"unreadable_later"`
	BytesUploaded   int64 `json:"bytes_uploaded"`
	BytesToUpload   int64 `json:"bytes_to_upload,omitempty"` // dry run
}

const (
	statusWouldUpload = "would upload"
	reasonNoBuildID   = "no GNU build-id: a core cannot name the symbols it needs"
	reasonNoDebug     = "no debug information: neither in the file nor in a paired debug file"
)

func newReport(cmd string, g *globals, o *options, res *debugpkg.Result) *report {
	r := &report{
		Tool:            "memfault " + version.Version,
		Command:         cmd,
		Image:           o.image,
		DbgImage:        o.dbgImage,
		Archive:         o.archive,
		SplitStyle:      res.SplitStyle,
		DbgImageSkipped: res.DbgImageSkipped,
		DryRun:          o.dryRun,
		Input:           res.Input,
		Server:          reportServer{URL: upload.Redact(g.url), Org: g.org, Project: g.project, Asked: g.hasCredentials()},
		ELFs:            []reportELF{},
		Symbols:         []reportSymbol{},
		Skipped:         append([]debugpkg.Skipped{}, res.Skipped...),
		Failed:          []reportSymbol{},
		verbose:         g.verbose,
	}
	r.byPath, r.byID = map[string]int{}, map[string]int{}
	for i, s := range res.Symbols {
		id := strings.ToLower(s.BuildID)
		r.Symbols = append(r.Symbols, reportSymbol{Path: s.Path, BuildID: id, Size: s.Size, Source: s.Source})
		if _, ok := r.byPath[s.Path]; !ok {
			r.byPath[s.Path] = i
		}
		if _, ok := r.byID[id]; !ok && id != "" {
			r.byID[id] = i
		}
	}
	for _, e := range res.ELFs {
		e.BuildID = strings.ToLower(e.BuildID)
		re := reportELF{ELFInfo: e, DebugFile: e.DebugFile, DebugInfoAvailable: e.HasDebug || e.DebugFile != ""}
		if s := r.symbolFor(e); s != nil {
			re.SymbolSource = s.Source
			re.DebugInfoAvailable = true
		}
		r.ELFs = append(r.ELFs, re)
	}
	return r
}

// symbolFor finds the symbol file of an ELF file: by path, else by build-id.
func (r *report) symbolFor(e debugpkg.ELFInfo) *reportSymbol {
	if i, ok := r.byPath[e.Path]; ok {
		return &r.Symbols[i]
	}
	if i, ok := r.byID[e.BuildID]; ok && e.BuildID != "" {
		return &r.Symbols[i]
	}
	return nil
}

// buildIDs are the ones to ask the server about: every ELF's and every symbol file's.
func (r *report) buildIDs() []string {
	seen := map[string]bool{}
	var ids []string
	add := func(id string) {
		if id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for _, e := range r.ELFs {
		add(e.BuildID)
	}
	for _, s := range r.Symbols {
		add(s.BuildID)
	}
	return ids
}

func (r *report) serverHas(have map[string]bool) {
	for i := range r.ELFs {
		if have != nil && r.ELFs[i].BuildID != "" {
			v := have[r.ELFs[i].BuildID]
			r.ELFs[i].ServerHas = &v
		}
	}
}

// dryRun records what an upload would send: what the server lacks (everything when it was not
// asked).
func (r *report) dryRun(have map[string]bool) {
	r.serverHas(have)
	seen := map[string]bool{}
	for i := range r.Symbols {
		s := &r.Symbols[i]
		switch {
		case have[s.BuildID]:
			s.Status = string(upload.Present)
		case s.BuildID == "":
			s.Status, s.Error = string(upload.Failed), "no GNU build-id"
		case seen[s.BuildID]:
			s.Status = "duplicate" // same build-id as an earlier file: sent once
		default:
			s.Status = statusWouldUpload
		}
		seen[s.BuildID] = true
	}
}

// uploaded records the outcome of an upload.
func (r *report) uploaded(have map[string]bool, sum *upload.Summary) {
	r.serverHas(have)
	byID := map[string]upload.FileResult{}
	for _, f := range sum.Files {
		byID[f.Symbol.BuildID] = f
	}
	for i := range r.Symbols {
		s := &r.Symbols[i]
		f, ok := byID[s.BuildID]
		if !ok {
			continue
		}
		s.Status = string(f.Status)
		if f.Err != nil {
			s.Error = f.Err.Error()
		}
	}
	for i := range r.ELFs {
		if s := r.symbolFor(r.ELFs[i].ELFInfo); s != nil {
			r.ELFs[i].Uploaded = s.Status == string(upload.Uploaded)
		}
	}
	if sum.Err != nil {
		r.Error = sum.Err.Error()
	}
	r.Summary.BytesUploaded = sum.Bytes
}

// finish fills the lists and counts that follow from the rest.
func (r *report) finish() {
	s := &r.Summary
	s.ELFs, s.SymbolFiles, s.Skipped = len(r.ELFs), len(r.Symbols), len(r.Skipped)
	for _, sym := range r.Symbols {
		switch sym.Status {
		case string(upload.Uploaded):
			s.Uploaded++
		case string(upload.Present):
			s.AlreadyPresent++
		case statusWouldUpload:
			s.WouldUpload++
			s.BytesToUpload += sym.Size
		case string(upload.Failed):
			s.Failed++
			r.Failed = append(r.Failed, sym)
		case string(upload.NotSent), "":
			s.NotSent++
		}
	}
	for _, e := range r.ELFs {
		var why []string
		if e.BuildID == "" {
			why = append(why, reasonNoBuildID)
		}
		if !e.DebugInfoAvailable {
			why = append(why, reasonNoDebug)
		}
		if len(why) > 0 {
			r.UnreadableLater = append(r.UnreadableLater, reportUnreadable{Path: e.Path, BuildID: e.BuildID, Reasons: why})
		}
	}
	if r.UnreadableLater == nil {
		r.UnreadableLater = []reportUnreadable{}
	}
	s.UnreadableLater = len(r.UnreadableLater)
}

// maxListed is how many lines of each list the summary prints (all with --verbose).
const maxListed = 20

// print writes the summary for people.
func (r *report) print(w io.Writer) {
	p := func(format string, args ...any) {
		fmt.Fprintln(w, upload.Printable(fmt.Sprintf(format, args...)))
	}
	list := func(n int, line func(i int)) {
		for i := 0; i < n; i++ {
			if i == maxListed && !r.verbose && n > maxListed+1 {
				p("  ... and %d more (--verbose or --report FILE lists them all)", n-i)
				return
			}
			line(i)
		}
	}
	s := r.Summary
	if r.DryRun {
		for _, sym := range r.Symbols {
			switch sym.Status {
			case statusWouldUpload:
				p("would upload %s (build-id %s, %s)", sym.Path, sym.BuildID, upload.HumanBytes(sym.Size))
			case string(upload.Present):
				p("present      %s (build-id %s)", sym.Path, sym.BuildID)
			}
		}
		asked := ""
		if !r.Server.Asked {
			asked = " (the server was not asked: no credentials)"
		} else if !r.Server.PresentCheck {
			asked = " (the server cannot say which it has: all would be sent)"
		}
		p("%s (dry run): %d ELF files, %d symbol files: %d would be uploaded (%s), %d already on the server%s; %d skipped",
			r.Command, s.ELFs, s.SymbolFiles, s.WouldUpload, upload.HumanBytes(s.BytesToUpload), s.AlreadyPresent, asked, s.Skipped)
	} else {
		p("%s: %d ELF files, %d symbol files: %d uploaded (%s), %d already on the server, %d failed; %d skipped",
			r.Command, s.ELFs, s.SymbolFiles, s.Uploaded, upload.HumanBytes(s.BytesUploaded), s.AlreadyPresent, s.Failed, s.Skipped)
	}
	if r.Input.FromCache {
		p("the image was not decompressed: its index came from the cache (sha256 %s), and the server has every build-id in it", r.Input.ImageSHA256)
	}
	if r.DbgImageSkipped {
		p("the -dbg image was not read: the server has the symbols of every ELF file of the image")
	}
	if len(r.Skipped) > 0 {
		p("skipped:")
		list(len(r.Skipped), func(i int) { p("  %s: %s", r.Skipped[i].Path, r.Skipped[i].Reason) })
	}
	if len(r.Failed) > 0 {
		p("failed:")
		list(len(r.Failed), func(i int) {
			f := r.Failed[i]
			p("  %s (build-id %s): %s", f.Path, f.BuildID, f.Error)
		})
	}
	if s.NotSent > 0 && !r.DryRun {
		p("not sent: %d files (the run stopped: %s)", s.NotSent, r.Error)
	}
	if len(r.UnreadableLater) > 0 {
		p("warning: crashes in these %d shipped ELF files will be unreadable:", len(r.UnreadableLater))
		list(len(r.UnreadableLater), func(i int) {
			u := r.UnreadableLater[i]
			p("  %s: %s", u.Path, strings.Join(u.Reasons, "; "))
		})
	}
}
