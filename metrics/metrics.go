// Package metrics holds the notifier's Prometheus metrics, registered once
// on the default registry and served by the API at /metrics.
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

	// Attempts counts delivery attempts by outcome: ok, or the error class.
	Attempts = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "notifier_delivery_attempts_total",
		Help: "Delivery attempts, by outcome: ok or the error class.",
	}, []string{"outcome"})

	// AttemptSeconds measures how long attempts take.
	AttemptSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "notifier_delivery_attempt_seconds",
		Help:    "Duration of delivery attempts, answer included.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
	})

	// Alerts counts alert rule transitions by rule type: fired or resolved.
	Alerts = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "notifier_alerts_total",
		Help: "Alert rule transitions, by rule type and transition (fired, resolved).",
	}, []string{"rule", "transition"})
)
