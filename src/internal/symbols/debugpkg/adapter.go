package debugpkg

// TEMPORARY ADAPTER, to be replaced by internal/symbols/archive when it lands (see
// ../DESIGN.md): the replacement is
//
//	type entry = archive.Entry
//	func openArchive(p string) (members, error) { return archive.Open(p, archive.DefaultLimits) }
//
// and deleting the rest of this file. Until then this reads tarballs with archive/tar and the
// decompressors at hand (xz through the xz program), without the archive package's guards
// against hostile archives; debugpkg never uses member names as paths on disk, so nothing is
// written outside its directory either way.

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
	Name     string // cleaned, relative, "./" stripped
	Type     byte   // tar.TypeReg, TypeLink, TypeSymlink, TypeDir, ...
	Linkname string
	Size     int64
	Mode     int64
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
	for {
		h, err := m.tr.Next()
		if err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if name == "" {
			continue // the root directory itself
		}
		if strings.HasPrefix(path.Clean(strings.TrimPrefix(h.Name, "./")), "..") {
			return nil, fmt.Errorf("member %q: name outside the archive", h.Name)
		}
		e := &entry{Name: name, Type: h.Typeflag, Linkname: h.Linkname, Size: h.Size, Mode: h.Mode}
		if e.Type == tar.TypeRegA {
			e.Type = tar.TypeReg
		}
		if e.Type == tar.TypeLink {
			e.Linkname = strings.TrimPrefix(path.Clean("/"+h.Linkname), "/")
		}
		return e, nil
	}
}

func (m *tarMembers) Read(p []byte) (int, error) { return m.tr.Read(p) }

func (m *tarMembers) Close() error {
	for _, c := range m.close {
		c()
	}
	return m.f.Close()
}
