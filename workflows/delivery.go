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
	Body       []byte
	// Run counts the runs of this delivery, 1 for the first.
	Run   int
	Retry activities.RetryConfig
}

// DeliveryResult is how a delivery ended.
type DeliveryResult struct {
	Status     notifier.DeliveryStatus
	Attempts   int
	StatusCode int
	Reason     string
}

// ErrDeliveryFailed is the type of the error a delivery workflow fails with
// when every attempt failed.
const ErrDeliveryFailed = "DeliveryFailed"

// DeliveryWorkflow delivers one event to one webhook: attempts on the retry
// schedule until the receiver answers 2xx or the attempts run out. It fails
// when they run out, so that a failed delivery shows as a failed workflow.
func DeliveryWorkflow(ctx workflow.Context, in DeliveryInput) (*DeliveryResult, error) {
	logger := workflow.GetLogger(ctx)
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		// Room past the HTTP deadline for reading the webhook and logging.
		StartToCloseTimeout: in.Retry.AttemptTimeout + 5*time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    in.Retry.InitialInterval,
			BackoffCoefficient: in.Retry.BackoffCoefficient,
			// Stated, not left to the default, so that the last wait is the
			// schedule's and not capped shorter.
			MaximumInterval: in.Retry.Delay(in.Retry.MaximumAttempts - 1),
			MaximumAttempts: int32(in.Retry.MaximumAttempts),
			NonRetryableErrorTypes: []string{
				activities.ErrRefusedTarget,
				activities.ErrWebhookInactive,
				activities.ErrWebhookDeleted,
			},
		},
	})

	var res activities.DeliverResult
	err := workflow.ExecuteActivity(ctx, a.Deliver, activities.DeliverInput{
		DeliveryID: in.DeliveryID,
		EventID:    in.EventID,
		EventType:  in.EventType,
		WebhookID:  in.WebhookID,
		Body:       in.Body,
		Run:        in.Run,
		Retry:      in.Retry,
	}).Get(ctx, &res)

	if err == nil {
		if !res.Recorded {
			rctx := workflow.WithActivityOptions(ctx, bookkeeping)
			err := workflow.ExecuteActivity(rctx, a.RecordAttempt,
				activities.RecordAttemptInput{Attempt: res.Attempt}).Get(ctx, nil)
			if err != nil {
				return nil, err
			}
		}
		return &DeliveryResult{
			Status:     notifier.DeliverySucceeded,
			Attempts:   res.Attempt.Number,
			StatusCode: res.Attempt.StatusCode,
		}, nil
	}

	status, reason := notifier.DeliveryFailed, failureReason(err)
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) &&
		(appErr.Type() == activities.ErrWebhookInactive || appErr.Type() == activities.ErrWebhookDeleted) {
		status = notifier.DeliveryCanceled
	}
	fctx := workflow.WithActivityOptions(ctx, bookkeeping)
	ferr := workflow.ExecuteActivity(fctx, a.FinishDelivery, activities.FinishDeliveryInput{
		DeliveryID: in.DeliveryID, Status: status, Reason: reason,
	}).Get(ctx, nil)
	if ferr != nil {
		return nil, ferr
	}
	logger.Info("delivery ended", "delivery_id", in.DeliveryID, "status", string(status), "err", reason)
	if status == notifier.DeliveryCanceled {
		return &DeliveryResult{Status: status, Reason: reason}, nil
	}
	return nil, temporal.NewNonRetryableApplicationError(reason, ErrDeliveryFailed, nil)
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

// failureReason is the message of the innermost application error: what the
// last attempt found.
func failureReason(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	var timeout *temporal.TimeoutError
	if errors.As(err, &timeout) {
		return "deliver: attempt timed out"
	}
	return err.Error()
}
