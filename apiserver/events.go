package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"golang.org/x/sync/errgroup"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/metrics"
	"github.com/barfinex/notifier/sqlstore"
	"github.com/barfinex/notifier/workflows"
)

type eventRequest struct {
	ID        string             `json:"id"`
	Type      notifier.EventType `json:"type"`
	Timestamp *string            `json:"timestamp"`
	Data      json.RawMessage    `json:"data"`
}

func (s *Server) publishEvent(c *gin.Context) {
	var req eventRequest
	// Room around the data for the other fields.
	if err := decode(c, &req, s.cfg.MaxEventBytes+4<<10); err != nil {
		writeError(c, err)
		return
	}
	if int64(len(req.Data)) > s.cfg.MaxEventBytes {
		writeError(c, notifier.Errorf(notifier.ETOOLARGE, "data exceeds %d bytes", s.cfg.MaxEventBytes))
		return
	}
	if req.Type == notifier.EventPing {
		writeError(c, notifier.Invalid("type", "ping events are sent by POST /v1/webhooks/{id}/ping"))
		return
	}
	var ts *time.Time
	if req.Timestamp != nil {
		t, err := time.Parse(time.RFC3339Nano, *req.Timestamp)
		if err != nil {
			writeError(c, notifier.Invalid("timestamp",
				"must be an RFC 3339 time, like 2026-03-27T12:00:00.000Z"))
			return
		}
		ts = &t
	}
	if notifier.ReservedEventID(req.ID) {
		writeError(c, notifier.Invalid("id",
			"ids starting with \"alert:\" or \"service:\" name the notifier's own events"))
		return
	}
	ev, err := notifier.NewEvent(req.ID, req.Type, ts, req.Data, s.now())
	if err != nil {
		writeError(c, err)
		return
	}
	if err := s.schemas.validate(ev.Type, ev.Data); err != nil {
		writeError(c, err)
		return
	}
	body, err := ev.Envelope()
	if err != nil {
		s.fail(c, "publish event", err)
		return
	}

	ctx := c.Request.Context()
	stored, created, err := s.store.CreateEvent(ctx, ev, body)
	if err != nil {
		s.fail(c, "publish event", err)
		return
	}
	if !created && !stored.SameContent(ev) {
		writeError(c, notifier.Errorf(notifier.ECONFLICT,
			"event id %q was already published with other content", ev.ID))
		return
	}

	if strategy := notifier.SignalStrategy(ev); strategy != "" {
		if err := s.noteSignal(ctx, strategy, stored.CreatedAt); err != nil {
			s.log.Error("tell no_signals rules", "event_id", stored.ID, "err", err)
			notQueued(c, stored.ID)
			return
		}
	}

	_, err = s.fanOut(ctx, stored)
	if err != nil {
		s.log.Error("fan out event", "event_id", stored.ID, "err", err)
		// The event is stored: the same id, published again, delivers it.
		notQueued(c, stored.ID)
		return
	}
	if created {
		metrics.EventsPublished.WithLabelValues(string(stored.Type)).Inc()
		s.log.Info("event published", "event_id", stored.ID, "event_type", string(stored.Type))
	}
	c.JSON(http.StatusAccepted, gin.H{
		"id":        stored.ID,
		"type":      stored.Type,
		"timestamp": timeJSON(stored.Timestamp),
		"duplicate": !created,
	})
}

// InlineFanOut is the most webhooks an event may have for the API to start
// its deliveries itself; an event with more is fanned out by its
// EventWorkflow, a page at a time.
const InlineFanOut = 50

// fanOut creates the event's deliveries and starts them, and reports
// whether it started anything (a repeated publish finds everything started
// already). When it returns nil, every delivery of the event is durable in
// Temporal, or its EventWorkflow is. Run again for the same event, it starts
// only what is still waiting.
func (s *Server) fanOut(ctx context.Context, ev *sqlstore.StoredEvent) (bool, error) {
	targets, err := s.store.FanOut(ctx, ev.ID, "", InlineFanOut+1)
	if err != nil {
		return false, err
	}
	if len(targets) > InlineFanOut {
		return s.startEventWorkflow(ctx, ev)
	}

	// Each delivery's workflow id follows from the event's and the
	// webhook's, so a repeated publish finds the first one instead of
	// sending again. Started from the client the worker in this process
	// shares, its first workflow task comes back with the start (eager
	// start) and the first attempt leaves without a round trip through the
	// task queue.
	var mu sync.Mutex
	started := false
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, t := range targets {
		g.Go(func() error {
			_, err := s.temporal.ExecuteWorkflow(gctx, client.StartWorkflowOptions{
				ID:                    t.DeliveryID,
				TaskQueue:             s.cfg.TaskQueue,
				WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
				// A run already under way is an error, not a handle to it.
				WorkflowExecutionErrorWhenAlreadyStarted: true,
				EnableEagerStart:                         true,
				StaticSummary: workflows.DeliverySummary(ev.Type, t.WebhookName,
					t.Host),
				TypedSearchAttributes: workflows.DeliveryAttributes(t.WebhookID, ev.ID,
					ev.Type),
			}, workflows.DeliveryWorkflow, workflows.DeliveryInput{
				DeliveryID: t.DeliveryID,
				EventID:    ev.ID,
				EventType:  ev.Type,
				WebhookID:  t.WebhookID,
				Retry:      s.cfg.Retry,
			})
			var already *serviceerror.WorkflowExecutionAlreadyStarted
			switch {
			case errors.As(err, &already):
				return nil
			case err != nil:
				return fmt.Errorf("start delivery %s: %w", t.DeliveryID, err)
			}
			mu.Lock()
			started = true
			mu.Unlock()
			return nil
		})
	}
	err = g.Wait()
	return started, err
}

// startEventWorkflow hands a large fan-out to the event's workflow. Its id
// follows from the event's, so a repeated publish finds the first one.
func (s *Server) startEventWorkflow(ctx context.Context, ev *sqlstore.StoredEvent) (bool, error) {
	_, err := s.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    workflows.EventWorkflowID(ev.ID),
		TaskQueue:             s.cfg.TaskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		// A run already under way is an error, not a handle to it.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            string(ev.Type) + " " + ev.ID,
	}, workflows.EventWorkflow, workflows.EventInput{EventID: ev.ID, EventType: ev.Type})
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		return false, nil
	}
	return err == nil, err
}

func (s *Server) eventTypes(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"items": notifier.EventTypes(), "next_cursor": ""})
}

// notQueued answers for a stored event whose delivery, or whose news to
// alert rules, could not be started: the same id, published again, does it.
func notQueued(c *gin.Context, eventID string) {
	c.AbortWithStatusJSON(http.StatusServiceUnavailable, gin.H{"error": gin.H{
		"code":     notifier.EUNAVAILABLE,
		"message":  "the event could not be queued for delivery; publish it again with the same id",
		"event_id": eventID,
	}})
}
