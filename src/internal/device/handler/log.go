package handler

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Logger writes the handler's messages to the kernel log (/dev/kmsg), the only log a core
// handler started by the kernel reliably has, and keeps them for the core's debug note.
type Logger struct {
	mu    sync.Mutex
	w     io.Writer
	pid   int
	lines []string
	start time.Time
}

// OpenKmsg opens path (normally /dev/kmsg) for the logger; a failure leaves a logger that only
// collects lines.
func OpenKmsg(path string) *Logger {
	l := &Logger{pid: os.Getpid(), start: time.Now()}
	if f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
		l.w = f
	}
	return l
}

// NewLogger logs to w (tests).
func NewLogger(w io.Writer) *Logger { return &Logger{w: w, pid: os.Getpid(), start: time.Now()} }

// kmsg priorities (syslog levels).
const (
	prioErr  = 3
	prioWarn = 4
	prioInfo = 6
)

// prioDebug lines are kept for the core's debug note only, never written to the kernel log.
const prioDebug = 7

func (l *Logger) log(prio int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	msg = strings.ReplaceAll(msg, "\n", " ")
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) < 256 {
		l.lines = append(l.lines, fmt.Sprintf("%s: %s", levelName(prio), msg))
	}
	if l.w != nil && prio != prioDebug {
		// One write per record: /dev/kmsg takes each write as one message.
		fmt.Fprintf(l.w, "<%d>memfault-core-handler[%d]: %s\n", prio, l.pid, msg)
	}
}

func levelName(p int) string {
	switch p {
	case prioErr:
		return "ERROR"
	case prioWarn:
		return "WARN"
	case prioDebug:
		return "DEBUG"
	}
	return "INFO"
}

// Errorf, Warnf and Infof log one line at that level.
func (l *Logger) Errorf(format string, args ...any) { l.log(prioErr, format, args...) }
func (l *Logger) Warnf(format string, args ...any)  { l.log(prioWarn, format, args...) }
func (l *Logger) Infof(format string, args ...any)  { l.log(prioInfo, format, args...) }

// Debugf keeps a line for the core's debug note without writing it to the kernel log.
func (l *Logger) Debugf(format string, args ...any) { l.log(prioDebug, format, args...) }

// Lines returns what was logged so far.
func (l *Logger) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}
