package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The notification outbox. An analysis that creates an issue, or files a core under an issue
// in a software version newer than every version the issue was seen in before, writes an
// issue event in the same transaction that stores the analysis: the event exists exactly when
// the analysis does, so a restart neither loses nor repeats it. The notifier then fans each
// event out into one delivery per webhook URL (again one transaction) and sends the deliveries
// until each is accepted or given up.

// Event kinds.
const (
	EventNewIssue   = "issue.new"
	EventRegression = "issue.regression"
)

// Seen is a software version and the id of the first core of that software type and version
// (ids grow in arrival order), for deciding what "newer" means when versions do not compare.
type Seen struct {
	Version   string
	FirstCore int64
}

// IssueEvent is a stored event with what the notification says.
type IssueEvent struct {
	ID               int64
	Kind             string
	IssueID, CoreID  int64
	Title            string
	Fingerprint      string
	Signal           string
	Function         string
	Location         string
	SoftwareType     string
	SoftwareVersion  string
	PreviousVersions []string
	DeviceSerial     string
	FirstSeen        time.Time
	LastSeen         time.Time
	Created          time.Time
}

// issueEvent writes the event of one finished analysis, if it is one, inside FinishCore's
// transaction.
func issueEvent(ctx context.Context, tx *sql.Tx, coreID, issueID int64, created bool, r Result) error {
	var swType, swVersion, serial string
	if err := tx.QueryRowContext(ctx, `SELECT software_type, software_version, device_serial FROM cores WHERE id = ?`, coreID).
		Scan(&swType, &swVersion, &serial); err != nil {
		return err
	}
	kind := EventNewIssue
	var previous []string
	if !created {
		if r.Newer == nil {
			return nil
		}
		firstCore := func(version string) (int64, error) {
			var id int64
			err := tx.QueryRowContext(ctx, `SELECT MIN(id) FROM cores WHERE software_type = ? AND software_version = ?`, swType, version).Scan(&id)
			return id, err
		}
		rows, err := tx.QueryContext(ctx, `SELECT DISTINCT software_version FROM cores
			WHERE issue_id = ? AND id != ? AND software_type = ? AND status = 'done'`, issueID, coreID, swType)
		if err != nil {
			return err
		}
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return err
			}
			previous = append(previous, v)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		var earlier []Seen
		for _, v := range previous {
			id, err := firstCore(v)
			if err != nil {
				return err
			}
			earlier = append(earlier, Seen{v, id})
		}
		id, err := firstCore(swVersion)
		if err != nil {
			return err
		}
		if !r.Newer(Seen{swVersion, id}, earlier) {
			return nil
		}
		kind = EventRegression
	}
	if previous == nil {
		previous = []string{}
	}
	prev, err := json.Marshal(previous)
	if err != nil {
		return err
	}
	var first, last int64
	if err := tx.QueryRowContext(ctx, `SELECT MIN(captured), MAX(captured) FROM cores WHERE issue_id = ?`, issueID).Scan(&first, &last); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO issue_events(kind, issue_id, core_id, title, fingerprint, signal, function, location,
		software_type, software_version, previous_versions, device_serial, first_seen, last_seen, created)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		kind, issueID, coreID, r.Title, r.Fingerprint, r.Signal, r.Function, r.Location, swType, swVersion, string(prev), serial,
		first, last, time.Now().Unix())
	return err
}

// FanOut turns every event not yet fanned out into one pending delivery per URL, with the body
// that body makes, and marks the events done, in one transaction. With no URLs the events are
// marked done with no deliveries (a webhook added later does not receive the past). It returns
// how many deliveries it made.
func (s *Store) FanOut(ctx context.Context, urls []string, body func(IssueEvent, string) ([]byte, error)) (int, error) {
	// Asked every second: a read first, so that an idle server takes no write lock.
	if n, err := s.EventsWaiting(ctx); err != nil || n == 0 {
		return 0, err
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT id, kind, issue_id, core_id, title, fingerprint, signal, function, location,
		software_type, software_version, previous_versions, device_serial, first_seen, last_seen, created
		FROM issue_events WHERE fanned_out = 0 ORDER BY id`)
	if err != nil {
		return 0, err
	}
	var events []IssueEvent
	for rows.Next() {
		var e IssueEvent
		var prev string
		var first, last, created int64
		if err := rows.Scan(&e.ID, &e.Kind, &e.IssueID, &e.CoreID, &e.Title, &e.Fingerprint, &e.Signal, &e.Function, &e.Location,
			&e.SoftwareType, &e.SoftwareVersion, &prev, &e.DeviceSerial, &first, &last, &created); err != nil {
			rows.Close()
			return 0, err
		}
		if err := json.Unmarshal([]byte(prev), &e.PreviousVersions); err != nil {
			rows.Close()
			return 0, fmt.Errorf("event %d: previous versions: %w", e.ID, err)
		}
		e.FirstSeen, e.LastSeen, e.Created = time.Unix(first, 0), time.Unix(last, 0), time.Unix(created, 0)
		events = append(events, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, e := range events {
		for _, u := range urls {
			b, err := body(e, u)
			if err != nil {
				return 0, fmt.Errorf("event %d: %w", e.ID, err)
			}
			res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO webhook_deliveries(event_id, url, body) VALUES (?, ?, ?)`, e.ID, u, string(b))
			if err != nil {
				return 0, err
			}
			k, _ := res.RowsAffected()
			n += int(k)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE issue_events SET fanned_out = 1 WHERE id = ?`, e.ID); err != nil {
			return 0, err
		}
	}
	return n, tx.Commit()
}

// Delivery is one event's call to one URL.
type Delivery struct {
	ID, EventID int64
	Kind        string
	URL         string
	Body        []byte
	Status      string
	Attempts    int
	NextAttempt time.Time
	LastError   string
}

const deliveryCols = `d.id, d.event_id, e.kind, d.url, d.body, d.status, d.attempts, d.next_attempt, d.last_error`

func scanDeliveries(rows *sql.Rows) ([]Delivery, error) {
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		var d Delivery
		var body string
		var next int64
		if err := rows.Scan(&d.ID, &d.EventID, &d.Kind, &d.URL, &body, &d.Status, &d.Attempts, &next, &d.LastError); err != nil {
			return nil, err
		}
		d.Body, d.NextAttempt = []byte(body), time.UnixMilli(next)
		out = append(out, d)
	}
	return out, rows.Err()
}

// DueDeliveries returns up to n pending deliveries whose next attempt is due at now, oldest
// first, leaving out the ids in skip (those being sent).
func (s *Store) DueDeliveries(ctx context.Context, now time.Time, n int, skip map[int64]bool) ([]Delivery, error) {
	q := `SELECT ` + deliveryCols + ` FROM webhook_deliveries d JOIN issue_events e ON e.id = d.event_id
		WHERE d.status = 'pending' AND d.next_attempt <= ?`
	args := []any{now.UnixMilli()}
	if len(skip) > 0 {
		q += ` AND d.id NOT IN (?` + strings.Repeat(",?", len(skip)-1) + `)`
		for id := range skip {
			args = append(args, id)
		}
	}
	rows, err := s.DB.QueryContext(ctx, q+` ORDER BY d.next_attempt, d.id LIMIT ?`, append(args, n)...)
	if err != nil {
		return nil, err
	}
	return scanDeliveries(rows)
}

// NextDeliveryDue is when the earliest pending delivery is due; ok is false when none is pending.
func (s *Store) NextDeliveryDue(ctx context.Context) (time.Time, bool, error) {
	var next sql.NullInt64
	err := s.DB.QueryRowContext(ctx, `SELECT MIN(next_attempt) FROM webhook_deliveries WHERE status = 'pending'`).Scan(&next)
	if err != nil || !next.Valid {
		return time.Time{}, false, err
	}
	return time.UnixMilli(next.Int64), true, nil
}

// Deliveries lists every delivery, oldest first (the status API and tests).
func (s *Store) Deliveries(ctx context.Context) ([]Delivery, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT `+deliveryCols+` FROM webhook_deliveries d JOIN issue_events e ON e.id = d.event_id ORDER BY d.id`)
	if err != nil {
		return nil, err
	}
	return scanDeliveries(rows)
}

// DeliveryDone records that a receiver accepted a delivery.
func (s *Store) DeliveryDone(ctx context.Context, id int64, attempts int) error {
	_, err := s.exec(ctx, `UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + ?, last_error = '',
		delivered = ? WHERE id = ?`, attempts, time.Now().Unix(), id)
	return err
}

// DeliveryFailed records failed attempts: the delivery is tried again at next, or, when giveUp,
// marked failed for good.
func (s *Store) DeliveryFailed(ctx context.Context, id int64, attempts int, msg string, next time.Time, giveUp bool) error {
	status := "pending"
	if giveUp {
		status = "failed"
	}
	_, err := s.exec(ctx, `UPDATE webhook_deliveries SET status = ?, attempts = attempts + ?, last_error = ?, next_attempt = ?
		WHERE id = ?`, status, attempts, msg, next.UnixMilli(), id)
	return err
}

// EventsWaiting counts events not yet fanned out into deliveries.
func (s *Store) EventsWaiting(ctx context.Context) (int, error) {
	var n int
	err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM issue_events WHERE fanned_out = 0`).Scan(&n) // indexed
	return n, err
}
