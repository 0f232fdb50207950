// Package metrics holds the notifier's Prometheus metrics, registered once
// on the default registry and served by the API at /metrics, and a handler
// that puts the Temporal SDK's own worker and client metrics there too.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	// HTTPRequests counts API requests by method, route and status.
	HTTPRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "notifier_http_requests_total",
		Help: "API requests, by method, route and status code.",
	}, []string{"method", "route", "status"})

	// EventsPublished counts events accepted for delivery, by type.
	EventsPublished = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "notifier_events_published_total",
		Help: "Events accepted for delivery (repeats of an id not counted), by type.",
	}, []string{"event_type"})

	// Attempts counts delivery attempts by outcome (ok or failed) and error
	// class ("" when ok).
	Attempts = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "notifier_delivery_attempts_total",
		Help: "Delivery attempts, by outcome (ok, failed) and error class.",
	}, []string{"outcome", "error_class"})

	// AttemptSeconds measures how long attempts take.
	AttemptSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "notifier_delivery_attempt_seconds",
		Help:    "Duration of delivery attempts, answer included.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
	})

	// FirstAttemptDelay measures the time from an event's publication to
	// the start of a delivery's first attempt.
	FirstAttemptDelay = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "notifier_delivery_first_attempt_delay_seconds",
		Help:    "Time from an event's publication to the start of a delivery's first attempt.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
	})

	// Deliveries counts deliveries that ended, by outcome: succeeded,
	// failed or canceled. Attempts tells the error classes.
	Deliveries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "notifier_deliveries_total",
		Help: "Deliveries that ended, by outcome: succeeded, failed or canceled.",
	}, []string{"outcome"})

	// Alerts counts alert rule transitions by rule type: fired or resolved.
	Alerts = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "notifier_alerts_total",
		Help: "Alert rule transitions, by rule type and transition (fired, resolved).",
	}, []string{"rule", "transition"})
)
