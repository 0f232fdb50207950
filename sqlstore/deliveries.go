package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/barfinex/notifier"
)

// StoredEvent is a published event as kept in the store.
type StoredEvent struct {
	ID        string
	Type      notifier.EventType
	Timestamp time.Time
	// Body is the envelope, exactly as every delivery sends it.
	Body      []byte
	CreatedAt time.Time
	// FannedOut is set once the event's deliveries were created.
	FannedOut bool
	// Targets are the webhooks the event goes to, nil for its subscribers.
	Targets []string
}

// CreateEvent stores a published event with its envelope, for delivery to
// its subscribers. When an event with the same id is already stored, it
// returns that one and created is false.
func (s *Store) CreateEvent(ctx context.Context, e *notifier.Event, body []byte) (
	stored *StoredEvent, created bool, err error) {
	return s.CreateEventFor(ctx, e, body, nil)
}

// CreateEventFor stores an event like CreateEvent, for delivery to the given
// webhooks (whatever they subscribe to) when targets is not nil. A new
// signal.emitted event also becomes its strategy's latest signal.
func (s *Store) CreateEventFor(ctx context.Context, e *notifier.Event, body []byte,
	targets []string) (stored *StoredEvent, created bool, err error) {
	now := s.clock()
	var targetsJSON sql.NullString
	if targets != nil {
		b, err := json.Marshal(targets)
		if err != nil {
			return nil, false, err
		}
		targetsJSON = sql.NullString{String: string(b), Valid: true}
	}
	err = s.inTx(ctx, func(tx txConn) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO events
			(id, type, timestamp, body, created_at, targets)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			e.ID, string(e.Type), formatTime(e.Timestamp), string(body), formatTime(now), targetsJSON)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		created = true
		if strategy := notifier.SignalStrategy(e); strategy != "" {
			return recordSignal(ctx, tx, strategy, e.ID, now)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if created {
		return &StoredEvent{ID: e.ID, Type: e.Type, Timestamp: e.Timestamp, Body: body,
			CreatedAt: now, Targets: targets}, true, nil
	}
	stored, err = s.Event(ctx, e.ID)
	return stored, false, err
}

// Event returns a stored event.
func (s *Store) Event(ctx context.Context, id string) (*StoredEvent, error) {
	var (
		e                StoredEvent
		typ, ts, created string
		body             string
		fannedOut        sql.NullString
		targets          sql.NullString
	)
	err := s.db.QueryRowContext(ctx, `SELECT id, type, timestamp, body, created_at, fanned_out_at,
		targets FROM events WHERE id = ?`, id).
		Scan(&e.ID, &typ, &ts, &body, &created, &fannedOut, &targets)
	if isNoRows(err) {
		return nil, notFound("event", id)
	} else if err != nil {
		return nil, err
	}
	e.Type, e.Body, e.FannedOut = notifier.EventType(typ), []byte(body), fannedOut.Valid
	if targets.Valid {
		if err := json.Unmarshal([]byte(targets.String), &e.Targets); err != nil {
			return nil, fmt.Errorf("event %s: targets: %w", id, err)
		}
	}
	if e.Timestamp, err = parseTime(ts); err != nil {
		return nil, err
	}
	if e.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	return &e, nil
}

// SameContent reports whether e carries the same type and data as the stored
// event, so that a repeated publish can be told from a clash of ids.
func (e *StoredEvent) SameContent(other *notifier.Event) bool {
	got, err := notifier.ParseEnvelope(e.Body)
	return err == nil && got.Type == other.Type && bytes.Equal(got.Data, other.Data)
}

// Target is a delivery waiting to be started, with what names it to a human:
// its webhook's name and host (never the whole URL, which may hold a token).
type Target struct {
	DeliveryID  string
	WebhookID   string
	WebhookName string
	Host        string
}

// FanOut creates a pending delivery of the event for every active webhook
// subscribed to its type (or, for an event stored with targets, for each of
// those that is active), the first time it runs for the event, and returns
// every delivery of the event that has not made an attempt yet. Run again,
// it creates nothing and returns the deliveries still waiting to start, so
// an event published twice never reaches a webhook created in between.
//
// Targets come a page at a time, by delivery id: at most limit, after the
// id after ("" for the first page).
func (s *Store) FanOut(ctx context.Context, eventID, after string, limit int) ([]Target, error) {
	var targets []Target
	err := s.inTx(ctx, func(tx txConn) error {
		var typ string
		var chosen sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT type, targets FROM events WHERE id = ?`, eventID).
			Scan(&typ, &chosen)
		if isNoRows(err) {
			return notFound("event", eventID)
		} else if err != nil {
			return err
		}
		// Whoever marks the event fanned out creates its deliveries; the
		// marking is the one atomic step two runs could race on.
		now := formatTime(s.clock())
		res, err := tx.ExecContext(ctx, `UPDATE events SET fanned_out_at = ?
			WHERE id = ? AND fanned_out_at IS NULL`, now, eventID)
		if err != nil {
			return err
		}
		var subscribed []string
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 1 && chosen.Valid {
			if subscribed, err = targetedWebhooks(ctx, tx, chosen.String); err != nil {
				return err
			}
		} else if n == 1 {
			if subscribed, err = subscribedWebhooks(ctx, tx, notifier.EventType(typ)); err != nil {
				return err
			}
		}
		for _, webhookID := range subscribed {
			_, err := tx.ExecContext(ctx, `INSERT INTO deliveries
				(id, event_id, event_type, webhook_id, status, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
				notifier.DeliveryID(eventID, webhookID), eventID, typ, webhookID,
				string(notifier.DeliveryPending), now, now)
			if err != nil {
				return err
			}
		}
		targets, err = waitingTargets(ctx, tx, eventID, after, limit)
		return err
	})
	return targets, err
}

func subscribedWebhooks(ctx context.Context, tx txConn, typ notifier.EventType) ([]string, error) {
	return queryIDs(ctx, tx, `SELECT w.id FROM webhooks w
		JOIN webhook_events e ON e.webhook_id = w.id
		WHERE e.event_type = ? AND w.active = 1 ORDER BY w.id`, string(typ))
}

// targetedWebhooks returns those of the webhooks listed in targets (JSON)
// that still exist and are active.
func targetedWebhooks(ctx context.Context, tx txConn, targets string) ([]string, error) {
	var ids []string
	if err := json.Unmarshal([]byte(targets), &ids); err != nil {
		return nil, fmt.Errorf("event targets: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return queryIDs(ctx, tx, `SELECT id FROM webhooks WHERE active = 1 AND id IN (`+
		placeholders(len(ids))+`) ORDER BY id`, args...)
}

func waitingTargets(ctx context.Context, tx txConn, eventID, after string,
	limit int) ([]Target, error) {
	rows, err := tx.QueryContext(ctx, `SELECT d.id, w.id, w.name, w.url FROM deliveries d
		JOIN webhooks w ON w.id = d.webhook_id
		WHERE d.event_id = ? AND d.status = ? AND d.attempts = 0 AND d.id > ?
		ORDER BY d.id LIMIT ?`,
		eventID, string(notifier.DeliveryPending), after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var targets []Target
	for rows.Next() {
		var t Target
		var rawURL string
		if err := rows.Scan(&t.DeliveryID, &t.WebhookID, &t.WebhookName, &rawURL); err != nil {
			return nil, err
		}
		if u, err := url.Parse(rawURL); err == nil {
			t.Host = u.Host
		}
		targets = append(targets, t)
	}
	return targets, rows.Err()
}

// AttemptOutcome is what a finished attempt changes on its delivery.
type AttemptOutcome struct {
	Status        notifier.DeliveryStatus
	NextAttemptAt *time.Time
}

// RecordAttempt adds an attempt to the log and brings its delivery's status
// up to date, in one transaction. The attempt's run number follows from its
// run id: the delivery's next number for a run not seen before. Recording
// the same attempt again replaces it. A delivery that succeeded stays
// succeeded.
func (s *Store) RecordAttempt(ctx context.Context, a *notifier.Attempt, out AttemptOutcome) error {
	headers, err := json.Marshal(a.ResponseHeaders)
	if err != nil {
		return err
	}
	now := s.clock()
	var completed *time.Time
	if out.Status.Final() {
		completed = &now
	}
	return s.inTx(ctx, func(tx txConn) error {
		err := tx.QueryRowContext(ctx, `SELECT run FROM attempts
			WHERE delivery_id = ? AND run_id = ? LIMIT 1`, a.DeliveryID, a.RunID).Scan(&a.Run)
		if isNoRows(err) {
			err = tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(run), 0) + 1 FROM attempts
				WHERE delivery_id = ?`, a.DeliveryID).Scan(&a.Run)
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO attempts (delivery_id, run_id, run, number,
			started_at, duration_ms, url, status_code, response_headers, response_body,
			error_class, error, request_body, retry_after_ms)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (delivery_id, run_id, number) DO UPDATE SET
			started_at = excluded.started_at, duration_ms = excluded.duration_ms,
			url = excluded.url, status_code = excluded.status_code,
			response_headers = excluded.response_headers,
			response_body = excluded.response_body, error_class = excluded.error_class,
			error = excluded.error, request_body = excluded.request_body,
			retry_after_ms = excluded.retry_after_ms`,
			a.DeliveryID, a.RunID, a.Run, a.Number, formatTime(a.StartedAt),
			a.Duration.Milliseconds(), a.URL, nullInt(a.StatusCode), string(headers),
			nullString(a.ResponseBody), nullString(a.ErrorClass), nullString(a.Error),
			nullString(a.RequestBody), a.RetryAfter.Milliseconds())
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE deliveries SET updated_at = ?,
			attempts = (SELECT COUNT(*) FROM attempts WHERE delivery_id = ?) WHERE id = ?`,
			formatTime(now), a.DeliveryID, a.DeliveryID)
		if err != nil {
			return err
		}
		// Only the latest run sets the status. Within it, an end (success,
		// failure, cancellation) stays, but a late success wins: the
		// receiver did take the event.
		_, err = tx.ExecContext(ctx, `UPDATE deliveries SET status = ?, last_status_code = ?,
			last_error = ?, next_attempt_at = ?, completed_at = ?, run_id = ?, run = ?
			WHERE id = ? AND (run < ? OR (run = ? AND (status NOT IN (?, ?, ?) OR ? = ?)))`,
			string(out.Status), nullInt(a.StatusCode), nullString(a.Error),
			nullTime(out.NextAttemptAt), nullTime(completed), a.RunID, a.Run,
			a.DeliveryID, a.Run, a.Run,
			string(notifier.DeliverySucceeded), string(notifier.DeliveryFailed),
			string(notifier.DeliveryCanceled), string(out.Status), string(notifier.DeliverySucceeded))
		return err
	})
}

// FinishDelivery marks a delivery failed or canceled by the workflow run
// runID, with the reason. A success within the same or a later run stays.
func (s *Store) FinishDelivery(ctx context.Context, id, runID string,
	status notifier.DeliveryStatus, reason string) error {
	now := formatTime(s.clock())
	// The run's number: that of its attempts, or the next one if it made none.
	_, err := s.db.ExecContext(ctx, `UPDATE deliveries SET status = ?, last_error = ?,
		next_attempt_at = NULL, completed_at = ?, updated_at = ?, run_id = ?,
		run = COALESCE((SELECT MAX(a.run) FROM attempts a WHERE a.delivery_id = ? AND a.run_id = ?), run)
		WHERE id = ? AND (status <> ? OR run < COALESCE(
			(SELECT MAX(a.run) FROM attempts a WHERE a.delivery_id = ? AND a.run_id = ?), 0))`,
		string(status), nullString(reason), now, now, runID, id, runID,
		id, string(notifier.DeliverySucceeded), id, runID)
	return err
}

const deliveryColumns = `id, event_id, event_type, webhook_id, status, attempts,
	last_status_code, last_error, next_attempt_at, created_at, updated_at, completed_at`

// Delivery returns one delivery.
func (s *Store) Delivery(ctx context.Context, id string) (*notifier.Delivery, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+deliveryColumns+` FROM deliveries WHERE id = ?`, id)
	d, err := scanDelivery(row)
	if isNoRows(err) {
		return nil, notFound("delivery", id)
	}
	return d, err
}

func scanDelivery(row scanner) (*notifier.Delivery, error) {
	var (
		d                    notifier.Delivery
		typ, status          string
		code                 sql.NullInt64
		lastErr              sql.NullString
		next, completed      sql.NullString
		createdAt, updatedAt string
	)
	err := row.Scan(&d.ID, &d.EventID, &typ, &d.WebhookID, &status, &d.Attempts, &code,
		&lastErr, &next, &createdAt, &updatedAt, &completed)
	if err != nil {
		return nil, err
	}
	d.EventType, d.Status = notifier.EventType(typ), notifier.DeliveryStatus(status)
	d.LastStatusCode, d.LastError = int(code.Int64), lastErr.String
	if d.CreatedAt, err = parseTime(createdAt); err != nil {
		return nil, err
	}
	if d.UpdatedAt, err = parseTime(updatedAt); err != nil {
		return nil, err
	}
	if d.NextAttemptAt, err = parseNullTime(next); err != nil {
		return nil, err
	}
	if d.CompletedAt, err = parseNullTime(completed); err != nil {
		return nil, err
	}
	return &d, nil
}

// DeliveryFilter selects deliveries of one webhook; zero fields select all.
type DeliveryFilter struct {
	WebhookID string
	Status    notifier.DeliveryStatus
	EventType notifier.EventType
	// Created from (inclusive) and to (exclusive).
	From, To time.Time
}

// DeliveryPage is one page of a delivery listing.
type DeliveryPage struct {
	Deliveries []*notifier.Delivery
	// NextCursor continues the listing; empty on the last page.
	NextCursor string
}

// Deliveries lists the deliveries f selects, newest first, limit at a time,
// after cursor.
func (s *Store) Deliveries(ctx context.Context, f DeliveryFilter, limit int,
	cursor string) (*DeliveryPage, error) {
	query := `SELECT ` + deliveryColumns + ` FROM deliveries WHERE webhook_id = ?`
	args := []any{f.WebhookID}
	if f.Status != "" {
		query += ` AND status = ?`
		args = append(args, string(f.Status))
	}
	if f.EventType != "" {
		query += ` AND event_type = ?`
		args = append(args, string(f.EventType))
	}
	if !f.From.IsZero() {
		query += ` AND created_at >= ?`
		args = append(args, formatTime(f.From))
	}
	if !f.To.IsZero() {
		query += ` AND created_at < ?`
		args = append(args, formatTime(f.To))
	}
	deliveries, next, err := listPage(ctx, s.db, query, args, cursor, limit, scanDelivery,
		func(d *notifier.Delivery) (time.Time, string) { return d.CreatedAt, d.ID })
	if err != nil {
		return nil, err
	}
	return &DeliveryPage{Deliveries: deliveries, NextCursor: next}, nil
}

// UnfinishedDeliveries returns the ids of a webhook's deliveries that are
// pending or retrying.
func (s *Store) UnfinishedDeliveries(ctx context.Context, webhookID string) ([]string, error) {
	return queryIDs(ctx, s.db, `SELECT id FROM deliveries
		WHERE webhook_id = ? AND status IN (?, ?) ORDER BY id`,
		webhookID, string(notifier.DeliveryPending), string(notifier.DeliveryRetrying))
}

// ReopenDelivery marks a failed or canceled delivery pending again, for a
// new run, and returns it as it was before. Any other delivery is a
// conflict: one that succeeded needs no retry, and one that is pending or
// retrying is still running, unless stranded says its workflow has ended
// without finishing it. Of two reopenings at once, one wins.
func (s *Store) ReopenDelivery(ctx context.Context, id string,
	stranded bool) (*notifier.Delivery, error) {
	before, err := s.Delivery(ctx, id)
	if err != nil {
		return nil, err
	}
	reopenable := before.Status == notifier.DeliveryFailed ||
		before.Status == notifier.DeliveryCanceled ||
		(stranded && !before.Status.Final())
	if !reopenable {
		return nil, notifier.Errorf(notifier.ECONFLICT,
			"delivery %s is %s; only a failed or canceled delivery can be retried", id, before.Status)
	}
	// Only if nothing changed it since it was read.
	res, err := s.db.ExecContext(ctx, `UPDATE deliveries SET status = ?, next_attempt_at = NULL,
		completed_at = NULL, run_id = '', updated_at = ?
		WHERE id = ? AND status = ? AND updated_at = ?`,
		string(notifier.DeliveryPending), formatTime(s.clock()), id, string(before.Status),
		formatTime(before.UpdatedAt))
	if err != nil {
		return nil, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, err
	} else if n == 0 {
		return nil, notifier.Errorf(notifier.ECONFLICT,
			"delivery %s changed meanwhile; read it again", id)
	}
	return before, nil
}

// RestoreDelivery puts back the status a ReopenDelivery changed, when the new
// run could not be started.
func (s *Store) RestoreDelivery(ctx context.Context, d *notifier.Delivery) error {
	_, err := s.db.ExecContext(ctx, `UPDATE deliveries SET status = ?, completed_at = ?,
		updated_at = ? WHERE id = ? AND status = ?`,
		string(d.Status), nullTime(d.CompletedAt), formatTime(s.clock()), d.ID,
		string(notifier.DeliveryPending))
	return err
}

// Attempts returns every attempt of a delivery, oldest first.
func (s *Store) Attempts(ctx context.Context, deliveryID string) ([]*notifier.Attempt, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT run_id, run, number, started_at, duration_ms,
		url, status_code, response_headers, response_body, error_class, error, request_body,
		retry_after_ms FROM attempts WHERE delivery_id = ? ORDER BY run, number`, deliveryID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*notifier.Attempt
	for rows.Next() {
		a := &notifier.Attempt{DeliveryID: deliveryID}
		var (
			started                      string
			ms                           int64
			code                         sql.NullInt64
			headers, body, class, errMsg sql.NullString
			sent                         sql.NullString
			retryMS                      sql.NullInt64
		)
		err := rows.Scan(&a.RunID, &a.Run, &a.Number, &started, &ms, &a.URL, &code, &headers,
			&body, &class, &errMsg, &sent, &retryMS)
		if err != nil {
			return nil, err
		}
		if a.StartedAt, err = parseTime(started); err != nil {
			return nil, err
		}
		a.Duration = time.Duration(ms) * time.Millisecond
		a.StatusCode, a.ResponseBody = int(code.Int64), body.String
		a.ErrorClass, a.Error = class.String, errMsg.String
		a.RequestBody, a.RetryAfter = sent.String, time.Duration(retryMS.Int64)*time.Millisecond
		if headers.Valid && headers.String != "null" {
			if err := json.Unmarshal([]byte(headers.String), &a.ResponseHeaders); err != nil {
				return nil, err
			}
		}
		out = append(out, a)
	}
	return out, rows.Err()
}
