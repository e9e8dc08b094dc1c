package store

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// figures is what the issues list shows of every issue, keyed by issue id.
type figures map[int64]string

// aggregate is the oracle: the figures computed from the cores themselves (the query the
// list ran before migration 3).
func aggregate(t *testing.T, s *Store) figures {
	rows, err := s.DB.Query(`SELECT issue_id, MIN(captured), MAX(captured), COUNT(*), COUNT(DISTINCT device_serial),
		GROUP_CONCAT(DISTINCT software_version) FROM cores WHERE issue_id IS NOT NULL GROUP BY issue_id`)
	require.NoError(t, err)
	defer rows.Close()
	out := figures{}
	for rows.Next() {
		var id, first, last int64
		var n, devices int
		var versions string
		require.NoError(t, rows.Scan(&id, &first, &last, &n, &devices, &versions))
		vs := strings.Split(versions, ",")
		sort.Strings(vs)
		out[id] = fmt.Sprint(first, last, n, devices, vs)
	}
	return out
}

func listed(t *testing.T, s *Store) figures {
	list, err := s.ListIssues(context.Background(), IssueFilter{})
	require.NoError(t, err)
	out := figures{}
	for _, is := range list {
		out[is.ID] = fmt.Sprint(is.FirstSeen.Unix(), is.LastSeen.Unix(), is.Occurrences, is.Devices, is.Versions)
		one, err := s.GetIssue(context.Background(), is.ID)
		require.NoError(t, err)
		require.Equal(t, is, one)
	}
	return out
}

// TestIssueFigures: the figures the triggers keep equal those computed from the cores, while
// cores arrive, are analysed into issues, move between issues when analysed again, and go.
// Migration 3 computes them for a database that already had issues.
func TestIssueFigures(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	all := migrations
	migrations = all[:2] // the schema before the issue figures
	s, err := Open(dir)
	migrations = all
	require.NoError(t, err)

	rng := rand.New(rand.NewSource(1))
	var cores []int64
	addCore := func(i int) {
		_, id, err := s.AddEntry(ctx, Entry{UUID: fmt.Sprint("u", i), Type: "coredump", DeviceSerial: "d", Manifest: "{}"},
			&CoreInput{Blob: "b", DeviceSerial: fmt.Sprint("dev-", rng.Intn(7)), SoftwareVersion: fmt.Sprint("1.", rng.Intn(4)),
				Captured: time.Unix(int64(1e9+rng.Intn(1e6)), 0)})
		require.NoError(t, err)
		cores = append(cores, id)
	}
	finish := func(id int64) {
		_, _, err := s.FinishCore(ctx, id, Result{Fingerprint: fmt.Sprint("fp-", rng.Intn(10)), Title: "t", Signal: "SIGSEGV", FingerprintFrames: "[]"})
		require.NoError(t, err)
	}
	for i := 0; i < 60; i++ {
		addCore(i)
		finish(cores[i])
	}
	before := aggregate(t, s)
	require.NoError(t, s.Close())
	s, err = Open(dir) // migration 3 on a database with issues
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, before, listed(t, s))

	for step := 0; step < 400; step++ {
		switch r := rng.Intn(10); {
		case r < 3:
			addCore(len(cores) + step)
			finish(cores[len(cores)-1])
		case r < 9:
			finish(cores[rng.Intn(len(cores))]) // analysed again: stays or moves
		default:
			i := rng.Intn(len(cores))
			_, err := s.exec(ctx, `DELETE FROM cores WHERE id = ?`, cores[i])
			require.NoError(t, err)
			cores = append(cores[:i], cores[i+1:]...)
		}
		if step%25 == 0 {
			require.Equal(t, aggregate(t, s), listed(t, s), "step %d", step)
		}
	}
	require.Equal(t, aggregate(t, s), listed(t, s))
	n, err := s.CountIssues(ctx, IssueFilter{})
	require.NoError(t, err)
	require.Len(t, aggregate(t, s), n)
}
