package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// Entry is one member of an archive.
type Entry struct {
	// Name is cleaned and relative to the archive root: no leading "./" or "/", no ".."
	// component, "." for the root directory itself.
	Name string
	// Type is the tar typeflag: tar.TypeReg (also for GNU sparse, contiguous and old-style
	// regular members), tar.TypeLink, tar.TypeSymlink, tar.TypeDir, tar.TypeChar,
	// tar.TypeBlock, tar.TypeFifo, or whatever other flag the header has.
	Type byte
	// Linkname is, for a hard link (TypeLink), the cleaned name of the member it links to (so
	// a caller can count the file once); for a symbolic link, its target resolved lexically
	// against the link's directory, relative to the archive root (an absolute target is taken
	// inside the root, as in the image it came from). Empty for other types.
	Linkname string
	// Size is the byte count of a regular member (a sparse member's logical size); 0 otherwise.
	Size int64
	// Mode holds the permission bits (07777).
	Mode int64
}

// Reader reads a tar archive, possibly compressed, as a stream. It is not safe for concurrent
// use. Close must be called: it stops an external decompressor.
type Reader struct {
	lim    Limits
	kind   Kind
	file   *os.File // owned when made by Open
	in     *countIn
	out    *countOut
	dec    *decoder
	tr     *tar.Reader
	cur    *Entry // nil before the first member, after a refused one and at the end
	buf    []byte // Extract's copy buffer
	err    error  // sticky
	done   bool   // io.EOF reached and the trailer checked
	closed bool
	entry  struct {
		name string // the last header's name (cleaned, or raw when refused), for errors
		size int64  // its size as the header says
		read int64  // bytes of the current member handed out
	}
	entries   int
	delivered int64 // member bytes handed out by Read and Extract, for MaxTotal
}

// Open opens a tarball file: detect the compression, start decompressing. The Reader owns the
// file; Close closes it.
func Open(name string, lim Limits, opts ...Option) (*Reader, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	r, err := NewReader(f, lim, opts...)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	r.file = f
	return r, nil
}

// NewReader reads a tar archive from src, compressed or not. It reads src forward only and never
// closes it.
func NewReader(src io.Reader, lim Limits, opts ...Option) (*Reader, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	r := &Reader{lim: lim, in: &countIn{r: src}}
	kind, sniffed, err := detect(r.in)
	if err != nil {
		return nil, err
	}
	r.kind = kind
	r.dec, err = newDecoder(kind, sniffed, lim, o)
	if err != nil {
		return nil, r.srcErr(err)
	}
	r.out = &countOut{r: r.dec, lim: lim}
	if kind != None {
		r.out.in = r.in
	}
	r.tr = tar.NewReader(r.out)
	return r, nil
}

// Kind is the compression detected.
func (r *Reader) Kind() Kind { return r.kind }

// Decompressor names what decompresses the stream: "compress/bzip2", "lbzip2", "none", ...
func (r *Reader) Decompressor() string { return r.dec.name }

// CompressedBytes and DecompressedBytes count the stream so far (for reports and benchmarks).
func (r *Reader) CompressedBytes() int64   { return r.in.n.Load() }
func (r *Reader) DecompressedBytes() int64 { return r.out.n }

// Close stops decompressing and closes the file if Open opened it.
func (r *Reader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	if r.err == nil {
		r.err = errors.New("archive: reader closed")
	}
	err := r.dec.close()
	if r.file != nil {
		if cerr := r.file.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

func (r *Reader) fail(err error) error {
	r.err = err
	r.cur = nil
	return err
}

// Next advances to the next member; at the end of the archive it checks the end-of-archive
// marker and the rest of the stream (zero padding only, compressed checksums) and returns
// io.EOF. After an error wrapping ErrRefused, Next may be called again (the member is skipped);
// every other error is returned again by every later call.
func (r *Reader) Next() (*Entry, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.done {
		return nil, io.EOF
	}
	r.cur = nil
	for {
		if r.lim.MaxEntries > 0 && r.entries >= r.lim.MaxEntries {
			return nil, r.fail(r.wrap(fmt.Errorf("%w: more than %d entries (MaxEntries)", ErrLimit, r.lim.MaxEntries), true))
		}
		h, err := r.tr.Next()
		if err == tar.ErrInsecurePath {
			err = nil // with GODEBUG=tarinsecurepath=0; newEntry judges names itself
		}
		if err == io.EOF {
			if err := r.finish(); err != nil {
				return nil, r.fail(err)
			}
			r.done = true
			return nil, io.EOF
		}
		if err != nil {
			return nil, r.fail(r.nextErr(err))
		}
		r.entries++
		r.entry.name, r.entry.size, r.entry.read = h.Name, h.Size, 0
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue // archive-wide PAX records: nothing a caller needs
		}
		e, err := r.newEntry(h)
		if err != nil {
			return nil, err // refused: not sticky
		}
		r.entry.name = e.Name
		r.cur = e
		return e, nil
	}
}

// wrap names the member the error is about (or comes after).
func (r *Reader) wrap(err error, after bool) error {
	var me *MemberError
	if errors.As(err, &me) {
		return err
	}
	if r.entries == 0 {
		return err
	}
	return &MemberError{Member: r.entry.name, After: after, Err: err}
}

// srcErr tells a failure to read the archive itself from a complaint about its content.
func (r *Reader) srcErr(err error) error {
	if e := r.in.failed(); e != nil {
		return fmt.Errorf("read archive: %w", e)
	}
	return err
}

// nextErr explains an error of tar.Reader.Next: it skipped the rest of the current member, then
// read the next header.
func (r *Reader) nextErr(err error) error {
	if e := r.in.failed(); e != nil {
		return r.wrap(fmt.Errorf("read archive: %w", e), true)
	}
	switch {
	case errors.Is(err, tar.ErrHeader) && r.entries == 0 && r.kind == None:
		return fmt.Errorf("%w: not a tar archive (no known compression, no tar header at the start)", ErrCorrupt)
	case errors.Is(err, tar.ErrHeader) && r.entries == 0:
		return fmt.Errorf("%w: the %s stream does not hold a tar archive (no tar header at the start)", ErrCorrupt, r.kind)
	case errors.Is(err, tar.ErrHeader):
		return r.wrap(fmt.Errorf("%w: invalid tar header after the member's %d bytes: the member is larger than its header says, or the stream is damaged",
			ErrCorrupt, r.entry.size), true)
	case errors.Is(err, io.ErrUnexpectedEOF) && r.entries == 0:
		return fmt.Errorf("%w: the stream ends inside the first header", ErrTruncated)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return r.wrap(fmt.Errorf("%w: the stream ends inside the member's %d bytes or the header after it", ErrTruncated, r.entry.size), true)
	}
	return r.wrap(r.contentErr(err), true)
}

// contentErr classifies an error from the decoders or the tar reader.
func (r *Reader) contentErr(err error) error {
	if e := r.in.failed(); e != nil {
		return fmt.Errorf("read archive: %w", e)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the stream ends early", ErrTruncated)
	}
	if strings.HasPrefix(err.Error(), "archive/tar:") {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return decodeErr(r.dec.name, err)
}

// finish checks the end of the archive: two zero blocks, then nothing but zeros up to the end of
// the decompressed stream (which also makes the decoders verify their trailing checksums).
func (r *Reader) finish() error {
	if r.out.lastN == 0 || r.out.zeroTail < 1024 {
		if r.out.n == 0 && r.kind == None {
			return fmt.Errorf("%w: empty file", ErrTruncated)
		}
		if r.out.n == 0 {
			return fmt.Errorf("%w: the %s stream is empty", ErrTruncated, r.kind)
		}
		return r.wrap(fmt.Errorf("%w: the archive ends without its end-of-archive marker", ErrTruncated), true)
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.out.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return r.wrap(fmt.Errorf("%w: data after the end-of-archive marker", ErrCorrupt), true)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return r.wrap(r.contentErr(err), true)
		}
	}
}

// Read reads the current member's bytes; io.EOF at its end (and for members without data).
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.cur == nil {
		return 0, io.EOF
	}
	n, err := r.tr.Read(p)
	r.entry.read += int64(n)
	r.delivered += int64(n)
	if r.lim.MaxTotal > 0 && r.delivered > r.lim.MaxTotal {
		return 0, r.fail(r.wrap(fmt.Errorf("%w: more than %d member bytes read (MaxTotal)", ErrLimit, r.lim.MaxTotal), false))
	}
	if err == io.EOF {
		if r.entry.read != r.cur.Size { // cannot happen with archive/tar; keep the promise anyway
			return n, r.fail(r.wrap(fmt.Errorf("%w: %d of %d bytes", ErrTruncated, r.entry.read, r.cur.Size), false))
		}
		return n, io.EOF
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) && r.in.failed() == nil {
			err = fmt.Errorf("%w: the stream ends after %d of the member's %d bytes", ErrTruncated, r.entry.read, r.cur.Size)
		} else {
			err = r.contentErr(err)
		}
		return n, r.fail(r.wrap(err, false))
	}
	return n, nil
}

// maxName is PATH_MAX: longer names are refused before any use.
const maxName = 4096

// cleanName checks a member name (or a hard link's target) and cleans it; why says what is
// wrong with it.
func cleanName(raw string) (name, why string) {
	switch {
	case raw == "":
		return "", "empty name"
	case len(raw) > maxName:
		return "", fmt.Sprintf("name of %d bytes, longer than %d", len(raw), maxName)
	case strings.IndexByte(raw, 0) >= 0:
		return "", "NUL byte in the name"
	case raw[0] == '/':
		return "", "absolute name"
	}
	for _, c := range strings.Split(raw, "/") {
		if c == ".." {
			return "", `".." in the name`
		}
	}
	return path.Clean(raw), ""
}

// resolveSymlink resolves a symbolic link's target lexically against the link's directory,
// inside the archive root.
func resolveSymlink(name, target string) (string, string) {
	switch {
	case target == "":
		return "", "empty symlink target"
	case len(target) > maxName:
		return "", fmt.Sprintf("symlink target of %d bytes, longer than %d", len(target), maxName)
	case strings.IndexByte(target, 0) >= 0:
		return "", "NUL byte in the symlink target"
	case target[0] == '/':
		t := strings.TrimPrefix(path.Clean(target), "/")
		if t == "" {
			t = "."
		}
		return t, ""
	}
	t := path.Join(path.Dir(name), target)
	if t == ".." || strings.HasPrefix(t, "../") {
		return "", fmt.Sprintf("symlink to %q points outside the archive", target)
	}
	return t, ""
}

func (r *Reader) newEntry(h *tar.Header) (*Entry, error) {
	name, why := cleanName(h.Name)
	if why != "" {
		return nil, refused(h.Name, "%s", why)
	}
	e := &Entry{Name: name, Type: h.Typeflag, Mode: h.Mode & 0o7777}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeCont, tar.TypeGNUSparse:
		e.Type = tar.TypeReg
		e.Size = h.Size
		if r.lim.MaxMember > 0 && h.Size > r.lim.MaxMember {
			return nil, &MemberError{Member: name, Err: fmt.Errorf("%w: %w: %d bytes, more than MaxMember (%d)",
				ErrRefused, ErrLimit, h.Size, r.lim.MaxMember)}
		}
	case tar.TypeLink:
		t, why := cleanName(h.Linkname)
		if why != "" {
			return nil, refused(name, "hard link to %q: %s", h.Linkname, why)
		}
		e.Linkname = t
	case tar.TypeSymlink:
		t, why := resolveSymlink(name, h.Linkname)
		if why != "" {
			return nil, refused(name, "%s", why)
		}
		e.Linkname = t
	}
	return e, nil
}

// typeName says what a non-regular member is, for refusals.
func typeName(t byte) string {
	switch t {
	case tar.TypeLink:
		return "hard link"
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeDir:
		return "directory"
	case tar.TypeChar:
		return "character device node"
	case tar.TypeBlock:
		return "block device node"
	case tar.TypeFifo:
		return "fifo"
	}
	return fmt.Sprintf("member of type %q", t)
}
