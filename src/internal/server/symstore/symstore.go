// Package symstore finds the symbol files of a build-id: uploaded ones (in the store) and, for
// local use, files under --symbols-dir trees (a build tree, a sysroot, /usr/lib/debug with its
// .build-id links), indexed once at start. Opened files are cached per build-id, bounded.
package symstore

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"meta-memfault-go/internal/elfcore"
	"meta-memfault-go/internal/server/store"
	"meta-memfault-go/internal/server/symbolize"
	"meta-memfault-go/internal/unwind"
)

// ErrNotFound means no symbol file is known for a build-id.
var ErrNotFound = errors.New("no symbols")

// Symbols are the parsed symbol files of one build-id.
type Symbols struct {
	BuildID string
	Name    string
	Sym     *symbolize.File // names and lines (nil when no file has any)
	Unwind  *unwind.Tables  // call frame information (nil when no file has any)
}

type candidate struct {
	path             string
	hasDWARF, hasCFI bool
	hasSymtab        bool
	size             int64
}

// Store looks symbols up by build-id.
type Store struct {
	db  *store.Store
	log *slog.Logger

	index map[string][]candidate // from --symbols-dir

	mu    sync.Mutex
	cache map[string]*Symbols
	order []string
	max   int
}

// New indexes dirs (which may be empty) and serves uploads from st.
func New(st *store.Store, dirs []string, log *slog.Logger) (*Store, error) {
	s := &Store{db: st, log: log, index: map[string][]candidate{}, cache: map[string]*Symbols{}, max: 256}
	for _, d := range dirs {
		n, err := s.indexDir(d)
		if err != nil {
			return nil, fmt.Errorf("symbols dir %s: %w", d, err)
		}
		log.Info("symbols dir indexed", "dir", d, "elf_files", n, "build_ids", len(s.index))
	}
	return s, nil
}

const maxIndexedFile = 4 << 30

func describe(path string) (string, candidate, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", candidate{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", candidate{}, err
	}
	id, err := elfcore.FileBuildID(f, st.Size())
	if err != nil {
		return "", candidate{}, err
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return "", candidate{}, err
	}
	c := candidate{path: path, size: st.Size()}
	for _, sec := range ef.Sections {
		if sec.Type == elf.SHT_NOBITS {
			continue
		}
		switch sec.Name {
		case ".debug_info", ".zdebug_info":
			c.hasDWARF = true
		case ".eh_frame", ".debug_frame", ".ARM.exidx":
			c.hasCFI = true
		case ".symtab", ".dynsym":
			c.hasSymtab = true
		}
	}
	return id, c, nil
}

func (s *Store) indexDir(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir {
				return err
			}
			return nil // unreadable subtree: skip
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil || info.Size() < 64 || info.Size() > maxIndexedFile {
			return nil
		}
		id, c, err := describe(path)
		if err != nil {
			return nil // not an ELF with a build-id
		}
		s.index[id] = append(s.index[id], c)
		n++
		return nil
	})
	return n, err
}

// LocalFile is an ELF file found under a --symbols-dir.
type LocalFile struct {
	BuildID, Path string
	Size          int64
}

// LocalFiles returns the files indexed under the --symbols-dir trees, by build-id then path.
// The index is fixed at start, so the list is the same on every call.
func (s *Store) LocalFiles() []LocalFile {
	var out []LocalFile
	for id, cands := range s.index {
		for _, c := range cands {
			out = append(out, LocalFile{BuildID: id, Path: c.path, Size: c.size})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].BuildID != out[j].BuildID {
			return out[i].BuildID < out[j].BuildID
		}
		return out[i].Path < out[j].Path
	})
	return out
}

// Has reports whether symbols for the build-id are known.
func (s *Store) Has(ctx context.Context, buildID string) bool {
	if len(s.index[buildID]) > 0 {
		return true
	}
	_, err := s.db.GetSymbol(ctx, buildID)
	return err == nil
}

// Lookup returns the parsed symbols of a build-id, or ErrNotFound.
func (s *Store) Lookup(ctx context.Context, buildID string) (*Symbols, error) {
	s.mu.Lock()
	if sy, ok := s.cache[buildID]; ok {
		s.mu.Unlock()
		return sy, nil
	}
	s.mu.Unlock()

	cands := append([]candidate(nil), s.index[buildID]...)
	name := ""
	if sym, err := s.db.GetSymbol(ctx, buildID); err == nil {
		_, c, err := describe(s.db.BlobPath(sym.Blob))
		if err == nil {
			cands = append([]candidate{c}, cands...)
			name = sym.Name
		}
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("%s: %w", buildID, ErrNotFound)
	}
	sy := &Symbols{BuildID: buildID, Name: name}
	if name == "" {
		sy.Name = filepath.Base(cands[0].path)
	}
	// Names and lines from the best file for them, unwind tables from the best for those.
	best := func(score func(candidate) int) *candidate {
		var b *candidate
		for i := range cands {
			if score(cands[i]) > 0 && (b == nil || score(cands[i]) > score(*b)) {
				b = &cands[i]
			}
		}
		return b
	}
	// The symbol file is opened while the unwind tables are read (two files, or the same
	// one read twice: nothing shared).
	var opened sync.WaitGroup
	var crashed any // a panic of the open, raised again in the caller (the job's recover)
	if c := best(func(c candidate) int { return b2i(c.hasDWARF)*2 + b2i(c.hasSymtab) }); c != nil {
		opened.Add(1)
		go func() {
			defer opened.Done()
			defer func() { crashed = recover() }()
			f, err := symbolize.Open(c.path)
			if err != nil {
				s.log.Warn("symbol file unusable", "build_id", buildID, "path", c.path, "err", err)
			} else {
				sy.Sym = f
			}
		}()
	}
	defer opened.Wait() // also when LoadTables panics: the job's recover must not race the open
	if c := best(func(c candidate) int { return b2i(c.hasCFI) }); c != nil {
		if ef, err := elf.Open(c.path); err == nil {
			t, err := unwind.LoadTables(ef)
			ef.Close()
			if err != nil {
				s.log.Warn("unwind tables unusable", "build_id", buildID, "path", c.path, "err", err)
			} else {
				sy.Unwind = t
			}
		}
	}
	opened.Wait()
	if crashed != nil {
		panic(crashed)
	}
	if sy.Sym == nil && sy.Unwind == nil {
		return nil, fmt.Errorf("%s: files found but none usable: %w", buildID, ErrNotFound)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.cache[buildID]; ok {
		if sy.Sym != nil {
			sy.Sym.Close()
		}
		return old, nil
	}
	s.cache[buildID] = sy
	s.order = append(s.order, buildID)
	for len(s.order) > s.max {
		evict := s.order[0]
		s.order = s.order[1:]
		closeLater(s.cache[evict])
		delete(s.cache, evict)
	}
	return sy, nil
}

// closeLater closes a dropped entry's symbol file (which keeps its file open for the DWARF
// it reads on demand) once every job that could have taken it has ended: jobs are bounded
// by their time budget.
func closeLater(old *Symbols) {
	if old != nil && old.Sym != nil {
		time.AfterFunc(10*time.Minute, func() { old.Sym.Close() })
	}
}

// Forget drops a build-id from the cache (new symbols arrived for it).
func (s *Store) Forget(buildID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	closeLater(s.cache[buildID])
	delete(s.cache, buildID)
	for i, id := range s.order {
		if id == buildID {
			s.order = append(s.order[:i:i], s.order[i+1:]...)
			break
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Fresh returns a store with the same index and uploads but nothing parsed yet (a cold cache).
func (s *Store) Fresh() *Store {
	return &Store{db: s.db, log: s.log, index: s.index, cache: map[string]*Symbols{}, max: s.max}
}
