package workflows

import (
	"errors"
	"fmt"
	"net/url"
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
}

// EventResult lists the deliveries the event started.
type EventResult struct {
	DeliveryIDs []string
}

// EventWorkflow fans a published event out: it creates a delivery for every
// subscribed, active webhook and starts each as its own workflow, which
// outlives this one.
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
	err := workflow.ExecuteActivity(ctx, a.FanOut, activities.FanOutInput{EventID: in.EventID}).Get(ctx, &fan)
	if err != nil {
		return nil, err
	}

	started := make([]workflow.ChildWorkflowFuture, len(fan.Targets))
	for i, t := range fan.Targets {
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID:            t.DeliveryID,
			ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
			WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
			StaticSummary:         DeliverySummary(in.EventType, t.WebhookName, t.URL),
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

	res := &EventResult{}
	for i, f := range started {
		err := f.GetChildWorkflowExecution().Get(ctx, nil)
		var dup *temporal.ChildWorkflowExecutionAlreadyStartedError
		if err != nil && !errors.As(err, &dup) {
			return nil, fmt.Errorf("start delivery %s: %w", fan.Targets[i].DeliveryID, err)
		}
		res.DeliveryIDs = append(res.DeliveryIDs, fan.Targets[i].DeliveryID)
	}
	return res, nil
}

// DeliverySummary is the line the Web UI shows for a delivery: what goes
// where.
func DeliverySummary(typ notifier.EventType, webhookName, rawURL string) string {
	host := rawURL
	if u, err := url.Parse(rawURL); err == nil {
		host = u.Host
	}
	return fmt.Sprintf("%s → %s (%s)", typ, webhookName, host)
}

// DeliveryAttributes are the search attributes a delivery starts with.
func DeliveryAttributes(webhookID, eventID string, typ notifier.EventType) temporal.SearchAttributes {
	return temporal.NewSearchAttributes(
		WebhookIDKey.ValueSet(webhookID),
		EventIDKey.ValueSet(eventID),
		EventTypeKey.ValueSet(string(typ)),
		DeliveryStatusKey.ValueSet(string(notifier.DeliveryPending)),
	)
}
