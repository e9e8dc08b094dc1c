package debugpkg

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// members is what debugpkg reads an image through: the members of a tarball in stream order,
// or the files of a directory. internal/symbols/archive's *Reader has this shape. An error
// wrapping errRefused is about one member only: Next goes on with the next one.
type members interface {
	Next() (*entry, error) // io.EOF at the end
	Read(p []byte) (int, error)
	Close() error
}

// Member types, as in archive/tar (and internal/symbols/archive's Entry.Type).
const (
	typeReg     = '0'
	typeLink    = '1'
	typeSymlink = '2'
	typeDir     = '5'
)

// openImage opens a tarball (any compression) or a directory.
func openImage(p string) (members, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return openDir(p)
	}
	return openArchive(p)
}

// imagePath turns a member name ("./usr/bin/x", "usr/bin/x") into an image path ("/usr/bin/x").
// Names are never used as paths on disk: extracted files are named by number.
func imagePath(name string) string {
	return path.Clean("/" + strings.TrimPrefix(name, "./"))
}

// dirMembers walks a directory tree in name order (components compared one by one, as GNU
// tar's --sort=name). The second and later names of a file (same device and inode) are hard
// links to the first. A file that cannot be opened gives a read error wrapping
// fs.ErrPermission (or whatever open said) for that member only.
type dirMembers struct {
	root  string
	list  []dirItem
	i     int
	cur   *os.File
	err   error // open error of the current member
	first map[[2]uint64]string
}

type dirItem struct {
	rel string // slash-separated, relative to root
	typ byte
}

func openDir(root string) (*dirMembers, error) {
	d := &dirMembers{root: root, i: -1, first: map[[2]uint64]string{}}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if p != root && de != nil && de.IsDir() && os.IsPermission(err) {
				d.list = append(d.list, dirItem{rel: d.rel(p), typ: typeDir})
				return fs.SkipDir
			}
			return err
		}
		if p == root {
			return nil
		}
		switch t := de.Type(); {
		case t.IsDir():
			d.list = append(d.list, dirItem{rel: d.rel(p), typ: typeDir})
		case t&fs.ModeSymlink != 0:
			d.list = append(d.list, dirItem{rel: d.rel(p), typ: typeSymlink})
		case t.IsRegular():
			d.list = append(d.list, dirItem{rel: d.rel(p), typ: typeReg})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", root, err)
	}
	return d, nil
}

func (d *dirMembers) rel(p string) string {
	r, err := filepath.Rel(d.root, p)
	if err != nil {
		return filepath.ToSlash(p)
	}
	return filepath.ToSlash(r)
}

func (d *dirMembers) Next() (*entry, error) {
	d.closeCur()
	d.i++
	if d.i >= len(d.list) {
		return nil, io.EOF
	}
	it := d.list[d.i]
	full := filepath.Join(d.root, filepath.FromSlash(it.rel))
	e := &entry{Name: it.rel, Type: it.typ}
	fi, err := os.Lstat(full)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", it.rel, err)
	}
	e.Mode = int64(fi.Mode().Perm())
	switch it.typ {
	case typeSymlink:
		target, err := os.Readlink(full)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", it.rel, err)
		}
		if e.Linkname, err = resolveSymlink(it.rel, target); err != nil {
			return nil, err
		}
	case typeReg:
		e.Size = fi.Size()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			key := [2]uint64{uint64(st.Dev), uint64(st.Ino)}
			if first, seen := d.first[key]; seen {
				e.Type, e.Linkname, e.Size = typeLink, first, 0
				return e, nil
			}
			d.first[key] = it.rel
		}
		d.cur, d.err = os.Open(full)
	}
	return e, nil
}

func (d *dirMembers) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.cur == nil {
		return 0, io.EOF
	}
	return d.cur.Read(p)
}

func (d *dirMembers) closeCur() {
	if d.cur != nil {
		d.cur.Close()
		d.cur = nil
	}
	d.err = nil
}

func (d *dirMembers) Close() error {
	d.closeCur()
	return nil
}

// refuse is the error of a member that is not handed out.
func refuse(member, why string) error {
	return &memberError{Member: member, Err: fmt.Errorf("%w: %s", errRefused, why)}
}

// resolveSymlink resolves a symlink's target lexically against the link's directory, inside
// the root.
func resolveSymlink(name, target string) (string, error) {
	switch {
	case target == "":
		return "", refuse(name, "empty symlink target")
	case strings.IndexByte(target, 0) >= 0:
		return "", refuse(name, "NUL byte in the symlink target")
	case target[0] == '/':
		if t := strings.TrimPrefix(path.Clean(target), "/"); t != "" {
			return t, nil
		}
		return ".", nil
	}
	t := path.Join(path.Dir(name), target)
	if t == ".." || strings.HasPrefix(t, "../") {
		return "", refuse(name, fmt.Sprintf("symlink to %q points outside the archive", target))
	}
	return t, nil
}
