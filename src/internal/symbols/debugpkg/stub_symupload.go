// TEMPORARY STUB of branch symupload, written only so that cmd/memfault and the uploader can be
// tested end to end before the real debugpkg (written on another branch) lands. The lead
// engineer deletes this file when merging; nothing else in debugpkg comes from this branch.
//
// FromArchive here reads a plain .tar or .tar.gz of ELF files that already carry DWARF:
// regular members whose first bytes are the ELF magic are extracted (flat, under opt.TmpDir),
// their GNU build-id and sections read with debug/elf. FromYocto is not implemented.

package debugpkg

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"meta-memfault-go/internal/elfcore"
)

const (
	stubMaxMember = 4 << 30
	stubMaxTotal  = 32 << 30
)

// FromYocto is not part of the stub.
func FromYocto(ctx context.Context, image, dbgImage string, opt Options) (*Result, error) {
	return nil, errors.New("upload-yocto-symbols: not available in this build (debugpkg stub of branch symupload)")
}

// FromArchive (stub) lists and extracts the ELF files of a .tar or .tar.gz archive.
func FromArchive(ctx context.Context, archive string, opt Options) (*Result, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", archive, err)
		}
		defer zr.Close()
		r = zr
	}
	dir, err := os.MkdirTemp(opt.TmpDir, "elf-")
	if err != nil {
		return nil, err
	}
	res := &Result{}
	tr := tar.NewReader(r)
	var total int64
	seen := map[string]bool{}
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", archive, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean("/" + strings.TrimPrefix(h.Name, "./"))
		if seen[name] {
			continue
		}
		seen[name] = true
		if h.Size > stubMaxMember || total+h.Size > stubMaxTotal {
			res.Skipped = append(res.Skipped, Skipped{Path: name, Reason: "too large"})
			continue
		}
		total += h.Size
		head := make([]byte, 4)
		if _, err := io.ReadFull(tr, head); err != nil || string(head) != elf.ELFMAG {
			continue
		}
		out := filepath.Join(dir, fmt.Sprintf("%06d.elf", n))
		if err := stubWrite(out, head, tr); err != nil {
			return nil, err
		}
		info, err := stubInfo(out, name)
		if err != nil {
			res.Skipped = append(res.Skipped, Skipped{Path: name, Reason: err.Error()})
			continue
		}
		res.ELFs = append(res.ELFs, info)
		switch {
		case info.BuildID == "":
			res.Skipped = append(res.Skipped, Skipped{Path: name, Reason: "no GNU build-id"})
		case !info.HasDebug:
			res.Skipped = append(res.Skipped, Skipped{Path: name, Reason: "no debug information (.debug_info)"})
		default:
			res.Symbols = append(res.Symbols, Symbol{BuildID: info.BuildID, Path: name, File: out, Size: info.Size, Source: "binary"})
		}
	}
	return res, nil
}

func stubWrite(out string, head []byte, r io.Reader) error {
	w, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = w.Write(head)
	if err == nil {
		_, err = io.Copy(w, r)
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return err
}

func stubInfo(file, name string) (ELFInfo, error) {
	f, err := os.Open(file)
	if err != nil {
		return ELFInfo{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ELFInfo{}, err
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return ELFInfo{}, fmt.Errorf("not a readable ELF file: %v", err)
	}
	info := ELFInfo{Path: name, Size: st.Size(), Machine: strings.ToLower(strings.TrimPrefix(ef.Machine.String(), "EM_"))}
	id, err := elfcore.FileBuildID(f, st.Size())
	if err == nil {
		info.BuildID = id
	}
	switch ef.Type {
	case elf.ET_EXEC:
		info.Type = "exec"
	case elf.ET_DYN:
		info.Type = "shared"
		for _, p := range ef.Progs {
			if p.Type == elf.PT_INTERP {
				info.Type = "pie"
			}
		}
	case elf.ET_REL:
		info.Type = "relocatable"
	case elf.ET_CORE:
		info.Type = "core"
	default:
		info.Type = "other"
	}
	if s := ef.Section(".debug_info"); s != nil && s.Size > 0 && s.Type != elf.SHT_NOBITS {
		info.HasDebug = true
	}
	info.HasSymtab = ef.Section(".symtab") != nil
	if s := ef.Section(".gnu_debuglink"); s != nil && s.Size < 4096 {
		if b, err := s.Data(); err == nil {
			if i := strings.IndexByte(string(b), 0); i > 0 {
				info.DebugLink = string(b[:i])
			}
		}
	}
	return info, nil
}
