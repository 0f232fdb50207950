package workflows_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/activities"
	"github.com/barfinex/notifier/sqlstore"
	"github.com/barfinex/notifier/workflows"
)

func TestServiceMonitor_AnnouncesChangesAndTellsRules(t *testing.T) {
	ctx := context.Background()
	store, err := sqlstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "n.db"))
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })

	var healthy atomic.Bool
	healthy.Store(true)
	var probes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		probes.Add(1)
		if !healthy.Load() {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	t.Cleanup(srv.Close)
	require.NoError(t, store.CreateService(ctx, &notifier.Service{
		Name: "inspector", HealthURL: srv.URL + "/health", CheckInterval: 10 * time.Second}))
	hook := &notifier.Webhook{Name: "ops", URL: "https://hooks.example.com/x", Active: true,
		Events: []notifier.EventType{notifier.EventServiceDown}}
	require.NoError(t, store.CreateWebhook(ctx, hook))
	rule := &notifier.AlertRule{Name: "down", Type: notifier.RuleServiceDown, Service: "inspector",
		Threshold: 30, Active: true, WebhookIDs: []string{hook.ID}}
	require.NoError(t, rule.Validate())
	require.NoError(t, store.CreateAlertRule(ctx, rule))

	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.Activities{Store: store})
	var mu sync.Mutex
	var fanOuts []string
	var told []notifier.ServiceStatus
	env.OnWorkflow(workflows.EventWorkflow, mock.Anything, mock.Anything).Return(
		func(_ workflow.Context, in workflows.EventInput) (*workflows.EventResult, error) {
			mu.Lock()
			defer mu.Unlock()
			fanOuts = append(fanOuts, string(in.EventType))
			return &workflows.EventResult{}, nil
		})
	env.OnSignalExternalWorkflow(mock.Anything, workflows.RuleWorkflowID(rule.ID), "",
		workflows.ObserveSignal, mock.Anything).Return(
		func(_, _, _, _ string, arg any) error {
			mu.Lock()
			defer mu.Unlock()
			told = append(told, arg.(workflows.Observation).Health.Status)
			return nil
		})

	env.RegisterDelayedCallback(func() { healthy.Store(false) }, 25*time.Second)
	env.RegisterDelayedCallback(func() {
		svc, err := store.Service(ctx, "inspector")
		require.NoError(t, err)
		require.Equal(t, notifier.ServiceDown, svc.Health.Status)
		require.Equal(t, "answered 502", svc.Health.LastError)
	}, 45*time.Second)
	env.RegisterDelayedCallback(func() { healthy.Store(true) }, 65*time.Second)
	// Deleting the service ends the monitor at its next check.
	env.RegisterDelayedCallback(func() {
		require.NoError(t, store.DeleteAlertRule(ctx, rule.ID))
		require.NoError(t, store.DeleteService(ctx, "inspector"))
	}, 95*time.Second)
	env.ExecuteWorkflow(workflows.ServiceMonitorWorkflow, workflows.MonitorInput{Service: "inspector"})

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []string{"service.down", "service.up"}, fanOuts,
		"a healthy start is silent; then one event per change")
	require.Equal(t, []notifier.ServiceStatus{notifier.ServiceUp, notifier.ServiceDown, notifier.ServiceUp}, told)
	require.EqualValues(t, 10, probes.Load(), "a probe every 10 s from 0 s to 90 s")
}

func TestServiceMonitor_ContinuesAsNew(t *testing.T) {
	ctx := context.Background()
	store, err := sqlstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "n.db"))
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	require.NoError(t, store.CreateService(ctx, &notifier.Service{
		Name: "advisor", HealthURL: srv.URL, CheckInterval: 10 * time.Second}))

	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.Activities{Store: store})
	env.RegisterDelayedCallback(func() { env.SetContinueAsNewSuggested(true) }, 35*time.Second)
	env.ExecuteWorkflow(workflows.ServiceMonitorWorkflow, workflows.MonitorInput{Service: "advisor"})

	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	require.Equal(t, "ServiceMonitorWorkflow", can.WorkflowType.Name)
	svc, err := store.Service(ctx, "advisor")
	require.NoError(t, err)
	require.Equal(t, notifier.ServiceUp, svc.Health.Status, "the health stays in the store for the next run")
}

func TestServiceMonitor_AnnouncesWhatAnInterruptedCheckRecorded(t *testing.T) {
	ctx := context.Background()
	store, err := sqlstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "n.db"))
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	require.NoError(t, store.CreateService(ctx, &notifier.Service{
		Name: "inspector", HealthURL: srv.URL, CheckInterval: 10 * time.Second}))
	// A check found the service down and recorded it; the monitor was then
	// interrupted before it announced anything.
	downAt := time.Date(2026, 3, 27, 12, 0, 0, 0, time.UTC)
	_, err = store.RecordProbe(ctx, "inspector", sqlstore.Probe{At: downAt, Error: "answered 503"})
	require.NoError(t, err)

	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.Activities{Store: store})
	var events []workflows.EventInput
	env.OnWorkflow(workflows.EventWorkflow, mock.Anything, mock.Anything).Return(
		func(_ workflow.Context, in workflows.EventInput) (*workflows.EventResult, error) {
			events = append(events, in)
			return &workflows.EventResult{}, nil
		})
	env.RegisterDelayedCallback(func() {
		require.NoError(t, store.DeleteService(ctx, "inspector"))
	}, 25*time.Second)
	env.ExecuteWorkflow(workflows.ServiceMonitorWorkflow, workflows.MonitorInput{Service: "inspector"})
	require.NoError(t, env.GetWorkflowError())

	require.Len(t, events, 1, "announced once, by the next check")
	require.Equal(t, notifier.EventServiceDown, events[0].EventType)
	ev, err := store.Event(ctx, events[0].EventID)
	require.NoError(t, err)
	env2, err := notifier.ParseEnvelope(ev.Body)
	require.NoError(t, err)
	require.Equal(t, downAt, env2.Timestamp, "dated when the service went down")
}
