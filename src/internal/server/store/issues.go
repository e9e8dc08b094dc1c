package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Issue is one group of cores with the same fingerprint, with figures over its cores.
type Issue struct {
	ID                int64
	Fingerprint       string
	Title             string
	Signal            string
	FingerprintFrames string // JSON
	FirstSeen         time.Time
	LastSeen          time.Time
	Occurrences       int
	Devices           int
	Versions          []string // software versions seen, sorted
	SymbolsMissing    bool
}

// IssueFilter narrows ListIssues.
type IssueFilter struct {
	SoftwareVersion string // only issues seen in this version
	Text            string // substring of the title or fingerprint frames
	Sort            string // "last_seen" (default), "first_seen", "occurrences", "devices"
	SymbolsMissing  bool   // only issues that lack symbols
	Limit, Offset   int    // a page of the list; Limit 0 is every issue
}

// issueQuery reads the figures the triggers of migration 3 keep (issue_stats, issue_versions),
// so a page of issues costs no aggregation over their cores.
const issueQuery = `SELECT i.id, i.fingerprint, i.title, i.signal, i.fingerprint_frames, i.symbols_missing,
	s.first_captured, s.last_captured, s.occurrences, s.devices,
	(SELECT GROUP_CONCAT(v.software_version) FROM issue_versions v WHERE v.issue_id = i.id)
	FROM issues i JOIN issue_stats s ON s.issue_id = i.id`

func scanIssue(row interface{ Scan(...any) error }) (*Issue, error) {
	is := &Issue{}
	var first, last int64
	var versions sql.NullString
	err := row.Scan(&is.ID, &is.Fingerprint, &is.Title, &is.Signal, &is.FingerprintFrames, &is.SymbolsMissing,
		&first, &last, &is.Occurrences, &is.Devices, &versions)
	if err != nil {
		return nil, err
	}
	is.FirstSeen, is.LastSeen = time.Unix(first, 0), time.Unix(last, 0)
	if versions.String != "" {
		is.Versions = strings.Split(versions.String, ",")
		sort.Strings(is.Versions)
	}
	return is, nil
}

func (f IssueFilter) where() ([]string, []any) {
	var where []string
	var args []any
	if f.SymbolsMissing {
		where = append(where, `i.symbols_missing = 1`)
	}
	if f.SoftwareVersion != "" {
		where = append(where, `EXISTS (SELECT 1 FROM issue_versions v WHERE v.issue_id = i.id AND v.software_version = ?)`)
		args = append(args, f.SoftwareVersion)
	}
	if f.Text != "" {
		where = append(where, `(instr(lower(i.title), lower(?)) > 0 OR instr(lower(i.fingerprint_frames), lower(?)) > 0)`)
		args = append(args, f.Text, f.Text)
	}
	return where, args
}

// ListIssues returns the issues matching the filter.
func (s *Store) ListIssues(ctx context.Context, f IssueFilter) ([]*Issue, error) {
	q := issueQuery
	where, args := f.where()
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	switch f.Sort {
	case "", "last_seen":
		q += " ORDER BY s.last_captured DESC, s.issue_id DESC"
	case "first_seen":
		q += " ORDER BY s.first_captured DESC, s.issue_id DESC"
	case "occurrences":
		q += " ORDER BY s.occurrences DESC, s.issue_id DESC"
	case "devices":
		q += " ORDER BY s.devices DESC, s.issue_id DESC"
	default:
		return nil, fmt.Errorf("unknown sort %q", f.Sort)
	}
	if f.Limit > 0 {
		q += " LIMIT ? OFFSET ?"
		args = append(args, f.Limit, max(f.Offset, 0))
	}
	return queryAll(ctx, s.DB, scanIssue, q, args...)
}

// GetIssue returns one issue.
func (s *Store) GetIssue(ctx context.Context, id int64) (*Issue, error) {
	is, err := scanIssue(s.DB.QueryRowContext(ctx, issueQuery+` WHERE i.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("issue %d: %w", id, ErrNotFound)
	}
	return is, err
}

// IssueCores returns an issue's cores, newest first.
func (s *Store) IssueCores(ctx context.Context, issueID int64, limit int) ([]*Core, error) {
	return queryAll(ctx, s.DB, scanCore, `SELECT `+coreCols+` FROM cores WHERE issue_id = ? ORDER BY captured DESC, id DESC LIMIT ?`, issueID, limit)
}

// CoreStatusCounts counts cores by status.
func (s *Store) CoreStatusCounts(ctx context.Context) (map[string]int, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT status, COUNT(*) FROM cores GROUP BY status`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		out[st] = n
	}
	return out, rows.Err()
}
