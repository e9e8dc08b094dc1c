package logring

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// KmsgSource reads the kernel log from /dev/kmsg, starting at its end (only records logged
// after Run starts). Each read returns one record, "prio,seq,usec,flags[,...];message\n"
// followed by " KEY=value" dictionary lines, which are skipped. Non-printable bytes in the
// message arrive escaped as \xNN and are unescaped. PRIORITY is prio&7. Records of the kernel
// facility get _COMM and SYSLOG_IDENTIFIER "kernel"; records user space wrote to /dev/kmsg
// (any other facility) get SYSLOG_IDENTIFIER and _PID from their "prog[pid]: " prefix.
//
// usec counts from boot on the kernel's clock; the wall time is now - Uptime + usec, worked
// out per record so a clock set after boot (NTP) is followed. When records are overwritten
// before they are read the kernel fails one read with EPIPE; reading goes on with the oldest
// record left.
//
// Path may also be a FIFO or a regular file of records in the same format (one or more per
// read); their end of file ends Run with an error.
type KmsgSource struct {
	Path   string
	Now    func() time.Time              // time.Now when nil
	Uptime func() (time.Duration, error) // CLOCK_MONOTONIC when nil
}

// Kmsg returns a source reading the kernel log at path (normally /dev/kmsg).
func Kmsg(path string) *KmsgSource { return &KmsgSource{Path: path} }

// Name says which device is read.
func (k *KmsgSource) Name() string { return "kmsg:" + k.Path }

// kmsgReadBytes is more than the largest record a read returns (the kernel's
// CONSOLE_EXT_LOG_MAX is 8 KiB; a smaller buffer fails the read with EINVAL).
const kmsgReadBytes = 16 << 10

// Run reads records until ctx ends or reading fails.
func (k *KmsgSource) Run(ctx context.Context, emit func(Entry)) error {
	f, err := os.Open(k.Path)
	if err != nil {
		return fmt.Errorf("open %s: %w", k.Path, err)
	}
	// /dev/kmsg and FIFOs are pollable, so closing the file ends a blocked read.
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer func() {
		if stop() {
			f.Close()
		}
	}()
	if _, err := f.Seek(0, io.SeekEnd); err != nil && !errors.Is(err, syscall.ESPIPE) {
		return fmt.Errorf("seek %s to end: %w", k.Path, err)
	}
	buf := make([]byte, kmsgReadBytes)
	sp := lineSplitter{max: maxLineBytes}
	line := func(b []byte, _ bool) {
		if e, ok := k.parse(b); ok {
			emit(e)
		}
	}
	for {
		n, err := f.Read(buf)
		sp.feed(buf[:n], line)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, syscall.EPIPE):
			// Records we had not read yet were overwritten; the next read returns the
			// oldest one left.
		case err == io.EOF:
			return fmt.Errorf("read %s: end of file", k.Path)
		default:
			return fmt.Errorf("read %s: %w", k.Path, err)
		}
	}
}

// parse reads one record line; dictionary lines (leading space) and malformed lines are
// skipped.
func (k *KmsgSource) parse(line []byte) (Entry, bool) {
	if len(line) == 0 || line[0] == ' ' {
		return Entry{}, false
	}
	head, body, ok := bytes.Cut(line, []byte{';'})
	if !ok {
		return Entry{}, false
	}
	fields := strings.SplitN(string(head), ",", 4)
	if len(fields) < 3 {
		return Entry{}, false
	}
	prio, err := strconv.ParseUint(fields[0], 10, 16)
	if err != nil {
		return Entry{}, false
	}
	usec, err := strconv.ParseUint(fields[2], 10, 64)
	if err != nil {
		return Entry{}, false
	}
	msg := unescapeKmsg(body)
	e := Entry{TS: k.wallTime(usec), Fields: map[string]string{"PRIORITY": strconv.Itoa(int(prio & 7))}}
	if prio>>3 == 0 {
		e.Fields["_COMM"] = "kernel"
		e.Fields["SYSLOG_IDENTIFIER"] = "kernel"
	} else if ident, pid, text, ok := parseTag(msg); ok {
		e.Fields["SYSLOG_IDENTIFIER"] = ident
		if pid != "" {
			e.Fields["_PID"] = pid
		}
		msg = text
	}
	e.Fields["MESSAGE"] = msg
	return e, true
}

// wallTime converts a boot-relative timestamp to wall time; without a clock reading it is now.
func (k *KmsgSource) wallTime(usec uint64) time.Time {
	now := time.Now
	if k.Now != nil {
		now = k.Now
	}
	uptime := monotonic
	if k.Uptime != nil {
		uptime = k.Uptime
	}
	t := now()
	up, err := uptime()
	if err != nil || usec > math.MaxInt64/1000 {
		return t
	}
	return t.Add(time.Duration(usec)*time.Microsecond - up)
}

// monotonic reads CLOCK_MONOTONIC, the clock printk timestamps follow (neither counts
// suspend).
func monotonic() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime: %w", err)
	}
	return time.Duration(ts.Nano()), nil
}

// unescapeKmsg undoes the kernel's \xNN escaping of non-printable bytes and backslashes.
func unescapeKmsg(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+3 < len(b) && b[i+1] == 'x' {
			if v, err := strconv.ParseUint(string(b[i+2:i+4]), 16, 8); err == nil {
				out = append(out, byte(v))
				i += 3
				continue
			}
		}
		out = append(out, b[i])
	}
	return string(out)
}
