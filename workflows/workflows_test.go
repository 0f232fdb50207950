package workflows_test

import (
	"context"
	"errors"
	"fmt"
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

// a names activities for the mocks; its fields are never used.
var a *activities.Activities

func newEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.Activities{})
	t.Cleanup(func() { env.AssertExpectations(t) })
	return env
}

func deliveryInput() workflows.DeliveryInput {
	return workflows.DeliveryInput{
		DeliveryID: notifier.DeliveryID("evt_1", "wh_1"),
		EventID:    "evt_1",
		EventType:  notifier.EventOrderFilled,
		WebhookID:  "wh_1",
		Retry:      activities.DefaultRetry,
	}
}

func attemptFailed(code int) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("deliver: receiver answered %d", code),
		activities.ErrAttemptFailed, nil,
		activities.AttemptFailure{StatusCode: code, ErrorClass: notifier.ErrClassHTTPStatus})
}

func succeeded(in activities.DeliverInput) *activities.DeliverResult {
	return &activities.DeliverResult{Recorded: true, Attempt: &notifier.Attempt{
		DeliveryID: in.DeliveryID, Number: in.Attempt, StatusCode: 200,
	}}
}

func finishInput(status notifier.DeliveryStatus, reason string) activities.FinishDeliveryInput {
	return activities.FinishDeliveryInput{
		DeliveryID: deliveryInput().DeliveryID, WebhookID: "wh_1", Status: status, Reason: reason,
	}
}

func TestDelivery_RetryScheduleThenFail(t *testing.T) {
	env := newEnv(t)
	var calls []time.Time
	var numbers []int
	env.OnActivity(a.Deliver, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.DeliverInput) (*activities.DeliverResult, error) {
			calls = append(calls, env.Now())
			numbers = append(numbers, in.Attempt)
			return nil, attemptFailed(500)
		})
	env.OnActivity(a.FinishDelivery, mock.Anything, finishInput(notifier.DeliveryFailed, "deliver: receiver answered 500")).
		Return("deliver: receiver answered 500", nil).Once()
	start := env.Now()
	env.RegisterDelayedCallback(func() {
		val, err := env.QueryWorkflow(workflows.StateQuery)
		require.NoError(t, err)
		var st workflows.DeliveryState
		require.NoError(t, val.Get(&st))
		require.Equal(t, notifier.DeliveryRetrying, st.Status)
		require.Equal(t, 1, st.Attempt)
		require.Equal(t, 500, st.LastStatusCode)
		require.Equal(t, "deliver: receiver answered 500", st.LastError)
		require.Equal(t, start.Add(10*time.Second), st.NextAttemptAt.In(start.Location()))
	}, 5*time.Second)

	env.ExecuteWorkflow(workflows.DeliveryWorkflow, deliveryInput())

	require.True(t, env.IsWorkflowCompleted())
	require.Equal(t, []int{1, 2, 3, 4}, numbers, "four attempts, then no more")
	var gaps []time.Duration
	for i := 1; i < len(calls); i++ {
		gaps = append(gaps, calls[i].Sub(calls[i-1]))
	}
	require.Equal(t, []time.Duration{10 * time.Second, 30 * time.Second, 90 * time.Second}, gaps)

	var appErr *temporal.ApplicationError
	require.ErrorAs(t, env.GetWorkflowError(), &appErr)
	require.Equal(t, workflows.ErrDeliveryFailed, appErr.Type())
	require.Equal(t, "deliver: receiver answered 500", appErr.Message())
}

func TestDelivery_SuccessOnSecondAttemptStops(t *testing.T) {
	env := newEnv(t)
	calls := 0
	env.OnActivity(a.Deliver, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.DeliverInput) (*activities.DeliverResult, error) {
			calls++
			if calls == 1 {
				return nil, attemptFailed(503)
			}
			return succeeded(in), nil
		})

	env.ExecuteWorkflow(workflows.DeliveryWorkflow, deliveryInput())

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, 2, calls)
	var res workflows.DeliveryResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, workflows.DeliveryResult{Status: notifier.DeliverySucceeded, Attempts: 2, StatusCode: 200}, res)
}

func TestDelivery_WebhookGoneStopsRetries(t *testing.T) {
	for _, errType := range []string{activities.ErrWebhookInactive, activities.ErrWebhookDeleted} {
		t.Run(errType, func(t *testing.T) {
			env := newEnv(t)
			calls := 0
			env.OnActivity(a.Deliver, mock.Anything, mock.Anything).Return(
				func(context.Context, activities.DeliverInput) (*activities.DeliverResult, error) {
					calls++
					if calls == 1 {
						return nil, attemptFailed(500)
					}
					return nil, temporal.NewNonRetryableApplicationError("deliver: webhook gone", errType, nil)
				})
			env.OnActivity(a.FinishDelivery, mock.Anything, finishInput(notifier.DeliveryCanceled, "deliver: receiver answered 500")).
				Return("canceled: the webhook was deactivated", nil).Once()

			env.ExecuteWorkflow(workflows.DeliveryWorkflow, deliveryInput())

			var canceled *temporal.CanceledError
			require.ErrorAs(t, env.GetWorkflowError(), &canceled, "a Canceled workflow")
			require.Equal(t, 2, calls, "no attempt after the webhook went away")
			var reason string
			require.NoError(t, canceled.Details(&reason))
			require.Equal(t, "canceled: the webhook was deactivated", reason)
		})
	}
}

func TestDelivery_CanceledDuringBackoff(t *testing.T) {
	env := newEnv(t)
	calls := 0
	env.OnActivity(a.Deliver, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.DeliverInput) (*activities.DeliverResult, error) {
			calls++
			return nil, attemptFailed(500)
		})
	env.OnActivity(a.FinishDelivery, mock.Anything, finishInput(notifier.DeliveryCanceled, "deliver: receiver answered 500")).
		Return("canceled: the webhook was deactivated", nil).Once()
	env.RegisterDelayedCallback(env.CancelWorkflow, 5*time.Second)

	env.ExecuteWorkflow(workflows.DeliveryWorkflow, deliveryInput())

	require.Equal(t, 1, calls)
	var canceled *temporal.CanceledError
	require.ErrorAs(t, env.GetWorkflowError(), &canceled)
}

func TestDelivery_RefusedTargetIsNotRetried(t *testing.T) {
	env := newEnv(t)
	calls := 0
	env.OnActivity(a.Deliver, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.DeliverInput) (*activities.DeliverResult, error) {
			calls++
			return nil, temporal.NewNonRetryableApplicationError("deliver: refused", activities.ErrRefusedTarget, nil)
		})
	env.OnActivity(a.FinishDelivery, mock.Anything, finishInput(notifier.DeliveryFailed, "deliver: refused")).
		Return("deliver: refused", nil).Once()

	env.ExecuteWorkflow(workflows.DeliveryWorkflow, deliveryInput())

	require.Error(t, env.GetWorkflowError())
	require.Equal(t, 1, calls)
}

func TestDelivery_AttemptLostIsLoggedAndRetried(t *testing.T) {
	env := newEnv(t)
	calls := 0
	env.OnActivity(a.Deliver, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.DeliverInput) (*activities.DeliverResult, error) {
			calls++
			if in.Attempt == 1 {
				return nil, errors.New("database is locked")
			}
			return succeeded(in), nil
		})
	env.OnActivity(a.RecordAttempt, mock.Anything, mock.MatchedBy(func(in activities.RecordAttemptInput) bool {
		return in.Attempt.Number == 1 && in.Attempt.ErrorClass == notifier.ErrClassInternal &&
			in.Status == notifier.DeliveryRetrying && in.NextAttemptAt != nil
	})).Return(nil).Once()

	env.ExecuteWorkflow(workflows.DeliveryWorkflow, deliveryInput())

	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, 4, calls, "the first attempt's machinery is retried three times, then the schedule goes on")
}

func TestDelivery_ThrottledIsNotAnAttempt(t *testing.T) {
	env := newEnv(t)
	var numbers []int
	env.OnActivity(a.Deliver, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.DeliverInput) (*activities.DeliverResult, error) {
			numbers = append(numbers, in.Attempt)
			if len(numbers) <= 3 {
				return nil, temporal.NewNonRetryableApplicationError("deliver: busy", activities.ErrThrottled, nil)
			}
			return succeeded(in), nil
		})

	env.ExecuteWorkflow(workflows.DeliveryWorkflow, deliveryInput())

	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []int{1, 1, 1, 1}, numbers, "the same attempt is made again")
}

func TestDelivery_UnloggedSuccessIsLogged(t *testing.T) {
	env := newEnv(t)
	att := &notifier.Attempt{DeliveryID: deliveryInput().DeliveryID, Number: 1, StatusCode: 202}
	env.OnActivity(a.Deliver, mock.Anything, mock.Anything).
		Return(&activities.DeliverResult{Attempt: att, Recorded: false}, nil).Once()
	env.OnActivity(a.RecordAttempt, mock.Anything, mock.MatchedBy(func(in activities.RecordAttemptInput) bool {
		return in.Attempt.Number == 1 && in.Attempt.StatusCode == 202 && in.Status == notifier.DeliverySucceeded
	})).Return(errors.New("database is locked")).Once()
	env.OnActivity(a.RecordAttempt, mock.Anything, mock.Anything).Return(nil).Once()

	env.ExecuteWorkflow(workflows.DeliveryWorkflow, deliveryInput())

	require.NoError(t, env.GetWorkflowError())
}

func TestEvent_FansOutToChildDeliveries(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflow(workflows.DeliveryWorkflow)
	targets := []sqlstore.Target{
		{DeliveryID: notifier.DeliveryID("evt_1", "wh_a"), WebhookID: "wh_a", WebhookName: "a", Host: "a.example"},
		{DeliveryID: notifier.DeliveryID("evt_1", "wh_b"), WebhookID: "wh_b", WebhookName: "b", Host: "b.example"},
	}
	retry := activities.DefaultRetry
	env.OnActivity(a.FanOut, mock.Anything, activities.FanOutInput{EventID: "evt_1"}).
		Return(&activities.FanOutResult{Targets: targets, Retry: retry}, nil).Once()
	env.OnWorkflow(workflows.DeliveryWorkflow, mock.Anything, mock.Anything).
		Return(&workflows.DeliveryResult{Status: notifier.DeliverySucceeded}, nil)
	started := map[string]workflows.DeliveryInput{}
	env.SetOnChildWorkflowStartedListener(func(info *workflow.Info, _ workflow.Context, args converter.EncodedValues) {
		var in workflows.DeliveryInput
		require.NoError(t, args.Get(&in))
		require.Equal(t, in.DeliveryID, info.WorkflowExecution.ID, "a delivery's workflow id is its id")
		started[in.WebhookID] = in
	})

	env.ExecuteWorkflow(workflows.EventWorkflow, workflows.EventInput{
		EventID: "evt_1", EventType: notifier.EventOrderFilled,
	})

	require.NoError(t, env.GetWorkflowError())
	var res workflows.EventResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, 2, res.Started)
	require.Len(t, started, 2)
	for _, tg := range targets {
		in := started[tg.WebhookID]
		require.Equal(t, tg.DeliveryID, in.DeliveryID)
		require.Equal(t, "evt_1", in.EventID)
		require.Equal(t, retry, in.Retry)
	}
}

func TestEvent_FullPageContinuesAsNew(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflow(workflows.DeliveryWorkflow)
	targets := []sqlstore.Target{
		{DeliveryID: "dlv_a", WebhookID: "wh_a", WebhookName: "a", Host: "a.example"},
		{DeliveryID: "dlv_b", WebhookID: "wh_b", WebhookName: "b", Host: "b.example"},
	}
	env.OnActivity(a.FanOut, mock.Anything, activities.FanOutInput{EventID: "evt_1", After: "dlv_x"}).
		Return(&activities.FanOutResult{Targets: targets, Retry: activities.DefaultRetry, More: true}, nil).Once()
	env.OnWorkflow(workflows.DeliveryWorkflow, mock.Anything, mock.Anything).
		Return(&workflows.DeliveryResult{Status: notifier.DeliverySucceeded}, nil)

	env.ExecuteWorkflow(workflows.EventWorkflow, workflows.EventInput{
		EventID: "evt_1", EventType: notifier.EventOrderFilled, After: "dlv_x",
	})

	var cont *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &cont)
	var next workflows.EventInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(cont.Input, &next))
	require.Equal(t, workflows.EventInput{EventID: "evt_1", EventType: notifier.EventOrderFilled, After: "dlv_b"}, next)
}

func TestDelivery_RetryAfterIsHonoured(t *testing.T) {
	env := newEnv(t)
	var calls []time.Time
	env.OnActivity(a.Deliver, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.DeliverInput) (*activities.DeliverResult, error) {
			calls = append(calls, env.Now())
			if in.Attempt == 1 {
				return nil, temporal.NewNonRetryableApplicationError("deliver: Slack answered 429",
					activities.ErrAttemptFailed, nil, activities.AttemptFailure{
						StatusCode: 429, ErrorClass: notifier.ErrClassHTTPStatus, RetryAfter: 20 * time.Second,
					})
			}
			return succeeded(in), nil
		})

	env.ExecuteWorkflow(workflows.DeliveryWorkflow, deliveryInput())

	require.NoError(t, env.GetWorkflowError())
	require.Len(t, calls, 2)
	require.Equal(t, 20*time.Second, calls[1].Sub(calls[0]), "the receiver's 20 s, not the schedule's 10 s")
}

func TestDelivery_RejectedIsNotRetried(t *testing.T) {
	env := newEnv(t)
	calls := 0
	env.OnActivity(a.Deliver, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.DeliverInput) (*activities.DeliverResult, error) {
			calls++
			return nil, temporal.NewNonRetryableApplicationError("deliver: Slack answered 400",
				activities.ErrRejected, nil, activities.AttemptFailure{StatusCode: 400})
		})
	env.OnActivity(a.FinishDelivery, mock.Anything, mock.Anything).Return("deliver: Slack answered 400", nil).Once()

	env.ExecuteWorkflow(workflows.DeliveryWorkflow, deliveryInput())

	require.Error(t, env.GetWorkflowError())
	require.Equal(t, 1, calls)
}

func TestDelivery_CanceledMidAttemptThatSucceededEndsSucceeded(t *testing.T) {
	env := newEnv(t)
	// The attempt under way when the cancel comes is accepted and logged;
	// the workflow learns it when it goes to mark the delivery canceled.
	env.OnActivity(a.Deliver, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.DeliverInput) (*activities.DeliverResult, error) {
			return nil, attemptFailed(500)
		})
	env.OnActivity(a.FinishDelivery, mock.Anything, mock.Anything).Return("",
		temporal.NewNonRetryableApplicationError("the delivery succeeded before it could be stopped",
			activities.ErrAlreadySucceeded, nil, activities.AttemptFailure{StatusCode: 200})).Once()
	env.RegisterDelayedCallback(env.CancelWorkflow, 5*time.Second)

	env.ExecuteWorkflow(workflows.DeliveryWorkflow, deliveryInput())

	require.NoError(t, env.GetWorkflowError(), "a Completed workflow, as the delivery succeeded")
	var res workflows.DeliveryResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, notifier.DeliverySucceeded, res.Status)
	require.Equal(t, 200, res.StatusCode)
}
