package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/metrics"
	"github.com/barfinex/notifier/sqlstore"
)

// Application error types of the alerting activities.
const (
	// ErrServiceGone: the monitored service was deleted; its monitor ends.
	ErrServiceGone = "ServiceGone"
	// ErrInvalidRule: a rule's change cannot be saved as it is; the error's
	// detail names the field at fault.
	ErrInvalidRule = "InvalidRule"
)

// RuleInputs is what a rule watches, as the store has it.
type RuleInputs struct {
	// LastSignalAt is when the rule's strategy last emitted a signal.
	LastSignalAt *time.Time
	// Portfolio is nil before the first snapshot.
	Portfolio *notifier.Portfolio
	// Health is the rule's service's health.
	Health notifier.ServiceHealth
	// Recorded is the state the rule's workflow recorded at its latest
	// transition; nil when the rule is gone.
	Recorded *notifier.AlertState
}

// LoadRuleInputs reads from the store what a rule watches and the state it
// recorded last.
func (a *Activities) LoadRuleInputs(ctx context.Context,
	rule notifier.AlertRule) (*RuleInputs, error) {
	var in RuleInputs
	switch rule.Type {
	case notifier.RuleNoSignals:
		at, err := a.Store.LastSignal(ctx, rule.Strategy)
		if err != nil {
			return nil, err
		}
		in.LastSignalAt = at
	case notifier.RuleDrawdown:
		p, err := a.Store.Portfolio(ctx)
		if err != nil && notifier.ErrorCode(err) != notifier.ENOTFOUND {
			return nil, err
		}
		in.Portfolio = p
	case notifier.RuleServiceDown:
		svc, err := a.Store.Service(ctx, rule.Service)
		switch {
		case notifier.ErrorCode(err) == notifier.ENOTFOUND:
			in.Health = notifier.ServiceHealth{Status: notifier.ServiceUnknown}
		case err != nil:
			return nil, err
		default:
			in.Health = svc.Health
		}
	}
	stored, err := a.Store.AlertRule(ctx, rule.ID)
	switch {
	case notifier.ErrorCode(err) == notifier.ENOTFOUND:
	case err != nil:
		return nil, err
	default:
		in.Recorded = &stored.State
	}
	return &in, nil
}

// AlertData is the data of an alert.triggered or alert.resolved event.
type AlertData struct {
	Rule         notifier.RuleType `json:"rule"`
	RuleID       string            `json:"rule_id"`
	RuleName     string            `json:"rule_name"`
	Threshold    float64           `json:"threshold"`
	CurrentValue float64           `json:"current_value"`
	Message      string            `json:"message"`
	Strategy     string            `json:"strategy,omitempty"`
	Service      string            `json:"service,omitempty"`
	// Since is when the condition began to hold, in the envelope's
	// timestamp layout.
	Since string `json:"since"`
	// Episode numbers the rule's firings, from 1: a triggered alert and its
	// resolution share it.
	Episode int `json:"episode"`
}

// RaiseAlertInput is an alert a rule's transition sends, and the state the
// rule enters with it.
type RaiseAlertInput struct {
	EventID    string
	Type       notifier.EventType
	Timestamp  time.Time
	Data       AlertData
	WebhookIDs []string
	State      notifier.AlertState
}

// RaiseAlert stores an alert event for the rule's webhooks together with the
// rule's new state. It reports whether the event is new: a repeat (the
// activity retried after its write) stores nothing twice.
func (a *Activities) RaiseAlert(ctx context.Context, in RaiseAlertInput) (bool, error) {
	data, err := json.Marshal(in.Data)
	if err != nil {
		return false, err
	}
	ts := in.Timestamp
	ev, err := notifier.NewEvent(in.EventID, in.Type, &ts, data, time.Now())
	if err != nil {
		return false, temporal.NewNonRetryableApplicationError(err.Error(), "BadAlert", err)
	}
	body, err := ev.Envelope()
	if err != nil {
		return false, err
	}
	created, err := a.Store.RecordAlert(ctx, in.Data.RuleID,
		&sqlstore.Alert{Event: ev, Body: body, State: in.State}, in.WebhookIDs)
	if err != nil {
		return false, err
	}
	if created {
		transition := "fired"
		if in.Type == notifier.EventAlertResolved {
			transition = "resolved"
		}
		metrics.Alerts.WithLabelValues(string(in.Data.Rule), transition).Inc()
	}
	return created, nil
}

// SaveAlertRule writes a rule's changed settings.
func (a *Activities) SaveAlertRule(ctx context.Context, rule notifier.AlertRule) error {
	err := a.Store.SaveAlertRule(ctx, &rule)
	var e *notifier.Error
	switch {
	case notifier.ErrorCode(err) == notifier.ENOTFOUND:
		return temporal.NewNonRetryableApplicationError(err.Error(), "RuleGone", nil)
	case notifier.ErrorCode(err) == notifier.EINVALID && errors.As(err, &e):
		// A service deleted since the change was checked.
		return temporal.NewNonRetryableApplicationError(e.Message, ErrInvalidRule, nil, e.Field)
	}
	return err
}

// DeleteAlertRule removes a rule from the store; a rule already gone is not
// an error.
func (a *Activities) DeleteAlertRule(ctx context.Context, id string) error {
	err := a.Store.DeleteAlertRule(ctx, id)
	if notifier.ErrorCode(err) == notifier.ENOTFOUND {
		return nil
	}
	return err
}

// ServiceEventInput is a service.down or service.up event to store for the
// webhooks that subscribe to it.
type ServiceEventInput struct {
	EventID   string
	Type      notifier.EventType
	Timestamp time.Time
	Data      map[string]any
}

// StoreServiceEvent stores a service.down or service.up event.
func (a *Activities) StoreServiceEvent(ctx context.Context, in ServiceEventInput) error {
	data, err := json.Marshal(in.Data)
	if err != nil {
		return err
	}
	ts := in.Timestamp
	ev, err := notifier.NewEvent(in.EventID, in.Type, &ts, data, time.Now())
	if err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), "BadEvent", err)
	}
	body, err := ev.Envelope()
	if err != nil {
		return err
	}
	_, created, err := a.Store.CreateEvent(ctx, ev, body)
	if err == nil && created {
		metrics.EventsPublished.WithLabelValues(string(ev.Type)).Inc()
	}
	return err
}

// WatchingRulesInput names what rules watch.
type WatchingRulesInput struct {
	Type   notifier.RuleType
	Target string
}

// WatchingRules returns the ids of the rules that watch a target.
func (a *Activities) WatchingRules(ctx context.Context, in WatchingRulesInput) ([]string, error) {
	return a.Store.RulesWatching(ctx, in.Type, in.Target)
}

// CheckServiceResult is what one probe of a service found.
type CheckServiceResult struct {
	// HealthURL is the service's health URL, its query's values masked.
	HealthURL string
	// Interval is the service's check interval.
	Interval time.Duration
	Health   notifier.ServiceHealth
	// Announced is the status last announced, and since when.
	Announced      notifier.ServiceStatus
	AnnouncedSince *time.Time
}

// CheckService probes a service's health URL once and records the result:
// healthy when it answers 2xx within notifier.ProbeTimeout. A deleted
// service is an ErrServiceGone error.
func (a *Activities) CheckService(ctx context.Context, name string) (*CheckServiceResult, error) {
	svc, err := a.Store.Service(ctx, name)
	if notifier.ErrorCode(err) == notifier.ENOTFOUND {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrServiceGone, nil)
	} else if err != nil {
		return nil, err
	}
	probe := a.probe(ctx, svc.HealthURL)
	rec, err := a.Store.RecordProbe(ctx, name, probe)
	if notifier.ErrorCode(err) == notifier.ENOTFOUND {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrServiceGone, nil)
	} else if err != nil {
		return nil, err
	}
	return &CheckServiceResult{HealthURL: notifier.MaskHealthURL(svc.HealthURL),
		Interval: svc.CheckInterval, Health: rec.Health, Announced: rec.Announced,
		AnnouncedSince: rec.AnnouncedSince}, nil
}

// MarkAnnouncedInput is a service's status that its monitor announced.
type MarkAnnouncedInput struct {
	Service string
	Status  notifier.ServiceStatus
	Since   *time.Time
}

// MarkAnnounced records that a service's status was announced.
func (a *Activities) MarkAnnounced(ctx context.Context, in MarkAnnouncedInput) error {
	err := a.Store.MarkAnnounced(ctx, in.Service, in.Status, in.Since)
	if notifier.ErrorCode(err) == notifier.ENOTFOUND {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrServiceGone, nil)
	}
	return err
}

func (a *Activities) probe(ctx context.Context, url string) sqlstore.Probe {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, notifier.ProbeTimeout)
	defer cancel()
	fail := func(format string, args ...any) sqlstore.Probe {
		return sqlstore.Probe{At: start, Error: fmt.Sprintf(format, args...)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fail("probe: %v", err)
	}
	req.Header.Set("User-Agent", "Barfinex-Notifier/"+notifier.Version+" (health probe)")
	resp, err := a.prober().Do(req)
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fail("no answer within %s", notifier.ProbeTimeout)
	case err != nil:
		// Without the URL, which may hold a token.
		var urlErr *neturl.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return fail("%s", capError(err.Error()))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fail("answered %d", resp.StatusCode)
	}
	return sqlstore.Probe{Healthy: true, At: start}
}

func (a *Activities) prober() *http.Client {
	if a.Prober != nil {
		return a.Prober
	}
	return defaultProber
}

// defaultProber follows no redirects: a health URL answers for itself.
var defaultProber = &http.Client{
	Timeout: notifier.ProbeTimeout,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

func capError(s string) string {
	const max = 512
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
