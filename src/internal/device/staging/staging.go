// Package staging keeps MAR entries on the device until they are uploaded: one directory per
// entry under <tmp_dir>/mar/<uuid>/ holding the attachments and manifest.json. The manifest is
// written last, through manifest.tmp and a rename, so a directory without manifest.json is an
// unfinished entry and never uploaded.
package staging

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"meta-memfault-go/internal/protocol"
)

// ManifestName is the file whose presence marks an entry as complete.
const ManifestName = "manifest.json"

// Dir is the staging area <tmp_dir>/mar.
type Dir struct{ Path string }

// ForTmpDir returns the staging area of a tmp_dir.
func ForTmpDir(tmpDir string) Dir { return Dir{Path: filepath.Join(tmpDir, "mar")} }

// Entry is one entry being written.
type Entry struct {
	UUID string
	Path string
}

// NewUUID returns a random (version 4) UUID.
func NewUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// NewEntry creates the directory of a new entry.
func (d Dir) NewEntry() (*Entry, error) {
	if err := os.MkdirAll(d.Path, 0o755); err != nil {
		return nil, fmt.Errorf("create staging directory: %w", err)
	}
	id, err := NewUUID()
	if err != nil {
		return nil, fmt.Errorf("new entry id: %w", err)
	}
	p := filepath.Join(d.Path, id)
	if err := os.Mkdir(p, 0o755); err != nil {
		return nil, fmt.Errorf("create entry: %w", err)
	}
	return &Entry{UUID: id, Path: p}, nil
}

// Create creates an attachment file in the entry.
func (e *Entry) Create(name string) (*os.File, error) {
	return os.OpenFile(filepath.Join(e.Path, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// Commit makes the entry visible: manifest.tmp is written and synced, renamed to
// manifest.json, and the directory is synced. Attachments must already be synced.
func (e *Entry) Commit(m *protocol.Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(e.Path, "manifest.tmp")
	if err := writeSync(tmp, b); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(e.Path, ManifestName)); err != nil {
		return fmt.Errorf("commit manifest: %w", err)
	}
	return syncDir(e.Path)
}

// Abort removes the entry and everything in it.
func (e *Entry) Abort() error { return os.RemoveAll(e.Path) }

func writeSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

// Space is what a file system has left for unprivileged writers.
type Space struct {
	AvailBytes  uint64
	AvailInodes uint64
}

// FreeSpace reports the space left on the file system holding path (or its nearest existing
// parent).
func FreeSpace(path string) (Space, error) {
	for {
		var st unix.Statfs_t
		err := unix.Statfs(path, &st)
		if err == nil {
			return Space{AvailBytes: st.Bavail * uint64(st.Bsize), AvailInodes: st.Ffree}, nil
		}
		parent := filepath.Dir(path)
		if !errors.Is(err, unix.ENOENT) || parent == path {
			return Space{}, fmt.Errorf("statfs %s: %w", path, err)
		}
		path = parent
	}
}

// WriteFileAtomic writes a small file durably: a temporary file beside it, fsync, rename.
func WriteFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := writeSync(tmp, b); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}
