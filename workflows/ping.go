package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/barfinex/notifier/activities"
)

// PingWorkflowID returns a workflow id for a test ping of a webhook.
func PingWorkflowID(webhookID, nonce string) string { return "ping_" + webhookID + "_" + nonce }

// PingWorkflow sends one test ping to a webhook: one attempt, no retry.
func PingWorkflow(ctx workflow.Context, in activities.PingInput) (*activities.PingResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: activities.DefaultAttemptTimeout + 5*time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	var res activities.PingResult
	err := workflow.ExecuteActivity(ctx, a.Ping, in).Get(ctx, &res)
	return &res, err
}
