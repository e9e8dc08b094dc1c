package logring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
)

// FileSource follows a syslog-style text file like `tail -F`: it starts at the file's end,
// reads lines as they are appended, and survives rotation (the file renamed away and a new
// one created: the rest of the old file is read, then the new one from its start) and
// truncation (copytruncate: reading restarts at offset 0). A file that does not exist yet is
// waited for and read from its start. The file is polled every Poll; polling keeps the code
// simple and costs one stat per interval.
//
// Lines in RFC 3164 form ("Mmm dd hh:mm:ss host prog[pid]: msg", the year taken from the
// clock), with busybox's optional "facility.level" after the host, with no host (busybox -S),
// or with an RFC 3339 timestamp (rsyslog's high-precision format) are split into
// SYSLOG_IDENTIFIER, _PID, PRIORITY and MESSAGE; any other line is the MESSAGE, stamped with
// the time it was read.
type FileSource struct {
	Path string
	// SkipKernel drops lines whose identifier is "kernel", when the kernel log is read
	// directly from /dev/kmsg (see Detect).
	SkipKernel bool
	Poll       time.Duration    // 250 ms when zero
	Now        func() time.Time // time.Now when nil; its Location is the file's time zone
}

// File returns a source following the text file at path.
func File(path string) *FileSource { return &FileSource{Path: path} }

// Name says which file is followed.
func (s *FileSource) Name() string { return "file:" + s.Path }

func (s *FileSource) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// fileTail is the state of one FileSource.Run.
type fileTail struct {
	src  *FileSource
	f    *os.File
	fi   os.FileInfo // of f, to recognise rotation
	off  int64       // bytes of f consumed
	sp   lineSplitter
	buf  []byte
	emit func(Entry)
}

// Run follows the file until ctx ends or reading fails.
func (s *FileSource) Run(ctx context.Context, emit func(Entry)) error {
	t := &fileTail{src: s, sp: lineSplitter{max: maxLineBytes}, buf: make([]byte, 32<<10), emit: emit}
	defer t.close()
	switch err := t.open(true); {
	case errors.Is(err, fs.ErrNotExist):
		// Wait for it; it is read from its start once it appears.
	case err != nil:
		return err
	}
	poll := s.Poll
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		if err := t.drain(ctx); err != nil {
			return err
		}
		cur, err := os.Stat(s.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Renamed away and not recreated yet: keep the old file for what is still
			// written to it.
		case err != nil:
			return fmt.Errorf("stat %s: %w", s.Path, err)
		case t.f == nil || !os.SameFile(cur, t.fi):
			// Rotated: finish the old file, then read the new one from its start.
			if err := t.drain(ctx); err != nil {
				return err
			}
			t.sp.flush(t.line)
			t.close()
			if err := t.open(false); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			continue
		case cur.Size() < t.off:
			// Truncated in place: start over at its beginning.
			if _, err := t.f.Seek(0, io.SeekStart); err != nil {
				return fmt.Errorf("seek %s after truncation: %w", s.Path, err)
			}
			t.off = 0
			t.sp.reset()
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// open opens the file; atEnd starts reading at its current end.
func (t *fileTail) open(atEnd bool) error {
	f, err := os.Open(t.src.Path)
	if err != nil {
		return fmt.Errorf("open %s: %w", t.src.Path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat %s: %w", t.src.Path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return fmt.Errorf("follow %s: not a regular file", t.src.Path)
	}
	var off int64
	if atEnd {
		if off, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return fmt.Errorf("seek %s to end: %w", t.src.Path, err)
		}
	}
	t.f, t.fi, t.off = f, fi, off
	t.sp.reset()
	return nil
}

func (t *fileTail) close() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}

// drain reads what the open file has beyond t.off. A partial last line waits in the splitter
// for its newline.
func (t *fileTail) drain(ctx context.Context) error {
	if t.f == nil {
		return nil
	}
	for ctx.Err() == nil {
		n, err := t.f.Read(t.buf)
		t.off += int64(n)
		t.sp.feed(t.buf[:n], t.line)
		if err == io.EOF || (err == nil && n == 0) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", t.src.Path, err)
		}
	}
	return nil
}

func (t *fileTail) line(b []byte, _ bool) {
	if len(b) == 0 {
		return
	}
	e := parseSyslogLine(string(b), t.src.now())
	if t.src.SkipKernel && e.Fields["SYSLOG_IDENTIFIER"] == "kernel" {
		return
	}
	t.emit(e)
}

// parseSyslogLine reads one line of a syslog file; now gives the year and time zone of
// RFC 3164 timestamps and stamps lines without a timestamp.
func parseSyslogLine(line string, now time.Time) Entry {
	ts, rest, ok := parse3164Time(line, now)
	if !ok {
		ts, rest, ok = parse3339Time(line)
	}
	if !ok {
		return Entry{TS: now, Fields: map[string]string{"MESSAGE": line}}
	}
	e := Entry{TS: ts, Fields: map[string]string{}}
	// Optional host (absent with busybox -S), then an optional busybox "facility.level".
	if _, _, _, tagged := parseTag(rest); !tagged {
		if host, after, found := strings.Cut(rest, " "); found && host != "" {
			rest = after
		}
		if tok, after, found := strings.Cut(rest, " "); found {
			if lvl, ok := parseFacilityLevel(tok); ok {
				e.Fields["PRIORITY"] = strconv.Itoa(lvl)
				rest = after
			}
		}
	}
	if ident, pid, text, tagged := parseTag(rest); tagged {
		e.Fields["SYSLOG_IDENTIFIER"] = ident
		if pid != "" {
			e.Fields["_PID"] = pid
		}
		rest = text
	}
	e.Fields["MESSAGE"] = rest
	return e
}

// parse3164Time reads "Mmm dd hh:mm:ss " (day space-padded or not) at the start of line. The
// year is now's, or the year before when that would put the line more than a week ahead of
// now (a December line read in January).
func parse3164Time(line string, now time.Time) (time.Time, string, bool) {
	if len(line) < 16 || line[15] != ' ' {
		return time.Time{}, "", false
	}
	t, err := time.ParseInLocation(time.Stamp, line[:15], now.Location())
	if err != nil {
		return time.Time{}, "", false
	}
	ts := time.Date(now.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, now.Location())
	if ts.After(now.Add(7 * 24 * time.Hour)) {
		ts = ts.AddDate(-1, 0, 0)
	}
	return ts, line[16:], true
}

// parse3339Time reads an RFC 3339 timestamp and a space at the start of line.
func parse3339Time(line string) (time.Time, string, bool) {
	tok, rest, ok := strings.Cut(line, " ")
	if !ok || len(tok) < 20 || len(tok) > 40 {
		return time.Time{}, "", false
	}
	ts, err := time.Parse(time.RFC3339Nano, tok)
	if err != nil {
		return time.Time{}, "", false
	}
	return ts, rest, true
}
