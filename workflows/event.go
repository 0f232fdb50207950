package workflows

import (
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/activities"
)

// EventInput is a published event to fan out. The envelope stays in the
// store: workflow inputs stay small however large the event and however
// many its webhooks.
type EventInput struct {
	EventID   string
	EventType notifier.EventType
	// After is where the fan-out goes on after a continue-as-new.
	After string
}

// EventResult says how many deliveries this run of the workflow started.
type EventResult struct {
	Started int
}

// EventWorkflow fans a published event out: it creates a delivery for every
// subscribed, active webhook and starts each as its own workflow, which
// outlives this one. It starts them a page at a time and continues as new
// after each full page, so that any number of webhooks stays within
// Temporal's limits on a workflow's history and pending children.
func EventWorkflow(ctx workflow.Context, in EventInput) (*EventResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		// The event is accepted: keep trying until the store answers.
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
		},
	})

	var fan activities.FanOutResult
	err := workflow.ExecuteActivity(ctx, a.FanOut, activities.FanOutInput{
		EventID: in.EventID, After: in.After,
	}).Get(ctx, &fan)
	if err != nil {
		return nil, err
	}

	started := make([]workflow.ChildWorkflowFuture, len(fan.Targets))
	for i, t := range fan.Targets {
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID:            t.DeliveryID,
			ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
			WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
			StaticSummary:         DeliverySummary(in.EventType, t.WebhookName, t.Host),
			TypedSearchAttributes: DeliveryAttributes(t.WebhookID, in.EventID, in.EventType),
		})
		started[i] = workflow.ExecuteChildWorkflow(cctx, DeliveryWorkflow, DeliveryInput{
			DeliveryID: t.DeliveryID,
			EventID:    in.EventID,
			EventType:  in.EventType,
			WebhookID:  t.WebhookID,
			Retry:      fan.Retry,
		})
	}

	for i, f := range started {
		err := f.GetChildWorkflowExecution().Get(ctx, nil)
		var dup *temporal.ChildWorkflowExecutionAlreadyStartedError
		if err != nil && !errors.As(err, &dup) {
			return nil, fmt.Errorf("start delivery %s: %w", fan.Targets[i].DeliveryID, err)
		}
	}
	if fan.More {
		next := in
		next.After = fan.Targets[len(fan.Targets)-1].DeliveryID
		return nil, workflow.NewContinueAsNewError(ctx, EventWorkflow, next)
	}
	return &EventResult{Started: len(started)}, nil
}

// DeliverySummary is the line the Web UI shows for a delivery: what goes
// where.
func DeliverySummary(typ notifier.EventType, webhookName, host string) string {
	return fmt.Sprintf("%s → %s (%s)", typ, webhookName, host)
}

// DeliveryAttributes are the search attributes a delivery starts with.
// DeliveryStatus is not among them: a delivery sets it when it leaves the
// happy path (see DeliveryWorkflow), so that one that succeeds at once
// costs no upsert.
func DeliveryAttributes(webhookID, eventID string,
	typ notifier.EventType) temporal.SearchAttributes {
	return temporal.NewSearchAttributes(
		WebhookIDKey.ValueSet(webhookID),
		EventIDKey.ValueSet(eventID),
		EventTypeKey.ValueSet(string(typ)),
	)
}
