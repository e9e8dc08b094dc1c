package debugpkg

import "meta-memfault-go/internal/symbols/archive"

// The images are read through internal/symbols/archive: names cleaned and kept inside the root,
// hostile members refused and reported, bomb limits.
type entry = archive.Entry

type memberError = archive.MemberError

var errRefused = archive.ErrRefused

func openArchive(p string) (members, error) { return archive.Open(p, archive.DefaultLimits) }
