package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The statements of the hot paths: one upload, one analysis.
const (
	qCreateUpload  = `INSERT INTO uploads(token, kind, size, created) VALUES (?, ?, ?, ?)`
	qGetUpload     = `SELECT kind, size, blob, committed FROM uploads WHERE token = ?`
	qSetUploadBlob = `UPDATE uploads SET blob = ? WHERE token = ?`
	qMarkCommitted = `UPDATE uploads SET committed = 1 WHERE token = ? AND committed = 0`
	qAddEntry      = `INSERT OR IGNORE INTO entries(uuid, type, device_serial, manifest, received) VALUES (?, ?, ?, ?, ?)`
	qEntryAgain    = `UPDATE entries SET arrivals = arrivals + 1 WHERE uuid = ?`
	qAddCore       = `INSERT INTO cores(entry_uuid, blob, compression, device_serial, hardware_version, software_type,
		software_version, captured, received) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qClaimNext = `UPDATE cores SET status = 'running'
		WHERE id = (SELECT id FROM cores WHERE status = 'pending' ORDER BY id LIMIT 1) AND status = 'pending'
		RETURNING ` + coreCols
	qCoreIssue         = `SELECT COALESCE(issue_id, 0) FROM cores WHERE id = ?`
	qIssueByPrint      = `SELECT id, symbols_missing FROM issues WHERE fingerprint = ?`
	qNewIssue          = `INSERT INTO issues(fingerprint, title, signal, fingerprint_frames, first_seen, last_seen, symbols_missing) VALUES (?, ?, ?, ?, ?, ?, ?)`
	qSeenIssue         = `UPDATE issues SET last_seen = ?, title = ?, fingerprint_frames = ? WHERE id = ?`
	qFinishCore        = `UPDATE cores SET status = 'done', error = '', attempts = attempts + 1, issue_id = ?, symbols_missing = ?, trace = ? WHERE id = ?`
	qClearMissing      = `DELETE FROM core_missing_symbols WHERE core_id = ?`
	qAddMissing        = `INSERT OR IGNORE INTO core_missing_symbols VALUES (?, ?)`
	qIssueLacksSymbols = `UPDATE issues SET symbols_missing = 1 WHERE id = ? AND symbols_missing = 0`
	// Only an issue marked as lacking symbols needs its cores looked at, and EXISTS stops at
	// the first core that lacks them.
	qIssueRecheckSymbols = `UPDATE issues SET symbols_missing = EXISTS(
		SELECT 1 FROM cores WHERE cores.issue_id = issues.id AND cores.symbols_missing = 1) WHERE id = ? AND symbols_missing = 1`
	qDropEmptyIssue = `DELETE FROM issues WHERE id = ? AND NOT EXISTS (SELECT 1 FROM cores WHERE cores.issue_id = ?)`
)

// Upload is a prepared upload (device MAR or symbol file).
type Upload struct {
	Token     string
	Kind      string
	Size      int64
	Blob      string
	Committed bool
}

// ErrCommitted is returned when an upload is committed a second time.
var ErrCommitted = errors.New("upload already committed")

// CreateUpload records a prepared upload.
func (s *Store) CreateUpload(ctx context.Context, token, kind string, size int64) error {
	_, err := s.exec(ctx, qCreateUpload, token, kind, size, time.Now().Unix())
	return err
}

// GetUpload returns a prepared upload.
func (s *Store) GetUpload(ctx context.Context, token string) (*Upload, error) {
	u := &Upload{Token: token}
	var blob sql.NullString
	err := s.DB.QueryRowContext(ctx, qGetUpload, token).Scan(&u.Kind, &u.Size, &blob, &u.Committed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("upload token: %w", ErrNotFound)
	}
	u.Blob = blob.String
	return u, err
}

// SetUploadBlob records the body of an upload.
func (s *Store) SetUploadBlob(ctx context.Context, token, blob string) error {
	_, err := s.exec(ctx, qSetUploadBlob, blob, token)
	return err
}

// MarkCommitted marks an upload committed; it reports false if it already was.
func (s *Store) MarkCommitted(ctx context.Context, token string) (bool, error) {
	res, err := s.exec(ctx, qMarkCommitted, token)
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

// NewEntry is one entry of a committed upload, with its core when it carries one.
type NewEntry struct {
	Entry Entry
	Core  *CoreInput
}

// Added says what became of one entry of CommitEntries.
type Added struct {
	Fresh  bool  // false: the uuid arrived before, nothing was stored
	CoreID int64 // the core waiting for analysis, 0 when none
}

// CommitEntries marks an upload committed and stores its entries, all in one transaction:
// either the upload is committed with every entry stored, or nothing changed (a retried
// commit after a failure finds the upload still open). An upload committed before is
// ErrCommitted.
func (s *Store) CommitEntries(ctx context.Context, token string, entries []NewEntry) ([]Added, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, qMarkCommitted, token)
	if err != nil {
		return nil, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, err
	} else if n != 1 {
		return nil, ErrCommitted
	}
	out := make([]Added, len(entries))
	for i, e := range entries {
		if out[i].Fresh, out[i].CoreID, err = s.addEntry(ctx, tx, e.Entry, e.Core); err != nil {
			return nil, err
		}
	}
	return out, tx.Commit()
}

// AddEntry stores an entry, and its core when core is not nil, in one transaction. A uuid seen
// before is not stored again: it returns false (the device sent it twice).
func (s *Store) AddEntry(ctx context.Context, e Entry, core *CoreInput) (bool, int64, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return false, 0, err
	}
	defer tx.Rollback()
	fresh, id, err := s.addEntry(ctx, tx, e, core)
	if err != nil {
		return false, 0, err
	}
	return fresh, id, tx.Commit()
}

func (s *Store) addEntry(ctx context.Context, tx *sql.Tx, e Entry, core *CoreInput) (bool, int64, error) {
	now := time.Now().Unix()
	res, err := tx.ExecContext(ctx, qAddEntry, e.UUID, e.Type, e.DeviceSerial, e.Manifest, now)
	if err != nil {
		return false, 0, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, 0, err
	} else if n == 0 {
		_, err := tx.ExecContext(ctx, qEntryAgain, e.UUID)
		return false, 0, err
	}
	var id int64
	if core != nil {
		r, err := tx.ExecContext(ctx, qAddCore, e.UUID, core.Blob, core.Compression, core.DeviceSerial, core.HardwareVersion,
			core.SoftwareType, core.SoftwareVersion, core.Captured.Unix(), now)
		if err != nil {
			return false, 0, err
		}
		if id, err = r.LastInsertId(); err != nil {
			return false, 0, err
		}
	}
	return true, id, nil
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
	res, err := s.exec(ctx, `UPDATE cores SET status = 'running' WHERE id = ? AND status = 'pending'`, id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// ClaimNext takes the oldest pending core for analysis and returns it, in one statement;
// ErrNotFound when none is pending.
func (s *Store) ClaimNext(ctx context.Context) (*Core, error) {
	return scanCore(s.writeQueryRow(ctx, qClaimNext))
}

// Requeue puts one core back in the queue after a failure to store its analysis; after three
// attempts it is marked failed instead.
func (s *Store) Requeue(ctx context.Context, id int64) error {
	_, err := s.exec(ctx, `UPDATE cores SET attempts = attempts + 1,
		status = CASE WHEN attempts >= 2 THEN 'failed' ELSE 'pending' END,
		error = CASE WHEN attempts >= 2 THEN 'could not store the analysis' ELSE error END WHERE id = ?`, id)
	return err
}

// ResetRunning puts cores that were being analysed when the server stopped back in the queue.
func (s *Store) ResetRunning(ctx context.Context) (int64, error) {
	res, err := s.exec(ctx, `UPDATE cores SET status = 'pending' WHERE status = 'running'`)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// FailCore records that analysis failed; the core stays stored.
func (s *Store) FailCore(ctx context.Context, id int64, msg string) error {
	_, err := s.exec(ctx, `UPDATE cores SET status = 'failed', error = ?, attempts = attempts + 1 WHERE id = ?`, msg, id)
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
// whether the issue is new. Only the core's new and previous issue are touched, so the cost
// does not grow with the number of issues or of their cores; the first analysis of a core
// whose issue exists is four statements.
func (s *Store) FinishCore(ctx context.Context, id int64, r Result) (int64, bool, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return 0, false, err
	}
	defer tx.Rollback()
	var prev int64
	if err := tx.QueryRowContext(ctx, qCoreIssue, id).Scan(&prev); err != nil {
		return 0, false, err
	}
	now := time.Now().Unix()
	missing := len(r.MissingBuildIDs) > 0
	var issue int64
	var issueLacks bool
	created := false
	err = tx.QueryRowContext(ctx, qIssueByPrint, r.Fingerprint).Scan(&issue, &issueLacks)
	if errors.Is(err, sql.ErrNoRows) {
		res, err := tx.ExecContext(ctx, qNewIssue, r.Fingerprint, r.Title, r.Signal, r.FingerprintFrames, now, now, missing)
		if err != nil {
			return 0, false, err
		}
		if issue, err = res.LastInsertId(); err != nil {
			return 0, false, err
		}
		created, issueLacks = true, missing
	} else if err != nil {
		return 0, false, err
	} else if _, err := tx.ExecContext(ctx, qSeenIssue, now, r.Title, r.FingerprintFrames, issue); err != nil {
		return 0, false, err
	}
	if _, err := tx.ExecContext(ctx, qFinishCore, issue, missing, r.Trace, id); err != nil {
		return 0, false, err
	}
	if prev != 0 { // analysed before: its old list goes
		if _, err := tx.ExecContext(ctx, qClearMissing, id); err != nil {
			return 0, false, err
		}
	}
	for _, b := range r.MissingBuildIDs {
		if _, err := tx.ExecContext(ctx, qAddMissing, id, b); err != nil {
			return 0, false, err
		}
	}
	// An issue lacks symbols while any of its cores does; an issue left empty by a move goes.
	if missing && !issueLacks {
		if _, err := tx.ExecContext(ctx, qIssueLacksSymbols, issue); err != nil {
			return 0, false, err
		}
	} else if !missing && issueLacks {
		if _, err := tx.ExecContext(ctx, qIssueRecheckSymbols, issue); err != nil {
			return 0, false, err
		}
	}
	if prev != 0 && prev != issue {
		if _, err := tx.ExecContext(ctx, qIssueRecheckSymbols, prev); err != nil {
			return 0, false, err
		}
		if _, err := tx.ExecContext(ctx, qDropEmptyIssue, prev, prev); err != nil {
			return 0, false, err
		}
	}
	if prev != issue {
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
	res, err := s.exec(ctx, `UPDATE cores SET status = 'pending' WHERE id IN
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
	res, err := s.exec(ctx, `INSERT OR IGNORE INTO symbols(build_id, blob, name, size, added) VALUES (?, ?, ?, ?, ?)`,
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
