package logring

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeJournalctl puts an executable journalctl running script first on PATH and returns its
// directory.
func fakeJournalctl(t *testing.T, script string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "journalctl"), []byte("#!/bin/sh\n"+script), 0o755))
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return dir
}

// TestJournalFake runs the journal source against a fake journalctl that records its arguments
// and prints testdata/journal.json, then goes on running like `journalctl --follow`.
func TestJournalFake(t *testing.T) {
	records, err := filepath.Abs("testdata/journal.json")
	require.NoError(t, err)
	dir := fakeJournalctl(t, `printf '%s\n' "$@" > "$(dirname "$0")/args"
cat '`+records+`'
exec sleep 600
`)
	r := NewRing(10)
	stop := run(t, Journal(), r.Add)
	deadline := time.Now().Add(10 * time.Second)
	for r.Len() < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.NoError(t, stop(), "killed with ctx, Run returns nil")

	assert.Equal(t, []string{
		`{"ts":"2024-04-18T17:49:31.968Z","data":{"MESSAGE":"listening on <0.0.0.0:80> & ready","PRIORITY":"6","SYSLOG_IDENTIFIER":"foo","_COMM":"foo","_PID":"123","_SYSTEMD_UNIT":"foo.service"}}`,
		`{"ts":"2024-04-18T17:49:32.000Z","data":{"MESSAGE":"\u001b[31merror\u001b[0m: disk full","PRIORITY":"3","SYSLOG_IDENTIFIER":"foo","_COMM":"foo","_PID":"123","_SYSTEMD_UNIT":"foo.service"}}`,
		`{"ts":"2024-04-18T17:49:33.500Z","data":{"MESSAGE":"usb 1-1: device descriptor read/64, error -71","PRIORITY":"4","SYSLOG_IDENTIFIER":"kernel"}}`,
		`{"ts":"2024-04-18T17:49:34.250Z","data":{"MESSAGE":"reading ` + "\uFFFD" + `","PRIORITY":"5","SYSLOG_IDENTIFIER":"sensor","_COMM":"sensord","_PID":"456"}}`,
		`{"ts":"2024-04-18T17:49:35.001Z","data":{"MESSAGE":"","PRIORITY":"7","_COMM":"big","_PID":"789"}}`,
	}, r.Lines())

	args, err := os.ReadFile(filepath.Join(dir, "args"))
	require.NoError(t, err)
	assert.Equal(t, "--follow\n--output=json\n--lines=0\n--all\n", string(args))
}

func TestJournalExits(t *testing.T) {
	tests := []struct {
		name, script, want string
	}{
		{"fails with a message", "echo 'No journal files were found.' >&2; exit 1",
			"journalctl: exit status 1: No journal files were found."},
		{"exits cleanly", "exit 0", "journalctl exited"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fakeJournalctl(t, tc.script)
			err := Journal().Run(context.Background(), func(Entry) {})
			require.Error(t, err)
			assert.Equal(t, tc.want, err.Error())
		})
	}
	t.Run("not installed", func(t *testing.T) {
		err := (&JournalSource{Command: filepath.Join(t.TempDir(), "journalctl")}).Run(context.Background(), func(Entry) {})
		require.ErrorIs(t, err, os.ErrNotExist)
	})
}

func TestJournalValue(t *testing.T) {
	tests := []struct {
		name, raw, want string
		ok              bool
	}{
		{"string", `"text"`, "text", true},
		{"byte array", `[104,105,10]`, "hi\n", true},
		{"repeated field", `["a","b"]`, "a", true},
		{"repeated byte arrays", `[[104],[105]]`, "h", true},
		{"strings of digits are a repeated field, not bytes", `["12","34"]`, "12", true},
		{"null", `null`, "", false},
		{"byte out of range", `[104,256]`, "", false},
		{"number", `12`, "", false},
		{"empty array", `[]`, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := journalValue(json.RawMessage(tc.raw))
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestJournalReal sends a line with logger(1) and waits for it in the real journal.
func TestJournalReal(t *testing.T) {
	if _, err := exec.LookPath("journalctl"); err != nil {
		t.Skip("journalctl is not installed")
	}
	if _, err := os.Stat("/run/systemd/journal"); err != nil {
		t.Skip("journald is not running here (no /run/systemd/journal); TestJournalFake covers the mapping")
	}
	logger, err := exec.LookPath("logger")
	if err != nil {
		t.Skip("logger is not installed")
	}
	var rnd [8]byte
	_, err = rand.Read(rnd[:])
	require.NoError(t, err)
	token := hex.EncodeToString(rnd[:])

	s := newSink()
	stop := run(t, Journal(), s.emit)
	found := make(chan Entry, 1)
	go func() {
		for e := range s.ch {
			if strings.HasPrefix(e.Fields["MESSAGE"], token) {
				found <- e
				return
			}
		}
	}()
	// journalctl starts at the end of the journal; send until a line sent after that arrives.
	deadline := time.After(20 * time.Second)
	for i := 0; ; i++ {
		out, err := exec.Command(logger, "-t", "logring-test", token).CombinedOutput()
		require.NoError(t, err, string(out))
		select {
		case e := <-found:
			assert.Equal(t, "logring-test", e.Fields["SYSLOG_IDENTIFIER"])
			assert.NotEmpty(t, e.Fields["_PID"])
			assert.WithinDuration(t, time.Now(), e.TS, time.Minute)
			require.NoError(t, stop())
			return
		case <-deadline:
			t.Fatal("the line sent with logger never arrived")
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func FuzzJournalRecord(f *testing.F) {
	data, err := os.ReadFile("testdata/journal.json")
	require.NoError(f, err)
	for _, l := range strings.Split(string(data), "\n") {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if e, err := parseJournalRecord([]byte(line)); err == nil {
			require.Contains(t, e.Fields, "MESSAGE")
			assert.True(t, json.Valid([]byte(e.JSON())))
		}
	})
}
