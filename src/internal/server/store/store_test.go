package store

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBlobsAndMigrations(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	require.NoError(t, err)
	v, err := s.SchemaVersion()
	require.NoError(t, err)
	require.Equal(t, len(migrations), v)

	h, n, err := s.PutBlob(strings.NewReader("hello"), 10)
	require.NoError(t, err)
	require.EqualValues(t, 5, n)
	require.Equal(t, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", h)
	h2, _, err := s.PutBlob(strings.NewReader("hello"), 10)
	require.NoError(t, err)
	require.Equal(t, h, h2)
	f, err := s.OpenBlob(h)
	require.NoError(t, err)
	b, _ := io.ReadAll(f)
	f.Close()
	require.Equal(t, "hello", string(b))
	_, _, err = s.PutBlob(bytes.NewReader(make([]byte, 11)), 10)
	require.ErrorIs(t, err, ErrTooLarge)
	_, err = s.OpenBlob("../../etc/passwd")
	require.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, s.Close())

	// Reopening applies nothing twice and keeps the data.
	s, err = Open(dir)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.OpenBlob(h)
	require.NoError(t, err)
}

func TestEntriesCoresIssues(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	defer s.Close()
	core := func(dev, ver string) *CoreInput {
		return &CoreInput{Blob: strings.Repeat("a", 64), Compression: "gzip", DeviceSerial: dev, SoftwareVersion: ver, Captured: time.Now()}
	}
	fresh, id1, err := s.AddEntry(ctx, Entry{UUID: "u1", Type: "elf-coredump", DeviceSerial: "d1", Manifest: "{}"}, core("d1", "1.0"))
	require.NoError(t, err)
	require.True(t, fresh)
	fresh, _, err = s.AddEntry(ctx, Entry{UUID: "u1", Type: "elf-coredump", DeviceSerial: "d1", Manifest: "{}"}, core("d1", "1.0"))
	require.NoError(t, err)
	require.False(t, fresh, "a repeated uuid is ignored")
	n, err := s.EntryArrivals(ctx, "u1")
	require.NoError(t, err)
	require.Equal(t, 2, n)
	_, id2, err := s.AddEntry(ctx, Entry{UUID: "u2", Type: "elf-coredump", DeviceSerial: "d2", Manifest: "{}"}, core("d2", "1.1"))
	require.NoError(t, err)

	pending, err := s.PendingCores(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, []int64{id1, id2}, pending)

	iss, created, err := s.FinishCore(ctx, id1, Result{Fingerprint: "fp", Title: "crash in f", Signal: "SIGSEGV", FingerprintFrames: "[]", Trace: "{}", MissingBuildIDs: []string{"b1"}})
	require.NoError(t, err)
	require.True(t, created)
	iss2, created, err := s.FinishCore(ctx, id2, Result{Fingerprint: "fp", Title: "crash in f", Signal: "SIGSEGV", FingerprintFrames: "[]", Trace: "{}"})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, iss, iss2)

	is, err := s.GetIssue(ctx, iss)
	require.NoError(t, err)
	require.Equal(t, 2, is.Occurrences)
	require.Equal(t, 2, is.Devices)
	require.Equal(t, []string{"1.0", "1.1"}, is.Versions)
	require.True(t, is.SymbolsMissing)

	list, err := s.ListIssues(ctx, IssueFilter{SoftwareVersion: "1.1"})
	require.NoError(t, err)
	require.Len(t, list, 1)
	list, err = s.ListIssues(ctx, IssueFilter{Text: "nomatch"})
	require.NoError(t, err)
	require.Empty(t, list)

	// Symbols arrive: the core that lacked them goes back to analysis and moves issue.
	ok, err := s.PutSymbol(ctx, Symbol{BuildID: "b1", Blob: strings.Repeat("b", 64), Name: "libx.so", Size: 3})
	require.NoError(t, err)
	require.True(t, ok)
	have, err := s.HaveSymbols(ctx, []string{"b1", "b2"})
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"b1": true}, have)
	nreq, err := s.RequeueForBuildID(ctx, "b1")
	require.NoError(t, err)
	require.EqualValues(t, 1, nreq)
	_, _, err = s.FinishCore(ctx, id1, Result{Fingerprint: "fp2", Title: "crash in g", Signal: "SIGSEGV", FingerprintFrames: "[]", Trace: "{}"})
	require.NoError(t, err)
	is, err = s.GetIssue(ctx, iss)
	require.NoError(t, err)
	require.Equal(t, 1, is.Occurrences)
	require.False(t, is.SymbolsMissing)
}

func TestCommitEntriesAndClaim(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	defer s.Close()
	core := &CoreInput{Blob: strings.Repeat("c", 64), Compression: "none", DeviceSerial: "d", Captured: time.Now()}
	_, err = s.ClaimNext(ctx)
	require.ErrorIs(t, err, ErrNotFound, "nothing pending")

	require.NoError(t, s.CreateUpload(ctx, "t1", "mar", 10))
	added, err := s.CommitEntries(ctx, "t1", []NewEntry{
		{Entry: Entry{UUID: "u1", Type: "elf-coredump", DeviceSerial: "d", Manifest: "{}"}, Core: core},
		{Entry: Entry{UUID: "u2", Type: "other", DeviceSerial: "d", Manifest: "{}"}},
		{Entry: Entry{UUID: "u3", Type: "elf-coredump", DeviceSerial: "d", Manifest: "{}"}, Core: core},
	})
	require.NoError(t, err)
	require.Len(t, added, 3)
	require.True(t, added[0].Fresh && added[1].Fresh && added[2].Fresh)
	require.NotZero(t, added[0].CoreID)
	require.Zero(t, added[1].CoreID, "an entry without a core")
	u, err := s.GetUpload(ctx, "t1")
	require.NoError(t, err)
	require.True(t, u.Committed)

	_, err = s.CommitEntries(ctx, "t1", nil)
	require.ErrorIs(t, err, ErrCommitted)
	_, err = s.CommitEntries(ctx, "unknown", nil)
	require.ErrorIs(t, err, ErrCommitted, "an unknown token commits nothing")

	// A second upload repeating u1 stores only u4.
	require.NoError(t, s.CreateUpload(ctx, "t2", "mar", 10))
	added, err = s.CommitEntries(ctx, "t2", []NewEntry{
		{Entry: Entry{UUID: "u1", Type: "elf-coredump", DeviceSerial: "d", Manifest: "{}"}, Core: core},
		{Entry: Entry{UUID: "u4", Type: "elf-coredump", DeviceSerial: "d", Manifest: "{}"}, Core: core},
	})
	require.NoError(t, err)
	require.False(t, added[0].Fresh)
	require.Zero(t, added[0].CoreID)
	require.True(t, added[1].Fresh)

	// Cores are claimed oldest first, each once.
	var claimed []string
	for {
		c, err := s.ClaimNext(ctx)
		if err != nil {
			require.ErrorIs(t, err, ErrNotFound)
			break
		}
		require.Equal(t, "running", c.Status)
		require.Equal(t, core.Blob, c.Blob)
		claimed = append(claimed, c.EntryUUID)
	}
	require.Equal(t, []string{"u1", "u3", "u4"}, claimed)
	n, err := s.ResetRunning(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 3, n)
}

func TestIssueSymbolsMissing(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	defer s.Close()
	var ids []int64
	for _, u := range []string{"a", "b", "c"} {
		_, id, err := s.AddEntry(ctx, Entry{UUID: u, Type: "elf-coredump", DeviceSerial: "d", Manifest: "{}"},
			&CoreInput{Blob: strings.Repeat("c", 64), Compression: "none", DeviceSerial: "d", Captured: time.Now()})
		require.NoError(t, err)
		ids = append(ids, id)
	}
	res := func(fp string, missing ...string) Result {
		return Result{Fingerprint: fp, Title: fp, Signal: "SIGSEGV", FingerprintFrames: "[]", Trace: "{}", MissingBuildIDs: missing}
	}
	lacks := func(issue int64) bool {
		is, err := s.GetIssue(ctx, issue)
		require.NoError(t, err)
		return is.SymbolsMissing
	}
	iss, _, err := s.FinishCore(ctx, ids[0], res("fp"))
	require.NoError(t, err)
	require.False(t, lacks(iss))
	_, _, err = s.FinishCore(ctx, ids[1], res("fp", "b1"))
	require.NoError(t, err)
	require.True(t, lacks(iss), "one core lacks symbols")
	_, _, err = s.FinishCore(ctx, ids[2], res("fp", "b1", "b2"))
	require.NoError(t, err)
	// Reprocessed with the symbols, in the same issue: the other core still lacks them.
	_, _, err = s.FinishCore(ctx, ids[1], res("fp"))
	require.NoError(t, err)
	require.True(t, lacks(iss))
	_, _, err = s.FinishCore(ctx, ids[2], res("fp"))
	require.NoError(t, err)
	require.False(t, lacks(iss), "no core lacks symbols any more")

	// Every core moves to a new issue: the old one goes, the new one has them all.
	var moved int64
	for _, id := range ids {
		moved, _, err = s.FinishCore(ctx, id, res("fp2", "b3"))
		require.NoError(t, err)
	}
	_, err = s.GetIssue(ctx, iss)
	require.ErrorIs(t, err, ErrNotFound)
	is, err := s.GetIssue(ctx, moved)
	require.NoError(t, err)
	require.Equal(t, 3, is.Occurrences)
	require.True(t, is.SymbolsMissing)
}
