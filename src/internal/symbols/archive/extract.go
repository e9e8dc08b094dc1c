package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Extract writes the current member, which must be regular and not yet read, to dir/<Name>,
// creating the directories on the way, and returns the path written. dir must exist; it is
// trusted, everything below it is not: every component is opened relative to its parent with
// O_NOFOLLOW, so a symbolic link on the way (whoever made it) is refused, never followed. The
// file is written under a temporary name and renamed into place (a later member of the same name
// replaces it, as tar does; a symbolic link already there is replaced, not followed). Files get
// mode 0644, or 0755 when the member has an execute bit.
//
// Members of other types are refused (ErrRefused): links are for the caller to resolve from
// Entry.Linkname, directories are created as needed, device nodes and fifos are never created.
func (r *Reader) Extract(dir string) (string, error) {
	if r.err != nil {
		return "", r.err
	}
	e := r.cur
	if e == nil {
		return "", errors.New("archive: Extract without a current member")
	}
	if e.Type != tar.TypeReg {
		return "", refused(e.Name, "%s: only regular files are extracted", typeName(e.Type))
	}
	if r.entry.read != 0 {
		return "", &MemberError{Member: e.Name, Err: errors.New("Extract after Read")}
	}
	parent, base, err := openParent(dir, e.Name)
	if err != nil {
		return "", &MemberError{Member: e.Name, Err: err}
	}
	defer unix.Close(parent)
	dst := filepath.Join(dir, filepath.FromSlash(e.Name))
	mode := uint32(0o644)
	if e.Mode&0o111 != 0 {
		mode = 0o755
	}
	tmp := ".archive-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatUint(tmpSeq.Add(1), 10) + ".part"
	fd, err := unix.Openat(parent, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return "", &MemberError{Member: e.Name, Err: fmt.Errorf("create %s: %w", filepath.Join(filepath.Dir(dst), tmp), err)}
	}
	f := os.NewFile(uintptr(fd), dst)
	if err := r.copyTo(f); err != nil {
		f.Close()
		_ = unix.Unlinkat(parent, tmp, 0) // best effort: the copy error is the one to report
		return "", err
	}
	if err := f.Close(); err != nil {
		_ = unix.Unlinkat(parent, tmp, 0)
		return "", &MemberError{Member: e.Name, Err: fmt.Errorf("write %s: %w", dst, err)}
	}
	if err := unix.Renameat(parent, tmp, parent, base); err != nil {
		_ = unix.Unlinkat(parent, tmp, 0)
		return "", &MemberError{Member: e.Name, Err: fmt.Errorf("rename to %s: %w", dst, err)}
	}
	return dst, nil
}

var tmpSeq atomic.Uint64

// copyTo writes the rest of the current member to f.
func (r *Reader) copyTo(f *os.File) error {
	if r.buf == nil {
		r.buf = make([]byte, 256<<10)
	}
	for {
		n, err := r.Read(r.buf)
		if n > 0 {
			if _, werr := f.Write(r.buf[:n]); werr != nil {
				return &MemberError{Member: r.cur.Name, Err: fmt.Errorf("write %s: %w", f.Name(), werr)}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// openParent opens (creating as needed) every directory of name below dir without following
// symbolic links, and returns the parent's descriptor and the last component.
func openParent(dir, name string) (int, string, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", fmt.Errorf("open %s: %w", dir, err)
	}
	parts := strings.Split(name, "/")
	for i, c := range parts[:len(parts)-1] {
		if c == "" || c == "." || c == ".." { // cleanName makes these impossible; never trust it alone
			unix.Close(fd)
			return -1, "", fmt.Errorf("%w: bad path component %q", ErrRefused, c)
		}
		err := unix.Mkdirat(fd, c, 0o755)
		if err != nil && err != unix.EEXIST {
			unix.Close(fd)
			return -1, "", fmt.Errorf("mkdir %s: %w", path.Join(parts[:i+1]...), err)
		}
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			p := path.Join(parts[:i+1]...)
			if err == unix.ELOOP || err == unix.ENOTDIR {
				var st unix.Stat_t
				if unix.Lstat(filepath.Join(dir, filepath.FromSlash(p)), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
					return -1, "", fmt.Errorf("%w: %s is a symbolic link; it is never followed", ErrRefused, p)
				}
				return -1, "", fmt.Errorf("%w: %s is not a directory", ErrRefused, p)
			}
			return -1, "", fmt.Errorf("open %s: %w", p, err)
		}
		fd = next
	}
	last := parts[len(parts)-1]
	if last == "" || last == "." || last == ".." {
		unix.Close(fd)
		return -1, "", fmt.Errorf("%w: bad file name %q", ErrRefused, last)
	}
	return fd, last, nil
}
