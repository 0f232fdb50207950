package apiserver

import (
	"context"
	"errors"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/sqlstore"
	"github.com/barfinex/notifier/workflows"
)

type ruleRequest struct {
	Name                *string            `json:"name"`
	Type                *notifier.RuleType `json:"type"`
	Threshold           *float64           `json:"threshold"`
	Strategy            *string            `json:"strategy"`
	Service             *string            `json:"service"`
	WebhookIDs          []string           `json:"webhook_ids"`
	Active              *bool              `json:"active"`
	ResolveAfterSeconds *float64           `json:"resolve_after_seconds"`
}

type ruleJSON struct {
	ID                  string            `json:"id"`
	Name                string            `json:"name"`
	Type                notifier.RuleType `json:"type"`
	Threshold           float64           `json:"threshold"`
	Unit                string            `json:"unit"`
	Strategy            string            `json:"strategy,omitempty"`
	Service             string            `json:"service,omitempty"`
	WebhookIDs          []string          `json:"webhook_ids"`
	Active              bool              `json:"active"`
	ResolveAfterSeconds *float64          `json:"resolve_after_seconds,omitempty"`
	CreatedAt           string            `json:"created_at"`
	UpdatedAt           string            `json:"updated_at"`
	State               ruleStateJSON     `json:"state"`
	LastAlerts          []sentAlertJSON   `json:"last_alerts"`
	// ActiveWebhooks counts the rule's webhooks that are active: with none,
	// its alerts go nowhere, and Warnings says so.
	ActiveWebhooks int      `json:"active_webhooks"`
	Warnings       []string `json:"warnings"`
}

type ruleStateJSON struct {
	Status        notifier.AlertStatus `json:"status"`
	Since         string               `json:"since"`
	CurrentValue  float64              `json:"current_value"`
	LastEvaluated *string              `json:"last_evaluated_at"`
	NextCheckAt   *string              `json:"next_check_at,omitempty"`
	// LastSignalAt is when a no_signals rule's strategy last emitted.
	LastSignalAt *string `json:"last_signal_at,omitempty"`
	Episode      int     `json:"episode"`
	// Live says the state came from the rule's workflow just now; false, it
	// is what the workflow recorded at its latest transition.
	Live bool `json:"live"`
}

type sentAlertJSON struct {
	EventID string             `json:"event_id"`
	Type    notifier.EventType `json:"type"`
	At      string             `json:"at"`
}

// toRuleJSON shows a rule with its state: live, from its workflow, with the
// current value as of now, or as recorded at its latest transition.
func toRuleJSON(r *sqlstore.StoredRule, live *workflows.RuleView, now time.Time) *ruleJSON {
	out := &ruleJSON{
		ID: r.ID, Name: r.Name, Type: r.Type, Threshold: r.Threshold, Unit: r.Type.Unit(),
		Strategy: r.Strategy, Service: r.Service, WebhookIDs: r.WebhookIDs, Active: r.Active,
		CreatedAt: timeJSON(r.CreatedAt), UpdatedAt: timeJSON(r.UpdatedAt),
		ActiveWebhooks: r.ActiveWebhooks, LastAlerts: []sentAlertJSON{}, Warnings: []string{},
	}
	if r.Type == notifier.RuleDrawdown {
		secs := r.ResolveAfter.Seconds()
		out.ResolveAfterSeconds = &secs
	}
	st := r.State
	if live != nil {
		st = live.State
		for _, s := range live.Sent {
			out.LastAlerts = append(out.LastAlerts, sentAlertJSON{EventID: s.EventID, Type: s.Type,
				At: timeJSON(s.At)})
		}
		out.State.NextCheckAt = optionalTime(live.NextCheckAt)
		out.State.LastSignalAt = optionalTime(live.Inputs.LastSignalAt)
	}
	out.State.Status, out.State.Since = st.Status, timeJSON(st.Since)
	out.State.CurrentValue, out.State.Episode, out.State.Live =
		st.CurrentValue, st.Episode, live != nil
	if live != nil && r.Active {
		out.State.CurrentValue = live.ValueAt(now)
	}
	if !st.LastEvaluated.IsZero() {
		out.State.LastEvaluated = optionalTime(&st.LastEvaluated)
	}
	switch {
	case len(r.WebhookIDs) == 0:
		out.Warnings = append(out.Warnings, "the rule has no webhooks left: its alerts go nowhere")
	case r.ActiveWebhooks == 0:
		out.Warnings = append(out.Warnings,
			"all of the rule's webhooks are inactive: its alerts go nowhere")
	}
	if !r.Active {
		out.Warnings = append(out.Warnings, "the rule is inactive: it does not fire")
	}
	return out
}

// update is the change the request asks for: the fields it gives.
func (req *ruleRequest) update() (*notifier.AlertRuleUpdate, error) {
	u := &notifier.AlertRuleUpdate{Name: req.Name, Threshold: req.Threshold, Strategy: req.Strategy,
		Service: req.Service, WebhookIDs: req.WebhookIDs, Active: req.Active}
	if s := req.ResolveAfterSeconds; s != nil {
		if math.IsNaN(*s) || *s < 0 || *s > notifier.MaxResolveAfter.Seconds() {
			return nil, notifier.Invalid("resolve_after_seconds", "must be between 0 and %d",
				int(notifier.MaxResolveAfter.Seconds()))
		}
		// Kept to the millisecond, as the store keeps it.
		d := time.Duration(*s*1000) * time.Millisecond
		u.ResolveAfter = &d
	}
	return u, nil
}

// apply sets the request's fields on r.
func (req *ruleRequest) apply(r *notifier.AlertRule) error {
	u, err := req.update()
	if err != nil {
		return err
	}
	u.Apply(r)
	return nil
}

func (s *Server) createRule(c *gin.Context) {
	var req ruleRequest
	if err := decode(c, &req, maxConfigBody); err != nil {
		writeError(c, err)
		return
	}
	rule := notifier.AlertRule{Active: true}
	if req.Type != nil {
		rule.Type = *req.Type
	}
	if len(req.WebhookIDs) == 0 {
		writeError(c, notifier.Invalid("webhook_ids", "must name at least one webhook: "+
			"a rule's alerts go only to its webhooks"))
		return
	}
	if rule.Type == notifier.RuleDrawdown && req.ResolveAfterSeconds == nil {
		rule.ResolveAfter = notifier.DefaultResolveAfter
	}
	if err := req.apply(&rule); err != nil {
		writeError(c, err)
		return
	}
	if err := rule.Validate(); err != nil {
		writeError(c, err)
		return
	}
	ctx := c.Request.Context()
	if err := s.store.CreateAlertRule(ctx, &rule); err != nil {
		s.fail(c, "create alert rule", err)
		return
	}
	_, err := s.temporal.ExecuteWorkflow(ctx, workflows.RuleStartOptions(&rule, s.cfg.TaskQueue),
		workflows.AlertRuleWorkflow, workflows.RuleInput{Rule: rule})
	if err != nil {
		s.log.Error("start alert rule workflow", "rule_id", rule.ID, "err", err)
		// No rule without its workflow: take the rule back.
		if err := s.store.DeleteAlertRule(context.WithoutCancel(ctx), rule.ID); err != nil {
			s.log.Error("delete alert rule not started", "rule_id", rule.ID, "err", err)
		}
		writeError(c, notifier.Errorf(notifier.EUNAVAILABLE,
			"the rule could not be started; nothing was created, try again"))
		return
	}
	s.log.Info("alert rule created", "rule_id", rule.ID, "type", string(rule.Type))
	stored, err := s.store.AlertRule(ctx, rule.ID)
	if err != nil {
		s.fail(c, "create alert rule", err)
		return
	}
	// The new workflow answers within its first task, when a worker is up.
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c.JSON(http.StatusCreated, toRuleJSON(stored, s.ruleView(qctx, rule.ID), s.now()))
}

func ruleID(c *gin.Context) (string, bool) {
	id := c.Param("id")
	if !notifier.ValidRuleID(id) {
		writeError(c, notifier.Errorf(notifier.ENOTFOUND, "alert rule %q not found", id))
		return "", false
	}
	return id, true
}

func (s *Server) getRule(c *gin.Context) {
	id, ok := ruleID(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	r, err := s.store.AlertRule(ctx, id)
	if err != nil {
		s.fail(c, "get alert rule", err)
		return
	}
	c.JSON(http.StatusOK, toRuleJSON(r, s.ruleView(ctx, id), s.now()))
}

func (s *Server) listRules(c *gin.Context) {
	limit, err := limitParam(c)
	if err != nil {
		writeError(c, err)
		return
	}
	ctx := c.Request.Context()
	page, err := s.store.AlertRules(ctx, limit, c.Query("cursor"))
	if err != nil {
		s.fail(c, "list alert rules", err)
		return
	}
	// Each rule's workflow is asked for its state, a few at a time.
	items := make([]*ruleJSON, len(page.Rules))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, r := range page.Rules {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			items[i] = toRuleJSON(r, s.ruleView(ctx, r.ID), s.now())
		}()
	}
	wg.Wait()
	c.JSON(http.StatusOK, gin.H{"items": items, "next_cursor": page.NextCursor})
}

// ruleView asks a rule's workflow for its live state; nil when it cannot
// answer.
func (s *Server) ruleView(ctx context.Context, id string) *workflows.RuleView {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := s.temporal.QueryWorkflowWithOptions(ctx, &client.QueryWorkflowWithOptionsRequest{
		WorkflowID:           workflows.RuleWorkflowID(id),
		QueryType:            workflows.RuleStateQuery,
		QueryRejectCondition: enumspb.QUERY_REJECT_CONDITION_NOT_OPEN,
	})
	if err != nil || resp.QueryRejected != nil {
		s.log.Debug("query alert rule state", "rule_id", id, "err", err)
		return nil
	}
	var v workflows.RuleView
	if err := resp.QueryResult.Get(&v); err != nil {
		s.log.Warn("decode alert rule state", "rule_id", id, "err", err)
		return nil
	}
	return &v
}

// ruleUpdateTimeout bounds how long a change waits for the rule's workflow.
const ruleUpdateTimeout = 15 * time.Second

func (s *Server) updateRule(c *gin.Context) {
	id, ok := ruleID(c)
	if !ok {
		return
	}
	var req ruleRequest
	if err := decode(c, &req, maxConfigBody); err != nil {
		writeError(c, err)
		return
	}
	ctx := c.Request.Context()
	stored, err := s.store.AlertRule(ctx, id)
	if err != nil {
		s.fail(c, "update alert rule", err)
		return
	}
	if req.Type != nil && *req.Type != stored.Type {
		writeError(c, notifier.Invalid("type", "cannot change; create a new rule"))
		return
	}
	if req.WebhookIDs != nil && len(req.WebhookIDs) == 0 {
		writeError(c, notifier.Invalid("webhook_ids", "must name at least one webhook"))
		return
	}
	change, err := req.update()
	if err != nil {
		writeError(c, err)
		return
	}
	// Checked here against the rule as stored, for a quick answer; the
	// workflow checks it again against the rule as it is when it applies
	// the change, after any other change under way.
	next := stored.AlertRule
	next.WebhookIDs = append([]string(nil), stored.WebhookIDs...)
	change.Apply(&next)
	if err := next.Validate(); err != nil {
		writeError(c, err)
		return
	}
	if err := s.store.CheckRuleTargets(ctx, &next); err != nil {
		s.fail(c, "update alert rule", err)
		return
	}

	// The rule's workflow takes the change and writes it to the store.
	uctx, cancel := context.WithTimeout(ctx, ruleUpdateTimeout)
	defer cancel()
	var view workflows.RuleView
	err = s.updateRuleWorkflow(uctx, id, workflows.UpdateRuleName, &view, change)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		// The workflow is gone (terminated by hand): the rule starts again
		// with the change, from the state it recorded.
		err = s.restartRule(uctx, &next)
	}
	if err != nil {
		s.updateFailed(c, "update alert rule", id, err)
		return
	}
	s.log.Info("alert rule updated", "rule_id", id)
	r, err := s.store.AlertRule(ctx, id)
	if err != nil {
		s.fail(c, "update alert rule", err)
		return
	}
	var live *workflows.RuleView
	if view.Rule.ID != "" {
		live = &view
	}
	c.JSON(http.StatusOK, toRuleJSON(r, live, s.now()))
}

func (s *Server) restartRule(ctx context.Context, r *notifier.AlertRule) error {
	if err := s.store.SaveAlertRule(ctx, r); err != nil {
		return err
	}
	_, err := s.temporal.ExecuteWorkflow(ctx, workflows.RuleStartOptions(r, s.cfg.TaskQueue),
		workflows.AlertRuleWorkflow, workflows.RuleInput{Rule: *r})
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return nil
	}
	return err
}

func (s *Server) updateRuleWorkflow(ctx context.Context, id, name string, out any,
	args ...any) error {
	handle, err := s.temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflows.RuleWorkflowID(id),
		UpdateName:   name,
		Args:         args,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return err
	}
	return handle.Get(ctx, out)
}

// updateFailed answers for an update the rule's workflow rejected or did
// not answer in time.
func (s *Server) updateFailed(c *gin.Context, op, id string, err error) {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		switch appErr.Type() {
		case workflows.ErrInvalidRule:
			var field string
			_ = appErr.Details(&field)
			writeError(c, notifier.Invalid(field, "%s", appErr.Message()))
			return
		case workflows.ErrRuleDeleted:
			writeError(c, notifier.Errorf(notifier.ENOTFOUND, "alert rule %q is being deleted", id))
			return
		}
	}
	var known *notifier.Error
	if errors.As(err, &known) {
		writeError(c, err)
		return
	}
	s.log.Error(op, "rule_id", id, "err", err)
	if errors.Is(err, context.DeadlineExceeded) {
		writeError(c, notifier.Errorf(notifier.EUNAVAILABLE,
			"the rule's workflow did not answer in time; read the rule to see whether the change applied"))
		return
	}
	writeError(c, notifier.Errorf(notifier.EUNAVAILABLE,
		"the rule's workflow could not take the change; read the rule to see whether it applied"))
}

func (s *Server) deleteRule(c *gin.Context) {
	id, ok := ruleID(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	stored, err := s.store.AlertRule(ctx, id)
	if err != nil {
		s.fail(c, "delete alert rule", err)
		return
	}
	// The workflow resolves a firing alert, deletes the rule and ends.
	uctx, cancel := context.WithTimeout(ctx, ruleUpdateTimeout)
	defer cancel()
	err = s.updateRuleWorkflow(uctx, id, workflows.DeleteRuleName, nil)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		// The workflow is gone (terminated by hand): started again, it
		// takes up the state the rule recorded, and resolves a firing
		// alert before the rule goes.
		err = s.restartRule(uctx, &stored.AlertRule)
		if err == nil {
			err = s.updateRuleWorkflow(uctx, id, workflows.DeleteRuleName, nil)
		}
	}
	if err != nil {
		s.updateFailed(c, "delete alert rule", id, err)
		return
	}
	s.log.Info("alert rule deleted", "rule_id", id)
	c.Status(http.StatusNoContent)
}

// observe tells each rule's workflow of news. A rule whose workflow is not
// running reads the news from the store when it starts; any other failure
// is returned, for the caller to send the news again.
func (s *Server) observe(ctx context.Context, rules []string, o workflows.Observation) error {
	var failed error
	for _, id := range rules {
		err := s.temporal.SignalWorkflow(ctx, workflows.RuleWorkflowID(id), "",
			workflows.ObserveSignal, o)
		var notFound *serviceerror.NotFound
		if err != nil && !errors.As(err, &notFound) {
			s.log.Warn("signal alert rule", "rule_id", id, "err", err)
			failed = err
		}
	}
	return failed
}

// noteSignal tells the no_signals rules watching a strategy that it emitted
// a signal, received at at.
func (s *Server) noteSignal(ctx context.Context, strategy string, at time.Time) error {
	rules, err := s.store.RulesWatching(ctx, notifier.RuleNoSignals, strategy)
	if err != nil {
		return err
	}
	return s.observe(ctx, rules, workflows.Observation{SignalAt: &at})
}

type snapshotRequest struct {
	Equity    *float64 `json:"equity"`
	Timestamp *string  `json:"timestamp"`
	// ResetPeak makes this snapshot's equity the peak, as after a deposit
	// or withdrawal, or to undo a mistaken snapshot.
	ResetPeak bool `json:"reset_peak"`
}

type portfolioJSON struct {
	Equity          float64 `json:"equity"`
	Peak            float64 `json:"peak"`
	DrawdownPercent float64 `json:"drawdown_percent"`
	Timestamp       string  `json:"timestamp"`
}

func toPortfolioJSON(p *notifier.Portfolio) portfolioJSON {
	return portfolioJSON{Equity: p.Equity, Peak: p.Peak,
		DrawdownPercent: math.Round(p.Drawdown()*1e4) / 1e4, Timestamp: timeJSON(p.At)}
}

func (s *Server) recordSnapshot(c *gin.Context) {
	var req snapshotRequest
	if err := decode(c, &req, maxConfigBody); err != nil {
		writeError(c, err)
		return
	}
	if req.Equity == nil {
		writeError(c, notifier.Invalid("equity", "is required"))
		return
	}
	if err := notifier.ValidEquity(*req.Equity); err != nil {
		writeError(c, err)
		return
	}
	at := s.now()
	if req.Timestamp != nil {
		t, err := parseTimestamp(*req.Timestamp)
		if err != nil {
			writeError(c, err)
			return
		}
		if t.After(at.Add(maxClockSkew)) {
			writeError(c, notifier.Invalid("timestamp", "is more than %s ahead of this server's clock",
				maxClockSkew))
			return
		}
		// A snapshot from the future would hide every later one: it
		// counts as taken now.
		if t.Before(at) {
			at = t
		}
	}
	ctx := c.Request.Context()
	p, err := s.store.RecordSnapshot(ctx, *req.Equity, at, req.ResetPeak)
	if err != nil {
		s.fail(c, "record portfolio snapshot", err)
		return
	}
	rules, err := s.store.RulesWatching(ctx, notifier.RuleDrawdown, "")
	if err == nil {
		err = s.observe(ctx, rules, workflows.Observation{Portfolio: p})
	}
	if err != nil {
		s.log.Error("tell drawdown rules", "err", err)
		writeError(c, notifier.Errorf(notifier.EUNAVAILABLE, "the snapshot is recorded, but the "+
			"drawdown rules could not be told; send it again"))
		return
	}
	c.JSON(http.StatusCreated, toPortfolioJSON(p))
}

func (s *Server) getPortfolio(c *gin.Context) {
	p, err := s.store.Portfolio(c.Request.Context())
	if err != nil {
		s.fail(c, "get portfolio", err)
		return
	}
	c.JSON(http.StatusOK, toPortfolioJSON(p))
}

// maxClockSkew is how far ahead of the server's clock a snapshot's
// timestamp may be.
const maxClockSkew = 5 * time.Minute

// parseTimestamp reads an RFC 3339 time the way event timestamps are read.
func parseTimestamp(raw string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil || t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}, notifier.Invalid("timestamp",
			"must be an RFC 3339 time, like 2026-03-27T12:00:00.000Z")
	}
	return t.UTC(), nil
}
