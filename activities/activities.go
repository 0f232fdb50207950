// Package activities holds the notifier's Temporal activities: every step
// that touches the outside world. They post deliveries and test pings to
// receivers and keep the store's delivery log.
package activities

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/channel"
	"github.com/barfinex/notifier/metrics"
	"github.com/barfinex/notifier/sqlstore"
)

// Application error types that activities return. The non-retryable ones are
// also listed in the workflows' retry policies.
const (
	// ErrAttemptFailed: a receiver did not accept an attempt. The workflow
	// makes the next attempt on the delivery's schedule.
	ErrAttemptFailed = "AttemptFailed"
	// ErrThrottled: too many attempts are in flight to the receiver's host;
	// the attempt was not made and the workflow makes it again shortly.
	ErrThrottled = "Throttled"
	// ErrRejected: the receiver's service said the request can never be
	// accepted as it is (a channel's 4xx); not retried.
	ErrRejected = "Rejected"
	// ErrRefusedTarget: the receiver's address is not allowed; not retried.
	ErrRefusedTarget = "RefusedTarget"
	// ErrWebhookInactive: the webhook was deactivated; not retried.
	ErrWebhookInactive = "WebhookInactive"
	// ErrWebhookDeleted: the webhook no longer exists; not retried.
	ErrWebhookDeleted = "WebhookDeleted"
	// ErrAlreadySucceeded: a delivery to be finished as failed or canceled
	// had an attempt accepted in the same run; the workflow ends it as
	// succeeded. Its detail is an AttemptFailure with the status code.
	ErrAlreadySucceeded = "AlreadySucceeded"
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
	// Prober makes services' health probes; nil for one that follows no
	// redirects.
	Prober *http.Client
}

// FanOutPage is how many deliveries one FanOut result names: a page stays
// far below Temporal's payload limits, and the workflow that starts them
// below its limit of pending children.
const FanOutPage = 500

// FanOutInput names the event to fan out, and where the page starts.
type FanOutInput struct {
	EventID string
	// After is the last delivery id of the page before, "" at first.
	After string
}

// FanOutResult is a page of deliveries to start, with their retry schedule.
type FanOutResult struct {
	Targets []sqlstore.Target
	Retry   RetryConfig
	// More says another page may follow.
	More bool
}

// FanOut creates a delivery of the event for each subscribed, active webhook
// (once), and returns a page of those still waiting to start.
func (a *Activities) FanOut(ctx context.Context, in FanOutInput) (*FanOutResult, error) {
	targets, err := a.Store.FanOut(ctx, in.EventID, in.After, FanOutPage)
	if err != nil {
		return nil, err
	}
	return &FanOutResult{Targets: targets, Retry: a.Retry, More: len(targets) == FanOutPage}, nil
}

// DeliverInput is one attempt's input. It holds no secret and no envelope:
// the activity reads the envelope, stored once at publish time, and the
// webhook's secret from the store.
type DeliverInput struct {
	DeliveryID string
	EventID    string
	EventType  notifier.EventType
	WebhookID  string
	// Attempt counts the attempts of this run of the delivery, from 1.
	Attempt int
	Retry   RetryConfig
}

// DeliverResult describes the attempt that succeeded.
type DeliverResult struct {
	Attempt *notifier.Attempt
	// Recorded is false when the attempt could not be written to the log;
	// the workflow then writes it.
	Recorded bool
}

// AttemptFailure is the detail of an ErrAttemptFailed error.
type AttemptFailure struct {
	StatusCode int
	ErrorClass string
	// RetryAfter is the wait the receiver asked for, zero if none.
	RetryAfter time.Duration
}

// Deliver makes one attempt of a delivery and records it. A receiver's
// failure is an ErrAttemptFailed error carrying an AttemptFailure.
func (a *Activities) Deliver(ctx context.Context, in DeliverInput) (*DeliverResult, error) {
	logger := activity.GetLogger(ctx)
	// A retry of the activity may follow a try whose POST was accepted and
	// logged but whose completion never reached Temporal (its worker died,
	// or Temporal was away). That success stands: nothing is sent again.
	// A first attempt run as a local activity is made again, from its
	// first try, when its worker died before the workflow task completed.
	if info := activity.GetInfo(ctx); info.Attempt > 1 || info.IsLocalActivity {
		att, err := a.loggedSuccess(ctx, in.DeliveryID, info.WorkflowExecution.RunID, in.Attempt)
		if err != nil {
			return nil, err
		}
		if att != nil {
			logger.Info("delivery attempt already succeeded", "delivery_id", in.DeliveryID,
				"attempt", in.Attempt)
			return &DeliverResult{Attempt: att, Recorded: true}, nil
		}
	}
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

	ev, err := a.Store.Event(ctx, in.EventID)
	if err != nil {
		return nil, err
	}
	att := a.send(ctx, webhook, in.EventType, in.EventID, in.DeliveryID, in.Attempt, ev.Body)
	if att.ErrorClass == notifier.ErrClassThrottled {
		return nil, temporal.NewNonRetryableApplicationError("deliver: "+att.Error, ErrThrottled, nil)
	}
	att.DeliveryID, att.Number = in.DeliveryID, in.Attempt
	att.RunID = activity.GetInfo(ctx).WorkflowExecution.RunID

	final := att.ErrorClass == notifier.ErrClassRefused || att.ErrorClass == notifier.ErrClassRejected
	out := sqlstore.AttemptOutcome{Status: notifier.DeliverySucceeded}
	switch {
	case att.OK():
	case final || in.Attempt >= in.Retry.MaximumAttempts:
		out.Status = notifier.DeliveryFailed
	default:
		next := time.Now().Add(max(in.Retry.Delay(in.Attempt), att.RetryAfter))
		out = sqlstore.AttemptOutcome{Status: notifier.DeliveryRetrying, NextAttemptAt: &next}
	}
	// The POST happened: log it even if the worker is stopping.
	recCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	recErr := a.Store.RecordAttempt(recCtx, att, out)
	if recErr != nil {
		logger.Error("record attempt", "delivery_id", in.DeliveryID, "attempt", in.Attempt, "err", recErr)
	}
	observe(att, ev, recErr == nil)
	logger.Info("delivery attempt", "delivery_id", in.DeliveryID, "webhook_id", in.WebhookID,
		"event_id", in.EventID, "attempt", in.Attempt, "status_code", att.StatusCode,
		"error_class", att.ErrorClass)

	if att.OK() {
		return &DeliverResult{Attempt: att, Recorded: recErr == nil}, nil
	}
	errType := ErrAttemptFailed
	switch att.ErrorClass {
	case notifier.ErrClassRefused:
		errType = ErrRefusedTarget
	case notifier.ErrClassRejected:
		errType = ErrRejected
	}
	return nil, temporal.NewNonRetryableApplicationError("deliver: "+att.Error, errType, nil,
		AttemptFailure{StatusCode: att.StatusCode, ErrorClass: att.ErrorClass,
			RetryAfter: att.RetryAfter})
}

// loggedSuccess returns attempt number of the run runID of a delivery if
// the log holds it as accepted, else nil.
func (a *Activities) loggedSuccess(ctx context.Context, deliveryID, runID string,
	number int) (*notifier.Attempt, error) {
	atts, err := a.Store.Attempts(ctx, deliveryID)
	if err != nil {
		return nil, err
	}
	for _, att := range atts {
		if att.RunID == runID && att.Number == number && att.OK() {
			return att, nil
		}
	}
	return nil, nil
}

// observe counts a finished attempt and, when it succeeded, its delivery.
// A delivery's first attempt of its first run also measures the time from
// the event's publication to the attempt.
func observe(att *notifier.Attempt, ev *sqlstore.StoredEvent, recorded bool) {
	outcome := "ok"
	if !att.OK() {
		outcome = "failed"
	}
	metrics.Attempts.WithLabelValues(outcome, att.ErrorClass).Inc()
	metrics.AttemptSeconds.Observe(att.Duration.Seconds())
	if recorded && att.Run == 1 && att.Number == 1 {
		metrics.FirstAttemptDelay.Observe(att.StartedAt.Sub(ev.CreatedAt).Seconds())
	}
	if att.OK() {
		metrics.Deliveries.WithLabelValues(string(notifier.DeliverySucceeded)).Inc()
	}
}

// RecordAttemptInput is an attempt to log, with what it changes on its
// delivery.
type RecordAttemptInput struct {
	Attempt       *notifier.Attempt
	Status        notifier.DeliveryStatus
	NextAttemptAt *time.Time
}

// RecordAttempt logs an attempt the Deliver activity could not log itself.
func (a *Activities) RecordAttempt(ctx context.Context, in RecordAttemptInput) error {
	in.Attempt.RunID = activity.GetInfo(ctx).WorkflowExecution.RunID
	return a.Store.RecordAttempt(ctx, in.Attempt, sqlstore.AttemptOutcome{
		Status: in.Status, NextAttemptAt: in.NextAttemptAt,
	})
}

// FinishDeliveryInput ends a delivery that did not succeed.
type FinishDeliveryInput struct {
	DeliveryID string
	WebhookID  string
	Status     notifier.DeliveryStatus
	// Reason is why it failed; a cancellation's reason is found here.
	Reason string
}

// FinishDelivery marks a delivery failed or canceled in the log and returns
// the reason it recorded. A cancellation's reason is the state of the
// webhook: deleted, deactivated, or neither, when an operator canceled.
func (a *Activities) FinishDelivery(ctx context.Context, in FinishDeliveryInput) (string, error) {
	reason := in.Reason
	if in.Status == notifier.DeliveryCanceled {
		w, err := a.Store.Webhook(ctx, in.WebhookID)
		switch {
		case notifier.ErrorCode(err) == notifier.ENOTFOUND:
			reason = "canceled: the webhook was deleted"
		case err != nil:
			return "", err
		case !w.Active:
			reason = "canceled: the webhook was deactivated"
		default:
			reason = "canceled by an operator"
		}
	}
	runID := activity.GetInfo(ctx).WorkflowExecution.RunID
	if in.Status != notifier.DeliverySucceeded {
		// An attempt of this run the receiver accepted, whose result the
		// workflow never saw (it was canceled while the attempt was under
		// way): the delivery succeeded, and says so everywhere.
		atts, err := a.Store.Attempts(ctx, in.DeliveryID)
		if err != nil {
			return "", err
		}
		for _, att := range atts {
			if att.RunID == runID && att.OK() {
				return "", temporal.NewNonRetryableApplicationError(
					"the delivery succeeded before it could be stopped", ErrAlreadySucceeded, nil,
					AttemptFailure{StatusCode: att.StatusCode})
			}
		}
	}
	if err := a.Store.FinishDelivery(ctx, in.DeliveryID, runID, in.Status, reason); err != nil {
		return "", err
	}
	metrics.Deliveries.WithLabelValues(string(in.Status)).Inc()
	return reason, nil
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
		return nil, temporal.NewNonRetryableApplicationError("ping: webhook deleted",
			ErrWebhookDeleted, nil)
	} else if err != nil {
		return nil, err
	}
	ev, err := notifier.ParseEnvelope(in.Body)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError("ping: bad envelope", "BadInput", err)
	}
	att := a.send(ctx, webhook, notifier.EventPing, ev.ID, "", 0, in.Body)
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

// send makes one attempt to deliver envelope to a webhook, rendered for its
// channel, and judges the answer the way the channel's service defines it.
// Attempt 0 is a test ping. Telegram's refusal to parse a message's
// formatting gets one more try, as plain text, within the attempt.
func (a *Activities) send(ctx context.Context, w *notifier.Webhook, typ notifier.EventType,
	eventID, deliveryID string, attempt int, envelope []byte) *notifier.Attempt {
	ch := w.Channel
	for plainRetried := false; ; plainRetried = true {
		req, err := channel.Render(ch, w.URL, envelope)
		if err != nil {
			return &notifier.Attempt{URL: channel.MaskURL(ch, w.URL), StartedAt: time.Now(),
				ErrorClass: notifier.ErrClassInternal, Error: err.Error()}
		}
		headers := deliveryHeaders(w, typ, eventID, deliveryID, req.Body)
		if attempt > 0 {
			headers.Set("X-Barfinex-Attempt", strconv.Itoa(attempt))
		}
		att := a.Sender.Post(ctx, Request{URL: req.URL, Body: req.Body, Headers: headers,
			Unbounded: attempt == 0})
		att.URL = channel.MaskURL(ch, req.URL)
		if ch.Type != channel.Generic {
			att.RequestBody = channel.MaskBody(ch, string(req.Body))
		}
		// Only an answer the transport took whole is the channel's to judge.
		if att.StatusCode == 0 ||
			(att.ErrorClass != "" && att.ErrorClass != notifier.ErrClassHTTPStatus) {
			return att
		}
		v := channel.Judge(ch, att.StatusCode, answerHeaders(att), []byte(att.ResponseBody), time.Now())
		if v.AsPlainText && !plainRetried {
			ch.ParseMode = ""
			continue
		}
		switch {
		case v.OK:
			att.ErrorClass, att.Error = "", ""
		case v.Permanent:
			att.ErrorClass = notifier.ErrClassRejected
			att.Error = v.Reason + " (not retried: the request would not change)"
		default:
			att.ErrorClass, att.Error = notifier.ErrClassHTTPStatus, v.Reason
		}
		att.RetryAfter = v.RetryAfter
		if v.RetryAfter > 0 {
			att.Error += fmt.Sprintf("; asked to wait %s", v.RetryAfter)
		}
		return att
	}
}

func answerHeaders(a *notifier.Attempt) http.Header {
	h := make(http.Header, len(a.ResponseHeaders))
	for k, v := range a.ResponseHeaders {
		h.Set(k, v)
	}
	return h
}

func deliveryHeaders(w *notifier.Webhook, typ notifier.EventType, eventID, deliveryID string,
	body []byte) http.Header {
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
