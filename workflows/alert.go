package workflows

import (
	"errors"
	"fmt"
	"math"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/activities"
)

// An alert rule's workflow keeps the rule's state: ok or firing, since
// when, the value it watches, the alerts it sent. It is woken by what the
// rule watches (Observation signals), by its own timer when the condition
// is due to hold, and by changes to the rule (Updates). Its alert events
// are named by the rule and the episode, so no replay, retry, restart or
// continue-as-new can send one twice.

// Names of the signal, updates and query of an alert rule's workflow.
const (
	// ObserveSignal carries an Observation of what the rule watches.
	ObserveSignal = "observe"
	// UpdateRuleName changes the rule's settings: the argument is a
	// notifier.AlertRuleUpdate, checked against the rule before it is
	// accepted and applied to the rule as it then is.
	UpdateRuleName = "update"
	// DeleteRuleName deletes the rule, resolving its alert if firing, and
	// ends the workflow.
	DeleteRuleName = "delete"
	// RuleStateQuery reads a RuleView.
	RuleStateQuery = "state"
)

// Types of the errors with which a rule's workflow rejects an update. An
// ErrInvalidRule error's detail names the field at fault.
const (
	ErrInvalidRule = activities.ErrInvalidRule
	ErrRuleDeleted = "RuleDeleted"
)

// RuleWorkflowID returns the id of an alert rule's workflow.
func RuleWorkflowID(ruleID string) string { return "alert_" + ruleID }

// RuleInput starts or continues a rule's workflow.
type RuleInput struct {
	Rule notifier.AlertRule
	// State is carried over by continue-as-new; nil at the first start,
	// when the workflow reads the state the rule recorded last.
	State *RuleState
}

// RuleState is everything a rule's workflow knows.
type RuleState struct {
	Alert notifier.AlertState
	// What the rule watches, as last observed.
	LastSignalAt *time.Time
	Portfolio    *notifier.Portfolio
	Health       notifier.ServiceHealth
	// WatchSince is when the rule began to watch its target: its creation,
	// or the change that gave it another strategy or service. A strategy
	// that never emitted has been silent since then.
	WatchSince time.Time
	// ConditionSince is when the condition of the firing episode began.
	ConditionSince time.Time
	// BelowSince is when a firing drawdown went back below the threshold.
	BelowSince *time.Time
	// Sent lists the latest alerts sent, oldest first.
	Sent []SentAlert
}

// SentAlert is an alert event a rule sent.
type SentAlert struct {
	EventID string
	Type    notifier.EventType
	At      time.Time
}

// maxSent bounds the alerts a rule's state remembers.
const maxSent = 10

// Observation is news of what rules watch. Fields that do not apply to the
// rule's type are ignored.
type Observation struct {
	// SignalAt is when the rule's strategy emitted a signal.
	SignalAt *time.Time
	// Portfolio is the portfolio after a snapshot.
	Portfolio *notifier.Portfolio
	// Health is the rule's service's health after a probe changed it.
	Health *notifier.ServiceHealth
}

// RuleView is a rule with its live state, as the state query and the
// update return it.
type RuleView struct {
	Rule  notifier.AlertRule
	State notifier.AlertState
	Sent  []SentAlert
	// NextCheckAt is when the rule's timer next wakes it, if set.
	NextCheckAt *time.Time
	// Inputs is what the rule knows of its target.
	Inputs RuleState
}

// ValueAt is the value the rule watches, as it would be evaluated at now
// with what the rule knows: minutes of silence and seconds of outage grow
// between evaluations.
func (v *RuleView) ValueAt(now time.Time) float64 {
	r := &ruleRun{rule: v.Rule, st: v.Inputs}
	_, value, _ := r.condition(now)
	return value
}

// ruleHistoryLimit is the history length past which a rule's workflow
// continues as new.
var ruleHistoryLimit = 2000

// AlertRuleWorkflow runs one alert rule for as long as the rule exists.
func AlertRuleWorkflow(ctx workflow.Context, in RuleInput) error {
	ctx = workflow.WithActivityOptions(ctx, bookkeeping)
	r := &ruleRun{rule: in.Rule, wake: workflow.NewBufferedChannel(ctx, 1), mu: workflow.NewMutex(ctx)}
	// Handlers first: an update sent as the workflow starts finds them.
	if err := r.setHandlers(ctx); err != nil {
		return err
	}
	if in.State != nil {
		r.st = *in.State
	} else if err := r.load(ctx, true); err != nil {
		return err
	}
	observations := workflow.GetSignalChannel(ctx, ObserveSignal)
	for {
		// One change at a time: an evaluation, a delete or an update.
		if err := r.mu.Lock(ctx); err != nil {
			return err
		}
		if r.deleting {
			return r.delete(ctx)
		}
		err := r.evaluate(ctx)
		r.evaluations++
		r.mu.Unlock()
		if err != nil {
			return err
		}
		if r.deleting {
			continue
		}
		info := workflow.GetInfo(ctx)
		if info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() >= ruleHistoryLimit {
			return r.continueAsNew(ctx, observations)
		}
		r.wait(ctx, observations)
	}
}

type ruleRun struct {
	rule notifier.AlertRule
	st   RuleState
	// wake tells the main loop that an update changed the rule.
	wake workflow.Channel
	// mu lets one of the main loop and the updates change the rule and its
	// state at a time.
	mu       workflow.Mutex
	deleting bool
	deleted  bool
	// closing is set once the run is to continue as new: updates answer
	// without waiting for an evaluation, which the next run makes.
	closing bool
	// evaluations counts the main loop's evaluations, so that an update
	// can answer with the state its change led to.
	evaluations int
	// timer wakes the rule at timerAt; a timer made obsolete by new input
	// is left to fire, which costs one needless evaluation and no events.
	timer   workflow.Future
	timerAt time.Time
}

func (r *ruleRun) setHandlers(ctx workflow.Context) error {
	err := workflow.SetQueryHandler(ctx, RuleStateQuery, func() (*RuleView, error) {
		if r.st.Alert.Status == "" {
			return nil, errors.New("the rule's workflow is starting")
		}
		return r.view(), nil
	})
	if err != nil {
		return err
	}
	err = workflow.SetUpdateHandlerWithOptions(ctx, UpdateRuleName, r.update,
		workflow.UpdateHandlerOptions{
			Validator: func(ctx workflow.Context, u notifier.AlertRuleUpdate) error {
				if r.deleting {
					return temporal.NewApplicationError("the rule is being deleted", ErrRuleDeleted)
				}
				_, err := r.changed(u)
				return err
			},
		})
	if err != nil {
		return err
	}
	return workflow.SetUpdateHandler(ctx, DeleteRuleName, func(ctx workflow.Context) error {
		r.deleting = true
		r.wake.SendAsync(true)
		return workflow.Await(ctx, func() bool { return r.deleted })
	})
}

// changed is the rule as a change would make it, or the error that
// refuses the change.
func (r *ruleRun) changed(u notifier.AlertRuleUpdate) (notifier.AlertRule, error) {
	next := r.rule
	next.WebhookIDs = append([]string(nil), r.rule.WebhookIDs...)
	u.Apply(&next)
	if err := next.Validate(); err != nil {
		var e *notifier.Error
		if errors.As(err, &e) {
			return next, temporal.NewApplicationError(e.Message, ErrInvalidRule, e.Field)
		}
		return next, temporal.NewApplicationError(err.Error(), ErrInvalidRule, "")
	}
	return next, nil
}

// update applies a change to the rule, after the evaluation or update
// under way, and answers with the state the change led to. A firing alert
// whose target changes, or that loses a webhook, is resolved first, as what
// it was and to where it went, so that every trigger's resolution reaches
// its receivers.
func (r *ruleRun) update(ctx workflow.Context, u notifier.AlertRuleUpdate) (*RuleView, error) {
	if err := r.mu.Lock(ctx); err != nil {
		return nil, err
	}
	locked := true
	defer func() {
		if locked {
			r.mu.Unlock()
		}
	}()
	if r.deleting {
		return nil, temporal.NewApplicationError("the rule is being deleted", ErrRuleDeleted)
	}
	// Checked again: another change may have come first.
	next, err := r.changed(u)
	if err != nil {
		return nil, err
	}
	actx := workflow.WithActivityOptions(ctx, bookkeeping)
	if err := workflow.ExecuteActivity(actx, a.SaveAlertRule, next).Get(ctx, nil); err != nil {
		return nil, err
	}
	retarget := next.Target() != r.rule.Target()
	if r.st.Alert.Status == notifier.AlertFiring &&
		(retarget || !subset(r.rule.WebhookIDs, next.WebhookIDs)) {
		_, value, _ := r.condition(workflow.Now(ctx))
		if err := r.resolve(actx, value,
			fmt.Sprintf("Alert rule %q was changed", r.rule.Name)); err != nil {
			return nil, err
		}
	}
	r.rule = next
	if retarget {
		// What was known of the old strategy or service says nothing of
		// the new one: start watching it from now.
		r.st.LastSignalAt, r.st.Health = nil, notifier.ServiceHealth{}
		r.st.WatchSince = workflow.Now(ctx)
		if err := r.load(actx, false); err != nil {
			return nil, err
		}
	}
	n := r.evaluations
	r.mu.Unlock()
	locked = false
	r.wake.SendAsync(true)
	err = workflow.Await(ctx, func() bool { return r.evaluations > n || r.deleting || r.closing })
	if err != nil {
		return nil, err
	}
	return r.view(), nil
}

// subset reports whether every id of a is in b.
func subset(a, b []string) bool {
	in := make(map[string]bool, len(b))
	for _, x := range b {
		in[x] = true
	}
	for _, x := range a {
		if !in[x] {
			return false
		}
	}
	return true
}

// load reads what the rule watches from the store, where it is kept even
// when an observation never reached the workflow. At the first start it
// also takes the state the rule last recorded, so that a rule whose
// workflow was lost and started again does not fire again.
func (r *ruleRun) load(ctx workflow.Context, first bool) error {
	var in activities.RuleInputs
	if err := workflow.ExecuteActivity(ctx, a.LoadRuleInputs, r.rule).Get(ctx, &in); err != nil {
		return err
	}
	now := workflow.Now(ctx)
	if first {
		r.st.Alert = notifier.AlertState{Status: notifier.AlertOK, Since: now}
		if in.Recorded != nil {
			r.st.Alert = *in.Recorded
			r.st.ConditionSince = in.Recorded.ConditionSince
		}
	}
	r.observe(Observation{SignalAt: in.LastSignalAt, Portfolio: in.Portfolio, Health: &in.Health})
	return nil
}

// observe takes in news, keeping the newest of each input.
func (r *ruleRun) observe(o Observation) {
	if o.SignalAt != nil && (r.st.LastSignalAt == nil || o.SignalAt.After(*r.st.LastSignalAt)) {
		at := *o.SignalAt
		r.st.LastSignalAt = &at
	}
	if p := o.Portfolio; p != nil {
		if r.st.Portfolio == nil || !p.At.Before(r.st.Portfolio.At) {
			next := *p
			r.st.Portfolio = &next
		}
	}
	// A health that says since when replaces one that does not, or an
	// older one.
	if h := o.Health; h != nil && (r.st.Health.Since == nil ||
		h.Since != nil && !h.Since.Before(*r.st.Health.Since)) {
		r.st.Health = *h
	}
}

// condition reports whether the rule's condition holds at now, the value
// it watches in the threshold's unit, and since when it has held.
func (r *ruleRun) condition(now time.Time) (holds bool, value float64, since time.Time) {
	switch r.rule.Type {
	case notifier.RuleNoSignals:
		base := r.st.WatchSince
		if base.IsZero() {
			base = r.rule.CreatedAt
		}
		if r.st.LastSignalAt != nil {
			base = *r.st.LastSignalAt
		}
		silence := now.Sub(base)
		return silence >= r.thresholdDuration(), round1(silence.Minutes()), base
	case notifier.RuleDrawdown:
		if r.st.Portfolio == nil {
			return false, 0, now
		}
		dd := r.st.Portfolio.Drawdown()
		return dd > r.rule.Threshold, round1(dd), r.st.Portfolio.At
	case notifier.RuleServiceDown:
		h := r.st.Health
		if h.Status != notifier.ServiceDown || h.Since == nil {
			return false, 0, now
		}
		outage := now.Sub(*h.Since)
		return outage >= r.thresholdDuration(), round1(outage.Seconds()), *h.Since
	}
	return false, 0, now
}

// thresholdDuration is the threshold of a rule that counts time.
func (r *ruleRun) thresholdDuration() time.Duration {
	unit := time.Second
	if r.rule.Type == notifier.RuleNoSignals {
		unit = time.Minute
	}
	return time.Duration(r.rule.Threshold * float64(unit))
}

// nextCheck is when the rule's condition may next change with no news: a
// silence or an outage reaching the threshold, a drawdown's hold ending.
func (r *ruleRun) nextCheck() *time.Time {
	if !r.rule.Active {
		return nil
	}
	var at time.Time
	firing := r.st.Alert.Status == notifier.AlertFiring
	switch {
	case !firing && r.rule.Type == notifier.RuleNoSignals:
		_, _, base := r.condition(time.Time{})
		at = base.Add(r.thresholdDuration())
	case !firing && r.rule.Type == notifier.RuleServiceDown &&
		r.st.Health.Status == notifier.ServiceDown && r.st.Health.Since != nil:
		at = r.st.Health.Since.Add(r.thresholdDuration())
	case firing && r.rule.Type == notifier.RuleDrawdown && r.st.BelowSince != nil:
		at = r.st.BelowSince.Add(r.rule.ResolveAfter)
	default:
		return nil
	}
	return &at
}

// evaluate moves the rule between ok and firing as its condition says,
// sending the alert of each transition.
func (r *ruleRun) evaluate(ctx workflow.Context) error {
	now := workflow.Now(ctx)
	r.st.Alert.LastEvaluated = now
	firing := r.st.Alert.Status == notifier.AlertFiring
	if !r.rule.Active {
		if firing {
			_, value, _ := r.condition(now)
			return r.resolve(ctx, value, fmt.Sprintf("Alert rule %q was deactivated", r.rule.Name))
		}
		return nil
	}
	holds, value, _ := r.condition(now)
	if firing && r.rule.Type == notifier.RuleNoSignals && r.st.LastSignalAt != nil &&
		r.st.LastSignalAt.After(r.st.ConditionSince) {
		// The strategy spoke after the silence began, however late the
		// news came: this silence is over. A new one may fire at once.
		holds = false
	}
	r.st.Alert.CurrentValue = value
	switch {
	case !firing && holds:
		// Before an alert goes out, what the store knows: news that never
		// reached the workflow must not raise a false alarm.
		if err := r.load(ctx, false); err != nil {
			return err
		}
		holds, value, since := r.condition(workflow.Now(ctx))
		if !holds {
			r.st.Alert.CurrentValue = value
			return nil
		}
		return r.fire(ctx, value, since)
	case firing && holds:
		r.st.BelowSince = nil
	case firing && !holds:
		if r.rule.Type == notifier.RuleDrawdown {
			if r.st.BelowSince == nil {
				r.st.BelowSince = &now
			}
			if now.Sub(*r.st.BelowSince) < r.rule.ResolveAfter {
				return nil
			}
		}
		return r.resolve(ctx, value, notifier.AlertMessage(&r.rule, false, value))
	}
	return nil
}

func (r *ruleRun) fire(ctx workflow.Context, value float64, since time.Time) error {
	now := workflow.Now(ctx)
	state := notifier.AlertState{Status: notifier.AlertFiring, Since: now, CurrentValue: value,
		LastEvaluated: now, Episode: r.st.Alert.Episode + 1, ConditionSince: since}
	data := r.alertData(state.Episode, value, since, notifier.AlertMessage(&r.rule, true, value))
	if err := r.send(ctx, notifier.EventAlertTriggered, data, state); err != nil {
		return err
	}
	r.st.ConditionSince, r.st.BelowSince = since, nil
	workflow.GetLogger(ctx).Info("alert fired", "rule_id", r.rule.ID, "episode", state.Episode,
		"current_value", value)
	return nil
}

func (r *ruleRun) resolve(ctx workflow.Context, value float64, message string) error {
	now := workflow.Now(ctx)
	state := notifier.AlertState{Status: notifier.AlertOK, Since: now, CurrentValue: value,
		LastEvaluated: now, Episode: r.st.Alert.Episode, ConditionSince: r.st.ConditionSince}
	data := r.alertData(state.Episode, value, r.st.ConditionSince, message)
	if err := r.send(ctx, notifier.EventAlertResolved, data, state); err != nil {
		return err
	}
	r.st.BelowSince = nil
	workflow.GetLogger(ctx).Info("alert resolved", "rule_id", r.rule.ID, "episode", state.Episode,
		"current_value", value)
	return nil
}

func (r *ruleRun) alertData(episode int, value float64, since time.Time,
	message string) activities.AlertData {
	return activities.AlertData{
		Rule: r.rule.Type, RuleID: r.rule.ID, RuleName: r.rule.Name,
		Threshold: r.rule.Threshold, CurrentValue: value, Message: message,
		Strategy: r.rule.Strategy, Service: r.rule.Service,
		Since: since.UTC().Format(notifier.TimestampLayout), Episode: episode,
	}
}

// send stores an alert with the state the rule enters, then starts its
// fan-out to the rule's webhooks. The event's id follows from the rule and
// the episode, so that a repeat finds the event already stored and its
// fan-out already started.
func (r *ruleRun) send(ctx workflow.Context, typ notifier.EventType, data activities.AlertData,
	state notifier.AlertState) error {
	eventID := notifier.AlertEventID(r.rule.ID, state.Episode, typ)
	err := workflow.ExecuteActivity(ctx, a.RaiseAlert, activities.RaiseAlertInput{
		EventID: eventID, Type: typ, Timestamp: state.Since, Data: data,
		WebhookIDs: r.rule.WebhookIDs, State: state,
	}).Get(ctx, nil)
	if err != nil {
		return err
	}
	if err := startFanOut(ctx, eventID, typ, r.rule.Name); err != nil {
		return err
	}
	r.st.Alert = state
	r.st.Sent = append(r.st.Sent, SentAlert{EventID: eventID, Type: typ, At: state.Since})
	if len(r.st.Sent) > maxSent {
		r.st.Sent = r.st.Sent[len(r.st.Sent)-maxSent:]
	}
	return nil
}

// startFanOut starts the workflow that delivers a stored event, as a child
// that outlives its parent. A fan-out already started is not an error.
func startFanOut(ctx workflow.Context, eventID string, typ notifier.EventType, from string) error {
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            EventWorkflowID(eventID),
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		StaticSummary:         fmt.Sprintf("%s %s (%s)", typ, eventID, from),
	})
	err := workflow.ExecuteChildWorkflow(cctx, EventWorkflow,
		EventInput{EventID: eventID, EventType: typ}).
		GetChildWorkflowExecution().Get(ctx, nil)
	var dup *temporal.ChildWorkflowExecutionAlreadyStartedError
	if err != nil && !errors.As(err, &dup) {
		return fmt.Errorf("start fan-out of %s: %w", eventID, err)
	}
	return nil
}

// wait blocks until news arrives, the rule changes, or the rule's timer
// fires, and takes in every observation waiting.
func (r *ruleRun) wait(ctx workflow.Context, observations workflow.ReceiveChannel) {
	if next := r.nextCheck(); next != nil && (r.timer == nil || next.Before(r.timerAt)) {
		d := next.Sub(workflow.Now(ctx))
		if d <= 0 {
			return
		}
		r.timer, r.timerAt = workflow.NewTimer(ctx, d), *next
	}
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(observations, func(c workflow.ReceiveChannel, _ bool) {
		var o Observation
		c.Receive(ctx, &o)
		r.observe(o)
	})
	sel.AddReceive(r.wake, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
	if r.timer != nil {
		sel.AddFuture(r.timer, func(workflow.Future) { r.timer = nil })
	}
	sel.Select(ctx)
	r.drain(observations)
}

func (r *ruleRun) drain(observations workflow.ReceiveChannel) {
	for {
		var o Observation
		if !observations.ReceiveAsync(&o) {
			return
		}
		r.observe(o)
	}
}

// delete resolves a firing alert, removes the rule from the store and ends
// the workflow once the delete update has its answer.
func (r *ruleRun) delete(ctx workflow.Context) error {
	if r.st.Alert.Status == notifier.AlertFiring {
		_, value, _ := r.condition(workflow.Now(ctx))
		err := r.resolve(ctx, value, fmt.Sprintf("Alert rule %q was deleted", r.rule.Name))
		if err != nil {
			return err
		}
	}
	if err := workflow.ExecuteActivity(ctx, a.DeleteAlertRule, r.rule.ID).Get(ctx, nil); err != nil {
		return err
	}
	r.deleted = true
	return workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
}

// continueAsNew hands the state to a fresh run once every observation has
// been taken in and every update answered.
func (r *ruleRun) continueAsNew(ctx workflow.Context, observations workflow.ReceiveChannel) error {
	r.closing = true
	err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) || r.deleting })
	if err != nil {
		return err
	}
	if r.deleting {
		if err := r.mu.Lock(ctx); err != nil {
			return err
		}
		return r.delete(ctx)
	}
	r.drain(observations)
	return workflow.NewContinueAsNewError(ctx, AlertRuleWorkflow,
		RuleInput{Rule: r.rule, State: &r.st})
}

func (r *ruleRun) view() *RuleView {
	return &RuleView{Rule: r.rule, State: r.st.Alert, Sent: r.st.Sent, NextCheckAt: r.nextCheck(),
		Inputs: r.st}
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }
