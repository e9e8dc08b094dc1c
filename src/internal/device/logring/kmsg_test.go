package logring

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// kmsgClock is a fixed clock 100 s after boot.
var (
	kmsgNow    = time.Date(2024, 4, 18, 17, 49, 31, 0, time.UTC)
	kmsgUptime = 100 * time.Second
)

func fixedKmsg(path string) *KmsgSource {
	return &KmsgSource{
		Path:   path,
		Now:    func() time.Time { return kmsgNow },
		Uptime: func() (time.Duration, error) { return kmsgUptime, nil },
	}
}

func TestKmsgParse(t *testing.T) {
	boot := kmsgNow.Add(-kmsgUptime)
	tests := []struct {
		name   string
		line   string
		ok     bool
		ts     time.Time
		fields map[string]string
	}{
		{"kernel record", "6,1201,5000000,-;usb 1-1: new high-speed USB device", true,
			boot.Add(5 * time.Second),
			map[string]string{"PRIORITY": "6", "_COMM": "kernel", "SYSLOG_IDENTIFIER": "kernel", "MESSAGE": "usb 1-1: new high-speed USB device"}},
		{"caller field after flags", "4,1202,5250000,-,caller=T42;EXT4-fs (vda): warning", true,
			boot.Add(5250 * time.Millisecond),
			map[string]string{"PRIORITY": "4", "_COMM": "kernel", "SYSLOG_IDENTIFIER": "kernel", "MESSAGE": "EXT4-fs (vda): warning"}},
		{"user space record with pid, escapes undone", `14,1203,5500000,-;logring-test[42]: first\x0asecond \x5c done`, true,
			boot.Add(5500 * time.Millisecond),
			map[string]string{"PRIORITY": "6", "SYSLOG_IDENTIFIER": "logring-test", "_PID": "42", "MESSAGE": "first\nsecond \\ done"}},
		{"user space record without tag", "13,7,1,-;plain words", true,
			boot.Add(time.Microsecond),
			map[string]string{"PRIORITY": "5", "MESSAGE": "plain words"}},
		{"empty message", "3,8,0,-;", true, boot,
			map[string]string{"PRIORITY": "3", "_COMM": "kernel", "SYSLOG_IDENTIFIER": "kernel", "MESSAGE": ""}},
		{"bad escape kept", `6,9,1,-;a\xZZ b\x4`, true, boot.Add(time.Microsecond),
			map[string]string{"PRIORITY": "6", "_COMM": "kernel", "SYSLOG_IDENTIFIER": "kernel", "MESSAGE": `a\xZZ b\x4`}},
		{"dictionary line", " SUBSYSTEM=usb", false, time.Time{}, nil},
		{"no semicolon", "this line is not a record", false, time.Time{}, nil},
		{"too few header fields", "6,1;x", false, time.Time{}, nil},
		{"bad priority", "x,1,2,-;x", false, time.Time{}, nil},
		{"bad usec", "6,1,-2,-;x", false, time.Time{}, nil},
	}
	k := fixedKmsg("")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := k.parse([]byte(tc.line))
			require.Equal(t, tc.ok, ok)
			if ok {
				assert.Equal(t, tc.fields, e.Fields)
				assert.Equal(t, tc.ts, e.TS)
			}
		})
	}

	t.Run("clock failure stamps now", func(t *testing.T) {
		k := &KmsgSource{Now: func() time.Time { return kmsgNow },
			Uptime: func() (time.Duration, error) { return 0, errors.New("no clock") }}
		e, ok := k.parse([]byte("6,1,5,-;x"))
		require.True(t, ok)
		assert.Equal(t, kmsgNow, e.TS)
	})
}

// TestKmsgFIFO feeds records in the kmsg format through a FIFO: several records per read,
// dictionary lines, and the end of the stream.
func TestKmsgFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kmsg")
	require.NoError(t, unix.Mkfifo(path, 0o600))
	s := newSink()
	src := fixedKmsg(path)
	assert.Equal(t, "kmsg:"+path, src.Name())
	done := make(chan error, 1)
	go func() { done <- src.Run(context.Background(), s.emit) }()

	w, err := os.OpenFile(path, os.O_WRONLY, 0) // meets the source's open
	require.NoError(t, err)
	records, err := os.ReadFile("testdata/kmsg.txt")
	require.NoError(t, err)
	_, err = w.Write(records)
	require.NoError(t, err)

	var got []string
	for i := 0; i < 5; i++ {
		e := s.next(t, nil)
		got = append(got, e.Fields["PRIORITY"]+" "+e.Fields["SYSLOG_IDENTIFIER"]+" "+e.Fields["MESSAGE"])
	}
	assert.Equal(t, []string{
		"6 kernel usb 1-1: new high-speed USB device number 2 using xhci_hcd",
		"4 kernel EXT4-fs (vda): warning: mounting fs with errors",
		"6 logring-test first\nsecond \\ done",
		"4 memfault-core-handler Successfully captured coredump",
		"3 kernel Out of memory: Killed process 1234 (leaky)",
	}, got)

	// A record split across writes is put back together.
	_, err = w.WriteString("6,1300,7000000,-;split ")
	require.NoError(t, err)
	s.none(t, 50*time.Millisecond)
	_, err = w.WriteString("record\n")
	require.NoError(t, err)
	e := s.next(t, nil)
	assert.Equal(t, "split record", e.Fields["MESSAGE"])
	assert.Equal(t, kmsgNow.Add(-kmsgUptime).Add(7*time.Second), e.TS)

	require.NoError(t, w.Close())
	select {
	case err := <-done:
		require.Error(t, err)
		assert.Contains(t, err.Error(), "end of file")
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return at the end of the FIFO")
	}
}

func TestKmsgMissing(t *testing.T) {
	err := Kmsg(filepath.Join(t.TempDir(), "nope")).Run(context.Background(), func(Entry) {})
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestKmsgReal writes a unique line to the real /dev/kmsg and waits for it to arrive. It needs
// to open /dev/kmsg for reading (CAP_SYSLOG when dmesg_restrict is set) and writing (root).
func TestKmsgReal(t *testing.T) {
	const dev = "/dev/kmsg"
	r, err := os.Open(dev)
	if err != nil {
		t.Skipf("cannot read %s: %v", dev, err)
	}
	r.Close()
	w, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("cannot write %s (needs root): %v", dev, err)
	}
	defer w.Close()

	var rnd [8]byte
	_, err = rand.Read(rnd[:])
	require.NoError(t, err)
	token := hex.EncodeToString(rnd[:])

	s := newSink()
	stop := run(t, Kmsg(dev), s.emit)
	found := make(chan Entry, 1)
	go func() {
		for e := range s.ch {
			if e.Fields["SYSLOG_IDENTIFIER"] == "logring-test" && strings.HasPrefix(e.Fields["MESSAGE"], token) {
				found <- e
				return
			}
		}
	}()
	// The source starts at the end of the log; write until a line written after that arrives.
	// One write is one record; the kernel rate-limits user-space writes, so write slowly.
	deadline := time.After(15 * time.Second)
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		_, err := fmt.Fprintf(w, "<6>logring-test: %s %d\n", token, i)
		require.NoError(t, err)
		select {
		case e := <-found:
			assert.Equal(t, "6", e.Fields["PRIORITY"])
			assert.NotContains(t, e.Fields, "_COMM", "written by user space, not the kernel")
			assert.WithinDuration(t, time.Now(), e.TS, time.Minute, "boot-relative time mapped to wall time")
			assert.True(t, json.Valid([]byte(e.JSON())))
			require.NoError(t, stop())
			return
		case <-deadline:
			t.Fatal("the line written to /dev/kmsg never arrived")
		case <-tick.C:
		}
	}
}

func FuzzKmsgParse(f *testing.F) {
	seedLines(f, "testdata/kmsg.txt")
	k := fixedKmsg("")
	f.Fuzz(func(t *testing.T, line string) {
		if e, ok := k.parse([]byte(line)); ok {
			require.Contains(t, e.Fields, "MESSAGE")
			require.Contains(t, e.Fields, "PRIORITY")
			assert.True(t, json.Valid([]byte(e.JSON())))
		}
	})
}
