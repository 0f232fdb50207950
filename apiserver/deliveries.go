package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/sqlstore"
	"github.com/barfinex/notifier/workflows"
)

type deliveryJSON struct {
	ID             string                  `json:"id"`
	EventID        string                  `json:"event_id"`
	EventType      notifier.EventType      `json:"event_type"`
	WebhookID      string                  `json:"webhook_id"`
	Status         notifier.DeliveryStatus `json:"status"`
	Attempts       int                     `json:"attempts"`
	LastStatusCode int                     `json:"last_status_code,omitempty"`
	LastError      string                  `json:"last_error,omitempty"`
	CreatedAt      string                  `json:"created_at"`
	CompletedAt    *string                 `json:"completed_at"`
	NextAttemptAt  *string                 `json:"next_attempt_at"`
}

func toDeliveryJSON(d *notifier.Delivery) *deliveryJSON {
	out := &deliveryJSON{
		ID: d.ID, EventID: d.EventID, EventType: d.EventType, WebhookID: d.WebhookID,
		Status: d.Status, Attempts: d.Attempts, LastStatusCode: d.LastStatusCode,
		LastError: d.LastError, CreatedAt: timeJSON(d.CreatedAt),
		CompletedAt: optionalTime(d.CompletedAt),
	}
	if d.Status == notifier.DeliveryRetrying {
		out.NextAttemptAt = optionalTime(d.NextAttemptAt)
	}
	return out
}

type attemptJSON struct {
	Run             int               `json:"run"`
	Manual          bool              `json:"manual"`
	Number          int               `json:"number"`
	StartedAt       string            `json:"started_at"`
	DurationMS      int64             `json:"duration_ms"`
	URL             string            `json:"url"`
	StatusCode      int               `json:"status_code,omitempty"`
	ResponseHeaders map[string]string `json:"response_headers,omitempty"`
	ResponseBody    string            `json:"response_body,omitempty"`
	ErrorClass      string            `json:"error_class,omitempty"`
	Error           string            `json:"error,omitempty"`
	// RequestBody is what a channel sent, when it was not the envelope.
	RequestBody  string `json:"request_body,omitempty"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
}

// liveJSON is a running delivery's state as its workflow reports it.
type liveJSON struct {
	Status         notifier.DeliveryStatus `json:"status"`
	Attempt        int                     `json:"attempt"`
	LastStatusCode int                     `json:"last_status_code,omitempty"`
	LastError      string                  `json:"last_error,omitempty"`
	NextAttemptAt  *string                 `json:"next_attempt_at"`
}

type deliveryDetailJSON struct {
	*deliveryJSON
	Runs       int             `json:"runs"`
	Event      json.RawMessage `json:"event"`
	AttemptLog []attemptJSON   `json:"attempt_log"`
	Live       *liveJSON       `json:"live"`
}

func optionalTime(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := timeJSON(*t)
	return &s
}

// deliveryID reads and checks the :id path parameter.
func deliveryID(c *gin.Context) (string, bool) {
	id := c.Param("id")
	if !notifier.ValidDeliveryID(id) {
		writeError(c, notifier.Errorf(notifier.ENOTFOUND, "delivery %q not found", id))
		return "", false
	}
	return id, true
}

func (s *Server) listDeliveries(c *gin.Context) {
	id, ok := webhookID(c)
	if !ok {
		return
	}
	f, err := deliveryFilter(c)
	if err != nil {
		writeError(c, err)
		return
	}
	f.WebhookID = id
	limit, err := limitParam(c)
	if err != nil {
		writeError(c, err)
		return
	}
	ctx := c.Request.Context()
	if _, err := s.store.Webhook(ctx, id); err != nil {
		s.fail(c, "list deliveries", err)
		return
	}
	page, err := s.store.Deliveries(ctx, f, limit, c.Query("cursor"))
	if err != nil {
		s.fail(c, "list deliveries", err)
		return
	}
	items := make([]*deliveryJSON, len(page.Deliveries))
	for i, d := range page.Deliveries {
		items[i] = toDeliveryJSON(d)
	}
	c.JSON(http.StatusOK, gin.H{"items": items, "next_cursor": page.NextCursor})
}

var deliveryStatuses = map[notifier.DeliveryStatus]bool{
	notifier.DeliveryPending: true, notifier.DeliveryRetrying: true,
	notifier.DeliverySucceeded: true, notifier.DeliveryFailed: true,
	notifier.DeliveryCanceled: true,
}

func deliveryFilter(c *gin.Context) (sqlstore.DeliveryFilter, error) {
	var f sqlstore.DeliveryFilter
	if v := c.Query("status"); v != "" {
		f.Status = notifier.DeliveryStatus(v)
		if !deliveryStatuses[f.Status] {
			return f, notifier.Invalid("status",
				"must be one of pending, retrying, succeeded, failed, canceled")
		}
	}
	if v := c.Query("event_type"); v != "" {
		f.EventType = notifier.EventType(v)
		if _, ok := notifier.LookupEventType(f.EventType); !ok {
			return f, notifier.Invalid("event_type", "unknown event type %q", v)
		}
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := c.Query(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return f, notifier.Invalid(p.name, "must be an RFC 3339 time, like 2026-03-27T12:00:00Z")
			}
			*p.dst = t
		}
	}
	return f, nil
}

func (s *Server) getDelivery(c *gin.Context) {
	id, ok := deliveryID(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	d, err := s.store.Delivery(ctx, id)
	if err != nil {
		s.fail(c, "get delivery", err)
		return
	}
	attempts, err := s.store.Attempts(ctx, id)
	if err != nil {
		s.fail(c, "get delivery", err)
		return
	}
	ev, err := s.store.Event(ctx, d.EventID)
	if err != nil {
		s.fail(c, "get delivery", err)
		return
	}
	out := &deliveryDetailJSON{
		deliveryJSON: toDeliveryJSON(d),
		Event:        json.RawMessage(ev.Body),
		AttemptLog:   make([]attemptJSON, len(attempts)),
	}
	for i, a := range attempts {
		out.Runs = max(out.Runs, a.Run)
		out.AttemptLog[i] = attemptJSON{
			Run: a.Run, Manual: a.Manual(), Number: a.Number, StartedAt: timeJSON(a.StartedAt),
			DurationMS: a.Duration.Milliseconds(), URL: a.URL, StatusCode: a.StatusCode,
			ResponseHeaders: a.ResponseHeaders, ResponseBody: a.ResponseBody,
			ErrorClass: a.ErrorClass, Error: a.Error,
			RequestBody: a.RequestBody, RetryAfterMS: a.RetryAfter.Milliseconds(),
		}
	}
	if !d.Status.Final() {
		out.Live = s.liveState(ctx, id)
	}
	c.JSON(http.StatusOK, out)
}

// liveState asks a running delivery's workflow where it stands; nil when it
// cannot answer (it has not started yet, or no worker is up).
func (s *Server) liveState(ctx context.Context, id string) *liveJSON {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := s.temporal.QueryWorkflowWithOptions(ctx, &client.QueryWorkflowWithOptionsRequest{
		WorkflowID: id,
		QueryType:  workflows.StateQuery,
		// A closed run's state is history, not live.
		QueryRejectCondition: enumspb.QUERY_REJECT_CONDITION_NOT_OPEN,
	})
	if err != nil || resp.QueryRejected != nil {
		s.log.Debug("query delivery state", "delivery_id", id, "err", err)
		return nil
	}
	var st workflows.DeliveryState
	if err := resp.QueryResult.Get(&st); err != nil {
		s.log.Warn("decode delivery state", "delivery_id", id, "err", err)
		return nil
	}
	return &liveJSON{
		Status: st.Status, Attempt: st.Attempt, LastStatusCode: st.LastStatusCode,
		LastError: st.LastError, NextAttemptAt: optionalTime(st.NextAttemptAt),
	}
}

func (s *Server) retryDelivery(c *gin.Context) {
	id, ok := deliveryID(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	d, err := s.store.Delivery(ctx, id)
	if err != nil {
		s.fail(c, "retry delivery", err)
		return
	}
	w, err := s.store.Webhook(ctx, d.WebhookID)
	switch {
	case notifier.ErrorCode(err) == notifier.ENOTFOUND:
		writeError(c, notifier.Errorf(notifier.ECONFLICT, "the webhook of delivery %s was deleted", id))
		return
	case err != nil:
		s.fail(c, "retry delivery", err)
		return
	case !w.Active:
		writeError(c, notifier.Errorf(notifier.ECONFLICT,
			"webhook %s is inactive; activate it before retrying its deliveries", w.ID))
		return
	}
	if _, err := s.store.Event(ctx, d.EventID); err != nil {
		s.fail(c, "retry delivery", err)
		return
	}
	// A delivery the store shows unfinished but whose workflow has ended
	// (terminated by an operator, say) is stranded: it may be retried.
	stranded := !d.Status.Final() && !s.running(ctx, id)
	before, err := s.store.ReopenDelivery(ctx, id, stranded)
	if err != nil {
		s.fail(c, "retry delivery", err)
		return
	}

	// A new run of the same workflow: same id, same envelope, a fresh
	// schedule. The store has just refused a delivery that succeeded or is
	// still running, and Temporal refuses to start a run beside a running one.
	_, err = s.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    id,
		TaskQueue:             s.cfg.TaskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		// A run already under way is an error, not a handle to it.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary: "retry: " +
			workflows.DeliverySummary(d.EventType, w.Name, hostOf(w.URL)),
		TypedSearchAttributes: workflows.DeliveryAttributes(w.ID, d.EventID, d.EventType),
	}, workflows.DeliveryWorkflow, workflows.DeliveryInput{
		DeliveryID: id, EventID: d.EventID, EventType: d.EventType, WebhookID: w.ID,
		Retry: s.cfg.Retry,
	})
	if err != nil {
		if rerr := s.store.RestoreDelivery(context.WithoutCancel(ctx), before); rerr != nil {
			s.log.Error("restore delivery", "delivery_id", id, "err", rerr)
		}
		var running *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &running) {
			writeError(c, notifier.Errorf(notifier.ECONFLICT, "delivery %s is still running", id))
			return
		}
		s.log.Error("start delivery retry", "delivery_id", id, "err", err)
		writeError(c, notifier.Errorf(notifier.EUNAVAILABLE, "the retry could not be started; try again"))
		return
	}
	s.log.Info("delivery retried", "delivery_id", id, "webhook_id", w.ID, "event_id", d.EventID)
	d, err = s.store.Delivery(ctx, id)
	if err != nil {
		s.fail(c, "retry delivery", err)
		return
	}
	c.JSON(http.StatusAccepted, toDeliveryJSON(d))
}

// running reports whether the delivery's workflow has a run under way. When
// Temporal cannot tell, it says yes, the safe answer for a retry.
func (s *Server) running(ctx context.Context, id string) bool {
	desc, err := s.temporal.DescribeWorkflow(ctx, id, "")
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		return false
	case err != nil:
		return true
	}
	return desc.RawResponse.GetWorkflowExecutionInfo().GetStatus() ==
		enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
}

// cancelUnfinished cancels the running deliveries of a webhook that was
// deactivated or deleted, so that they stop now instead of at their next
// attempt. A delivery this misses stops at its next attempt all the same.
func (s *Server) cancelUnfinished(ctx context.Context, webhookID string) {
	ctx = context.WithoutCancel(ctx)
	ids, err := s.store.UnfinishedDeliveries(ctx, webhookID)
	if err != nil {
		s.log.Error("list unfinished deliveries", "webhook_id", webhookID, "err", err)
		return
	}
	for _, id := range ids {
		err := s.temporal.CancelWorkflow(ctx, id, "")
		var notFound *serviceerror.NotFound
		if err != nil && !errors.As(err, &notFound) {
			s.log.Warn("cancel delivery", "delivery_id", id, "webhook_id", webhookID, "err", err)
		}
	}
}

func hostOf(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		return u.Host
	}
	return ""
}
