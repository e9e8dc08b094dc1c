package logring

import (
	"bytes"
	"context"
	"strconv"
	"strings"
)

// Source produces log entries. Run blocks until ctx ends (then it returns nil) or the source
// fails (then it returns why). It calls emit from one goroutine at a time, with a fresh Fields
// map each call that emit may keep.
type Source interface {
	Name() string
	Run(ctx context.Context, emit func(Entry)) error
}

var (
	_ Source = (*JournalSource)(nil)
	_ Source = (*KmsgSource)(nil)
	_ Source = (*FileSource)(nil)
)

// maxLineBytes bounds a text line read from a file or the kernel log: twice a message, so a
// line cut here is surely cut again (and marked) when its message is added to a ring.
const maxLineBytes = 2 * MaxMessageBytes

// lineSplitter cuts a byte stream into lines without their newline. A line longer than max
// keeps its first max bytes and is reported as cut; the rest up to the newline is dropped.
type lineSplitter struct {
	max int
	buf []byte
	cut bool
}

// feed consumes p and calls fn for every line it completes. fn must not keep line.
func (s *lineSplitter) feed(p []byte, fn func(line []byte, cut bool)) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := s.max - len(s.buf); len(chunk) > room {
			s.buf = append(s.buf, chunk[:room]...)
			s.cut = true
		} else {
			s.buf = append(s.buf, chunk...)
		}
		if i < 0 {
			return
		}
		fn(bytes.TrimSuffix(s.buf, []byte{'\r'}), s.cut)
		s.reset()
		p = p[i+1:]
	}
}

// flush hands over a pending line that has no newline yet (the end of a rotated file).
func (s *lineSplitter) flush(fn func(line []byte, cut bool)) {
	if len(s.buf) > 0 || s.cut {
		fn(s.buf, s.cut)
	}
	s.reset()
}

func (s *lineSplitter) reset() {
	s.buf = s.buf[:0]
	s.cut = false
}

// parseTag splits a syslog message "prog[pid]: text" or "prog: text" into its identifier, pid
// ("" when absent) and text. ok is false when msg does not start with a tag.
func parseTag(msg string) (ident, pid, text string, ok bool) {
	colon := strings.IndexByte(msg, ':')
	if colon <= 0 || colon > 80 {
		return "", "", "", false
	}
	tag := msg[:colon]
	text = strings.TrimPrefix(msg[colon+1:], " ")
	if strings.HasSuffix(tag, "]") {
		open := strings.IndexByte(tag, '[')
		if open <= 0 {
			return "", "", "", false
		}
		pid = tag[open+1 : len(tag)-1]
		if n, err := strconv.ParseUint(pid, 10, 32); err != nil || n == 0 {
			return "", "", "", false
		}
		tag = tag[:open]
	}
	if tag == "" || len(tag) > 64 || strings.ContainsAny(tag, " \t[]") {
		return "", "", "", false
	}
	return tag, pid, text, true
}

// syslogLevels are the level names syslog daemons print (busybox "facility.level").
var syslogLevels = map[string]int{
	"emerg": 0, "panic": 0, "alert": 1, "crit": 2, "err": 3, "error": 3,
	"warn": 4, "warning": 4, "notice": 5, "info": 6, "debug": 7,
}

// syslogFacilities are the facility names syslog daemons print.
var syslogFacilities = map[string]bool{
	"kern": true, "user": true, "mail": true, "daemon": true, "auth": true, "syslog": true,
	"lpr": true, "news": true, "uucp": true, "cron": true, "authpriv": true, "ftp": true,
	"security": true, "mark": true, "local0": true, "local1": true, "local2": true,
	"local3": true, "local4": true, "local5": true, "local6": true, "local7": true,
}

// parseFacilityLevel reads a "facility.level" token such as "daemon.err" and returns the level.
func parseFacilityLevel(tok string) (int, bool) {
	fac, lvl, ok := strings.Cut(tok, ".")
	if !ok || !syslogFacilities[fac] {
		return 0, false
	}
	n, ok := syslogLevels[lvl]
	return n, ok
}
