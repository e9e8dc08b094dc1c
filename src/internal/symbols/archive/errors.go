package archive

import (
	"errors"
	"fmt"
)

// The errors of this package wrap one of these sentinels (test with errors.Is). Only ErrRefused
// leaves the Reader usable: the member is skipped and Next continues with the one after it.
var (
	// ErrRefused: a member this package will not hand out or write: a name or link target
	// outside the archive root, a member over Limits.MaxMember, a device node or fifo given to
	// Extract.
	ErrRefused = errors.New("refused")
	// ErrLimit: a bound of Limits was reached (also wrapped with ErrRefused for MaxMember).
	ErrLimit = errors.New("limit exceeded")
	// ErrTruncated: the stream ended inside a member, a header or the compressed data, or
	// without the tar end-of-archive marker.
	ErrTruncated = errors.New("truncated archive")
	// ErrCorrupt: an invalid tar header (also what a member longer than its header says looks
	// like), a bad checksum, invalid compressed data, trailing data after the archive.
	ErrCorrupt = errors.New("corrupt archive")
)

// MemberError is an error about one member, or about the stream right after it (After).
type MemberError struct {
	Member string // cleaned name, or the raw name when the name itself is refused
	After  bool   // the error is in the stream after the member's data (usually the next header)
	Err    error
}

func (e *MemberError) Error() string {
	if e.After {
		return fmt.Sprintf("after member %q: %v", e.Member, e.Err)
	}
	return fmt.Sprintf("member %q: %v", e.Member, e.Err)
}

func (e *MemberError) Unwrap() error { return e.Err }

func refused(member, format string, args ...any) error {
	return &MemberError{Member: member, Err: fmt.Errorf("%w: "+format, append([]any{ErrRefused}, args...)...)}
}
