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
