// Package store keeps memfault-server's state: a SQLite database (pure Go, no cgo) for
// uploads, entries, cores, symbols and issues, and content-addressed blobs on disk. Schema
// changes are numbered migrations applied at open.
package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Store is one server's state directory: db.sqlite and blobs/.
//
// The database has one writer connection and a pool of read-only connections. SQLite lets one
// transaction write at a time; with several writer connections, a writer that finds the lock
// taken sleeps in SQLite's busy handler (1, 2, 5, 10, ... ms) and retries, which under a
// steady stream of uploads adds tens of milliseconds to requests. With one writer connection,
// writers wait in database/sql's queue instead and run the moment the previous one ends.
// Readers never wait for the writer (WAL). A third connection checkpoints the WAL into the
// database file in the background (PASSIVE: it blocks neither readers nor the writer), so a
// commit does not pay for copying megabytes of earlier commits; the writer checkpoints by
// itself only if the WAL passes 40 MB (a stalled background checkpoint). Statement journals
// stay in memory (temp_store=MEMORY) rather than going through temporary files.
//
// Durability: the journal is a write-ahead log with synchronous=NORMAL. A committed
// transaction, and so every request answered after its commit, survives a crash or kill of
// the server process: its frames are in the WAL file, handed to the OS. SQLite syncs the WAL
// to disk at checkpoints only, so a crash of the OS or a power loss rolls back what was
// committed since the last checkpoint (with the background checkpointer, typically the last
// quarter of a second while writes go on); the database stays consistent. A blob's bytes are
// fsynced before its rename, and the rename happens before the row that names the blob
// commits. The directory of the rename is not fsynced: after a power loss, on a file system
// that does not keep the order of a rename and later writes, a row that survived could name
// a blob that did not; that core's analysis then fails with "not found". A blob whose row
// was rolled back remains as an unreferenced file.
type Store struct {
	DB   *sql.DB // read-only connections
	w    *sql.DB // the writer: one connection
	ckpt *sql.DB // the background checkpointer: one connection
	dir  string
	// writes counts write statements; the checkpointer runs when it moved.
	writes   atomic.Int64
	stopCkpt chan struct{}
	ckptDone chan struct{}
}

// ErrTooLarge is returned when a blob exceeds its limit.
var ErrTooLarge = errors.New("too large")

// ErrNotFound is returned for missing rows and blobs.
var ErrNotFound = errors.New("not found")

// Open opens (creating if needed) the state in dir and migrates the schema.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "tmp"), 0o755); err != nil {
		return nil, err
	}
	file := "file:" + filepath.Join(dir, "db.sqlite")
	common := "&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_pragma=temp_store(MEMORY)"
	// Write transactions begin IMMEDIATE, so a transaction that reads first never fails to
	// upgrade to a writer (SQLITE_BUSY_SNAPSHOT); the busy timeout covers another process
	// holding the database.
	w, err := sql.Open("sqlite", file+"?_pragma=journal_mode(WAL)"+common+"&_pragma=wal_autocheckpoint(10000)&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	s := &Store{w: w, dir: dir}
	if err := s.migrate(context.Background()); err != nil {
		w.Close()
		return nil, fmt.Errorf("migrate %s: %w", dir, err)
	}
	r, err := sql.Open("sqlite", file+"?_pragma=query_only(1)"+common)
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(4)
	r.SetMaxIdleConns(4)
	s.DB = r
	c, err := sql.Open("sqlite", file+"?"+common[1:])
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	c.SetMaxOpenConns(1)
	s.ckpt = c
	s.stopCkpt, s.ckptDone = make(chan struct{}), make(chan struct{})
	go s.checkpointer()
	return s, nil
}

// checkpointer copies committed WAL frames into the database file while writes happen.
func (s *Store) checkpointer() {
	defer close(s.ckptDone)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last int64
	for {
		select {
		case <-s.stopCkpt:
			return
		case <-tick.C:
		}
		if n := s.writes.Load(); n != last {
			last = n
			// An error (the database busy in another process) is retried at the next tick;
			// the writer's own checkpoint bounds the WAL meanwhile.
			s.ckpt.Exec(`PRAGMA wal_checkpoint(PASSIVE)`)
		}
	}
}

// Close closes the database.
func (s *Store) Close() error {
	close(s.stopCkpt)
	<-s.ckptDone
	err := s.ckpt.Close()
	for _, db := range []*sql.DB{s.DB, s.w} {
		if cerr := db.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// queryAll runs a read query and returns every row, each decoded by scan.
func queryAll[T any](ctx context.Context, db *sql.DB, scan func(interface{ Scan(...any) error }) (T, error), q string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// exec runs a write outside a transaction on the writer connection.
func (s *Store) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	s.writes.Add(1)
	return s.w.ExecContext(ctx, q, args...)
}

// begin starts a write transaction on the writer connection. Inside it, only the Tx may touch
// the database: the writer has one connection, so s.exec would wait for the Tx forever.
func (s *Store) begin(ctx context.Context) (*sql.Tx, error) {
	s.writes.Add(1)
	return s.w.BeginTx(ctx, nil)
}

// Writer is the writer connection, for tools and benchmarks that fill a store straight through
// SQL; everything else writes through Store's methods. Its one connection is held by an open
// transaction, so a caller must finish every transaction it begins.
func (s *Store) Writer() *sql.DB {
	s.writes.Add(1)
	return s.w
}

// writeQueryRow runs a statement that writes and returns one row (RETURNING) outside a
// transaction.
func (s *Store) writeQueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	s.writes.Add(1)
	return s.w.QueryRowContext(ctx, q, args...)
}

// migrations are applied in order; each runs once, in its own transaction.
var migrations = []string{
	// 1: the first schema.
	`CREATE TABLE uploads (
		token TEXT PRIMARY KEY,
		kind TEXT NOT NULL,            -- "mar" or "symbols"
		size INTEGER NOT NULL,
		blob TEXT,                     -- set once the PUT arrived
		created INTEGER NOT NULL,
		committed INTEGER NOT NULL DEFAULT 0
	);
	CREATE TABLE entries (
		uuid TEXT PRIMARY KEY,
		type TEXT NOT NULL,
		device_serial TEXT NOT NULL,
		manifest TEXT NOT NULL,
		received INTEGER NOT NULL,
		arrivals INTEGER NOT NULL DEFAULT 1
	);
	CREATE TABLE cores (
		id INTEGER PRIMARY KEY,
		entry_uuid TEXT NOT NULL UNIQUE REFERENCES entries(uuid),
		blob TEXT NOT NULL,
		compression TEXT NOT NULL,
		device_serial TEXT NOT NULL,
		hardware_version TEXT NOT NULL,
		software_type TEXT NOT NULL,
		software_version TEXT NOT NULL,
		captured INTEGER NOT NULL,
		received INTEGER NOT NULL,
		status TEXT NOT NULL DEFAULT 'pending', -- pending, done, failed
		error TEXT NOT NULL DEFAULT '',
		attempts INTEGER NOT NULL DEFAULT 0,
		issue_id INTEGER REFERENCES issues(id),
		symbols_missing INTEGER NOT NULL DEFAULT 0,
		trace TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX cores_status ON cores(status);
	CREATE INDEX cores_issue ON cores(issue_id);
	CREATE TABLE core_missing_symbols (
		core_id INTEGER NOT NULL REFERENCES cores(id) ON DELETE CASCADE,
		build_id TEXT NOT NULL,
		PRIMARY KEY (core_id, build_id)
	);
	CREATE INDEX missing_build ON core_missing_symbols(build_id);
	CREATE TABLE symbols (
		build_id TEXT PRIMARY KEY,
		blob TEXT NOT NULL,
		name TEXT NOT NULL,
		size INTEGER NOT NULL,
		added INTEGER NOT NULL
	);
	CREATE TABLE issues (
		id INTEGER PRIMARY KEY,
		fingerprint TEXT NOT NULL UNIQUE,
		title TEXT NOT NULL,
		signal TEXT NOT NULL,
		fingerprint_frames TEXT NOT NULL,
		first_seen INTEGER NOT NULL,
		last_seen INTEGER NOT NULL,
		symbols_missing INTEGER NOT NULL DEFAULT 0
	);`,
	// 2: the notification outbox (outbox.go): issue events, written with the analysis that
	// caused them, and one delivery per event and webhook URL.
	`CREATE TABLE issue_events (
		id INTEGER PRIMARY KEY,
		kind TEXT NOT NULL,              -- issue.new, issue.regression
		issue_id INTEGER NOT NULL,
		core_id INTEGER NOT NULL,
		title TEXT NOT NULL,
		fingerprint TEXT NOT NULL,
		signal TEXT NOT NULL,
		function TEXT NOT NULL,
		location TEXT NOT NULL,
		software_type TEXT NOT NULL,
		software_version TEXT NOT NULL,
		previous_versions TEXT NOT NULL, -- JSON list, regressions only
		device_serial TEXT NOT NULL,
		first_seen INTEGER NOT NULL,
		last_seen INTEGER NOT NULL,
		created INTEGER NOT NULL,
		fanned_out INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX issue_events_fan ON issue_events(fanned_out);
	CREATE TABLE webhook_deliveries (
		id INTEGER PRIMARY KEY,
		event_id INTEGER NOT NULL REFERENCES issue_events(id),
		url TEXT NOT NULL,
		body TEXT NOT NULL,
		status TEXT NOT NULL DEFAULT 'pending', -- pending, delivered, failed
		attempts INTEGER NOT NULL DEFAULT 0,
		next_attempt INTEGER NOT NULL DEFAULT 0, -- unix ms
		last_error TEXT NOT NULL DEFAULT '',
		delivered INTEGER NOT NULL DEFAULT 0,
		UNIQUE (event_id, url)
	);
	CREATE INDEX webhook_due ON webhook_deliveries(status, next_attempt);
	-- when a version was first seen (the regression rule's fallback order)
	CREATE INDEX cores_version ON cores(software_type, software_version, id);`,
	// 3: each issue's figures kept up to date by triggers as cores join and leave issues, so a
	// page of the issues list sorts and shows them without aggregating every core; the
	// versions of each issue for the version filter; stored symbols by upload time.
	`CREATE TABLE issue_stats (
		issue_id INTEGER PRIMARY KEY,
		occurrences INTEGER NOT NULL,
		devices INTEGER NOT NULL,
		first_captured INTEGER NOT NULL,
		last_captured INTEGER NOT NULL
	);
	CREATE INDEX issue_stats_last ON issue_stats(last_captured, issue_id);
	CREATE INDEX issue_stats_first ON issue_stats(first_captured, issue_id);
	CREATE INDEX issue_stats_occurrences ON issue_stats(occurrences, issue_id);
	CREATE INDEX issue_stats_devices ON issue_stats(devices, issue_id);
	CREATE TABLE issue_versions (
		issue_id INTEGER NOT NULL,
		software_version TEXT NOT NULL,
		PRIMARY KEY (issue_id, software_version)
	) WITHOUT ROWID;
	CREATE INDEX issue_versions_version ON issue_versions(software_version, issue_id);
	CREATE INDEX cores_issue_device ON cores(issue_id, device_serial);
	CREATE INDEX cores_issue_captured ON cores(issue_id, captured);
	CREATE INDEX cores_issue_version ON cores(issue_id, software_version);
	CREATE INDEX symbols_added ON symbols(added);
	INSERT INTO issue_stats SELECT issue_id, COUNT(*), COUNT(DISTINCT device_serial), MIN(captured), MAX(captured)
		FROM cores WHERE issue_id IS NOT NULL GROUP BY issue_id;
	INSERT INTO issue_versions SELECT DISTINCT issue_id, software_version FROM cores WHERE issue_id IS NOT NULL;
	CREATE TRIGGER cores_join_issue AFTER UPDATE OF issue_id ON cores
	WHEN NEW.issue_id IS NOT NULL AND NEW.issue_id IS NOT OLD.issue_id BEGIN ` + joinIssue + ` END;
	CREATE TRIGGER cores_insert_in_issue AFTER INSERT ON cores
	WHEN NEW.issue_id IS NOT NULL BEGIN ` + joinIssue + ` END;
	CREATE TRIGGER cores_leave_issue AFTER UPDATE OF issue_id ON cores
	WHEN OLD.issue_id IS NOT NULL AND NEW.issue_id IS NOT OLD.issue_id BEGIN ` + leaveIssue + ` END;
	CREATE TRIGGER cores_delete_from_issue AFTER DELETE ON cores
	WHEN OLD.issue_id IS NOT NULL BEGIN ` + leaveIssue + ` END;
	CREATE TRIGGER issues_delete_figures AFTER DELETE ON issues BEGIN
		DELETE FROM issue_stats WHERE issue_id = OLD.id;
		DELETE FROM issue_versions WHERE issue_id = OLD.id;
	END;`,
}

// joinIssue and leaveIssue keep issue_stats and issue_versions right when the core NEW joins
// its issue or the core OLD leaves its own (the row already changed when they run). Every
// subquery is answered from an index on cores(issue_id, ...).
const joinIssue = `
	INSERT INTO issue_stats VALUES (NEW.issue_id, 1, 1, NEW.captured, NEW.captured)
	ON CONFLICT(issue_id) DO UPDATE SET occurrences = occurrences + 1,
		devices = devices + NOT EXISTS (SELECT 1 FROM cores o WHERE o.issue_id = NEW.issue_id
			AND o.device_serial = NEW.device_serial AND o.id != NEW.id),
		first_captured = MIN(first_captured, NEW.captured), last_captured = MAX(last_captured, NEW.captured);
	INSERT OR IGNORE INTO issue_versions VALUES (NEW.issue_id, NEW.software_version);`

const leaveIssue = `
	UPDATE issue_stats SET occurrences = occurrences - 1,
		devices = devices - NOT EXISTS (SELECT 1 FROM cores o WHERE o.issue_id = OLD.issue_id AND o.device_serial = OLD.device_serial),
		first_captured = COALESCE((SELECT MIN(captured) FROM cores o WHERE o.issue_id = OLD.issue_id), 0),
		last_captured = COALESCE((SELECT MAX(captured) FROM cores o WHERE o.issue_id = OLD.issue_id), 0)
	WHERE issue_id = OLD.issue_id;
	DELETE FROM issue_stats WHERE issue_id = OLD.issue_id AND occurrences <= 0;
	DELETE FROM issue_versions WHERE issue_id = OLD.issue_id AND software_version = OLD.software_version
		AND NOT EXISTS (SELECT 1 FROM cores o WHERE o.issue_id = OLD.issue_id AND o.software_version = OLD.software_version);`

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)`); err != nil {
		return err
	}
	var have int
	if err := s.w.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return err
	}
	if have > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this server (%d)", have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations VALUES (?, ?)`, v, time.Now().Unix()); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// SchemaVersion is the number of applied migrations.
func (s *Store) SchemaVersion() (int, error) {
	var v int
	err := s.DB.QueryRow(`SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

func (s *Store) blobPath(hash string) string {
	return filepath.Join(s.dir, "blobs", hash[:2], hash)
}

// copyBuffers spare each PutBlob a buffer of its own.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// PutBlob stores at most max bytes from r under their SHA-256 and returns the hash and size.
// More than max bytes is ErrTooLarge and nothing is kept. Storing the same bytes twice keeps
// one copy.
func (s *Store) PutBlob(r io.Reader, max int64) (string, int64, error) {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "blobs", "tmp"), "put-")
	if err != nil {
		return "", 0, err
	}
	renamed := false
	defer func() {
		tmp.Close()
		if !renamed {
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	n, err := io.CopyBuffer(io.MultiWriter(tmp, h), io.LimitReader(r, max+1), *buf)
	if err != nil {
		return "", 0, err
	}
	if n > max {
		return "", 0, fmt.Errorf("blob over %d bytes: %w", max, ErrTooLarge)
	}
	if err := tmp.Sync(); err != nil {
		return "", 0, err
	}
	hash := hex.EncodeToString(h.Sum(nil))
	p := s.blobPath(hash)
	if _, err := os.Stat(p); err == nil {
		return hash, n, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", 0, err
	}
	if err := tmp.Close(); err != nil {
		return "", 0, err
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return "", 0, err
	}
	renamed = true
	return hash, n, nil
}

// OpenBlob opens a stored blob.
func (s *Store) OpenBlob(hash string) (*os.File, error) {
	if len(hash) != 64 {
		return nil, fmt.Errorf("blob %q: %w", hash, ErrNotFound)
	}
	f, err := os.Open(s.blobPath(hash))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", hash, ErrNotFound)
	}
	return f, err
}

// BlobPath is the file of a stored blob.
func (s *Store) BlobPath(hash string) string { return s.blobPath(hash) }

// TempDir is a directory for scratch files on the same file system as the blobs.
func (s *Store) TempDir() string { return filepath.Join(s.dir, "blobs", "tmp") }
