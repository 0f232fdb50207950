package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/barfinex/notifier"
)

const webhookColumns = `id, name, url, secret, active, ping_ok, ping_status_code,
	ping_error, ping_duration_ms, pinged_at, created_at, updated_at, channel`

// CreateWebhook stores a new webhook; w.ID, CreatedAt and UpdatedAt are set.
func (s *Store) CreateWebhook(ctx context.Context, w *notifier.Webhook) error {
	now := s.clock()
	w.ID = notifier.NewWebhookID()
	w.CreatedAt, w.UpdatedAt = now, now
	sealed, err := s.keys.Seal(w.Secret, w.ID)
	if err != nil {
		return err
	}
	channel, err := s.sealChannel(w.Channel, w.ID)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx txConn) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO webhooks
			(id, name, url, secret, active, created_at, updated_at, channel)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			w.ID, w.Name, w.URL, sealed, boolInt(w.Active),
			formatTime(now), formatTime(now), channel)
		if err != nil {
			return err
		}
		return insertWebhookEvents(ctx, tx, w.ID, w.Events)
	})
}

func insertWebhookEvents(ctx context.Context, tx txConn, id string,
	events []notifier.EventType) error {
	for _, e := range events {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO webhook_events (webhook_id, event_type) VALUES (?, ?)`, id, string(e))
		if err != nil {
			return err
		}
	}
	return nil
}

// Webhook returns the webhook with the given id, secret included.
func (s *Store) Webhook(ctx context.Context, id string) (*notifier.Webhook, error) {
	return s.webhookByID(ctx, s.db, id)
}

func (s *Store) webhookByID(ctx context.Context, q queryer, id string) (*notifier.Webhook, error) {
	row := q.QueryRowContext(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE id = ?`, id)
	w, err := s.scanWebhook(row)
	if isNoRows(err) {
		return nil, notFound("webhook", id)
	} else if err != nil {
		return nil, err
	}
	if err := loadEvents(ctx, q, []*notifier.Webhook{w}); err != nil {
		return nil, err
	}
	return w, nil
}

// WebhookPage is one page of a webhook listing.
type WebhookPage struct {
	Webhooks []*notifier.Webhook
	// NextCursor continues the listing; empty on the last page.
	NextCursor string
}

// Webhooks lists webhooks, newest first, limit at a time, after cursor.
func (s *Store) Webhooks(ctx context.Context, limit int, cursor string) (*WebhookPage, error) {
	hooks, next, err := listPage(ctx, s.db, `SELECT `+webhookColumns+` FROM webhooks WHERE 1 = 1`,
		nil, cursor, limit, s.scanWebhook,
		func(w *notifier.Webhook) (time.Time, string) { return w.CreatedAt, w.ID })
	if err != nil {
		return nil, err
	}
	if err := loadEvents(ctx, s.db, hooks); err != nil {
		return nil, err
	}
	return &WebhookPage{Webhooks: hooks, NextCursor: next}, nil
}

// UpdateWebhook applies upd to the webhook with the given id and returns it
// as it now is. Only the fields upd sets are written, so two changes of
// different fields made at once both stand; of two changes of one field, the
// last written wins.
func (s *Store) UpdateWebhook(ctx context.Context, id string,
	upd *notifier.WebhookUpdate) (*notifier.Webhook, error) {
	sets, args := []string{"updated_at = ?"}, []any{formatTime(s.clock())}
	if upd.Name != nil {
		sets, args = append(sets, "name = ?"), append(args, *upd.Name)
	}
	if upd.URL != nil {
		// The last ping tested the old URL: reachability is unknown again.
		sets, args = append(sets, "url = ?", "ping_ok = NULL", "ping_status_code = NULL",
			"ping_error = NULL", "ping_duration_ms = NULL", "pinged_at = NULL"), append(args, *upd.URL)
	}
	if upd.Active != nil {
		sets, args = append(sets, "active = ?"), append(args, boolInt(*upd.Active))
	}
	if upd.Secret != nil {
		sealed, err := s.keys.Seal(*upd.Secret, id)
		if err != nil {
			return nil, err
		}
		sets, args = append(sets, "secret = ?"), append(args, sealed)
	}
	if upd.Channel != nil {
		channel, err := s.sealChannel(*upd.Channel, id)
		if err != nil {
			return nil, err
		}
		sets, args = append(sets, "channel = ?"), append(args, channel)
	}
	var w *notifier.Webhook
	err := s.inTx(ctx, func(tx txConn) error {
		res, err := tx.ExecContext(ctx, `UPDATE webhooks SET `+strings.Join(sets, ", ")+
			` WHERE id = ?`, append(args, id)...)
		if err := touchedOne(res, err, "webhook", id); err != nil {
			return err
		}
		if upd.Events != nil {
			if _, err := tx.ExecContext(ctx,
				`DELETE FROM webhook_events WHERE webhook_id = ?`, id); err != nil {
				return err
			}
			if err := insertWebhookEvents(ctx, tx, id, upd.Events); err != nil {
				return err
			}
		}
		w, err = s.webhookByID(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

// DeleteWebhook deletes a webhook and its secret. Its deliveries stay in the
// log.
func (s *Store) DeleteWebhook(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM webhooks WHERE id = ?`, id)
	return touchedOne(res, err, "webhook", id)
}

// The channel's settings may hold a routing key: they are sealed like the
// secret, bound to the webhook and to what they are.
func (s *Store) sealChannel(c notifier.Channel, id string) (string, error) {
	if c.Type == "" {
		c.Type = "generic"
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	return s.keys.Seal(string(raw), id+"/channel")
}

func (s *Store) openChannel(stored, id string) (notifier.Channel, error) {
	var c notifier.Channel
	raw, err := s.keys.Open(stored, id+"/channel")
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal([]byte(raw), &c)
}

// ResealSecrets seals every stored secret (and channel settings) not sealed
// with the current key, or not sealed at all, with it, and returns how many
// webhooks it changed. Run it after rotating the key, with the old key
// still given as a previous one.
func (s *Store) ResealSecrets(ctx context.Context) (int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, secret, channel FROM webhooks`)
	if err != nil {
		return 0, err
	}
	type row struct{ id, secret, channel string }
	var stale []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.secret, &r.channel); err != nil {
			rows.Close()
			return 0, err
		}
		if !s.keys.Current(r.secret) || !s.keys.Current(r.channel) {
			stale = append(stale, r)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, r := range stale {
		secret, err := s.reseal(r.secret, r.id)
		if err != nil {
			return n, fmt.Errorf("webhook %s: %w", r.id, err)
		}
		channel, err := s.reseal(r.channel, r.id+"/channel")
		if err != nil {
			return n, fmt.Errorf("webhook %s: %w", r.id, err)
		}
		res, err := s.db.ExecContext(ctx, `UPDATE webhooks SET secret = ?, channel = ?
			WHERE id = ? AND secret = ? AND channel = ?`, secret, channel, r.id, r.secret, r.channel)
		if err != nil {
			return n, err
		}
		if k, _ := res.RowsAffected(); k == 1 {
			n++
		}
	}
	return n, nil
}

func (s *Store) reseal(stored, context string) (string, error) {
	plain, err := s.keys.Open(stored, context)
	if err != nil {
		return "", err
	}
	return s.keys.Seal(plain, context)
}

// SetPingResult records the result of a test ping on the webhook.
func (s *Store) SetPingResult(ctx context.Context, id string, p *notifier.PingResult) error {
	res, err := s.db.ExecContext(ctx, `UPDATE webhooks SET ping_ok = ?, ping_status_code = ?,
		ping_error = ?, ping_duration_ms = ?, pinged_at = ? WHERE id = ?`,
		boolInt(p.OK), nullInt(p.StatusCode), nullString(p.Error),
		p.Duration.Milliseconds(), formatTime(p.At), id)
	return touchedOne(res, err, "webhook", id)
}

type scanner interface{ Scan(dest ...any) error }

func (s *Store) scanWebhook(row scanner) (*notifier.Webhook, error) {
	var (
		w                  notifier.Webhook
		active             int
		pingOK, pingStatus sql.NullInt64
		pingError          sql.NullString
		pingMS             sql.NullInt64
		pingedAt           sql.NullString
		created, updated   string
		channel            string
	)
	err := row.Scan(&w.ID, &w.Name, &w.URL, &w.Secret, &active, &pingOK, &pingStatus,
		&pingError, &pingMS, &pingedAt, &created, &updated, &channel)
	if err != nil {
		return nil, err
	}
	if w.Channel, err = s.openChannel(channel, w.ID); err != nil {
		return nil, fmt.Errorf("webhook %s: %w", w.ID, err)
	}
	w.Active = active != 0
	if w.Secret, err = s.keys.Open(w.Secret, w.ID); err != nil {
		return nil, fmt.Errorf("webhook %s: %w", w.ID, err)
	}
	if w.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if w.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	if pingedAt.Valid {
		at, err := parseTime(pingedAt.String)
		if err != nil {
			return nil, err
		}
		w.LastPing = &notifier.PingResult{
			OK:         pingOK.Int64 != 0,
			StatusCode: int(pingStatus.Int64),
			Error:      pingError.String,
			Duration:   time.Duration(pingMS.Int64) * time.Millisecond,
			At:         at,
		}
	}
	return &w, nil
}

// loadEvents fills in the subscribed event types of each webhook.
func loadEvents(ctx context.Context, q queryer, hooks []*notifier.Webhook) error {
	if len(hooks) == 0 {
		return nil
	}
	byID := make(map[string]*notifier.Webhook, len(hooks))
	args := make([]any, len(hooks))
	for i, w := range hooks {
		byID[w.ID] = w
		w.Events = []notifier.EventType{}
		args[i] = w.ID
	}
	rows, err := q.QueryContext(ctx, `SELECT webhook_id, event_type FROM webhook_events
		WHERE webhook_id IN (`+placeholders(len(hooks))+`) ORDER BY webhook_id, event_type`, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id, typ string
		if err := rows.Scan(&id, &typ); err != nil {
			return err
		}
		byID[id].Events = append(byID[id].Events, notifier.EventType(typ))
	}
	return rows.Err()
}

// A cursor is an opaque token naming the last item of the page before.
func encodeCursor(parts ...string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strings.Join(parts, "|")))
}

func decodeCursor(cursor string) (string, string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err == nil {
		created, id, ok := strings.Cut(string(raw), "|")
		if _, terr := parseTime(created); ok && terr == nil && id != "" {
			return created, id, nil
		}
	}
	return "", "", notifier.Invalid("cursor", "is not a cursor this service issued")
}
