package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/server/group"
)

func newer(now Seen, earlier []Seen) bool {
	e := make([]group.Seen, len(earlier))
	for i, s := range earlier {
		e[i] = group.Seen{Version: s.Version, FirstCore: s.FirstCore}
	}
	return group.Newer(group.Seen{Version: now.Version, FirstCore: now.FirstCore}, e)
}

// TestIssueEvents: one issue.new per issue, one issue.regression per newer version, nothing
// for older or repeated versions, and nothing when a core is analysed again into its issue.
func TestIssueEvents(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	defer s.Close()
	n := 0
	add := func(swType, version string) int64 {
		n++
		_, id, err := s.AddEntry(ctx, Entry{UUID: fmt.Sprint("u", n), Type: "coredump", DeviceSerial: "d", Manifest: "{}"},
			&CoreInput{Blob: "b", DeviceSerial: "d", SoftwareType: swType, SoftwareVersion: version, Captured: time.Now()})
		require.NoError(t, err)
		return id
	}
	finish := func(id int64, fp string) {
		_, _, err := s.FinishCore(ctx, id, Result{Fingerprint: fp, Title: fp, Signal: "SIGSEGV", FingerprintFrames: "[]", Trace: "{}",
			Function: "f", Newer: newer})
		require.NoError(t, err)
	}
	var kinds []string
	events := func() []string {
		_, err := s.FanOut(ctx, []string{"http://r/"}, func(e IssueEvent, _ string) ([]byte, error) {
			kinds = append(kinds, fmt.Sprintf("%s %s %s", e.Kind, e.Title, e.SoftwareVersion))
			return []byte("{}"), nil
		})
		require.NoError(t, err)
		out := kinds
		kinds = nil
		return out
	}

	a1 := add("main", "1.0")
	finish(a1, "A")
	require.Equal(t, []string{"issue.new A 1.0"}, events())
	finish(add("main", "1.0"), "A")
	finish(a1, "A") // analysed again (symbols arrived): same issue
	require.Empty(t, events())
	finish(add("main", "0.9"), "A")
	require.Empty(t, events(), "older version")
	a4 := add("main", "1.10")
	finish(a4, "A")
	require.Equal(t, []string{"issue.regression A 1.10"}, events())
	finish(a4, "A")
	finish(add("main", "1.10"), "A")
	require.Empty(t, events(), "same version again")
	finish(add("other", "2.0"), "A")
	require.Empty(t, events(), "first sighting in another software type")
	finish(add("main", "1.0"), "B")
	require.Equal(t, []string{"issue.new B 1.0"}, events())
	ds, err := s.Deliveries(ctx)
	require.NoError(t, err)
	require.Len(t, ds, 3)
}
