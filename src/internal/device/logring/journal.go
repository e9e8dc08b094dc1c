package logring

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// JournalSource follows the systemd journal through a
// `journalctl --follow --output=json --lines=0 --all` subprocess, killed when ctx ends. From
// each JSON record it takes __REALTIME_TIMESTAMP (µs since the epoch) as TS and MESSAGE,
// _PID, _SYSTEMD_UNIT, PRIORITY, SYSLOG_IDENTIFIER and _COMM as fields. journalctl prints a
// value that is not valid UTF-8 or has control characters as an array of byte values, and a
// field present more than once as an array of values (the first is taken); both are decoded.
// Records longer than maxJournalLine (a field holding a whole binary, say) are skipped.
type JournalSource struct {
	Command string // "journalctl" (looked up on PATH) when empty
}

// Journal returns a source following the systemd journal.
func Journal() *JournalSource { return &JournalSource{} }

// Name says where the lines come from.
func (j *JournalSource) Name() string { return "journal" }

// journalArgs follow new records only, as JSON, with every field printed whatever its size.
var journalArgs = []string{"--follow", "--output=json", "--lines=0", "--all"}

// journalFields are the fields kept from a journal record.
var journalFields = []string{"MESSAGE", "_PID", "_SYSTEMD_UNIT", "PRIORITY", "SYSLOG_IDENTIFIER", "_COMM"}

// maxJournalLine bounds one JSON record read from journalctl.
const maxJournalLine = 1 << 20

// Run runs journalctl until ctx ends or journalctl exits or fails.
func (j *JournalSource) Run(ctx context.Context, emit func(Entry)) error {
	name := j.Command
	if name == "" {
		name = "journalctl"
	}
	cmd := exec.CommandContext(ctx, name, journalArgs...)
	stderr := &tailBuffer{max: 512}
	cmd.Stderr = stderr
	cmd.WaitDelay = 2 * time.Second // bounds Wait when a child of journalctl holds the pipe
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("journalctl stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start journalctl: %w", err)
	}
	sp := lineSplitter{max: maxJournalLine}
	line := func(b []byte, cut bool) {
		if cut || len(bytes.TrimSpace(b)) == 0 {
			return
		}
		if e, err := parseJournalRecord(b); err == nil {
			emit(e)
		}
	}
	buf := make([]byte, 64<<10)
	var readErr error
	for {
		n, err := stdout.Read(buf)
		sp.feed(buf[:n], line)
		if err != nil {
			if err != io.EOF {
				readErr = err
			}
			break
		}
	}
	waitErr := cmd.Wait()
	if ctx.Err() != nil {
		return nil
	}
	msg := strings.TrimSpace(stderr.String())
	switch {
	case readErr != nil:
		return fmt.Errorf("read journalctl output: %w", readErr)
	case waitErr != nil && msg != "":
		return fmt.Errorf("journalctl: %w: %s", waitErr, msg)
	case waitErr != nil:
		return fmt.Errorf("journalctl: %w", waitErr)
	case msg != "":
		return fmt.Errorf("journalctl exited: %s", msg)
	}
	return errors.New("journalctl exited")
}

// parseJournalRecord maps one `journalctl --output=json` record to an entry.
func parseJournalRecord(line []byte) (Entry, error) {
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(line, &rec); err != nil {
		return Entry{}, fmt.Errorf("journal record: %w", err)
	}
	e := Entry{Fields: make(map[string]string, len(journalFields))}
	if raw, ok := rec["__REALTIME_TIMESTAMP"]; ok {
		if s, ok := journalValue(raw); ok {
			if us, err := strconv.ParseInt(s, 10, 64); err == nil && us > 0 {
				e.TS = time.UnixMicro(us)
			}
		}
	}
	for _, k := range journalFields {
		if raw, ok := rec[k]; ok {
			if v, ok := journalValue(raw); ok {
				e.Fields[k] = v
			}
		}
	}
	if _, ok := e.Fields["MESSAGE"]; !ok {
		e.Fields["MESSAGE"] = ""
	}
	return e, nil
}

// journalValue decodes a field's JSON value: a string, an array of byte values, or an array
// of either (a repeated field; the first is taken). null (a value journalctl left out) and
// anything else is not a value.
func journalValue(raw json.RawMessage) (string, bool) {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var bs []byte
	if decodeByteArray(raw, &bs) {
		return string(bs), true
	}
	var many []json.RawMessage
	if json.Unmarshal(raw, &many) == nil && len(many) > 0 && !bytes.Equal(many[0], []byte("null")) {
		if json.Unmarshal(many[0], &s) == nil {
			return s, true
		}
		if decodeByteArray(many[0], &bs) {
			return string(bs), true
		}
	}
	return "", false
}

// decodeByteArray reads a JSON array of integers 0..255 (journalctl's form, not the base64
// encoding/json uses for []byte).
func decodeByteArray(raw json.RawMessage, out *[]byte) bool {
	var ints []int
	if json.Unmarshal(raw, &ints) != nil || len(ints) == 0 {
		return false
	}
	b := make([]byte, len(ints))
	for i, v := range ints {
		if v < 0 || v > 255 {
			return false
		}
		b[i] = byte(v)
	}
	*out = b
	return true
}

// tailBuffer keeps the last max bytes written to it (a subprocess's stderr).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) > t.max {
		p = p[len(p)-t.max:]
	}
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return n, nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.ToValidUTF8(string(t.b), "\uFFFD")
}
