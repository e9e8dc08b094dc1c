package debugpkg

import (
	"bytes"
	"fmt"
	"io"

	"meta-memfault-go/internal/symbols/archive"
)

// The images are read through internal/symbols/archive: names cleaned and kept inside the root,
// hostile members refused and reported, bomb limits.
type entry = archive.Entry

type memberError = archive.MemberError

var errRefused = archive.ErrRefused

func openArchive(p string) (members, error) { return archive.Open(p, archive.DefaultLimits) }

// openArchiveFrom reads a tarball from src (which the caller closes); name is for errors.
func openArchiveFrom(name string, src io.Reader) (members, error) {
	m, err := archive.NewReader(src, archive.DefaultLimits)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

// compressed says whether the first bytes of a file are those of a compressed stream the
// archive package reads (false for a plain tar, or anything else); err for a compression it
// does not read.
func compressed(head []byte) (bool, error) {
	k, _, err := archive.Detect(bytes.NewReader(head))
	return k != archive.None, err
}

// readCount is how much a tarball reader has read so far.
func readCount(m members) (rc ReadCount) {
	if a, ok := m.(*archive.Reader); ok {
		rc.Compressed, rc.Decompressed, rc.Decompressor = a.CompressedBytes(), a.DecompressedBytes(), a.Decompressor()
	}
	return rc
}
