// Package worker assembles the notifier's Temporal worker: its workflows and
// activities on one task queue, and the search attributes they need.
package worker

import (
	"context"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/barfinex/notifier/activities"
	"github.com/barfinex/notifier/workflows"
)

// New returns a worker, not yet started, that runs every notifier workflow
// and the given activities on a task queue (workflows.TaskQueue unless the
// deployment chose another).
func New(c client.Client, taskQueue string, acts *activities.Activities) sdkworker.Worker {
	w := sdkworker.New(c, taskQueue, sdkworker.Options{
		// On shutdown, attempts under way finish and are logged rather than
		// cut off and retried after their timeout.
		WorkerStopTimeout: acts.Retry.AttemptTimeout + 5*time.Second,
	})
	w.RegisterWorkflow(workflows.EventWorkflow)
	w.RegisterWorkflow(workflows.DeliveryWorkflow)
	w.RegisterWorkflow(workflows.PingWorkflow)
	w.RegisterActivity(acts)
	return w
}

// EnsureSearchAttributes registers on the namespace each custom search
// attribute the notifier sets that it lacks.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	ops := c.OperatorService()
	have, err := ops.ListSearchAttributes(ctx,
		&operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes: %w", err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for _, key := range workflows.SearchAttributeKeys {
		if _, ok := have.GetCustomAttributes()[key.GetName()]; !ok {
			missing[key.GetName()] = enumspb.IndexedValueType(key.GetValueType())
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = ops.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        namespace,
		SearchAttributes: missing,
	})
	if err != nil {
		return fmt.Errorf("add search attributes: %w", err)
	}
	return nil
}
