package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/activities"
)

// MonitorWorkflowID returns the id of a service's monitor workflow.
func MonitorWorkflowID(service string) string { return "monitor_" + service }

// MonitorInput names the service a monitor watches.
type MonitorInput struct {
	Service string
}

// monitorHistoryLimit is the history length past which a monitor continues
// as new.
var monitorHistoryLimit = 2000

// ServiceMonitorWorkflow probes a service's health URL every check
// interval for as long as the service is registered. When the service
// becomes unreachable it sends service.down to the webhooks subscribed to
// it, when it recovers service.up, and it tells the service_down rules that
// watch the service either way. The health lives in the store, so a new
// run of the monitor picks up where the last one was.
func ServiceMonitorWorkflow(ctx workflow.Context, in MonitorInput) error {
	ctx = workflow.WithActivityOptions(ctx, bookkeeping)
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		// The probe's own deadline, and room to record what it found.
		ScheduleToCloseTimeout: notifier.ProbeTimeout + 10*time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			MaximumAttempts:        3,
			NonRetryableErrorTypes: []string{activities.ErrServiceGone},
		},
	})
	interval := notifier.DefaultCheckInterval
	for {
		var res activities.CheckServiceResult
		err := workflow.ExecuteLocalActivity(lctx, a.CheckService, in.Service).Get(ctx, &res)
		switch {
		case isType(err, activities.ErrServiceGone):
			workflow.GetLogger(ctx).Info("service deleted; monitor ends", "service", in.Service)
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			// The store did not answer: the health stays as it was, and the
			// next check tries again.
			workflow.GetLogger(ctx).Warn("check service", "service", in.Service, "err", err)
		default:
			interval = res.Interval
			if res.Health.Status != res.Announced {
				err := announce(ctx, in.Service, &res)
				if isType(err, activities.ErrServiceGone) {
					return nil
				} else if err != nil {
					return err
				}
			}
		}

		info := workflow.GetInfo(ctx)
		if info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() >= monitorHistoryLimit {
			return workflow.NewContinueAsNewError(ctx, ServiceMonitorWorkflow, in)
		}
		if err := workflow.Sleep(ctx, interval); err != nil {
			return err
		}
	}
}

// announce sends service.down or service.up for a status not yet
// announced (none for a new service found healthy), tells the rules
// watching the service, and records the status as announced. The store
// says what was announced, so a check whose result was recorded but not
// announced (the monitor was interrupted between the two) is announced by
// the next one.
func announce(ctx workflow.Context, service string, res *activities.CheckServiceResult) error {
	health := res.Health
	var typ notifier.EventType
	var data map[string]any
	switch {
	case health.Status == notifier.ServiceDown:
		typ, data = notifier.EventServiceDown, map[string]any{
			"service": service, "health_url": res.HealthURL, "error": health.LastError,
			"since": health.Since.UTC().Format(notifier.TimestampLayout),
		}
	case health.Status == notifier.ServiceUp && res.Announced == notifier.ServiceDown:
		typ, data = notifier.EventServiceUp, map[string]any{
			"service": service, "health_url": res.HealthURL,
		}
		if res.AnnouncedSince != nil {
			data["down_since"] = res.AnnouncedSince.UTC().Format(notifier.TimestampLayout)
		}
	}
	if typ != "" {
		// Named by the service and the moment of the change: one event per
		// change, however often this step runs.
		eventID := notifier.ServiceEventID(service, health.Status, *health.Since)
		err := workflow.ExecuteActivity(ctx, a.StoreServiceEvent, activities.ServiceEventInput{
			EventID: eventID, Type: typ, Timestamp: *health.Since, Data: data,
		}).Get(ctx, nil)
		if err != nil {
			return err
		}
		if err := startFanOut(ctx, eventID, typ, "monitor of "+service); err != nil {
			return err
		}
	}

	var rules []string
	err := workflow.ExecuteActivity(ctx, a.WatchingRules, activities.WatchingRulesInput{
		Type: notifier.RuleServiceDown, Target: service,
	}).Get(ctx, &rules)
	if err != nil {
		return err
	}
	signals := make([]workflow.Future, len(rules))
	for i, id := range rules {
		signals[i] = workflow.SignalExternalWorkflow(ctx, RuleWorkflowID(id), "", ObserveSignal,
			Observation{Health: &health})
	}
	for i, f := range signals {
		// A rule whose workflow is gone reads the health from the store
		// when it starts again.
		if err := f.Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("tell rule", "rule_id", rules[i], "err", err)
		}
	}
	return workflow.ExecuteActivity(ctx, a.MarkAnnounced, activities.MarkAnnouncedInput{
		Service: service, Status: health.Status, Since: health.Since,
	}).Get(ctx, nil)
}
