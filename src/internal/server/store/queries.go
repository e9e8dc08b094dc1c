package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Upload is a prepared upload (device MAR or symbol file).
type Upload struct {
	Token     string
	Kind      string
	Size      int64
	Blob      string
	Committed bool
}

// CreateUpload records a prepared upload.
func (s *Store) CreateUpload(ctx context.Context, token, kind string, size int64) error {
	_, err := s.DB.ExecContext(ctx, `INSERT INTO uploads(token, kind, size, created) VALUES (?, ?, ?, ?)`, token, kind, size, time.Now().Unix())
	return err
}

// GetUpload returns a prepared upload.
func (s *Store) GetUpload(ctx context.Context, token string) (*Upload, error) {
	u := &Upload{Token: token}
	var blob sql.NullString
	err := s.DB.QueryRowContext(ctx, `SELECT kind, size, blob, committed FROM uploads WHERE token = ?`, token).Scan(&u.Kind, &u.Size, &blob, &u.Committed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("upload token: %w", ErrNotFound)
	}
	u.Blob = blob.String
	return u, err
}

// SetUploadBlob records the body of an upload.
func (s *Store) SetUploadBlob(ctx context.Context, token, blob string) error {
	_, err := s.DB.ExecContext(ctx, `UPDATE uploads SET blob = ? WHERE token = ?`, blob, token)
	return err
}

// MarkCommitted marks an upload committed; it reports false if it already was.
func (s *Store) MarkCommitted(ctx context.Context, token string) (bool, error) {
	res, err := s.DB.ExecContext(ctx, `UPDATE uploads SET committed = 1 WHERE token = ? AND committed = 0`, token)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Entry is one received MAR entry.
type Entry struct {
	UUID, Type, DeviceSerial, Manifest string
}

// CoreInput is what ingestion knows about a core before analysis.
type CoreInput struct {
	Blob, Compression                                            string
	DeviceSerial, HardwareVersion, SoftwareType, SoftwareVersion string
	Captured                                                     time.Time
}

// AddEntry stores an entry, and its core when core is not nil, in one transaction. A uuid seen
// before is not stored again: it returns false (the device sent it twice).
func (s *Store) AddEntry(ctx context.Context, e Entry, core *CoreInput) (bool, int64, error) {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return false, 0, err
	}
	defer tx.Rollback()
	_, err = tx.ExecContext(ctx, `INSERT INTO entries(uuid, type, device_serial, manifest, received) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(uuid) DO UPDATE SET arrivals = arrivals + 1`, e.UUID, e.Type, e.DeviceSerial, e.Manifest, time.Now().Unix())
	if err != nil {
		return false, 0, err
	}
	var arrivals int
	if err := tx.QueryRowContext(ctx, `SELECT arrivals FROM entries WHERE uuid = ?`, e.UUID).Scan(&arrivals); err != nil {
		return false, 0, err
	}
	if arrivals > 1 {
		return false, 0, tx.Commit()
	}
	var id int64
	if core != nil {
		r, err := tx.ExecContext(ctx, `INSERT INTO cores(entry_uuid, blob, compression, device_serial, hardware_version, software_type,
			software_version, captured, received) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.UUID, core.Blob, core.Compression, core.DeviceSerial, core.HardwareVersion, core.SoftwareType,
			core.SoftwareVersion, core.Captured.Unix(), time.Now().Unix())
		if err != nil {
			return false, 0, err
		}
		if id, err = r.LastInsertId(); err != nil {
			return false, 0, err
		}
	}
	return true, id, tx.Commit()
}

// EntryArrivals says how often an entry uuid arrived (0: never).
func (s *Store) EntryArrivals(ctx context.Context, uuid string) (int, error) {
	var n int
	err := s.DB.QueryRowContext(ctx, `SELECT arrivals FROM entries WHERE uuid = ?`, uuid).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return n, err
}

// Core is a stored core and, once analysed, its result.
type Core struct {
	ID                                                           int64
	EntryUUID, Blob, Compression                                 string
	DeviceSerial, HardwareVersion, SoftwareType, SoftwareVersion string
	Captured, Received                                           time.Time
	Status, Error                                                string
	Attempts                                                     int
	IssueID                                                      int64
	SymbolsMissing                                               bool
	Trace                                                        string
}

const coreCols = `id, entry_uuid, blob, compression, device_serial, hardware_version, software_type, software_version,
	captured, received, status, error, attempts, COALESCE(issue_id, 0), symbols_missing, trace`

func scanCore(row interface{ Scan(...any) error }) (*Core, error) {
	c := &Core{}
	var captured, received int64
	err := row.Scan(&c.ID, &c.EntryUUID, &c.Blob, &c.Compression, &c.DeviceSerial, &c.HardwareVersion, &c.SoftwareType,
		&c.SoftwareVersion, &captured, &received, &c.Status, &c.Error, &c.Attempts, &c.IssueID, &c.SymbolsMissing, &c.Trace)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("core: %w", ErrNotFound)
	}
	c.Captured, c.Received = time.Unix(captured, 0), time.Unix(received, 0)
	return c, err
}

// GetCore returns one core.
func (s *Store) GetCore(ctx context.Context, id int64) (*Core, error) {
	return scanCore(s.DB.QueryRowContext(ctx, `SELECT `+coreCols+` FROM cores WHERE id = ?`, id))
}

// PendingCores returns up to n cores waiting for analysis, oldest first.
func (s *Store) PendingCores(ctx context.Context, n int) ([]int64, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT id FROM cores WHERE status = 'pending' ORDER BY id LIMIT ?`, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// ClaimCore takes a pending core for analysis; false when another worker has it.
func (s *Store) ClaimCore(ctx context.Context, id int64) (bool, error) {
	res, err := s.DB.ExecContext(ctx, `UPDATE cores SET status = 'running' WHERE id = ? AND status = 'pending'`, id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Requeue puts one core back in the queue after a failure to store its analysis; after three
// attempts it is marked failed instead.
func (s *Store) Requeue(ctx context.Context, id int64) error {
	_, err := s.DB.ExecContext(ctx, `UPDATE cores SET attempts = attempts + 1,
		status = CASE WHEN attempts >= 2 THEN 'failed' ELSE 'pending' END,
		error = CASE WHEN attempts >= 2 THEN 'could not store the analysis' ELSE error END WHERE id = ?`, id)
	return err
}

// ResetRunning puts cores that were being analysed when the server stopped back in the queue.
func (s *Store) ResetRunning(ctx context.Context) (int64, error) {
	res, err := s.DB.ExecContext(ctx, `UPDATE cores SET status = 'pending' WHERE status = 'running'`)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// FailCore records that analysis failed; the core stays stored.
func (s *Store) FailCore(ctx context.Context, id int64, msg string) error {
	_, err := s.DB.ExecContext(ctx, `UPDATE cores SET status = 'failed', error = ?, attempts = attempts + 1 WHERE id = ?`, msg, id)
	return err
}

// Result is a finished analysis.
type Result struct {
	Fingerprint       string
	Title             string
	Signal            string
	FingerprintFrames string // JSON
	Trace             string // JSON
	MissingBuildIDs   []string
	// Function and Location name the first fingerprint frame ("crash_segv", "threads.c:77"),
	// for notifications.
	Function, Location string
	// Newer decides whether the core's software version is newer than every version the issue
	// was seen in before (a regression); nil: never. See issueEvent in outbox.go.
	Newer func(now Seen, earlier []Seen) bool
}

// FinishCore stores an analysis: the trace, the issue (created on first sight), the build-ids
// that lacked symbols. A reprocessed core moves to its new issue. It returns the issue id and
// whether the issue is new.
func (s *Store) FinishCore(ctx context.Context, id int64, r Result) (int64, bool, error) {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, err
	}
	defer tx.Rollback()
	var captured, previousIssue int64
	if err := tx.QueryRowContext(ctx, `SELECT captured, COALESCE(issue_id, 0) FROM cores WHERE id = ?`, id).Scan(&captured, &previousIssue); err != nil {
		return 0, false, err
	}
	now := time.Now().Unix()
	var issue int64
	created := false
	err = tx.QueryRowContext(ctx, `SELECT id FROM issues WHERE fingerprint = ?`, r.Fingerprint).Scan(&issue)
	if errors.Is(err, sql.ErrNoRows) {
		res, err := tx.ExecContext(ctx, `INSERT INTO issues(fingerprint, title, signal, fingerprint_frames, first_seen, last_seen)
			VALUES (?, ?, ?, ?, ?, ?)`, r.Fingerprint, r.Title, r.Signal, r.FingerprintFrames, now, now)
		if err != nil {
			return 0, false, err
		}
		if issue, err = res.LastInsertId(); err != nil {
			return 0, false, err
		}
		created = true
	} else if err != nil {
		return 0, false, err
	} else {
		if _, err := tx.ExecContext(ctx, `UPDATE issues SET last_seen = ?, title = ?, fingerprint_frames = ? WHERE id = ?`,
			now, r.Title, r.FingerprintFrames, issue); err != nil {
			return 0, false, err
		}
	}
	missing := len(r.MissingBuildIDs) > 0
	if _, err := tx.ExecContext(ctx, `UPDATE cores SET status = 'done', error = '', attempts = attempts + 1, issue_id = ?,
		symbols_missing = ?, trace = ? WHERE id = ?`, issue, missing, r.Trace, id); err != nil {
		return 0, false, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM core_missing_symbols WHERE core_id = ?`, id); err != nil {
		return 0, false, err
	}
	for _, b := range r.MissingBuildIDs {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO core_missing_symbols VALUES (?, ?)`, id, b); err != nil {
			return 0, false, err
		}
	}
	// An issue lacks symbols while any of its cores does; issues left empty by a move go.
	if _, err := tx.ExecContext(ctx, `UPDATE issues SET symbols_missing = EXISTS(
		SELECT 1 FROM cores WHERE cores.issue_id = issues.id AND cores.symbols_missing = 1)`); err != nil {
		return 0, false, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM issues WHERE NOT EXISTS (SELECT 1 FROM cores WHERE cores.issue_id = issues.id)`); err != nil {
		return 0, false, err
	}
	if previousIssue != issue {
		// A core analysed again into the issue it was already in changes nothing people
		// need to hear about.
		if err := issueEvent(ctx, tx, id, issue, created, r); err != nil {
			return 0, false, fmt.Errorf("issue event: %w", err)
		}
	}
	return issue, created, tx.Commit()
}

// RequeueForBuildID sends every core that lacked symbols for buildID back to analysis.
func (s *Store) RequeueForBuildID(ctx context.Context, buildID string) (int64, error) {
	res, err := s.DB.ExecContext(ctx, `UPDATE cores SET status = 'pending' WHERE id IN
		(SELECT core_id FROM core_missing_symbols WHERE build_id = ?)`, buildID)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Symbol is a stored symbol file.
type Symbol struct {
	BuildID, Blob, Name string
	Size                int64
}

// PutSymbol records a symbol file; it reports false when the build-id was already stored
// (the first upload is kept).
func (s *Store) PutSymbol(ctx context.Context, sym Symbol) (bool, error) {
	res, err := s.DB.ExecContext(ctx, `INSERT OR IGNORE INTO symbols(build_id, blob, name, size, added) VALUES (?, ?, ?, ?, ?)`,
		sym.BuildID, sym.Blob, sym.Name, sym.Size, time.Now().Unix())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// GetSymbol returns the symbol file of a build-id.
func (s *Store) GetSymbol(ctx context.Context, buildID string) (*Symbol, error) {
	sym := &Symbol{BuildID: buildID}
	err := s.DB.QueryRowContext(ctx, `SELECT blob, name, size FROM symbols WHERE build_id = ?`, buildID).Scan(&sym.Blob, &sym.Name, &sym.Size)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("symbols for %s: %w", buildID, ErrNotFound)
	}
	return sym, err
}

// HaveSymbols returns which of the build-ids are stored.
func (s *Store) HaveSymbols(ctx context.Context, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		q := `SELECT build_id FROM symbols WHERE build_id IN (?` + strings.Repeat(",?", len(chunk)-1) + `)`
		rows, err := s.DB.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			out[id] = true
		}
		rows.Close()
	}
	return out, nil
}
