// Package worker assembles the notifier's Temporal worker: its workflows and
// activities on one task queue, the search attributes they need, and the
// long-lived workflows of alert rules and service monitors.
package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/barfinex/notifier/activities"
	"github.com/barfinex/notifier/sqlstore"
	"github.com/barfinex/notifier/workflows"
)

// Options tune a worker. Zero fields take the defaults.
type Options struct {
	// WorkflowPollers and ActivityPollers are the pollers of each kind of
	// task. Default DefaultPollers each, well above the SDK's 2: with
	// deliveries this short, idle pollers are what keeps tasks moving.
	WorkflowPollers int
	ActivityPollers int
}

// DefaultCacheSize is how many workflows a worker process keeps in memory
// by default (the SDK keeps 10 000). A delivery that succeeds at once
// leaves the cache when it completes; one waiting in backoff stays in it
// until evicted, and replays its short history when its timer fires.
const DefaultCacheSize = 1000

// SetCacheSize bounds the workflows every worker of this process keeps in
// memory. It must be called before any worker starts.
func SetCacheSize(n int) { sdkworker.SetStickyWorkflowCacheSize(n) }

// DefaultPollers is the default of Options.WorkflowPollers and
// Options.ActivityPollers.
const DefaultPollers = 16

// New returns a worker, not yet started, that runs every notifier workflow
// and the given activities on a task queue (workflows.TaskQueue unless the
// deployment chose another). A client used to start workflows on the same
// task queue hands their first task to this worker straight away (eager
// start), when it has room.
func New(c client.Client, taskQueue string, acts *activities.Activities,
	opts Options) sdkworker.Worker {
	if opts.WorkflowPollers <= 0 {
		opts.WorkflowPollers = DefaultPollers
	}
	if opts.ActivityPollers <= 0 {
		opts.ActivityPollers = DefaultPollers
	}
	w := sdkworker.New(c, taskQueue, sdkworker.Options{
		MaxConcurrentWorkflowTaskPollers: opts.WorkflowPollers,
		MaxConcurrentActivityTaskPollers: opts.ActivityPollers,
		// On shutdown, attempts under way finish and are logged rather than
		// cut off and retried after their timeout.
		WorkerStopTimeout: acts.Retry.AttemptTimeout + 5*time.Second,
	})
	w.RegisterWorkflow(workflows.EventWorkflow)
	w.RegisterWorkflow(workflows.DeliveryWorkflow)
	w.RegisterWorkflow(workflows.PingWorkflow)
	w.RegisterWorkflow(workflows.AlertRuleWorkflow)
	w.RegisterWorkflow(workflows.ServiceMonitorWorkflow)
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

// EnsureWatchers starts the workflow of every stored alert rule and the
// monitor of every registered service that is not running, as after a
// workflow was terminated by hand or a start was lost. A rule started again
// takes up the state it recorded last.
func EnsureWatchers(ctx context.Context, c client.Client, store *sqlstore.Store,
	taskQueue string) error {
	rules, err := store.AllAlertRules(ctx)
	if err != nil {
		return fmt.Errorf("list alert rules: %w", err)
	}
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	for _, r := range rules {
		_, err := c.ExecuteWorkflow(ctx, workflows.RuleStartOptions(&r.AlertRule, taskQueue),
			workflows.AlertRuleWorkflow, workflows.RuleInput{Rule: r.AlertRule})
		if err != nil && !errors.As(err, &started) {
			return fmt.Errorf("start alert rule %s: %w", r.ID, err)
		}
	}
	after := ""
	for {
		svcs, next, err := store.Services(ctx, 500, after)
		if err != nil {
			return fmt.Errorf("list services: %w", err)
		}
		for _, svc := range svcs {
			_, err := c.ExecuteWorkflow(ctx, workflows.MonitorStartOptions(svc.Name, taskQueue),
				workflows.ServiceMonitorWorkflow, workflows.MonitorInput{Service: svc.Name})
			if err != nil && !errors.As(err, &started) {
				return fmt.Errorf("start monitor of %s: %w", svc.Name, err)
			}
		}
		if after = next; after == "" {
			return nil
		}
	}
}
