package notifier

import "time"

// DeliveryStatus is where a delivery stands.
type DeliveryStatus string

// Delivery statuses.
const (
	// DeliveryPending: created, no attempt finished yet.
	DeliveryPending DeliveryStatus = "pending"
	// DeliveryRetrying: an attempt failed and another is scheduled.
	DeliveryRetrying DeliveryStatus = "retrying"
	// DeliverySucceeded: a receiver answered 2xx.
	DeliverySucceeded DeliveryStatus = "succeeded"
	// DeliveryFailed: every attempt failed.
	DeliveryFailed DeliveryStatus = "failed"
	// DeliveryCanceled: stopped before success, as when its webhook was
	// deactivated or deleted.
	DeliveryCanceled DeliveryStatus = "canceled"
)

// Final reports whether no more attempts will be made in this run.
func (s DeliveryStatus) Final() bool {
	return s == DeliverySucceeded || s == DeliveryFailed || s == DeliveryCanceled
}

// Delivery is one event on its way to one webhook.
type Delivery struct {
	ID             string
	EventID        string
	EventType      EventType
	WebhookID      string
	Status         DeliveryStatus
	Attempts       int
	LastStatusCode int
	LastError      string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	CompletedAt    *time.Time
	NextAttemptAt  *time.Time
}

// Attempt error classes: why an attempt failed.
const (
	ErrClassTimeout    = "timeout"
	ErrClassConnection = "connection"
	ErrClassDNS        = "dns"
	ErrClassTLS        = "tls"
	ErrClassHTTPStatus = "http_status"
	ErrClassRedirect   = "redirect"
	ErrClassRefused    = "refused_target"
	ErrClassThrottled  = "throttled"
	ErrClassRejected   = "rejected"
	ErrClassCanceled   = "canceled"
	ErrClassInternal   = "internal"
)

// Attempt is one HTTP POST of a delivery.
type Attempt struct {
	DeliveryID string
	// RunID names the workflow run that made the attempt. Run counts the
	// runs of the delivery in order, from 1; every run after the first was
	// started by hand (a retry through the API, or a reset in Temporal).
	RunID      string
	Run        int
	Number     int
	StartedAt  time.Time
	Duration   time.Duration
	URL        string
	StatusCode int
	// ResponseHeaders and ResponseBody are what the receiver answered, the
	// body cut at a few KiB.
	ResponseHeaders map[string]string
	ResponseBody    string
	ErrorClass      string
	Error           string
	// RequestBody is the body sent when a channel rendered the event;
	// empty when the envelope itself was sent.
	RequestBody string
	// RetryAfter is the wait the receiver asked for before the next attempt.
	RetryAfter time.Duration
}

// Manual reports whether the attempt belongs to a run started by hand.
func (a *Attempt) Manual() bool { return a.Run > 1 }

// OK reports whether the receiver accepted the attempt.
func (a *Attempt) OK() bool {
	return a.ErrorClass == "" && a.StatusCode >= 200 && a.StatusCode < 300
}
