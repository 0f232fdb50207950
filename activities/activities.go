// Package activities holds the notifier's Temporal activities: every step
// that touches the outside world. They post deliveries and test pings to
// receivers and keep the store's delivery log.
package activities

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/sqlstore"
)

// Application error types that activities return. The non-retryable ones are
// also listed in the workflows' retry policies.
const (
	// ErrAttemptFailed: a receiver did not accept a delivery; retried.
	ErrAttemptFailed = "AttemptFailed"
	// ErrRefusedTarget: the receiver's address is not allowed; not retried.
	ErrRefusedTarget = "RefusedTarget"
	// ErrWebhookInactive: the webhook was deactivated; not retried.
	ErrWebhookInactive = "WebhookInactive"
	// ErrWebhookDeleted: the webhook no longer exists; not retried.
	ErrWebhookDeleted = "WebhookDeleted"
)

// RetryConfig is the schedule of a delivery's attempts: the first retry
// waits InitialInterval and each next one BackoffCoefficient times longer.
type RetryConfig struct {
	InitialInterval    time.Duration
	BackoffCoefficient float64
	MaximumAttempts    int
	// AttemptTimeout bounds one attempt, body included.
	AttemptTimeout time.Duration
}

// DefaultRetry is the schedule receivers are promised: four attempts, the
// retries 10 s, 30 s and 90 s apart, each within 10 s.
var DefaultRetry = RetryConfig{
	InitialInterval:    10 * time.Second,
	BackoffCoefficient: 3,
	MaximumAttempts:    4,
	AttemptTimeout:     DefaultAttemptTimeout,
}

// Delay returns the wait after failed attempt n (counted from 1).
func (r RetryConfig) Delay(n int) time.Duration {
	d := float64(r.InitialInterval)
	for i := 1; i < n; i++ {
		d *= r.BackoffCoefficient
	}
	return time.Duration(d)
}

// Activities are the notifier's activities, with what they depend on.
type Activities struct {
	Store  *sqlstore.Store
	Sender *Sender
	// Retry is handed to each delivery when its event fans out.
	Retry RetryConfig
}

// FanOutInput names the event to fan out.
type FanOutInput struct {
	EventID string
}

// FanOutResult lists the deliveries to start, with their retry schedule.
type FanOutResult struct {
	Targets []sqlstore.Target
	Retry   RetryConfig
}

// FanOut creates a delivery of the event for each subscribed, active webhook.
func (a *Activities) FanOut(ctx context.Context, in FanOutInput) (*FanOutResult, error) {
	targets, err := a.Store.FanOut(ctx, in.EventID)
	if err != nil {
		return nil, err
	}
	return &FanOutResult{Targets: targets, Retry: a.Retry}, nil
}

// DeliverInput is one attempt's input. It holds no secret: the activity reads
// the webhook's secret from the store when it signs.
type DeliverInput struct {
	DeliveryID string
	EventID    string
	EventType  notifier.EventType
	WebhookID  string
	// Body is the envelope, the same bytes on every attempt.
	Body  []byte
	Run   int
	Retry RetryConfig
}

// DeliverResult describes the attempt that succeeded.
type DeliverResult struct {
	Attempt *notifier.Attempt
	// Recorded is false when the attempt could not be written to the log;
	// the workflow then writes it.
	Recorded bool
}

// Deliver makes one attempt of a delivery and records it.
func (a *Activities) Deliver(ctx context.Context, in DeliverInput) (*DeliverResult, error) {
	logger := activity.GetLogger(ctx)
	number := int(activity.GetInfo(ctx).Attempt)

	webhook, err := a.Store.Webhook(ctx, in.WebhookID)
	switch {
	case notifier.ErrorCode(err) == notifier.ENOTFOUND:
		return nil, temporal.NewNonRetryableApplicationError(
			"deliver: webhook deleted", ErrWebhookDeleted, nil)
	case err != nil:
		return nil, err
	case !webhook.Active:
		return nil, temporal.NewNonRetryableApplicationError(
			"deliver: webhook inactive", ErrWebhookInactive, nil)
	}

	headers := deliveryHeaders(webhook, in.EventType, in.EventID, in.DeliveryID, in.Body)
	headers.Set("X-Barfinex-Attempt", strconv.Itoa(number))
	att := a.Sender.Post(ctx, Request{URL: webhook.URL, Body: in.Body, Headers: headers})
	att.DeliveryID, att.Run, att.Number = in.DeliveryID, in.Run, number

	out := sqlstore.AttemptOutcome{Status: notifier.DeliverySucceeded}
	switch {
	case att.OK():
	case att.ErrorClass == notifier.ErrClassRefused || number >= in.Retry.MaximumAttempts:
		out.Status = notifier.DeliveryFailed
	default:
		next := time.Now().Add(in.Retry.Delay(number))
		out = sqlstore.AttemptOutcome{Status: notifier.DeliveryRetrying, NextAttemptAt: &next}
	}
	// The POST happened: log it even if the worker is stopping.
	recCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	recErr := a.Store.RecordAttempt(recCtx, att, out)
	if recErr != nil {
		logger.Error("record attempt", "delivery_id", in.DeliveryID, "attempt", number, "err", recErr)
	}
	logger.Info("delivery attempt", "delivery_id", in.DeliveryID, "webhook_id", in.WebhookID,
		"event_id", in.EventID, "attempt", number, "status_code", att.StatusCode,
		"error_class", att.ErrorClass)

	switch {
	case att.OK():
		return &DeliverResult{Attempt: att, Recorded: recErr == nil}, nil
	case att.ErrorClass == notifier.ErrClassRefused:
		return nil, temporal.NewNonRetryableApplicationError("deliver: "+att.Error, ErrRefusedTarget, nil)
	default:
		return nil, temporal.NewApplicationError("deliver: "+att.Error, ErrAttemptFailed, att.ErrorClass)
	}
}

// RecordAttemptInput is an attempt the Deliver activity could not log.
type RecordAttemptInput struct {
	Attempt *notifier.Attempt
}

// RecordAttempt logs a successful attempt and marks its delivery succeeded.
func (a *Activities) RecordAttempt(ctx context.Context, in RecordAttemptInput) error {
	return a.Store.RecordAttempt(ctx, in.Attempt, sqlstore.AttemptOutcome{Status: notifier.DeliverySucceeded})
}

// FinishDeliveryInput ends a delivery that did not succeed.
type FinishDeliveryInput struct {
	DeliveryID string
	Status     notifier.DeliveryStatus
	Reason     string
}

// FinishDelivery marks a delivery failed or canceled in the log.
func (a *Activities) FinishDelivery(ctx context.Context, in FinishDeliveryInput) error {
	return a.Store.FinishDelivery(ctx, in.DeliveryID, in.Status, in.Reason)
}

// PingInput names the webhook to test and the ping envelope to send.
type PingInput struct {
	WebhookID string
	Body      []byte
}

// PingResult is what a test ping found.
type PingResult struct {
	OK         bool
	StatusCode int
	Error      string
	DurationMS int64
	At         time.Time
}

// Ping sends one signed test event to a webhook, active or not, and stores
// the result on it.
func (a *Activities) Ping(ctx context.Context, in PingInput) (*PingResult, error) {
	webhook, err := a.Store.Webhook(ctx, in.WebhookID)
	if notifier.ErrorCode(err) == notifier.ENOTFOUND {
		return nil, temporal.NewNonRetryableApplicationError("ping: webhook deleted", ErrWebhookDeleted, nil)
	} else if err != nil {
		return nil, err
	}
	ev, err := notifier.ParseEnvelope(in.Body)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError("ping: bad envelope", "BadInput", err)
	}
	headers := deliveryHeaders(webhook, notifier.EventPing, ev.ID, "", in.Body)
	att := a.Sender.Post(ctx, Request{URL: webhook.URL, Body: in.Body, Headers: headers})
	res := &notifier.PingResult{
		OK: att.OK(), StatusCode: att.StatusCode, Error: att.Error,
		Duration: att.Duration, At: att.StartedAt,
	}
	if err := a.Store.SetPingResult(ctx, in.WebhookID, res); err != nil &&
		!errors.Is(err, context.Canceled) {
		activity.GetLogger(ctx).Error("store ping result", "webhook_id", in.WebhookID, "err", err)
	}
	return &PingResult{
		OK: res.OK, StatusCode: res.StatusCode, Error: res.Error,
		DurationMS: res.Duration.Milliseconds(), At: res.At,
	}, nil
}

func deliveryHeaders(w *notifier.Webhook, typ notifier.EventType, eventID, deliveryID string, body []byte) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "Barfinex-Notifier/"+notifier.Version)
	h.Set("X-Barfinex-Event", string(typ))
	h.Set("X-Barfinex-Event-Id", eventID)
	if deliveryID != "" {
		h.Set("X-Barfinex-Delivery", deliveryID)
	}
	if w.Secret != "" {
		h.Set(notifier.SignatureHeader, notifier.Sign(w.Secret, body))
	}
	return h
}
