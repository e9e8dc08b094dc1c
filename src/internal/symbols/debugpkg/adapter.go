package debugpkg

// TEMPORARY ADAPTER, to be replaced by internal/symbols/archive when it lands (see
// ../DESIGN.md): the replacement is
//
//	type entry = archive.Entry
//	func openArchive(p string) (members, error) { return archive.Open(p, archive.DefaultLimits) }
//	var errRefused = archive.ErrRefused
//	type memberError = archive.MemberError
//
// and deleting the rest of this file. Until then this reads tarballs with archive/tar and the
// decompressors at hand (xz through the xz program), with the archive package's semantics for
// names (cleaned, relative; absolute names and ".." refused), hard links (the cleaned name of
// the first member) and symlinks (the target resolved lexically against the link's directory,
// relative to the root; absolute targets taken inside the root; targets outside refused) but
// without its limits. debugpkg never uses member names as paths on disk, so nothing is written
// outside its directory either way.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// entry is one member of an image (the fields of archive.Entry).
type entry struct {
	Name     string // cleaned, relative to the root, "./" stripped; "." for the root
	Type     byte   // tar.TypeReg, TypeLink, TypeSymlink, TypeDir, ...
	Linkname string // hard link: the first member's name; symlink: its target, relative to the root
	Size     int64
	Mode     int64
}

// errRefused is wrapped by the error of a member the reader will not hand out; Next can go on.
var errRefused = errors.New("refused")

// memberError names the member an error is about.
type memberError struct {
	Member string
	After  bool
	Err    error
}

func (e *memberError) Error() string { return fmt.Sprintf("member %q: %v", e.Member, e.Err) }
func (e *memberError) Unwrap() error { return e.Err }

// cleanName cleans a member name or a hard link's target as archive.Entry promises.
func cleanName(raw string) (string, error) {
	switch {
	case raw == "":
		return "", refuse(raw, "empty name")
	case strings.IndexByte(raw, 0) >= 0:
		return "", refuse(raw, "NUL byte in the name")
	case raw[0] == '/':
		return "", refuse(raw, "absolute name")
	}
	for _, c := range strings.Split(raw, "/") {
		if c == ".." {
			return "", refuse(raw, `".." in the name`)
		}
	}
	return path.Clean(raw), nil
}

type tarMembers struct {
	f     *os.File
	tr    *tar.Reader
	close []func() error
}

func openArchive(p string) (members, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	m := &tarMembers{f: f}
	br := bufio.NewReaderSize(f, 1<<20)
	magic, err := br.Peek(6)
	if err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	var r io.Reader = br
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		r = zr
	case bytes.HasPrefix(magic, []byte("BZh")):
		r = bzip2.NewReader(br)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		m.close = append(m.close, func() error { zr.Close(); return nil })
		r = zr
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		cmd := exec.Command("xz", "-dc")
		cmd.Stdin = br
		out, err := cmd.StdoutPipe()
		if err != nil {
			f.Close()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: xz: %w", p, err)
		}
		m.close = append(m.close, func() error {
			out.Close()
			cmd.Wait()
			return nil
		})
		r = out
	}
	m.tr = tar.NewReader(r)
	return m, nil
}

func (m *tarMembers) Next() (*entry, error) {
	h, err := m.tr.Next()
	if err != nil {
		return nil, err
	}
	name, err := cleanName(h.Name)
	if err != nil {
		return nil, err
	}
	e := &entry{Name: name, Type: h.Typeflag, Size: h.Size, Mode: h.Mode & 0o7777}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeCont, tar.TypeGNUSparse:
		e.Type = tar.TypeReg
	case tar.TypeLink:
		if e.Linkname, err = cleanName(h.Linkname); err != nil {
			return nil, refuse(name, fmt.Sprintf("hard link to %q: %v", h.Linkname, err))
		}
	case tar.TypeSymlink:
		if e.Linkname, err = resolveSymlink(name, h.Linkname); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (m *tarMembers) Read(p []byte) (int, error) { return m.tr.Read(p) }

func (m *tarMembers) Close() error {
	for _, c := range m.close {
		c()
	}
	return m.f.Close()
}
