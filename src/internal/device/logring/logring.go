// Package logring keeps the device's recent log lines, from real sources, for the next core.
//
// When a process crashes, the core handler asks the daemon for the last coredump.log_lines
// entries; they go into the core's metadata note as JSON lines in memfaultd's shape:
//
//	{"ts":"2024-04-18T17:49:31.968Z","data":{"MESSAGE":"text","PRIORITY":"6","_PID":"123"}}
//
// A [Ring] holds the entries; [Source]s feed it: the systemd journal (a `journalctl --follow`
// subprocess), the kernel log (/dev/kmsg) and syslog-style text files followed like `tail -F`.
// [Detect] picks the sources a system has and [Collect] runs them, restarting failed ones.
//
// Everything is bounded: the ring's capacity (at most [MaxCapacity]), a message (at most
// [MaxMessageBytes], cut ones end in [TruncatedSuffix]), every other field value, the number of
// fields, and every line read from a source. Invalid UTF-8 is replaced with U+FFFD.
package logring

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Limits applied to every entry added to a ring.
const (
	MaxCapacity     = 10000 // entries a ring can hold; larger capacities are lowered to it
	MaxMessageBytes = 4096  // bytes of MESSAGE, including TruncatedSuffix when cut
	maxValueBytes   = 512   // bytes of any other field value
	maxKeyBytes     = 64    // bytes of a field name
	maxFields       = 16    // fields per entry, MESSAGE included
)

// TruncatedSuffix ends a MESSAGE (or field value) that was cut to fit the limits.
const TruncatedSuffix = "…[truncated]"

// Entry is one log line: when it was logged and journald-style fields (MESSAGE, _PID,
// _SYSTEMD_UNIT, PRIORITY, SYSLOG_IDENTIFIER, _COMM). Only MESSAGE is always present in the
// JSON form.
type Entry struct {
	TS     time.Time
	Fields map[string]string
}

// wire is memfaultd's JSON shape of one log line.
type wire struct {
	TS   string            `json:"ts"`
	Data map[string]string `json:"data"`
}

// tsLayout is RFC 3339 in UTC with milliseconds, as memfaultd writes it.
const tsLayout = "2006-01-02T15:04:05.000Z"

// JSON returns the entry as one line of JSON (no newline) in memfaultd's shape, with the
// limits applied.
func (e Entry) JSON() string {
	n := e.normalize(time.Time{})
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(wire{TS: n.TS.UTC().Format(tsLayout), Data: n.Fields}); err != nil {
		// A struct of strings always encodes; keep the line well-formed if it ever does not.
		return `{"ts":"` + n.TS.UTC().Format(tsLayout) + `","data":{"MESSAGE":""}}`
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// normalize returns a copy of e within the limits: MESSAGE present, values valid UTF-8 and
// cut, at most maxFields fields (MESSAGE first, then the others by name). A zero TS becomes
// now when now is not zero.
func (e Entry) normalize(now time.Time) Entry {
	out := Entry{TS: e.TS, Fields: make(map[string]string, min(len(e.Fields)+1, maxFields))}
	if out.TS.IsZero() && !now.IsZero() {
		out.TS = now
	}
	out.Fields["MESSAGE"] = clip(e.Fields["MESSAGE"], MaxMessageBytes)
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		if k != "MESSAGE" && k != "" && len(k) <= maxKeyBytes && utf8.ValidString(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if len(out.Fields) >= maxFields {
			break
		}
		out.Fields[k] = clip(e.Fields[k], maxValueBytes)
	}
	return out
}

// clip returns s as valid UTF-8 of at most max bytes; a cut string ends in TruncatedSuffix.
func clip(s string, max int) string {
	cut := false
	if len(s) > max {
		s, cut = s[:max], true
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) > max {
		cut = true
	}
	if !cut {
		return s
	}
	n := max - len(TruncatedSuffix)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + TruncatedSuffix
}

// Ring keeps the last entries added, up to its capacity. Add is O(1); it is safe for
// concurrent use.
type Ring struct {
	mu      sync.Mutex
	entries []Entry // fixed length = capacity
	next    int     // index the next entry goes to
	n       int     // entries held
	now     func() time.Time
}

// NewRing returns a ring holding the last capacity entries (at most MaxCapacity; a capacity
// below 1 keeps nothing).
func NewRing(capacity int) *Ring {
	capacity = max(0, min(capacity, MaxCapacity))
	return &Ring{entries: make([]Entry, capacity), now: time.Now}
}

// Cap returns the number of entries the ring holds at most.
func (r *Ring) Cap() int { return len(r.entries) }

// Len returns the number of entries the ring holds now.
func (r *Ring) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// Add stores a copy of e within the limits (a zero TS becomes now), dropping the oldest entry
// when the ring is full.
func (r *Ring) Add(e Entry) {
	if len(r.entries) == 0 {
		return
	}
	e = e.normalize(r.now())
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries[r.next] = e
	r.next = (r.next + 1) % len(r.entries)
	if r.n < len(r.entries) {
		r.n++
	}
}

// Entries returns the entries held, oldest first. Their Fields maps are shared with the ring:
// read them, do not modify them.
func (r *Ring) Entries() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Entry, 0, r.n)
	start := (r.next - r.n + len(r.entries)) % max(len(r.entries), 1)
	for i := 0; i < r.n; i++ {
		out = append(out, r.entries[(start+i)%len(r.entries)])
	}
	return out
}

// Lines returns the entries held as JSON lines (no newlines), oldest first. The JSON is made
// here, not in Add, so logging costs nothing until a core needs the lines.
func (r *Ring) Lines() []string {
	entries := r.Entries()
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.JSON()
	}
	return out
}
