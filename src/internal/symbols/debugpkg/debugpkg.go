package debugpkg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Split styles (PACKAGE_DEBUG_SPLIT_STYLE). The first three put the debug file of DIR/NAME
// at DIR/.debug/NAME and differ only in where the sources go; debug-file-directory puts it
// at /usr/lib/debug/DIR/NAME.debug.
const (
	StyleWithSrcpkg = "debug-with-srcpkg"
	StyleDebug      = "debug"
	StyleWithoutSrc = "debug-without-src"
	StyleFileDir    = "debug-file-directory"
)

// SplitStyles lists the split styles Options.SplitStyle accepts.
var SplitStyles = []string{StyleWithSrcpkg, StyleDebug, StyleWithoutSrc, StyleFileDir}

// Ways a binary and its debug file are paired (ELFInfo.PairedBy).
const (
	PairedByBuildID   = "build-id"
	PairedByPath      = "path"
	PairedByDebuglink = "debuglink"
)

// Sources of a symbol file (Symbol.Source).
const (
	SourceUnstripped = "unstripped"
	SourceDebugOnly  = "debug-only"
	SourceBinary     = "binary"
	SourceOnServer   = "on-server" // the server has the build-id (Options.Present): no file
)

// FromYocto reads a Yocto image's rootfs and its -dbg rootfs (IMAGE_GEN_DEBUGFS): tarballs
// in any compression, or directories. Each is read once, as a stream: the rootfs first, then,
// once Options.Present has said which build-ids the server lacks, the -dbg rootfs (not at all
// when the server has them all); only ELF files are written to the temporary directory.
// Binaries are paired with debug files by build-id as soon as both are seen, and recombined
// with eu-unstrip while the -dbg stream is still being read; by path (per split style) and
// .gnu_debuglink once both are read.
func FromYocto(ctx context.Context, image, dbgImage string, opt Options) (*Result, error) {
	return build(ctx, image, dbgImage, opt)
}

// FromArchive reads one archive (or directory) of ELF files: binaries with DWARF are taken as
// they are; stripped binaries are paired with the debug files found in the same archive.
func FromArchive(ctx context.Context, archive string, opt Options) (*Result, error) {
	return build(ctx, archive, "", opt)
}

// side says which input a file comes from.
type side int

const (
	sideImage side = iota // the rootfs, or the archive
	sideDbg               // the -dbg rootfs
)

// program is an ELF file of the image (not a separate debug file).
type program struct {
	path  string
	file  string // on disk; "" once removed
	size  int64
	facts facts
	links []string
	// dropped: this copy gives nothing (another copy of the build-id is used, or it is not
	// code, has no build-id, or no debug file was found).
	dropped bool
}

// debugFile is a file that can give a binary its debug information: a separate debug file,
// or (from the -dbg rootfs) a complete ELF file with DWARF.
type debugFile struct {
	path  string
	file  string
	side  side
	facts facts
	used  bool // paired with a binary
	crc   uint32
	crcOK bool // crc computed
}

// job is the symbol file of one build-id.
type job struct {
	bin      *program
	dbg      *debugFile // nil: the binary itself
	pairedBy string
	sym      *Symbol
	skip     *Skipped
}

type run struct {
	ctx       context.Context
	dir       string
	euUnstrip string
	logf      func(string, ...any)

	mu      sync.Mutex
	seq     int
	bins    []*program
	binAt   map[string]*program // image path -> binary (first names only)
	dbgByID map[string]*debugFile
	waiting map[string]*program // build-id -> binary waiting for its debug file
	debugs  []*debugFile
	dbgAt   map[string]*debugFile // image path (incl. hard links) -> debug file, per side
	links   [2]map[string]string  // hard link -> first name, per side
	symlink [2]map[string]string  // symlink -> target as written, per side
	dbgSrc  bool                  // the -dbg rootfs has /usr/src/debug
	jobs    map[string]*job       // build-id -> job
	skipped []Skipped
	wg      sync.WaitGroup
	sem     chan struct{}
	// have is Options.Present's answer: build-ids the server has. decided is closed once it
	// is known (at once without Options.Present); no eu-unstrip runs before.
	have    map[string]bool
	decided chan struct{}

	// events, when not nil, records the scan of the image for the cache; imageSum and
	// imageSize are the SHA-256 and size of the image's bytes, once read to the end.
	events    []event
	imageSum  string
	imageSize int64
	// replaying: the image's index comes from the cache, no file is on disk and nothing is
	// recombined.
	replaying bool
	input     Input
}

func build(ctx context.Context, image, dbgImage string, opt Options) (res *Result, err error) {
	if opt.SplitStyle != "" && !knownStyle(opt.SplitStyle) {
		return nil, fmt.Errorf("unknown split style %q (want one of %s)", opt.SplitStyle, strings.Join(SplitStyles, ", "))
	}
	euUnstrip := opt.EuUnstrip
	if euUnstrip == "" {
		euUnstrip = "eu-unstrip"
	}
	if euUnstrip, err = exec.LookPath(euUnstrip); err != nil {
		return nil, fmt.Errorf("eu-unstrip (elfutils) is needed to recombine binaries with their debug files: %w", err)
	}
	base := opt.TmpDir
	if base == "" {
		base = os.TempDir()
	}
	dir, err := os.MkdirTemp(base, "memfault-symbols-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	for _, sub := range []string{"image", "dbg", "sym"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	n := opt.Concurrency
	if n <= 0 {
		n = 8
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	logf := func(string, ...any) {}
	if log := opt.Log; log != nil {
		var logMu sync.Mutex // Log is called from one goroutine at a time
		logf = func(f string, a ...any) {
			logMu.Lock()
			defer logMu.Unlock()
			log(f, a...)
		}
	}
	present := opt.Present
	newRun := func() *run {
		r := &run{
			ctx: ctx, dir: dir, euUnstrip: euUnstrip, logf: logf,
			binAt: map[string]*program{}, waiting: map[string]*program{}, dbgByID: map[string]*debugFile{}, dbgAt: map[string]*debugFile{},
			links:   [2]map[string]string{{}, {}},
			symlink: [2]map[string]string{{}, {}},
			jobs:    map[string]*job{}, sem: make(chan struct{}, n),
			have: map[string]bool{}, decided: make(chan struct{}),
		}
		if present == nil {
			close(r.decided)
		}
		return r
	}
	var r *run
	defer func() {
		if err != nil {
			cancel() // the eu-unstrip runs of a failed run stop
		}
		if r != nil {
			r.wg.Wait() // never leave eu-unstrip running, even on errors
		}
	}()

	cache := newImageCache(opt.CacheDir, logf)
	if cache != nil && !regularFile(image) {
		cache = nil // directories have no cheap identity
	}
	var input Input
	if cache != nil && present != nil {
		// The server is asked once: a fall back to reading the image gets the same answer.
		memo := &presentMemo{ask: present}
		present = memo.call
		if r, err = fromCache(cache, image, &input, newRun, present); err != nil {
			return nil, err
		}
		if r != nil {
			res, err = r.finish(image, dbgImage, false, opt.SplitStyle)
			if err != nil {
				return nil, err
			}
			res.dir = dir
			res.Input = r.input
			return res, nil
		}
	}

	// The image first: once its build-ids are known the server is asked, and the -dbg image is
	// read only for what the server lacks (a re-run reads the rootfs alone).
	r = newRun()
	r.input = input
	if cache != nil {
		r.events = []event{}
	}
	if err := r.scan(sideImage, image); err != nil {
		return nil, err
	}
	if cache != nil && r.imageSum != "" {
		cache.store(r.imageSum, r.imageSize, r.events)
		r.input.ImageSHA256 = r.imageSum
	}
	res, err = r.finish(image, dbgImage, r.decide(present), opt.SplitStyle)
	if err != nil {
		return nil, err
	}
	res.dir = dir
	res.Input = r.input
	return res, nil
}

// fromCache looks the image up in the cache by the SHA-256 of its bytes. On a hit it replays
// the image's index and asks the server; when the server has every build-id of the image it
// returns the run, ready to finish. Otherwise it returns nil: the image must be read.
func fromCache(cache *imageCache, image string, input *Input, newRun func() *run,
	present func(context.Context, []string) map[string]bool,
) (*run, error) {
	sum, size, err := hashFile(image)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", image, err)
	}
	input.Image.Hashed += size
	input.ImageSHA256 = sum
	events, ok := cache.load(sum, size)
	if !ok {
		cache.logf("cache: no entry for image %s (sha256 %s): reading it", filepath.Base(image), sum)
		return nil, nil
	}
	r := newRun()
	r.replaying = true
	r.replay(events)
	if r.decide(present) || !r.allOnServer() {
		r.logf("cache: the server lacks build-ids of image %s: reading it", filepath.Base(image))
		return nil, nil
	}
	r.logf("image %s: not read: its index (%d ELF files) came from the cache (sha256 %s), and the server has every build-id in it",
		filepath.Base(image), len(r.bins), sum)
	input.FromCache = true
	r.input = *input
	return r, nil
}

// presentMemo answers a second question about the same build-ids without asking again.
type presentMemo struct {
	ask  func(context.Context, []string) map[string]bool
	ids  []string
	have map[string]bool
	done bool
}

func (p *presentMemo) call(ctx context.Context, ids []string) map[string]bool {
	if p.done && slices.Equal(ids, p.ids) {
		return p.have
	}
	p.ids, p.have, p.done = append([]string(nil), ids...), p.ask(ctx, ids), true
	return p.have
}

// replay puts the events of a cached index through what the scan of the image does with them.
// No file is on disk: the run can only finish when the server has every build-id.
func (r *run) replay(events []event) {
	for _, ev := range events {
		switch ev.Op {
		case opSkip:
			r.skip(ev.Path, ev.Reason, ev.Detail)
		case opLink:
			r.links[sideImage][ev.Path] = ev.Target
		case opSymlink:
			r.symlink[sideImage][ev.Path] = ev.Target
		case opELF:
			r.add(sideImage, ev.Path, "", ev.Size, ev.Facts.facts())
			if ev.Facts.HasOwnCRC {
				if d := r.dbgAt[ev.Path]; d != nil && d.path == ev.Path {
					d.crc, d.crcOK = ev.Facts.CRC, true
				}
			}
		}
	}
}

// allOnServer says whether the server has the build-id of every program, library and module
// of the image: then no symbol file is to be made.
func (r *run) allOnServer() bool {
	for _, b := range r.bins {
		if id := b.facts.buildID; id != "" && isCode(b.facts) && !r.have[id] {
			return false
		}
	}
	return true
}

// finish reads the -dbg image when needed, pairs what is left and assembles the Result.
func (r *run) finish(image, dbgImage string, needDbg bool, style string) (*Result, error) {
	skipDbg := dbgImage != "" && !needDbg
	if dbgImage != "" {
		var err error
		if skipDbg {
			r.logf("-dbg image %s: not read: the server has the symbols of every binary of the image", filepath.Base(dbgImage))
			err = probeImage(dbgImage)
		} else {
			err = r.scan(sideDbg, dbgImage)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := r.ctx.Err(); err != nil {
		return nil, err
	}

	r.warnOddInputs(dbgImage != "" && !skipDbg)
	if dbgImage != "" && !skipDbg {
		detected := r.detectStyle()
		if style == "" {
			style = detected
			r.logf("split style: %s (detected from the -dbg image)", orNone(style))
		} else if detected != "" && family(detected) != family(style) {
			r.logf("split style %s given, but the -dbg image looks like %s", style, detected)
		}
	}
	r.resolveLinks()
	r.pairRest(style)
	r.wg.Wait()
	if err := r.ctx.Err(); err != nil {
		return nil, err
	}
	res := r.result()
	res.SplitStyle = style
	res.DbgImageSkipped = skipDbg
	return res, nil
}

// decide asks present (when set) which build-ids of the image the server has, once the image
// has been read, and lets the jobs waiting for the answer go on. It says whether the -dbg
// image is needed: without an answer, when the server has none of the image's binaries, or
// while a binary the server lacks still waits for its debug file.
func (r *run) decide(present func(context.Context, []string) map[string]bool) (needDbg bool) {
	if present == nil {
		return true
	}
	r.mu.Lock()
	asked := map[string]bool{}
	var ids []string
	for _, b := range r.bins {
		if id := b.facts.buildID; id != "" && !asked[id] {
			asked[id] = true
			ids = append(ids, id)
		}
	}
	r.mu.Unlock()
	sort.Strings(ids)
	var have map[string]bool
	if len(ids) > 0 {
		have = present(r.ctx, ids)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, ok := range have {
		if id = strings.ToLower(id); ok && asked[id] {
			r.have[id] = true
		}
	}
	close(r.decided)
	if len(r.have) == 0 {
		return true
	}
	for _, b := range r.bins {
		id := b.facts.buildID
		if id != "" && isCode(b.facts) && !r.have[id] && r.jobs[id] == nil {
			return true
		}
	}
	return false
}

// isCode says whether an ELF file can have symbols to upload: not a core or another type.
func isCode(fs facts) bool { return fs.typ != "core" && fs.typ != "other" }

// probeImage checks an image that is not read, so that a missing or unreadable -dbg image is
// an error even when the server needs nothing from it: it must open, and start with the magic
// bytes of a compression the archive reader knows; an uncompressed tarball must have a first
// header. Nothing is decompressed.
func probeImage(in string) error {
	fi, err := os.Stat(in)
	if err != nil {
		return fmt.Errorf("open %s: %w", in, err)
	}
	f, err := os.Open(in)
	if err != nil {
		return fmt.Errorf("open %s: %w", in, err)
	}
	defer f.Close()
	if fi.IsDir() {
		if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read -dbg image %s: %w", in, err)
		}
		return nil
	}
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("read -dbg image %s: %w", in, err)
	}
	isCompressed, err := compressed(head[:n])
	if err != nil {
		return fmt.Errorf("read -dbg image %s: %w", in, err)
	}
	if isCompressed {
		return nil
	}
	m, err := openImage(in)
	if err != nil {
		return fmt.Errorf("open %s: %w", in, err)
	}
	defer m.Close()
	if _, err := m.Next(); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, errRefused) {
		return fmt.Errorf("read -dbg image %s: %w", in, err)
	}
	return nil
}

// warnOddInputs logs inputs that look swapped or wrong: a -dbg image without debug files, an
// image of debug files only.
func (r *run) warnOddInputs(yocto bool) {
	var dbgFiles, imageDebug int
	for _, d := range r.debugs {
		switch {
		case !d.facts.separate:
		case d.side == sideDbg:
			dbgFiles++
		default:
			imageDebug++
		}
	}
	if yocto && dbgFiles == 0 {
		r.logf("the -dbg image holds no debug files (is it the image made with IMAGE_GEN_DEBUGFS = \"1\"?)")
	}
	if len(r.bins) == 0 && imageDebug > 0 {
		r.logf("the image holds debug files only (%d): are the image and the -dbg image swapped?", imageDebug)
	}
}

func knownStyle(s string) bool {
	for _, k := range SplitStyles {
		if s == k {
			return true
		}
	}
	return false
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// family is where a style puts debug files: ".debug" directories, or /usr/lib/debug.
func family(style string) string {
	if style == StyleFileDir {
		return StyleFileDir
	}
	return ".debug"
}

// scan reads one input to its end.
func (r *run) scan(s side, in string) error {
	var (
		m      members
		err    error
		hashed *hashingReader // the image's bytes, for the cache
		inSize int64
	)
	if s == sideImage && r.events != nil {
		var f *os.File
		if f, err = os.Open(in); err == nil {
			defer f.Close()
			var fi os.FileInfo
			if fi, err = f.Stat(); err == nil {
				inSize = fi.Size()
				hashed = newHashingReader(f)
				m, err = openArchiveFrom(in, hashed)
			}
		}
	} else {
		m, err = openImage(in)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", in, err)
	}
	defer m.Close()
	what := "image"
	if s == sideDbg {
		what = "-dbg image"
	}
	record := func(ev event) {
		if s == sideImage && r.events != nil {
			r.events = append(r.events, ev)
		}
	}
	buf := make([]byte, 256<<10)
	var files, elfs int
	for {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		e, err := m.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var me *memberError
		if errors.Is(err, errRefused) && errors.As(err, &me) {
			if s == sideImage {
				r.skip(imagePath(me.Member), ReasonRefused, me.Err.Error())
				record(event{Op: opSkip, Path: imagePath(me.Member), Reason: ReasonRefused, Detail: me.Err.Error()})
			} else {
				r.logf("%s: %v", what, err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s %s: %w", what, in, err)
		}
		p := imagePath(e.Name)
		switch e.Type {
		case typeLink:
			r.mu.Lock()
			r.links[s][p] = imagePath(e.Linkname)
			r.mu.Unlock()
			record(event{Op: opLink, Path: p, Target: imagePath(e.Linkname)})
			continue
		case typeSymlink:
			r.mu.Lock()
			r.symlink[s][p] = imagePath(e.Linkname) // relative to the root
			r.mu.Unlock()
			record(event{Op: opSymlink, Path: p, Target: imagePath(e.Linkname)})
			continue
		case typeReg:
		default:
			continue
		}
		files++
		if s == sideDbg && strings.HasPrefix(p, "/usr/src/debug/") {
			r.mu.Lock()
			r.dbgSrc = true
			r.mu.Unlock()
			continue
		}
		isELF, file, size, err := r.extract(m, s, buf)
		if err != nil {
			if errors.Is(err, errUnreadable) {
				if s == sideImage {
					r.skip(p, ReasonNotReadable, err.Error())
					record(event{Op: opSkip, Path: p, Reason: ReasonNotReadable, Detail: err.Error()})
				} else {
					r.logf("%s: %s: %v", what, p, err)
				}
				continue
			}
			return fmt.Errorf("read %s %s: %s: %w", what, in, p, err)
		}
		if !isELF {
			if s == sideImage {
				r.skip(p, ReasonNotELF, "")
				record(event{Op: opSkip, Path: p, Reason: ReasonNotELF})
			}
			continue
		}
		elfs++
		fs, err := inspect(file)
		if err != nil {
			os.Remove(file)
			if s == sideImage {
				r.skip(p, ReasonMalformed, err.Error())
				record(event{Op: opSkip, Path: p, Reason: ReasonMalformed, Detail: err.Error()})
			} else {
				r.logf("%s: %s: %v", what, p, err)
			}
			continue
		}
		if s == sideImage && r.events != nil {
			ev := event{Op: opELF, Path: p, Size: size, Facts: factsEvent(fs)}
			if fs.separate {
				// What a binary's .gnu_debuglink is checked against, should the replay need it.
				if crc, err := fileCRC(file); err == nil {
					ev.Facts.CRC, ev.Facts.HasOwnCRC = crc, true
				}
			}
			record(ev)
		}
		r.add(s, p, file, size, fs)
	}
	rc := readCount(m)
	if s == sideImage {
		rc.Hashed = r.input.Image.Hashed
		r.input.Image = rc
	} else {
		r.input.DbgImage = rc
	}
	if hashed != nil {
		// The sum covers every byte of the file the index was made from: the reader stopped at
		// the end of the archive, the rest (padding) is read here.
		m.Close()
		sum, err := hashed.finish()
		r.input.Image.Hashed += hashed.n
		if err == nil && hashed.n == inSize {
			r.imageSum, r.imageSize = sum, inSize
		} else {
			r.logf("cache: image %s changed while it was read: not stored", filepath.Base(in))
		}
	}
	r.logf("%s %s: %d files, %d ELF files", what, filepath.Base(in), files, elfs)
	return nil
}

// errUnreadable marks a member that cannot be read (a file of a directory image without read
// permission): reported, not fatal.
var errUnreadable = errors.New("cannot read")

// extract writes the current member to a numbered file of the run's directory when it starts
// with the ELF magic; other members are left unread.
func (r *run) extract(m members, s side, buf []byte) (isELF bool, file string, size int64, err error) {
	var head [4]byte
	n, err := io.ReadFull(m, head[:])
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		if errors.Is(err, fs.ErrPermission) {
			return false, "", 0, fmt.Errorf("%w: %v", errUnreadable, err)
		}
		return false, "", 0, err
	}
	if n < 4 || string(head[:]) != string(elfMagic) {
		return false, "", 0, nil
	}
	r.mu.Lock()
	r.seq++
	seq := r.seq
	r.mu.Unlock()
	sub := "image"
	if s == sideDbg {
		sub = "dbg"
	}
	file = filepath.Join(r.dir, sub, fmt.Sprintf("%06d", seq))
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, "", 0, err
	}
	if _, err = f.Write(head[:]); err == nil {
		size, err = io.CopyBuffer(f, struct{ io.Reader }{m}, buf)
		size += 4
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(file)
		return false, "", 0, err
	}
	return true, file, size, nil
}

func (r *run) skip(p, reason, detail string) {
	r.mu.Lock()
	r.skipped = append(r.skipped, Skipped{Path: p, Reason: reason, Detail: detail})
	r.mu.Unlock()
}

// add records one ELF file and starts the jobs it completes.
func (r *run) add(s side, p, file string, size int64, fs facts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fs.separate || s == sideDbg {
		if !fs.separate && !fs.hasDebug {
			// A binary without DWARF in the -dbg rootfs gives nothing.
			removeFile(file)
			return
		}
		d := &debugFile{path: p, file: file, side: s, facts: fs}
		if fs.buildID != "" {
			if first, dup := r.dbgByID[fs.buildID]; dup {
				// The same debug information again (a copy under .build-id, ...): keep one.
				removeFile(file)
				r.dbgAt[key(s, p)] = first
				return
			}
			r.dbgByID[fs.buildID] = d
		}
		r.debugs = append(r.debugs, d)
		r.dbgAt[key(s, p)] = d
		if b := r.waiting[fs.buildID]; b != nil && fs.buildID != "" {
			delete(r.waiting, fs.buildID)
			r.start(b, d, PairedByBuildID)
		}
		return
	}
	b := &program{path: p, file: file, size: size, facts: fs}
	r.bins = append(r.bins, b)
	r.binAt[p] = b
	id := fs.buildID
	switch {
	case !isCode(fs):
		r.skipped = append(r.skipped, Skipped{Path: p, Reason: ReasonNotCode, Detail: fs.typ})
	case id == "":
		r.skipped = append(r.skipped, Skipped{Path: p, Reason: ReasonNoBuildID})
	case r.jobs[id] != nil:
		// Another copy of a file already handled.
	case fs.hasDebug:
		// Uploaded as it is (even when a stripped copy waits for a debug file).
		if w := r.waiting[id]; w != nil {
			delete(r.waiting, id)
			removeFile(w.file)
			w.file = ""
		}
		r.jobs[id] = &job{bin: b, sym: &Symbol{BuildID: id, Path: p, File: file, Size: size, Source: SourceBinary}}
		return
	case r.waiting[id] != nil:
		// Another stripped copy of a file waiting for its debug file.
	default:
		if d := r.dbgByID[id]; d != nil {
			r.start(b, d, PairedByBuildID)
		} else {
			r.waiting[id] = b
		}
		return
	}
	removeFile(file)
	b.file, b.dropped = "", true
}

// removeFile removes an extracted file; "" is none (a replayed index has no files).
func removeFile(p string) {
	if p != "" {
		os.Remove(p)
	}
}

func key(s side, p string) string {
	if s == sideDbg {
		return "dbg:" + p
	}
	return p
}

// start runs the job of binary b and debug file d. Called with r.mu held.
func (r *run) start(b *program, d *debugFile, how string) {
	id := b.facts.buildID
	j := &job{bin: b, dbg: d, pairedBy: how}
	r.jobs[id] = j
	d.used = true
	if r.replaying {
		return // the run is used only when the server has every build-id: nothing to make
	}
	if !d.facts.separate {
		// A complete ELF file with DWARF (from the -dbg rootfs): upload it as it is.
		j.sym = &Symbol{BuildID: id, Path: b.path, File: d.file, Size: fileSize(d.file), Source: SourceBinary}
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		select {
		case <-r.decided:
		case <-r.ctx.Done():
			return
		}
		r.mu.Lock()
		onServer := r.have[id]
		r.mu.Unlock()
		if onServer {
			return // nothing to make (result removes the files)
		}
		select {
		case r.sem <- struct{}{}:
		case <-r.ctx.Done():
			return
		}
		defer func() { <-r.sem }()
		r.unstrip(j)
	}()
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// unstrip recombines a job's binary and debug file with eu-unstrip and checks the result: the
// binary's build-id, DWARF, a symbol table and the unwind tables. When that fails and the
// debug file carries the build-id, the debug file alone is the symbol file.
func (r *run) unstrip(j *job) {
	id := j.bin.facts.buildID
	out := filepath.Join(r.dir, "sym", id+".debug")
	var stderr limitedBuffer
	ctx, cancel := context.WithTimeout(r.ctx, unstripTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.euUnstrip, "-o", out, j.bin.file, j.dbg.file)
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		err = checkUnstripped(out, j.bin.facts)
	} else {
		err = fmt.Errorf("eu-unstrip: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return
	}
	if err == nil {
		j.sym = &Symbol{BuildID: id, Path: j.bin.path, File: out, Size: fileSize(out), Source: SourceUnstripped}
		os.Remove(j.dbg.file)
		os.Remove(j.bin.file)
		j.bin.file = ""
		return
	}
	os.Remove(out)
	if j.dbg.facts.buildID == id && j.dbg.facts.hasDebug {
		r.logf("%s: %v; uploading its debug file %s alone", j.bin.path, err, j.dbg.path)
		j.sym = &Symbol{BuildID: id, Path: j.bin.path, File: j.dbg.file, Size: fileSize(j.dbg.file), Source: SourceDebugOnly}
		return
	}
	j.skip = &Skipped{Path: j.bin.path, Reason: ReasonUnstrip, Detail: err.Error()}
}

// unstripTimeout bounds one eu-unstrip run (hostile input must not hang the upload); it
// takes well under a second for a file of tens of MiB.
const unstripTimeout = 5 * time.Minute

// checkUnstripped verifies a recombined file.
func checkUnstripped(out string, bin facts) error {
	fs, err := inspect(out)
	if err != nil {
		return fmt.Errorf("recombined file: %w", err)
	}
	switch {
	case fs.buildID != bin.buildID:
		return fmt.Errorf("recombined file has build-id %q, not %s", fs.buildID, bin.buildID)
	case !fs.hasDebug:
		return errors.New("recombined file has no DWARF")
	case !fs.hasSymtab:
		return errors.New("recombined file has no symbol table")
	case fs.separate:
		return errors.New("recombined file has no code")
	case bin.ehFrame && !fs.ehFrame:
		return errors.New("recombined file lost .eh_frame")
	}
	return nil
}

// limitedBuffer keeps the first 4 KiB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4096 - len(l.b); room > 0 {
		if len(p) < room {
			room = len(p)
		}
		l.b = append(l.b, p[:room]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }

// detectStyle reads the split style from where the -dbg rootfs's debug files are. The styles
// debug and debug-with-srcpkg lay files out alike; the default (debug-with-srcpkg) is named.
func (r *run) detectStyle() string {
	var dotDebug, dfd int
	for k, d := range r.dbgAt {
		if d.side != sideDbg {
			continue
		}
		p := strings.TrimPrefix(k, "dbg:")
		switch {
		case strings.HasPrefix(p, "/usr/lib/debug/.build-id/"):
		case strings.HasPrefix(p, "/usr/lib/debug/") && strings.HasSuffix(p, ".debug"):
			dfd++
		case strings.Contains(p, "/.debug/"):
			dotDebug++
		}
	}
	switch {
	case dotDebug == 0 && dfd == 0:
		return ""
	case dfd > dotDebug:
		return StyleFileDir
	case r.dbgSrc:
		return StyleWithSrcpkg
	}
	return StyleWithoutSrc
}

// resolveLinks gives each binary its other names: hard links, and symlinks that resolve to it
// (through symlinked directories too). Hard links of the -dbg rootfs name debug files.
func (r *run) resolveLinks() {
	for l, target := range r.links[sideDbg] {
		if d := r.dbgAt[key(sideDbg, target)]; d != nil {
			r.dbgAt[key(sideDbg, l)] = d
		}
	}
	for l, target := range r.links[sideImage] {
		if d := r.dbgAt[target]; d != nil {
			r.dbgAt[l] = d
		}
		if b := r.binAt[target]; b != nil {
			b.links = append(b.links, l)
		}
	}
	for l := range r.symlink[sideImage] {
		p, ok := resolve(r.symlink[sideImage], l)
		if !ok {
			continue
		}
		if t, ok := r.links[sideImage][p]; ok {
			p = t
		}
		if b := r.binAt[p]; b != nil {
			b.links = append(b.links, l)
		}
	}
	for _, b := range r.bins {
		sort.Strings(b.links)
	}
}

// maxSymlinkHops bounds symlink resolution, as the kernel's 40.
const maxSymlinkHops = 40

// resolve follows symlinks in every component of image path p, inside the image: ".." stops
// at the root and absolute targets start from it. ok is false for loops.
func resolve(links map[string]string, p string) (string, bool) {
	hops := 0
	rest := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := "/"
	for len(rest) > 0 {
		next := path.Join(cur, rest[0])
		rest = rest[1:]
		t, ok := links[next]
		if !ok {
			cur = next
			continue
		}
		if hops++; hops > maxSymlinkHops {
			return "", false
		}
		if !strings.HasPrefix(t, "/") {
			t = path.Join(cur, t)
		}
		t = path.Clean("/" + t)
		if t != "/" {
			rest = append(strings.Split(strings.TrimPrefix(t, "/"), "/"), rest...)
		}
		cur = "/"
	}
	return cur, true
}

// pairRest pairs the binaries left without a debug file by path, then by .gnu_debuglink, and
// starts their jobs.
func (r *run) pairRest(style string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.bins {
		id := b.facts.buildID
		if id == "" || b.facts.hasDebug || r.jobs[id] != nil || b.dropped {
			continue
		}
		if r.have[id] {
			// The server has it: nothing to make; its debug file is looked for the report only.
			j := &job{bin: b}
			if d, how, _ := r.findDebug(b, style); d != nil {
				j.dbg, j.pairedBy, d.used = d, how, true
			}
			r.jobs[id] = j
			continue
		}
		d, how, why := r.findDebug(b, style)
		if d == nil {
			r.skipped = append(r.skipped, Skipped{Path: b.path, Reason: ReasonNoDebug, Detail: why})
			removeFile(b.file)
			b.file, b.dropped = "", true
			continue
		}
		r.start(b, d, how)
	}
}

// findDebug looks for b's debug file without its build-id: at the places of the split style,
// then by the .gnu_debuglink name (beside the binary, in .debug/, under /usr/lib/debug, then
// anywhere). A candidate must be a separate debug file without another build-id, matching the
// debuglink CRC when the binary has one. why explains a failure.
func (r *run) findDebug(b *program, style string) (d *debugFile, how, why string) {
	names := append([]string{b.path}, b.links...)
	var tried []string
	accept := func(c *debugFile) bool {
		if c == nil || c.used || !c.facts.separate {
			return false
		}
		if c.facts.buildID != "" && c.facts.buildID != b.facts.buildID {
			tried = append(tried, fmt.Sprintf("%s has build-id %s", c.path, c.facts.buildID))
			return false
		}
		if b.facts.hasCRC {
			if !c.crcOK {
				crc, err := fileCRC(c.file)
				if err != nil {
					tried = append(tried, fmt.Sprintf("%s: %v", c.path, err))
					return false
				}
				c.crc, c.crcOK = crc, true
			}
			if c.crc != b.facts.linkCRC {
				tried = append(tried, fmt.Sprintf("%s does not match the .gnu_debuglink CRC", c.path))
				return false
			}
		}
		return true
	}
	lookup := func(p string) *debugFile {
		if c := r.dbgAt[key(sideDbg, p)]; c != nil {
			return c
		}
		return r.dbgAt[p]
	}
	for _, n := range names {
		if _, isLink := r.symlink[sideImage][n]; isLink {
			continue // Yocto makes debug files for files, not symlinks
		}
		for _, p := range stylePaths(style, n) {
			if c := lookup(p); accept(c) {
				return c, PairedByPath, ""
			}
		}
	}
	if link := b.facts.debugLink; link != "" && !strings.Contains(link, "/") {
		dir := path.Dir(b.path)
		for _, p := range []string{path.Join(dir, link), path.Join(dir, ".debug", link), path.Join("/usr/lib/debug", dir, link)} {
			if c := lookup(p); accept(c) {
				return c, PairedByDebuglink, ""
			}
		}
		for _, c := range r.debugs {
			if path.Base(c.path) == link && accept(c) {
				return c, PairedByDebuglink, ""
			}
		}
	}
	return nil, "", strings.Join(dedup(tried), "; ")
}

// stylePaths are where split style puts the debug file of image path p (every style's place
// when the style is unknown, and p.debug beside p for plain archives).
func stylePaths(style, p string) []string {
	dir, base := path.Dir(p), path.Base(p)
	dotDebug := path.Join(dir, ".debug", base)
	dfd := path.Join("/usr/lib/debug", dir, base+".debug")
	switch family(style) {
	case StyleFileDir:
		return []string{dfd}
	}
	if style != "" {
		return []string{dotDebug}
	}
	return []string{dotDebug, dfd, p + ".debug"}
}

func dedup(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// result assembles the Result, sorted by path. Called after every job is done.
func (r *run) result() *Result {
	res := &Result{ELFs: []ELFInfo{}, Symbols: []Symbol{}, Skipped: []Skipped{}}
	for _, b := range r.bins {
		info := ELFInfo{
			Path: b.path, BuildID: b.facts.buildID, Type: b.facts.typ, Machine: b.facts.machine,
			HasDebug: b.facts.hasDebug, HasSymtab: b.facts.hasSymtab, DebugLink: b.facts.debugLink,
			Size: b.size, Links: b.links,
		}
		if j := r.jobs[b.facts.buildID]; j != nil && b.facts.buildID != "" && j.dbg != nil {
			info.DebugFile, info.PairedBy = j.dbg.path, j.pairedBy
		}
		res.ELFs = append(res.ELFs, info)
	}
	for id, j := range r.jobs {
		switch {
		case r.have[id]:
			res.Symbols = append(res.Symbols, Symbol{BuildID: id, Path: j.bin.path, Source: SourceOnServer})
		case j.sym != nil:
			res.Symbols = append(res.Symbols, *j.sym)
		case j.skip != nil:
			res.Skipped = append(res.Skipped, *j.skip)
		}
	}
	res.Skipped = append(res.Skipped, r.skipped...)
	// Remove every extracted file that is not a symbol file.
	keep := map[string]bool{}
	for _, sym := range res.Symbols {
		keep[sym.File] = true
	}
	for _, b := range r.bins {
		if !keep[b.file] {
			removeFile(b.file)
		}
	}
	for _, d := range r.debugs {
		if !keep[d.file] {
			removeFile(d.file)
		}
	}
	for _, d := range r.debugs {
		if !d.used && d.facts.separate && d.facts.buildID != "" {
			res.Skipped = append(res.Skipped, Skipped{Path: d.path, Reason: ReasonOrphanDebug, Detail: "build-id " + d.facts.buildID})
		}
	}
	sort.Slice(res.ELFs, func(i, k int) bool { return res.ELFs[i].Path < res.ELFs[k].Path })
	sort.Slice(res.Symbols, func(i, k int) bool { return res.Symbols[i].Path < res.Symbols[k].Path })
	sort.Slice(res.Skipped, func(i, k int) bool {
		if res.Skipped[i].Path != res.Skipped[k].Path {
			return res.Skipped[i].Path < res.Skipped[k].Path
		}
		return res.Skipped[i].Reason < res.Skipped[k].Reason
	})
	return res
}
