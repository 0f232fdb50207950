package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/activities"
	"github.com/barfinex/notifier/sqlstore"
	"github.com/barfinex/notifier/workflows"
)

// ruleEnv runs an alert rule's workflow with the real activities on a real
// store; only the fan-out of its alerts, a workflow tested on its own, is
// replaced by a record of the events it was started for.
type ruleEnv struct {
	t     *testing.T
	env   *testsuite.TestWorkflowEnvironment
	store *sqlstore.Store
	rule  notifier.AlertRule

	mu       sync.Mutex
	fanOuts  []string
	failures []error
}

var ruleStart = time.Date(2026, 3, 27, 12, 0, 0, 0, time.UTC)

func newRuleEnv(t *testing.T, rule notifier.AlertRule) *ruleEnv {
	ctx := context.Background()
	store, err := sqlstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "n.db"))
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })

	hook := &notifier.Webhook{Name: "ops", URL: "https://hooks.example.com/x", Active: true,
		Events: []notifier.EventType{notifier.EventOrderFilled}}
	require.NoError(t, store.CreateWebhook(ctx, hook))
	if rule.Type == notifier.RuleServiceDown {
		require.NoError(t, store.CreateService(ctx, &notifier.Service{
			Name: rule.Service, HealthURL: "http://127.0.0.1:1/health", CheckInterval: time.Second}))
	}
	rule.Name, rule.Active, rule.WebhookIDs = "watch", true, []string{hook.ID}
	require.NoError(t, rule.Validate())
	require.NoError(t, store.CreateAlertRule(ctx, &rule))
	rule.CreatedAt = ruleStart

	return newRuleEnvAt(t, store, rule, ruleStart)
}

// newRuleEnvAt is a test environment for a rule on a store, its clock at
// start.
func newRuleEnvAt(t *testing.T, store *sqlstore.Store, rule notifier.AlertRule,
	start time.Time) *ruleEnv {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.SetStartTime(start)
	env.RegisterActivity(&activities.Activities{Store: store})
	r := &ruleEnv{t: t, env: env, store: store, rule: rule}
	env.OnWorkflow(workflows.EventWorkflow, mock.Anything, mock.Anything).Return(r.recordFanOut)
	return r
}

func (r *ruleEnv) recordFanOut(_ workflow.Context, in workflows.EventInput) (*workflows.EventResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fanOuts = append(r.fanOuts, in.EventID)
	return &workflows.EventResult{Started: 1}, nil
}

// at runs fn when the workflow's clock reads start+d.
func (r *ruleEnv) at(d time.Duration, fn func()) {
	r.env.RegisterDelayedCallback(fn, d)
}

func (r *ruleEnv) observe(o workflows.Observation) {
	r.env.SignalWorkflow(workflows.ObserveSignal, o)
}

func (r *ruleEnv) view() workflows.RuleView {
	val, err := r.env.QueryWorkflow(workflows.RuleStateQuery)
	require.NoError(r.t, err)
	var v workflows.RuleView
	require.NoError(r.t, val.Get(&v))
	return v
}

// requireAlerts checks the alert events stored so far, by id suffix.
func (r *ruleEnv) requireAlerts(want ...string) []*sqlstore.StoredEvent {
	r.t.Helper()
	var got []*sqlstore.StoredEvent
	var ids []string
	for ep := 1; ep <= 5; ep++ {
		for _, kind := range []string{"triggered", "resolved"} {
			typ := notifier.EventAlertTriggered
			if kind == "resolved" {
				typ = notifier.EventAlertResolved
			}
			id := notifier.AlertEventID(r.rule.ID, ep, typ)
			ev, err := r.store.Event(context.Background(), id)
			if notifier.ErrorCode(err) == notifier.ENOTFOUND {
				continue
			}
			require.NoError(r.t, err)
			got, ids = append(got, ev), append(ids, itoa(ep)+"."+kind)
		}
	}
	require.Equal(r.t, want, ids, "alert events stored")
	return got
}

// requireFanOuts checks, once the workflow has ended, that every alert was
// handed to the fan-out, once.
func (r *ruleEnv) requireFanOuts(want ...string) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for _, w := range want {
		ep, kind, _ := strings.Cut(w, ".")
		ids = append(ids, "alert:"+r.rule.ID+":"+ep+":"+kind)
	}
	require.Equal(r.t, ids, r.fanOuts, "fan-outs started")
}

func itoa(n int) string { return string(rune('0' + n)) }

func ptr[T any](v T) *T { return &v }

func ts(t time.Time) string { return t.UTC().Format(notifier.TimestampLayout) }

func alertData(t *testing.T, ev *sqlstore.StoredEvent) activities.AlertData {
	t.Helper()
	env, err := notifier.ParseEnvelope(ev.Body)
	require.NoError(t, err)
	var d activities.AlertData
	require.NoError(t, json.Unmarshal(env.Data, &d))
	return d
}

// run starts the workflow and ends it, after every callback, with the
// delete update; it returns the workflow's error.
func (r *ruleEnv) run(input workflows.RuleInput, end time.Duration) error {
	r.at(end, func() {
		r.env.UpdateWorkflow(workflows.DeleteRuleName, "delete", &testsuite.TestUpdateCallback{
			OnReject:   func(err error) { r.failures = append(r.failures, err) },
			OnAccept:   func() {},
			OnComplete: func(_ any, err error) { r.failures = append(r.failures, err) },
		})
	})
	r.env.ExecuteWorkflow(workflows.AlertRuleWorkflow, input)
	require.True(r.t, r.env.IsWorkflowCompleted())
	return r.env.GetWorkflowError()
}

func TestNoSignals_FiresOnDeadlineResolvesAndFiresAgain(t *testing.T) {
	r := newRuleEnv(t, notifier.AlertRule{Type: notifier.RuleNoSignals, Threshold: 5, Strategy: "momentum"})
	signal := func(d time.Duration) {
		r.at(d, func() {
			at := r.env.Now()
			r.observe(workflows.Observation{SignalAt: &at})
		})
	}
	// A signal at 4m moves the deadline from 5m to 9m.
	signal(4 * time.Minute)
	r.at(9*time.Minute-time.Second, func() {
		require.Equal(t, notifier.AlertOK, r.view().State.Status)
		r.requireAlerts()
	})
	r.at(9*time.Minute+time.Second, func() {
		v := r.view()
		require.Equal(t, notifier.AlertFiring, v.State.Status)
		require.Equal(t, ruleStart.Add(9*time.Minute), v.State.Since.UTC(), "fired at the deadline")
		evs := r.requireAlerts("1.triggered")
		d := alertData(t, evs[0])
		require.Equal(t, activities.AlertData{
			Rule: notifier.RuleNoSignals, RuleID: r.rule.ID, RuleName: "watch", Threshold: 5,
			CurrentValue: 5, Strategy: "momentum", Since: ts(ruleStart.Add(4 * time.Minute)), Episode: 1,
			Message: "Strategy momentum has emitted no signal for 5 minutes (threshold: 5)",
		}, d)
		require.Equal(t, r.rule.WebhookIDs, evs[0].Targets, "the rule's webhooks are the subscription")
	})
	// Silent for far longer: nothing more is sent while firing.
	r.at(40*time.Minute, func() { r.requireAlerts("1.triggered") })
	signal(41 * time.Minute)
	r.at(41*time.Minute+time.Second, func() {
		require.Equal(t, notifier.AlertOK, r.view().State.Status)
		evs := r.requireAlerts("1.triggered", "1.resolved")
		d := alertData(t, evs[1])
		require.Equal(t, "Strategy momentum is emitting signals again", d.Message)
		require.Equal(t, ts(ruleStart.Add(4*time.Minute)), d.Since, "the resolution names the episode")
	})
	// A new episode: silent 5 minutes from 41m.
	r.at(46*time.Minute+time.Second, func() {
		require.Equal(t, 2, r.view().State.Episode)
		r.requireAlerts("1.triggered", "1.resolved", "2.triggered")
		stored, err := r.store.AlertRule(context.Background(), r.rule.ID)
		require.NoError(t, err)
		require.Equal(t, notifier.AlertFiring, stored.State.Status, "the store mirrors the transition")
	})

	require.NoError(t, r.run(workflows.RuleInput{Rule: r.rule}, time.Hour))
	require.Equal(t, []error{nil}, r.failures)
	// Deleting a firing rule resolves its alert, then removes the rule.
	evs := r.requireAlerts("1.triggered", "1.resolved", "2.triggered", "2.resolved")
	r.requireFanOuts("1.triggered", "1.resolved", "2.triggered", "2.resolved")
	require.Equal(t, `Alert rule "watch" was deleted`, alertData(t, evs[3]).Message)
	_, err := r.store.AlertRule(context.Background(), r.rule.ID)
	require.Equal(t, notifier.ENOTFOUND, notifier.ErrorCode(err))
}

func TestNoSignals_ThresholdChangeApplies(t *testing.T) {
	r := newRuleEnv(t, notifier.AlertRule{Type: notifier.RuleNoSignals, Threshold: 60, Strategy: "carry"})
	r.at(10*time.Minute, func() {
		next := notifier.AlertRuleUpdate{Threshold: ptr(15.0)}
		r.env.UpdateWorkflow(workflows.UpdateRuleName, "shorten", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { require.NoError(t, err) },
			OnAccept: func() {},
			OnComplete: func(v any, err error) {
				require.NoError(t, err)
				require.Equal(t, 15.0, v.(*workflows.RuleView).Rule.Threshold)
			},
		}, next)
	})
	// An invalid change is refused before it reaches the workflow's state.
	r.at(11*time.Minute, func() {
		bad := notifier.AlertRuleUpdate{Threshold: ptr(-1.0)}
		r.env.UpdateWorkflow(workflows.UpdateRuleName, "bad", &testsuite.TestUpdateCallback{
			OnReject: func(err error) {
				var appErr *temporal.ApplicationError
				require.ErrorAs(t, err, &appErr)
				require.Equal(t, workflows.ErrInvalidRule, appErr.Type())
				var field string
				require.NoError(t, appErr.Details(&field))
				require.Equal(t, "threshold", field)
			},
			OnAccept:   func() { t.Error("an invalid threshold was accepted") },
			OnComplete: func(any, error) {},
		}, bad)
	})
	r.at(15*time.Minute+time.Second, func() {
		v := r.view()
		require.Equal(t, notifier.AlertFiring, v.State.Status, "fires at the new threshold")
		require.Equal(t, ruleStart.Add(15*time.Minute), v.State.Since.UTC())
	})
	require.NoError(t, r.run(workflows.RuleInput{Rule: r.rule}, 20*time.Minute))
	stored, err := r.store.AlertRule(context.Background(), r.rule.ID)
	require.Equal(t, notifier.ENOTFOUND, notifier.ErrorCode(err), "deleted at the end: %v", stored)
}

func TestDrawdown_FiresOnSnapshotAndResolvesAfterHold(t *testing.T) {
	r := newRuleEnv(t, notifier.AlertRule{Type: notifier.RuleDrawdown, Threshold: 5,
		ResolveAfter: time.Minute})
	snapshot := func(d time.Duration, equity float64) {
		r.at(d, func() {
			r.observe(workflows.Observation{Portfolio: &notifier.Portfolio{
				Equity: equity, Peak: 1000, At: r.env.Now()}})
		})
	}
	snapshot(time.Second, 1000)
	snapshot(10*time.Second, 960) // 4 %
	snapshot(20*time.Second, 947) // 5.3 %
	r.at(20*time.Second+time.Millisecond, func() {
		evs := r.requireAlerts("1.triggered")
		d := alertData(t, evs[0])
		require.Equal(t, "Portfolio drawdown exceeded 5.0% (current: 5.3%)", d.Message)
		require.Equal(t, 5.3, d.CurrentValue)
	})
	// Hovering around the threshold: below, above, below again. Only a
	// full minute below resolves.
	snapshot(30*time.Second, 952) // 4.8 %
	snapshot(60*time.Second, 948) // 5.2 %
	snapshot(70*time.Second, 955) // 4.5 %
	r.at(130*time.Second-time.Millisecond, func() { r.requireAlerts("1.triggered") })
	r.at(130*time.Second+time.Millisecond, func() {
		evs := r.requireAlerts("1.triggered", "1.resolved")
		require.Equal(t, "Portfolio drawdown is back below 5.0% (current: 4.5%)", alertData(t, evs[1]).Message)
	})
	// Lowering the threshold below the current drawdown fires a new episode.
	r.at(3*time.Minute, func() {
		next := notifier.AlertRuleUpdate{Threshold: ptr(4.0)}
		r.env.UpdateWorkflow(workflows.UpdateRuleName, "lower", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { require.NoError(t, err) }, OnAccept: func() {},
			OnComplete: func(_ any, err error) { require.NoError(t, err) },
		}, next)
	})
	r.at(3*time.Minute+30*time.Second, func() {
		r.requireAlerts("1.triggered", "1.resolved", "2.triggered")
		require.Equal(t, ruleStart.Add(3*time.Minute), r.view().State.Since.UTC(), "fired on the change")
	})
	require.NoError(t, r.run(workflows.RuleInput{Rule: r.rule}, 4*time.Minute))
	r.requireFanOuts("1.triggered", "1.resolved", "2.triggered", "2.resolved")
}

func TestServiceDown_FiresAfterThresholdResolvesOnRecovery(t *testing.T) {
	r := newRuleEnv(t, notifier.AlertRule{Type: notifier.RuleServiceDown, Threshold: 30,
		Service: "inspector"})
	health := func(d time.Duration, status notifier.ServiceStatus) {
		r.at(d, func() {
			at := r.env.Now()
			r.observe(workflows.Observation{Health: &notifier.ServiceHealth{Status: status, Since: &at}})
		})
	}
	// A short outage: recovered before the threshold, nothing sent.
	health(10*time.Second, notifier.ServiceDown)
	health(30*time.Second, notifier.ServiceUp)
	r.at(time.Minute, func() { r.requireAlerts() })
	// A long one.
	health(2*time.Minute, notifier.ServiceDown)
	r.at(2*time.Minute+29*time.Second, func() { r.requireAlerts() })
	r.at(2*time.Minute+31*time.Second, func() {
		evs := r.requireAlerts("1.triggered")
		d := alertData(t, evs[0])
		require.Equal(t, "Service inspector has been unreachable for 30 seconds (threshold: 30)", d.Message)
		require.Equal(t, ts(ruleStart.Add(2*time.Minute)), d.Since)
		require.Equal(t, "inspector", d.Service)
	})
	r.at(5*time.Minute, func() { r.requireAlerts("1.triggered") })
	health(6*time.Minute, notifier.ServiceUp)
	r.at(6*time.Minute+time.Second, func() { r.requireAlerts("1.triggered", "1.resolved") })
	// Down again: a second episode.
	health(7*time.Minute, notifier.ServiceDown)
	r.at(7*time.Minute+31*time.Second, func() {
		r.requireAlerts("1.triggered", "1.resolved", "2.triggered")
	})
	require.NoError(t, r.run(workflows.RuleInput{Rule: r.rule}, 8*time.Minute))
	r.requireFanOuts("1.triggered", "1.resolved", "2.triggered", "2.resolved")
}

func TestAlertRule_ContinueAsNewKeepsStateAndSignals(t *testing.T) {
	r := newRuleEnv(t, notifier.AlertRule{Type: notifier.RuleNoSignals, Threshold: 5, Strategy: "grid"})
	first := ruleStart.Add(7 * time.Minute)
	second := first.Add(time.Second)
	// Firing from 5m. At 7m two signals arrive together as the history is
	// due to be continued: the first resolves the alert, the second must not
	// be lost across continue-as-new.
	r.at(7*time.Minute, func() {
		r.env.SetContinueAsNewSuggested(true)
		r.observe(workflows.Observation{SignalAt: &first})
		r.observe(workflows.Observation{SignalAt: &second})
	})
	r.env.ExecuteWorkflow(workflows.AlertRuleWorkflow, workflows.RuleInput{Rule: r.rule})
	require.True(t, r.env.IsWorkflowCompleted())
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(r.env.GetWorkflowError(), &can), "%v", r.env.GetWorkflowError())
	var next workflows.RuleInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, second, next.State.LastSignalAt.UTC(), "the signal sent around continue-as-new is kept")
	require.Equal(t, notifier.AlertOK, next.State.Alert.Status)
	require.Equal(t, 1, next.State.Alert.Episode)
	require.Len(t, next.State.Sent, 2)

	// The next run goes on from there: silent 5 minutes after the second
	// signal, it fires episode 2, and only that.
	r2 := newRuleEnvFor(t, r)
	r2.at(6*time.Minute, func() {
		v := r2.view()
		require.Equal(t, notifier.AlertFiring, v.State.Status)
		require.Equal(t, 2, v.State.Episode)
		require.Equal(t, second.Add(5*time.Minute), v.State.Since.UTC())
	})
	require.NoError(t, r2.run(next, 7*time.Minute))
	r.requireAlerts("1.triggered", "1.resolved", "2.triggered", "2.resolved")
	r.requireFanOuts("1.triggered", "1.resolved")
	r2.requireFanOuts("2.triggered", "2.resolved")
}

// newRuleEnvFor is a fresh test environment on r's store and rule, its
// clock where r's stopped.
func newRuleEnvFor(t *testing.T, r *ruleEnv) *ruleEnv {
	return newRuleEnvAt(t, r.store, r.rule, r.env.Now())
}

func TestNoSignals_NewStrategyIsWatchedFromTheChange(t *testing.T) {
	r := newRuleEnv(t, notifier.AlertRule{Type: notifier.RuleNoSignals, Threshold: 5, Strategy: "alpha"})
	r.at(2*time.Minute, func() {
		next := notifier.AlertRuleUpdate{Strategy: ptr("beta")}
		r.env.UpdateWorkflow(workflows.UpdateRuleName, "retarget", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { require.NoError(t, err) }, OnAccept: func() {},
			OnComplete: func(_ any, err error) { require.NoError(t, err) },
		}, next)
	})
	// alpha would have been silent 5 minutes at 5m; beta is watched from 2m.
	r.at(6*time.Minute, func() { r.requireAlerts() })
	r.at(7*time.Minute+time.Second, func() {
		v := r.view()
		require.Equal(t, notifier.AlertFiring, v.State.Status)
		require.Equal(t, ruleStart.Add(7*time.Minute), v.State.Since.UTC())
		d := alertData(t, r.requireAlerts("1.triggered")[0])
		require.Equal(t, "beta", d.Strategy)
	})
	require.NoError(t, r.run(workflows.RuleInput{Rule: r.rule}, 8*time.Minute))
}

func TestNoSignals_LateNewsOfASignalResolves(t *testing.T) {
	r := newRuleEnv(t, notifier.AlertRule{Type: notifier.RuleNoSignals, Threshold: 5, Strategy: "grid"})
	// Firing from 5m. News of a signal received at 6m reaches the workflow
	// only at 12m, as when its worker was down: more than the threshold
	// after the signal, yet it ends the silence that fired.
	r.at(12*time.Minute, func() {
		at := ruleStart.Add(6 * time.Minute)
		r.observe(workflows.Observation{SignalAt: &at})
	})
	r.at(12*time.Minute+time.Second, func() {
		// The silence of episode 1 ended at 6m; the one since 6m has lasted
		// six minutes, so episode 2 fires at once.
		r.requireAlerts("1.triggered", "1.resolved", "2.triggered")
		require.Equal(t, 2, r.view().State.Episode)
	})
	require.NoError(t, r.run(workflows.RuleInput{Rule: r.rule}, 13*time.Minute))
	evs := r.requireAlerts("1.triggered", "1.resolved", "2.triggered", "2.resolved")
	require.Equal(t, ts(ruleStart.Add(6*time.Minute)), alertData(t, evs[2]).Since)
}

func TestAlertRule_UpdateInFlightAtContinueAsNew(t *testing.T) {
	r := newRuleEnv(t, notifier.AlertRule{Type: notifier.RuleNoSignals, Threshold: 5, Strategy: "grid"})
	var answered bool
	r.at(time.Minute, func() {
		// The history is due to be continued just as a change arrives.
		r.env.SetContinueAsNewSuggested(true)
		r.env.UpdateWorkflow(workflows.UpdateRuleName, "late", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { require.NoError(t, err) }, OnAccept: func() {},
			OnComplete: func(v any, err error) {
				require.NoError(t, err)
				answered = true
			},
		}, notifier.AlertRuleUpdate{Threshold: ptr(9.0)})
		at := r.env.Now()
		r.observe(workflows.Observation{SignalAt: &at})
	})
	r.env.ExecuteWorkflow(workflows.AlertRuleWorkflow, workflows.RuleInput{Rule: r.rule})
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, r.env.GetWorkflowError(), &can)
	require.True(t, answered, "the update is answered before the run continues as new")
	var next workflows.RuleInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, 9.0, next.Rule.Threshold, "the change goes on with the rule")
	require.NotNil(t, next.State.LastSignalAt)
}

func TestAlertRule_ChangedWebhooksGetTheirOwnResolution(t *testing.T) {
	r := newRuleEnv(t, notifier.AlertRule{Type: notifier.RuleNoSignals, Threshold: 5, Strategy: "grid"})
	other := &notifier.Webhook{Name: "desk", URL: "https://hooks.example.com/y", Active: true,
		Events: []notifier.EventType{notifier.EventOrderFilled}}
	require.NoError(t, r.store.CreateWebhook(context.Background(), other))
	first := r.rule.WebhookIDs
	// Firing from 5m to the first webhook; at 6m the rule moves to another.
	r.at(6*time.Minute, func() {
		r.env.UpdateWorkflow(workflows.UpdateRuleName, "move", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { require.NoError(t, err) }, OnAccept: func() {},
			OnComplete: func(_ any, err error) { require.NoError(t, err) },
		}, notifier.AlertRuleUpdate{WebhookIDs: []string{other.ID}})
	})
	require.NoError(t, r.run(workflows.RuleInput{Rule: r.rule}, 7*time.Minute))
	evs := r.requireAlerts("1.triggered", "1.resolved", "2.triggered", "2.resolved")
	require.Equal(t, first, evs[0].Targets)
	require.Equal(t, first, evs[1].Targets, "the trigger's receivers get its resolution")
	require.Equal(t, `Alert rule "watch" was changed`, alertData(t, evs[1]).Message)
	require.Equal(t, []string{other.ID}, evs[2].Targets, "the silence goes on: the new webhook is told")
}
