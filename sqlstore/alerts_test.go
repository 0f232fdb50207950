package sqlstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/sqlstore"
)

func newHook(t *testing.T, s *sqlstore.Store, active bool) string {
	w := &notifier.Webhook{Name: "ops", URL: "https://hooks.example.com/x", Active: active,
		Events: []notifier.EventType{notifier.EventOrderFilled}}
	require.NoError(t, s.CreateWebhook(context.Background(), w))
	return w.ID
}

func TestAlertRules(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		s := b.open(t)
		on, off := newHook(t, s, true), newHook(t, s, false)

		missing := &notifier.AlertRule{Name: "x", Type: notifier.RuleDrawdown, Threshold: 5, Active: true,
			WebhookIDs: []string{on, "wh_aaaaaaaaaaaaaaaaaaaaaaaaaa"}}
		err := s.CreateAlertRule(ctx, missing)
		require.Equal(t, "webhook_ids", errorField(err), "%v", err)
		page, err := s.AlertRules(ctx, 10, "")
		require.NoError(t, err)
		require.Empty(t, page.Rules, "a refused rule leaves nothing behind")

		noService := &notifier.AlertRule{Name: "x", Type: notifier.RuleServiceDown, Service: "ghost",
			Threshold: 5, Active: true, WebhookIDs: []string{on}}
		require.Equal(t, "service", errorField(s.CreateAlertRule(ctx, noService)))

		r := &notifier.AlertRule{Name: "quiet", Type: notifier.RuleNoSignals, Strategy: "grid",
			Threshold: 5, Active: true, WebhookIDs: []string{on, off}}
		require.NoError(t, s.CreateAlertRule(ctx, r))
		got, err := s.AlertRule(ctx, r.ID)
		require.NoError(t, err)
		require.ElementsMatch(t, []string{on, off}, got.WebhookIDs)
		require.Equal(t, 1, got.ActiveWebhooks)
		require.Equal(t, notifier.AlertOK, got.State.Status)

		ids, err := s.RulesWatching(ctx, notifier.RuleNoSignals, "grid")
		require.NoError(t, err)
		require.Equal(t, []string{r.ID}, ids)
		ids, err = s.RulesWatching(ctx, notifier.RuleNoSignals, "other")
		require.NoError(t, err)
		require.Empty(t, ids)

		// An alert and the state it brings are written together, once.
		ev, err := notifier.NewEvent(r.ID+".1.triggered", notifier.EventAlertTriggered, nil,
			json.RawMessage(`{"rule":"no_signals","threshold":5,"current_value":5,"message":"m"}`), time.Now())
		require.NoError(t, err)
		body, err := ev.Envelope()
		require.NoError(t, err)
		since := time.Date(2026, 3, 27, 12, 0, 0, 0, time.UTC)
		alert := &sqlstore.Alert{Event: ev, Body: body, State: notifier.AlertState{
			Status: notifier.AlertFiring, Since: since, CurrentValue: 5.2, Episode: 1}}
		created, err := s.RecordAlert(ctx, r.ID, alert, []string{on, off})
		require.NoError(t, err)
		require.True(t, created)
		created, err = s.RecordAlert(ctx, r.ID, alert, []string{on, off})
		require.NoError(t, err)
		require.False(t, created, "a repeat stores nothing")
		got, err = s.AlertRule(ctx, r.ID)
		require.NoError(t, err)
		require.Equal(t, notifier.AlertState{Status: notifier.AlertFiring, Since: since,
			CurrentValue: 5.2, Episode: 1}, got.State)

		// The alert goes to the rule's active webhooks, subscribed or not.
		targets, err := s.FanOut(ctx, ev.ID, "", 10)
		require.NoError(t, err)
		require.Len(t, targets, 1)
		require.Equal(t, on, targets[0].WebhookID)

		r.Threshold, r.WebhookIDs = 9, []string{off}
		require.NoError(t, s.SaveAlertRule(ctx, r))
		got, err = s.AlertRule(ctx, r.ID)
		require.NoError(t, err)
		require.Equal(t, 9.0, got.Threshold)
		require.Equal(t, []string{off}, got.WebhookIDs)
		require.Equal(t, 0, got.ActiveWebhooks)

		// Deleting a webhook takes it out of its rules.
		require.NoError(t, s.DeleteWebhook(ctx, off))
		got, err = s.AlertRule(ctx, r.ID)
		require.NoError(t, err)
		require.Empty(t, got.WebhookIDs)

		require.NoError(t, s.DeleteAlertRule(ctx, r.ID))
		require.Equal(t, notifier.ENOTFOUND, notifier.ErrorCode(s.DeleteAlertRule(ctx, r.ID)))
	})
}

func TestSignalsPortfolioServices(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		s := b.open(t)

		at, err := s.LastSignal(ctx, "grid")
		require.NoError(t, err)
		require.Nil(t, at)
		ev, err := notifier.NewEvent("", notifier.EventSignalEmitted, nil,
			json.RawMessage(`{"strategy":"grid","symbol":"BTCUSDT","direction":"LONG"}`), time.Now())
		require.NoError(t, err)
		body, err := ev.Envelope()
		require.NoError(t, err)
		stored, _, err := s.CreateEvent(ctx, ev, body)
		require.NoError(t, err)
		at, err = s.LastSignal(ctx, "grid")
		require.NoError(t, err)
		require.Equal(t, stored.CreatedAt, *at, "the time the signal was received")

		_, err = s.Portfolio(ctx)
		require.Equal(t, notifier.ENOTFOUND, notifier.ErrorCode(err))
		t0 := time.Date(2026, 3, 27, 12, 0, 0, 0, time.UTC)
		for i, equity := range []float64{1000, 1250.5, 1100} {
			_, err := s.RecordSnapshot(ctx, equity, t0.Add(time.Duration(i)*time.Minute), false)
			require.NoError(t, err)
		}
		p, err := s.RecordSnapshot(ctx, 2000, t0.Add(-time.Hour), false)
		require.NoError(t, err)
		require.Equal(t, notifier.Portfolio{Equity: 1100, Peak: 2000, At: t0.Add(2 * time.Minute)}, *p,
			"an older snapshot raises the peak, not the equity")
		require.InDelta(t, 45, p.Drawdown(), 1e-9)
		p, err = s.RecordSnapshot(ctx, 1050, t0.Add(3*time.Minute), true)
		require.NoError(t, err)
		require.Equal(t, notifier.Portfolio{Equity: 1050, Peak: 1050, At: t0.Add(3 * time.Minute)}, *p,
			"a reset makes the equity the peak")

		svc := &notifier.Service{Name: "inspector", HealthURL: "http://10.0.0.5/health",
			CheckInterval: 10 * time.Second}
		require.NoError(t, s.CreateService(ctx, svc))
		require.Equal(t, notifier.ECONFLICT, notifier.ErrorCode(s.CreateService(ctx, svc)))
		rec, err := s.RecordProbe(ctx, "inspector", sqlstore.Probe{At: t0, Error: "answered 502"})
		require.NoError(t, err)
		require.Equal(t, notifier.ServiceDown, rec.Health.Status)
		require.Equal(t, t0, *rec.Health.Since)
		require.Equal(t, notifier.ServiceUnknown, rec.Announced, "not announced yet")
		require.NoError(t, s.MarkAnnounced(ctx, "inspector", notifier.ServiceDown, rec.Health.Since))
		rec, err = s.RecordProbe(ctx, "inspector", sqlstore.Probe{At: t0.Add(time.Minute), Error: "x"})
		require.NoError(t, err)
		require.Equal(t, t0, *rec.Health.Since, "still down since the first failure")
		require.Equal(t, notifier.ServiceDown, rec.Announced)
		require.Equal(t, t0, *rec.AnnouncedSince)
		rec, err = s.RecordProbe(ctx, "inspector", sqlstore.Probe{At: t0.Add(2 * time.Minute), Healthy: true})
		require.NoError(t, err)
		require.Equal(t, notifier.ServiceUp, rec.Health.Status)

		rule := &notifier.AlertRule{Name: "down", Type: notifier.RuleServiceDown, Service: "inspector",
			Threshold: 5, Active: true, WebhookIDs: []string{newHook(t, s, true)}}
		require.NoError(t, s.CreateAlertRule(ctx, rule))
		require.Equal(t, notifier.ECONFLICT, notifier.ErrorCode(s.DeleteService(ctx, "inspector")),
			"a watched service stays")
		// A rule moved to a service deleted since the move was checked.
		require.NoError(t, s.CreateService(ctx, &notifier.Service{Name: "gone",
			HealthURL: "http://10.0.0.6/health", CheckInterval: time.Second}))
		require.NoError(t, s.DeleteService(ctx, "gone"))
		moved := *rule
		moved.Service = "gone"
		require.Equal(t, "service", errorField(s.SaveAlertRule(ctx, &moved)))
		require.NoError(t, s.DeleteAlertRule(ctx, rule.ID))
		require.NoError(t, s.DeleteService(ctx, "inspector"))
		_, err = s.RecordProbe(ctx, "inspector", sqlstore.Probe{At: t0})
		require.Equal(t, notifier.ENOTFOUND, notifier.ErrorCode(err))
	})
}

func errorField(err error) string {
	var e *notifier.Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}
