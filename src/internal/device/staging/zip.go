package staging

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// The upload format is a plain zip: every file stored (method 0, no compression), one
// `<uuid>/<file>` member per attachment followed by `<uuid>/manifest.json`, entries in the order
// given. Every header is planned before the first byte is written; the CRC-32 of a member is only
// known after its data has streamed past, so each member has a data descriptor (flag bit 3) and
// the CRC and sizes in its local header are zero, as APPNOTE 4.4.4 requires. The layout is fixed,
// so the size of a zip follows from the names and file sizes alone:
//
//	member:  30 + len(name)   local file header
//	       + size             data
//	       + 16               data descriptor (with signature)
//	       + 46 + len(name)   central directory header
//	zip:     sum(members) + 22 (end of central directory, no comment)
//
// No zip64: a zip that would need it (a member or offset of 4 GiB, more than 65535 members) is
// refused with ErrZipTooLarge.
const (
	localHeaderLen   = 30
	descriptorLen    = 16
	centralHeaderLen = 46
	endRecordLen     = 22
	memberOverhead   = localHeaderLen + descriptorLen + centralHeaderLen

	sigLocalHeader   = 0x04034b50
	sigDescriptor    = 0x08074b50
	sigCentralHeader = 0x02014b50
	sigEndRecord     = 0x06054b50

	zipVersion     = 20        // 2.0: data descriptors
	zipMadeBy      = 3<<8 | 20 // Unix, 2.0, so the external attributes carry a mode
	flagDescriptor = 0x0008    // CRC and sizes follow the data
	flagUTF8       = 0x0800    // name is UTF-8 (set only when it is not plain ASCII)
	fileAttrs      = 0o100644 << 16
	maxZip32       = math.MaxUint32 - 1 // 0xffffffff means "see zip64"
)

// ErrZipTooLarge is returned for a zip that would need zip64 extensions.
var ErrZipTooLarge = errors.New("zip too large (needs zip64)")

// zipMember is one planned file of a zip.
type zipMember struct {
	path   string // on disk
	name   string // in the zip
	size   int64
	mtime  time.Time
	offset int64 // of the local header
	crc    uint32
}

// zipNames returns the disk names of an entry's files in zip order: attachments as listed,
// manifest.json last.
func zipNames(e *Info) []string {
	names := make([]string, 0, len(e.Files)+1)
	for _, f := range e.Files {
		if f != ManifestName {
			names = append(names, f)
		}
	}
	return append(names, ManifestName)
}

// planZip stats every file and lays out the zip. It fails on an incomplete entry, a missing or
// irregular file, and a zip that would need zip64.
func planZip(entries []Info) (members []zipMember, cdStart, total int64, err error) {
	var off int64
	for i := range entries {
		e := &entries[i]
		if !e.Complete {
			return nil, 0, 0, fmt.Errorf("zip entry %s: incomplete (no %s)", e.UUID, ManifestName)
		}
		for _, f := range zipNames(e) {
			p := filepath.Join(e.Path, f)
			fi, err := os.Lstat(p)
			if err != nil {
				return nil, 0, 0, fmt.Errorf("zip entry %s: %w", e.UUID, err)
			}
			if !fi.Mode().IsRegular() {
				return nil, 0, 0, fmt.Errorf("zip entry %s: %s is not a regular file", e.UUID, f)
			}
			m := zipMember{path: p, name: e.UUID + "/" + f, size: fi.Size(), mtime: fi.ModTime(), offset: off}
			if len(m.name) > math.MaxUint16 {
				return nil, 0, 0, fmt.Errorf("zip entry %s: file name too long", e.UUID)
			}
			if m.size > maxZip32 || off > maxZip32 {
				return nil, 0, 0, fmt.Errorf("zip entry %s: %w", e.UUID, ErrZipTooLarge)
			}
			off += localHeaderLen + int64(len(m.name)) + m.size + descriptorLen
			members = append(members, m)
		}
	}
	if len(members) > math.MaxUint16 {
		return nil, 0, 0, fmt.Errorf("%d files: %w", len(members), ErrZipTooLarge)
	}
	cdSize := int64(0)
	for _, m := range members {
		cdSize += centralHeaderLen + int64(len(m.name))
	}
	if off > maxZip32 || cdSize > maxZip32 {
		return nil, 0, 0, ErrZipTooLarge
	}
	return members, off, off + cdSize + endRecordLen, nil
}

// ZipSize returns the exact number of bytes WriteZip writes for entries, provided the files do
// not change in between (committed entries never do). It only stats the files.
func ZipSize(entries []Info) (int64, error) {
	_, _, size, err := planZip(entries)
	return size, err
}

// WriteZip writes a store-only zip of the complete entries to w, streaming every file from disk,
// and returns the number of bytes written. Incomplete entries are an error, and so is a file
// whose size changed since it was planned (the result would not match ZipSize).
func WriteZip(w io.Writer, entries []Info) (int64, error) {
	members, cdStart, _, err := planZip(entries)
	if err != nil {
		return 0, err
	}
	cw := &countWriter{w: w}
	bw := bufio.NewWriterSize(cw, 32<<10)
	for i := range members {
		if err := writeMember(bw, &members[i]); err != nil {
			return cw.n, err
		}
	}
	var cdSize int64
	for _, m := range members {
		n, err := writeCentralHeader(bw, &m)
		if err != nil {
			return cw.n, err
		}
		cdSize += n
	}
	var end [endRecordLen]byte
	le := binary.LittleEndian
	le.PutUint32(end[0:], sigEndRecord)
	le.PutUint16(end[8:], uint16(len(members)))
	le.PutUint16(end[10:], uint16(len(members)))
	le.PutUint32(end[12:], uint32(cdSize))
	le.PutUint32(end[16:], uint32(cdStart))
	if _, err := bw.Write(end[:]); err != nil {
		return cw.n, err
	}
	err = bw.Flush()
	return cw.n, err
}

// writeMember writes the local header, the data and the data descriptor of m, and sets m.crc.
func writeMember(w io.Writer, m *zipMember) error {
	f, err := os.Open(m.path)
	if err != nil {
		return fmt.Errorf("zip %s: %w", m.name, err)
	}
	defer f.Close()

	var h [localHeaderLen]byte
	le := binary.LittleEndian
	t, d := dosTime(m.mtime)
	le.PutUint32(h[0:], sigLocalHeader)
	le.PutUint16(h[4:], zipVersion)
	le.PutUint16(h[6:], flags(m.name))
	// method 0 (store); CRC and sizes stay zero: they are in the descriptor
	le.PutUint16(h[10:], t)
	le.PutUint16(h[12:], d)
	le.PutUint16(h[26:], uint16(len(m.name)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	if _, err := io.WriteString(w, m.name); err != nil {
		return err
	}

	crc := crc32.NewIEEE()
	n, err := io.CopyN(io.MultiWriter(w, crc), f, m.size)
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("zip %s: file shrank from %d to %d bytes while being written", m.name, m.size, n)
	}
	if err != nil {
		return fmt.Errorf("zip %s: %w", m.name, err)
	}
	var one [1]byte
	if k, _ := f.Read(one[:]); k != 0 {
		return fmt.Errorf("zip %s: file grew beyond %d bytes while being written", m.name, m.size)
	}
	m.crc = crc.Sum32()

	var dd [descriptorLen]byte
	le.PutUint32(dd[0:], sigDescriptor)
	le.PutUint32(dd[4:], m.crc)
	le.PutUint32(dd[8:], uint32(m.size))
	le.PutUint32(dd[12:], uint32(m.size))
	_, err = w.Write(dd[:])
	return err
}

func writeCentralHeader(w io.Writer, m *zipMember) (int64, error) {
	var h [centralHeaderLen]byte
	le := binary.LittleEndian
	t, d := dosTime(m.mtime)
	le.PutUint32(h[0:], sigCentralHeader)
	le.PutUint16(h[4:], zipMadeBy)
	le.PutUint16(h[6:], zipVersion)
	le.PutUint16(h[8:], flags(m.name))
	le.PutUint16(h[12:], t)
	le.PutUint16(h[14:], d)
	le.PutUint32(h[16:], m.crc)
	le.PutUint32(h[20:], uint32(m.size))
	le.PutUint32(h[24:], uint32(m.size))
	le.PutUint16(h[28:], uint16(len(m.name)))
	le.PutUint32(h[38:], fileAttrs)
	le.PutUint32(h[42:], uint32(m.offset))
	if _, err := w.Write(h[:]); err != nil {
		return 0, err
	}
	if _, err := io.WriteString(w, m.name); err != nil {
		return 0, err
	}
	return centralHeaderLen + int64(len(m.name)), nil
}

func flags(name string) uint16 {
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			return flagDescriptor | flagUTF8
		}
	}
	return flagDescriptor
}

// dosTime converts t (as UTC) to MS-DOS time and date; times before 1980 become 1980-01-01.
func dosTime(t time.Time) (uint16, uint16) {
	t = t.UTC()
	if t.Year() < 1980 {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if t.Year() > 2107 {
		t = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
	}
	tm := uint16(t.Hour()<<11 | t.Minute()<<5 | t.Second()/2)
	dt := uint16((t.Year()-1980)<<9 | int(t.Month())<<5 | t.Day())
	return tm, dt
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// entryZipBytes is what an entry adds to a zip, from the sizes List recorded.
func entryZipBytes(e *Info) int64 {
	n := e.Size
	for _, f := range zipNames(e) {
		n += memberOverhead + 2*int64(len(e.UUID)+1+len(f))
	}
	return n
}

// Batches groups the complete entries, oldest first (by ModTime, then UUID), into consecutive
// batches whose zips are at most maxBytes each, judged by the sizes List recorded (the same
// arithmetic as ZipSize). Incomplete entries are left out. An entry whose zip alone exceeds
// maxBytes is not dropped: it gets a batch of its own, so it is still delivered (the cap keeps
// requests small; it is not a server limit, and the coredump size limit already bounds entries);
// callers can spot it as a one-entry batch over the cap and report it. maxBytes <= 0 means no
// cap: one batch. Order is kept: a later entry never jumps ahead to fill a gap.
func Batches(entries []Info, maxBytes int64) [][]Info {
	var complete []Info
	for _, e := range entries {
		if e.Complete {
			complete = append(complete, e)
		}
	}
	sort.SliceStable(complete, func(i, j int) bool {
		if !complete[i].ModTime.Equal(complete[j].ModTime) {
			return complete[i].ModTime.Before(complete[j].ModTime)
		}
		return complete[i].UUID < complete[j].UUID
	})
	var out [][]Info
	var cur []Info
	var curBytes int64
	for i := range complete {
		n := entryZipBytes(&complete[i])
		if len(cur) > 0 && maxBytes > 0 && curBytes+n+endRecordLen > maxBytes {
			out = append(out, cur)
			cur, curBytes = nil, 0
		}
		cur = append(cur, complete[i])
		curBytes += n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}
