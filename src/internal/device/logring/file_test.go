package logring

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var fileNow = time.Date(2024, 4, 20, 12, 0, 0, 0, time.UTC)

func TestParseSyslogLine(t *testing.T) {
	tests := []struct {
		name   string
		line   string
		now    time.Time
		ts     time.Time
		fields map[string]string
	}{
		{"RFC 3164 with pid", "Apr 18 17:49:31 qemux86-64 foo[123]: hello world", fileNow,
			time.Date(2024, 4, 18, 17, 49, 31, 0, time.UTC),
			map[string]string{"SYSLOG_IDENTIFIER": "foo", "_PID": "123", "MESSAGE": "hello world"}},
		{"space-padded day, busybox facility.level", "Apr  8 07:05:09 qemux86-64 daemon.err watchdogd[77]: ping failed: timeout", fileNow,
			time.Date(2024, 4, 8, 7, 5, 9, 0, time.UTC),
			map[string]string{"SYSLOG_IDENTIFIER": "watchdogd", "_PID": "77", "PRIORITY": "3", "MESSAGE": "ping failed: timeout"}},
		{"tag without pid", "Apr 18 17:49:33 qemux86-64 kernel: [   12.345678] usb 1-1: new device", fileNow,
			time.Date(2024, 4, 18, 17, 49, 33, 0, time.UTC),
			map[string]string{"SYSLOG_IDENTIFIER": "kernel", "MESSAGE": "[   12.345678] usb 1-1: new device"}},
		{"busybox -S: no host", "Apr 18 17:49:34 logger: busybox -S line", fileNow,
			time.Date(2024, 4, 18, 17, 49, 34, 0, time.UTC),
			map[string]string{"SYSLOG_IDENTIFIER": "logger", "MESSAGE": "busybox -S line"}},
		{"host but no tag", "Apr 18 17:49:34 qemux86-64 -- MARK --", fileNow,
			time.Date(2024, 4, 18, 17, 49, 34, 0, time.UTC),
			map[string]string{"MESSAGE": "-- MARK --"}},
		{"rsyslog RFC 3339", "2024-04-18T17:49:35.123456+02:00 qemux86-64 sshd[901]: Accepted publickey", fileNow,
			time.Date(2024, 4, 18, 15, 49, 35, 123456000, time.UTC),
			map[string]string{"SYSLOG_IDENTIFIER": "sshd", "_PID": "901", "MESSAGE": "Accepted publickey"}},
		{"December line read in January is last year", "Dec 31 23:59:59 h cron[5]: bye",
			time.Date(2025, 1, 1, 0, 0, 5, 0, time.UTC),
			time.Date(2024, 12, 31, 23, 59, 59, 0, time.UTC),
			map[string]string{"SYSLOG_IDENTIFIER": "cron", "_PID": "5", "MESSAGE": "bye"}},
		{"year and zone from the clock", "Apr 18 17:49:31 h a: b", time.Date(2023, 6, 1, 0, 0, 0, 0, time.FixedZone("X", 3600)),
			time.Date(2023, 4, 18, 16, 49, 31, 0, time.UTC),
			map[string]string{"SYSLOG_IDENTIFIER": "a", "MESSAGE": "b"}},
		{"no header: whole line, time read", "just some text: not a tag", fileNow, fileNow,
			map[string]string{"MESSAGE": "just some text: not a tag"}},
		{"bad pid is not a tag", "Apr 18 17:49:31 h foo[x]: y", fileNow,
			time.Date(2024, 4, 18, 17, 49, 31, 0, time.UTC),
			map[string]string{"MESSAGE": "foo[x]: y"}},
		{"almost a timestamp", "Apr 18 17:49:3 h foo: y", fileNow, fileNow,
			map[string]string{"MESSAGE": "Apr 18 17:49:3 h foo: y"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := parseSyslogLine(tc.line, tc.now)
			assert.Equal(t, tc.fields, e.Fields)
			assert.True(t, tc.ts.Equal(e.TS), "ts %v, want %v", e.TS, tc.ts)
		})
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	require.NoError(t, err)
	_, err = f.WriteString(s)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// probe appends probe lines until the source reports one, so the test knows the source is
// following the file.
func probe(t *testing.T, path string, s *sink) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		appendFile(t, path, fmt.Sprintf("probe %d\n", i))
		select {
		case e := <-s.ch:
			require.True(t, strings.HasPrefix(e.Fields["MESSAGE"], "probe "), "first entry %v", e.Fields)
			// Drain the probes still in flight.
			for {
				select {
				case e := <-s.ch:
					require.True(t, strings.HasPrefix(e.Fields["MESSAGE"], "probe "), "entry %v", e.Fields)
				case <-time.After(100 * time.Millisecond):
					return
				}
			}
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatal("the source never reported a probe line")
}

func messageIs(m string) func(Entry) bool {
	return func(e Entry) bool { return e.Fields["MESSAGE"] == m }
}

func TestFileSourceFollows(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "messages")
	appendFile(t, path, "Apr 18 17:00:00 h old[1]: written before the source started\n")

	s := newSink()
	src := &FileSource{Path: path, Poll: 10 * time.Millisecond, Now: func() time.Time { return fileNow }}
	assert.Equal(t, "file:"+path, src.Name())
	stop := run(t, src, s.emit)
	probe(t, path, s) // also proves the line written before the start is not read

	t.Run("RFC 3164 line", func(t *testing.T) {
		appendFile(t, path, "Apr 18 17:49:31 qemux86-64 foo[123]: hello world\n")
		e := s.next(t, nil)
		assert.Equal(t, map[string]string{"SYSLOG_IDENTIFIER": "foo", "_PID": "123", "MESSAGE": "hello world"}, e.Fields)
		assert.Equal(t, time.Date(2024, 4, 18, 17, 49, 31, 0, time.UTC), e.TS)
	})
	t.Run("line written in two parts", func(t *testing.T) {
		appendFile(t, path, "partial ")
		s.none(t, 100*time.Millisecond)
		appendFile(t, path, "done\r\n")
		assert.Equal(t, "partial done", s.next(t, nil).Fields["MESSAGE"])
	})
	t.Run("plain text", func(t *testing.T) {
		appendFile(t, path, "no header here\n\n")
		e := s.next(t, nil)
		assert.Equal(t, map[string]string{"MESSAGE": "no header here"}, e.Fields)
		assert.Equal(t, fileNow, e.TS)
		s.none(t, 50*time.Millisecond) // the empty line is skipped
	})
	t.Run("over-long line cut, next line intact", func(t *testing.T) {
		appendFile(t, path, strings.Repeat("z", 3*maxLineBytes)+"\nafter long\n")
		assert.Equal(t, strings.Repeat("z", maxLineBytes), s.next(t, nil).Fields["MESSAGE"])
		assert.Equal(t, "after long", s.next(t, nil).Fields["MESSAGE"])
	})
	t.Run("rotation: rename and recreate", func(t *testing.T) {
		require.NoError(t, os.Rename(path, path+".1"))
		appendFile(t, path+".1", "last line of the old file\n") // a writer still holding it
		time.Sleep(50 * time.Millisecond)
		appendFile(t, path, "first line of the new file\nsecond line of the new file\n")
		assert.Equal(t, "last line of the old file", s.next(t, nil).Fields["MESSAGE"])
		assert.Equal(t, "first line of the new file", s.next(t, nil).Fields["MESSAGE"])
		assert.Equal(t, "second line of the new file", s.next(t, nil).Fields["MESSAGE"])
		appendFile(t, path+".1", "not read: the old file was left\n")
		appendFile(t, path, "appended to the new file\n")
		assert.Equal(t, "appended to the new file", s.next(t, nil).Fields["MESSAGE"])
	})
	t.Run("truncation", func(t *testing.T) {
		require.NoError(t, os.Truncate(path, 0))
		appendFile(t, path, "after truncation\n")
		assert.Equal(t, "after truncation", s.next(t, nil).Fields["MESSAGE"])
	})
	t.Run("removed, then created again", func(t *testing.T) {
		require.NoError(t, os.Remove(path))
		time.Sleep(50 * time.Millisecond)
		appendFile(t, path, "Apr 18 17:49:40 h again[9]: back\n")
		e := s.next(t, nil)
		assert.Equal(t, map[string]string{"SYSLOG_IDENTIFIER": "again", "_PID": "9", "MESSAGE": "back"}, e.Fields)
	})
	require.NoError(t, stop())
	s.none(t, 50*time.Millisecond)
}

func TestFileSourceWaitsForFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "syslog")
	s := newSink()
	stop := run(t, &FileSource{Path: path, Poll: 10 * time.Millisecond}, s.emit)
	time.Sleep(50 * time.Millisecond)
	appendFile(t, path, "created after the start: read from its beginning\n")
	assert.Equal(t, "created after the start: read from its beginning", s.next(t, nil).Fields["MESSAGE"])
	require.NoError(t, stop())
}

func TestFileSourceSkipKernel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "messages")
	appendFile(t, path, "")
	s := newSink()
	stop := run(t, &FileSource{Path: path, Poll: 10 * time.Millisecond, SkipKernel: true}, s.emit)
	probe(t, path, s)
	appendFile(t, path, "Apr 18 17:49:33 h kernel: [   12.3] usb 1-1: new device\nApr 18 17:49:34 h app[3]: kept\n")
	assert.Equal(t, "kept", s.next(t, nil).Fields["MESSAGE"])
	require.NoError(t, stop())
}

func TestFileSourceNotRegular(t *testing.T) {
	dir := t.TempDir()
	err := (&FileSource{Path: dir}).Run(context.Background(), func(Entry) {})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a regular file")
}

func FuzzParseSyslogLine(f *testing.F) {
	seedLines(f, "testdata/syslog.txt")
	f.Fuzz(func(t *testing.T, line string) {
		e := parseSyslogLine(line, fileNow)
		require.Contains(t, e.Fields, "MESSAGE")
		require.False(t, e.TS.IsZero())
		assert.True(t, json.Valid([]byte(e.JSON())))
	})
}

// seedLines adds every line of a testdata file to the fuzz corpus.
func seedLines(f *testing.F, path string) {
	fh, err := os.Open(path)
	require.NoError(f, err)
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f.Add(sc.Text())
	}
	require.NoError(f, sc.Err())
}
