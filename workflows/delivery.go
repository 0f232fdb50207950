package workflows

import (
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/activities"
)

// DeliveryInput is one event to deliver to one webhook.
type DeliveryInput struct {
	DeliveryID string
	EventID    string
	EventType  notifier.EventType
	WebhookID  string
	Retry      activities.RetryConfig
}

// DeliveryResult is how a delivery ended.
type DeliveryResult struct {
	Status     notifier.DeliveryStatus
	Attempts   int
	StatusCode int
	Reason     string
}

// StateQuery is the query that reads a running delivery's DeliveryState.
const StateQuery = "state"

// DeliveryState is where a running delivery stands.
type DeliveryState struct {
	Status notifier.DeliveryStatus
	// Attempt counts the attempts this run has started.
	Attempt        int
	LastStatusCode int
	LastError      string
	NextAttemptAt  *time.Time
}

// maxThrottled bounds the waits for a busy host before an attempt counts as
// failed, which keeps a delivery's history bounded.
const maxThrottled = 30

// ErrDeliveryFailed is the type of the error a delivery workflow fails with
// when every attempt failed.
const ErrDeliveryFailed = "DeliveryFailed"

// DeliveryWorkflow delivers one event to one webhook: an attempt, and after
// each failed one a wait on the retry schedule, until the receiver answers
// 2xx or the attempts run out. It fails when they run out, so that a failed
// delivery is a Failed workflow; it ends Canceled when canceled, as when
// its webhook is deactivated.
//
// A delivery whose first attempt succeeds is one workflow task: the attempt
// runs as a local activity within it, and sets no search attribute, which
// leaves six events in its history. Later attempts are ordinary activities,
// each after a durable timer.
func DeliveryWorkflow(ctx workflow.Context, in DeliveryInput) (*DeliveryResult, error) {
	d := &delivery{in: in, state: DeliveryState{Status: notifier.DeliveryPending}}
	if err := workflow.SetQueryHandler(ctx, StateQuery, func() (DeliveryState, error) {
		return d.state, nil
	}); err != nil {
		return nil, err
	}
	// Room past the HTTP deadline for reading the webhook and logging.
	deadline := in.Retry.AttemptTimeout + 5*time.Second
	// These retries cover the attempt's own machinery (the store, a lost
	// worker), not the receiver: a receiver's failure is final for the
	// attempt, and the workflow schedules the next one.
	machinery := &temporal.RetryPolicy{
		InitialInterval:    time.Second,
		BackoffCoefficient: 2,
		MaximumAttempts:    3,
		NonRetryableErrorTypes: []string{
			activities.ErrAttemptFailed,
			activities.ErrThrottled,
			activities.ErrRejected,
			activities.ErrRefusedTarget,
			activities.ErrWebhookInactive,
			activities.ErrWebhookDeleted,
		},
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: deadline,
		RetryPolicy:         machinery,
		// A cancel waits for the attempt under way to end, so that an
		// attempt the receiver accepts meanwhile is in the log before the
		// delivery is finished (it then ends succeeded).
		WaitForCancellation: true,
	})
	// The first attempt runs as a local activity, inside the workflow task
	// that starts the delivery: no activity task to schedule, dispatch and
	// complete, so a delivery that succeeds at once is one workflow task.
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: deadline,
		RetryPolicy:         machinery,
	})

	throttled := 0
	for attempt := 1; ; attempt++ {
		d.state.Attempt, d.state.NextAttemptAt = attempt, nil
		var res activities.DeliverResult
		deliver := activities.DeliverInput{
			DeliveryID: in.DeliveryID,
			EventID:    in.EventID,
			EventType:  in.EventType,
			WebhookID:  in.WebhookID,
			Attempt:    attempt,
			Retry:      in.Retry,
		}
		var err error
		if attempt == 1 {
			err = workflow.ExecuteLocalActivity(lctx, a.Deliver, deliver).Get(ctx, &res)
		} else {
			err = workflow.ExecuteActivity(actx, a.Deliver, deliver).Get(ctx, &res)
		}

		switch {
		case err == nil:
			return d.succeed(ctx, &res)
		case ctx.Err() != nil:
			return d.cancel(ctx)
		case isType(err, activities.ErrWebhookInactive, activities.ErrWebhookDeleted):
			return d.cancel(ctx)
		case isType(err, activities.ErrThrottled) && throttled < maxThrottled:
			// Not an attempt: the receiver's host is busy with others. Wait
			// a little, longer each time, and make the same attempt again.
			throttled++
			wait := min(time.Duration(throttled)*time.Second, 10*time.Second)
			d.state.LastError = failureReason(err)
			if err := workflow.Sleep(ctx, wait); err != nil {
				return d.cancel(ctx)
			}
			attempt--
			continue
		}
		throttled = 0
		if err := d.noteFailure(ctx, attempt, err); err != nil {
			return nil, err
		}
		if isType(err, activities.ErrRefusedTarget, activities.ErrRejected) ||
			attempt >= in.Retry.MaximumAttempts {
			return d.fail(ctx)
		}

		// The schedule's wait, or longer if the receiver asked for it.
		wait := max(in.Retry.Delay(attempt), d.retryAfter)
		next := workflow.Now(ctx).Add(wait)
		d.state.Status, d.state.NextAttemptAt = notifier.DeliveryRetrying, &next
		if attempt == 1 {
			if err := d.setStatus(ctx, notifier.DeliveryRetrying); err != nil {
				return nil, err
			}
		}
		if err := workflow.Sleep(ctx, wait); err != nil {
			return d.cancel(ctx)
		}
	}
}

// delivery is one run of a delivery workflow.
type delivery struct {
	in    DeliveryInput
	state DeliveryState
	// retryAfter is the wait the last failed attempt's receiver asked for.
	retryAfter time.Duration
	// statusSet says the DeliveryStatus search attribute was set.
	statusSet bool
}

func (d *delivery) succeed(ctx workflow.Context,
	res *activities.DeliverResult) (*DeliveryResult, error) {
	if !res.Recorded {
		rctx := workflow.WithActivityOptions(ctx, bookkeeping)
		err := workflow.ExecuteActivity(rctx, a.RecordAttempt, activities.RecordAttemptInput{
			Attempt: res.Attempt, Status: notifier.DeliverySucceeded,
		}).Get(ctx, nil)
		if err != nil {
			return nil, err
		}
	}
	// A delivery that never left the happy path keeps no status attribute:
	// its Completed execution status says it. One that did is marked again.
	if d.statusSet {
		if err := d.setStatus(ctx, notifier.DeliverySucceeded); err != nil {
			return nil, err
		}
	}
	return &DeliveryResult{
		Status:     notifier.DeliverySucceeded,
		Attempts:   d.state.Attempt,
		StatusCode: res.Attempt.StatusCode,
	}, nil
}

// noteFailure keeps what a failed attempt found, for the state query and
// the workflow's failure, and logs the attempt when the activity could not
// (its worker was lost, or the store did not answer).
func (d *delivery) noteFailure(ctx workflow.Context, attempt int, err error) error {
	d.state.LastError, d.state.LastStatusCode, d.retryAfter = failureReason(err), 0, 0
	var appErr *temporal.ApplicationError
	var failure activities.AttemptFailure
	if errors.As(err, &appErr) && appErr.HasDetails() && appErr.Details(&failure) == nil {
		d.state.LastStatusCode, d.retryAfter = failure.StatusCode, failure.RetryAfter
	}
	if isType(err, activities.ErrAttemptFailed, activities.ErrRefusedTarget, activities.ErrRejected) {
		return nil
	}
	class := notifier.ErrClassInternal
	var timeout *temporal.TimeoutError
	switch {
	case errors.As(err, &timeout):
		class = notifier.ErrClassTimeout
	case isType(err, activities.ErrThrottled):
		class = notifier.ErrClassThrottled
	}
	in := activities.RecordAttemptInput{
		Attempt: &notifier.Attempt{
			DeliveryID: d.in.DeliveryID, Number: attempt, StartedAt: workflow.Now(ctx),
			ErrorClass: class, Error: d.state.LastError,
		},
		Status: notifier.DeliveryRetrying,
	}
	if attempt < d.in.Retry.MaximumAttempts {
		next := workflow.Now(ctx).Add(d.in.Retry.Delay(attempt))
		in.NextAttemptAt = &next
	} else {
		in.Status = notifier.DeliveryFailed
	}
	rctx := workflow.WithActivityOptions(ctx, bookkeeping)
	return workflow.ExecuteActivity(rctx, a.RecordAttempt, in).Get(ctx, nil)
}

func (d *delivery) fail(ctx workflow.Context) (*DeliveryResult, error) {
	d.state.Status, d.state.NextAttemptAt = notifier.DeliveryFailed, nil
	err := d.finish(ctx, ctx, notifier.DeliveryFailed)
	if isType(err, activities.ErrAlreadySucceeded) {
		// An attempt whose answer was lost (it timed out in Temporal after
		// the receiver accepted it and the log kept it) succeeded.
		return d.succeeded(ctx, err)
	} else if err != nil {
		return nil, err
	}
	workflow.GetLogger(ctx).Info("delivery failed", "delivery_id", d.in.DeliveryID,
		"attempt", d.state.Attempt, "err", d.state.LastError)
	return nil, temporal.NewNonRetryableApplicationError(d.state.LastError, ErrDeliveryFailed, nil)
}

// cancel ends the run as canceled: the webhook went away, or someone
// canceled the workflow. The store says which.
func (d *delivery) cancel(ctx workflow.Context) (*DeliveryResult, error) {
	d.state.Status, d.state.NextAttemptAt = notifier.DeliveryCanceled, nil
	dctx, release := workflow.NewDisconnectedContext(ctx)
	defer release()
	err := d.finish(ctx, dctx, notifier.DeliveryCanceled)
	if isType(err, activities.ErrAlreadySucceeded) {
		// The attempt under way when the cancel came was accepted.
		return d.succeeded(dctx, err)
	} else if err != nil {
		return nil, err
	}
	workflow.GetLogger(ctx).Info("delivery canceled", "delivery_id", d.in.DeliveryID)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	// Stopped by an attempt that found its webhook gone: a Canceled
	// workflow too, like one stopped by a cancel request.
	return nil, temporal.NewCanceledError(d.state.LastError)
}

// finish marks the delivery's end in the store and in its search attribute,
// working in wctx, which outlives a cancellation of ctx.
func (d *delivery) finish(ctx, wctx workflow.Context, status notifier.DeliveryStatus) error {
	fctx := workflow.WithActivityOptions(wctx, bookkeeping)
	var reason string
	err := workflow.ExecuteActivity(fctx, a.FinishDelivery, activities.FinishDeliveryInput{
		DeliveryID: d.in.DeliveryID, WebhookID: d.in.WebhookID, Status: status,
		Reason: d.state.LastError,
	}).Get(wctx, &reason)
	if err != nil {
		return err
	}
	if status == notifier.DeliveryCanceled {
		d.state.LastError = reason
	}
	return d.setStatus(wctx, status)
}

// succeeded ends a run whose success the workflow learned from the log
// (err, an ErrAlreadySucceeded error) rather than from the attempt.
func (d *delivery) succeeded(ctx workflow.Context, err error) (*DeliveryResult, error) {
	var appErr *temporal.ApplicationError
	var att activities.AttemptFailure
	if errors.As(err, &appErr) && appErr.HasDetails() {
		_ = appErr.Details(&att)
	}
	d.state.Status, d.state.LastError = notifier.DeliverySucceeded, ""
	if err := d.setStatus(ctx, notifier.DeliverySucceeded); err != nil {
		return nil, err
	}
	workflow.GetLogger(ctx).Info("delivery succeeded before it could be stopped",
		"delivery_id", d.in.DeliveryID)
	return &DeliveryResult{Status: notifier.DeliverySucceeded, Attempts: d.state.Attempt,
		StatusCode: att.StatusCode}, nil
}

func (d *delivery) setStatus(ctx workflow.Context, status notifier.DeliveryStatus) error {
	d.statusSet = true
	return workflow.UpsertTypedSearchAttributes(ctx, DeliveryStatusKey.ValueSet(string(status)))
}

// bookkeeping are the options of activities that only write the store:
// retried until the store answers.
var bookkeeping = workflow.ActivityOptions{
	StartToCloseTimeout: 30 * time.Second,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:    time.Second,
		BackoffCoefficient: 2,
		MaximumInterval:    time.Minute,
	},
}

func isType(err error, types ...string) bool {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		return false
	}
	for _, t := range types {
		if appErr.Type() == t {
			return true
		}
	}
	return false
}

// failureReason is what the last attempt found, for a human.
func failureReason(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	var timeout *temporal.TimeoutError
	if errors.As(err, &timeout) {
		return "deliver: attempt did not finish in time"
	}
	return err.Error()
}
