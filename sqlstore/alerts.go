package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/barfinex/notifier"
)

// The store keeps alert rules and the inputs they watch: the latest signal
// of each strategy, the portfolio's equity and peak, and the health of
// connected services. A rule's live state belongs to its workflow; the
// store keeps what the workflow recorded at its latest transition.

const ruleColumns = `id, name, type, threshold, strategy, service, active, resolve_after_ms,
	status, status_since, condition_since, current_value, episode, created_at, updated_at`

// StoredRule is an alert rule with the state its workflow last recorded.
type StoredRule struct {
	notifier.AlertRule
	State notifier.AlertState
	// ActiveWebhooks counts the rule's webhooks that are active.
	ActiveWebhooks int
}

// RulePage is one page of a rule listing.
type RulePage struct {
	Rules      []*StoredRule
	NextCursor string
}

// CreateAlertRule stores a new, validated rule; r.ID, CreatedAt and
// UpdatedAt are set. Every webhook it names must exist.
func (s *Store) CreateAlertRule(ctx context.Context, r *notifier.AlertRule) error {
	now := s.clock()
	r.ID = notifier.NewRuleID()
	r.CreatedAt, r.UpdatedAt = now, now
	return s.inTx(ctx, func(tx txConn) error {
		if r.Type == notifier.RuleServiceDown {
			if err := serviceExists(ctx, tx, r.Service); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO alert_rules
			(id, name, type, threshold, strategy, service, active, resolve_after_ms,
			 status, status_since, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, r.Name, string(r.Type), r.Threshold, r.Strategy, nullString(r.Service), boolInt(r.Active),
			r.ResolveAfter.Milliseconds(), string(notifier.AlertOK), formatTime(now),
			formatTime(now), formatTime(now))
		if isForeignKeyViolation(err) {
			return serviceGone(r.Service)
		} else if err != nil {
			return err
		}
		return setRuleWebhooks(ctx, tx, r.ID, r.WebhookIDs, true)
	})
}

func serviceGone(name string) error {
	return notifier.Invalid("service", "no service %q is registered; "+
		"register it with POST /v1/services first", name)
}

// SaveAlertRule writes a changed rule's settings. Webhooks deleted since the
// change was checked are left out rather than failing the save.
func (s *Store) SaveAlertRule(ctx context.Context, r *notifier.AlertRule) error {
	r.UpdatedAt = s.clock()
	return s.inTx(ctx, func(tx txConn) error {
		res, err := tx.ExecContext(ctx, `UPDATE alert_rules SET name = ?, threshold = ?,
			strategy = ?, service = ?, active = ?, resolve_after_ms = ?, updated_at = ?
			WHERE id = ?`,
			r.Name, r.Threshold, r.Strategy, nullString(r.Service), boolInt(r.Active),
			r.ResolveAfter.Milliseconds(), formatTime(r.UpdatedAt), r.ID)
		if isForeignKeyViolation(err) {
			// The service was deleted since the change was checked.
			return serviceGone(r.Service)
		}
		if err := touchedOne(res, err, "alert rule", r.ID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM alert_rule_webhooks WHERE rule_id = ?`, r.ID); err != nil {
			return err
		}
		return setRuleWebhooks(ctx, tx, r.ID, r.WebhookIDs, false)
	})
}

// CheckRuleTargets reports, as a field error, a webhook or service a rule
// names that does not exist.
func (s *Store) CheckRuleTargets(ctx context.Context, r *notifier.AlertRule) error {
	if r.Type == notifier.RuleServiceDown {
		if err := serviceExists(ctx, s.db, r.Service); err != nil {
			return err
		}
	}
	for _, id := range r.WebhookIDs {
		var n int
		err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM webhooks WHERE id = ?`, id).Scan(&n)
		if err != nil {
			return err
		}
		if n == 0 {
			return notifier.Invalid("webhook_ids", "no webhook %q", id)
		}
	}
	return nil
}

func serviceExists(ctx context.Context, q queryer, name string) error {
	var n int
	err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM services WHERE name = ?`, name).Scan(&n)
	if err != nil {
		return err
	}
	if n == 0 {
		return serviceGone(name)
	}
	return nil
}

// setRuleWebhooks links a rule to its webhooks. With strict, a webhook that
// does not exist is a field error; without, it is skipped.
func setRuleWebhooks(ctx context.Context, tx txConn, ruleID string, ids []string,
	strict bool) error {
	for _, id := range ids {
		res, err := tx.ExecContext(ctx, `INSERT INTO alert_rule_webhooks (rule_id, webhook_id)
			SELECT ?, id FROM webhooks WHERE id = ?`, ruleID, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 && strict {
			return notifier.Invalid("webhook_ids", "no webhook %q", id)
		}
	}
	return nil
}

// AlertRule returns a rule with its recorded state.
func (s *Store) AlertRule(ctx context.Context, id string) (*StoredRule, error) {
	r, err := scanRule(s.db.QueryRowContext(ctx,
		`SELECT `+ruleColumns+` FROM alert_rules WHERE id = ?`, id))
	if isNoRows(err) {
		return nil, notFound("alert rule", id)
	} else if err != nil {
		return nil, err
	}
	if err := s.loadRuleWebhooks(ctx, []*StoredRule{r}); err != nil {
		return nil, err
	}
	return r, nil
}

// AlertRules lists rules, newest first, limit at a time, after cursor.
func (s *Store) AlertRules(ctx context.Context, limit int, cursor string) (*RulePage, error) {
	rules, next, err := listPage(ctx, s.db, `SELECT `+ruleColumns+` FROM alert_rules WHERE 1 = 1`,
		nil, cursor, limit, scanRule,
		func(r *StoredRule) (time.Time, string) { return r.CreatedAt, r.ID })
	if err != nil {
		return nil, err
	}
	if err := s.loadRuleWebhooks(ctx, rules); err != nil {
		return nil, err
	}
	return &RulePage{Rules: rules, NextCursor: next}, nil
}

// AllAlertRules returns every rule, for starting their workflows.
func (s *Store) AllAlertRules(ctx context.Context) ([]*StoredRule, error) {
	var all []*StoredRule
	cursor := ""
	for {
		page, err := s.AlertRules(ctx, 500, cursor)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Rules...)
		if cursor = page.NextCursor; cursor == "" {
			return all, nil
		}
	}
}

func scanRule(row scanner) (*StoredRule, error) {
	var (
		r                     StoredRule
		typ, status           string
		active                int
		resolveAfter          int64
		since, condSince      sql.NullString
		service               sql.NullString
		createdAt, updatedAtS string
	)
	err := row.Scan(&r.ID, &r.Name, &typ, &r.Threshold, &r.Strategy, &service, &active,
		&resolveAfter, &status, &since, &condSince, &r.State.CurrentValue, &r.State.Episode,
		&createdAt, &updatedAtS)
	if err != nil {
		return nil, err
	}
	r.Type, r.Active, r.Service = notifier.RuleType(typ), active == 1, service.String
	r.ResolveAfter = time.Duration(resolveAfter) * time.Millisecond
	r.State.Status = notifier.AlertStatus(status)
	if t, err := parseNullTime(since); err != nil {
		return nil, err
	} else if t != nil {
		r.State.Since = *t
	}
	if t, err := parseNullTime(condSince); err != nil {
		return nil, err
	} else if t != nil {
		r.State.ConditionSince = *t
	}
	if r.CreatedAt, err = parseTime(createdAt); err != nil {
		return nil, err
	}
	if r.UpdatedAt, err = parseTime(updatedAtS); err != nil {
		return nil, err
	}
	return &r, nil
}

func (s *Store) loadRuleWebhooks(ctx context.Context, rules []*StoredRule) error {
	for _, r := range rules {
		rows, err := s.db.QueryContext(ctx, `SELECT w.id, w.active FROM alert_rule_webhooks rw
			JOIN webhooks w ON w.id = rw.webhook_id WHERE rw.rule_id = ? ORDER BY w.id`, r.ID)
		if err != nil {
			return err
		}
		r.WebhookIDs, r.ActiveWebhooks = []string{}, 0
		for rows.Next() {
			var id string
			var active int
			if err := rows.Scan(&id, &active); err != nil {
				rows.Close()
				return err
			}
			r.WebhookIDs = append(r.WebhookIDs, id)
			r.ActiveWebhooks += active
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
}

// DeleteAlertRule removes a rule.
func (s *Store) DeleteAlertRule(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM alert_rules WHERE id = ?`, id)
	return touchedOne(res, err, "alert rule", id)
}

// RulesWatching returns the ids of the rules of a type that watch a target:
// a strategy for no_signals, a service for service_down, anything for
// drawdown_threshold.
func (s *Store) RulesWatching(ctx context.Context, typ notifier.RuleType,
	target string) ([]string, error) {
	switch typ {
	case notifier.RuleNoSignals:
		return queryIDs(ctx, s.db, `SELECT id FROM alert_rules
			WHERE type = ? AND strategy = ? ORDER BY id`, string(typ), target)
	case notifier.RuleServiceDown:
		return queryIDs(ctx, s.db, `SELECT id FROM alert_rules
			WHERE type = ? AND service = ? ORDER BY id`, string(typ), target)
	}
	return queryIDs(ctx, s.db, `SELECT id FROM alert_rules WHERE type = ? ORDER BY id`, string(typ))
}

// Alert is an alert event a rule's transition sends, with the state the
// rule enters.
type Alert struct {
	Event *notifier.Event
	Body  []byte
	State notifier.AlertState
}

// RecordAlert stores an alert event for the rule's webhooks and the state
// the rule enters, together: either both are kept or neither. A repeat of
// an alert already stored changes nothing and returns created false. The
// rule's row may be gone (an alert resolved because its rule was deleted).
func (s *Store) RecordAlert(ctx context.Context, ruleID string, a *Alert,
	webhookIDs []string) (created bool, err error) {
	targets, err := json.Marshal(webhookIDs)
	if err != nil {
		return false, err
	}
	err = s.inTx(ctx, func(tx txConn) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO events
			(id, type, timestamp, body, created_at, targets)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			a.Event.ID, string(a.Event.Type), formatTime(a.Event.Timestamp), string(a.Body),
			formatTime(s.clock()), string(targets))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		created = true
		_, err = tx.ExecContext(ctx, `UPDATE alert_rules SET status = ?, status_since = ?,
			condition_since = ?, current_value = ?, episode = ? WHERE id = ? AND episode <= ?`,
			string(a.State.Status), formatTime(a.State.Since), formatTime(a.State.ConditionSince),
			a.State.CurrentValue, a.State.Episode, ruleID, a.State.Episode)
		return err
	})
	return created, err
}

func recordSignal(ctx context.Context, tx txConn, strategy, eventID string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO strategy_signals (strategy, last_signal_at, event_id)
		VALUES (?, ?, ?) ON CONFLICT (strategy) DO UPDATE
		SET last_signal_at = excluded.last_signal_at, event_id = excluded.event_id
		WHERE strategy_signals.last_signal_at < excluded.last_signal_at`,
		strategy, formatTime(at), eventID)
	return err
}

// LastSignal returns when a strategy last emitted a signal, nil if never.
func (s *Store) LastSignal(ctx context.Context, strategy string) (*time.Time, error) {
	var at string
	err := s.db.QueryRowContext(ctx,
		`SELECT last_signal_at FROM strategy_signals WHERE strategy = ?`, strategy).Scan(&at)
	if isNoRows(err) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	t, err := parseTime(at)
	return &t, err
}

// RecordSnapshot records the portfolio's equity at a time and returns the
// portfolio as it now is. The peak only rises, unless resetPeak makes this
// equity the peak; a snapshot older than the latest one can raise the peak
// but does not replace the current equity.
func (s *Store) RecordSnapshot(ctx context.Context, equity float64, at time.Time,
	resetPeak bool) (*notifier.Portfolio, error) {
	now := formatTime(s.clock())
	var p *notifier.Portfolio
	err := s.inTx(ctx, func(tx txConn) error {
		if resetPeak {
			_, err := tx.ExecContext(ctx, `INSERT INTO portfolio (id, equity, peak, at, updated_at)
				VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET equity = excluded.equity,
				peak = excluded.peak, at = excluded.at, updated_at = excluded.updated_at`,
				equity, equity, formatTime(at), now)
			if err != nil {
				return err
			}
			p, err = portfolio(ctx, tx)
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO portfolio (id, equity, peak, at, updated_at)
			VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET
			equity = CASE WHEN portfolio.at <= excluded.at THEN excluded.equity ELSE portfolio.equity END,
			at = CASE WHEN portfolio.at <= excluded.at THEN excluded.at ELSE portfolio.at END,
			peak = CASE WHEN excluded.peak > portfolio.peak THEN excluded.peak ELSE portfolio.peak END,
			updated_at = excluded.updated_at`,
			equity, equity, formatTime(at), now)
		if err != nil {
			return err
		}
		p, err = portfolio(ctx, tx)
		return err
	})
	return p, err
}

// Portfolio returns the portfolio, or a not-found error before the first
// snapshot.
func (s *Store) Portfolio(ctx context.Context) (*notifier.Portfolio, error) {
	return portfolio(ctx, s.db)
}

func portfolio(ctx context.Context, q queryer) (*notifier.Portfolio, error) {
	var p notifier.Portfolio
	var at string
	err := q.QueryRowContext(ctx, `SELECT equity, peak, at FROM portfolio WHERE id = 1`).
		Scan(&p.Equity, &p.Peak, &at)
	if isNoRows(err) {
		return nil, notifier.Errorf(notifier.ENOTFOUND,
			"no portfolio snapshot yet; POST /v1/portfolio/snapshots records one")
	} else if err != nil {
		return nil, err
	}
	p.At, err = parseTime(at)
	return &p, err
}

const serviceColumns = `name, health_url, check_interval_ms, status, status_since,
	last_checked_at, last_error, created_at`

// CreateService registers a service. A service of the same name is a
// conflict.
func (s *Store) CreateService(ctx context.Context, svc *notifier.Service) error {
	svc.CreatedAt = s.clock()
	svc.Health = notifier.ServiceHealth{Status: notifier.ServiceUnknown}
	res, err := s.db.ExecContext(ctx, `INSERT INTO services
		(name, health_url, check_interval_ms, status, created_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (name) DO NOTHING`,
		svc.Name, svc.HealthURL, svc.CheckInterval.Milliseconds(),
		string(notifier.ServiceUnknown), formatTime(svc.CreatedAt))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return notifier.Errorf(notifier.ECONFLICT, "a service named %q is already registered", svc.Name)
	}
	return nil
}

// Service returns a registered service with its health.
func (s *Store) Service(ctx context.Context, name string) (*notifier.Service, error) {
	svc, err := scanService(s.db.QueryRowContext(ctx,
		`SELECT `+serviceColumns+` FROM services WHERE name = ?`, name))
	if isNoRows(err) {
		return nil, notFound("service", name)
	}
	return svc, err
}

// Services lists services by name, limit at a time, after the name cursor.
func (s *Store) Services(ctx context.Context, limit int,
	after string) ([]*notifier.Service, string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+serviceColumns+` FROM services
		WHERE name > ? ORDER BY name LIMIT ?`, after, limit+1)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var svcs []*notifier.Service
	for rows.Next() {
		svc, err := scanService(rows)
		if err != nil {
			return nil, "", err
		}
		svcs = append(svcs, svc)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	if len(svcs) <= limit {
		return svcs, "", nil
	}
	svcs = svcs[:limit]
	return svcs, svcs[limit-1].Name, nil
}

// scanService reads a row of serviceColumns, and of extra columns after
// them into extra.
func scanService(row scanner, extra ...any) (*notifier.Service, error) {
	var (
		svc                   notifier.Service
		interval              int64
		status, created       string
		since, checked, lastE sql.NullString
	)
	dest := append([]any{&svc.Name, &svc.HealthURL, &interval, &status, &since, &checked, &lastE,
		&created}, extra...)
	err := row.Scan(dest...)
	if err != nil {
		return nil, err
	}
	svc.CheckInterval = time.Duration(interval) * time.Millisecond
	svc.Health.Status, svc.Health.LastError = notifier.ServiceStatus(status), lastE.String
	if svc.Health.Since, err = parseNullTime(since); err != nil {
		return nil, err
	}
	if svc.Health.LastChecked, err = parseNullTime(checked); err != nil {
		return nil, err
	}
	if svc.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	return &svc, nil
}

// DeleteService removes a service. A service that rules watch stays: a
// conflict that names them.
func (s *Store) DeleteService(ctx context.Context, name string) error {
	return s.inTx(ctx, func(tx txConn) error {
		rules, err := queryIDs(ctx, tx, `SELECT id FROM alert_rules
			WHERE type = ? AND service = ? ORDER BY id`, string(notifier.RuleServiceDown), name)
		if err != nil {
			return err
		}
		if len(rules) > 0 {
			return notifier.Errorf(notifier.ECONFLICT,
				"service %q is watched by alert rules %v; delete them or point them elsewhere first",
				name, rules)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM services WHERE name = ?`, name)
		if isForeignKeyViolation(err) {
			// A rule began to watch it since the check above.
			return notifier.Errorf(notifier.ECONFLICT,
				"service %q is watched by an alert rule; delete it or point it elsewhere first", name)
		}
		return touchedOne(res, err, "service", name)
	})
}

// Probe is the outcome of one health probe.
type Probe struct {
	Healthy bool
	Error   string
	At      time.Time
}

// ProbeRecord is a service's health after a probe, with what its monitor
// last announced.
type ProbeRecord struct {
	Health notifier.ServiceHealth
	// Announced is the status the monitor last announced, and since when;
	// a Health.Status that differs is yet to be announced.
	Announced      notifier.ServiceStatus
	AnnouncedSince *time.Time
}

// RecordProbe records a probe of a service. The status changes only when
// the probe disagrees with it, and the first probe of a new service sets
// it.
func (s *Store) RecordProbe(ctx context.Context, name string, p Probe) (*ProbeRecord, error) {
	status := notifier.ServiceDown
	if p.Healthy {
		status = notifier.ServiceUp
	}
	var rec ProbeRecord
	err := s.inTx(ctx, func(tx txConn) error {
		var announced string
		var announcedSince sql.NullString
		svc, err := scanService(tx.QueryRowContext(ctx, `SELECT `+serviceColumns+`,
			announced_status, announced_since FROM services WHERE name = ?`, name),
			&announced, &announcedSince)
		if isNoRows(err) {
			return notFound("service", name)
		} else if err != nil {
			return err
		}
		rec.Announced = notifier.ServiceStatus(announced)
		if rec.AnnouncedSince, err = parseNullTime(announcedSince); err != nil {
			return err
		}
		rec.Health = svc.Health
		rec.Health.LastChecked, rec.Health.LastError = &p.At, p.Error
		if svc.Health.Status != status {
			rec.Health.Status, rec.Health.Since = status, &p.At
		}
		_, err = tx.ExecContext(ctx, `UPDATE services SET status = ?, status_since = ?,
			last_checked_at = ?, last_error = ? WHERE name = ?`,
			string(rec.Health.Status), nullTime(rec.Health.Since), formatTime(p.At),
			nullString(p.Error), name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("record probe of %s: %w", name, err)
	}
	return &rec, nil
}

// MarkAnnounced records that a service's status, entered at since, was
// announced.
func (s *Store) MarkAnnounced(ctx context.Context, name string, status notifier.ServiceStatus,
	since *time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE services SET announced_status = ?, announced_since = ?
		WHERE name = ?`, string(status), nullTime(since), name)
	return touchedOne(res, err, "service", name)
}
