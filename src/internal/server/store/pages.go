package store

import (
	"context"
	"database/sql"
	"sort"
	"strings"
	"time"
)

// The queries of the web UI's pages: counts for pagination, an issue's devices and
// occurrences one page at a time, the software versions seen, stored and missing symbols.
// Every list is bounded by a limit.

// CountIssues counts the issues matching the filter (Sort, Limit and Offset are ignored).
func (s *Store) CountIssues(ctx context.Context, f IssueFilter) (int, error) {
	q := `SELECT COUNT(*) FROM issues i JOIN issue_stats s ON s.issue_id = i.id`
	where, args := f.where()
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	var n int
	err := s.DB.QueryRowContext(ctx, q, args...).Scan(&n)
	return n, err
}

// SoftwareVersions returns the software versions of analysed cores, at most limit of them,
// sorted.
func (s *Store) SoftwareVersions(ctx context.Context, limit int) ([]string, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT DISTINCT software_version FROM issue_versions
		ORDER BY software_version LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// IssueOccurrences returns one page of an issue's cores, newest first, without their traces.
func (s *Store) IssueOccurrences(ctx context.Context, issueID int64, limit, offset int) ([]*Core, error) {
	cols := strings.Replace(coreCols, "trace", "''", 1)
	return queryAll(ctx, s.DB, scanCore, `SELECT `+cols+` FROM cores WHERE issue_id = ?
		ORDER BY captured DESC, id DESC LIMIT ? OFFSET ?`, issueID, limit, offset)
}

// Device is one device's share of an issue.
type Device struct {
	Serial              string
	Occurrences         int
	FirstSeen, LastSeen time.Time
	Versions            []string // sorted
}

// IssueDevices returns one page of the devices an issue was seen on, most recent first, and
// how many there are.
func (s *Store) IssueDevices(ctx context.Context, issueID int64, limit, offset int) ([]Device, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT device_serial, COUNT(*), MIN(captured), MAX(captured),
		GROUP_CONCAT(DISTINCT software_version) FROM cores WHERE issue_id = ?
		GROUP BY device_serial ORDER BY MAX(captured) DESC, device_serial LIMIT ? OFFSET ?`, issueID, limit, offset)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		var d Device
		var first, last int64
		var versions sql.NullString
		if err := rows.Scan(&d.Serial, &d.Occurrences, &first, &last, &versions); err != nil {
			return nil, err
		}
		d.FirstSeen, d.LastSeen = time.Unix(first, 0), time.Unix(last, 0)
		if versions.String != "" {
			d.Versions = strings.Split(versions.String, ",")
			sort.Strings(d.Versions)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// StoredSymbol is an uploaded symbol file as listed.
type StoredSymbol struct {
	BuildID, Name string
	Size          int64
	Added         time.Time
}

// ListSymbols returns one page of the uploaded symbol files, newest first.
func (s *Store) ListSymbols(ctx context.Context, limit, offset int) ([]StoredSymbol, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT build_id, name, size, added FROM symbols
		ORDER BY added DESC, build_id LIMIT ? OFFSET ?`, limit, offset)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StoredSymbol
	for rows.Next() {
		var sym StoredSymbol
		var added int64
		if err := rows.Scan(&sym.BuildID, &sym.Name, &sym.Size, &added); err != nil {
			return nil, err
		}
		sym.Added = time.Unix(added, 0)
		out = append(out, sym)
	}
	return out, rows.Err()
}

// CountSymbols counts the uploaded symbol files.
func (s *Store) CountSymbols(ctx context.Context) (int, error) {
	var n int
	err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM symbols`).Scan(&n)
	return n, err
}

// MissingBuildID is a build-id that analysed cores needed and had no symbols for.
type MissingBuildID struct {
	BuildID    string
	Cores      int
	Issues     int
	LatestCore int64 // the most recent core that lacked it
	LastSeen   time.Time
}

// MissingSymbols returns one page of the build-ids cores lacked symbols for, the most
// widespread first.
func (s *Store) MissingSymbols(ctx context.Context, limit, offset int) ([]MissingBuildID, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT m.build_id, COUNT(*), COUNT(DISTINCT c.issue_id), MAX(c.id), MAX(c.captured)
		FROM core_missing_symbols m JOIN cores c ON c.id = m.core_id
		GROUP BY m.build_id ORDER BY COUNT(*) DESC, m.build_id LIMIT ? OFFSET ?`, limit, offset)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []MissingBuildID
	for rows.Next() {
		var m MissingBuildID
		var last int64
		if err := rows.Scan(&m.BuildID, &m.Cores, &m.Issues, &m.LatestCore, &last); err != nil {
			return nil, err
		}
		m.LastSeen = time.Unix(last, 0)
		out = append(out, m)
	}
	return out, rows.Err()
}

// CountMissingSymbols counts the build-ids cores lacked symbols for.
func (s *Store) CountMissingSymbols(ctx context.Context) (int, error) {
	var n int
	err := s.DB.QueryRowContext(ctx, `SELECT COUNT(DISTINCT build_id) FROM core_missing_symbols`).Scan(&n)
	return n, err
}

// QueueCounts counts the cores waiting for or in analysis and those whose analysis failed,
// from the status index (the done cores, the many, are not counted).
func (s *Store) QueueCounts(ctx context.Context) (waiting, failed int, err error) {
	err = s.DB.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM cores WHERE status IN ('pending', 'running')),
		(SELECT COUNT(*) FROM cores WHERE status = 'failed')`).Scan(&waiting, &failed)
	return waiting, failed, err
}
