// Package workflows holds the notifier's Temporal workflows: the fan-out of
// a published event, the delivery of one event to one webhook, the test
// ping, alert rules and the monitors of connected services. They are
// deterministic; everything that touches the outside world runs in the
// activities package.
package workflows

import (
	"fmt"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/activities"
)

// TaskQueue is the default task queue of the notifier's workers. A delivery
// runs on the task queue its event was published to.
const TaskQueue = "notifier"

// Custom search attributes set on deliveries, so that operators can find
// them in the Web UI. They must be registered on the namespace.
var (
	WebhookIDKey = temporal.NewSearchAttributeKeyKeyword("WebhookId")
	EventIDKey   = temporal.NewSearchAttributeKeyKeyword("EventId")
	EventTypeKey = temporal.NewSearchAttributeKeyKeyword("EventType")
	// DeliveryStatusKey holds the status of a delivery that left the happy
	// path: retrying, then succeeded, failed or canceled. A delivery that
	// is pending or succeeded at its first attempt has none (its execution
	// status, Running or Completed, says it).
	DeliveryStatusKey = temporal.NewSearchAttributeKeyKeyword("DeliveryStatus")
)

// SearchAttributeKeys lists every custom search attribute the notifier uses.
var SearchAttributeKeys = []temporal.SearchAttributeKey{
	WebhookIDKey, EventIDKey, EventTypeKey, DeliveryStatusKey,
}

// EventWorkflowID returns the id of the workflow that fans an event out.
func EventWorkflowID(eventID string) string { return "event_" + eventID }

// a is the receiver through which workflows name activities, so that names
// and arguments are checked by the compiler. Its fields are never used in
// workflow code.
var a *activities.Activities

// RuleStartOptions are the options that start an alert rule's workflow.
func RuleStartOptions(rule *notifier.AlertRule, taskQueue string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:        RuleWorkflowID(rule.ID),
		TaskQueue: taskQueue,
		// A run already under way is an error, not a handle to it.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary: fmt.Sprintf("alert rule %q: %s on %s", rule.Name, rule.Type,
			rule.Target()),
	}
}

// MonitorStartOptions are the options that start a service's monitor.
func MonitorStartOptions(service, taskQueue string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                                       MonitorWorkflowID(service),
		TaskQueue:                                taskQueue,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            "health of service " + service,
	}
}
