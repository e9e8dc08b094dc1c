package upload

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Progress follows an UploadAll run. Calls may come from several goroutines at once.
type Progress interface {
	Start(files int, bytes int64) // the upload phase begins: files to send, their bytes
	Sent(n int64)                 // n more bytes went out (negative: an attempt restarted)
	Done(r FileResult)            // one file finished
	Note(msg string)              // a message for the user
	Finish()                      // the upload phase ended; output is left on a fresh line
}

type nopProgress struct{}

func (nopProgress) Start(int, int64) {}
func (nopProgress) Sent(int64)       {}
func (nopProgress) Done(FileResult)  {}
func (nopProgress) Note(string)      {}
func (nopProgress) Finish()          {}

// NewProgress shows progress on f: a bar when f is a terminal (and TERM is not "dumb"), one
// plain line per file otherwise.
func NewProgress(f *os.File) Progress {
	if IsTerminal(f) && os.Getenv("TERM") != "dumb" {
		return NewBar(f, termWidth(f.Fd()))
	}
	return NewLines(f)
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool { return isTerminal(f.Fd()) }

// HumanBytes writes n in B, KiB, MiB or GiB.
func HumanBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
}

// Printable replaces control and other unprintable characters (an escape sequence hidden in
// a file name of a hostile archive) with '?', so s is safe to print on a terminal.
func Printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

// describe is the one-line account of a finished file (without trailing newline).
func describe(r FileResult) string {
	id := r.Symbol.BuildID
	if id == "" {
		id = "none"
	}
	switch r.Status {
	case Uploaded:
		return Printable(fmt.Sprintf("uploaded %s (build-id %s, %s)", r.Symbol.Path, id, HumanBytes(r.Bytes)))
	case Present:
		return Printable(fmt.Sprintf("present  %s (build-id %s)", r.Symbol.Path, id))
	case Failed:
		return Printable(fmt.Sprintf("FAILED   %s (build-id %s): %v", r.Symbol.Path, id, r.Err))
	}
	return Printable(fmt.Sprintf("not sent %s (build-id %s)", r.Symbol.Path, id))
}

// Lines writes one plain line per finished file: for logs and pipes, no control characters.
type Lines struct {
	mu    sync.Mutex
	w     io.Writer
	total int
	done  int
}

// NewLines returns a Progress writing plain lines to w.
func NewLines(w io.Writer) *Lines { return &Lines{w: w} }

func (l *Lines) Start(files int, bytes int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total, l.done = files, 0
	if files > 0 {
		fmt.Fprintf(l.w, "sending %d files (%s)\n", files, HumanBytes(bytes))
	}
}

func (l *Lines) Sent(int64) {}

func (l *Lines) Done(r FileResult) {
	if r.Status == NotSent {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done++
	fmt.Fprintf(l.w, "[%d/%d] %s\n", l.done, l.total, describe(r))
}

func (l *Lines) Note(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintln(l.w, Printable(msg))
}

func (l *Lines) Finish() {}

// Bar draws one line redrawn in place (carriage return, erase to end of line): files and bytes
// sent. Failures and notes are printed above it as lines of their own.
type Bar struct {
	mu       sync.Mutex
	w        io.Writer
	width    int // columns of the terminal
	files    int
	done     int
	failed   int
	bytes    int64
	sent     int64
	started  bool
	onScreen bool // a bar is drawn and the cursor is on its line
	lastDraw time.Time
	throttle time.Duration
}

// NewBar returns a Progress drawing a bar of width columns on w, a terminal.
func NewBar(w io.Writer, width int) *Bar {
	if width <= 0 {
		width = 80
	}
	return &Bar{w: w, width: width, throttle: 100 * time.Millisecond}
}

const eraseLine = "\r\x1b[K"

func (b *Bar) Start(files int, bytes int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.files, b.bytes, b.done, b.failed, b.sent = files, bytes, 0, 0, 0
	b.started = true
	if files > 0 {
		b.draw()
	}
}

func (b *Bar) Sent(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent += n
	if time.Since(b.lastDraw) >= b.throttle {
		b.draw()
	}
}

func (b *Bar) Done(r FileResult) {
	if r.Status == NotSent {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done++
	if r.Status == Failed {
		b.failed++
		b.line(describe(r))
		return
	}
	if time.Since(b.lastDraw) >= b.throttle || b.done == b.files {
		b.draw()
	}
}

func (b *Bar) Note(msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.line(Printable(msg))
}

func (b *Bar) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.started || b.files == 0 {
		return
	}
	b.draw()
	io.WriteString(b.w, "\n")
	b.onScreen, b.started = false, false
}

// line prints msg above the bar (whole: a long one wraps, the bar is redrawn below it).
func (b *Bar) line(msg string) {
	if b.onScreen {
		io.WriteString(b.w, eraseLine)
	}
	io.WriteString(b.w, msg+"\n")
	b.onScreen = false
	if b.started && b.files > 0 {
		b.draw()
	}
}

func (b *Bar) draw() {
	io.WriteString(b.w, eraseLine+b.render())
	b.onScreen = true
	b.lastDraw = time.Now()
}

// render is the bar's text, at most width-1 columns (the last column makes some terminals
// wrap).
func (b *Bar) render() string {
	sent := min(max(b.sent, 0), b.bytes)
	text := fmt.Sprintf(" %d/%d files  %s/%s", b.done, b.files, HumanBytes(sent), HumanBytes(b.bytes))
	if b.failed > 0 {
		text += fmt.Sprintf("  %d failed", b.failed)
	}
	room := b.width - 1 - len(text) - 2 // the brackets
	if room < 10 {
		return truncate(strings.TrimSpace(text), b.width-1)
	}
	room = min(room, 40)
	frac := 1.0
	if b.bytes > 0 {
		frac = float64(sent) / float64(b.bytes)
	} else if b.files > 0 {
		frac = float64(b.done) / float64(b.files)
	}
	fill := int(frac * float64(room))
	return "[" + strings.Repeat("=", fill) + strings.Repeat(" ", room-fill) + "]" + text
}

// truncate cuts s to n runes, marking the cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if n < 2 || len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
