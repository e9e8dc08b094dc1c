package debugpkg

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"meta-memfault-go/internal/version"
)

// The image index cache (Options.CacheDir). Reading an image is a list of events: each ELF file
// with its facts, each file skipped and why, each hard link and symlink, in stream order. The
// scan of an image tarball records them; the cache keeps them under the SHA-256 of the
// tarball's bytes. A later run of the same bytes replays them through the same code (add, skip)
// instead of decompressing the image, and asks the server about the build-ids they name: when
// it has them all, nothing else of the image is needed and the Result is what reading it would
// have given. Entries are plain JSON files, written whole (rename) and checked on load.

// cacheFormat names the entry layout and what the scan records; change it whenever either
// changes, so that old entries are not taken for new ones.
const cacheFormat = "memfault-image-index/1"

// cacheKeep is how many entries are kept; the least recently used go first.
const cacheKeep = 64

// maxCacheEntry bounds the size of an entry read back (an image of 2e6 members is far less).
const maxCacheEntry = 256 << 20

// Event kinds.
const (
	opELF     = "elf"
	opSkip    = "skip"
	opLink    = "link"
	opSymlink = "symlink"
)

// event is one thing the scan of the image learnt.
type event struct {
	Op     string      `json:"op"`
	Path   string      `json:"path"`
	Target string      `json:"target,omitempty"` // link, symlink: the image path it points to
	Reason string      `json:"reason,omitempty"` // skip
	Detail string      `json:"detail,omitempty"` // skip
	Size   int64       `json:"size,omitempty"`   // elf
	Facts  *eventFacts `json:"facts,omitempty"`  // elf
}

// eventFacts are an ELF file's facts, and for a separate debug file its own CRC-32 (what a
// binary's .gnu_debuglink is checked against).
type eventFacts struct {
	BuildID   string `json:"build_id,omitempty"`
	Type      string `json:"type"`
	Machine   string `json:"machine,omitempty"`
	HasDebug  bool   `json:"has_debug,omitempty"`
	HasSymtab bool   `json:"has_symtab,omitempty"`
	HasUnwind bool   `json:"has_unwind,omitempty"`
	EhFrame   bool   `json:"eh_frame,omitempty"`
	DebugLink string `json:"debuglink,omitempty"`
	LinkCRC   uint32 `json:"link_crc,omitempty"`
	HasCRC    bool   `json:"has_link_crc,omitempty"`
	Separate  bool   `json:"separate,omitempty"`
	CRC       uint32 `json:"crc,omitempty"`
	HasOwnCRC bool   `json:"has_crc,omitempty"`
}

func factsEvent(fs facts) *eventFacts {
	return &eventFacts{
		BuildID: fs.buildID, Type: fs.typ, Machine: fs.machine, HasDebug: fs.hasDebug, HasSymtab: fs.hasSymtab,
		HasUnwind: fs.hasUnwind, EhFrame: fs.ehFrame, DebugLink: fs.debugLink, LinkCRC: fs.linkCRC, HasCRC: fs.hasCRC,
		Separate: fs.separate,
	}
}

func (e *eventFacts) facts() facts {
	return facts{
		buildID: e.BuildID, typ: e.Type, machine: e.Machine, hasDebug: e.HasDebug, hasSymtab: e.HasSymtab,
		hasUnwind: e.HasUnwind, ehFrame: e.EhFrame, debugLink: e.DebugLink, linkCRC: e.LinkCRC, hasCRC: e.HasCRC,
		separate: e.Separate,
	}
}

// cacheEntry is one file of the cache.
type cacheEntry struct {
	Format string `json:"format"`
	Tool   string `json:"tool"` // the version that wrote it: another version reads the image again
	SHA256 string `json:"image_sha256"`
	Size   int64  `json:"image_size"`
	// EventsSHA256 is the SHA-256 of Events as JSON: an entry damaged on disk is not used.
	EventsSHA256 string  `json:"events_sha256"`
	Events       []event `json:"events"`
}

func toolID() string { return version.Version + " " + version.GitCommit }

type imageCache struct {
	dir  string // CacheDir/image-index
	logf func(string, ...any)
}

func newImageCache(dir string, logf func(string, ...any)) *imageCache {
	if dir == "" {
		return nil
	}
	return &imageCache{dir: filepath.Join(dir, "image-index"), logf: logf}
}

func (c *imageCache) path(sum string) string { return filepath.Join(c.dir, sum+".json") }

// load returns the events of the image with these bytes, or ok false (logged when an entry is
// there but cannot be used).
func (c *imageCache) load(sum string, size int64) (events []event, ok bool) {
	p := c.path(sum)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false
	}
	if err != nil {
		c.logf("cache: %v", err)
		return nil, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCacheEntry+1))
	if err == nil && len(b) > maxCacheEntry {
		err = errors.New("too large")
	}
	var e cacheEntry
	if err == nil {
		err = json.Unmarshal(b, &e)
	}
	if err == nil {
		err = e.check(sum, size)
	}
	if err != nil {
		c.logf("cache: %s: not used: %v", p, err)
		return nil, false
	}
	now := time.Now()
	_ = os.Chtimes(p, now, now) // recently used: pruned last
	return e.Events, true
}

// check validates an entry read back: made by this version for these bytes, undamaged, and
// with events the replay can take.
func (e *cacheEntry) check(sum string, size int64) error {
	switch {
	case e.Format != cacheFormat:
		return fmt.Errorf("format %q, not %q", e.Format, cacheFormat)
	case e.Tool != toolID():
		return fmt.Errorf("written by memfault %s, not %s", e.Tool, toolID())
	case e.SHA256 != sum || e.Size != size:
		return errors.New("made for other image bytes")
	case eventsSum(e.Events) != e.EventsSHA256:
		return errors.New("damaged: its checksum does not match")
	}
	image := func(p string) bool { return strings.HasPrefix(p, "/") && path.Clean(p) == p }
	for i, ev := range e.Events {
		ok := image(ev.Path)
		switch ev.Op {
		case opELF:
			ok = ok && ev.Facts != nil && ev.Size >= 0
		case opSkip:
			ok = ok && ev.Reason != ""
		case opLink, opSymlink:
			ok = ok && image(ev.Target)
		default:
			ok = false
		}
		if !ok {
			return fmt.Errorf("event %d (%q %q) is not valid", i, ev.Op, ev.Path)
		}
	}
	return nil
}

// exact says whether JSON keeps the event's strings as they are (valid UTF-8).
func (ev *event) exact() bool {
	ss := []string{ev.Path, ev.Target, ev.Reason, ev.Detail}
	if f := ev.Facts; f != nil {
		ss = append(ss, f.BuildID, f.Type, f.Machine, f.DebugLink)
	}
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

func eventsSum(events []event) string {
	b, err := json.Marshal(events)
	if err != nil {
		return ""
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// store writes the entry of an image whole (a temporary file renamed into place), then prunes
// the oldest entries. Failures are logged: the cache is an optimisation.
func (c *imageCache) store(sum string, size int64, events []event) {
	if events == nil {
		events = []event{}
	}
	for _, ev := range events {
		if !ev.exact() {
			// JSON would replace its bytes: the replay would not give what reading gives.
			c.logf("cache: not stored: %q is not UTF-8", ev.Path)
			return
		}
	}
	e := cacheEntry{Format: cacheFormat, Tool: toolID(), SHA256: sum, Size: size, EventsSHA256: eventsSum(events), Events: events}
	err := c.write(sum, &e)
	if err != nil {
		c.logf("cache: not stored: %v", err)
		return
	}
	c.prune()
}

func (c *imageCache) write(sum string, e *cacheEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(c.dir, ".entry-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), c.path(sum))
	}
	return err
}

// prune keeps the cacheKeep most recently used entries, and removes temporary files a killed
// run left behind (older than an hour).
func (c *imageCache) prune() {
	des, err := os.ReadDir(c.dir)
	if err != nil {
		return
	}
	type ent struct {
		name string
		mod  time.Time
	}
	var entries []ent
	for _, de := range des {
		fi, err := de.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		switch name := de.Name(); {
		case strings.HasPrefix(name, ".entry-") && time.Since(fi.ModTime()) > time.Hour:
			os.Remove(filepath.Join(c.dir, name))
		case strings.HasSuffix(name, ".json"):
			entries = append(entries, ent{name, fi.ModTime()})
		}
	}
	if len(entries) <= cacheKeep {
		return
	}
	sort.Slice(entries, func(i, k int) bool { return entries[i].mod.After(entries[k].mod) })
	for _, e := range entries[cacheKeep:] {
		os.Remove(filepath.Join(c.dir, e.name))
	}
}

// hashingReader hashes what is read through it.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func newHashingReader(r io.Reader) *hashingReader { return &hashingReader{r: r, h: sha256.New()} }

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// finish reads the rest of the underlying reader into the hash and returns the sum.
func (h *hashingReader) finish() (string, error) {
	if _, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, h, make([]byte, 256<<10)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.h.Sum(nil)), nil
}

// hashFile is the SHA-256 of a file's bytes, and how many there were.
func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := newHashingReader(f)
	sum, err := h.finish()
	return sum, h.n, err
}

// regularFile says whether p is a regular file (a tarball; directories are not cached).
func regularFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
