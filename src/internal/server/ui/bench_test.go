package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/server/store"
)

// seed fills a store with issues issues of cores cores each (on cores/2+1 devices, two
// versions), straight through SQL: the figures the pages compute come from these rows.
func seed(b *testing.B, issues, cores int) *store.Store {
	st, err := store.Open(b.TempDir())
	require.NoError(b, err)
	b.Cleanup(func() { st.Close() })
	tr := trace(crash{serial: "d", version: "1", fn: "f", file: "f.c", line: 1})
	ctx := context.Background()
	tx, err := st.Writer().BeginTx(ctx, nil)
	require.NoError(b, err)
	n := 0
	for i := 1; i <= issues; i++ {
		fn := fmt.Sprintf("function_%05d", i)
		_, err := tx.Exec(`INSERT INTO issues(id, fingerprint, title, signal, fingerprint_frames, first_seen, last_seen) VALUES (?, ?, ?, 'SIGSEGV', ?, 0, 0)`,
			i, "fp"+fn, "SIGSEGV in "+fn+" (f.c)", `["`+fn+`"]`)
		require.NoError(b, err)
		for c := 0; c < cores; c++ {
			n++
			uuid := fmt.Sprintf("u%d", n)
			_, err = tx.Exec(`INSERT INTO entries(uuid, type, device_serial, manifest, received) VALUES (?, 'coredump', 'd', '{}', 0)`, uuid)
			require.NoError(b, err)
			trace := ""
			if c == cores-1 {
				trace = mustJSON(tr)
			}
			_, err = tx.Exec(`INSERT INTO cores(entry_uuid, blob, compression, device_serial, hardware_version, software_type, software_version,
				captured, received, status, issue_id, trace) VALUES (?, 'b', 'gzip', ?, 'evt', 'main', ?, ?, 0, 'done', ?, ?)`,
				uuid, fmt.Sprintf("dev-%d", c%(cores/2+1)), fmt.Sprintf("1.%d", (i+c)%2), int64(n*7%100000), i, trace)
			require.NoError(b, err)
		}
	}
	require.NoError(b, tx.Commit())
	return st
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func fetch(b *testing.B, url string) {
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("%s: %s", url, resp.Status)
	}
}

// BenchmarkPages: the pages on a server with 5000 issues of 10 cores each (50,000 cores),
// against baselines in the same run: the same pages on 50 issues; the JSON API's unpaginated
// issue list on the 5000; and one page of issues aggregated from every core (query-aggregate,
// the query before migration 3) against the same page from the figures the triggers keep
// (query-figures).
func BenchmarkPages(b *testing.B) {
	for _, size := range []struct {
		name   string
		issues int
	}{{"50", 50}, {"5000", 5000}} {
		st := seed(b, size.issues, 10)
		srv := serve(b, st)
		for _, path := range []string{"/issues", "/issues?sort=occurrences", "/issues?version=1.1&q=function_0004", "/issues/1",
			"/issues/1?tab=occurrences", "/symbols", "/api/v1/issues"} {
			b.Run(size.name+"/"+path, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					fetch(b, srv.URL+path)
				}
			})
		}
		if size.issues == 5000 {
			// The baseline: one page of the list by aggregating every core (the query before
			// the figures were kept by triggers), against the same page from the figures.
			b.Run(size.name+"/query-aggregate", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					rows, err := st.DB.Query(`SELECT i.id, i.title, MIN(c.captured), MAX(c.captured), COUNT(c.id), COUNT(DISTINCT c.device_serial),
						GROUP_CONCAT(DISTINCT c.software_version) FROM issues i JOIN cores c ON c.issue_id = i.id
						GROUP BY i.id ORDER BY MAX(c.captured) DESC, i.id DESC LIMIT 50`)
					require.NoError(b, err)
					for rows.Next() {
					}
					require.NoError(b, rows.Err())
					rows.Close()
				}
			})
			b.Run(size.name+"/query-figures", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					_, err := st.ListIssues(context.Background(), store.IssueFilter{Limit: 50})
					require.NoError(b, err)
				}
			})
		}
	}
}
